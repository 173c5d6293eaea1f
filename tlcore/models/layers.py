"""tlcore's own Keras layers, registered so saved models load with `safe_mode=True`.

Each backbone expects its inputs scaled its own way. Putting that scaling inside the saved model
(instead of in Python before `predict`) means prediction cannot drift from training.
"""

from __future__ import annotations

import keras
from keras import ops

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
