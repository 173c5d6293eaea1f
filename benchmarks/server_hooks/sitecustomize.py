"""Loaded by the Streamlit server that `benchmarks/app_load.py --tracemalloc` starts (through PYTHONPATH).

Not part of the app. Python imports a module named `sitecustomize` from its path at start-up; this one
makes SIGUSR1 write a tracemalloc snapshot to `$TLCORE_BENCHMARK_SNAPSHOTS/snapshot-N.pickle` (N
counting from 1). Tracing (one frame a trace) starts at the first signal, not at start-up: traced from
its first line, importing TensorFlow alone took minutes on a busy machine. So a later snapshot holds
what was allocated since the first one and is still alive: what grew.
"""

import itertools
import os
import signal
import tracemalloc
from pathlib import Path

_FOLDER = os.environ.get("TLCORE_BENCHMARK_SNAPSHOTS")
_COUNT = itertools.count(1)


def _write_snapshot(signal_number, frame) -> None:
    if not tracemalloc.is_tracing():
        tracemalloc.start(1)
    path = Path(_FOLDER) / f"snapshot-{next(_COUNT)}.pickle"
    partial = path.with_suffix(".partial")
    tracemalloc.take_snapshot().dump(str(partial))
    partial.rename(path)  # Whole, or not there: the benchmark waits for this name.


if _FOLDER:
    signal.signal(signal.SIGUSR1, _write_snapshot)
