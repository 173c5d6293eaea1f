"""What the pages share: folders, session state, and cached calls into tlcore.

Not a page (app.py does not register it). Session state keys:
    dataset          the current DatasetScan (set on the Data page)
    augmentation     the AugmentationConfig chosen on the Data page, used by the Train page
    run_id           the current run; when absent, the running run (else the newest queued one) is shown
    lr_sweep         the latest learning-rate sweep of the Train page ({"sweep", "for"})
    batch_result     the Predict page's latest batch prediction ({"run", "source", "rows"})
    exports          the exports made on the Predict page ({(run id, format): ExportResult.to_dict()})
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import streamlit as st

from tlcore.config import AugmentationConfig
from tlcore.data import browse, folders
from tlcore.data.dataset import DatasetError, DatasetScan
from tlcore.runs import store

ACTIVE_STATES = tuple(state for state in store.STATES if state not in store.FINAL_STATES)
# Characters that Streamlit's Markdown would treat as formatting (":" starts emoji and colour codes).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")


def text(value: object) -> str:
    """Escapes a string (a class or folder name) so Markdown shows it as plain text."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(value))


def runs_dir() -> Path:
    return store.default_runs_dir()


def data_dir() -> Path:
    """Where uploads and demo sets go: `$TLCORE_DATA_DIR`, else `data/` in the current folder."""
    return Path(os.environ.get("TLCORE_DATA_DIR", "data")).expanduser()


# The server process.


@st.cache_resource(show_spinner="Starting up: loading TensorFlow (once per server start)...")
def prepare_server() -> int:
    """Imports what the pages use and freezes it out of the garbage collector's sight, once per process.

    Streamlit runs two full collections after every script run (see views.server); frozen, they cost
    milliseconds instead of about 0.6 s per page load and per poll of a live run.
    """
    from views import server

    return server.import_and_freeze()


# Data sets.


@st.cache_data(show_spinner=False, max_entries=16)
def _scan(folder: str, stamp: str, validation_fraction: float, seed: int) -> DatasetScan:
    return folders.scan(folder, validation_fraction, seed)


def scan_folder(folder: str | os.PathLike, validation_fraction: float = 0.2, seed: int = 1337) -> DatasetScan:
    """Scans a folder, reusing an earlier scan while no file below it changed.

    Raises:
        DatasetError, ValueError (including browse.FolderTooLargeError), OSError.
    """
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder.")
    return _scan(str(path), browse.folder_stamp(path), validation_fraction, seed)


def use_dataset(scan: DatasetScan) -> None:
    st.session_state["dataset"] = scan
    st.session_state.pop(preview_image_key(scan), None)  # A new scan starts the preview at its first image.


def preview_image_key(scan: DatasetScan) -> str:
    """The augmentation preview's image selector, one per data set folder.

    With one key for every data set, the browser kept showing the previous set's file name in the
    box over the new set's first image (a keyed widget keeps its value in the frontend).
    """
    return "aug_image_" + hashlib.sha256(str(scan.root).encode()).hexdigest()[:16]


def current_dataset() -> DatasetScan | None:
    return st.session_state.get("dataset")


def augmentation() -> AugmentationConfig:
    return st.session_state.get("augmentation") or AugmentationConfig()


# Runs.


def current_run() -> store.Run | None:
    """The session's run; after a reload (empty session), the running run, else the newest queued one."""
    run_id = st.session_state.get("run_id")
    if run_id:
        try:
            return store.resolve(run_id, runs_dir())
        except ValueError:  # Deleted meanwhile.
            st.session_state.pop("run_id", None)
    # The run training first: runs train one at a time, so a newer queued run is waiting for it
    # (showing the queued one hid the progress and Stop button).
    run = store.training_run(runs_dir())
    if run is None:
        run = next((run for run in store.list_runs(runs_dir()) if run.state == "queued"), None)  # Newest first.
    if run is not None:
        st.session_state["run_id"] = run.id
    return run


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def _predictor(run_path: str, model_mtime_ns: int):
    from tlcore.serving import predict

    return predict.load(store.Run(Path(run_path)))


def _model_key(run_id: str) -> tuple[str, int]:
    """(run folder, model file's mtime): what the loaded model and per-model caches are keyed by.

    Raises:
        ValueError: no such run. ModelLoadError: the run has no model file.
    """
    from tlcore.serving import predict

    run = store.resolve(run_id, runs_dir())
    try:
        return str(run.path), run.model_path.stat().st_mtime_ns
    except OSError:
        raise predict.ModelLoadError(f"{run.model_path}: no model file (the run may not have finished a stage).")


def predictor(run_id: str):
    """The run's loaded model, loaded once per run and model file (not on every rerun).

    Raises:
        ValueError: no such run. ModelLoadError: the model cannot be loaded.
    """
    return _predictor(*_model_key(run_id))


@st.cache_data(show_spinner=False, max_entries=256)
def _prediction(run_path: str, model_mtime_ns: int, content: bytes, name: str, top: int, _model) -> dict:
    from tlcore.serving import predict

    return predict.predict_sources(_model, [content], names=[name], top=top)[0]


def predictions(run_id: str, photos: list[tuple[bytes, str]], top: int) -> list[dict]:
    """Each photo's top labels, or its error, cached per model and photo: a rerun (another upload,
    a toggle) predicts only the photos not seen yet.

    Args:
        run_id: the run whose model predicts.
        photos: (content, name) of each photo.
        top: how many labels per photo.

    Raises:
        ValueError: no such run. ModelLoadError: the model cannot be loaded.
    """
    key = _model_key(run_id)  # Resolved once: the model and every cached prediction are keyed by it.
    loaded = _predictor(*key)
    return [_prediction(*key, content, name, top, loaded) for content, name in photos]


@st.cache_data(show_spinner=False, max_entries=64)
def _gradcam(run_path: str, model_mtime_ns: int, content: bytes, name: str, label: str, max_side: int, _model):
    from tlcore.insight import gradcam

    # The heatmap of the model's own input (the upload decoded as for its prediction); `overlay`
    # stretches it back onto the display picture, which lines up: that input is the photo stretched.
    heatmap, _, _ = gradcam.explain_source(_model, content, _model.labels.index(label), name=name)
    picture, _ = browse.thumbnail(content, max_side, name=name)
    return gradcam.overlay(picture, heatmap, alpha=0.45)


def gradcam_overlay(run_id: str, content: bytes, name: str, label: str, max_side: int = 256):
    """The photo (longest side `max_side`) with the Grad-CAM heatmap of one label over it, cached per model.

    Raises:
        ValueError: no such run, an unknown label, or a model Grad-CAM cannot explain.
        ModelLoadError, InvalidImageError.
    """
    key = _model_key(run_id)
    return _gradcam(*key, content, name, label, max_side, _predictor(*key))


# Cached pictures and facts.


@st.cache_data(show_spinner=False, max_entries=256)
def _thumbnail(path: str, mtime_ns: int, max_side: int):
    return browse.thumbnail(path, max_side, square=True)


def thumbnail(path: str, max_side: int = 192):
    """(square RGB array, (width, height) of the photo) of an image file, cached until the file changes."""
    return _thumbnail(path, os.stat(path).st_mtime_ns, max_side)


@st.cache_data(show_spinner=False, max_entries=16)
def _preview(path: str, mtime_ns: int, image_size: int, settings: dict, count: int, seed: int):
    from tlcore.data import augment, images

    image = images.load_resized(path, image_size)
    return image, augment.preview(image, AugmentationConfig.from_dict(settings), count=count, seed=seed)


def preview(path: str, image_size: int, settings: AugmentationConfig, count: int, seed: int):
    """(the image as training sees it, `count` augmented copies), cached per settings and seed."""
    return _preview(path, os.stat(path).st_mtime_ns, image_size, settings.to_dict(), count, seed)


@st.cache_data(show_spinner="Building the layer stack...", max_entries=32)
def layer_stack(
    backbone: str, image_size: int, strategy: str, alpha: float, num_classes: int, head: str, dense_units: int
):
    from tlcore.insight import layer_stack

    return layer_stack.layer_stack(
        backbone, image_size, strategy, alpha=alpha, num_classes=num_classes, head=head, dense_units=dense_units
    )


@st.cache_data(show_spinner=False, ttl=60)
def weights_status(backbone: str, image_size: int | None = None, alpha: float = 1.0):
    from tlcore.models import backbones

    return backbones.weights_status(backbone, image_size, alpha)


@st.cache_data(show_spinner=False, ttl=60)
def offline_variants(backbone: str) -> list[tuple[float, int]]:
    from tlcore.models import backbones

    return backbones.offline_variants(backbone)


def markdown_table(rows: list[dict]) -> str:
    """A Markdown table of `rows` (one dict per row, the first row's keys as the header), each cell escaped.

    For small read-only tables on light pages: st.dataframe's grid is a further 1.2 MB of JavaScript
    that a first visit's browser has to fetch and compile (about 0.5 s on two busy cores).
    """
    if not rows:
        raise ValueError("markdown_table needs at least one row, received none.")
    header = list(rows[0])
    lines = ["| " + " | ".join(text(name) for name in header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(text("" if row[name] is None else row[name]) for name in header) + " |" for row in rows]
    return "\n".join(lines)


def dataset_line(scan: DatasetScan) -> str:
    """'catsdogs: 2 classes (cats, dogs), 40 train / 20 validation images', Markdown-escaped."""
    counts = {split: len(samples) for split, samples in scan.splits.items()}
    shown = ", ".join(scan.classes[:6]) + (", ..." if scan.num_classes > 6 else "")
    parts = " / ".join(f"{count} {split}" for split, count in counts.items())
    return text(f"{Path(scan.root).name}: {scan.num_classes} classes ({shown}), {parts} images")
