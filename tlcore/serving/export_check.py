"""Loading an export back and checking it against the Keras model it came from (`tlcore.serving.export`).

Each format has a loader: the artefact's path in, a function from a float32 batch to the model's outputs
out. A TFLite file runs in LiteRT (`ai-edge-litert`), else in TensorFlow's deprecated `tf.lite.Interpreter`.
`compare` runs the Keras model and the export on the same labelled images, a chunk at a time: how often
their top-1 classes match (`agreement`), and how accurate each is.
"""

from __future__ import annotations

import contextlib
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tlcore import console, temporaries
from tlcore.data import pipeline
from tlcore.models.inference import inference_function
from tlcore.serving import predict

# Validation images run per step through both models.
CHUNK_SIZE = 32


def as_probabilities(outputs: np.ndarray) -> np.ndarray:
    """(N, num_classes) probabilities from a model's outputs; one sigmoid unit is two classes."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 1:
        outputs = outputs[:, np.newaxis]
    if outputs.shape[-1] == 1:
        return np.concatenate([1.0 - outputs, outputs], axis=-1)
    return outputs


def agreement(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(share of rows with the same top-1 class, largest absolute probability difference)."""
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    if reference.shape != candidate.shape or reference.ndim != 2:
        raise ValueError(
            f"expected two (N, num_classes) arrays of one shape, received {reference.shape} and {candidate.shape}."
        )
    if len(reference) == 0:
        return 1.0, 0.0
    same = float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1)))
    return same, float(np.max(np.abs(reference - candidate)))


def accuracy(probabilities: np.ndarray, labels) -> float:
    """The share of rows whose top-1 class is the label (class indices); 1.0 for no rows."""
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    if probabilities.ndim != 2 or labels.shape != probabilities.shape[:1]:
        raise ValueError(
            f"expected (N, num_classes) probabilities and N labels, received {probabilities.shape} and {labels.shape}."
        )
    return float(np.mean(probabilities.argmax(axis=1) == labels)) if len(labels) else 1.0


@dataclass(frozen=True)
class Comparison:
    """An export against the Keras model it came from, on the same labelled images.

    Attributes:
        images: how many images both ran on.
        agreement: the share of them whose top-1 class is the same.
        max_difference: the largest absolute difference of a class probability.
        keras_accuracy: the Keras model's accuracy on them.
        accuracy: the export's.
    """

    images: int
    agreement: float
    max_difference: float
    keras_accuracy: float
    accuracy: float

    def __post_init__(self) -> None:
        if self.images < 1:
            raise ValueError(f"images must be at least 1, received {self.images!r}.")
        if self.max_difference < 0:
            raise ValueError(f"max_difference must be >= 0, received {self.max_difference!r}.")
        for name in ("agreement", "keras_accuracy", "accuracy"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], received {value!r}.")

    @property
    def accuracy_drop(self) -> float:
        """How much less accurate the export is (negative when it is more accurate)."""
        return self.keras_accuracy - self.accuracy


# Loaders: artefact path -> a function from a float32 batch to the model's outputs.


def _load_keras(path: Path) -> Callable:
    with temporaries.temporary_directory(prefix="tlcore-export-") as folder:
        with zipfile.ZipFile(path) as archive:
            archive.extract("model.keras", folder)
        model = predict.load_model_file(folder / "model.keras")  # Fully in memory once loaded.
    return inference_function(model)


def _load_savedmodel(path: Path) -> Callable:
    # Heavy: imports TensorFlow.
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    (input_name,) = signature.structured_input_signature[1]

    def run(batch: np.ndarray) -> np.ndarray:
        (output,) = signature(**{input_name: tf.constant(batch, dtype=tf.float32)}).values()
        return output.numpy()

    return run


def tflite_interpreter(path: Path):
    """An interpreter of a .tflite file: LiteRT's (`ai-edge-litert`), else TensorFlow's deprecated one.

    Returns:
        (the interpreter, "ai_edge_litert" or "tensorflow").
    """
    try:
        # Optional: ai-edge-litert has no wheel for some platforms.
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        # Heavy: imports TensorFlow, whose deprecated tf.lite.Interpreter runs the same files.
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice.
            return tf.lite.Interpreter(model_path=str(path)), "tensorflow"
    return Interpreter(model_path=str(path)), "ai_edge_litert"


def _load_tflite(path: Path) -> Callable:
    interpreter, runtime = tflite_interpreter(path)
    (input_details,) = interpreter.get_input_details()
    output_index = interpreter.get_output_details()[0]["index"]

    def run(batch: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(input_details["index"], list(batch.shape))
        # Its first allocation logs an INFO line past TensorFlow's level: kept out while those lines are.
        quiet = console.quiet_native_lines if console.informative_lines_hidden() else contextlib.nullcontext
        with quiet():
            interpreter.allocate_tensors()
        interpreter.set_tensor(input_details["index"], batch.astype(input_details["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(output_index).copy()

    run.runtime = runtime
    return run


LOADERS: dict[str, Callable[[Path], Callable]] = {
    "keras": _load_keras,
    "savedmodel": _load_savedmodel,
    "tflite": _load_tflite,
    "tflite-int8": _load_tflite,
}


def compare(predictor, runner: Callable, paths: list[str], labels, bar) -> Comparison:
    """Runs the Keras model and the export on the images, chunk by chunk, and compares them.

    Args:
        predictor: the run's `tlcore.serving.predict.Predictor`.
        runner: the export's loader's function (from `LOADERS`).
        paths: the image files.
        labels: their class indices, in the predictor's class order.
        bar: a `tlcore.progress.Task` advanced by the images done.
    """
    if not paths:
        raise ValueError("expected at least one image to compare the export on, received none.")
    references, candidates = [], []
    for start in range(0, len(paths), CHUNK_SIZE):
        batch = pipeline.load_images(paths[start : start + CHUNK_SIZE], predictor.image_size).astype("float32")
        references.append(predictor.probabilities(batch))
        candidates.append(as_probabilities(runner(batch)))
        bar.advance(len(batch))
    references, candidates = np.concatenate(references), np.concatenate(candidates)
    same, difference = agreement(references, candidates)
    return Comparison(len(paths), same, difference, accuracy(references, labels), accuracy(candidates, labels))
