"""Batch prediction: every image in a folder or a zip archive, one row each, and a CSV of the rows.

Images are found recursively; operating-system debris (`__MACOSX/`, `.DS_Store`, hidden files, ...) is
left out as the data set scanner does. A zip goes through `tlcore.data.zips.extract_dataset` (safe names,
size caps) into a temporary folder first. A file that cannot be predicted (not an image, damaged, ...)
gets a row with its reason; the others are still predicted.

A row is a dict:
    file          the path relative to the folder ("/"-separated), or the archive member's name
    top_label     the most probable class (None for an error)
    probability   its probability (None for an error)
    top_k         [{"label", "probability"}, ...], most probable first ([] for an error)
    error         why the file could not be predicted, or None
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

from tlcore import progress, temporaries, wording
from tlcore.data import browse, folders, images, zip_names, zips
from tlcore.files import printable
from tlcore.serving import predict

Source = Union[str, os.PathLike, bytes]
COLUMNS = ("file", "top_label", "probability", "top_k", "error")
# Images decoded and predicted per step: bounds memory whatever the folder holds.
CHUNK_SIZE = 64
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# What an empty folder or zip is told, on the page and on the command line.
NO_FILES = "no files in it, subfolders included (hidden files and OS debris such as .DS_Store are skipped)"


def find_files(folder: Path, max_files: int | None = None) -> list[Path]:
    """Every file below a folder, sorted by relative path, OS debris and hidden files left out.

    Args:
        folder: the folder to walk.
        max_files: refuse folders with more files than this (default browse.MAX_FILES, read at call
            time: the data set browser's cap, for someone who typed "/" or their home folder).

    Returns:
        The files' paths.

    Raises:
        browse.FolderTooLargeError: more than `max_files` files, found before the walk goes further.
    """
    max_files = browse.MAX_FILES if max_files is None else max_files
    found = []
    for directory, subfolders, names in os.walk(folder):
        subfolders[:] = sorted(name for name in subfolders if not folders.is_ignored(Path(name)))
        found += [Path(directory) / name for name in names if not folders.is_ignored(Path(name))]
        if len(found) > max_files:
            raise browse.FolderTooLargeError(
                f"{folder}: holds more than {max_files:,} files; choose a folder of the photos to predict."
            )
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


def error_row(name: str, reason: str) -> dict:
    return {"file": name, "top_label": None, "probability": None, "top_k": [], "error": reason}


def row_from_result(result: dict) -> dict:
    """A row from one `predict.predict_sources` result ({"image", "top"} or {"image", "error"})."""
    if "error" in result:
        return error_row(result["image"], result["error"])
    top = result["top"]
    return {
        "file": result["image"],
        "top_label": top[0]["label"],
        "probability": top[0]["probability"],
        "top_k": top,
        "error": None,
    }


def predict_files(predictor, paths: Sequence[Path], names: Sequence[str], top: int = 3, display=None) -> list[dict]:
    """Rows for files (a non-image extension is an error row, without decoding), in chunks.

    `display` (a `tlcore.progress.Display`) shows a bar of the images predicted.
    """

    rows: list[dict | None] = [None] * len(paths)
    candidates = []
    for position, (path, name) in enumerate(zip(paths, names)):
        if images.has_image_extension(path):
            candidates.append(position)
        else:
            rows[position] = error_row(
                name,
                (
                    f"not an image file (extension {path.suffix.lower() or 'none'!r}); expected one of "
                    f"{', '.join(images.SUPPORTED_EXTENSIONS)}"
                ),
            )
    bar = (display or progress.Display()).task("Predicting", len(candidates))
    try:
        for start in range(0, len(candidates), CHUNK_SIZE):
            chunk = candidates[start : start + CHUNK_SIZE]
            results = predict.predict_sources(
                predictor,
                [paths[position] for position in chunk],
                names=[names[position] for position in chunk],
                top=top,
            )
            for position, result in zip(chunk, results):
                rows[position] = row_from_result(result)
            bar.advance(len(chunk))
    finally:
        bar.close()
    return rows


def is_zip(source: Source) -> bool:
    """Whether a source is meant as a zip archive: bytes (an upload) or a file named `*.zip`."""
    if isinstance(source, (bytes, bytearray)):
        return True
    path = Path(source)
    return path.suffix.lower() == ".zip" and path.is_file()


def predict_folder(predictor, folder_or_zip: Source, top: int = 3, display=None) -> list[dict]:
    """Predicts every file in a folder (recursively) or a zip archive.

    Args:
        predictor: from `tlcore.serving.predict.load`.
        folder_or_zip: a folder, a .zip file, or the bytes of an uploaded zip.
        top: how many labels per image in `top_k`.
        display: a `tlcore.progress.Display` showing a bar of the images predicted, or None.

    Returns:
        One row per file (see the module docstring), sorted by file name.

    Raises:
        ValueError: the source does not exist or is neither a folder nor a zip archive, or top < 1.
        browse.FolderTooLargeError: the folder holds more than browse.MAX_FILES files.
        zips.UnsafeArchiveError: the archive is damaged, unsafe, or too large (refused as a whole).
    """
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ValueError(f"top must be an integer >= 1, received {top!r}.")
    if is_zip(folder_or_zip):
        with temporaries.temporary_directory(prefix="tlcore-batch-") as temporary:
            report = zips.extract_dataset(folder_or_zip, temporary / "images")
            generated = sorted(report.files)
            rows = predict_files(
                predictor,
                [report.destination / name for name in generated],
                [report.files[name] for name in generated],
                top,
                display,
            )
        rows += [error_row(name, reason) for name, reason in report.skipped_files]
        return sorted(rows, key=lambda row: row["file"])
    # The messages reach people (the Predict page shows them as they are): they name the path typed.
    folder = Path(folder_or_zip)
    if not folder.exists():
        raise ValueError(f"{folder} does not exist: expected a folder of photos or a .zip archive.")
    if not folder.is_dir():
        raise ValueError(
            f"{folder} is neither a folder nor a .zip archive: expected a folder of photos or a .zip archive."
        )
    paths = find_files(folder)
    return predict_files(predictor, paths, [path.relative_to(folder).as_posix() for path in paths], top, display)


@dataclass(frozen=True)
class FolderScore:
    """How a batch scored on the photos whose folders name their class (`cats/1.jpg`, `validation/dogs/2.jpg`).

    Attributes:
        classes: class -> (photos predicted as it, photos), for each of the model's classes that names a folder
            holding a predicted photo; read-only.
    """

    classes: dict[str, tuple[int, int]]

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError("classes must hold at least one class, received none.")
        for label, counts in self.classes.items():
            whole = isinstance(counts, tuple) and len(counts) == 2 and all(type(count) is int for count in counts)
            if not whole or not 0 <= counts[0] <= counts[1] or counts[1] < 1:
                raise ValueError(
                    f"Each class needs (correct, photos), whole numbers with 0 <= correct <= photos and at least "
                    f"1 photo, received {label!r}: {counts!r}."
                )

    @property
    def photos(self) -> int:
        """The photos scored: those in a folder named after a class."""
        return sum(photos for _, photos in self.classes.values())

    @property
    def correct(self) -> int:
        """Of them, those predicted as their folder's class."""
        return sum(correct for correct, _ in self.classes.values())

    @property
    def accuracy(self) -> float:
        return self.correct / self.photos

    def describe(self) -> str:
        """The score in a sentence, as the Predict page and `tlcore predict` print it."""
        per_class = ", ".join(f"{label} {correct} of {photos}" for label, (correct, photos) in self.classes.items())
        return (
            f"Of the {wording.count(self.photos, 'photo')} in folders named after a class, {self.correct} "
            f"({self.accuracy:.1%}) were predicted as their folder's class: {per_class}."
        )


def folder_label(file: str, labels: Sequence[str], folder: str | None = None) -> str | None:
    """The class a file's folder names: the nearest folder above it named as one of `labels`, else None.

    Args:
        file: the file's path inside the folder predicted ("/"-separated), as a batch row has it.
        labels: the model's classes.
        folder: the name of the folder predicted itself (`validation/cats` typed: "cats"), the farthest one
            looked at; None for a zip, or to look only inside.

    A folder name is also matched as a zip upload's folder is made safe when it becomes a data set
    (`zip_names.sanitise_folder`: NFC, characters Windows refuses replaced), so that a model trained on a zip
    scores a zip sorted the same way.
    """
    folders = ([folder] if folder else []) + file.split("/")[:-1]
    for name in reversed(folders):
        for candidate in (name, zip_names.sanitise_folder(name)):
            if candidate in labels:
                return candidate
    return None


def score_by_folder(rows: Sequence[dict], labels: Sequence[str], folder: str | None = None) -> FolderScore | None:
    """How many predicted photos in folders named after a class were predicted as that class, per class.

    A folder of photos sorted by class (a data set's validation folder, photos kept apart for testing) is
    then an evaluation too. Rows with an error, or whose file lies in no such folder, are left out.

    Args:
        rows: the batch's rows (`predict_folder`).
        labels: the model's classes.
        folder: the name of the folder predicted, which may itself name a class (`folder_label`).

    Returns:
        The FolderScore, or None when no predicted photo lies in a folder named after a class.
    """
    counts: dict[str, list[int]] = {}
    for row in rows:
        label = None if row.get("error") else folder_label(str(row.get("file", "")), labels, folder)
        if label is not None:
            count = counts.setdefault(label, [0, 0])
            count[0] += row.get("top_label") == label
            count[1] += 1
    if not counts:
        return None
    return FolderScore({label: (correct, photos) for label, (correct, photos) in sorted(counts.items())})


def unscored_folders(rows: Sequence[dict], labels: Sequence[str], folder: str | None = None) -> list[str]:
    """The folders holding predicted photos that no class of the model names, each once, sorted.

    Photos sorted into folders the model does not know (scenes predicted by a cats/dogs model) are not
    scored, and a person should be told why, not left to think the folders were ignored by mistake.
    A photo's folder is the nearest one above it: inside the source, else the folder predicted itself.

    Args:
        rows: the batch's rows (`predict_folder`).
        labels: the model's classes.
        folder: the name of the folder predicted itself, as for `score_by_folder`; None for a zip.

    Returns:
        The folder names, as text (a name that is not UTF-8 with its odd bytes replaced).
    """
    names = set()
    for row in rows:
        file = str(row.get("file", ""))
        if row.get("error") or folder_label(file, labels, folder) is not None:
            continue
        nearest = file.split("/")[-2] if "/" in file else folder
        if nearest:
            names.add(printable(nearest))
    return sorted(names)


def unscored_note(rows: Sequence[dict], labels: Sequence[str], folder: str | None = None) -> str | None:
    """Why photos sorted into folders were not scored against them; None unless they were sorted and unscored.

    Photos lying in two or more folders are taken as sorted (by class, say); one folder of photos (an
    album) is not a sorting, and is predicted without a note.

    Args:
        rows, labels, folder: as for `score_by_folder`.

    Returns:
        "Not scored: the photos are in folders (a, b, c) that name none of this model's classes (cats, dogs).",
        or None.
    """
    unknown = unscored_folders(rows, labels, folder)
    if len(unknown) < 2 or score_by_folder(rows, labels, folder) is not None:
        return None
    shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
    classes = ", ".join(labels)
    return f"Not scored: the photos are in folders ({shown}) that name none of this model's classes ({classes})."


def _cell(value) -> str:
    """A text cell a spreadsheet shows as text (a leading formula character is escaped with ')."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def to_csv(rows: Sequence[dict]) -> str:
    """CSV text with columns file, top_label, probability, top_k ("label:prob;label:prob"), error.

    Probabilities have 4 decimals; an error row has empty prediction cells.
    """
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        probability = row.get("probability")
        top_k = ";".join(f"{item['label']}:{item['probability']:.4f}" for item in row.get("top_k") or [])
        writer.writerow(
            [
                _cell(row.get("file")),
                _cell(row.get("top_label")),
                "" if probability is None else f"{probability:.4f}",
                _cell(top_k),
                _cell(row.get("error")),
            ]
        )
    return stream.getvalue()
