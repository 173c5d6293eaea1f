"""Which stage a run's saved model holds, so that a run cut short still offers the stages it finished.

A run saves its model (`model.keras`) when it ends done or stopped, and also each time a stage finishes
before the last one: a worker killed in fine-tuning, or a stage that fails, leaves the model of the stage
before it, which Predict and Evaluate can use. `model.json` beside the model says which stage it holds, what
that stage scored and whether the stage finished (a stopped one did not); it names the model file's
modification time and size, so a record that does not match the file (the process killed between the two
writes) is not believed. Written at every save, it is the truth about the model even where an older
`summary.json` is still in the folder (a stopped run that was resumed, then cut short).
"""

from __future__ import annotations

import math

from tlcore.files import json_text, read_json
from tlcore.runs import resumption
from tlcore.runs.store import ACTIVE_STATES, CUT_SHORT_STATES, ENDED_STATES

RECORD_FILE = "model.json"


def record(run, stage: str, val_accuracy: float | None, finished: bool = True) -> None:
    """Writes which stage the run's model file, just saved, holds and its validation accuracy.

    Args:
        run: the `tlcore.runs.store.Run` whose `model_path` was just written.
        stage: the stage whose weights the model holds.
        val_accuracy: that stage's validation accuracy (its kept epoch), or None.
        finished: False when the stage was stopped partway.

    Raises:
        OSError: the run folder is gone (`store.RunFolderGone`: it is not made again) or cannot be written.
    """
    stat = run.model_path.stat()
    values = {
        "stage": stage,
        "val_accuracy": val_accuracy,
        "finished": finished,
        "mtime_ns": stat.st_mtime_ns,
        "bytes": stat.st_size,
    }
    run.write_file(RECORD_FILE, json_text(values))


def stage_record(run) -> dict | None:
    """The record of the run's model file ({"stage", "val_accuracy", "finished", ...}), or None when there is
    no model, no record, or a record written for another version of the file. Never raises.

    "val_accuracy" is a number or None (a damaged value reads as None).
    """
    values = read_json(run.path / RECORD_FILE, default=None)
    if not isinstance(values, dict) or not isinstance(values.get("stage"), str):
        return None
    try:
        stat = run.model_path.stat()
    except OSError:
        return None
    if (values.get("mtime_ns"), values.get("bytes")) != (stat.st_mtime_ns, stat.st_size):
        return None
    accuracy = values.get("val_accuracy")
    valid = isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool) and math.isfinite(accuracy)
    finished = values.get("finished") is not False  # Records without the key were written at a stage's end.
    return {**values, "val_accuracy": float(accuracy) if valid else None, "finished": finished}


def saved_stage(run, results: dict, state: str | None = None) -> str | None:
    """The stage whose weights the run's model file holds: its record's, else a done run's last stage.

    Args:
        run: the run.
        results: its results per stage, in training order (`summary.json`'s "results").
        state: its state, when the caller has read it already (else read here).

    Returns:
        The stage, or None when no record is believed and the run is not done.
    """
    record = stage_record(run)
    if record is not None:
        return record["stage"]
    state = run.state if state is None else state
    return list(results)[-1] if state == "done" and results else None  # A done run saves its last stage.


def usable(run, state: str | None = None) -> bool:
    """Whether Predict, Evaluate and the exports can use the run's model: a done or stopped run's, or the
    model of a finished stage that a run cut short kept (a record believed for its file).

    Args:
        run: the run.
        state: its state, when the caller has read it already (else read here).
    """
    state = run.state if state is None else state
    if state in ENDED_STATES:
        return run.model_path.is_file()
    return state in CUT_SHORT_STATES and stage_record(run) is not None


def why_not_usable(run, state: str | None = None) -> str | None:
    """Why the run's model cannot be used yet, in words for people; None when it can, or when its model
    file is simply missing (`tlcore.serving.predict.load_model_file` says that itself)."""
    state = run.state if state is None else state
    if state in ACTIVE_STATES:
        return (
            f"Run {run.id} is {state}: its model is used once the run ends (done, or stopped with what it has "
            "learned); wait for it, or stop it."
        )
    if state in CUT_SHORT_STATES and run.model_path.is_file() and stage_record(run) is None:
        # Told to resume only when it can be (a failed run never can): the advice sent people to a refusal.
        resumable = resumption.why_not_resumable(run) is None
        what_next = "Resume the run to finish it." if resumable else "Start it again as a new run."
        return (
            f"Run {run.id} is {state}, and which stage its model file holds is not recorded: it is not used. "
            + what_next
        )
    return None
