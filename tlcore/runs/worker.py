"""Training outside the Streamlit script: a worker process per run, one training at a time.

`start(config)` creates the run folder and launches `python -m tlcore worker RUN_FOLDER` as a
separate process session, so the run survives page reloads and app restarts. `execute(run)` is
what that process (and `python -m tlcore train`, in its own process) calls: one code path.

A lock file in the runs folder is the queue: a worker waits (state "queued") until no other
training holds it, so two trainings never fight over the CPU. The operating system releases the
lock when a worker dies, even from SIGKILL.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import psutil

from tlcore.runs import store

LOCK_NAME = ".training.lock"
QUEUE_POLL_SECONDS = 0.5
# Where the idle scheduling class is missing (not Linux), workers are reniced by this much instead.
WORKER_NICENESS = 10


# glibc's mallopt parameter M_ARENA_MAX, and the arenas a training process may use.
M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def limit_malloc_arenas() -> bool:
    """Caps glibc's malloc arenas at MALLOC_ARENAS for this process (Linux with glibc; else nothing).

    glibc gives busy threads arenas of their own, up to 8 per core; with TensorFlow's thread pools
    and the decoders each allocating batch-sized buffers, the freed space stays scattered over
    those arenas and the peak memory of a long extraction drifts with the number of images
    (1.25x for 20,000 vs 2,000 images in one run of `benchmarks.memory`, 1.03x with two arenas).
    Call it first thing, before threads start.

    Returns:
        Whether the cap was set.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, MALLOC_ARENAS) == 1
    except (OSError, AttributeError):  # Another C library (musl) or no libc.so.6.
        return False


def lower_priority() -> str:
    """Makes this process (and the threads it starts from now on) yield the CPU to everything else.

    On Linux the worker joins the SCHED_IDLE class: it runs on CPU time that no other process
    wants, so the Streamlit server and the browser answer at once while a training runs, and the
    training still gets every idle cycle. Elsewhere it is reniced by WORKER_NICENESS. Called
    before TensorFlow starts its thread pools, which inherit the policy.

    Returns:
        "idle" or "nice".
    """
    if hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "idle"
        except OSError:  # Not permitted in some containers: fall back to niceness.
            pass
    os.nice(WORKER_NICENESS)
    return "nice"


def _process_start_time() -> float:
    return psutil.Process(os.getpid()).create_time()


def start(config, runs_dir: str | os.PathLike | None = None) -> store.Run:
    """Creates a run and launches its worker process; returns at once.

    Args:
        config: the TrainConfig to train.
        runs_dir: the runs folder (default `runs.default_runs_dir()`).

    Returns:
        The queued Run; its folder tells how it goes.
    """
    runs_dir = Path(runs_dir) if runs_dir is not None else store.default_runs_dir()
    run = store.create(config, runs_dir)
    log = open(run.path / "log.txt", "ab")
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    # The worker must import the same tlcore, wherever the app was started from.
    package_root = str(Path(__file__).resolve().parents[2])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, environment.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "tlcore", "worker", str(run.path.resolve()), "--runs-dir", str(runs_dir.resolve())],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Not killed with the Streamlit server, not sharing its signals.
        env=environment,
    )
    log.close()
    # Collect the worker's exit status when it ends, however it ends: a parent that never waits
    # keeps a killed worker as a zombie (<defunct>) for as long as the parent (the Streamlit server) lives.
    threading.Thread(target=process.wait, name=f"tlcore-reap-{run.id}", daemon=True).start()
    try:
        started = psutil.Process(process.pid).create_time()
    except psutil.NoSuchProcess:
        started = None
    run.set_status("queued", pid=process.pid, started=started)
    return run


def _wait_for_turn(run: store.Run, lock_path: Path):
    """Blocks until this run holds the training lock; returns the open lock file, or None if stopped."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+")
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if run.stop_requested():
                handle.close()
                return None
            time.sleep(QUEUE_POLL_SECONDS)


def execute(run: store.Run, runs_dir: str | os.PathLike | None = None, stream=None) -> dict:
    """Trains a run to its end, recording status, metrics, model and summary in its folder.

    Never raises for a training error: the run ends as "failed" with the error in its status.

    Args:
        run: the run to train (its config.json says what).
        runs_dir: the runs folder (for the queue lock and the feature cache).
        stream: where progress lines go (the CLI), or None.

    Returns:
        The final status, with "results" when training produced any.
    """
    # Heavy: imports TensorFlow (the worker process is started before it may configure it).
    from tlcore.training import trainer

    runs_dir = Path(runs_dir) if runs_dir is not None else run.path.parent
    started = _process_start_time()
    run.set_status("queued", pid=os.getpid(), started=started)
    lock = _wait_for_turn(run, runs_dir / LOCK_NAME)
    if lock is None:
        run.set_status("stopped", error=None, finished=time.time())
        return run.status()
    try:
        run.set_status(
            "stopping" if run.stop_requested() else "running", pid=os.getpid(), started=started, began=time.time()
        )
        try:
            config = run.train_config()
            summary = trainer.train(config, run=run, stream=stream, runs_dir=runs_dir)
        except Exception as error:  # noqa: BLE001 - any failure must end up in the run's status.
            traceback.print_exc()
            run.set_status("failed", error=f"{type(error).__name__}: {error}", finished=time.time())
            return run.status()
        state = "stopped" if summary.get("stopped") else "done"
        run.set_status(state, error=None, finished=time.time())
        status = run.status()
        status["results"] = summary.get("results", {})
        return status
    finally:
        lock.close()  # Releases the flock: the next queued worker starts.
