"""Decoding in worker processes, for machines with many cores (a GPU machine's CPUs feeding the GPU).

Decoder threads share one GIL, and decoding holds it for part of every photo (file checks, JPEG
markers and EXIF are parsed in Python), so threads stop paying off past a few. On a GPU machine's
many cores processes decode several times faster than threads (README "On a GPU" has the
measurements); there the GPU waits for the decoders, so `pipeline.decoded_batches` decodes in
processes on such machines.

Each process runs the one decoder (`images.load_resized`) and writes its slice of every batch
straight into a memory-mapped file in shared memory (`/dev/shm` where it has room, else the temp
folder), so no pixels are pickled: only paths go out, and an error of a bad file comes back. The
processes are plain interpreters running `main` here, not `multiprocessing` children, which would
re-run the caller's main script and register the shared memory with a tracker that removes it when
a child exits. They run at the lowest priority. A pass takes a set of processes that no other pass
uses (two sessions of the app may decode at once) and gives it back at its end, and the next pass
reuses it, as the cached views' passes do, one after the other. A set left idle for `IDLE_SECONDS`
ends (counted from the end of its last pass, never during one), and all end with their caller,
whose end closes their input.
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
import threading
import time
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import numpy as np

from tlcore import temporaries
from tlcore.data import decoders, images, shared_batches

# A decoder process idle this long after its last pass exits, so an app server that decoded once does
# not keep a process per core. The caller reuses a set only within half of it, so it never sends a task
# to a process that is about to exit.
IDLE_SECONDS = 120.0

# The end of a pass, sent to each process: it unmaps the pass's file and starts counting idle time.
END_OF_PASS = None

_idle_pools: dict[int, list["DecoderProcesses"]] = {}
_open_pools: set["DecoderProcesses"] = set()  # Idle or in use: what `cpu_seconds` counts.
# The CPU time of sets already closed, in clock ticks: whole numbers, so adding them in any order is exact
# and the total never goes down (sums of seconds as floats did: 0.67 became 0.6699999999999999).
_closed_cpu_ticks = 0
_pools_lock = threading.Lock()


class DecoderProcessError(RuntimeError):
    """A decoder process ended while it had work (killed, out of memory)."""


class DecoderProcesses:
    """A fixed set of decoder processes, each with a pipe of pickled tasks in and answers out.

    Each process answers its tasks in order, so answers are read back without bookkeeping: `submit`
    returns the process that will answer, `result` reads its next answer.
    """

    def __init__(self, processes: int):
        package_parent = str(Path(__file__).resolve().parents[2])
        # The caller's tlcore, whatever the current folder holds (`python -m` would look there first).
        command = [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {package_parent!r}); "
            f"from tlcore.data.decoder_processes import main; main({IDLE_SECONDS!r})",
        ]
        # One thread per process: numpy's BLAS would start a thread per core in each, for nothing.
        environment = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.processes = [
            subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment)
            for _ in range(processes)
        ]
        self.last_used = time.monotonic()
        with _pools_lock:
            _open_pools.add(self)

    def alive(self) -> bool:
        """Whether every process runs, and all of them will still be there for a new pass."""
        recent = time.monotonic() - self.last_used < IDLE_SECONDS / 2
        return recent and all(process.poll() is None for process in self.processes)

    def submit(self, index: int, task: tuple | None) -> subprocess.Popen:
        """Sends a task (or END_OF_PASS) to process `index`; returns the process whose `result` answers it."""
        process = self.processes[index]
        try:
            pickle.dump(task, process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise DecoderProcessError(f"decoder process {process.pid} ended (exit code {process.poll()}).") from error
        return process

    @staticmethod
    def result(process: subprocess.Popen) -> tuple | None:
        """The next answer of `process`: None, or the failure that stopped its slice (see `_decode_tasks`)."""
        try:
            return pickle.load(process.stdout)
        except (EOFError, OSError, pickle.UnpicklingError) as error:
            raise DecoderProcessError(
                f"decoder process {process.pid} ended (exit code {process.wait()}) before it had decoded its images."
            ) from error

    def close(self) -> None:
        """Ends the processes: their input closes, they finish what they have and exit."""
        global _closed_cpu_ticks
        spent = _processes_cpu_ticks([process.pid for process in self.processes])
        with _pools_lock:
            if self in _open_pools:
                _open_pools.discard(self)
                _closed_cpu_ticks += spent
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
            the batches before it have been yielded). Another error of the decoder (an unreadable
            file's PermissionError, say) is raised as the decoder threads would raise it.
        DecoderProcessError: a decoder process ended while it had work.
        OSError: no folder has room for the shared batches.
    """
    # Names as given, for the errors; absolute paths for the processes, which started in another folder.
    names = [str(path) for path in paths]
    if not names:
        return
    files = [os.path.abspath(name) for name in names]
    shape = (ahead, batch_size, image_size, image_size, 3)
    memory_path = shared_batches.new_file(int(np.prod(shape)))
    pool = _take(processes)
    pending: list[tuple[int, int, list[subprocess.Popen]]] = []
    slots = None
    failure_raised = False  # A bad file's error, raised once every answer of its batch was read.
    broken = False
    try:
        slots = np.memmap(memory_path, dtype=np.uint8, mode="r+", shape=shape)
        starts = iter(range(0, len(files), batch_size))

        def submit(start: int, slot: int) -> None:
            count = len(files[start : start + batch_size])
            answering: list[subprocess.Popen] = []
            pending.append((slot, count, answering))  # Before sending: an interrupted send is seen as such.
            for index, (begin, end) in enumerate(decoders.batch_slices(count, processes)):
                task = (
                    memory_path,
                    shape,
                    slot,
                    begin,
                    files[start + begin : start + end],
                    names[start + begin : start + end],
                    image_size,
                )
                answering.append(pool.submit(index, task))

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
                failure_raised = True
                raise _error(failure)
            batch = np.array(slots[slot, :count])
            following = next(starts, None)
            if following is not None:
                submit(following, slot)  # Before yielding: the decoders work while the caller uses this batch.
            yield batch
    except GeneratorExit:
        raise  # Closed early: the answers still due are read below, and the set stays in step.
    except BaseException:
        # Anything but a bad file's error (a dead process, Ctrl+C halfway through reading or sending)
        # may leave answers half read or tasks half sent: that set is not given back.
        broken = not failure_raised
        raise
    finally:
        try:
            if not broken:
                # A caller that stops early reads the answers still due, so that the processes' next
                # tasks are not answered by these: at most `ahead` batches' worth.
                for _, _, answering in pending:
                    for process in answering:
                        pool.result(process)
                for index in range(len(pool.processes)):
                    pool.submit(index, END_OF_PASS)
        except DecoderProcessError:
            broken = True
        finally:
            del slots
            with contextlib.suppress(OSError):
                os.unlink(memory_path)
            temporaries.release(memory_path)
            _give_back(processes, pool, broken)


def _error(failure: tuple) -> BaseException:
    """The exception a process sent back as ("invalid", file, reason) or ("error", exception)."""
    # InvalidImageError does not survive pickling (its constructor takes two arguments): it comes
    # as its file and reason and is made again here.
    if failure[0] == "invalid":
        return images.InvalidImageError(failure[1], failure[2])
    return failure[1]


def cpu_seconds() -> float:
    """CPU time (user + system) the decoder processes of this process have used so far, on Linux.

    They are not children that have ended, so `time.process_time` and `RUSAGE_CHILDREN` miss them:
    a benchmark that counts the cores a pass keeps busy adds this. Sets already closed count with
    what they had used when they closed. 0.0 where /proc is not readable (not Linux).
    """
    with _pools_lock:
        pids = [process.pid for pool in _open_pools for process in pool.processes]
        closed = _closed_cpu_ticks
    return (closed + _processes_cpu_ticks(pids)) / os.sysconf("SC_CLK_TCK")


def _processes_cpu_ticks(pids: list[int]) -> int:
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # Exited, or not Linux.
        ticks += int(fields[11]) + int(fields[12])  # utime and stime: fields 14 and 15 of proc(5).
    return ticks


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
    """In a decoder process: decodes each task's files into its rows of shared memory, answers each.

    A task is (file of the batches, its shape, slot, first row, files, their names for errors, image
    size); the answer is None, ("invalid", name, reason) for a file the decoder refuses, or ("error",
    exception) for another error, which the caller raises as it is. END_OF_PASS gets no answer: the
    file is unmapped and idle time starts. Returns when the input closes or the caller is gone;
    exits the process after `idle_seconds` idle after a pass.
    """
    mapped: tuple[str, np.memmap] | None = None
    idle_since = [time.monotonic()]

    def exit_when_idle() -> None:
        while True:
            waited = time.monotonic() - idle_since[0]  # -inf during a pass.
            if waited >= idle_seconds:
                os._exit(0)  # The main thread blocks in a read: end the process from here.
            time.sleep(min(idle_seconds, idle_seconds - waited) + 0.01)

    threading.Thread(target=exit_when_idle, daemon=True).start()
    while True:
        try:
            task = pickle.load(tasks)
        except EOFError:
            return  # The caller closed our input: done.
        if task is END_OF_PASS:
            mapped = None  # The pass's file goes (it is already unlinked): no memory held while idle.
            idle_since[0] = time.monotonic()
            continue
        idle_since[0] = float("inf")  # In a pass: never idle, however long the caller takes between batches.
        memory_path, shape, slot, begin, files, names, image_size = task
        if mapped is None or mapped[0] != memory_path:
            mapped = None
            mapped = (memory_path, np.memmap(memory_path, dtype=np.uint8, mode="r+", shape=tuple(shape)))
        answer = None
        try:
            for index, (file, name) in enumerate(zip(files, names)):
                mapped[1][slot, begin + index] = images.load_resized(file, image_size, name=name)
        except images.InvalidImageError as error:
            answer = ("invalid", error.path, error.reason)
        except Exception as error:  # noqa: BLE001 - sent to the caller, which raises it as threads would.
            answer = ("error", error)
        try:
            message = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - an exception that cannot be pickled: send its words.
            message = pickle.dumps(("error", RuntimeError(f"decoding {', '.join(names)} failed: {answer[1]!r}")))
        try:
            answers.write(message)
            answers.flush()
        except BrokenPipeError:
            return  # The caller is gone (killed): nothing to answer to.


def main(idle_seconds: float = IDLE_SECONDS) -> None:
    """The decoder process: tasks on standard input, answers on standard output."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, 19)  # The model's threads keep the cores.
    # Ctrl+C in a terminal reaches the whole process group: the caller handles it, and this process
    # ends when the caller's end closes its input, without a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # Nothing printed by a library can corrupt the answers.
    _decode_tasks(sys.stdin.buffer, answers, idle_seconds)
