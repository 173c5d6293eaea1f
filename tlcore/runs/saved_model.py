"""Which stage a run's saved model holds, so that a run cut short still offers the stages it finished.

A run saves its model (`model.keras`) when it ends done or stopped, and also each time a stage finishes
before the last one: a worker killed in fine-tuning, or a stage that fails, leaves the model of the stage
before it, which Predict and Evaluate can use. `model.json` beside the model says which stage it holds and
what that stage scored; it names the model file's modification time and size, so a record that does not
match the file (the process killed between the two writes) is not believed.
"""

from __future__ import annotations

from tlcore.files import read_json, write_json

RECORD_FILE = "model.json"
# States whose model is the run's own end: done, or stopped by the person (the model cut short there).
ENDED_STATES = ("done", "stopped")
# States that can hold the model of an earlier stage: the worker died, or a later stage failed.
CUT_SHORT_STATES = ("interrupted", "failed")


def record(run, stage: str, val_accuracy: float | None) -> None:
    """Writes which stage the run's model file, just saved, holds and its validation accuracy.

    Args:
        run: the `tlcore.runs.store.Run` whose `model_path` was just written.
        stage: the stage whose weights the model holds.
        val_accuracy: that stage's validation accuracy (its kept epoch), or None.
    """
    stat = run.model_path.stat()
    write_json(
        run.path / RECORD_FILE,
        {"stage": stage, "val_accuracy": val_accuracy, "mtime_ns": stat.st_mtime_ns, "bytes": stat.st_size},
    )


def stage_record(run) -> dict | None:
    """The record of the run's model file ({"stage", "val_accuracy", ...}), or None when there is no model,
    no record, or a record written for another version of the file. Never raises."""
    values = read_json(run.path / RECORD_FILE, default=None)
    if not isinstance(values, dict) or not isinstance(values.get("stage"), str):
        return None
    try:
        stat = run.model_path.stat()
    except OSError:
        return None
    if (values.get("mtime_ns"), values.get("bytes")) != (stat.st_mtime_ns, stat.st_size):
        return None
    return values


def earlier_stage(run) -> dict | None:
    """For a run cut short (interrupted, or failed in a later stage), the record of the finished stage its
    model holds; None for any other run, or one that finished no stage."""
    return stage_record(run) if run.state in CUT_SHORT_STATES else None


def usable(run) -> bool:
    """Whether Predict and Evaluate can use the run's model: a done or stopped run's, or the model of a
    finished stage that a run cut short kept."""
    if run.state in ENDED_STATES:
        return run.model_path.is_file()
    return earlier_stage(run) is not None
