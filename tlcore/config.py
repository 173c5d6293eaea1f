"""Frozen, validated configuration: augmentation settings and one training run's settings.

Plain types only, so a config round-trips through JSON into a run folder and back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tlcore.augmentation_settings import FILL_MODES, AugmentationConfig  # noqa: F401  (re-exported)
from tlcore.models.registry import BACKBONES
from tlcore.settings import check_settings, setting

# The strategy choices; STRATEGIES and stages_for are also importable from here, beside the settings.
from tlcore.strategies import STRATEGIES, STRATEGY_CHOICES, Strategy, stages_for  # noqa: F401

HEADS = ("flatten", "global_average")
OPTIMIZERS = ("rmsprop", "adam")
WEIGHTS = ("imagenet", "none")
CLASS_WEIGHTS = ("auto", "balanced", "none")
# Which epoch's weights a stage keeps: its last, or its lowest validation loss.
KEEP_WEIGHTS = ("last", "best")
DISTRIBUTIONS = ("default", "mirrored", "multi_worker")
REPLICA_SCALING = ("linear", "none")
# Keras dtype policies: float32 everywhere, or float16/bfloat16 computation with float32 weights.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# "auto" class weighting starts at this ratio between the largest and the smallest class.
IMBALANCE_RATIO = 1.5


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run.

    Each field's metadata describes it (see `tlcore.settings.SETTING_KEYS`): its help text, choices and
    bounds are what the CLI, the Train page and `__post_init__` use. The details the help texts leave out:

    - strategy "all" runs feature extraction, frozen + augmentation and fine-tuning in sequence.
    - alpha: with ImageNet weights, one of the backbone's `weights_alphas`; other backbones take 1.0 only.
    - image_size: at least the backbone's `min_size`.
    - augmented_views: epoch e trains on view e mod K; 0 trains end to end, augmenting every epoch anew.
    - class_weight "auto" weights the classes when the largest has IMBALANCE_RATIO times the smallest's images.
    - distribution "mirrored" runs `tf.distribute.MirroredStrategy` over the local GPUs (or the logical CPUs
      of `cpu_replicas`); "multi_worker" runs `MultiWorkerMirroredStrategy` across the machines `$TF_CONFIG`
      describes.
    - replica_scaling "linear" trains R replicas with a global batch of batch_size x R and learning rates x R
      (the linear scaling rule); "none" splits batch_size across the replicas and keeps the rates.
    - precision "mixed_float16" scales the loss against underflow; both mixed policies keep the weights and
      the output layer in float32.
    - jit_compile leaves out models that augment inside (random zoom and translation have no XLA kernel).
    """

    data_dir: str = field(
        metadata={"help": "the data set folder (either layout, see tlcore.data.folders.scan)", "flag": "--data"}
    )
    strategy: str = setting(
        "all",
        "how to train: feature_extraction, frozen_augmented, fine_tuning (after frozen_augmented), scratch "
        "(a baseline CNN) or all (1, 2 and 3 in sequence)",
        label="Strategy",
        choices=STRATEGY_CHOICES,
        page="model",
    )
    backbone: str = setting(
        "efficientnet_lite0", "the pretrained base", label="Backbone", choices=tuple(BACKBONES), page="model"
    )
    weights: str = setting(
        "imagenet",
        "imagenet for pretrained weights, none for random initialisation",
        label="Weights",
        choices=WEIGHTS,
        page="model",
    )
    alpha: float = setting(
        1.0,
        "MobileNet and MobileNetV2 width multiplier; ImageNet weights exist for 0.25, 0.5, 0.75, 1 (MobileNet) "
        "and 0.35, 0.5, 0.75, 1, 1.3, 1.4 (MobileNetV2)",
        label="Width multiplier (alpha)",
        min=0.25,
        max=1.4,
        page="model",
    )
    image_size: int = setting(
        160,
        "side of the square input images, in pixels",
        label="Image size (pixels)",
        min=min(backbone.min_size for backbone in BACKBONES.values()),
        max=600,
        step=8,
        page="model",
    )
    epochs: int = setting(
        30,
        "epochs of feature extraction, frozen + augmentation and scratch training",
        label="Epochs",
        min=1,
        page="hyperparameters",
    )
    fine_tuning_epochs: int = setting(
        30, "epochs of the fine-tuning stage", label="Fine-tuning epochs", min=1, page="hyperparameters"
    )
    batch_size: int = setting(32, "images per training step", label="Batch size", min=1, page="hyperparameters")
    learning_rate: float = setting(
        1e-3,
        "learning rate of the head (feature extraction, frozen + augmentation and scratch)",
        label="Learning rate",
        min=1e-7,
        max=0.5,
        step=1e-5,
        page="hyperparameters",
    )
    fine_tuning_learning_rate: float = setting(
        1e-5,
        "the lower learning rate once the top block is unfrozen",
        label="Fine-tuning learning rate",
        min=1e-7,
        max=0.5,
        step=1e-6,
        page="hyperparameters",
    )
    optimizer: str = setting(
        "rmsprop",
        "rmsprop (the classic notebook's) or adam",
        label="Optimizer",
        choices=OPTIMIZERS,
        page="hyperparameters",
    )
    head: str = setting(
        "global_average",
        "flatten (the classic notebook's Flatten + Dense) or global_average (pooling + Dense)",
        label="Head",
        choices=HEADS,
        page="hyperparameters",
    )
    # 1 by default: 3 lifted every strategy on natural scenes but cost cats and dogs' feature extraction and
    # frozen + augmentation some accuracy (benchmarks/RESULTS.md); the default keeps what helps both data sets.
    feature_levels: int = setting(
        1,
        "how many of the base's last stages the features come from: 1 is its output alone (the classic "
        "notebook's), 2 and 3 stack the stages before it too, pooled to its size; a backbone with fewer "
        "registered stages uses all it has (the EfficientNets 3, the others 1)",
        label="Feature levels",
        min=1,
        max=3,
        page="hyperparameters",
    )
    dense_units: int = setting(
        256, "units of the head's hidden Dense layer", label="Dense units", min=1, page="hyperparameters"
    )
    dropout: float = setting(
        0.5,
        "dropout rate before the output layer",
        label="Dropout",
        min=0.0,
        max=0.95,
        step=0.05,
        page="hyperparameters",
    )
    validation_fraction: float = setting(
        0.2, "share of each class held out when the data set has no validation folder", min=0.05, max=0.5
    )
    # Apart from `seed`: the Data page shows a split, and a run trains on that split whatever its own seed.
    split_seed: int = setting(1337, "seeds the split of a data set without a validation folder", min=0, max=2**31 - 1)
    # At most 2**32 - 1: Keras seeds NumPy's global generator with it.
    seed: int = setting(
        1337,
        "seeds the augmentation, the weights' initialisation and the shuffling (the split has a seed of its own)",
        label="Seed",
        min=0,
        max=2**32 - 1,
        page="hyperparameters",
    )
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    augmented_views: int = setting(
        5,
        "augmented views of each training image that frozen_augmented and fine_tuning push through the frozen "
        "base once and cache (0 trains end to end, augmenting every epoch anew); with flips as the only "
        "augmentation the flipped copies are cached and each view is one of them",
        label="Augmented views (0 = end to end)",
        min=0,
        page="options",
    )
    continue_head: bool = setting(
        True,
        "in strategy all, frozen_augmented starts from the head feature_extraction trained instead of a new one "
        "(the classic notebook starts a new one)",
        label="Continue stage 1's head",
        page="options",
    )
    early_stopping_patience: int = setting(
        0,
        "stop a stage after this many epochs without a better validation loss and keep the weights of its best "
        "epoch (0 turns it off)",
        label="Early stopping patience (epochs)",
        min=0,
        page="options",
        flag="--early-stopping",
        metavar="PATIENCE",
    )
    keep_weights: str = setting(
        "last",
        "the weights each stage keeps: last (its last epoch's) or best (its epoch of lowest validation loss, as "
        "early stopping always keeps); best lets the validation split both choose and score the model, so its "
        "accuracy reads a little high",
        label="Weights each stage keeps",
        choices=KEEP_WEIGHTS,
        page="options",
    )
    class_weight: str = setting(
        "auto",
        "weight each class's loss inversely to its number of training images: auto (when the largest "
        f"class has {IMBALANCE_RATIO}x the images of the smallest), balanced (always) or none",
        label="Class weights",
        choices=CLASS_WEIGHTS,
        page="options",
    )
    distribution: str = setting(
        "default",
        "default (one device), mirrored (all local GPUs, or the logical CPUs of cpu_replicas) or "
        "multi_worker (the machines $TF_CONFIG describes)",
        choices=DISTRIBUTIONS,
        group="devices",
    )
    cpu_replicas: int = setting(
        0,
        "split the CPU into this many logical devices, for example to run mirrored with 2 replicas on a CPU (0: don't)",
        min=0,
        group="devices",
        metavar="N",
    )
    replica_scaling: str = setting(
        "linear",
        "linear: global batch = batch size x replicas and learning rates x replicas; none: global "
        "batch = batch size, learning rates unchanged",
        choices=REPLICA_SCALING,
        group="devices",
    )
    precision: str = setting(
        "float32",
        "the Keras dtype policy: float32, mixed_float16 (NVIDIA GPUs with tensor cores) or "
        "mixed_bfloat16 (TPUs, recent GPUs and CPUs), which compute in 16 bits",
        label="Precision",
        choices=PRECISIONS,
        group="speed",
        page="options",
    )
    cleaned: bool = setting(
        False,
        "train on the data set's cleaned view: its saved cleaning decisions (the Data page's explorer) applied; "
        "the run records which",
        label="Use the cleaning decisions",
        page="options",
    )
    jit_compile: bool = setting(
        False,
        "compile training steps and forward passes with XLA where every layer allows it (faster on GPUs; "
        "such runs are not bit-for-bit reproducible)",
        label="XLA compilation",
        group="speed",
        page="options",
        flag="--xla",
    )

    def __post_init__(self) -> None:
        if not isinstance(self.data_dir, str) or not self.data_dir:
            raise ValueError(f"data_dir must be a folder path, received {self.data_dir!r}.")
        backbone = BACKBONES.get(self.backbone)
        if backbone is not None and self.alpha != 1.0 and not backbone.supports_alpha:
            raise ValueError(
                f"alpha applies to MobileNet and MobileNetV2 only, received alpha={self.alpha!r} "
                f"for backbone {self.backbone!r}."
            )
        check_settings(self)
        if self.weights == "imagenet" and backbone.supports_alpha and self.alpha not in backbone.weights_alphas:
            # Keras would refuse it only once the worker builds the model.
            raise ValueError(
                f"ImageNet weights of {backbone.display_name} exist for alpha "
                f"{', '.join(f'{alpha:g}' for alpha in backbone.weights_alphas)}, received alpha={self.alpha!r} "
                "(random weights take any alpha from 0.25 to 1.4)."
            )
        if self.image_size < backbone.min_size:
            raise ValueError(
                f"image_size must be at least {backbone.min_size} for backbone {self.backbone!r}, "
                f"received {self.image_size!r}."
            )
        if not isinstance(self.augmentation, AugmentationConfig):
            raise ValueError(
                f"augmentation must be an AugmentationConfig, received {type(self.augmentation).__name__}."
            )

    @property
    def stacked_levels(self) -> int:
        """The feature levels the base stacks: `feature_levels`, at most what the backbone registers."""
        return BACKBONES[self.backbone].stacked_levels(self.feature_levels)

    @property
    def keeps_best_weights(self) -> bool:
        """Whether each stage keeps its epoch of lowest validation loss (asked for, or early stopping)."""
        return self.keep_weights == "best" or self.early_stopping_patience > 0

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
        # A config.json written before split_seed existed: its run split with its seed.
        values.setdefault("split_seed", values.get("seed", cls.split_seed))
        # One written before feature_levels existed: its base had one level.
        values.setdefault("feature_levels", 1)
        return cls(**values)


# Presets: overrides of TrainConfig's defaults; "augmentation" holds overrides of AugmentationConfig's. "seed" is
# the classic notebook's (Deep Learning with Python, 1st ed.); "default" favours a CPU: EfficientNet-Lite0 at 160 px,
# pooled head (README says why).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # "quality": EfficientNet-Lite1 at its native 240 px, weights bundled too; slower, and more accurate on both
    # measured data sets. Left-right flips are its only augmentation: with Lite1's features, rotations, shifts
    # and zooms cost frozen + augmentation and fine-tuning accuracy on natural scenes (benchmarks/RESULTS.md).
    "quality": {
        "backbone": "efficientnet_lite1",
        "image_size": 240,
        "augmentation": {"rotation_degrees": 0.0, "width_shift": 0.0, "height_shift": 0.0, "zoom": 0.0},
    },
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
        "continue_head": False,
    },
}


# What each preset is for, in a sentence: the CLI's --preset help and the Train page show it.
# The presets as the app offers them (the Train page's choice, the Data page's reset).
PRESET_TITLES = {
    "default": "CPU-friendly default",
    "quality": "Higher accuracy, slower (Lite1)",
    "seed": "Classic notebook (VGG16)",
}
PRESET_DESCRIPTIONS = {
    "default": "EfficientNet-Lite0 at 160 px, a pooled head: fast on a CPU, weights bundled",
    "quality": "EfficientNet-Lite1 at 240 px, left-right flips as the only augmentation: more accurate and slower "
    "than the default, weights bundled",
    "seed": "The classic notebook's: VGG16 at 150 px, Flatten-Dense 256-Dropout 0.5, RMSprop 2e-5, fine-tuning at 1e-5",
}


def preset_augmentation(preset: str, given: dict[str, Any] | None = None) -> AugmentationConfig:
    """A preset's augmentation: AugmentationConfig's defaults, then the preset's overrides, then `given`.

    Args:
        preset: a key of PRESETS.
        given: augmentation settings chosen explicitly (flags given), which win over the preset's.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}. Expected one of {sorted(PRESETS)}.")
    return AugmentationConfig(**{**PRESETS[preset].get("augmentation", {}), **(given or {})})


def from_preset(preset: str, **overrides: Any) -> TrainConfig:
    """Builds a TrainConfig from a preset, then the explicit overrides.

    Args:
        preset: a key of PRESETS.
        **overrides: any TrainConfig field; `None` values are ignored (flags not given). `augmentation` may
            be a whole AugmentationConfig, which replaces the preset's, or a dict of some of its settings,
            which change only those (`--preset quality --vertical-flip` keeps the preset's other settings).

    Returns:
        The validated TrainConfig.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}. Expected one of {sorted(PRESETS)}.")
    values = dict(PRESETS[preset])
    values.update({key: value for key, value in overrides.items() if value is not None})
    augmentation = overrides.get("augmentation")
    if not isinstance(augmentation, AugmentationConfig):
        values["augmentation"] = preset_augmentation(preset, augmentation)
    return TrainConfig(**values)
