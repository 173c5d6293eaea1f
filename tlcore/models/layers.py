"""tlcore's own Keras layers, registered so saved models load with `safe_mode=True`.

Each backbone expects its inputs scaled its own way. Putting that scaling inside the saved model
(instead of in Python before `predict`) means prediction cannot drift from training. The augmentation's
geometry (`RandomAffine`) sits in the saved model too, doing nothing at inference.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from tlcore.augmentation_settings import FILL_MODES
from tlcore.models.registry import PREPROCESSING_MODES

# ImageNet channel means in BGR order, as keras.applications' "caffe" mode subtracts them.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="tlcore")
class Preprocess(keras.layers.Layer):
    """Maps RGB pixels in [0, 255] to what a backbone expects.

    Modes:
        "caffe": RGB -> BGR, then subtract the ImageNet mean (VGG16, VGG19, ResNet50).
        "tf": scale to [-1, 1] (InceptionV3, MobileNet, MobileNetV2).
        "normalize": (pixel - mean) / std per channel, with the given mean and std.
        "none": unchanged (EfficientNet B0..B6 rescale inside the model themselves).

    Args:
        mode: one of PREPROCESSING_MODES.
        mean: per-channel RGB mean in pixel units, for "normalize".
        std: per-channel RGB standard deviation in pixel units, for "normalize".
    """

    def __init__(self, mode: str, mean=None, std=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(f"Unknown preprocessing mode {mode!r}. Expected one of {PREPROCESSING_MODES}.")
        if mode == "normalize" and (mean is None or std is None or len(mean) != 3 or len(std) != 3):
            raise ValueError(
                f"Mode 'normalize' needs 3 means and 3 standard deviations, received mean={mean!r}, std={std!r}."
            )
        self.mode = mode
        self.mean = tuple(float(value) for value in mean) if mean is not None else None
        self.std = tuple(float(value) for value in std) if std is not None else None

    def call(self, inputs):
        inputs = ops.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            bgr = ops.flip(inputs, axis=-1)
            return bgr - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=self.compute_dtype)
        if self.mode == "tf":
            return inputs / 127.5 - 1.0
        if self.mode == "normalize":
            mean = ops.convert_to_tensor(self.mean, dtype=self.compute_dtype)
            std = ops.convert_to_tensor(self.std, dtype=self.compute_dtype)
            return (inputs - mean) / std
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "mean": self.mean, "std": self.std})
        return config


def affine_matrix(angle, shift_x, shift_y, zoom, height, width):
    """The map from an output pixel to the input pixel it samples, for `ops.image.affine_transform`.

    The same map as Keras' RandomRotation, then RandomTranslation, then RandomZoom with the same draws,
    multiplied into one: a pixel p of the copy samples the image at zoom * R(angle) (p - centre) - R(angle)
    shift + centre, all about the image's centre ((width - 1) / 2, (height - 1) / 2).

    Args:
        angle: rotation per image, in radians, shape (batch,).
        shift_x: horizontal shift per image, in pixels (positive: content moves right), shape (batch,).
        shift_y: vertical shift per image, in pixels (positive: content moves down), shape (batch,).
        zoom: scale of the sampling grid per image (above 1 zooms out), shape (batch,).
        height: the images' height in pixels (a Python or tensor scalar).
        width: the images' width in pixels.

    Returns:
        A float32 tensor (batch, 8): a0, a1, a2, b0, b1, b2 and two zeros (no projective part).
    """
    angle, shift_x, shift_y, zoom = (ops.cast(value, "float32") for value in (angle, shift_x, shift_y, zoom))
    centre_x = (ops.cast(width, "float32") - 1.0) / 2.0
    centre_y = (ops.cast(height, "float32") - 1.0) / 2.0
    cosine, sine = ops.cos(angle), ops.sin(angle)
    a2 = centre_x - zoom * (cosine * centre_x - sine * centre_y) - (cosine * shift_x - sine * shift_y)
    b2 = centre_y - zoom * (sine * centre_x + cosine * centre_y) - (sine * shift_x + cosine * shift_y)
    zeros = ops.zeros_like(angle)
    return ops.stack([zoom * cosine, -zoom * sine, a2, zoom * sine, zoom * cosine, b2, zeros, zeros], axis=1)


@keras.saving.register_keras_serializable(package="tlcore")
class RandomAffine(keras.layers.Layer):
    """Random rotation, shift and zoom about the image's centre, resampled once.

    It draws what Keras' RandomRotation, RandomTranslation and RandomZoom draw from the same settings (an
    angle, a shift each way and one zoom for both axes, uniform in their ranges, anew for each image), but
    multiplies the three maps into one (`affine_matrix`) and interpolates once. Three layers interpolate
    three times, which blurs a training copy more than the photos it is compared with at validation, and
    costs three passes over the pixels. Like Keras' random layers it acts only when `training` is true.

    Args:
        rotation_degrees: largest rotation either way, in degrees.
        width_shift: largest horizontal shift either way, as a share of the width.
        height_shift: largest vertical shift either way, as a share of the height.
        zoom: largest zoom in or out, as a share (0.2: the grid scaled by 0.8 to 1.2).
        fill_mode: how uncovered pixels are filled: "nearest", "reflect", "constant" (zeros) or "wrap".
        seed: seeds the draws.
    """

    def __init__(
        self,
        rotation_degrees: float = 0.0,
        width_shift: float = 0.0,
        height_shift: float = 0.0,
        zoom: float = 0.0,
        fill_mode: str = "nearest",
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value, upper in (
            ("rotation_degrees", rotation_degrees, 180.0),
            ("width_shift", width_shift, 1.0),
            ("height_shift", height_shift, 1.0),
            ("zoom", zoom, 0.99),
        ):
            if not 0.0 <= float(value) <= upper:
                raise ValueError(f"{name} must be between 0 and {upper}, received {value!r}.")
        if fill_mode not in FILL_MODES:
            raise ValueError(f"fill_mode must be one of {FILL_MODES}, received {fill_mode!r}.")
        self.rotation_degrees = float(rotation_degrees)
        self.width_shift = float(width_shift)
        self.height_shift = float(height_shift)
        self.zoom = float(zoom)
        self.fill_mode = fill_mode
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # TensorFlow's ImageProjectiveTransform has no XLA kernel (as for Keras' own geometric layers).
        self.supports_jit = False

    def call(self, images, training=True):
        if not training:
            return images
        shape = ops.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]

        def uniform(lower, upper):
            return keras.random.uniform((batch,), lower, upper, seed=self.seed_generator)

        # Each drawn straight in its range: `1 + uniform(-z, z)` is folded differently by a compiled graph
        # than eagerly (an ulp apart), and cached views must be the same either way.
        radians = self.rotation_degrees * math.pi / 180.0
        angle = uniform(-radians, radians)
        shift_x = uniform(-self.width_shift, self.width_shift) * ops.cast(width, "float32")
        shift_y = uniform(-self.height_shift, self.height_shift) * ops.cast(height, "float32")
        zoom = uniform(1.0 - self.zoom, 1.0 + self.zoom)
        return ops.image.affine_transform(
            images,
            affine_matrix(angle, shift_x, shift_y, zoom, height, width),
            interpolation="bilinear",
            fill_mode=self.fill_mode,
            fill_value=0.0,
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "rotation_degrees": self.rotation_degrees,
                "width_shift": self.width_shift,
                "height_shift": self.height_shift,
                "zoom": self.zoom,
                "fill_mode": self.fill_mode,
                "seed": self.seed,
            }
        )
        return config
