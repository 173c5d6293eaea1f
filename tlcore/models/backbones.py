"""Building the backbones of the registry: the pretrained base, its preprocessing layer, its top block.

The facts about each backbone live in `tlcore.models.registry` (no Keras there); this module turns
them into Keras models.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

from tlcore.models import efficientnet_lite
from tlcore.models.layers import Preprocess
from tlcore.models.registry import get_backbone, weights_status


class WeightsUnavailableError(Exception):
    """ImageNet weights are neither cached nor downloadable; the message says where to put them."""


def _resolve(builder: str) -> Callable:
    module_name, function_name = builder.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def build_base(name: str, image_size: int, weights: str | None = "imagenet", alpha: float = 1.0):
    """Builds a backbone without its classifier, for inputs preprocessed by `preprocessing_layer`.

    Args:
        name: a registry key.
        image_size: side of the square input in pixels.
        weights: "imagenet" (cache first, then download) or None / "none" for random weights.
        alpha: width multiplier, MobileNet and MobileNetV2 only.

    Returns:
        A `keras.Model` mapping (image_size, image_size, 3) inputs to its last feature map.

    Raises:
        WeightsUnavailableError: ImageNet weights are not cached and cannot be downloaded.
    """
    backbone = get_backbone(name)
    if not isinstance(image_size, int) or image_size < backbone.min_size:
        raise ValueError(
            f"{backbone.display_name} needs an integer image_size >= {backbone.min_size}, received {image_size!r}."
        )
    weights = None if weights in (None, "none") else weights
    if weights not in (None, "imagenet"):
        raise ValueError(f"weights must be 'imagenet' or None, received {weights!r}.")
    keyword_arguments = {"include_top": False, "weights": weights, "input_shape": (image_size, image_size, 3)}
    if backbone.supports_alpha:
        keyword_arguments["alpha"] = alpha
    elif alpha != 1.0:
        raise ValueError(f"alpha applies to MobileNet and MobileNetV2 only, received alpha={alpha!r} for {name!r}.")
    build = _resolve(backbone.builder)
    try:
        return build(**keyword_arguments)
    except Exception as error:  # get_file raises a plain Exception on a failed download.
        status = weights_status(name, image_size, alpha)
        if weights == "imagenet" and not status.available:
            raise WeightsUnavailableError(
                f"ImageNet weights for {backbone.display_name} are not on this machine and could not be "
                f"downloaded ({error}). Place {Path(status.location).name} in {Path(status.location).parent}, "
                "or choose a backbone whose weights are available offline (EfficientNet-Lite0)."
            ) from error
        raise


def preprocessing_layer(name: str):
    """The `tlcore.models.layers.Preprocess` layer that maps [0, 255] RGB pixels to the backbone's inputs."""
    backbone = get_backbone(name)
    if backbone.preprocessing == "normalize":
        return Preprocess("normalize", efficientnet_lite.INPUT_MEAN, efficientnet_lite.INPUT_STD, name="preprocess")
    return Preprocess(backbone.preprocessing, name="preprocess")


def top_block_layer_names(base, name: str) -> list[str]:
    """Names of the base's layers that fine-tuning unfreezes (its top block).

    Args:
        base: a model built by `build_base(name, ...)`.
        name: its registry key.

    Returns:
        Layer names, in model order; never empty.
    """
    backbone = get_backbone(name)
    names = [layer.name for layer in base.layers]
    if backbone.top_block_after is not None:
        if backbone.top_block_after not in names:
            raise ValueError(f"{backbone.display_name} has no layer {backbone.top_block_after!r} to unfreeze after.")
        selected = names[names.index(backbone.top_block_after) + 1 :]
    else:
        selected = [layer for layer in names if layer.startswith(backbone.top_block_prefixes)]
    if not selected:
        raise ValueError(f"No top block found in {backbone.display_name} for {backbone.top_block_prefixes!r}.")
    return selected
