"""Grad-CAM: which parts of an image made the model choose a class.

Follows the Keras example "Grad-CAM class activation visualization" (keras-io, `grad_cam.py`,
after Selvaraju et al., 2017, https://arxiv.org/abs/1610.02391): the gradient of the class score
with respect to the last convolutional feature map, averaged over space, weights that map's
channels; the weighted sum, through a ReLU and divided by its maximum, is the heatmap.

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
refused instead of explained wrongly.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from tlcore.data import images

# Tolerance of the check that the hand-run chain reproduces the model's output.
CHAIN_TOLERANCE = 1e-3


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
