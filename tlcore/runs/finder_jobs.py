"""The learning-rate finder as a job: a folder written by a worker process, polled like a run.

A find sets global seeds, builds a TensorFlow model and fills the feature cache, so it never runs in
the process that asks for it (the Streamlit server): `start` writes a job folder under
`<runs_dir>/.lr-finds/` and launches `python -m tlcore worker JOB_FOLDER --job lr-find`, and `execute` is
what that process (and `python -m tlcore lr-find`, in its own process) calls. The job waits for the
runs folder's training lock like a training run, so a find and a training never share the CPU, and
two finds of one feature cache never write it at once.

Layout of a job folder (the run folder's files where they mean the same, see `tlcore.runs.store`):
    config.json     the TrainConfig the sweep's head and base come from
    request.json    {"start", "end", "steps"} of the sweep
    status.json     as a run's: queued, running, done, failed, stopped, interrupted
    sweep.json      the LearningRateSweep, once done
    log.txt         the worker process's output

This module loads without TensorFlow: the pages poll it.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from pathlib import Path

from tlcore import files
from tlcore.data.dataset import DatasetError
from tlcore.runs import store, worker
from tlcore.training.learning_rate_sweep import LearningRateSweep

FOLDER_NAME = ".lr-finds"
# Finished jobs older than this are removed when a new one starts: a sweep is read once, right after it ends.
KEEP_FINISHED_SECONDS = 24 * 3600


def jobs_folder(runs_dir: str | os.PathLike) -> Path:
    """Where a runs folder's finds are kept (hidden: the runs table never lists them)."""
    return Path(runs_dir) / FOLDER_NAME


def create(config, runs_dir: str | os.PathLike, start: float = 1e-6, end: float = 1.0, steps: int = 100) -> store.Run:
    """Writes a queued job folder for a sweep; nothing runs yet (see `start` and `execute`).

    Args:
        config: the TrainConfig whose backbone, image size, head and optimizer the sweep uses.
        runs_dir: the runs folder (its feature cache and training lock).
        start: the first learning rate.
        end: the last learning rate.
        steps: how many training steps the sweep takes.

    Returns:
        The job, a `store.Run` handle on its folder.

    Raises:
        ValueError: a bad start, end or steps, or MAX_QUEUED finds already wait.
    """
    if not 0 < start < end:
        raise ValueError(f"Expected 0 < start < end, received start={start!r}, end={end!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 10:
        raise ValueError(f"steps must be an integer >= 10, received {steps!r}.")
    folder = jobs_folder(runs_dir)
    remove_finished(folder, time.time())
    worker.refuse_a_full_queue(folder, "learning-rate finds")
    job = store.create(config, folder)
    files.write_json(job.path / "request.json", {"start": start, "end": end, "steps": steps})
    return job


def start(config, runs_dir: str | os.PathLike, start: float = 1e-6, end: float = 1.0, steps: int = 100) -> store.Run:
    """Creates a job (see `create`) and launches its worker process; returns at once with the queued job."""
    job = create(config, runs_dir, start=start, end=end, steps=steps)
    worker.launch(job, Path(runs_dir), "lr-find")
    return job


def resolve(job_id: str, runs_dir: str | os.PathLike) -> store.Run:
    """The job of that id in a runs folder (ValueError when malformed, outside it or missing)."""
    return store.resolve(job_id, jobs_folder(runs_dir))


def sweep_of(job: store.Run) -> LearningRateSweep | None:
    """A finished job's sweep, or None while it has none (not done, or its file damaged)."""
    value = files.read_json(job.path / "sweep.json")
    try:
        return LearningRateSweep.from_json(value) if isinstance(value, dict) else None
    except (KeyError, TypeError, ValueError):
        return None


def execute(job: store.Run, runs_dir: str | os.PathLike) -> dict:
    """Runs a job's sweep once it holds the training lock; records the sweep or the error in its folder.

    Never raises for a failed sweep: the job ends "failed", its status's "error" the reason and its
    "bad_input" true when the reason is the data set or the settings (a ValueError or DatasetError).

    Returns:
        The final status.
    """
    runs_dir = Path(runs_dir)
    lock, started = worker.take_turn(job, runs_dir)
    if lock is None:
        return job.status()
    try:
        job.set_status("running", pid=os.getpid(), started=started, began=time.time())
        request = files.read_json_object(job.path / "request.json")
        try:
            # Heavy: imports TensorFlow, once this job holds the lock (a queued job stays a small process).
            from tlcore.training import lr_finder

            sweep = lr_finder.find_learning_rate(
                job.train_config(),
                runs_dir=runs_dir,
                start=request.get("start", 1e-6),
                end=request.get("end", 1.0),
                steps=request.get("steps", 100),
            )
        except (ValueError, DatasetError) as error:
            job.set_status("failed", error=str(error), bad_input=True, finished=time.time())
            return job.status()
        except Exception as error:  # noqa: BLE001 - any failure must end up in the job's status.
            traceback.print_exc()
            job.set_status("failed", error=f"{type(error).__name__}: {error}", finished=time.time())
            return job.status()
        files.write_json(job.path / "sweep.json", sweep.to_json())
        job.set_status("done", error=None, finished=time.time())
        return job.status()
    finally:
        lock.close()  # Releases the flock: the next queued training or find starts.


def remove_finished(folder: Path, now: float) -> list[Path]:
    """Removes the job folders that ended over KEEP_FINISHED_SECONDS ago; returns them."""
    removed = []
    for job in store.list_runs(folder):
        status = job.status(now)
        finished = status.get("finished") or status.get("created") or 0
        if status.get("state") in store.FINAL_STATES and now - finished > KEEP_FINISHED_SECONDS:
            shutil.rmtree(job.path, ignore_errors=True)
            removed.append(job.path)
    return removed
