"""A model's forward pass compiled once: the one way tlcore runs a model for its outputs.

Used instead of `model.predict`, which collects every batch's output in memory before returning
and, called again and again (one upload after another), grows the process (keras-team/keras
#13118, tensorflow/tensorflow #44711); and instead of `predict_on_batch`, which under a
`tf.distribute` strategy feeds the batch to every replica and returns each replica's copy.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def inference_function(model, jit_compile: bool = False) -> Callable[[object], np.ndarray]:
    """`model(x, training=False)` compiled once, for float32 batches of any size; float32 numpy out.

    The input signature leaves the batch size open, so there is one trace whatever the size of the
    last batch or of an upload.

    Args:
        model: a Keras model with one image-like input, and one output or a list of them.
        jit_compile: compile the forward pass with XLA.

    Returns:
        A function: a batch (numpy array or tensor, any float dtype) -> float32 numpy outputs (a list
        of them for a model of several outputs).
    """
    # Heavy: imports TensorFlow.
    import tensorflow as tf

    signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)]
    # Under mixed precision the outputs are float16/bfloat16: cast inside the graph, once.
    compiled = tf.function(
        lambda batch: tf.nest.map_structure(lambda output: tf.cast(output, tf.float32), model(batch, training=False)),
        input_signature=signature,
        jit_compile=jit_compile,
    )
    # A cast, not a conversion: augmentation layers under mixed precision hand over 16-bit batches.
    return lambda batch: tf.nest.map_structure(lambda output: output.numpy(), compiled(tf.cast(batch, tf.float32)))


def augmented_inference_function(model, augmentation) -> Callable[[object], np.ndarray]:
    """`model(augmentation(x, training=True), training=False)` compiled as one graph; float32 numpy out.

    For caching augmented views: the augmentation layers (random flips, rotations, shifts, zooms)
    run inside the same `tf.function` as the frozen model instead of op by op in eager mode, which
    gives the same outputs, bit for bit, a few percent sooner (`python -m benchmarks.throughput`, section 4).
    Not compiled with XLA: Keras' random zoom and translation layers do not allow it.

    Args:
        model: a Keras model with one image-like input.
        augmentation: the Keras layers to apply first, in training mode (their random state
            advances with every call, as when they are called eagerly).

    Returns:
        A function: a batch (numpy array or tensor, any float dtype) -> float32 numpy outputs.
    """
    # Heavy: imports TensorFlow.
    import tensorflow as tf

    signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)]
    compiled = tf.function(
        lambda batch: tf.cast(model(augmentation(batch, training=True), training=False), tf.float32),
        input_signature=signature,
    )
    return lambda batch: compiled(tf.cast(batch, tf.float32)).numpy()
