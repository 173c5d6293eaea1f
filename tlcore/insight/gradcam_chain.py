"""Running a classifier's chain by hand under `tf.GradientTape`: Grad-CAM's feature map and its gradients.

The class score is taken before the output's softmax or sigmoid, as in the paper: the logit of the
class (for one sigmoid unit, z for the second class and -z for the first). A confident prediction
saturates the probability at exactly 0 or 1 in float32, and its gradient with it: differentiating
the probability left a well-trained model's heatmap empty for most photos.

tlcore's models are a chain `image -> [augmentation] -> preprocess -> base -> head` (the base a
nested Keras model), or the flat scratch CNN (`... -> conv1 .. conv4 -> ... -> output`). The chain
is run by hand under `tf.GradientTape`, skipping the augmentation (inference), so the feature map
can be taken from inside the nested base:
    - a nested base: its last non-pooling layer with a spatial output (the base's own output for
      EfficientNet, MobileNet, ResNet, Inception; `block5_conv3` for VGG, whose output is a pooling);
    - a flat model: its last convolution (`conv4` for the scratch CNN).
The hand-run chain is checked against the model's own prediction, so a model of another shape is
refused instead of explained wrongly. `tlcore.insight.gradcam` turns what it returns into heatmaps.
"""

from __future__ import annotations

import numpy as np

# Tolerance of the check that the hand-run chain reproduces the model's output.
CHAIN_TOLERANCE = 1e-3


def inference_layers(model) -> list:
    """The model's top-level layers in order, without its input and the "augmentation" block."""
    # Heavy: imports Keras.
    import keras

    return [
        layer
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer) and layer.name != "augmentation"
    ]


def _is_spatial(layer) -> bool:
    shape = getattr(layer, "output", None)
    return shape is not None and len(shape.shape) == 4


def _is_nested_base(layer) -> bool:
    # Heavy: imports Keras.
    import keras

    return isinstance(layer, keras.Model) and _is_spatial(layer)


def find_target(layers: list) -> tuple[int, str | None]:
    """Where the feature map is: (position in the chain, layer name inside a nested base or None).

    Raises:
        ValueError: the chain has neither a nested base with a spatial output nor a convolution.
    """
    for position in range(len(layers) - 1, -1, -1):
        layer = layers[position]
        if _is_nested_base(layer):
            for inner in reversed(layer.layers):
                if _is_spatial(inner) and "Pooling" not in type(inner).__name__:
                    return position, inner.name
            raise ValueError(f"The base model {layer.name!r} has no spatial feature map; expected convolutions.")
    for position in range(len(layers) - 1, -1, -1):
        layer = layers[position]
        if "Conv" in type(layer).__name__ and _is_spatial(layer):
            return position, None
    raise ValueError(
        f"No convolutional feature map found among the layers {[layer.name for layer in layers]}; "
        "expected a nested base model or a convolution layer."
    )


def _base_with_feature_map(base, layer_name: str):
    """The base as a model returning (its feature map at `layer_name`, its output)."""
    # Heavy: imports Keras.
    import keras

    return keras.Model(base.inputs, [base.get_layer(layer_name).output, base.output], name=f"{base.name}_gradcam")


def _class_scores(outputs):
    """(batch, num_classes) probabilities from the model's outputs (one sigmoid unit = two classes)."""
    # Heavy: imports TensorFlow.
    import tensorflow as tf

    if outputs.shape[-1] == 1:
        return tf.concat([1.0 - outputs, outputs], axis=-1)
    return outputs


def _output_activation(layer) -> str | None:
    """ "sigmoid" or "softmax" when the layer is a Dense output with that activation, else None."""
    # Heavy: imports Keras.
    import keras

    if not isinstance(layer, keras.layers.Dense):
        return None
    name = getattr(layer.activation, "__name__", None)
    return name if name in ("sigmoid", "softmax") else None


def _split_output(layer):
    """(what runs before the output Dense, that Dense, its activation) for the chain's last layer.

    The last layer is either the Dense output itself (the scratch CNN; nothing runs before it), or
    the head, a nested model that ends in it (the transfer models): then the part of the head before
    the Dense is a model of its own. (None, None, None) for any other last layer.
    """
    # Heavy: imports Keras.
    import keras

    activation = _output_activation(layer)
    if activation is not None:
        return None, layer, activation
    if isinstance(layer, keras.Model) and layer.layers:
        output = layer.layers[-1]
        activation = _output_activation(output)
        if activation is not None and output.output is layer.output:
            body = keras.Model(layer.inputs, output.input, name=f"{layer.name}_before_output")
            return body, output, activation
    return None, None, None


def _logits(layer, values):
    """The Dense output layer's scores before its activation, in float32."""
    # Heavy: imports TensorFlow.
    import tensorflow as tf

    values = tf.cast(values, layer.compute_dtype)
    logits = tf.matmul(values, tf.cast(layer.kernel, layer.compute_dtype))
    if layer.use_bias:
        logits = logits + tf.cast(layer.bias, layer.compute_dtype)
    return tf.cast(logits, tf.float32)


def _class_logits(logits, activation: str):
    """(batch, num_classes) scores before the activation: one sigmoid unit's z is -z and z for two classes."""
    # Heavy: imports TensorFlow.
    import tensorflow as tf

    if activation == "sigmoid":
        return tf.concat([-logits, logits], axis=-1)
    return logits


class Explainer:
    """Grad-CAM for one model: the chain found and its gradient step compiled once.

    Built once per model (`explainer_for`) so that explaining photo after photo neither rebuilds
    Keras models nor retraces: a long-running app keeps a steady memory (see tlcore.models.inference).

    Args:
        model: a tlcore classifier (see the module docstring).

    Raises:
        ValueError: the model has no feature map Grad-CAM can use.
    """

    def __init__(self, model):
        # Heavy: imports TensorFlow.
        import tensorflow as tf

        self.model = model
        self.layers = inference_layers(model)
        self.position, inner_name = find_target(self.layers)
        target = self.layers[self.position]
        self.base_model = None
        if inner_name is not None and target.get_layer(inner_name).output is not target.output:
            self.base_model = _base_with_feature_map(target, inner_name)
        outputs = int(model.output_shape[-1])
        self.num_classes = 2 if outputs == 1 else outputs
        # tlcore's classifiers end in a Dense sigmoid or softmax (alone or as the head's last layer):
        # its logits are explained. For any other last layer all three are None and the
        # probabilities are explained, whose gradients vanish when they saturate.
        self.before_output, self.output_dense, self.output_activation = _split_output(self.layers[-1])
        signature = [tf.TensorSpec((1, *model.input_shape[1:]), tf.float32), tf.TensorSpec((), tf.int32)]
        self._step = tf.function(self._gradients, input_signature=signature)

    def _not_a_chain(self) -> ValueError:
        """A new error for each refusal: one shared exception object would gather every raise's traceback
        (and the frames it holds) and carry the cause of an earlier refusal into a later one."""
        return ValueError(
            f"The model {self.model.name!r} is not a chain of layers Grad-CAM can run by "
            "hand: its prediction differs from its layers applied in order."
        )

    def _gradients(self, inputs, class_index):
        """(feature map, its gradients, the chain's scores, the model's own scores, the class); -1 = top class."""
        # Heavy: imports TensorFlow.
        import tensorflow as tf

        with tf.GradientTape() as tape:
            # Watching the input records every operation, frozen (non-trainable) layers included.
            tape.watch(inputs)
            values, logits, last = inputs, None, len(self.layers) - 1
            try:
                for index, layer in enumerate(self.layers):
                    if index == self.position and self.base_model is not None:
                        features, values = self.base_model(values, training=False)
                    elif index == last and self.output_dense is not None:
                        if self.before_output is not None:
                            values = self.before_output(values, training=False)
                        logits = _logits(self.output_dense, values)
                        values = self.output_dense.activation(logits)
                    else:
                        values = layer(values, training=False)
                        if index == self.position:
                            features = values
            except Exception as error:  # noqa: BLE001 - a layer fed the wrong input raises any type.
                raise self._not_a_chain() from error
            if values.shape.rank != 2:
                raise self._not_a_chain()
            scores = _class_scores(tf.cast(values, tf.float32))
            explained = scores if logits is None else _class_logits(logits, self.output_activation)
            # The top class by its logit: saturated probabilities can tie where the logits do not.
            chosen = tf.where(class_index < 0, tf.cast(tf.argmax(explained[0]), tf.int32), class_index)
            score = explained[:, chosen]
        expected = _class_scores(tf.cast(self.model(inputs, training=False), tf.float32))
        gradients = tape.gradient(score, features)
        return features[0], gradients[0], scores[0], expected[0], chosen

    def explain(self, batch: np.ndarray, class_index: int | None = None):
        """The feature map, the gradient of the class score with respect to it, and the probabilities.

        Args:
            batch: float32 images (1, size, size, 3) in [0, 255].
            class_index: the class to explain; None explains the predicted class.

        Returns:
            (feature map (h, w, channels), gradients (h, w, channels), probabilities (num_classes,),
            the explained class index).
        """
        if class_index is not None and (
            isinstance(class_index, bool)
            or not isinstance(class_index, (int, np.integer))
            or not 0 <= class_index < self.num_classes
        ):
            raise ValueError(f"class_index must be in [0, {self.num_classes - 1}], received {class_index!r}.")
        batch = np.asarray(batch, dtype="float32")
        if batch.shape != (1, *self.model.input_shape[1:]):
            raise ValueError(
                f"Expected one image batch of shape {(1, *self.model.input_shape[1:])}, received {batch.shape}."
            )
        features, gradients, scores, expected, chosen = self._step(batch, -1 if class_index is None else class_index)
        if scores.shape != expected.shape or not np.allclose(scores.numpy(), expected.numpy(), atol=CHAIN_TOLERANCE):
            raise self._not_a_chain()
        return (features.numpy().astype("float32"), gradients.numpy().astype("float32"), scores.numpy(), int(chosen))


def explainer_for(model) -> Explainer:
    """The model's Explainer, built on first use and kept on the model (so it goes with it)."""
    explainer = getattr(model, "_tlcore_explainer", None)
    if explainer is None:
        explainer = Explainer(model)
        model._tlcore_explainer = explainer
    return explainer


def feature_map_and_gradients(model, batch: np.ndarray, class_index: int | None = None):
    """`Explainer.explain` with the model's cached explainer (see there)."""
    return explainer_for(model).explain(batch, class_index)
