"""The server process: where it keeps runs and data, and its one-time preparation.

Keeping a long-lived process's garbage collections cheap once TensorFlow is imported:

The Streamlit server runs two full garbage collections after every script run, fragment reruns
included: its own (`runner.postScriptGC`) and the one inside `keras.backend.clear_session()`,
which Streamlit calls whenever Keras is imported. A full collection walks every tracked object,
and importing TensorFlow and Keras leaves hundreds of thousands of them: a noticeable pause per
collection (README "Reliability" has the measurement), spent on every page load and on
every poll of a live training's view. Those objects are module state that lives as long as the process, so they are
moved out of the collector's sight once, at start-up (`gc.freeze`); everything made later is
collected as before.
"""

from __future__ import annotations

import gc
import importlib
from pathlib import Path
from typing import Iterable

import streamlit as st

from tlcore import home
from tlcore.runs import worker

# What the app's pages reach for: TensorFlow and Keras come with them.
SERVER_MODULES = (
    "tensorflow",
    "keras",
    "altair",
    "pandas",
    "tlcore.insight.layer_stack",
    "tlcore.data.augment",
    "tlcore.models.backbones",
    "tlcore.insight.charts",
    "tlcore.models.efficientnet_lite",
    "tlcore.insight.gradcam",
    "tlcore.serving.predict",
)


def import_and_freeze(modules: Iterable[str] = SERVER_MODULES) -> int:
    """Imports `modules`, collects what the imports left as garbage, and freezes the rest.

    Frozen objects are never examined by the collector again (nor freed if they become cyclic
    garbage), so call this once, after imports and before per-request work: what is alive then
    is module state that lives as long as the process anyway.

    Args:
        modules: names of the modules to import first.

    Returns:
        How many objects are frozen now (`gc.get_freeze_count()`).
    """
    for name in modules:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


@st.cache_resource(show_spinner="Starting up: loading TensorFlow (once per server start)...")
def prepare() -> int:
    """Imports what the pages use and freezes it out of the garbage collector's sight, once per process.

    Streamlit runs two full collections after every script run; frozen, the objects imported here
    are no longer walked by them on every page load and every poll of a live run. Before the imports,
    glibc's malloc arenas are capped as in the training workers (`worker.limit_malloc_arenas`): the
    server's script threads and TensorFlow's pools would otherwise each scatter freed memory over
    arenas of their own, and a long-lived server's memory would drift up with every prediction.
    """
    worker.limit_malloc_arenas()
    return import_and_freeze()


def runs_dir() -> Path:
    """Where runs go: `$TLCORE_RUNS_DIR`, else `runs/` of tlcore's home folder (`tlcore.home`)."""
    return home.default_folder("runs")


def data_dir() -> Path:
    """Where uploads, demo sets and the library go: `$TLCORE_DATA_DIR`, else `data/` of tlcore's home folder."""
    return home.default_folder("data")
