"""Scanning a data set folder: its classes and splits, every file checked.

Two layouts are understood:
    root/train/<class>/*.jpg, root/validation/<class>/*.jpg (+ optional root/test/<class>/)
    root/<class>/*.jpg, which is split into train and validation per class with a seed.
A single wrapper folder around either layout (as zip archives often have) is looked through.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from tlcore import wording
from tlcore.data import decoders, images
from tlcore.data.dataset import ARCHIVE_NAMES_FILE, SPLIT_NAMES, DatasetError, DatasetScan, Rejected, Sample

# Accepted spellings of the split folders, lower-cased.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "test": "test",
    "testing": "test",
}
# Operating-system debris that is neither a class nor an image.
IGNORED_NAMES = {"__macosx", ".ds_store", "thumbs.db", "desktop.ini", ".git", "__pycache__"}


def is_ignored(path: Path) -> bool:
    """Whether a file or folder is operating-system debris or hidden (never a class, never an image)."""
    name = path.name.lower()
    return name in IGNORED_NAMES or name.startswith(".")


def _children(folder: Path) -> tuple[list[Path], list[Path]]:
    """Visible subfolders and files of a folder, sorted, OS debris left out."""
    folders, files = [], []
    for entry in sorted(folder.iterdir(), key=lambda path: path.name):
        if is_ignored(entry):
            continue
        (folders if entry.is_dir() else files).append(entry)
    return folders, files


def _find_root(folder: Path) -> Path:
    """Looks through single wrapper folders (`archive/cats_and_dogs/train/...`)."""
    for _ in range(3):
        folders, files = _children(folder)
        has_splits = any(SPLIT_ALIASES.get(item.name.lower()) == "train" for item in folders)
        if len(folders) == 1 and not files and not has_splits:
            inner_folders, _ = _children(folders[0])
            if inner_folders:
                folder = folders[0]
                continue
        break
    return folder


def _class_files(class_folder: Path) -> list[Path]:
    """All files below a class folder (nested folders included), debris left out."""
    found = []
    for directory, subfolders, names in os.walk(class_folder):
        subfolders[:] = sorted(name for name in subfolders if not is_ignored(Path(name)))
        for name in sorted(names):
            if not is_ignored(Path(name)):
                found.append(Path(directory) / name)
    return found


def _check_file(path: Path) -> str | None:
    """Returns why a file cannot be used, or None when it decodes."""
    if not images.has_image_extension(path):
        return (
            f"not an image file (extension {path.suffix or 'none'!r}); "
            f"expected one of {', '.join(images.SUPPORTED_EXTENSIONS)}"
        )
    try:
        # Decoding at a small size still reads every byte (a truncated file fails), but is fast.
        images.load_resized(path, 32)
    except images.InvalidImageError as error:
        return error.reason
    return None


def _check_files(paths: Sequence[Path], workers: int) -> list[str | None]:
    # Pillow releases the GIL while it decodes, so these threads run in parallel (see decoder_threads).
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_check_file, paths))


def _name_seed(name: str) -> int:
    """A stable integer for a class name (Python's own `hash` of a str changes every run).

    The name is a folder name, hashed as its bytes on disk (`os.fsencode`): a name that is not valid
    UTF-8 holds lone surrogates, which `str.encode` refuses; for any other name the bytes are the same.
    """
    return int.from_bytes(hashlib.sha256(os.fsencode(name)).digest()[:8], "big")


def _stratified_split(
    files_per_class: dict[str, list[Path]], validation_fraction: float, seed: int
) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    train, validation = {}, {}
    for name, files in sorted(files_per_class.items()):
        if len(files) < 2:
            raise DatasetError(
                f"Class {name!r} has {wording.count(len(files), 'usable image')}; at least 2 are needed to split it "
                "into train and validation."
            )
        # One generator per class, seeded by (seed, class name), so adding a class elsewhere
        # does not reshuffle this one (a class index would shift when a class sorts before it).
        order = np.random.default_rng([seed, _name_seed(name)]).permutation(len(files))
        count = min(len(files) - 1, max(1, round(len(files) * validation_fraction)))
        chosen = set(order[:count].tolist())
        validation[name] = [path for position, path in enumerate(files) if position in chosen]
        train[name] = [path for position, path in enumerate(files) if position not in chosen]
    return train, validation


def existing_folder(folder: str | os.PathLike) -> Path:
    """The folder's resolved path, checked.

    Args:
        folder: a folder path (`~` expanded).

    Returns:
        The resolved path.

    Raises:
        DatasetError: it does not exist, or is not a folder; the message names it.
    """
    path = Path(folder).expanduser().resolve()
    if not path.exists():  # Worded as the Predict page's batch tab words it.
        raise DatasetError(f"{path}: does not exist.")
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder.")
    return path


def scan(
    folder: str | os.PathLike,
    validation_fraction: float = 0.2,
    seed: int = 1337,
    workers: int | None = None,
) -> DatasetScan:
    """Scans a data set folder: classes, splits, and the files that cannot be used.

    Every candidate file is decoded once (at a small size), so a damaged file is reported here
    with its reason instead of failing training later.

    Args:
        folder: the data set folder, in either layout.
        validation_fraction: share of each class held out for validation (flat layout only).
        seed: seed of that split.
        workers: decoding threads (default `decoder_threads()`: one per core, at most 8).

    Returns:
        A DatasetScan.

    Raises:
        DatasetError: the folder is missing, has fewer than 2 classes, a class missing from a
            split, or a class without usable images.
    """
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), received {validation_fraction!r}.")
    path = existing_folder(folder)
    root = _find_root(path)
    folders, _ = _children(root)
    split_folders = {}
    for item in folders:
        split = SPLIT_ALIASES.get(item.name.lower())
        if split is None:
            continue
        if split in split_folders:  # `val/` and `validation/`: which one is meant cannot be guessed.
            raise DatasetError(
                f"{root}: both {split_folders[split].name}/ and {item.name}/ are {split} folders; expected one."
            )
        split_folders[split] = item
    layout = "splits" if "train" in split_folders else "flat"
    if layout == "flat":
        for split, item in split_folders.items():
            if _children(item)[0]:  # A split's class folders, beside the classes: not a class of its own.
                raise DatasetError(
                    f"{root}: {item.name}/ holds class folders beside the class folders, but there is no train "
                    f"folder. Expected train/<class>/ and validation/<class>/ (test/<class>/ too, if wanted), "
                    f"or <class>/ folders only."
                )
    if layout == "splits":
        if "validation" not in split_folders:
            raise DatasetError(
                f"{root}: has a train folder but no validation folder. Expected train/<class>/ and "
                "validation/<class>/, or one folder of <class>/ subfolders."
            )
        class_folders = {split: _children(split_path)[0] for split, split_path in split_folders.items()}
    else:
        class_folders = {"all": folders}

    # A class folder with a train folder inside is a data set of its own (the folder above data sets was
    # picked): its photos, train and validation together, would be one class and split again. A lone test/ or
    # val/ of photos inside a class is read as the class's photos, as any nested folder is.
    for class_paths in class_folders.values():
        for class_path in class_paths:
            inner = sorted(item.name for item in _children(class_path)[0] if SPLIT_ALIASES.get(item.name.lower()))
            if any(SPLIT_ALIASES[name.lower()] == "train" for name in inner):
                shown = ", ".join(f"{name}/" for name in inner[:-1]) + (" and " if len(inner) > 1 else "")
                shown += f"{inner[-1]}/"
                raise DatasetError(
                    f"{root}: the class folder {class_path.name}/ holds {shown}: it looks like a data set of its "
                    f"own, not a class. Expected <class>/ folders of photos; to use that data set, scan {class_path}."
                )
    # Gather candidate files per (split, class), then check them all in one parallel pass.
    candidates: list[tuple[str, str, Path]] = []
    for split, class_paths in class_folders.items():
        for class_path in class_paths:
            for file_path in _class_files(class_path):
                candidates.append((split, class_path.name, file_path))
    reasons = _check_files([item[2] for item in candidates], workers or decoders.decoder_threads())

    rejected = []
    usable: dict[str, dict[str, list[Path]]] = {split: {} for split in class_folders}
    for split, class_paths in class_folders.items():
        for class_path in class_paths:
            usable[split][class_path.name] = []
    for (split, class_name, file_path), reason in zip(candidates, reasons):
        if reason is None:
            usable[split][class_name].append(file_path)
        else:
            rejected.append(Rejected(str(file_path), reason))
    if layout == "splits":  # Folders beside the split folders are not read: said, not silently skipped.
        for item in folders:
            if SPLIT_ALIASES.get(item.name.lower()) is None:
                rejected.append(Rejected(str(item), "folder beside train/ and validation/: not a split, not read"))
    # Loose files beside the class folders cannot be labelled.
    for split_path in [root] if layout == "flat" else list(split_folders.values()):
        for loose in _children(split_path)[1]:
            rejected.append(Rejected(str(loose), "file outside any class folder (cannot tell its class)"))

    rejected = _with_archive_names(rejected, path)
    if layout == "flat":
        usable = dict(
            zip(("train", "validation"), _stratified_split(_non_empty(usable["all"], root), validation_fraction, seed))
        )
    classes = _check_classes(usable, root)
    splits = {
        split: tuple(
            Sample(str(file_path), classes.index(class_name))
            for class_name in classes
            for file_path in usable[split][class_name]
        )
        for split in SPLIT_NAMES
        if split in usable
    }
    return DatasetScan(
        root=str(root),
        layout=layout,
        classes=tuple(classes),
        splits=splits,
        rejected=tuple(rejected),
        validation_fraction=validation_fraction,
        seed=seed,
    )


def split_names(folder: str | os.PathLike) -> tuple[str, ...]:
    """The splits `scan` would find in a folder, read from folder names alone (no image decoded).

    ("train", "validation") for a flat layout (split by the scan), else the split folders present,
    in SPLIT_NAMES order; () for a missing folder.
    """
    path = Path(folder).expanduser()
    if not path.is_dir():
        return ()
    root = _find_root(path.resolve())
    present = {SPLIT_ALIASES.get(item.name.lower()) for item in _children(root)[0]}
    if "train" not in present:
        return ("train", "validation")
    return tuple(split for split in SPLIT_NAMES if split in present)


def _with_archive_names(rejected: list[Rejected], folder: Path) -> list[Rejected]:
    """Adds the archive member names that `tlcore.data.zips` recorded for the files it extracted."""
    mapping_file = folder / ARCHIVE_NAMES_FILE
    if not rejected or not mapping_file.is_file():
        return rejected
    try:
        mapping = json.loads(mapping_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return rejected
    named = []
    for item in rejected:
        relative = Path(item.path).relative_to(folder) if Path(item.path).is_relative_to(folder) else None
        original = mapping.get(relative.as_posix()) if relative is not None else None
        named.append(Rejected(item.path, item.reason, original))
    return named


def _non_empty(files_per_class: dict[str, list[Path]], root: Path) -> dict[str, list[Path]]:
    empty = sorted(name for name, files in files_per_class.items() if not files)
    if empty:
        verb = "contains" if len(empty) == 1 else "contain"
        raise DatasetError(f"{root}: {wording.count(len(empty), 'class folder')} {empty} {verb} no usable image.")
    return files_per_class


def _check_classes(usable: dict[str, dict[str, list[Path]]], root: Path) -> list[str]:
    classes = sorted(set().union(*(set(per_class) for per_class in usable.values())))
    if len(classes) < 2:
        found = f"1 class folder ({classes[0]})" if classes else "no class folder"
        raise DatasetError(
            f"{root}: found {found}; at least 2 are needed. "
            "Expected train/<class>/ and validation/<class>/, or one folder of <class>/ subfolders."
        )
    for split, per_class in usable.items():
        missing = [name for name in classes if name not in per_class]
        if missing:
            # Cats/ in train and cats/ in validation are two classes to the scan: say which names differ by case.
            folded = {name.casefold(): name for name in per_class}
            hints = [f"{name!r} is {folded[name.casefold()]!r} there" for name in missing if name.casefold() in folded]
            hint = f" ({'; '.join(hints)}: class names must match exactly, case included)" if hints else ""
            raise DatasetError(f"{root}: class(es) {missing} missing from the {split} split{hint}.")
        empty = [name for name in classes if not per_class[name]]
        if empty:
            raise DatasetError(f"{root}: class(es) {empty} have no usable image in the {split} split.")
    return classes
