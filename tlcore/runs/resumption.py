"""What a run folder keeps so an interrupted or stopped run can be continued, and whether it can be.

Layout of `<run>/resume/` (written by the training worker, `tlcore.training.resume`):
    <stage>/                   keras.callbacks.BackupAndRestore's folder while the stage trains: the weights
                               and optimizer state after its last finished epoch, and that epoch's number
    <stage>.seeds.json         the random generators' states after the last finished epochs (dropout,
                               augmentation), which Keras's weight files leave out
    <stage>.weights.h5         a finished stage's final weights (and <stage>.weights.seeds.json), for the
                               stage after it (fine-tuning continues the frozen model) or the final model
    finished.json              stage -> its results, for every finished stage

A stage's BackupAndRestore folder is removed when the stage finishes; the whole folder when the run is done.
Keras-free: the pages ask `why_not_resumable` to draw the Resume button.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tlcore.config import stages_for
from tlcore.files import read_json, write_json
from tlcore.runs.store import Run

RESUME_FOLDER = "resume"
FINISHED_FILE = "finished.json"
# BackupAndRestore's own file naming the epochs its weights have trained.
METADATA_FILE = "training_metadata.json"
RESUMABLE_STATES = ("interrupted", "stopped")


@dataclass(frozen=True)
class ResumePoint:
    """Where a run continues: its finished stages, the stage it was in and that stage's finished epochs."""

    finished: tuple[str, ...]
    stage: str | None
    epoch: int

    def describe(self, name: Callable[[str], str] = str) -> str:
        """'fine_tuning from epoch 3 (done: feature_extraction, frozen_augmented)', for people.

        Args:
            name: how a stage is called (the pages: `monitor.stage_name`).
        """
        done = f" (done: {', '.join(map(name, self.finished))})" if self.finished else ""
        if self.stage is None:
            return f"saving the final model{done}"
        return f"{name(self.stage)} from epoch {self.epoch + 1}{done}"


def folder(run: Run) -> Path:
    return run.path / RESUME_FOLDER


def backup_folder(run: Run, stage: str) -> Path:
    """BackupAndRestore's folder for one stage (Keras wants it to itself)."""
    return folder(run) / stage


def finished_stages(run: Run) -> dict[str, dict]:
    """Stage -> results, for the stages of the run that finished (in training order)."""
    finished = read_json(folder(run) / FINISHED_FILE, {})
    return finished if isinstance(finished, dict) else {}


def record_finished(run: Run, stage: str, result: dict) -> None:
    """Records a stage's results as finished and removes its BackupAndRestore folder."""
    finished = finished_stages(run)
    finished[stage] = result
    write_json(folder(run) / FINISHED_FILE, finished)
    shutil.rmtree(backup_folder(run, stage), ignore_errors=True)


def earlier_seconds(run: Run) -> tuple[float, dict[str, float]]:
    """The time the run's earlier processes trained, for a resumed run to add to its own (0 for a new run).

    From the summary the last stopped process wrote (its "seconds" counts the processes before it too) and the
    stages finished (each one's "seconds" counts every process that trained it). A process killed after that
    summary leaves the stages it finished, which count when they add up to more; its time on the stage it was
    killed in is lost.

    Returns:
        (seconds in all, stage -> seconds earlier processes spent on a stage not finished yet).
    """

    def is_number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    summary = run.summary()
    finished = finished_stages(run)
    results = summary.get("results") if isinstance(summary.get("results"), dict) else {}
    unfinished = {
        stage: float(result["seconds"])
        for stage, result in results.items()
        if isinstance(result, dict) and result.get("stopped") and is_number(result.get("seconds"))
    }
    # A stage an earlier process was cut short in that the summary's process stopped before reaching.
    carried = summary.get("earlier_stage_seconds")
    if isinstance(carried, dict):
        for stage, seconds in carried.items():
            if is_number(seconds):
                unfinished.setdefault(stage, float(seconds))
    in_finished_stages = sum(
        result["seconds"]
        for result in finished.values()
        if isinstance(result, dict) and is_number(result.get("seconds"))
    )
    total = summary.get("seconds") if is_number(summary.get("seconds")) else 0.0
    return (
        float(max(total, in_finished_stages)),
        {stage: seconds for stage, seconds in unfinished.items() if stage not in finished},
    )


def backed_up_epochs(run: Run, stage: str) -> int:
    """The epochs of a stage that BackupAndRestore's latest backup holds (0 without one)."""
    metadata = read_json(backup_folder(run, stage) / METADATA_FILE, {})
    epoch = metadata.get("epoch") if isinstance(metadata, dict) else None
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch > 0 else 0


def resume_point(run: Run) -> ResumePoint:
    """Where the run would continue: the first stage of its strategy not finished, from its backed-up epoch."""
    try:
        stages = stages_for(run.config().get("strategy"))
    except ValueError:  # A damaged or missing config: no stage to continue.
        stages = ()
    finished = finished_stages(run)
    remaining = [stage for stage in stages if stage not in finished]
    stage = remaining[0] if remaining else None
    return ResumePoint(
        tuple(stage for stage in stages if stage in finished), stage, backed_up_epochs(run, stage) if stage else 0
    )


def why_not_resumable(run: Run) -> str | None:
    """Why the run cannot be resumed, in words for people; None when it can.

    A run can be resumed when it was interrupted (its worker killed, the machine restarted) or stopped,
    and at least one epoch of it was kept: a finished stage or a stage's backup.
    """
    state = run.state
    if state == "done":
        return f"Run {run.id} is done: it finished every stage, so there is nothing to resume."
    if state not in RESUMABLE_STATES:
        return (
            f"Run {run.id} is {state}: only an interrupted or stopped run can be resumed "
            f"(expected one of {', '.join(RESUMABLE_STATES)})."
        )
    point = resume_point(run)
    config = run.config()
    keeps_best = config.get("keep_weights") == "best" or (config.get("early_stopping_patience") or 0) > 0
    if keeps_best and point.epoch > 0:
        # The backup holds the last epoch's weights; the best epoch's before the interruption are gone.
        return (
            f"Run {run.id} keeps each stage's best epoch (keep_weights best or early stopping), and its backup "
            "holds only the last epoch's weights: resuming mid-stage could save other weights than the ones "
            "it reports. Start it again as a new run."
        )
    if not point.finished and point.epoch == 0:
        return (
            f"Run {run.id} has nothing to resume from: no epoch of it finished before it ended "
            f"(no backup in {folder(run)}). Start it again as a new run."
        )
    return None


def trim_metrics(run: Run, stage: str, epochs: int) -> int:
    """Drops the metrics the resumed stage will write again: its epochs past `epochs` and cut-short ones.

    A worker killed after recording an epoch but before backing it up, or a stop within an epoch,
    left records that the resumed training replaces; keeping them would draw those epochs twice.

    Returns:
        How many records were dropped.
    """
    records = run.metrics()
    kept = [
        record
        for record in records
        if record.get("stage") != stage or (not record.get("partial") and record.get("stage_epoch", 0) <= epochs)
    ]
    if len(kept) != len(records):
        run.rewrite_metrics(kept)
    return len(records) - len(kept)


def clear(run: Run) -> None:
    """Removes everything kept for resuming (once the run is done)."""
    shutil.rmtree(folder(run), ignore_errors=True)
