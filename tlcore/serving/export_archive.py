"""An export handed over as one zip (a download): the artefact with its labels, its file name, its contents in words."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from tlcore.serving import export


def archive(path: str | os.PathLike, format: str) -> bytes:
    """An export as one zip to hand over (a download): the artefact and its labels.

    A keras export is such a zip already (its bytes are returned); a SavedModel folder is zipped under
    `savedmodel/` (its labels.json inside); a TFLite file is zipped with its labels as `labels.json`.

    Raises:
        ValueError: unknown format. OSError: the artefact is missing.
    """
    if format not in export.FORMATS:
        raise ValueError(f"Unknown export format {format!r}. Expected one of {list(export.FORMATS)}.")
    path = Path(path)
    if format == "keras":
        return path.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        if format == "savedmodel":
            if not path.is_dir():
                raise FileNotFoundError(f"{path}: no SavedModel folder.")
            for file in sorted(item for item in path.rglob("*") if item.is_file()):
                bundle.write(file, f"savedmodel/{file.relative_to(path).as_posix()}")
        else:
            bundle.write(path, path.name)
            bundle.write(export.labels_path_for(path, format), "labels.json")
    return buffer.getvalue()


def archive_name(run_id: str, format: str) -> str:
    """The file name `archive`'s zip is handed over as: '<run id>-<format>.zip'."""
    if format not in export.FORMATS:
        raise ValueError(f"Unknown export format {format!r}. Expected one of {list(export.FORMATS)}.")
    return f"{run_id}-{format}.zip"


def archive_contents(path: str | os.PathLike, format: str) -> str:
    """What `archive`'s zip holds, in words: 'model.tflite and labels.json'."""
    if format == "keras":
        return "model.keras and labels.json"
    if format == "savedmodel":
        return "the savedmodel/ folder, its labels.json inside"
    return f"{Path(path).name} and labels.json"
