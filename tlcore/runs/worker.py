"""Training outside the Streamlit script: a worker process per run, one training at a time.

`start(config)` creates the run folder and launches `python -m tlcore worker RUN_FOLDER` as a
separate process session, so the run survives page reloads and app restarts. `execute(run)` is
what that process (and `python -m tlcore train`, in its own process) calls: one code path.

A lock file in the runs folder is the queue: a worker waits (state "queued") until no other
training holds it, so two trainings never fight over the CPU. The operating system releases the
lock when a worker dies, even from SIGKILL. A waiting worker has not imported TensorFlow yet, and
at most MAX_QUEUED runs wait at once.

Once a run's worker is launched, the worker is the one writer of its status.json: the app and the
CLI ask it to stop through a file of its own (`Run.request_stop`).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

import psutil

from tlcore import console
from tlcore.runs import partials, resumption, store
from tlcore.training import run_data

LOCK_NAME = ".training.lock"
# In a run folder: held while a resume checks the run and queues it again.
RESUME_LOCK_NAME = ".resume.lock"
QUEUE_POLL_SECONDS = 0.5
# Runs that may wait in the queue of one runs folder. Each is a process (small: it imports TensorFlow
# only once it holds the lock), but a queue longer than this is more likely a stuck button than a plan.
MAX_QUEUED = 8
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
    (`python -m benchmarks.memory` measures it; README "More data than memory" has the figures).
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
            # Every thread already running too: numpy's OpenBLAS starts its own when numpy is imported,
            # which the command line does before it gets here; threads started later inherit the class.
            for thread_id in _thread_ids():
                try:
                    os.sched_setscheduler(thread_id, os.SCHED_IDLE, os.sched_param(0))
                except ProcessLookupError:  # Ended since it was listed.
                    continue
            return "idle"
        except OSError:  # Not permitted in some containers: fall back to niceness.
            pass
    os.nice(WORKER_NICENESS)
    return "nice"


def _thread_ids() -> list[int]:
    """This process's threads (Linux: /proc/self/task), or [0], the calling thread, where it cannot list them."""
    try:
        return [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _process_start_time() -> float:
    return psutil.Process(os.getpid()).create_time()


def queued_runs(runs_dir: str | os.PathLike) -> list[store.Run]:
    """The runs of a runs folder that wait for their turn (state "queued", as readers see it)."""
    return [run for run in store.list_runs(runs_dir) if run.state == "queued"]


def start(config, runs_dir: str | os.PathLike | None = None) -> store.Run:
    """Creates a run and launches its worker process; returns at once.

    Args:
        config: the TrainConfig to train.
        runs_dir: the runs folder (default `runs.default_runs_dir()`).

    Returns:
        The queued Run; its folder tells how it goes. When its process cannot be started, the run is
        "failed" with the reason.

    Raises:
        ValueError: MAX_QUEUED runs already wait in this runs folder, or a run of these very settings
            waits or trains (a second click: the same settings and seed train the same model again).
    """
    runs_dir = Path(runs_dir) if runs_dir is not None else store.default_runs_dir()
    refuse_a_full_queue(runs_dir, "runs")
    for twin in store.list_runs(runs_dir):
        if twin.state in ("queued", "running") and twin.config() == config.to_dict():
            raise ValueError(
                f"Run {twin.id} of these very settings is {twin.state} already: the same settings and seed would "
                "train the same model again. Change a setting (the seed, say) to queue another run."
            )
    run = store.create(config, runs_dir)
    launch(run, runs_dir, "train")
    return run


def resume(run: store.Run, runs_dir: str | os.PathLike | None = None) -> store.Run:
    """Continues an interrupted or stopped run in a new worker process; returns at once.

    The run is queued again and its worker takes the training lock as a new run's does; training goes on
    from the last finished epoch of the stage it was in (`tlcore.training.resume`).

    Args:
        run: the run to continue.
        runs_dir: the runs folder (default: the run's parent folder).

    Returns:
        The queued Run.

    Raises:
        ValueError: the run cannot be resumed (`resumption.why_not_resumable` says why), or MAX_QUEUED
            runs already wait.
    """
    runs_dir = Path(runs_dir) if runs_dir is not None else run.path.parent
    refuse_a_full_queue(runs_dir, "runs")
    prepare_resume(run)
    # A process that cannot be started leaves the run resumable: its backups are still good.
    launch(run, runs_dir, "train", state_if_not_started="interrupted")
    return run


def prepare_resume(run: store.Run) -> resumption.ResumePoint:
    """Queues a resumable run again (its stop request withdrawn); the worker started next continues it.

    Returns:
        Where it continues.

    Raises:
        ValueError: the run cannot be resumed, with the reason (its data set's classes changed included).
        tlcore.data.dataset.DatasetError: its data set cannot be used any more (moved away, say).
    """
    # One resume at a time per run (two tabs, the app and the CLI): between the check and the queueing the
    # data set is scanned, seconds on a large one, and two callers both passing the check gave one run two
    # workers. The second caller waits here, then finds the run queued.
    try:
        lock = open(run.path / RESUME_LOCK_NAME, "a+")
    except FileNotFoundError:  # Deleted meanwhile (another tab).
        raise ValueError(f"No run {run.id!r}: its folder is gone.") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        reason = resumption.why_not_resumable(run)
        if reason is not None:
            raise ValueError(reason)
        # Before the run is queued: a data set moved away or changed is one message and the run stays
        # resumable, where the worker would find it and mark the run "failed" for good.
        run_data.scan_for_run(run.train_config(), trained_on=run.labels())
        (run.path / "stop").unlink(missing_ok=True)
        resumed = run.raw_status().get("resumed", 0)
        # The old worker is gone: until the new one writes its pid, this is the status's one writer.
        run.set_status(
            "queued", created=time.time(), pid=None, started=None, began=None, finished=None, error=None,
            resumed=(resumed if isinstance(resumed, int) else 0) + 1,
        )  # fmt: skip
    return resumption.resume_point(run)


def refuse_a_full_queue(folder: Path, what: str) -> None:
    """Raises ValueError when MAX_QUEUED runs (or learning-rate finds) already wait in `folder`."""
    waiting = len(queued_runs(folder))
    if waiting >= MAX_QUEUED:
        raise ValueError(
            f"{waiting} {what} already wait in the queue of {folder} (at most {MAX_QUEUED}); "
            "let one finish or stop one before starting another."
        )


def launch(run: store.Run, runs_dir: Path, job: str, state_if_not_started: str = "failed") -> None:
    """Starts `python -m tlcore worker RUN_FOLDER --job JOB` for a queued run folder; returns at once.

    Args:
        run: the queued folder (a training run, or a learning-rate find of `tlcore.runs.finder_jobs`).
        runs_dir: the runs folder whose training lock and feature cache the worker uses.
        job: "train" or "lr-find".
        state_if_not_started: the folder's state, with the reason, when the process cannot be started:
            "failed" for a new run, "interrupted" for a resumed one (a failed run cannot be resumed).
    """
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    # The worker must import the same tlcore, wherever the app was started from.
    package_root = str(Path(__file__).resolve().parents[2])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, environment.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "tlcore", "worker", str(run.path.resolve())]
    command += ["--runs-dir", str(Path(runs_dir).resolve()), "--job", job]
    try:
        with open(run.path / "log.txt", "ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Not killed with the Streamlit server, not sharing its signals.
                env=environment,
            )
    except OSError as error:
        # No worker exists to write the status, so this is still the run's one writer.
        run.set_status(
            state_if_not_started, error=f"The {job} process could not be started: {error}", finished=time.time()
        )
        return
    # Collect the worker's exit status when it ends, however it ends: a parent that never waits
    # keeps a killed worker as a zombie (<defunct>) for as long as the parent (the Streamlit server) lives.
    threading.Thread(target=process.wait, name=f"tlcore-reap-{run.id}", daemon=True).start()
    # The worker writes its own pid first thing: from here on it is the one writer of the status.


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


def take_turn(run: store.Run, runs_dir: Path):
    """Marks the run queued under this process, then waits for the runs folder's training lock.

    Once it holds the lock, no other training of this runs folder writes, so what a killed one left
    is removed. A stop requested while waiting ends the run "stopped".

    Returns:
        (the open lock file, closed to release it, or None when stopped while waiting; this process's start time)
    """
    started = _process_start_time()
    run.set_status("queued", pid=os.getpid(), started=started)
    lock = _wait_for_turn(run, runs_dir / LOCK_NAME)
    if lock is None:
        run.set_status("stopped", error=None, finished=time.time())
        return None, started
    partials.clean_partials(runs_dir)
    return lock, started


def execute(run: store.Run, runs_dir: str | os.PathLike | None = None, stream=None, display=None) -> dict:
    """Trains a run to its end, recording status, metrics, model and summary in its folder.

    Never raises for a training error: the run ends as "failed" with the error in its status. A run
    whose folder is deleted while it trains ends at its next batch, "failed" in the returned status only.

    Args:
        run: the run to train (its config.json says what).
        runs_dir: the runs folder (for the queue lock and the feature cache).
        stream: where progress lines go (the CLI), or None.
        display: a `tlcore.progress.Display` showing them (default: plain lines on `stream`).

    Returns:
        The final status, with "results" when training produced any.
    """
    runs_dir = Path(runs_dir) if runs_dir is not None else run.path.parent
    lock, started = take_turn(run, runs_dir)
    if lock is None:
        return run.status()
    # Heavy: imports TensorFlow, once this run holds the lock: a queued worker stays a small process,
    # not a whole TensorFlow runtime waiting for its turn.
    from tlcore.training import trainer

    try:
        run.set_status(
            "stopping" if run.stop_requested() else "running", pid=os.getpid(), started=started, began=time.time()
        )
        try:
            config = run.train_config()
            summary = trainer.train(config, run=run, stream=stream, runs_dir=runs_dir, display=display)
        except store.RunFolderGone:
            raise
        except Exception as error:  # noqa: BLE001 - any failure must end up in the run's status.
            traceback.print_exc()
            run.set_status("failed", error=f"{type(error).__name__}: {error}", finished=time.time())
            return run.status()
        state = "stopped" if summary.get("stopped") else "done"
        run.set_status(state, error=None, finished=time.time())
        if state == "done":
            resumption.clear(run)  # A done run is not resumed: its backups and stage weights go.
        status = run.status()
        status["results"] = summary.get("results", {})
        return status
    except store.RunFolderGone as error:
        # Deleted by a person while it trained: writing "failed" (or its log) would make the folder again.
        return {"state": "failed", "error": str(error)}
    finally:
        lock.close()  # Releases the flock: the next queued worker starts.


def execute_at_terminal(
    run: store.Run,
    runs_dir: str | os.PathLike | None = None,
    stream=None,
    display=None,
    report: Callable[[dict], None] | None = None,
):
    """`execute` for `python -m tlcore train`, where Ctrl+C stops the run as the Stop button does.

    The first Ctrl+C asks the run to stop: the current batch finishes, the model so far is saved and
    the run ends "stopped". A second Ctrl+C ends the process at once (`tlcore.console.end_at_once`):
    the run is "interrupted" (unless it finished in between), `report` receives its status, and the
    model being saved, if any, is removed. Call it from the main thread.

    Args:
        run, runs_dir, stream, display: as for `execute`.
        report: writes what the command prints at its end, given the final status. It is called from
            the signal handler, so it must write with `os.write`, not through a buffered stream the
            interrupted code may be in the middle of.

    Returns:
        (the final status, the exit status: 0 done or stopped, 1 failed, INTERRUPTED_EXIT_CODE after
        Ctrl+C). A second Ctrl+C does not return.
    """
    pressed = []

    def say(message: str) -> None:
        if display is not None:
            display.print(message)
        elif stream is not None:
            print(message, file=stream, flush=True)

    def end_at_once(signal_number, frame) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # A third Ctrl+C must not start this again halfway.
        try:
            if run.raw_status().get("state") not in store.FINAL_STATES:
                run.set_status("interrupted", error="Ended at once by a second Ctrl+C.", finished=time.time())
            if report is not None:
                report(run.status())
        except Exception:  # noqa: BLE001 - a full disk or a closed pipe must not keep the process alive.
            pass
        console.end_at_once("Ended at once by a second Ctrl+C.")

    def stop_after_this_batch(signal_number, frame) -> None:
        pressed.append(time.time())
        signal.signal(signal.SIGINT, end_at_once)
        run.request_stop()
        message = "Ctrl+C: stopping after the current batch and saving the model (Ctrl+C again to end at once)"
        try:
            say(message)
        except (OSError, RuntimeError):
            # The interrupted code was writing to standard error itself: a reentrant write raises.
            console.write_to_standard_error(message + "\n")

    previous = signal.signal(signal.SIGINT, stop_after_this_batch)
    try:
        status = execute(run, runs_dir=runs_dir, stream=stream, display=display)
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        return status, console.INTERRUPTED_EXIT_CODE
    return status, 0 if status["state"] in store.ENDED_STATES else 1
