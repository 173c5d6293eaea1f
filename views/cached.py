"""Calls into tlcore whose results Streamlit keeps: scans, thumbnails, loaded models, predictions.

Each is keyed by what it depends on (a folder's stamp, a file's mtime, a model file's mtime), so a
rerun reuses the result until that changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import streamlit as st

from tlcore.config import AugmentationConfig
from tlcore.data import browse, folders, images
from tlcore.data.dataset import DatasetError, DatasetScan
from tlcore.files import printable
from tlcore.insight import charts, gradcam
from tlcore.models import registry
from tlcore.runs import store
from tlcore.serving import predict
from views import server

# Data sets.


# The cached functions take paths as bytes (os.fsencode): Streamlit hashes a str argument as UTF-8, which a
# name that is not UTF-8 (a str with surrogates, PEP 383) cannot be, and the page failed as a whole.


@st.cache_data(show_spinner=False, max_entries=16)
def _scan(folder: bytes, stamp: str, validation_fraction: float, seed: int) -> DatasetScan:
    return folders.scan(os.fsdecode(folder), validation_fraction, seed)


def scan_folder(folder: str | os.PathLike, validation_fraction: float = 0.2, seed: int = 1337) -> DatasetScan:
    """Scans a folder, reusing an earlier scan while no file below it changed.

    Raises:
        DatasetError, ValueError (including browse.FolderTooLargeError), OSError.
    """
    path = folders.existing_folder(folder)  # Before the stamp below, which reads the folder.
    scanned = _scan(os.fsencode(path), browse.folder_stamp(path), validation_fraction, seed)
    # Class names are labels: every chart, table, prediction and export of the app shows them as text.
    unnamed = [name for name in scanned.classes if printable(name) != name]
    if unnamed:
        raise DatasetError(
            f"{printable(scanned.root)}: the class folder {printable(unnamed[0])} has a name that is not UTF-8 "
            "text, which the app cannot show: rename it to use this data set here (the CLI, `tlcore train`, "
            "takes it as it is)."
        )
    return scanned


# Models and predictions.


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def _predictor(run_path: str, model_mtime_ns: int):
    return predict.load(store.Run(Path(run_path)))


def _model_key(run_id: str) -> tuple[str, int]:
    """(run folder, model file's mtime): what the loaded model and per-model caches are keyed by.

    Raises:
        ValueError: no such run. ModelLoadError: the run has no model file.
    """
    run = store.resolve(run_id, server.runs_dir())
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


def content_digest(content: bytes) -> str:
    """What an upload's cached pictures and predictions are keyed by: its bytes' SHA-256, not its name."""
    return hashlib.sha256(content).hexdigest()


@st.cache_data(show_spinner=False, max_entries=256)
def _prediction(run_path: str, model_mtime_ns: int, digest: str, name: str, top: int, _content: bytes, _model) -> dict:
    return predict.predict_sources(_model, [_content], names=[name], top=top)[0]


def predictions(run_id: str, photos: list[tuple[bytes, str]], top: int) -> list[dict]:
    """Each photo's top labels, or its error, cached per model and photo content: a rerun (another
    upload, a toggle) predicts only the photos not seen yet.

    Args:
        run_id: the run whose model predicts.
        photos: (content, name) of each photo.
        top: how many labels per photo.

    Raises:
        ValueError: no such run. ModelLoadError: the model cannot be loaded.
    """
    key = _model_key(run_id)  # Resolved once: the model and every cached prediction are keyed by it.
    loaded = _predictor(*key)
    return [_prediction(*key, content_digest(content), name, top, content, loaded) for content, name in photos]


@st.cache_data(show_spinner=False, max_entries=256)
def _upload_thumbnail(digest: str, name: str, max_side: int, _content: bytes):
    return browse.thumbnail(_content, max_side, name=name)


def upload_thumbnail(content: bytes, name: str, max_side: int = 256):
    """(RGB array, (width, height) of the photo) of an upload, decoded once per content (at a reduced
    scale where the format allows), not again on every rerun.

    Raises:
        InvalidImageError: as `tlcore.data.images.decode`.
    """
    return _upload_thumbnail(content_digest(content), name, max_side, content)


@st.cache_data(show_spinner=False, max_entries=64)
def _gradcam(run_path: str, model_mtime_ns: int, digest: str, name: str, label: str, max_side: int, _content, _model):
    # The heatmap of the model's own input (the upload decoded as for its prediction); `overlay`
    # stretches it back onto the display picture, which lines up: that input is the photo stretched.
    heatmap, _, _ = gradcam.explain_source(_model, _content, _model.labels.index(label), name=name)
    picture, _ = _upload_thumbnail(digest, name, max_side, _content)
    return picture, heatmap


# The heatmap's weight over the photo unless the person sets another.
GRADCAM_OPACITY = 0.45


def gradcam_overlay(
    run_id: str, content: bytes, name: str, label: str, max_side: int = 256, opacity: float = GRADCAM_OPACITY
):
    """The photo (longest side `max_side`) with the Grad-CAM heatmap of one label over it.

    The heatmap is cached per model; the blend at `opacity` (0: the photo, 1: the heatmap) is not,
    so moving the opacity slider computes no gradient again.

    Raises:
        ValueError: no such run, an unknown label, or a model Grad-CAM cannot explain.
        ModelLoadError, InvalidImageError.
    """
    key = _model_key(run_id)
    picture, heatmap = _gradcam(*key, content_digest(content), name, label, max_side, content, _predictor(*key))
    return gradcam.overlay(picture, heatmap, alpha=float(opacity))


# Cached pictures and facts.


@st.cache_data(show_spinner=False, max_entries=256)
def _thumbnail(path: bytes, mtime_ns: int, max_side: int):
    return browse.thumbnail(os.fsdecode(path), max_side, square=True)


def thumbnail(path: str, max_side: int = 192):
    """(square RGB array, (width, height) of the photo) of an image file, cached until the file changes."""
    return _thumbnail(os.fsencode(path), os.stat(path).st_mtime_ns, max_side)


@st.cache_data(show_spinner=False, max_entries=16)
def _preview(path: bytes, mtime_ns: int, image_size: int, settings: dict, count: int, seed: int):
    # Heavy: imports Keras.
    from tlcore.data import augment

    image = images.load_resized(os.fsdecode(path), image_size)
    return image, augment.preview(image, AugmentationConfig.from_dict(settings), count=count, seed=seed)


def preview(path: str, image_size: int, settings: AugmentationConfig, count: int, seed: int):
    """(the image as training sees it, `count` augmented copies), cached per settings and seed."""
    return _preview(os.fsencode(path), os.stat(path).st_mtime_ns, image_size, settings.to_dict(), count, seed)


@st.cache_data(show_spinner="Building the layer stack...", max_entries=32)
def layer_stack(
    backbone: str,
    image_size: int,
    strategy: str,
    alpha: float,
    num_classes: int,
    head: str,
    dense_units: int,
    feature_levels: int,
):
    # Here, not at the top: this function has the module's name.
    from tlcore.insight import layer_stack

    return layer_stack.layer_stack(
        backbone,
        image_size,
        strategy,
        alpha=alpha,
        num_classes=num_classes,
        head=head,
        dense_units=dense_units,
        feature_levels=feature_levels,
    )


@st.cache_data(show_spinner=False, ttl=60)
def weights_status(backbone: str, image_size: int | None = None, alpha: float = 1.0):
    return registry.weights_status(backbone, image_size, alpha)


@st.cache_data(show_spinner=False, ttl=60)
def offline_variants(backbone: str) -> list[tuple[float, int]]:
    return registry.offline_variants(backbone)


# A run's curves.


@st.cache_resource(show_spinner=False, max_entries=32)
def _history_charts(run_path: str, epochs: int, last_record: str, _records: tuple):
    return charts.history(list(_records))


def history_charts(run_path: str | os.PathLike, records: list[dict]):
    """A run's loss and accuracy charts (`charts.history`), built once per epoch recorded.

    A live run's view redraws every 2 s, and building the charts was the larger part of each
    redraw while the epochs stay the same; each session that watches shares them.
    """
    last_record = json.dumps(records[-1], sort_keys=True, default=str) if records else ""
    return _history_charts(str(run_path), len(records), last_record, tuple(records))
