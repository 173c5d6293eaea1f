"""Which feature levels suit a data set: measured on its training photos, not assumed.

`TrainConfig.feature_levels` 3 stacks the outputs of the base's two stages before its last onto the
last one's. A frozen ImageNet network's last stage is the most specific to ImageNet's objects; the
stages before it describe textures and parts. On photos far from ImageNet's objects (natural scenes)
the head then classifies better, on photos like ImageNet's (cats and dogs) it does not, and the
stacked features cost a little (both measured in benchmarks/RESULTS.md).

So the check extracts the stacked features of the training photos once (the feature cache's
entries, which a run with the same backbone, size, levels and split then reuses), averages them over
their positions, and scores two logistic regressions out of fold with the same folds: one on the base's
output alone, one on the stack. It counts the photos that only one of the two classifies correctly,
and suggests the stack only when it wins by more than chance explains (McNemar's exact test, one-sided, at
5%), so data where both do about as well keeps the single level of the classic notebook. The
validation photos take no part: they still score the run that follows the suggestion.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from tlcore.config import from_preset
from tlcore.data.dataset import DatasetScan
from tlcore.insight.explore import DEFAULT_BACKBONE, DEFAULT_IMAGE_SIZE, spatially_averaged_features
from tlcore.models.registry import BACKBONES

FOLDS = 5
# Inverse regularisation of the logistic regressions, on standardised features: the value of the first
# comparison of the two feature sets (benchmarks/RESULTS.md). Both regressions use it, so neither is favoured.
REGULARISATION_INVERSE = 0.01
# The stack is suggested when chance alone would give it its lead with at most this probability.
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class LevelsSuggestion:
    """What the check found.

    Attributes:
        levels: the suggested `feature_levels`: 1, or the backbone's stacked levels.
        stacked_levels: the levels the stack compared held (the backbone's `max_feature_levels`).
        single_accuracy: the out-of-fold accuracy on the base's output alone.
        stacked_accuracy: the out-of-fold accuracy on the stacked levels.
        only_stacked: training photos that only the stack classified correctly.
        only_single: training photos that only the base's output classified correctly.
        images: the training photos the check scored.
        reason: the suggestion in words, with what was measured.
    """

    levels: int
    stacked_levels: int
    single_accuracy: float
    stacked_accuracy: float
    only_stacked: int
    only_single: int
    images: int
    reason: str

    def __post_init__(self) -> None:
        if self.stacked_levels < 2 or self.levels not in (1, self.stacked_levels):
            raise ValueError(
                f"levels must be 1 or stacked_levels (>= 2), received {self.levels!r} and {self.stacked_levels!r}."
            )
        for name in ("single_accuracy", "stacked_accuracy"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], received {getattr(self, name)!r}.")
        if min(self.only_stacked, self.only_single) < 0 or self.only_stacked + self.only_single > self.images:
            raise ValueError(
                f"only_stacked and only_single must be counts of at most {self.images} photos together, "
                f"received {self.only_stacked!r} and {self.only_single!r}."
            )

    @property
    def p_value(self) -> float:
        """The probability that chance alone gives the stack a lead this large or larger (`chance_of_lead`)."""
        return chance_of_lead(self.only_stacked, self.only_single)

    def train_flag(self) -> str:
        """The `tlcore train` flag that sets the suggestion."""
        return f"--feature-levels {self.levels}"


def chance_of_lead(only_stacked: int, only_single: int) -> float:
    """The one-sided p-value of McNemar's exact test: P(at least `only_stacked` of the photos that tell them apart).

    Only the photos that one classifier gets right and the other wrong tell them apart. If both
    classified as well, each such photo would be the stack's with probability 1/2, so the stack's
    count follows a binomial distribution; its upper tail is exact at any count, where the normal
    approximation lets a small lead (3 photos to 0, say) pass. 1.0 when no photo tells them apart.
    """
    if min(only_stacked, only_single) < 0:
        raise ValueError(f"Counts must be >= 0, received {only_stacked!r} and {only_single!r}.")
    discordant = only_stacked + only_single
    upper_tail = sum(math.comb(discordant, count) for count in range(only_stacked, discordant + 1))
    return upper_tail / 2**discordant


def reason(suggestion_levels: int, stacked_levels: int, single: float, stacked: float, p_value: float) -> str:
    """The suggestion in words, with the two accuracies and how likely chance alone gives such a lead."""
    measured = (
        f"a classifier on the backbone's features gets {stacked:.1%} of the training photos right out of fold "
        f"from its last {stacked_levels} stages stacked, against {single:.1%} from its output alone"
    )
    chance = (
        f"chance alone gives such a lead with probability {p_value:.3f} (exact McNemar test, {SIGNIFICANCE} or less"
    )
    if suggestion_levels > 1:
        return f"{suggestion_levels}, because {measured}; {chance} needed)."
    if stacked > single:
        return f"1, because {measured}; {chance} needed), so the base's output alone stays."
    return f"1, because {measured}, so the base's output alone stays."


def out_of_fold_correct(vectors: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Whether a logistic regression on standardised `vectors` classifies each photo correctly out of fold."""
    # Heavy: scikit-learn is only needed once a check runs.
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=REGULARISATION_INVERSE, max_iter=2000))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with threadpool_limits(limits=1):  # The same answer whatever the machine's cores.
        predicted = cross_val_predict(model, vectors, labels, cv=splitter)
    return predicted == labels


def suggest_feature_levels(
    dataset: DatasetScan,
    backbone: str = DEFAULT_BACKBONE,
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = 1337,
    runs_dir: str | os.PathLike | None = None,
    stream=None,
) -> LevelsSuggestion:
    """Measures on the training photos whether stacking the base's last stages suits this data set.

    Args:
        dataset: the data set (its train split is scored; validation takes no part).
        backbone: the pretrained backbone; it must register stages to stack (the EfficientNets do).
        image_size: the side of the square photos fed to it, in pixels.
        seed: the seed of the folds.
        runs_dir: the runs folder whose feature cache is read and filled; None: a temporary cache.
        stream: where extraction reports what it does (None: silence).

    Returns:
        A LevelsSuggestion.

    Raises:
        ValueError: an unknown backbone, one without stages to stack or without its pretrained weights,
            an image size a run would refuse, or a class with fewer than 2 training photos.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}. Expected one of {sorted(BACKBONES)}.")
    entry = BACKBONES[backbone]
    if entry.max_feature_levels < 2:
        raise ValueError(
            f"{entry.display_name} registers no stages to stack (feature levels 1 only): there is nothing to "
            "compare. The EfficientNets have 3."
        )
    # The sizes a run accepts for this backbone (TrainConfig's rule), before anything is extracted.
    from_preset("default", data_dir=dataset.root, backbone=backbone, image_size=image_size)
    labels = dataset.labels("train")
    counts = np.bincount(labels, minlength=dataset.num_classes)
    smallest = int(counts.min())
    if smallest < 2:
        raise ValueError(
            f"The feature-levels check needs at least 2 training photos in every class; class "
            f"{dataset.classes[int(counts.argmin())]!r} has {smallest}."
        )
    from tlcore.models.backbones import WeightsUnavailableError  # Keras, only once a check runs.

    try:
        vectors, _ = spatially_averaged_features(
            dataset, backbone, image_size, entry.max_feature_levels, ("train",), runs_dir, stream
        )
    except WeightsUnavailableError as error:
        raise ValueError(f"The feature-levels check needs {backbone}'s ImageNet weights: {error}") from None
    stacked_vectors = vectors["train"]
    # The stack ends with the base's own output (tlcore.models.heads.stack_stages): its last columns.
    base_output = stacked_vectors[:, -_base_channels(backbone, image_size) :]
    folds = min(FOLDS, smallest)
    single = out_of_fold_correct(base_output, labels, folds, seed)
    stacked = out_of_fold_correct(stacked_vectors, labels, folds, seed)
    only_stacked, only_single = int((stacked & ~single).sum()), int((single & ~stacked).sum())
    p_value = chance_of_lead(only_stacked, only_single)
    levels = entry.max_feature_levels if p_value <= SIGNIFICANCE else 1
    single_accuracy, stacked_accuracy = round(float(single.mean()), 4), round(float(stacked.mean()), 4)
    return LevelsSuggestion(
        levels,
        entry.max_feature_levels,
        single_accuracy,
        stacked_accuracy,
        only_stacked,
        only_single,
        len(labels),
        reason(levels, entry.max_feature_levels, single_accuracy, stacked_accuracy, p_value),
    )


def _base_channels(backbone: str, image_size: int) -> int:
    """The channels of the base's own output (the last of the stacked ones)."""
    # Heavy: imports TensorFlow and Keras.
    from tlcore.models import backbones

    return int(backbones.build_base(backbone, image_size, weights=None).output.shape[-1])
