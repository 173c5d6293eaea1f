"""Grad-CAM: which parts of an image made the model choose a class.

Follows the Keras example "Grad-CAM class activation visualization" (keras-io, `grad_cam.py`,
after Selvaraju et al., 2017, https://arxiv.org/abs/1610.02391): the gradient of the class score
with respect to the last convolutional feature map, averaged over space, weights that map's
channels; the weighted sum, through a ReLU and divided by its maximum, is the heatmap.

Which feature map, and how the class score and its gradients are taken from tlcore's classifiers
(before the output's softmax or sigmoid), is `tlcore.insight.gradcam_chain`. This module makes the
heatmap of an image or a file from them, and draws it over the photo.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from tlcore.data import images
from tlcore.insight.gradcam_chain import feature_map_and_gradients


def _model_of(predictor_or_model):
    """The Keras model of a `tlcore.serving.predict.Predictor`, or the model itself."""
    return getattr(predictor_or_model, "model", predictor_or_model)


def check_image(image: np.ndarray) -> np.ndarray:
    """Returns the image as an array, or raises for anything but an (H, W, 3) uint8 RGB image."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(
            f"image must be an RGB uint8 array of shape (height, width, 3), received dtype "
            f"{image.dtype} and shape {image.shape}."
        )
    return image


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """An RGB uint8 image stretched to size x size by the resize of `images.load_resized`."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(images.stretch_to_square(Image.fromarray(image), size), dtype=np.uint8)


def resize_heatmap(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """A float heatmap resized to (height, width) bilinearly, clipped to [0, 1]."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != (height, width):
        heatmap = np.asarray(Image.fromarray(heatmap).resize((width, height), Image.Resampling.BILINEAR))
    return np.clip(heatmap, 0.0, 1.0).astype(np.float32)


def heatmap_from(features: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM from a feature map and its gradients (h, w, channels): ReLU(sum_k mean(grad_k) A_k) / max."""
    weights = np.asarray(gradients, dtype=np.float64).mean(axis=(0, 1))
    heatmap = np.maximum(np.asarray(features, dtype=np.float64) @ weights, 0.0)
    peak = heatmap.max()
    return (heatmap / peak if peak > 0 else np.zeros_like(heatmap)).astype(np.float32)


def gradcam(predictor_or_model, image_uint8: np.ndarray, class_index: int | None = None) -> np.ndarray:
    """The Grad-CAM heatmap of an image for one class.

    Args:
        predictor_or_model: a `tlcore.serving.predict.Predictor` or a tlcore Keras classifier.
        image_uint8: an RGB uint8 image (height, width, 3) of any size; it is resized to the
            model's input size as prediction does.
        class_index: the class to explain (an index into the labels); None explains the top class.

    Returns:
        A float32 array (height, width) in [0, 1], the image's size: 1 where the class's evidence
        is strongest; all zeros when nothing in the image speaks for the class.

    Raises:
        ValueError: a bad image or class_index, or a model that is not a tlcore classifier chain.
    """
    return _explain(_model_of(predictor_or_model), check_image(image_uint8), class_index)[0]


def _explain(model, image: np.ndarray, class_index: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(heatmap of the image's size, probabilities, explained class) of an RGB uint8 image."""
    batch = resize_image(image, int(model.input_shape[1]))[np.newaxis].astype("float32")
    features, gradients, probabilities, chosen = feature_map_and_gradients(model, batch, class_index)
    return resize_heatmap(heatmap_from(features, gradients), *image.shape[:2]), probabilities, chosen


def explain_source(
    predictor_or_model, source: images.Source, class_index: int | None = None, *, name: str | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Grad-CAM of an image file or upload, on exactly the pixels its prediction sees.

    The image goes through `images.load_resized`, as in `predict.predict_sources` and training, so
    the heatmap explains the very input that was classified (a display thumbnail stretched again
    would differ from it by a resize or two, and its scores with it).

    Args:
        predictor_or_model: a `tlcore.serving.predict.Predictor` or a tlcore Keras classifier.
        source: a path, or the bytes of an upload.
        class_index: the class to explain; None explains the top class.
        name: the name to show in errors.

    Returns:
        (heatmap (size, size) float32 in [0, 1] over the model's square input, which
        `resize_heatmap` stretches back onto the photo; the probabilities (num_classes,) of that
        input; the explained class index).

    Raises:
        images.InvalidImageError: the image cannot be decoded.
        ValueError: a bad class_index, or a model that is not a tlcore classifier chain.
    """
    model = _model_of(predictor_or_model)
    # Already the model's size: `_explain` resizes neither the image nor, beyond it, the heatmap.
    return _explain(model, images.load_resized(source, int(model.input_shape[1]), name=name), class_index)


def jet(values: np.ndarray) -> np.ndarray:
    """A jet-like colormap: [0, 1] -> RGB floats in [0, 1] (blue, cyan, yellow, red)."""
    values = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)[..., np.newaxis]
    centres = np.array([0.75, 0.5, 0.25])  # Red peaks at 3/4, green at 1/2, blue at 1/4.
    return np.clip(1.5 - np.abs(4.0 * (values - centres)), 0.0, 1.0)


def colormap(values: np.ndarray) -> np.ndarray:
    """Matplotlib's "jet" when matplotlib is installed, else `jet`; RGB floats in [0, 1]."""
    try:
        import matplotlib  # Optional: not a dependency of tlcore.
    except ImportError:
        return jet(values)
    return np.asarray(matplotlib.colormaps["jet"](np.clip(values, 0.0, 1.0)))[..., :3]


def overlay(image_uint8: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """The heatmap in colour over the image: (1 - alpha) * image + alpha * colours, as uint8 RGB.

    Args:
        image_uint8: an RGB uint8 image (height, width, 3).
        heatmap: values in [0, 1], any size (resized to the image's).
        alpha: the weight of the colours, in [0, 1].

    Returns:
        An RGB uint8 image of the image's shape.
    """
    image = check_image(image_uint8)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1], received {alpha!r}.")
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be a 2-D array, received shape {heatmap.shape}.")
    colours = colormap(resize_heatmap(heatmap, image.shape[0], image.shape[1])) * 255.0
    blended = (1.0 - alpha) * image.astype(np.float64) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
