"""Predictions from a trained run: load its model safely, decode like training did, rank labels."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tlcore import wording
from tlcore.data import images
from tlcore.data.images import InvalidImageError
from tlcore.models.inference import inference_function
from tlcore.runs import saved_model, store


class ModelLoadError(Exception):
    """A run's model file that cannot (or must not) be loaded; the message says why."""


# Images per forward pass: bounds the memory of a large upload or folder.
PREDICT_BATCH_SIZE = 32


@dataclass(frozen=True)
class Predictor:
    """A loaded model with its labels and input size, and its forward pass compiled once."""

    model: object
    labels: tuple[str, ...]
    image_size: int
    forward: Callable = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One compiled function for the predictor's life: predictions in a long-running app
        # neither retrace nor grow memory with every upload (see tlcore.models.inference).
        object.__setattr__(self, "forward", inference_function(self.model))

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, num_classes) for uint8 images (N, size, size, 3)."""
        if len(batch) == 0:
            return np.zeros((0, len(self.labels)))
        output = np.concatenate(
            [
                self.forward(batch[start : start + PREDICT_BATCH_SIZE])
                for start in range(0, len(batch), PREDICT_BATCH_SIZE)
            ]
        ).astype("float64")
        if output.shape[-1] == 1:  # One sigmoid unit: the probability of the second class.
            output = np.concatenate([1.0 - output, output], axis=-1)
        return output


def load_model_file(path: str | os.PathLike):
    """Loads a `.keras` file with `safe_mode=True` (never disabled); refuses anything else clearly.

    Raises:
        ModelLoadError: the file is missing, not a Keras archive, damaged, or needs unsafe code
            (a Lambda layer, say).
    """
    # Heavy: imports Keras.
    import keras

    import tlcore.models.layers  # noqa: F401 - registers tlcore's own layers for deserialisation.

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(
            f"{path}: no model file: a run saves its model when it ends done or stopped and when a stage before "
            "its last finishes, so one interrupted or failed in its first stage has none (an interrupted run can "
            "be resumed: `tlcore train --resume RUN`)."
        )
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path}: not a Keras model archive (.keras files are zip archives).")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - Keras raises many types for bad archives.
        message = str(error)
        if "Lambda" in message or "safe_mode" in message or "unsafe" in message.lower():
            raise ModelLoadError(
                f"{path}: refused: the model contains code (e.g. a Lambda layer) that could run arbitrary "
                "Python; only models built by tlcore are loaded."
            ) from None
        raise ModelLoadError(
            f"{path}: the model file is damaged or incompatible ({type(error).__name__}: {message[:300]})."
        ) from None


def load(run: str | os.PathLike | store.Run, runs_dir: str | os.PathLike | None = None) -> Predictor:
    """Loads a run's model and labels; only models inside the runs folder are loaded, of runs that ended (or
    were cut short after a stage: `tlcore.runs.saved_model.usable`).

    Args:
        run: a Run, or a run id or path inside `runs_dir`.
        runs_dir: the runs folder (default `runs.default_runs_dir()`).

    Returns:
        A Predictor.
    """
    if not isinstance(run, store.Run):
        run = store.resolve(run, runs_dir)
    # A live run's model file is a finished stage's, not what the run will end with (saved_model).
    reason = saved_model.why_not_usable(run)
    if reason is not None:
        raise ModelLoadError(reason)
    model = load_model_file(run.model_path)
    labels = tuple(run.labels())
    if not labels:  # Missing or damaged: not a mismatch with the model.
        raise ModelLoadError(f"{run.path / 'labels.json'}: missing or damaged, expected the list of class names.")
    image_size = int(model.input_shape[1])
    outputs = int(model.output_shape[-1])
    if len(labels) < 2 or (outputs != len(labels) and not (outputs == 1 and len(labels) == 2)):
        raise ModelLoadError(
            f"{run.path}: labels.json ({wording.count(len(labels), 'label')}) does not match the model's "
            f"{wording.count(outputs, 'output')}."
        )
    return Predictor(model=model, labels=labels, image_size=image_size)


def top_k(probabilities: np.ndarray, labels: Sequence[str], top: int) -> list[dict]:
    order = np.argsort(-probabilities, kind="stable")[: max(1, min(top, len(labels)))]
    return [{"label": labels[index], "probability": float(probabilities[index])} for index in order]


def predict_sources(
    predictor: Predictor, sources: Sequence, names: Sequence[str] | None = None, top: int = 3
) -> list[dict]:
    """Top-N labels for each image; a bad image gets its reason and the others are still predicted.

    Args:
        predictor: from `load`.
        sources: paths or bytes (uploads).
        names: names to report (defaults to the paths).
        top: how many labels per image.

    Returns:
        One dict per source, in order: {"image", "top": [{"label", "probability"}, ...]} or
        {"image", "error"}.
    """
    names = list(names) if names is not None else [str(source) for source in sources]
    results: list[dict | None] = [None] * len(sources)
    decoded, positions = [], []
    for position, (source, name) in enumerate(zip(sources, names)):
        try:
            decoded.append(images.load_resized(source, predictor.image_size, name=name))
            positions.append(position)
        except InvalidImageError as error:
            results[position] = {"image": name, "error": error.reason}
    if decoded:
        probabilities = predictor.probabilities(np.stack(decoded))
        for position, row in zip(positions, probabilities):
            results[position] = {"image": names[position], "top": top_k(row, predictor.labels, top)}
    return results
