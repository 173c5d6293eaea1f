"""Which flips suit a data set: measured on its photos, not assumed.

A flip is a fair augmentation when a flipped photo looks like another photo of the same set. Photos
taken upright (scenes, pets) have an "up": a linear classifier on a pretrained backbone's features
tells an upside-down copy from the original almost every time, so vertical flips train the model on
views it will never be shown. Textures, microscopy and aerial photos have no such direction, and the
same classifier stays near chance. Mirrored text or road signs are the left-right case.

So for each flip the check trains a logistic regression to tell flipped copies from originals, on a
sample of the training photos, and scores it out of fold (a photo and its flipped copy always fall in
the same fold, so no copy is judged by a model that saw its original). A flip is suggested when that
accuracy stays under `TELLING_APART_LIMIT`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from tlcore.config import from_preset
from tlcore.data.dataset import DatasetScan
from tlcore.data.images import load_resized
from tlcore.insight.explore import DEFAULT_BACKBONE, DEFAULT_IMAGE_SIZE, normalise
from tlcore.models.registry import BACKBONES

DEFAULT_PER_CLASS = 40
# Photos with an "up" score far above it and orientation-free textures far below it (both measured
# in benchmarks/RESULTS.md, "Which flips suit a data set"); 0.5 is chance.
TELLING_APART_LIMIT = 0.75
FOLDS = 5
BATCH_SIZE = 32
# Array axes of an (images, height, width, channels) batch that each flip reverses.
FLIP_AXES = {"vertical_flip": 1, "horizontal_flip": 2}
FLIP_WORDS = {"vertical_flip": "upside-down", "horizontal_flip": "left-right mirrored"}


@dataclass(frozen=True)
class FlipSuggestion:
    """What the check found for one flip.

    Attributes:
        setting: the `AugmentationConfig` field ("vertical_flip" or "horizontal_flip").
        suggested: whether the flip is suggested.
        accuracy: the out-of-fold accuracy of telling flipped copies from originals (0.5 is chance).
        images: how many photos (each with its flipped copy) the check used.
        reason: the suggestion in words, with the measured accuracy.
    """

    setting: str
    suggested: bool
    accuracy: float
    images: int
    reason: str

    def __post_init__(self) -> None:
        if self.setting not in FLIP_AXES:
            raise ValueError(f"setting must be one of {sorted(FLIP_AXES)}, received {self.setting!r}.")
        if not 0.0 <= self.accuracy <= 1.0:
            raise ValueError(f"accuracy must lie in [0, 1], received {self.accuracy!r}.")


def sample_paths(dataset: DatasetScan, per_class: int, seed: int) -> list[str]:
    """Up to `per_class` training photos of each class, drawn at random with `seed`."""
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 3:
        raise ValueError(f"per_class must be an integer >= 3, received {per_class!r}.")
    generator = np.random.default_rng(seed)
    paths = np.array(dataset.paths("train"), dtype=object)
    labels = dataset.labels("train")
    chosen = []
    for label in range(dataset.num_classes):
        members = paths[labels == label]
        chosen += list(generator.permutation(members)[:per_class])
    return chosen


def reason(setting: str, suggested: bool, accuracy: float) -> str:
    """The suggestion in words, e.g. 'off, because ... tells upside-down copies ... from the originals ...'.

    Not "off: ...": after the setting's name ("Flip upside down: off: a classifier...") two colons ran on.
    """
    measured = (
        f"a classifier on the backbone's features tells {FLIP_WORDS[setting]} copies of these photos "
        f"from the originals {accuracy:.0%} of the time (50% is chance)"
    )
    if suggested:
        return f"on, because {measured}, so flipped copies look like more photos of this set."
    return f"off, because {measured}, so flipped copies are views the model will never be shown."


def train_flag(suggestion: FlipSuggestion) -> str:
    """The `tlcore train` flag that applies a suggestion, e.g. '--no-vertical-flip'."""
    name = suggestion.setting.replace("_", "-")
    return f"--{name}" if suggestion.suggested else f"--no-{name}"


def out_of_fold_accuracy(originals: np.ndarray, flipped: np.ndarray, seed: int) -> float:
    """How often a logistic regression tells flipped feature vectors from original ones, out of fold."""
    # Heavy: scikit-learn is only needed once a check runs.
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict

    count = len(originals)
    vectors = np.concatenate([originals, flipped])
    targets = np.concatenate([np.zeros(count), np.ones(count)])
    groups = np.concatenate([np.arange(count), np.arange(count)])
    folds = GroupKFold(n_splits=min(FOLDS, count), shuffle=True, random_state=seed)
    with threadpool_limits(limits=1):
        predicted = cross_val_predict(
            LogisticRegression(C=10.0, max_iter=2000), vectors, targets, groups=groups, cv=folds
        )
    return float((predicted == targets).mean())


def suggest_flips(
    dataset: DatasetScan,
    backbone: str = DEFAULT_BACKBONE,
    image_size: int = DEFAULT_IMAGE_SIZE,
    per_class: int = DEFAULT_PER_CLASS,
    seed: int = 1337,
) -> tuple[FlipSuggestion, ...]:
    """Measures, on a sample of the training photos, whether each flip suits this data set.

    Args:
        dataset: the data set (its train split is sampled).
        backbone: the pretrained backbone whose pooled features the classifier reads.
        image_size: the side of the square photos fed to the backbone, in pixels.
        per_class: photos drawn from each class (fewer when a class has fewer).
        seed: the seed of the sample and of the folds.

    Returns:
        One FlipSuggestion per flip, vertical first.

    Raises:
        ValueError: an unknown backbone, its pretrained weights not available, or a sample too small to
            score (under `FOLDS` photos).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}. Expected one of {sorted(BACKBONES)}.")
    # The sizes a run accepts for this backbone (TrainConfig's rule), before any photo is decoded at that size.
    from_preset("default", data_dir=dataset.root, backbone=backbone, image_size=image_size)
    paths = sample_paths(dataset, per_class, seed)
    if len(paths) < FOLDS:
        raise ValueError(f"The flip check needs at least {FOLDS} training photos, received {len(paths)}.")
    photos = np.stack([load_resized(path, image_size) for path in paths])
    pooled = pooled_features_function(backbone, image_size)
    originals = pooled(photos)
    suggestions = []
    for setting, axis in FLIP_AXES.items():
        accuracy = out_of_fold_accuracy(originals, pooled(np.flip(photos, axis=axis)), seed)
        suggested = accuracy < TELLING_APART_LIMIT
        suggestions.append(
            FlipSuggestion(setting, suggested, round(accuracy, 4), len(paths), reason(setting, suggested, accuracy))
        )
    return tuple(suggestions)


def pooled_features_function(backbone: str, image_size: int):
    """A function from uint8 photos to unit-length, spatially averaged features of the frozen backbone.

    Not through the feature cache (`explore.pooled_features`): it holds the photos as they are, and the check
    needs flipped copies of a small sample, which it computes once and keeps nowhere.
    """
    # Heavy: import TensorFlow and Keras only when a check runs, never when a page shows its result.
    from tlcore.models import backbones

    try:
        base = backbones.build_base(backbone, image_size, weights="imagenet")
    except backbones.WeightsUnavailableError as error:
        # The check only means something with pretrained features: say so in the callers' usual error.
        raise ValueError(f"The flip check needs {backbone}'s ImageNet weights: {error}") from None
    preprocess = backbones.preprocessing_layer(backbone)

    def pooled(photos: np.ndarray) -> np.ndarray:
        batches = []
        for start in range(0, len(photos), BATCH_SIZE):
            batch = photos[start : start + BATCH_SIZE].astype("float32")
            feature_maps = np.asarray(base(preprocess(batch), training=False))
            batches.append(feature_maps.mean(axis=(1, 2)))
        return normalise(np.concatenate(batches))

    return pooled
