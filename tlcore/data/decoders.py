"""How many decoders a parallel decoding pass uses, threads or processes, and how a batch is shared among them."""

from __future__ import annotations

import contextlib
import os
import sys
import threading

import numpy as np

# Decoding holds the GIL for part of every photo (file checks, JPEG markers and EXIF parsed in
# Python), so decoder threads stop paying off past a few: on a 16-core machine 16 threads decoded
# slower than 8 (README "On a GPU" has the measurements).
MAX_DECODER_THREADS = 8
# From this many cores on, `decoded_batches` decodes in processes, one per core (see
# tlcore.data.decoder_processes: processes outrun threads there, README "On a GPU").
# Below it threads do as well and start at once, so the laptops and 2-core machines that section 1
# of benchmarks.throughput measures keep them.
DECODER_PROCESSES_FROM_CORES = 8


def decoder_threads() -> int:
    """Decoder threads for a parallel pass: one per core, at most `MAX_DECODER_THREADS`."""
    return max(1, min(os.cpu_count() or 1, MAX_DECODER_THREADS))


def decoder_processes() -> int:
    """Decoder processes for `decoded_batches`, 0 for decoder threads.

    `$TLCORE_DECODER_PROCESSES` when set (0 keeps threads on any machine); else one per core on a
    machine of `DECODER_PROCESSES_FROM_CORES` cores or more, and 0 below.

    Raises:
        ValueError: `$TLCORE_DECODER_PROCESSES` is not a whole number of 0 or more.
    """
    setting = os.environ.get("TLCORE_DECODER_PROCESSES", "").strip()
    if setting:
        if not setting.isdigit():
            raise ValueError(
                f"TLCORE_DECODER_PROCESSES must be a whole number of 0 or more (0: decoder threads), "
                f"received {setting!r}."
            )
        return int(setting)
    cores = os.cpu_count() or 1
    return cores if cores >= DECODER_PROCESSES_FROM_CORES else 0


def batch_slices(count: int, workers: int) -> list[tuple[int, int]]:
    """A batch of `count` images cut into one (begin, end) slice per decoder, as even as can be."""
    bounds = np.linspace(0, count, min(workers, count) + 1).astype(int)
    return [(int(begin), int(end)) for begin, end in zip(bounds[:-1], bounds[1:])]


def decoder_description() -> str:
    """How `decoded_batches` decodes on this machine, in words: "16 decoder processes", "2 decoder threads"."""
    processes = decoder_processes()
    if processes:
        return f"{processes} decoder process{'es' if processes > 1 else ''}"
    threads = decoder_threads()
    return f"{threads} decoder thread{'s' if threads > 1 else ''}"


_decoder_thread = threading.local()


def lower_decoder_thread() -> None:
    """Gives the calling decoder thread the lowest priority (nice 19), once per thread, on Linux.

    The model's threads then keep the cores while the prefetched batches last, and the decoders
    fill the moments the model leaves idle instead of preempting it; when the model waits for a
    batch, nothing else wants the cores and the decoders run at full speed. Linux alone applies
    a niceness to one thread; elsewhere this would renice the whole process, so it does nothing.
    """
    if getattr(_decoder_thread, "lowered", False) or sys.platform != "linux":
        return
    _decoder_thread.lowered = True
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
