"""How far a run has got, and about how long it has left, from the files its worker writes.

`estimate` is a pure function of a run's config, status, progress and metrics (what
`tlcore.runs.store.Run` reads), so the dashboard can call it on every poll and tests can feed it
made-up records. No Streamlit, no TensorFlow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tlcore.config import STRATEGIES, stages_for

# Below this many seconds left, the estimate says "a few seconds": it cannot tell 0 s from 4 s, as the last
# epoch's validation pass and the model's saving come after its last batch.
FEW_SECONDS = 5


@dataclass(frozen=True)
class Estimate:
    """A run's progress for people.

    Attributes:
        fraction: share of all epochs done, 0..1 (None when nothing can be said yet).
        seconds_left: estimated seconds to the end (None when unknown).
        text: one line, e.g. "Stage 1 of 3, feature extraction: epoch 2 of 10, batch 3 of 5".
    """

    fraction: float | None
    seconds_left: float | None
    text: str


def stage_name(stage: str) -> str:
    """A stage in words, as progress lines read it ("feature extraction"); an unknown name as it is."""
    return STRATEGIES[stage].stage_name if stage in STRATEGIES else stage


def format_seconds(seconds: float) -> str:
    """'45 s', '3 min 20 s', '1 h 05 min'."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _stage_epochs(config: dict, stage: str) -> int:
    key = "fine_tuning_epochs" if stage == "fine_tuning" else "epochs"
    return max(1, int(config.get(key) or 1))


def _count(value) -> int | None:
    """A count from a progress record, or None when it is missing or damaged."""
    if isinstance(value, bool):
        return None
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return None


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _warm_up_epochs(stage_records: list[dict], started: float | None) -> list[dict]:
    """The records of the stage's first epoch and of the current process's first epoch in it.

    A process's first epoch of a stage also builds and compiles the training step and fills the
    caches: the stage's first epoch, and after a resume the new process's first, which pays
    those costs again (an estimate that averaged it in said a minute was left seconds before the
    end). A process resumed earlier and stopped again is not told apart: its records hold no
    process of their own.

    Args:
        stage_records: the stage's whole epoch records, in the order they were written.
        started: when the run's current worker process started (`status["started"]`), or None.
    """
    firsts = stage_records[:1]
    if started is not None:
        current = [record for record in stage_records if (_number(record.get("time")) or 0.0) >= started]
        firsts += [record for record in current[:1] if record is not stage_records[0]]
    return firsts


def _seconds_per_epoch(
    stage: str, metrics: list[dict], progress: dict, done_in_stage: float, started: float | None = None
) -> float | None:
    """What one epoch of the stage costs, once that can be told; None before.

    A stage's first epoch also builds and compiles the training step, and fills the caches: timed by
    it, a run that needed a minute was once said to have a quarter of an hour left. So nothing is
    said before the first epoch ends; then the epochs other than the stage's first and the current
    process's first are timed (the epoch records' seconds), and while only those have ended, the
    batches since the last of them.

    Args:
        stage: the stage training now.
        metrics: the run's epoch records.
        progress: its latest progress record (epoch, batch, steps, time, stage_elapsed).
        done_in_stage: epochs of this stage done, counting the current epoch's share of batches.
        started: when the run's current worker process started, to tell a resumed run's first
            epoch in the new process; None for a run never resumed or not known.
    """
    if done_in_stage < 1:
        return None
    full = [record for record in metrics if record.get("stage") == stage and not record.get("partial")]
    warm_up = _warm_up_epochs(full, started)
    later = [_number(record.get("seconds")) for record in full if not any(record is first for first in warm_up)]
    if later and None not in later:
        return sum(later) / len(later)
    batch, steps = _count(progress.get("batch")), _count(progress.get("steps"))
    if full and all(_number(record.get("time")) is not None for record in full):
        ended, latest = _number(full[-1].get("time")), _number(progress.get("time"))
        timed = ended is not None and latest is not None and latest > ended
        # Not from an earlier process's epoch: the time between the processes is no epoch's.
        if timed and (started is None or ended >= started) and not later and batch and steps:
            return (latest - ended) / min(1.0, batch / steps)
        return None
    # No timed epoch records (made-up progress, an old run folder): the stage's whole time per epoch.
    elapsed = _number(progress.get("stage_elapsed"))
    return elapsed / done_in_stage if elapsed else None


def _from_an_earlier_process(status: dict, progress: dict) -> bool:
    """Whether the progress record was written before the run's current worker process started."""
    try:
        return float(progress.get("time")) < float(status.get("started"))
    except (TypeError, ValueError):
        return False


def estimate(
    config: dict,
    status: dict,
    progress: dict,
    metrics: list[dict],
    now: float | None = None,
    waiting_for: str | None = None,
) -> Estimate:
    """Progress and time left of a run.

    Args:
        config: the run's config (`Run.config()`).
        status: its status (`Run.status()`): state and current stage.
        progress: its latest progress (`Run.progress()`): stage, epoch, epochs, batch, steps,
            stage_elapsed, time; before a stage's first batch, its phase: "extracting" (images of
            total, of a split) or "caching" (view of views, or with "copy" the flip copy of copies).
        metrics: its epoch records so far (`Run.metrics()`).
        now: the current time (default `time.time()`).
        waiting_for: for a queued run, the id of the run training in the same runs folder, which
            it waits for (`tlcore.runs.store.training_run`); None when no other run trains.

    Returns:
        An Estimate. Stages not started yet are timed from the current stage when they cost
        the same per epoch (frozen + augmentation and fine-tuning), otherwise left out.
    """
    now = time.time() if now is None else now
    state = status.get("state", "unknown")
    try:
        stages = stages_for(config.get("strategy", ""))
    except ValueError:
        return Estimate(None, None, f"State: {state}.")
    epochs = {stage: _stage_epochs(config, stage) for stage in stages}
    total = sum(epochs.values())
    if state == "queued":
        if waiting_for:
            return Estimate(
                0.0, None, f"Queued: waiting for run {waiting_for} to finish (one training runs at a time)."
            )
        return Estimate(0.0, None, "Queued: the training process is starting.")
    if state == "done":
        return Estimate(1.0, 0.0, "Finished.")

    stage = progress.get("stage") or status.get("stage") or stages[0]
    if _from_an_earlier_process(status, progress) and status.get("stage") in stages:
        stage = status["stage"]  # A resumed run's: the stopped process's record may be of a stage it finished.
    if stage not in stages:
        return Estimate(None, None, f"State: {state}.")
    index = stages.index(stage)
    done_before = sum(epochs[name] for name in stages[:index])
    position = (
        f"Stage {index + 1} of {len(stages)}, {stage_name(stage)}"
        if len(stages) > 1
        else (stage_name(stage).capitalize())
    )

    if progress.get("stage") == stage and progress.get("phase") == "caching":
        view, views = int(progress.get("view") or 1), int(progress.get("views") or 1)
        if isinstance(progress.get("copy"), str):
            why = (
                "the augmentation is off, so every view is the image as it is"
                if views == 1
                else f"copy {view} of {views}, {progress['copy']}: flips are the only augmentation, so every "
                "augmented view is one of these copies"
            )
            return Estimate(
                done_before / total,
                None,
                f"{position}: caching the training images ({why}; the epochs that follow are quick).",
            )
        return Estimate(
            done_before / total,
            None,
            f"{position}: caching augmented view {view} of {views} (the frozen base reads every "
            "training image once per view; the epochs that follow are quick).",
        )
    if progress.get("stage") == stage and progress.get("phase") == "extracting":
        done, count = _count(progress.get("images")), _count(progress.get("total"))
        if done is not None and count:
            images = f"{progress['split']} images" if isinstance(progress.get("split"), str) else "images"
            return Estimate(
                done_before / total,
                None,
                f"{position}: extracting features, {min(done, count):,} of {count:,} {images} (the "
                "frozen base reads every image once; the epochs that follow are quick).",
            )
    if progress.get("stage") != stage or not progress.get("epoch"):
        # The stage has begun but no batch has finished: building the model or extracting features.
        what = (
            "extracting features (the frozen base reads every image once)"
            if stage == "feature_extraction"
            else "preparing the model and the images"
        )
        return Estimate(done_before / total, None, f"{position}: {what}.")

    stage_epochs = int(progress.get("epochs") or epochs[stage])
    epoch = int(progress["epoch"])
    batch, steps = progress.get("batch"), progress.get("steps")
    if batch and steps:
        done_in_stage = (epoch - 1) + min(1.0, batch / steps)
        where = f"epoch {epoch} of {stage_epochs}, batch {batch} of {steps}"
    else:
        done_in_stage = epoch
        where = f"epoch {epoch} of {stage_epochs} done"
    fraction = min(1.0, (done_before + done_in_stage) / total)
    if _from_an_earlier_process(status, progress) and state == "running":
        # A resumed run: its last progress record is the stopped process's, whose clock says nothing yet, and
        # whose epoch may be one the stop cut short; it continues after the stage's last whole epoch recorded.
        finished = max(
            (
                int(record["stage_epoch"])
                for record in metrics
                if record.get("stage") == stage
                and not record.get("partial")
                and isinstance(record.get("stage_epoch"), int)
            ),
            default=0,
        )
        where = f"resuming after epoch {finished} of {stage_epochs}" if finished else "starting it again"
        return Estimate(
            (done_before + finished) / total, None, f"{position}: {where} (preparing the model and the images)."
        )

    seconds_left = None
    per_epoch = _seconds_per_epoch(stage, metrics, progress, done_in_stage, _number(status.get("started")))
    if per_epoch is not None and state in ("running", "stopping"):
        since = max(0.0, now - float(progress.get("time") or now))
        seconds_left = max(0.0, per_epoch * (stage_epochs - done_in_stage) - since)
        later = stages[index + 1 :]
        # With cached views (augmented_views > 0) a fine-tuning epoch costs more than a frozen one.
        end_to_end = stage == "scratch" or not config.get("augmented_views", 10)
        if end_to_end and STRATEGIES[stage].end_to_end and all(STRATEGIES[name].end_to_end for name in later):
            seconds_left += sum(per_epoch * epochs[name] for name in later)
        elif later:
            # Feature extraction's epochs are far cheaper than the end-to-end stages that follow.
            seconds_left = None
    text = f"{position}: {where}"
    if state == "stopping":
        text += " (stopping after this batch)"
    elif seconds_left == 0 and done_in_stage >= stage_epochs:
        # Its last batch has trained and nothing timed follows: what is left is no epoch's batches ("about 0 s
        # left" stood through it, read as a stall).
        text += ", finishing the stage (validating and saving its model)"
    elif seconds_left is not None and seconds_left < FEW_SECONDS:
        text += ", a few seconds left"
    elif seconds_left is not None:
        text += f", about {format_seconds(seconds_left)} left"
    elif done_in_stage < 1 and state == "running":
        text += ", the time left is known after this stage's first epoch"
    elif index + 1 < len(stages):
        text += ", the later stages are not timed yet"
    return Estimate(fraction, seconds_left, text + ".")
