"""Frozen, validated configuration: augmentation settings and one training run's settings.

Plain types only, so a config round-trips through JSON into a run folder and back.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from tlcore.models.registry import BACKBONES

HEADS = ("flatten", "global_average")
OPTIMIZERS = ("rmsprop", "adam")
WEIGHTS = ("imagenet", "none")
CLASS_WEIGHTS = ("auto", "balanced", "none")
DISTRIBUTIONS = ("default", "mirrored", "multi_worker")
REPLICA_SCALING = ("linear", "none")
# Keras dtype policies: float32 everywhere, or float16/bfloat16 computation with float32 weights.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# "auto" class weighting starts at this ratio between the largest and the smallest class.
IMBALANCE_RATIO = 1.5


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be a number in [{low}, {high}], received {value!r}.")


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, received {value!r}.")


@dataclass(frozen=True)
class Strategy:
    """One way to train, as the trainer, the monitor, the layer stack and the pages describe it.

    Attributes:
        key: what `--strategy` and `TrainConfig.strategy` take.
        title: the name people see, numbered as the classic story tells it ("1 · Feature extraction").
        stage_name: the stage in words, lower case, as progress lines read ("feature extraction").
        phase: what the stage does to the model's layers, for the layer stack.
        description: one or two sentences for people choosing a strategy.
        stages: the stages this strategy trains, in order (each the key of a single-stage strategy).
        end_to_end: whether its epochs train on images (costly) rather than on cached features.
        augments: whether its training images are augmented.
    """

    key: str
    title: str
    stage_name: str
    phase: str
    description: str
    stages: tuple[str, ...]
    end_to_end: bool = False
    augments: bool = False

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError(f"Strategy {self.key!r} must train at least one stage, received stages={self.stages!r}.")


STRATEGIES: dict[str, Strategy] = {
    strategy.key: strategy
    for strategy in (
        Strategy(
            key="feature_extraction",
            title="1 · Feature extraction",
            stage_name="feature extraction",
            phase="feature extraction: train the head on cached features",
            description="Run the frozen pretrained base once over every image, then train only a small classifier "
            "on the cached features: fastest, no augmentation.",
            stages=("feature_extraction",),
        ),
        Strategy(
            key="frozen_augmented",
            title="2 · Frozen base + augmentation",
            stage_name="frozen + augmentation",
            phase="frozen + augmentation: train a head on augmented images",
            description="Keep the pretrained base frozen and train a new classifier on top of it on randomly "
            "augmented images (by default K augmented views cached through the frozen base once; 0 views trains "
            "end to end): slower, generalises better.",
            stages=("frozen_augmented",),
            end_to_end=True,
            augments=True,
        ),
        Strategy(
            key="fine_tuning",
            title="3 · Fine-tuning",
            stage_name="fine-tuning",
            phase="fine-tuning: top block unfrozen, train again",
            description="After frozen + augmentation, unfreeze the base's top block and keep training at a lower "
            "learning rate, so the top features adapt to your classes.",
            stages=("frozen_augmented", "fine_tuning"),
            end_to_end=True,
            augments=True,
        ),
        Strategy(
            key="scratch",
            title="Baseline · a small CNN from scratch",
            stage_name="scratch baseline",
            phase="scratch: every layer trains",
            description="A small CNN trained from random weights with the same augmentation: the baseline that "
            "shows what transfer learning buys.",
            stages=("scratch",),
            end_to_end=True,
            augments=True,
        ),
        Strategy(
            key="all",
            title="1 → 2 → 3 in sequence",
            stage_name="1 → 2 → 3",
            phase="the classic sequence",
            description="Feature extraction, then frozen + augmentation, then fine-tuning, in sequence (the classic "
            "notebook's schedule).",
            stages=("feature_extraction", "frozen_augmented", "fine_tuning"),
            augments=True,
        ),
    )
}
# What `--strategy` accepts: each strategy, or `all` = the seed's sequence 1, 2, 3.
STRATEGY_CHOICES = tuple(STRATEGIES)


def stages_for(strategy: str) -> tuple[str, ...]:
    """The stages a strategy trains, in order: fine-tuning starts from a frozen + augmentation stage."""
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}. Expected one of {list(STRATEGIES)}.")
    return STRATEGIES[strategy].stages


@dataclass(frozen=True)
class AugmentationConfig:
    """Random transformations applied to training images (the seed's settings by default).

    Attributes:
        rotation_degrees: maximum rotation either way, in degrees.
        width_shift: maximum horizontal shift, as a fraction of the width.
        height_shift: maximum vertical shift, as a fraction of the height.
        zoom: maximum zoom in or out, as a fraction (0.2 means 80% to 120%).
        horizontal_flip: flip left-right half of the time.
        vertical_flip: flip upside down half of the time.
        brightness: maximum brightness change, as a fraction of the value range (0 = off).
        contrast: maximum contrast change, as a fraction (0 = off).
        fill_mode: how pixels outside the image are filled ("nearest", "reflect", "constant", "wrap").
    """

    rotation_degrees: float = 40.0
    width_shift: float = 0.1
    height_shift: float = 0.1
    zoom: float = 0.2
    horizontal_flip: bool = True
    vertical_flip: bool = True
    brightness: float = 0.0
    contrast: float = 0.0
    fill_mode: str = "nearest"

    def __post_init__(self) -> None:
        _check_range("rotation_degrees", self.rotation_degrees, 0, 180)
        _check_range("width_shift", self.width_shift, 0, 1)
        _check_range("height_shift", self.height_shift, 0, 1)
        _check_range("zoom", self.zoom, 0, 0.9)
        _check_range("brightness", self.brightness, 0, 1)
        _check_range("contrast", self.contrast, 0, 1)
        for name in ("horizontal_flip", "vertical_flip"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, received {getattr(self, name)!r}.")
        if self.fill_mode not in ("nearest", "reflect", "constant", "wrap"):
            raise ValueError(
                f"fill_mode must be one of 'nearest', 'reflect', 'constant', 'wrap', received {self.fill_mode!r}."
            )

    @property
    def is_identity(self) -> bool:
        """True when no transformation is enabled."""
        return not (
            self.rotation_degrees
            or self.width_shift
            or self.height_shift
            or self.zoom
            or self.horizontal_flip
            or self.vertical_flip
            or self.brightness
            or self.contrast
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AugmentationConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown augmentation settings {unknown}. Expected some of {sorted(known)}.")
        return cls(**values)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run.

    Attributes:
        data_dir: the data set folder (either layout, see `tlcore.data.folders.scan`).
        strategy: one of STRATEGY_CHOICES; "all" runs feature extraction, frozen + augmentation
            and fine-tuning in sequence.
        backbone: a key of `tlcore.models.registry.BACKBONES`.
        weights: "imagenet" for pretrained weights, "none" for random initialisation.
        alpha: width multiplier for MobileNet and MobileNetV2 (1.0 elsewhere); with ImageNet weights,
            one of the backbone's `weights_alphas`.
        image_size: side of the square input images, in pixels.
        epochs: epochs of feature extraction, frozen + augmentation and scratch training.
        fine_tuning_epochs: epochs of the fine-tuning stage.
        batch_size: images per training step.
        learning_rate: learning rate of the head (strategies 1, 2 and scratch).
        fine_tuning_learning_rate: the lower learning rate once the top block is unfrozen.
        optimizer: "rmsprop" (the seed's) or "adam".
        head: "flatten" (the seed's Flatten + Dense) or "global_average" (pooling + Dense).
        dense_units: units of the head's hidden Dense layer.
        dropout: dropout rate before the output layer.
        validation_fraction: share of each class held out when the data set has no validation split.
        seed: seeds the split, the augmentation, the weights' initialisation and the shuffling.
        augmentation: random transformations for the augmented strategies.
        augmented_views: for frozen + augmentation and fine-tuning, how many augmented views of
            each training image are pushed through the frozen part of the base once and cached
            (epoch e trains on view e mod K); 0 trains end to end, augmenting every epoch anew.
        early_stopping_patience: stop a stage when the validation loss has not improved for this
            many epochs, and restore the best weights; 0 turns it off.
        class_weight: "auto" weights classes inversely to their counts when the largest class has
            at least 1.5x the images of the smallest, "balanced" always, "none" never.
        distribution: "default" (one device), "mirrored" (`tf.distribute.MirroredStrategy` over
            the local GPUs, or the logical CPUs of `cpu_replicas`) or "multi_worker"
            (`MultiWorkerMirroredStrategy` across machines described by `$TF_CONFIG`).
        cpu_replicas: split the CPU into this many logical devices (0: don't), so "mirrored"
            runs with several replicas on a machine without GPUs.
        replica_scaling: with R replicas, "linear" trains with a global batch of
            batch_size x R and learning rates x R (the linear scaling rule); "none" keeps the
            global batch at batch_size (split across replicas) and the learning rates as given.
        precision: the Keras dtype policy: "float32", or "mixed_float16" (for NVIDIA GPUs with
            tensor cores; the loss is scaled against underflow) or "mixed_bfloat16" (TPUs, recent
            GPUs and CPUs): computations in 16 bits, weights and the output layer in float32.
        jit_compile: compile training steps and forward passes with XLA where every layer of the
            model supports it (random zoom and translation don't: models that augment inside
            train without XLA); the run is then not bit-for-bit reproducible.
    """

    data_dir: str
    strategy: str = "all"
    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"
    alpha: float = 1.0
    image_size: int = 160
    epochs: int = 30
    fine_tuning_epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tuning_learning_rate: float = 1e-5
    optimizer: str = "rmsprop"
    head: str = "global_average"
    dense_units: int = 256
    dropout: float = 0.5
    validation_fraction: float = 0.2
    seed: int = 1337
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    augmented_views: int = 10
    early_stopping_patience: int = 0
    class_weight: str = "auto"
    distribution: str = "default"
    cpu_replicas: int = 0
    replica_scaling: str = "linear"
    precision: str = "float32"
    jit_compile: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.data_dir, str) or not self.data_dir:
            raise ValueError(f"data_dir must be a folder path, received {self.data_dir!r}.")
        if self.strategy not in STRATEGY_CHOICES:
            raise ValueError(f"Unknown strategy {self.strategy!r}. Expected one of {list(STRATEGY_CHOICES)}.")
        if self.backbone not in BACKBONES:
            raise ValueError(f"Unknown backbone {self.backbone!r}. Expected one of {sorted(BACKBONES)}.")
        if self.weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {list(WEIGHTS)}, received {self.weights!r}.")
        backbone = BACKBONES[self.backbone]
        if self.alpha != 1.0 and not backbone.supports_alpha:
            raise ValueError(
                f"alpha applies to MobileNet and MobileNetV2 only, received alpha={self.alpha!r} "
                f"for backbone {self.backbone!r}."
            )
        _check_range("alpha", self.alpha, 0.25, 1.4)
        if self.weights == "imagenet" and backbone.supports_alpha and self.alpha not in backbone.weights_alphas:
            # Keras would refuse it only once the worker builds the model.
            raise ValueError(
                f"ImageNet weights of {backbone.display_name} exist for alpha "
                f"{', '.join(f'{alpha:g}' for alpha in backbone.weights_alphas)}, received alpha={self.alpha!r} "
                "(random weights take any alpha from 0.25 to 1.4)."
            )
        _check_positive_int("image_size", self.image_size, minimum=BACKBONES[self.backbone].min_size)
        if self.image_size > 600:
            raise ValueError(f"image_size must be at most 600, received {self.image_size!r}.")
        _check_positive_int("epochs", self.epochs)
        _check_positive_int("fine_tuning_epochs", self.fine_tuning_epochs)
        _check_positive_int("batch_size", self.batch_size)
        _check_positive_int("dense_units", self.dense_units)
        for name in ("learning_rate", "fine_tuning_learning_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value < 1:
                raise ValueError(f"{name} must be a number in (0, 1), received {value!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, received {self.optimizer!r}.")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {list(HEADS)}, received {self.head!r}.")
        _check_range("dropout", self.dropout, 0, 0.95)
        _check_range("validation_fraction", self.validation_fraction, 0.05, 0.5)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, received {self.seed!r}.")
        _check_positive_int("augmented_views", self.augmented_views, minimum=0)
        _check_positive_int("early_stopping_patience", self.early_stopping_patience, minimum=0)
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {list(DISTRIBUTIONS)}, received {self.distribution!r}.")
        _check_positive_int("cpu_replicas", self.cpu_replicas, minimum=0)
        if self.replica_scaling not in REPLICA_SCALING:
            raise ValueError(
                f"replica_scaling must be one of {list(REPLICA_SCALING)}, received {self.replica_scaling!r}."
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, received {self.precision!r}.")
        if not isinstance(self.jit_compile, bool):
            raise ValueError(f"jit_compile must be True or False, received {self.jit_compile!r}.")
        if self.class_weight not in CLASS_WEIGHTS:
            raise ValueError(f"class_weight must be one of {list(CLASS_WEIGHTS)}, received {self.class_weight!r}.")
        if not isinstance(self.augmentation, AugmentationConfig):
            raise ValueError(
                f"augmentation must be an AugmentationConfig, received {type(self.augmentation).__name__}."
            )

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["augmentation"] = self.augmentation.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        values = dict(values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown training settings {unknown}. Expected some of {sorted(known)}.")
        if isinstance(values.get("augmentation"), dict):
            values["augmentation"] = AugmentationConfig.from_dict(values["augmentation"])
        return cls(**values)


# Presets: named sets of overrides on top of TrainConfig's defaults.
# "seed" reproduces the classic notebook (Deep Learning with Python, 1st ed.): VGG16 at 150 px,
# Flatten + Dense 256 head, RMSprop 2e-5 for 30 epochs, then 1e-5 for 30 epochs of fine-tuning.
# "default" favours a CPU: EfficientNet-Lite0 at 160 px with a pooled head (see README for the
# measurements behind the choice).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "seed": {
        "backbone": "vgg16",
        "image_size": 150,
        "head": "flatten",
        "learning_rate": 2e-5,
        "fine_tuning_learning_rate": 1e-5,
        "optimizer": "rmsprop",
        "batch_size": 64,
        "epochs": 30,
        "fine_tuning_epochs": 30,
    },
}


def from_preset(preset: str, **overrides: Any) -> TrainConfig:
    """Builds a TrainConfig from a preset, then the explicit overrides.

    Args:
        preset: a key of PRESETS.
        **overrides: any TrainConfig field; `None` values are ignored (flags not given).

    Returns:
        The validated TrainConfig.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}. Expected one of {sorted(PRESETS)}.")
    values = dict(PRESETS[preset])
    values.update({key: value for key, value in overrides.items() if value is not None})
    return TrainConfig(**values)
