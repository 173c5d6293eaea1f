"""Ship a trained run: export its model as a Keras archive, a SavedModel or a TFLite file, verified.

Formats (written under `<run>/exports/` unless a destination is given):
    keras        `model-keras.zip`: the run's `model.keras`, byte for byte, and `labels.json`.
    savedmodel   `savedmodel/`: `model.export()`'s SavedModel for serving (TF Serving, `tf.saved_model.load`;
                 signature "serving_default", input "image": float32 RGB pixels in [0, 255]), and `labels.json`.
    tflite       `model.tflite`: float32 TFLite, and `model.labels.json` beside it.
    tflite-int8  `model-int8.tflite`: dynamic-range quantisation (weights int8, `tf.lite.Optimize.DEFAULT`),
                 and `model-int8.labels.json` beside it.

Every export is loaded back right after it is written (Keras `load_model` with safe_mode, SavedModel through
its serving signature, TFLite through LiteRT; see `tlcore.serving.export_check`) and run on the run's
validation images: the top-1 class must match the Keras model's for every image; a tflite-int8 export,
whose 8-bit rounding may tip images the model nearly ties on, must give the same class for at least 97%
and be at most one point less accurate. Otherwise the artefact is deleted and `ExportError` says by how
much it missed. The artefact is built under a hidden temporary name and renamed into place only once it
passed. The check of each export under `<run>/exports/` is kept beside it, `<artefact>.check.json`
(`recorded_exports` reads it back).

The SavedModel and TFLite exports contain the inference model only: the same layers after the "image" input,
without the "augmentation" block. The augmentation's random layers do nothing at inference, but their
stateless random ops and image transforms are not TFLite built-in ops (the converter refuses them), and a
serving artefact has no use for them. The Keras export keeps the full model, so training can resume from it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from tlcore import files, progress, temporaries
from tlcore.data.dataset import DatasetError
from tlcore.insight import evaluate
from tlcore.runs import store
from tlcore.serving import export_check, predict

FORMATS = ("keras", "savedmodel", "tflite", "tflite-int8")
# The share of validation images whose top-1 class must match the Keras model's, and how much less accurate
# than the Keras model an export may be on them. The float formats compute what Keras does. Int8 rounding
# moves probabilities, so it tips some images whose two best classes are nearly tied: a rule of "99%" refused
# the int8 export of a default run on the six scene classes that scored as well as its Keras model
# (benchmarks/RESULTS.md). What matters to a person shipping it is the accuracy. With fewer than 34 validation
# images 97% means every image, and with fewer than 100 one image tipped to a wrong class is over a point.
REQUIRED_AGREEMENT = {"keras": 1.0, "savedmodel": 1.0, "tflite": 1.0, "tflite-int8": 0.97}
ALLOWED_ACCURACY_DROP = {"keras": 0.0, "savedmodel": 0.0, "tflite": 0.0, "tflite-int8": 0.01}
DEFAULT_NAMES = {
    "keras": "model-keras.zip",
    "savedmodel": "savedmodel",
    "tflite": "model.tflite",
    "tflite-int8": "model-int8.tflite",
}
# What writing each format does, for the progress shown while it runs (a TFLite conversion is the long one).
WRITING = {
    "keras": "Writing the Keras model and its labels into a zip",
    "savedmodel": "Writing the SavedModel folder: TensorFlow traces the model's serving function",
    "tflite": "Converting the model to TensorFlow Lite: the converter traces and optimises the whole graph",
    "tflite-int8": "Converting the model to TensorFlow Lite with 8-bit weights: the converter quantises it too",
}
EXPORTS_FOLDER = "exports"
# Beside each default export, its check (`ExportResult.to_dict()` and the model it was made from), so that a
# later session, or a reload, shows the exports a run has with how they compared: `<artefact>.check.json`.
CHECK_SUFFIX = ".check.json"


class ExportError(Exception):
    """An export that could not be made, or that the check refused (it disagreed with the Keras model or was
    less accurate); the message says why."""


@dataclass(frozen=True)
class ExportResult(export_check.Comparison):
    """A verified export: how it compared with the Keras model (the `Comparison` figures on the validation
    images), and where it is. Usable as a path (`os.fspath(result)`, `Path(result)`).

    Attributes:
        path: the artefact: a .zip, a SavedModel folder or a .tflite file.
        format: one of FORMATS.
        labels_path: the labels.json that goes with it (inside the zip for "keras").
        runtime: what ran a TFLite export for the check: "ai_edge_litert" (LiteRT) or "tensorflow"
            (tf.lite.Interpreter, deprecated, where LiteRT is not installed); None for other formats.
    """

    path: Path
    format: str
    labels_path: Path
    runtime: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.format not in FORMATS:
            raise ValueError(f"Unknown export format {self.format!r}. Expected one of {list(FORMATS)}.")

    def __fspath__(self) -> str:
        return str(self.path)

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "format": self.format,
            "labels_path": str(self.labels_path),
            "images": self.images,
            "agreement": self.agreement,
            "max_difference": self.max_difference,
            "required_agreement": REQUIRED_AGREEMENT[self.format],
            "keras_accuracy": self.keras_accuracy,
            "accuracy": self.accuracy,
            "allowed_accuracy_drop": ALLOWED_ACCURACY_DROP[self.format],
            "runtime": self.runtime,
        }


def labels_path_for(path: Path, format: str) -> Path:
    """Where an artefact's labels go: `labels.json` inside the zip (a member) or the SavedModel folder,
    else `<stem>.labels.json` beside the .tflite file."""
    if format in ("keras", "savedmodel"):
        return path / "labels.json"
    return path.with_name(f"{path.stem}.labels.json")


def rule_in_words() -> str:
    """What the check asks of an export, from REQUIRED_AGREEMENT and ALLOWED_ACCURACY_DROP (help texts, pages)."""
    int8 = "tflite-int8"
    return (
        f"the same top-1 class as the Keras model for every validation image; for the 8-bit TFLite export "
        f"({int8}), the same class for at least {REQUIRED_AGREEMENT[int8]:.0%} and an accuracy at most "
        f"{ALLOWED_ACCURACY_DROP[int8] * 100:g} point lower"
    )


def shortfall(format: str, comparison: export_check.Comparison) -> str | None:
    """Why an export with this comparison is refused (a sentence), or None when it passes.

    Raises:
        ValueError: unknown format.
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}. Expected one of {list(FORMATS)}.")
    figures = (
        f"the same top-1 class for {comparison.agreement:.2%} of {comparison.images} validation images, "
        f"accuracy {comparison.accuracy:.2%} against the Keras model's {comparison.keras_accuracy:.2%}, "
        f"largest probability difference {comparison.max_difference:.4f}"
    )
    required, allowed = REQUIRED_AGREEMENT[format], ALLOWED_ACCURACY_DROP[format]
    # The difference of two accuracies is not exact in floating point: 0.92 - 0.91 is a hair over 0.01.
    if comparison.agreement < required - 1e-9:
        return f"it disagrees with the Keras model ({figures}); expected the same class for at least {required:.0%}."
    if comparison.accuracy_drop > allowed + 1e-9:
        return (
            f"it is less accurate than the Keras model ({figures}); expected an accuracy at most "
            f"{allowed * 100:g} point below the Keras model's."
        )
    return None


# The inference model.


def inference_model(model):
    """The model without its "augmentation" block: the same layers (shared weights) after a new "image" input.

    Returns the model itself when it has no augmentation.
    """
    # Heavy: imports Keras.
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    kept = [layer for layer in layers if layer.name != "augmentation"]
    if len(kept) == len(layers):
        return model
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    values = inputs
    for layer in kept:
        values = layer(values, training=False)
    return keras.Model(inputs, values, name=model.name)


# Writers: (Keras model, the run, labels, target path) -> the artefact at target.


def _write_keras(model, run: store.Run, labels: list[str], target: Path) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.write(run.model_path, "model.keras")  # .keras files are zip archives already.
        archive.writestr("labels.json", json.dumps(labels, indent=2))


def _write_savedmodel(model, run: store.Run, labels: list[str], target: Path) -> None:
    inference_model(model).export(str(target), verbose=False)
    files.write_json(target / "labels.json", labels)


def _tflite_bytes(model, quantise: bool) -> bytes:
    # Heavy: imports TensorFlow.
    import tensorflow as tf

    with temporaries.temporary_directory(prefix="tlcore-export-") as folder:
        saved = folder / "savedmodel"
        inference_model(model).export(str(saved), verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if quantise:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # Dynamic range: int8 weights.
        return converter.convert()


def _write_tflite(model, run: store.Run, labels: list[str], target: Path, quantise: bool = False) -> None:
    target.write_bytes(_tflite_bytes(model, quantise))


WRITERS: dict[str, Callable] = {
    "keras": _write_keras,
    "savedmodel": _write_savedmodel,
    "tflite": _write_tflite,
    "tflite-int8": lambda model, run, labels, target: _write_tflite(model, run, labels, target, quantise=True),
}


# Export.


def _destination(run: store.Run, format: str, destination: str | os.PathLike | None) -> Path:
    if destination is None:
        return run.path / EXPORTS_FOLDER / DEFAULT_NAMES[format]
    path = Path(destination).expanduser().resolve()
    if path.exists() or path.is_symlink():
        raise ValueError(f"destination must be a new path, received {str(destination)!r}, which already exists.")
    # Checked before the model is loaded and the data set scanned, not found when the folder is made.
    existing = next(folder for folder in path.parents if folder.exists())
    if not existing.is_dir():
        raise ValueError(
            f"destination must be a path under folders, received {str(destination)!r}: {existing} is a file."
        )
    return path


def export(
    run: str | os.PathLike | store.Run,
    format: str,
    destination: str | os.PathLike | None = None,
    runs_dir: str | os.PathLike | None = None,
    display=None,
) -> ExportResult:
    """Exports a run's model in a format, loads the export back and checks it against the Keras model.

    Args:
        run: a Run, or a run id or path inside `runs_dir`.
        format: "keras", "savedmodel", "tflite" or "tflite-int8".
        destination: where to write it (a new path); default `<run>/exports/<DEFAULT_NAMES[format]>`,
            which replaces an earlier export of the same format.
        runs_dir: the runs folder (default `runs.default_runs_dir()`).
        display: a `tlcore.progress.Display` showing what is being done (writing, loading back) and
            a bar of the check's images, or None.

    Returns:
        An ExportResult (usable as the artefact's path) with the agreement and accuracy figures.

    Raises:
        ValueError: unknown format, or a destination that already exists.
        predict.ModelLoadError: the run has no usable model.
        ExportError: the validation images are not available (or there are none), the conversion
            failed, or the check refused the export (`shortfall`; the artefact is deleted).
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}. Expected one of {list(FORMATS)}.")
    if not isinstance(run, store.Run):
        run = store.resolve(run, runs_dir)
    target = _destination(run, format, destination)
    predictor = predict.load(run)
    try:
        dataset = evaluate.dataset_for(run)
        paths, true_labels = dataset.paths("validation"), dataset.labels("validation")
    except (DatasetError, ValueError) as error:
        raise ExportError(f"Cannot check the export against the run's validation images: {error}") from None
    if not paths:
        raise ExportError(f"Cannot check the export: run {run.id}'s data set has no validation images.")
    labels = list(predictor.labels)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # No permission to make it, say.
        raise ExportError(f"Cannot make the folder {target.parent}: {error.strerror or error}.") from None
    temporary = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:12]}")
    # TFLite files carry their labels beside them; the zip and the folder carry them inside.
    beside = format.startswith("tflite")
    temporary_labels = temporary.with_name(f"{temporary.name}.labels.json")
    display = display or progress.Display()
    with temporaries.being_written(temporary), temporaries.being_written(temporary_labels):
        try:
            display.print(f"{WRITING[format]}...")
            WRITERS[format](predictor.model, run, labels, temporary)
            if beside:
                files.write_json(temporary_labels, labels)
            display.print(f"Loading the {format} export back to check it...")
            runner = export_check.LOADERS[format](temporary)
        except (ExportError, KeyboardInterrupt):
            raise
        except Exception as error:  # noqa: BLE001 - converters raise many types.
            raise ExportError(
                f"The {format} export of run {run.id} failed: {type(error).__name__}: {str(error)[:500]}"
            ) from None
        # The bar's own name stays short: a terminal of 80 columns squeezed the bar beside a long one.
        display.print(f"Checking the {format} export against the Keras model on {len(paths)} validation images...")
        bar = display.task(f"Checking the {format} export", len(paths))
        try:
            comparison = export_check.compare(predictor, runner, paths, true_labels, bar)
        finally:
            bar.close()
        reason = shortfall(format, comparison)
        if reason is not None:
            raise ExportError(f"The {format} export of run {run.id} was refused: {reason} The export was deleted.")
        final_labels = labels_path_for(target, format)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)  # An earlier default export: a folder cannot be replaced by a rename.
        os.replace(temporary, target)
        if beside:
            os.replace(temporary_labels, final_labels)
    result = ExportResult(
        **asdict(comparison),
        path=target,
        format=format,
        labels_path=final_labels,
        runtime=getattr(runner, "runtime", None),
    )
    if destination is None:
        check = target.with_name(target.name + CHECK_SUFFIX)
        try:
            files.write_json(check, {**result.to_dict(), "model": model_fingerprint(run)})
        except OSError:  # The export is made and checked; only a later session will not list it.
            check.unlink(missing_ok=True)  # Never an earlier export's figures beside this one.
    return result


def model_fingerprint(run: store.Run) -> list[int] | None:
    """[size, modification time in ns] of the run's model.keras, which a resume rewrites; None without one."""
    try:
        stat = run.model_path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def recorded_exports(run: store.Run) -> dict[str, dict]:
    """The run's default exports (under `<run>/exports/`) still there and made from its model as it is now:
    format -> its check, as `ExportResult.to_dict()` gave it, with the artefact's path as it is now (the runs
    folder may have moved). An export of a model a resume has replaced since is left out."""
    folder, found = run.path / EXPORTS_FOLDER, {}
    fingerprint = model_fingerprint(run)
    for format, name in DEFAULT_NAMES.items():
        path = folder / name
        record = files.read_json_object(path.with_name(name + CHECK_SUFFIX))
        current = fingerprint is not None and record.get("model") == fingerprint
        if current and record.get("format") == format and path.exists():
            found[format] = {**record, "path": str(path), "labels_path": str(labels_path_for(path, format))}
    return found
