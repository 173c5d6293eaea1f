"""Evaluate a trained run on its validation (or test) split: confusion matrix, per-class scores, mistakes.

The split is the one training used: the data set recorded in the run's `dataset.json` when its
files are unchanged on disk (no image is decoded to find them), else the run's data set scanned
again with the run's own `data_dir`, `validation_fraction` and `split_seed`. The images go through the
one decoder (`tlcore.data.images.load_resized`) into the run's saved model, exactly as `tlcore.serving.predict` does.

The metrics are small pure functions on arrays (`tlcore.insight.metrics`, and `find_mistakes`), testable
without a model. The result is cached in the run folder as `evaluation-<split>.json`, keyed by the model
file's modification time, so a page can show it instantly and a retrained model is never shown stale figures.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tlcore import files, progress
from tlcore.config import TrainConfig
from tlcore.data import folders, pipeline
from tlcore.data.dataset import DatasetScan, fingerprint
from tlcore.insight.metrics import accuracy, confusion_matrix, normalise_rows, per_class_scores
from tlcore.runs import store
from tlcore.serving import predict

SPLITS = ("train", "validation", "test")
# Images decoded and predicted per step: bounds memory whatever the split's size.
CHUNK_SIZE = 64
# Probabilities are clipped here before the log, as Keras' cross-entropy does.
EPSILON = 1e-7
# The data set as training scanned it, written into the run folder by `tlcore.training.trainer.train`.
DATASET_FILE = "dataset.json"


@dataclass(frozen=True)
class Mistake:
    """One misclassified image.

    Attributes:
        path: the image file.
        true_label: its class (folder name).
        predicted_label: the class the model chose.
        probability: the model's probability of `predicted_label` (its confidence in the mistake).
        loss: the cross-entropy of the true class, -log(probability of `true_label`).
    """

    path: str
    true_label: str
    predicted_label: str
    probability: float
    loss: float


@dataclass(frozen=True)
class Evaluation:
    """A run's model measured on one split.

    Attributes:
        split: "validation", "test" or "train".
        classes: class names in label order.
        confusion: counts, rows = true class, columns = predicted class.
        normalised: each row of `confusion` divided by its total (a row of zeros for an empty class).
        precision: per class, correct / predicted as the class (0 when never predicted).
        recall: per class, correct / images of the class (0 when the class has no image).
        f1: per class, the harmonic mean of precision and recall (0 when both are 0).
        support: per class, the number of images.
        accuracy: correct / all images.
        mistakes: the misclassified images, most confident first.
        model_mtime_ns: the modification time of the model file that was evaluated.
    """

    split: str
    classes: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]
    normalised: tuple[tuple[float, ...], ...]
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    support: tuple[int, ...]
    accuracy: float
    mistakes: tuple[Mistake, ...]
    model_mtime_ns: int

    def __post_init__(self) -> None:
        count = len(self.classes)
        if count < 2:
            raise ValueError(f"classes must name at least 2 classes, received {self.classes!r}.")
        for name in ("confusion", "normalised"):
            matrix = getattr(self, name)
            if len(matrix) != count or any(len(row) != count for row in matrix):
                raise ValueError(
                    f"{name} must be {count} x {count} (one row and column per class), "
                    f"received {[len(row) for row in matrix]} columns per row."
                )
        for name in ("precision", "recall", "f1", "support"):
            if len(getattr(self, name)) != count:
                raise ValueError(
                    f"{name} must have {count} values (one per class), received {len(getattr(self, name))}."
                )
        if not 0.0 <= self.accuracy <= 1.0:
            raise ValueError(f"accuracy must be in [0, 1], received {self.accuracy!r}.")

    @property
    def images(self) -> int:
        return int(sum(self.support))

    def per_class(self) -> list[dict]:
        """One row per class: class, precision, recall, f1, support (a table for people)."""
        return [
            {
                "class": name,
                "precision": self.precision[index],
                "recall": self.recall[index],
                "f1": self.f1[index],
                "support": self.support[index],
            }
            for index, name in enumerate(self.classes)
        ]

    def to_dict(self) -> dict:
        """A JSON-ready dict (what `evaluation-<split>.json` holds)."""
        values = asdict(self)
        values["classes"] = list(self.classes)
        values["images"] = self.images
        values["per_class"] = self.per_class()
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "Evaluation":
        return cls(
            split=values["split"],
            classes=tuple(values["classes"]),
            confusion=tuple(tuple(int(cell) for cell in row) for row in values["confusion"]),
            normalised=tuple(tuple(float(cell) for cell in row) for row in values["normalised"]),
            precision=tuple(float(value) for value in values["precision"]),
            recall=tuple(float(value) for value in values["recall"]),
            f1=tuple(float(value) for value in values["f1"]),
            support=tuple(int(value) for value in values["support"]),
            accuracy=float(values["accuracy"]),
            mistakes=tuple(Mistake(**item) for item in values["mistakes"]),
            model_mtime_ns=int(values["model_mtime_ns"]),
        )


def find_mistakes(
    probabilities: np.ndarray, true_labels: Sequence[int], paths: Sequence[str], classes: Sequence[str]
) -> list[Mistake]:
    """The misclassified images, most confident first (ties: highest loss first, then path).

    Args:
        probabilities: (N, num_classes) class probabilities.
        true_labels: (N,) class indices.
        paths: the N image paths.
        classes: class names.

    Returns:
        One Mistake per image whose top class is not its true class.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    true_labels = np.asarray(true_labels, dtype=np.int64)
    count = len(true_labels)
    if probabilities.ndim != 2 or probabilities.shape != (count, len(classes)) or len(paths) != count:
        raise ValueError(
            f"expected probabilities of shape (N, {len(classes)}) with N labels and N paths, received "
            f"{probabilities.shape}, {len(true_labels)} labels and {len(paths)} paths."
        )
    predicted = probabilities.argmax(axis=1)
    mistakes = []
    for index in np.flatnonzero(predicted != true_labels):
        true_probability = np.clip(probabilities[index, true_labels[index]], EPSILON, 1.0)
        mistakes.append(
            Mistake(
                path=str(paths[index]),
                true_label=classes[true_labels[index]],
                predicted_label=classes[predicted[index]],
                probability=float(probabilities[index, predicted[index]]),
                loss=float(-np.log(true_probability)),
            )
        )
    return sorted(mistakes, key=lambda item: (-item.probability, -item.loss, item.path))


def summarise(
    split: str,
    classes: Sequence[str],
    probabilities: np.ndarray,
    true_labels: Sequence[int],
    paths: Sequence[str],
    model_mtime_ns: int = 0,
) -> Evaluation:
    """An Evaluation from a split's probabilities and true labels (no model needed)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    matrix = confusion_matrix(true_labels, probabilities.argmax(axis=1), len(classes))
    precision, recall, f1, support = per_class_scores(matrix)
    return Evaluation(
        split=split,
        classes=tuple(classes),
        confusion=tuple(tuple(int(cell) for cell in row) for row in matrix),
        normalised=tuple(tuple(float(cell) for cell in row) for row in normalise_rows(matrix)),
        precision=tuple(float(value) for value in precision),
        recall=tuple(float(value) for value in recall),
        f1=tuple(float(value) for value in f1),
        support=tuple(int(value) for value in support),
        accuracy=accuracy(matrix),
        mistakes=tuple(find_mistakes(probabilities, true_labels, paths, classes)),
        model_mtime_ns=int(model_mtime_ns),
    )


# The run's data set and model.


def recorded_dataset(run: store.Run) -> DatasetScan | None:
    """The data set the run was trained on, as its `dataset.json` recorded it, when its files are unchanged.

    Rebuilding it decodes no image (a scan decodes every file). Files added to the folder since
    training are not in the record: the recorded split is the one training measured.

    Returns:
        The recorded DatasetScan, or None (scan again) when the run has no usable record (none,
        damaged, or written before the file lists were recorded), the record is of another folder or
        other split settings than the run's config.json, or a recorded file is gone or has another
        size or modification time (the fingerprint differs).
    """
    values = files.read_json(run.path / DATASET_FILE)
    try:
        dataset = DatasetScan.from_json(values)
    except ValueError:
        return None
    config = run.config()
    if not config.get("data_dir"):
        return None
    data_dir = Path(config["data_dir"]).expanduser().resolve()
    if not Path(dataset.root).is_relative_to(data_dir):
        return None
    if (dataset.validation_fraction, dataset.seed) != _recorded_split(config):
        return None
    try:
        current = fingerprint(dataset)
    except OSError:
        return None  # A recorded file is gone.
    if current != values.get("fingerprint"):
        return None
    return dataset


def _recorded_split(config: dict) -> tuple[float, int]:
    """The (validation_fraction, split_seed) a run's config.json records; an older one without split_seed
    split with its seed; TrainConfig's defaults where it has neither."""
    seed = config.get("split_seed", config.get("seed", TrainConfig.split_seed))
    return (config.get("validation_fraction", TrainConfig.validation_fraction), seed)


def dataset_for(run: store.Run, split: str | None = None) -> DatasetScan:
    """The run's data set, checked against its labels: the recorded one when unchanged, else scanned.

    Args:
        run: the run.
        split: the split that will be used; a record without it (a test/ folder added after
            training) is not used, the folder is scanned instead.

    Returns:
        `recorded_dataset(run)` when it is usable (and has `split`), else the data set scanned
        with the run's own `data_dir`, `validation_fraction` and `split_seed`.

    Raises:
        data.DatasetError: the data set folder is gone or no longer usable.
        ValueError: its classes are not the ones the model was trained on.
    """
    config = run.config()
    if not config.get("data_dir"):
        raise ValueError(f"Run {run.id}: its config.json names no data_dir; expected the training data set folder.")
    dataset = recorded_dataset(run)
    if dataset is None or (split is not None and split not in dataset.splits):
        dataset = folders.scan(config["data_dir"], *_recorded_split(config))
    labels = tuple(run.labels())
    if labels and dataset.classes != labels:
        raise ValueError(
            f"Run {run.id}: the data set at {dataset.root} now has classes {list(dataset.classes)}, "
            f"expected the ones the model was trained on, {list(labels)}."
        )
    return dataset


def check_split(dataset: DatasetScan, split: str) -> None:
    """Raises a ValueError naming the available splits when `split` is not one of them."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}. Expected one of {list(SPLITS)}.")
    if split not in dataset.splits:
        hint = " (add a test/<class>/ folder beside train/ and validation/)" if split == "test" else ""
        raise ValueError(
            f"The data set at {dataset.root} has no {split} split{hint}: received split={split!r}, "
            f"expected one of {sorted(dataset.splits)}."
        )


def probabilities_for(predictor, paths: Sequence[str], display=None) -> np.ndarray:
    """Class probabilities (N, num_classes) of image files, decoded by the one decoder, in chunks.

    `display` (a `tlcore.progress.Display`) shows a bar of the images done.
    """
    chunks = []
    bar = (display or progress.Display()).task("Evaluating", len(paths))
    try:
        for start in range(0, len(paths), CHUNK_SIZE):
            images = pipeline.load_images(paths[start : start + CHUNK_SIZE], predictor.image_size)
            chunks.append(predictor.probabilities(images))
            bar.advance(len(images))
    finally:
        bar.close()
    return np.concatenate(chunks) if chunks else np.zeros((0, len(predictor.labels)))


def cache_path(run: store.Run, split: str) -> Path:
    return run.path / f"evaluation-{split}.json"


def _model_mtime_ns(run: store.Run) -> int | None:
    try:
        return run.model_path.stat().st_mtime_ns
    except OSError:
        return None


def load_cached(
    run: str | os.PathLike | store.Run, split: str = "validation", runs_dir: str | os.PathLike | None = None
) -> Evaluation | None:
    """The cached evaluation of a split, or None when there is none or the model changed since."""
    if not isinstance(run, store.Run):
        run = store.resolve(run, runs_dir)
    values = files.read_json(cache_path(run, split))
    mtime = _model_mtime_ns(run)
    if not isinstance(values, dict) or mtime is None or values.get("model_mtime_ns") != mtime:
        return None
    try:
        return Evaluation.from_dict(values)
    except (KeyError, TypeError, ValueError):
        return None  # A damaged cache is recomputed.


def evaluate(
    run: str | os.PathLike | store.Run,
    split: str = "validation",
    runs_dir: str | os.PathLike | None = None,
    refresh: bool = False,
    display=None,
) -> Evaluation:
    """Evaluates a run's model on a split of its data set; cached in the run folder.

    Args:
        run: a Run, or a run id or path inside `runs_dir`.
        split: "validation" (default), "test" (when the data set has test/) or "train".
        runs_dir: the runs folder (default `runs.default_runs_dir()`).
        refresh: compute again even when a cached result for this model exists.
        display: a `tlcore.progress.Display` showing a bar of the images predicted, or None.

    Returns:
        An Evaluation; also written to `<run>/evaluation-<split>.json`.

    Raises:
        ValueError: unknown split, a split the data set does not have, or classes that changed.
        data.DatasetError: the run's data set folder is missing or unusable.
        predict.ModelLoadError: the run has no usable model.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}. Expected one of {list(SPLITS)}.")
    if not isinstance(run, store.Run):
        run = store.resolve(run, runs_dir)
    if not refresh:
        cached = load_cached(run, split)
        if cached is not None:
            return cached
    dataset = dataset_for(run, split)
    check_split(dataset, split)
    mtime = _model_mtime_ns(run)  # Read before loading: a model replaced meanwhile is evaluated again next time.
    predictor = predict.load(run)
    paths = dataset.paths(split)
    result = summarise(
        split,
        dataset.classes,
        probabilities_for(predictor, paths, display),
        dataset.labels(split),
        paths,
        model_mtime_ns=mtime or 0,
    )
    files.write_json(cache_path(run, split), result.to_dict())
    return result
