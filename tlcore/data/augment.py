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
    # One layer per flip: RandomFlip("horizontal_and_vertical") draws one coin for both axes, so it
    # turns an image half-way round or leaves it, and never flips it one way only.
    if settings.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed, name="flip_left_right"))
    if settings.vertical_flip:
        layers.append(keras.layers.RandomFlip("vertical", seed=seed + 6, name="flip_upside_down"))
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


# A flip copy: (flipped left-right, flipped upside down).
FlipCopy = tuple[bool, bool]


def flip_copies(settings: AugmentationConfig) -> tuple[FlipCopy, ...] | None:
    """Every image the augmentation can make of a photo, when flips are all it does.

    Each flip the settings turn on is drawn half of the time, independently, so the augmented image is
    each of these copies equally often: training on a random pick among them is training on the
    augmentation itself.

    Args:
        settings: the augmentation settings.

    Returns:
        The (flipped left-right, flipped upside down) copies, the photo as it is first; None when a
        rotation, shift, zoom, brightness or contrast change is on (those have no end of outcomes).
    """
    if (
        settings.rotation_degrees
        or settings.width_shift
        or settings.height_shift
        or settings.zoom
        or settings.brightness
        or settings.contrast
    ):
        return None
    left_right = (False, True) if settings.horizontal_flip else (False,)
    upside_down = (False, True) if settings.vertical_flip else (False,)
    return tuple((horizontal, vertical) for vertical in upside_down for horizontal in left_right)


def flip_copy(images: np.ndarray, copy: FlipCopy) -> np.ndarray:
    """A batch of images (batch, height, width, channels) flipped as `copy` says, as RandomFlip flips them."""
    if images.ndim != 4:
        raise ValueError(f"images must have shape (batch, height, width, channels), received {images.shape}.")
    left_right, upside_down = copy
    if left_right:
        images = images[:, :, ::-1]
    if upside_down:
        images = images[:, ::-1]
    return np.ascontiguousarray(images)


def describe_flip_copy(copy: FlipCopy) -> str:
    """'as they are', 'flipped left-right', 'flipped upside down' or 'flipped both ways'."""
    return {
        (False, False): "as they are",
        (True, False): "flipped left-right",
        (False, True): "flipped upside down",
        (True, True): "flipped both ways",
    }[tuple(copy)]
