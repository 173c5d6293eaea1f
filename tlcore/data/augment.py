"""Augmentation settings -> Keras preprocessing layers, and a preview made by those very layers.

The Data page's preview calls `preview`, training calls `build_layers`: both build the same
layers from the same `AugmentationConfig`, so what a person sees is what the model is fed.
"""

from __future__ import annotations

import keras
import numpy as np

from tlcore.config import AugmentationConfig


def build_layers(settings: AugmentationConfig, seed: int = 1337) -> keras.Sequential:
    """Builds the augmentation as a Keras model of random preprocessing layers.

    The layers act only when called with `training=True`, so the same model can sit inside a
    classifier that is later used for prediction.

    Args:
        settings: which transformations, and how strong.
        seed: seeds each random layer (each gets its own offset), for reproducible draws.

    Returns:
        A `keras.Sequential` mapping float images in [0, 255] to augmented float images.
    """
    layers = []
    if settings.horizontal_flip or settings.vertical_flip:
        if settings.horizontal_flip and settings.vertical_flip:
            mode = "horizontal_and_vertical"
        elif settings.horizontal_flip:
            mode = "horizontal"
        else:
            mode = "vertical"
        layers.append(keras.layers.RandomFlip(mode, seed=seed, name="flip"))
    if settings.rotation_degrees:
        layers.append(
            keras.layers.RandomRotation(
                settings.rotation_degrees / 360.0,
                fill_mode=settings.fill_mode,
                seed=seed + 1,
                name="rotation",
            )
        )
    if settings.width_shift or settings.height_shift:
        layers.append(
            keras.layers.RandomTranslation(
                height_factor=settings.height_shift,
                width_factor=settings.width_shift,
                fill_mode=settings.fill_mode,
                seed=seed + 2,
                name="shift",
            )
        )
    if settings.zoom:
        layers.append(
            keras.layers.RandomZoom(
                height_factor=settings.zoom,
                fill_mode=settings.fill_mode,
                seed=seed + 3,
                name="zoom",
            )
        )
    if settings.brightness:
        layers.append(
            keras.layers.RandomBrightness(settings.brightness, value_range=(0, 255), seed=seed + 4, name="brightness")
        )
    if settings.contrast:
        layers.append(
            keras.layers.RandomContrast(settings.contrast, value_range=(0, 255), seed=seed + 5, name="contrast")
        )
    return keras.Sequential(layers, name="augmentation")


def preview(image: np.ndarray, settings: AugmentationConfig, count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Returns augmented copies of one image, made by the layers training uses.

    Args:
        image: an RGB uint8 array (height, width, 3), as `tlcore.data.images.load_resized` returns.
        settings: the augmentation settings to show.
        count: how many augmented copies to draw.
        seed: the random seed; the same seed gives the same copies, another seed new draws.

    Returns:
        `count` RGB uint8 arrays of the image's shape.
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, received {count!r}.")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must have shape (height, width, 3), received {image.shape}.")
    layers = build_layers(settings, seed=seed)
    batch = np.repeat(image[np.newaxis].astype("float32"), count, axis=0)
    if not layers.layers:
        augmented = batch
    else:
        augmented = keras.ops.convert_to_numpy(layers(batch, training=True))
    return [np.clip(copy, 0, 255).round().astype(np.uint8) for copy in augmented]
