"""Model pieces of the strategies: the classifier head, the scratch CNN, the frozen base, compiling.

Every stage ends with a complete model (Input -> [augmentation] -> Preprocess -> base -> head) that
takes RGB pixels in [0, 255], so prediction needs nothing but the saved file. Keras rules followed (from
its transfer-learning guide): freeze with `trainable = False`, call the base with `training=False` so
BatchNorm stays in inference mode, and recompile after any change to `trainable`.
"""

from __future__ import annotations

import keras
import numpy as np

from tlcore.config import TrainConfig
from tlcore.models import backbones


def output_layer(num_classes: int) -> keras.layers.Dense:
    """One sigmoid unit for two classes, a softmax over classes otherwise.

    Always float32, also under a mixed-precision policy: a softmax or sigmoid in float16 loses
    small probabilities and makes the loss unstable (Keras' mixed-precision guide).
    """
    if num_classes == 2:
        return keras.layers.Dense(1, activation="sigmoid", name="output", dtype="float32")
    return keras.layers.Dense(num_classes, activation="softmax", name="output", dtype="float32")


def build_head(feature_shape: tuple[int, ...], num_classes: int, config: TrainConfig) -> keras.Model:
    """The classifier on top of a feature map: Flatten (or pooling), Dense, Dropout, output.

    Args:
        feature_shape: the base's output shape without the batch axis, e.g. (4, 4, 512).
        num_classes: the number of classes.
        config: head, dense_units and dropout are read from it.

    Returns:
        A `keras.Model` named "head".
    """
    inputs = keras.Input(shape=feature_shape, name="features")
    if config.head == "flatten":
        x = keras.layers.Flatten(name="flatten")(inputs)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(inputs)
    x = keras.layers.Dense(config.dense_units, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    return keras.Model(inputs, output_layer(num_classes)(x), name="head")


def build_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    raise ValueError(f"Unknown optimizer {name!r}. Expected 'rmsprop' or 'adam'.")


def supports_xla(model: keras.layers.Layer) -> bool:
    """Whether every layer of a model, nested models included, can be compiled with XLA."""
    inner = getattr(model, "layers", [])
    return bool(getattr(model, "supports_jit", True)) and all(supports_xla(layer) for layer in inner)


def compile_model(
    model: keras.Model, num_classes: int, optimizer: str, learning_rate: float, jit_compile: bool = False
) -> None:
    """Binary cross-entropy for two classes, categorical cross-entropy for more.

    Args:
        model: the model to compile.
        num_classes: the number of classes.
        optimizer: "rmsprop" or "adam".
        learning_rate: the optimizer's learning rate.
        jit_compile: train with XLA, if every layer supports it (see `supports_xla`).
    """
    loss = "binary_crossentropy" if num_classes == 2 else "categorical_crossentropy"
    # Under "mixed_float16" Keras wraps the optimizer in a LossScaleOptimizer itself.
    model.compile(
        optimizer=build_optimizer(optimizer, learning_rate),
        loss=loss,
        metrics=["accuracy"],
        jit_compile=bool(jit_compile and supports_xla(model)),
    )


def assemble(image_size: int, base: keras.Model, head: keras.Model, preprocess, augmentation=None) -> keras.Model:
    """The full classifier: RGB pixels in [0, 255] -> [augmentation] -> preprocessing -> base -> head."""
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = augmentation(inputs) if augmentation is not None else inputs
    x = preprocess(x)
    x = base(x, training=False)  # BatchNorm in inference mode, also once unfrozen.
    return keras.Model(inputs, head(x), name="classifier")


def build_scratch_model(image_size: int, num_classes: int, augmentation) -> keras.Model:
    """The classic small convnet (4 conv blocks, Dropout 0.5, Dense 512), trained from scratch."""
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = augmentation(inputs)
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(x)
    for index, filters in enumerate((32, 64, 128, 128)):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{index + 1}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{index + 1}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    x = keras.layers.Dense(512, activation="relu", name="dense")(x)
    return keras.Model(inputs, output_layer(num_classes)(x), name="scratch_cnn")


def unfreeze_top_block(base: keras.Model, backbone: str) -> list[str]:
    """Makes the base's top block trainable (BatchNorm layers stay frozen); returns those layers' names."""
    top_block = set(backbones.top_block_layer_names(base, backbone))
    base.trainable = True
    unfrozen = []
    for layer in base.layers:
        trainable = layer.name in top_block and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        if trainable and layer.weights:
            unfrozen.append(layer.name)
    return unfrozen


def layer_table(model: keras.Model) -> list[dict]:
    """Per layer of a base model: name, type, parameters, trainable (for the layer-stack view)."""
    rows = []
    for layer in model.layers:
        rows.append(
            {
                "name": layer.name,
                "type": type(layer).__name__,
                "parameters": int(sum(np.prod(weight.shape) for weight in layer.weights)),
                "trainable": bool(layer.trainable and layer.trainable_weights),
            }
        )
    return rows


def count_parameters(model: keras.Model) -> dict:
    trainable = int(sum(np.prod(weight.shape) for weight in model.trainable_weights))
    total = int(sum(np.prod(weight.shape) for weight in model.weights))
    return {"trainable": trainable, "frozen": total - trainable, "total": total}


# The layers stack_stages adds: the earlier stages' outputs side by side, then those with the base's own.
STAGES_LAYER = "stage_outputs"
STACKED_LAYER = "stacked_features"


def build_frozen_base(config: TrainConfig) -> keras.Model:
    """The config's backbone with `trainable = False`, its output stacked over `config.stacked_levels` stages."""
    base = backbones.build_base(config.backbone, config.image_size, config.weights, config.alpha)
    if config.stacked_levels > 1:
        base = stack_stages(base, config.backbone, config.stacked_levels)
    base.trainable = False
    return base


def top_block_input(base: keras.Model, backbone: str):
    """The tensor entering the base's top block (where fine-tuning begins)."""
    return base.get_layer(backbones.top_block_layer_names(base, backbone)[0]).input


def stack_stages(base: keras.Model, backbone: str, levels: int) -> keras.Model:
    """The base with the outputs of its last `levels` stages stacked along the channels.

    A frozen ImageNet network's last stage is the most specific to ImageNet's classes; the stages
    before it describe textures and parts that other photos (scenes, say) share. Each earlier
    stage's output is average-pooled to the base's output size and concatenated before it, so the
    heads, pooling and Grad-CAM see one feature map. The layers are the base's own (shared weights).

    Args:
        base: a model built by `backbones.build_base(backbone, ...)`.
        backbone: its registry key; its `stage_prefixes` name the stages.
        levels: 2 or more, at most the backbone's `max_feature_levels`.

    Returns:
        A model from the base's input to (rows, cols, earlier stages' channels + the base's channels).

    Raises:
        ValueError: levels out of range, or the nearest stage does not end where the top block begins.
    """
    entry = backbones.get_backbone(backbone)
    if not 2 <= levels <= entry.max_feature_levels:
        raise ValueError(
            f"levels must be from 2 to {entry.max_feature_levels} for {entry.display_name}, received {levels!r}."
        )
    names = [layer.name for layer in base.layers]
    ends = []
    for prefix in entry.stage_prefixes[: levels - 1]:
        in_stage = [name for name in names if name.startswith(prefix)]
        if not in_stage:
            raise ValueError(f"{entry.display_name} has no layer starting with {prefix!r}.")
        ends.append(base.get_layer(in_stage[-1]).output)
    # The nearest stage's output is the top block's input, so that split_base can cache it (strategies 2 and 3).
    if ends[0] is not top_block_input(base, backbone):
        raise ValueError(f"{entry.display_name}: stage {entry.stage_prefixes[0]!r} does not end at the top block.")
    rows = base.output.shape[1]
    pooled = []
    for end in reversed(ends):  # Shallowest first.
        factor = -(-end.shape[1] // rows)  # "same" pooling by the ceiling keeps rows exactly.
        if factor > 1:
            end = keras.layers.AveragePooling2D(factor, padding="same", name=f"pool_{end.name}")(end)
        pooled.append(end)
    stages = keras.layers.Concatenate(name=STAGES_LAYER)(pooled) if len(pooled) > 1 else pooled[0]
    stacked = keras.layers.Concatenate(name=STACKED_LAYER)([stages, base.output])
    return keras.Model(base.input, stacked, name=base.name)


def split_base(base: keras.Model, backbone: str) -> tuple[keras.Model, keras.Model]:
    """Splits a base into (bottom, top) at the input of its top block; top(bottom(x)) == base(x).

    For a stacked base (`stack_stages`) the bottom's output also carries the earlier stages'
    pooled outputs, the top block reads its input from the last channels, and the top passes
    the rest through: what strategies 2 and 3 cache still holds everything the head reads.
    """
    boundary = top_block_input(base, backbone)
    if STACKED_LAYER not in [layer.name for layer in base.layers]:
        return keras.Model(base.input, boundary, name="bottom"), keras.Model(boundary, base.output, name="top_block")
    stages, block_output = base.get_layer(STACKED_LAYER).input
    block = keras.Model(boundary, block_output, name="top_block_only")
    bottom = keras.Model(base.input, stages, name="bottom")
    carried = keras.Input(shape=stages.shape[1:], name="boundary")
    block_input = carried[..., -boundary.shape[-1] :]
    outputs = keras.layers.Concatenate(name=STACKED_LAYER)([carried, block(block_input)])
    return bottom, keras.Model(carried, outputs, name="top_block")


def split_head(head: keras.Model) -> tuple[keras.layers.Layer, keras.Model]:
    """(the head's parameter-free first layer, a model of the rest sharing the head's layers)."""
    first = head.layers[1]  # Flatten or GlobalAveragePooling2D, after the Input.
    vector = keras.Input(shape=first.output.shape[1:], name="head_input")
    x = vector
    for layer in head.layers[2:]:
        x = layer(x)
    return first, keras.Model(vector, x, name="head_tail")
