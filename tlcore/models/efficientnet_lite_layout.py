"""The layout of EfficientNet-Lite0, -Lite1 and -Lite2: their stages, and how a variant scales them.

Keras-free, so the layout can be read (and tested) without building a model. `tlcore.models.efficientnet_lite`
builds the layers from it and maps them to the PyTorch checkpoints' keys.
"""

import math

# Each variant's (width coefficient, depth coefficient, dropout before the classifier), from
# tensorflow/tpu efficientnet_lite_builder.py; the Keras model is named after its key.
VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 0.3),
}
# Channel counts are rounded to multiples of this, as in the original.
FILTER_DIVISOR = 8

# Stages of EfficientNet-Lite0 (width and depth coefficients 1.0), as in
# tensorflow/tpu efficientnet_lite_builder.py: "r1_k3_s11_e1_i32_o16" etc.
# Lite has no squeeze-and-excitation. Stage i is named block{i+1}, its
# repeats are lettered a, b, c, ...
BLOCKS_ARGS = (
    {"kernel_size": 3, "repeats": 1, "filters_in": 32, "filters_out": 16, "expand_ratio": 1, "strides": 1},
    {"kernel_size": 3, "repeats": 2, "filters_in": 16, "filters_out": 24, "expand_ratio": 6, "strides": 2},
    {"kernel_size": 5, "repeats": 2, "filters_in": 24, "filters_out": 40, "expand_ratio": 6, "strides": 2},
    {"kernel_size": 3, "repeats": 3, "filters_in": 40, "filters_out": 80, "expand_ratio": 6, "strides": 2},
    {"kernel_size": 5, "repeats": 3, "filters_in": 80, "filters_out": 112, "expand_ratio": 6, "strides": 1},
    {"kernel_size": 5, "repeats": 4, "filters_in": 112, "filters_out": 192, "expand_ratio": 6, "strides": 2},
    {"kernel_size": 3, "repeats": 1, "filters_in": 192, "filters_out": 320, "expand_ratio": 6, "strides": 1},
)


def round_filters(filters: int, width: float) -> int:
    """A channel count scaled by `width` and rounded to `FILTER_DIVISOR`, never down by more than 10%."""
    scaled = filters * width
    rounded = max(FILTER_DIVISOR, int(scaled + FILTER_DIVISOR / 2) // FILTER_DIVISOR * FILTER_DIVISOR)
    return int(rounded + FILTER_DIVISOR if rounded < 0.9 * scaled else rounded)


def scaled_blocks(variant: str) -> tuple[dict, ...]:
    """`BLOCKS_ARGS` scaled for a variant: widths by its width, repeats (but the first and last stage's) by depth."""
    if variant not in VARIANTS:
        raise ValueError(f"Received variant={variant!r}, expected one of {sorted(VARIANTS)}")
    width, depth, _ = VARIANTS[variant]
    last = len(BLOCKS_ARGS) - 1
    return tuple(
        {
            **block_args,
            "filters_in": round_filters(block_args["filters_in"], width),
            "filters_out": round_filters(block_args["filters_out"], width),
            "repeats": block_args["repeats"] if index in (0, last) else math.ceil(depth * block_args["repeats"]),
        }
        for index, block_args in enumerate(BLOCKS_ARGS)
    )


def block_names(blocks=BLOCKS_ARGS):
    """Returns the Keras name prefix of each block, e.g. "block2b_", in order."""
    names = []
    for stage_index, block_args in enumerate(blocks):
        for repeat_index in range(block_args["repeats"]):
            names.append(f"block{stage_index + 1}{chr(ord('a') + repeat_index)}_")
    return names
