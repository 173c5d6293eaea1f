"""Decoding in worker processes, for machines with many cores (a GPU machine's CPUs feeding the GPU).

Decoder threads share one GIL, and decoding holds it for part of every photo (file checks, JPEG
markers and EXIF are parsed in Python), so threads stop paying off past a few: on a 16-core GPU
machine 8 threads decoded 3,646 photos/s at 160 px and 16 threads 1,917, while 8 processes decoded
7,547 and 16 processes 9,053 (README "On a GPU"). There the GPU waits for the decoders, so
`data.decoded_batches` decodes in processes on such machines.

Each process runs the one decoder (`images.load_resized`) and writes its slice of every batch
straight into a memory-mapped file in shared memory (`/dev/shm`), so no pixels are pickled: only
paths go out, and (file, reason) of a bad file comes back. The processes are plain interpreters
running this module (`python -m tlcore.decoder_processes`), not `multiprocessing` children, which
would re-run the caller's main script and register the shared memory with a tracker that removes
it when a child exits. They run at the lowest priority. A pass takes a set of processes that is
not in use (so that two passes at once, as two sessions of the app may run, never share one) and
gives it back when it ends; the next pass reuses it, as the cached views' passes do, one after the
other. A set left unused for `IDLE_SECONDS` ends, and all end with their caller (their input closes).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import numpy as np

from tlcore import images

# Where the batches live while the processes fill them: memory (tmpfs) on Linux, else the temp folder.
SHARED_FOLDER = "/dev/shm" if os.path.isdir("/dev/shm") else None

# A decoder process with nothing to do for this long exits, so an app server that decoded once does
# not keep a process per core. The caller reuses a set only within half of it, so it never sends a task
# to a process that is about to exit.
IDLE_SECONDS = 120.0

_idle_pools: dict[int, list["DecoderProcesses"]] = {}
_open_pools: set["DecoderProcesses"] = set()  # Idle or in use: what `cpu_seconds` counts.
_pools_lock = threading.Lock()


class DecoderProcessError(RuntimeError):
    """A decoder process ended while it had work (killed, out of memory)."""


class DecoderProcesses:
    """A fixed set of decoder processes, each with a pipe of pickled tasks in and results out.

    Tasks go round in a fixed order and each process answers its tasks in order, so results are read
    back without any bookkeeping: `submit` returns the process that will answer, `result` reads it.
    """

    def __init__(self, processes: int):
        package_parent = str(Path(__file__).resolve().parents[1])
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, environment.get("PYTHONPATH")]))
        # One thread per process: numpy's BLAS would start a thread per core in each, for nothing.
        environment.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.processes = [
            subprocess.Popen([sys.executable, "-m", "tlcore.decoder_processes"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=environment)
            for _ in range(processes)
        ]
        self.last_used = time.monotonic()
        with _pools_lock:
            _open_pools.add(self)

    def alive(self) -> bool:
        """Whether every process runs, and all of them will still be there for a new pass."""
        recent = time.monotonic() - self.last_used < IDLE_SECONDS / 2
        return recent and all(process.poll() is None for process in self.processes)

    def submit(self, index: int, task: tuple) -> subprocess.Popen:
        """Sends a task to process `index`; returns the process whose `result` answers it."""
        process = self.processes[index]
        try:
            pickle.dump(task, process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise DecoderProcessError(f"decoder process {process.pid} ended (exit code {process.poll()}).") from error
        return process

    @staticmethod
    def result(process: subprocess.Popen) -> tuple[str, str] | None:
        """The next answer of `process`: None, or (file, reason) of the bad file that stopped its slice."""
        try:
            return pickle.load(process.stdout)
        except (EOFError, OSError, pickle.UnpicklingError) as error:
            raise DecoderProcessError(
                f"decoder process {process.pid} ended (exit code {process.wait()}) before it had decoded its images."
            ) from error

    def close(self) -> None:
        """Ends the processes: their input closes, they finish what they have and exit."""
        with _pools_lock:
            _open_pools.discard(self)
        for process in self.processes:
            with contextlib.suppress(OSError):
                process.stdin.close()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            with contextlib.suppress(OSError):
                process.stdout.close()


def decoded_batches(
    paths: Sequence[str],
    image_size: int,
    batch_size: int,
    ahead: int,
    processes: int,
) -> Iterator[np.ndarray]:
    """uint8 batches decoded by decoder processes into shared memory, in order, `ahead` batches early.

    The contract of `data.decoded_batches`, which checks the arguments and calls this.

    Args:
        paths: image files.
        image_size: side of the square images.
        batch_size: images per batch (the last batch may be smaller).
        ahead: batches decoded ahead of the one being used (at least 1).
        processes: decoder processes.

    Yields:
        uint8 arrays of shape (n, image_size, image_size, 3), n = batch_size but for the last one;
        each is a copy the caller owns (its slot of shared memory is reused for a later batch).

    Raises:
        images.InvalidImageError: a file cannot be decoded (raised with the batch that holds it;
            the batches before it have been yielded).
        DecoderProcessError: a decoder process ended while it had work.
    """
    paths = [str(path) for path in paths]
    if not paths:
        return
    pool = _take(processes)
    shape = (ahead, batch_size, image_size, image_size, 3)
    descriptor, memory_path = tempfile.mkstemp(prefix="tlcore-decoding-", dir=SHARED_FOLDER)
    os.close(descriptor)
    pending: list[tuple[int, int, list[subprocess.Popen]]] = []
    slots = None
    broken = False
    try:
        slots = np.memmap(memory_path, dtype=np.uint8, mode="w+", shape=shape)
        starts = iter(range(0, len(paths), batch_size))

        def submit(start: int, slot: int) -> None:
            batch_paths = paths[start:start + batch_size]
            bounds = np.linspace(0, len(batch_paths), min(processes, len(batch_paths)) + 1).astype(int)
            answering = [pool.submit(index, (memory_path, shape, slot, int(begin), batch_paths[begin:end], image_size))
                         for index, (begin, end) in enumerate(zip(bounds[:-1], bounds[1:]))]
            pending.append((slot, len(batch_paths), answering))

        for slot, start in enumerate(itertools.islice(starts, ahead)):
            submit(start, slot)
        while pending:
            slot, count, answering = pending[0]
            failures = []
            while answering:
                failures.append(pool.result(answering[0]))
                answering.pop(0)  # Answered: not read again when this pass ends early.
            pending.pop(0)
            failure = next((failure for failure in failures if failure is not None), None)
            if failure is not None:
                # InvalidImageError does not survive pickling (its constructor takes two
                # arguments), so the process sends (file, reason) and the error is made here.
                raise images.InvalidImageError(*failure)
            batch = np.array(slots[slot, :count])
            following = next(starts, None)
            if following is not None:
                submit(following, slot)  # Before yielding: the decoders work while the caller uses this batch.
            yield batch
    except DecoderProcessError:
        broken = True  # Not given back: the next pass starts new processes.
        raise
    finally:
        # A caller that stops early (a stop request, an error) reads the answers still due, so that
        # the processes' next tasks are not answered by these; at most `ahead` batches' worth.
        try:
            if not broken:
                for _, _, answering in pending:
                    for process in answering:
                        pool.result(process)
        except DecoderProcessError:
            broken = True
        finally:
            del slots
            with contextlib.suppress(OSError):
                os.unlink(memory_path)
            _give_back(processes, pool, broken)


def cpu_seconds() -> float:
    """CPU time (user + system) the decoder processes of this process have used so far, on Linux.

    They are not children that have ended, so `time.process_time` and `RUSAGE_CHILDREN` miss them:
    a benchmark that counts the cores a pass keeps busy adds this. 0.0 where /proc is not readable.
    """
    with _pools_lock:
        pids = [process.pid for pool in _open_pools for process in pool.processes]
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # Exited, or not Linux.
        ticks += int(fields[11]) + int(fields[12])  # utime and stime: fields 14 and 15 of proc(5).
    return ticks / os.sysconf("SC_CLK_TCK") if ticks else 0.0


def _take(processes: int) -> DecoderProcesses:
    """A set of `processes` decoder processes that no other pass uses: an idle one, or a new one."""
    stale = []
    try:
        with _pools_lock:
            idle = _idle_pools.setdefault(processes, [])
            while idle:
                pool = idle.pop()
                if pool.alive():
                    return pool
                stale.append(pool)
        return DecoderProcesses(processes)
    finally:
        for pool in stale:
            pool.close()  # Outside the lock, which closing takes.


def _give_back(processes: int, pool: DecoderProcesses, broken: bool) -> None:
    if broken:
        for process in pool.processes:
            with contextlib.suppress(OSError):
                process.kill()
        pool.close()
        return
    pool.last_used = time.monotonic()
    with _pools_lock:
        _idle_pools.setdefault(processes, []).append(pool)


@atexit.register
def _shut_down() -> None:
    with _pools_lock:
        pools = [pool for idle in _idle_pools.values() for pool in idle]
        _idle_pools.clear()
    for pool in pools:
        pool.close()


def _decode_tasks(tasks: BinaryIO, answers: BinaryIO, idle_seconds: float = IDLE_SECONDS) -> None:
    """In a decoder process: decodes each task's paths into its rows of shared memory, answers each.

    Returns when the input closes; exits the process after `idle_seconds` without a task.
    """
    mapped: tuple[str, np.memmap] | None = None
    last_task = [time.monotonic()]

    def exit_when_idle() -> None:
        while True:
            waited = time.monotonic() - last_task[0]  # -inf while a task runs.
            if waited >= idle_seconds:
                os._exit(0)  # The main thread blocks in a read: end the process from here.
            time.sleep(min(idle_seconds, idle_seconds - waited) + 0.01)

    threading.Thread(target=exit_when_idle, daemon=True).start()
    while True:
        try:
            memory_path, shape, slot, begin, paths, image_size = pickle.load(tasks)
        except EOFError:
            return  # The caller closed our input: done.
        last_task[0] = float("inf")  # Busy: never idle while decoding.
        if mapped is None or mapped[0] != memory_path:
            mapped = None  # A new pass: the previous pass's file is no longer needed.
            mapped = (memory_path, np.memmap(memory_path, dtype=np.uint8, mode="r+", shape=tuple(shape)))
        failure = None
        try:
            for index, path in enumerate(paths):
                mapped[1][slot, begin + index] = images.load_resized(path, image_size)
        except images.InvalidImageError as error:
            failure = (error.path, error.reason)
        pickle.dump(failure, answers, protocol=pickle.HIGHEST_PROTOCOL)
        answers.flush()
        last_task[0] = time.monotonic()


def main() -> None:
    """The decoder process: tasks on standard input, answers on standard output."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, 19)  # The model's threads keep the cores.
    # Ctrl+C in a terminal reaches the whole process group: the caller handles it, and this process
    # ends when the caller's end closes its input, without a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # Nothing printed by a library can corrupt the answers.
    _decode_tasks(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
