"""Loaded by the Streamlit server that `benchmarks/app_load.py --tracemalloc` starts (through PYTHONPATH).

Not part of the app. Python imports a module named `sitecustomize` from its path at start-up, so the
server traces its allocations from its first line (tracemalloc, one frame a trace) and, on SIGUSR1,
writes a snapshot to `$TLCORE_BENCHMARK_SNAPSHOTS/snapshot-N.pickle` (N counting from 1): the
benchmark compares them to find what grows.
"""

import itertools
import os
import signal
import tracemalloc
from pathlib import Path

_FOLDER = os.environ.get("TLCORE_BENCHMARK_SNAPSHOTS")
_COUNT = itertools.count(1)


def _write_snapshot(signal_number, frame) -> None:
    path = Path(_FOLDER) / f"snapshot-{next(_COUNT)}.pickle"
    partial = path.with_suffix(".partial")
    tracemalloc.take_snapshot().dump(str(partial))
    partial.rename(path)  # Whole, or not there: the benchmark waits for this name.


if _FOLDER:
    tracemalloc.start(1)
    signal.signal(signal.SIGUSR1, _write_snapshot)
