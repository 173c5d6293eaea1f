"""The data explorer: a map of a data set, its near-duplicates and leaks, and its likely wrong labels.

Everything is computed from one pretrained backbone's features: the feature maps of the feature cache
(`tlcore.training.extraction`, the same entries a feature-extraction run uses), averaged over their
spatial positions and scaled to unit length, so a dot product of two rows is their cosine similarity.

- The map projects the vectors on their first two principal components.
- Near-duplicates are the pairs whose cosine similarity reaches a threshold, found exactly by
  blockwise matrix products (memory grows with the block, never with the square of the image count).
  A pair is a leak when it joins train to validation or test (the model is scored on a photo it
  trained on) or two classes (the same photo with two labels).
- Likely wrong labels come from confident learning (cleanlab's `find_label_issues`) on out-of-fold
  probabilities of a logistic regression on the vectors: no image is scored by a model that trained on it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from tlcore.config import from_preset
from tlcore.data.dataset import DatasetScan
from tlcore.models.registry import BACKBONES

DEFAULT_BACKBONE = "efficientnet_lite0"
DEFAULT_IMAGE_SIZE = 160
# Re-encoded or resized copies of one photo stay above it; distinct photos of one breed stay below
# (measured in benchmarks/explore.py, see benchmarks/RESULTS.md).
DEFAULT_THRESHOLD = 0.93
DEFAULT_FOLDS = 5
# Inverse regularisation of the logistic regression. Unit-length vectors have small coordinates, so
# scikit-learn's default of 1.0 leaves probabilities too timid for confident learning's thresholds.
DEFAULT_REGULARISATION_INVERSE = 10.0
# Similarity entries per block of the duplicate search (float32: 64 MiB).
BLOCK_ENTRIES = 16 * 1024 * 1024
# Feature-map rows read from the cache at once while pooling.
POOLING_ROWS = 256


@dataclass(frozen=True)
class ExploreSettings:
    """What the explorer computes with.

    Attributes:
        backbone: the pretrained backbone whose features are used (a `tlcore.models.backbones` key).
        image_size: the side of the square images fed to it, in pixels.
        threshold: the cosine similarity from which two images are near-duplicates, in (0, 1].
        folds: the folds of the out-of-fold probabilities (fewer when a class has fewer images).
        seed: the seed of the folds.
    """

    backbone: str = DEFAULT_BACKBONE
    image_size: int = DEFAULT_IMAGE_SIZE
    threshold: float = DEFAULT_THRESHOLD
    folds: int = DEFAULT_FOLDS
    seed: int = 1337

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"Unknown backbone {self.backbone!r}. Expected one of {sorted(BACKBONES)}.")
        minimum = BACKBONES[self.backbone].min_size
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or not minimum <= self.image_size:
            raise ValueError(f"image_size must be an integer >= {minimum}, received {self.image_size!r}.")
        if (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, (int, float))
            or not 0 < self.threshold <= 1
        ):
            raise ValueError(f"threshold must be a cosine similarity in (0, 1], received {self.threshold!r}.")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise ValueError(f"folds must be an integer >= 2, received {self.folds!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, received {self.seed!r}.")


@dataclass(frozen=True)
class MapPoint:
    """One image on the map: its file, class name, split and coordinates."""

    path: str
    label: str
    split: str
    x: float
    y: float


@dataclass(frozen=True)
class DuplicatePair:
    """Two images at least `threshold` alike; `leak` when they join train to another split or two classes."""

    a: str
    b: str
    similarity: float
    leak: bool


@dataclass(frozen=True)
class Suspect:
    """An image whose label is likely wrong.

    Attributes:
        path: the file.
        label: its class now.
        suggested: the class the out-of-fold model gives it the highest probability of.
        score: 1 - the out-of-fold probability of its class now: the higher, the likelier wrong.
    """

    path: str
    label: str
    suggested: str
    score: float


@dataclass(frozen=True)
class Exploration:
    """What the explorer found in a data set, and what it cost."""

    map: tuple[MapPoint, ...]
    duplicates: tuple[DuplicatePair, ...]
    suspects: tuple[Suspect, ...]
    seconds: float
    features_from_cache: bool

    @property
    def leaks(self) -> tuple[DuplicatePair, ...]:
        return tuple(pair for pair in self.duplicates if pair.leak)

    def to_json(self) -> dict:
        """{"map": [{path, label, split, x, y}], "duplicates": [{a, b, similarity, leak}],
        "suspects": [{path, label, suggested, score}]}, most alike pairs and likeliest wrong labels first."""
        return {
            "map": [vars(point) for point in self.map],
            "duplicates": [vars(pair) for pair in self.duplicates],
            "suspects": [vars(suspect) for suspect in self.suspects],
        }


def dataset_items(dataset: DatasetScan) -> tuple[list[str], np.ndarray, list[str]]:
    """(paths, label indices, split names) of every image, split by split in the order features are cached."""
    paths, labels, splits = [], [], []
    for split in dataset.splits:
        paths += dataset.paths(split)
        labels.append(dataset.labels(split))
        splits += [split] * len(dataset.paths(split))
    return paths, np.concatenate(labels), splits


def pooled_features(
    dataset: DatasetScan, settings: ExploreSettings, runs_dir: str | os.PathLike | None = None, stream=None
) -> tuple[np.ndarray, bool]:
    """Unit-length pooled feature vectors of every image, in `dataset_items` order.

    Args:
        dataset: the data set.
        settings: the backbone and image size.
        runs_dir: the runs folder whose feature cache is read and filled; None: a temporary cache.
        stream: where extraction reports what it does (None: silence).

    Returns:
        (an (images, channels) float32 array, whether every split came from the cache).
    """
    # The explorer's neighbours and outliers were tuned on the base's output alone: one feature level.
    vectors, from_cache = spatially_averaged_features(
        dataset, settings.backbone, settings.image_size, 1, tuple(dataset.splits), runs_dir, stream
    )
    return normalise(np.concatenate([vectors[split] for split in dataset.splits])), from_cache


def spatially_averaged_features(
    dataset: DatasetScan,
    backbone: str,
    image_size: int,
    feature_levels: int,
    splits: tuple[str, ...],
    runs_dir: str | os.PathLike | None = None,
    stream=None,
) -> tuple[dict[str, np.ndarray], bool]:
    """The frozen base's feature maps of the splits' images, averaged over their spatial positions.

    The maps are the feature cache's entries (`tlcore.training.extraction`), the ones a feature-extraction
    run with the same backbone, size and feature levels reads, so either reuses what the other extracted.

    Args:
        dataset: the data set.
        backbone, image_size, feature_levels: as in TrainConfig.
        splits: the splits to extract.
        runs_dir: the runs folder whose feature cache is read and filled; None: a temporary cache.
        stream: where extraction reports what it does (None: silence).

    Returns:
        ({split: an (images, channels) float32 array in the split's order}, whether every split came
        from the cache).

    Raises:
        ValueError: settings a run would refuse (an image size too small for the backbone, say).
    """
    # Heavy: import TensorFlow and Keras, which the pages that only show an exploration never need.
    from tlcore.models import backbones, heads
    from tlcore.training import extraction, training_context

    config = from_preset(
        "default", data_dir=dataset.root, backbone=backbone, image_size=image_size, feature_levels=feature_levels
    )
    context = training_context.TrainingContext(
        config=config, dataset=dataset, stream=stream, runs_dir=None if runs_dir is None else str(runs_dir)
    )
    try:
        base = heads.build_frozen_base(config)
        preprocess = backbones.preprocessing_layer(config.backbone)
        feature_maps, _, from_cache = extraction.extract_features(context, base, preprocess, splits=splits)
        return {split: pool(feature_maps[split]) for split in splits}, from_cache
    finally:
        context.close()


def pool(feature_file) -> np.ndarray:
    """The mean over the spatial positions of each row of a cached feature file, a few rows at a time.

    The rows are read in order, so the file is mapped rather than read row by row with seeks.
    """
    maps = np.load(feature_file.path, mmap_mode="r")
    vectors = np.empty((len(maps), maps.shape[-1]), dtype="float32")
    for start in range(0, len(maps), POOLING_ROWS):
        rows = np.asarray(maps[start : start + POOLING_ROWS])
        vectors[start : start + len(rows)] = rows.reshape(len(rows), -1, rows.shape[-1]).mean(axis=1)
    return vectors


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (an all-zero row stays zero)."""
    lengths = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(lengths, 1e-12)).astype("float32")


def project_2d(vectors: np.ndarray) -> np.ndarray:
    """(images, 2) coordinates on the first two principal components (zeros where there are fewer).

    From the eigenvectors of the channels' covariance: a channels x channels problem whatever the
    number of images, where a singular value decomposition of all the vectors grows with it.
    """
    # Heavy: scipy.linalg is slow to import, and only the map needs it.
    import scipy.linalg

    centred = vectors - vectors.mean(axis=0)
    coordinates = np.zeros((len(vectors), 2), dtype="float32")
    channels = centred.shape[1]
    components = min(2, len(vectors) - 1, channels)
    if components < 1:
        return coordinates
    # Only the largest eigenpairs: a fraction of the time of the full decomposition.
    _, eigenvectors = scipy.linalg.eigh(centred.T @ centred, subset_by_index=[channels - components, channels - 1])
    largest = eigenvectors[:, ::-1]  # eigh sorts ascending.
    # A sign convention, so the same data always draws the same map: largest coordinate positive.
    signs = np.sign(largest[np.abs(largest).argmax(axis=0), np.arange(components)])
    coordinates[:, :components] = centred @ (largest * signs)
    return coordinates


def near_duplicates(vectors: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """Every pair (i < j) of unit-length rows with a cosine similarity >= threshold, most alike first.

    Exact: each block of rows is multiplied by the rows from its first one on, so each pair is
    compared once and memory holds one block of similarities, not the full square.
    """
    count = len(vectors)
    block_rows = max(1, BLOCK_ENTRIES // max(1, count))
    pairs = []
    for start in range(0, count, block_rows):
        similarities = vectors[start : start + block_rows] @ vectors[start:].T
        rows, columns = np.nonzero(similarities >= threshold)
        above_diagonal = columns > rows  # Column c is image start + c, row r image start + r.
        for row, column in zip(rows[above_diagonal], columns[above_diagonal]):
            pairs.append((start + int(row), start + int(column), float(similarities[row, column])))
    return sorted(pairs, key=lambda pair: (-pair[2], pair[0], pair[1]))


def is_leak(split_a: str, label_a: int, split_b: str, label_b: int) -> bool:
    """Whether a duplicate pair is a leak: one in train and one held out, or one photo in two classes."""
    return bool((split_a == "train") != (split_b == "train") or label_a != label_b)


def out_of_fold_probabilities(
    vectors: np.ndarray, labels: np.ndarray, num_classes: int, folds: int, seed: int
) -> np.ndarray | None:
    """Class probabilities of each image from a logistic regression trained on the other folds.

    Args:
        vectors: (images, channels) features.
        labels: the class index of each image.
        num_classes: the number of classes.
        folds: the folds wanted; fewer when the smallest class has fewer images.
        seed: the seed of the stratified folds.

    Returns:
        (images, classes) probabilities, or None when a class has fewer than 2 images (no fold
        could hold one out and still train on it).
    """
    # Heavy: scikit-learn is slow to import, and only the label check needs it.
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    smallest = np.bincount(labels, minlength=num_classes).min()
    folds = min(folds, int(smallest))
    if folds < 2:
        return None
    probabilities = np.zeros((len(labels), num_classes))
    # One BLAS thread: the solver's many small products wait on a pool of threads far longer than
    # they compute, above all when other processes share the cores (benchmarks/RESULTS.md).
    with threadpool_limits(limits=1, user_api="blas"):
        for trained, held_out in StratifiedKFold(folds, shuffle=True, random_state=seed).split(vectors, labels):
            model = LogisticRegression(C=DEFAULT_REGULARISATION_INVERSE, max_iter=1000)
            model.fit(vectors[trained], labels[trained])
            probabilities[np.ix_(held_out, model.classes_)] = model.predict_proba(vectors[held_out])
    return probabilities


def label_issues(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Indices of the likely wrong labels, likeliest first (confident learning, ranked by self-confidence)."""
    # Heavy: cleanlab imports scikit-learn and pandas, and only the label check needs it.
    from cleanlab.filter import find_label_issues

    # One process: on a small machine cleanlab's worker pool costs more than it saves.
    return np.asarray(
        find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1), dtype=np.int64
    )


def explore(
    dataset: DatasetScan,
    settings: ExploreSettings | None = None,
    runs_dir: str | os.PathLike | None = None,
    stream=None,
) -> Exploration:
    """Maps a data set, finds its near-duplicates and leaks, and ranks its likely wrong labels.

    Args:
        dataset: the data set (every split is explored, test included).
        settings: backbone, image size, duplicate threshold, folds (default `ExploreSettings()`).
        runs_dir: the runs folder whose feature cache is read and filled; None: a temporary cache.
        stream: where feature extraction reports what it does (None: silence).

    Returns:
        An Exploration; its `seconds` cover feature extraction (or the cache) and the analysis.
    """
    settings = settings or ExploreSettings()
    started = time.time()
    paths, labels, splits = dataset_items(dataset)
    vectors, from_cache = pooled_features(dataset, settings, runs_dir, stream)
    coordinates = project_2d(vectors)
    points = tuple(
        MapPoint(path, dataset.classes[label], split, float(x), float(y))
        for path, label, split, (x, y) in zip(paths, labels, splits, coordinates)
    )
    duplicates = tuple(
        DuplicatePair(paths[i], paths[j], round(similarity, 6), is_leak(splits[i], labels[i], splits[j], labels[j]))
        for i, j, similarity in near_duplicates(vectors, settings.threshold)
    )
    probabilities = out_of_fold_probabilities(vectors, labels, dataset.num_classes, settings.folds, settings.seed)
    suspects = ()
    if probabilities is not None:
        suspects = tuple(
            Suspect(
                paths[index],
                dataset.classes[labels[index]],
                dataset.classes[int(probabilities[index].argmax())],
                round(1.0 - float(probabilities[index, labels[index]]), 6),
            )
            for index in label_issues(labels, probabilities)
        )
    return Exploration(points, duplicates, suspects, time.time() - started, from_cache)


def summary(exploration: Exploration, top: int = 10) -> str:
    """A readable report: counts per split and class, the leaks and duplicates, the top suspects."""
    counts: dict[str, dict[str, int]] = {}
    for point in exploration.map:
        per_class = counts.setdefault(point.split, {})
        per_class[point.label] = per_class.get(point.label, 0) + 1
    lines = [
        f"Explored {len(exploration.map)} images in {exploration.seconds:.1f} s "
        f"(features {'from the cache' if exploration.features_from_cache else 'extracted'})."
    ]
    for split, per_class in counts.items():
        lines.append(f"  {split}: " + ", ".join(f"{name} {count}" for name, count in sorted(per_class.items())))
    leaks = exploration.leaks
    lines.append(f"Near-duplicate pairs: {len(exploration.duplicates)}, of which leaks: {len(leaks)}.")
    for pair in (leaks + tuple(pair for pair in exploration.duplicates if not pair.leak))[:top]:
        lines.append(f"  {'LEAK ' if pair.leak else ''}{pair.similarity:.3f}  {pair.a}  <->  {pair.b}")
    lines.append(f"Likely wrong labels: {len(exploration.suspects)}.")
    for suspect in exploration.suspects[:top]:
        lines.append(f"  {suspect.score:.3f}  {suspect.path}: {suspect.label} -> {suspect.suggested}?")
    return "\n".join(lines)
