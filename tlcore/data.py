"""Data sets: scan a folder of class subfolders, split it, fingerprint it, feed it to Keras.

Two layouts are understood:
    root/train/<class>/*.jpg, root/validation/<class>/*.jpg (+ optional root/test/<class>/)
    root/<class>/*.jpg, which is split into train and validation per class with a seed.
A single wrapper folder around either layout (as zip archives often have) is looked through.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from tlcore import images

SPLIT_NAMES = ("train", "validation", "test")
# Accepted spellings of the split folders, lower-cased.
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
                 "valid": "validation", "test": "test", "testing": "test"}
# Operating-system debris that is neither a class nor an image.
IGNORED_NAMES = {"__macosx", ".ds_store", "thumbs.db", "desktop.ini", ".git", "__pycache__"}


# Written by tlcore.zips beside the files it extracts: generated relative path -> archive member name.
ARCHIVE_NAMES_FILE = ".names.json"
# What `DatasetScan.from_json` needs of a record written by `DatasetScan.to_json`.
RECORD_KEYS = ("root", "layout", "classes", "files", "validation_fraction", "seed")
# Batches a file pipeline decodes ahead of the model.
PREFETCH_BATCHES = 2
# Images per batch when `load_images` decodes a whole list.
LOAD_BATCH_SIZE = 32
# Decoding holds the GIL for part of every photo (file checks, JPEG markers and EXIF parsed in
# Python), so decoder threads stop paying off past a few: on a 16-core machine (the GPU machine of
# README "Speed") 4 threads decoded 3,378 photos/s at 160 px, 8 threads 3,646 and 16 threads 1,917.
MAX_DECODER_THREADS = 8
# From this many cores on, `decoded_batches` decodes in processes, one per core (see
# tlcore.decoder_processes: 8 processes decoded twice as fast as 8 threads on a 16-core machine).
# Below it threads do as well and start at once, so the laptops and 2-core machines that section 1
# of tlcore.bench measures keep them.
DECODER_PROCESSES_FROM_CORES = 8


def decoder_threads() -> int:
    """Decoder threads for a parallel pass: one per core, at most `MAX_DECODER_THREADS`."""
    return max(1, min(os.cpu_count() or 1, MAX_DECODER_THREADS))


def decoder_processes() -> int:
    """Decoder processes for `decoded_batches`, 0 for decoder threads.

    `$TLCORE_DECODER_PROCESSES` when set (0 keeps threads on any machine); else one per core on a
    machine of `DECODER_PROCESSES_FROM_CORES` cores or more, and 0 below.

    Raises:
        ValueError: `$TLCORE_DECODER_PROCESSES` is not a whole number of 0 or more.
    """
    setting = os.environ.get("TLCORE_DECODER_PROCESSES", "").strip()
    if setting:
        if not setting.isdigit():
            raise ValueError(f"TLCORE_DECODER_PROCESSES must be a whole number of 0 or more (0: decoder threads), "
                             f"received {setting!r}.")
        return int(setting)
    cores = os.cpu_count() or 1
    return cores if cores >= DECODER_PROCESSES_FROM_CORES else 0


def batch_slices(count: int, workers: int) -> list[tuple[int, int]]:
    """A batch of `count` images cut into one (begin, end) slice per decoder, as even as can be."""
    bounds = np.linspace(0, count, min(workers, count) + 1).astype(int)
    return [(int(begin), int(end)) for begin, end in zip(bounds[:-1], bounds[1:])]


def decoder_description() -> str:
    """How `decoded_batches` decodes on this machine, in words: "16 decoder processes", "2 decoder threads"."""
    processes = decoder_processes()
    if processes:
        return f"{processes} decoder process{'es' if processes > 1 else ''}"
    threads = decoder_threads()
    return f"{threads} decoder thread{'s' if threads > 1 else ''}"


class DatasetError(Exception):
    """A data set that cannot be used as a whole (wrong layout, too few classes, ...)."""


@dataclass(frozen=True)
class Sample:
    """One usable image: its path and its class index."""

    path: str
    label: int


@dataclass(frozen=True)
class Rejected:
    """A file left out of the data set, and why.

    Attributes:
        path: the file on disk.
        reason: why it cannot be used.
        original: for files extracted from a zip upload, the member's name in the archive (the
            file on disk has a generated name), else None.
    """

    path: str
    reason: str
    original: str | None = None

    @property
    def name(self) -> str:
        """The name a person knows the file by: the archive member's, or the path."""
        return f"{self.original} (in the uploaded archive)" if self.original else self.path


@dataclass(frozen=True)
class DatasetScan:
    """The result of scanning a data set folder.

    Attributes:
        root: the folder the classes were found in.
        layout: "splits" (train/validation folders) or "flat" (class folders, split by us).
        classes: class names, sorted; a label is an index into this tuple.
        splits: split name -> its samples ("train", "validation", and "test" when present).
        rejected: files that were skipped, each with its reason.
        validation_fraction: the share held out per class for the flat layout.
        seed: the seed of that split.
    """

    root: str
    layout: str
    classes: tuple[str, ...]
    splits: dict[str, tuple[Sample, ...]]
    rejected: tuple[Rejected, ...] = ()
    validation_fraction: float = 0.2
    seed: int = 1337

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def counts(self) -> dict[str, dict[str, int]]:
        """Split -> class -> number of images."""
        result = {}
        for split, samples in self.splits.items():
            per_class = {name: 0 for name in self.classes}
            for sample in samples:
                per_class[self.classes[sample.label]] += 1
            result[split] = per_class
        return result

    def paths(self, split: str) -> list[str]:
        return [sample.path for sample in self._split(split)]

    def labels(self, split: str) -> np.ndarray:
        return np.array([sample.label for sample in self._split(split)], dtype=np.int64)

    def _split(self, split: str) -> tuple[Sample, ...]:
        if split not in self.splits:
            raise ValueError(f"Split {split!r} is not in this data set; it has {sorted(self.splits)}.")
        return self.splits[split]

    def to_json(self) -> dict:
        """A JSON-ready report: classes, counts per split and class, rejected files, and the record of the files.

        "files" (split -> class -> image paths), "validation_fraction", "seed" and "fingerprint" let
        `from_json` rebuild this very scan later without decoding an image (a run's `dataset.json`);
        "fingerprint" is None when a file vanished since the scan.
        """
        files = {}
        for split, samples in self.splits.items():
            per_class = {name: [] for name in self.classes}
            for sample in samples:
                per_class[self.classes[sample.label]].append(sample.path)
            files[split] = per_class
        try:
            current = fingerprint(self)
        except OSError:
            current = None
        return {
            "root": self.root,
            "layout": self.layout,
            "classes": list(self.classes),
            "splits": self.counts(),
            "rejected": [{"path": item.path, "reason": item.reason, **({"original": item.original} if item.original else {})}
                         for item in self.rejected],
            "validation_fraction": self.validation_fraction,
            "seed": self.seed,
            "fingerprint": current,
            "files": files,
        }

    @classmethod
    def from_json(cls, values: dict) -> "DatasetScan":
        """Rebuilds the scan that `to_json` recorded, without reading any image.

        The samples of each split come back grouped by class, in class order, as `scan` makes them.
        Whether the files on disk are still the recorded ones is for the caller to check (compare
        `fingerprint` of the result with the recorded "fingerprint").

        Args:
            values: a dict written by `to_json`.

        Returns:
            A DatasetScan with the recorded root, layout, classes, splits, rejected files and split settings.

        Raises:
            ValueError: `values` is not such a record, for example one written before the file lists
                were recorded (no "files").
        """
        if not isinstance(values, dict):
            raise ValueError(f"Expected a dict written by DatasetScan.to_json, received {type(values).__name__}.")
        missing = [key for key in RECORD_KEYS if key not in values]
        if missing:
            raise ValueError(f"A data set record needs the keys {list(RECORD_KEYS)}, received one without {missing}.")
        classes = values["classes"]
        if (not isinstance(classes, list) or len(classes) < 2 or len(set(classes)) != len(classes)
                or not all(isinstance(name, str) for name in classes)):
            raise ValueError(f"classes must be a list of at least 2 distinct class names, received {classes!r}.")
        if values["layout"] not in ("splits", "flat"):
            raise ValueError(f"layout must be 'splits' or 'flat', received {values['layout']!r}.")
        fraction, seed = values["validation_fraction"], values["seed"]
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            raise ValueError(f"validation_fraction must be a number in (0, 1), received {fraction!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, received {seed!r}.")
        files = values["files"]
        if (not isinstance(files, dict) or "train" not in files or "validation" not in files
                or any(split not in SPLIT_NAMES for split in files)):
            received = list(files) if isinstance(files, dict) else type(files).__name__
            raise ValueError(f"files must hold the splits train, validation and optionally test, received {received!r}.")
        splits = {}
        for split in SPLIT_NAMES:
            if split not in files:
                continue
            per_class = files[split]
            if not isinstance(per_class, dict) or sorted(per_class) != sorted(classes):
                received = sorted(per_class) if isinstance(per_class, dict) else type(per_class).__name__
                raise ValueError(f"files[{split!r}] must list the image paths of each class {classes}, "
                                 f"received {received!r}.")
            samples = []
            for label, name in enumerate(classes):
                paths = per_class[name]
                if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
                    raise ValueError(f"files[{split!r}][{name!r}] must be a list of paths, received {paths!r:.200}.")
                samples.extend(Sample(path, label) for path in paths)
            splits[split] = tuple(samples)
        rejected = values.get("rejected", [])
        if not isinstance(rejected, list) or not all(
                isinstance(item, dict) and isinstance(item.get("path"), str) and isinstance(item.get("reason"), str)
                for item in rejected):
            raise ValueError(f"rejected must be a list of {{'path', 'reason'}} dicts, received {rejected!r:.200}.")
        return cls(
            root=str(values["root"]),
            layout=values["layout"],
            classes=tuple(classes),
            splits=splits,
            rejected=tuple(Rejected(item["path"], item["reason"], item.get("original")) for item in rejected),
            validation_fraction=float(fraction),
            seed=seed,
        )


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
    """A stable integer for a class name (Python's own `hash` of a str changes every run)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def _stratified_split(
    files_per_class: dict[str, list[Path]], validation_fraction: float, seed: int
) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    train, validation = {}, {}
    for name, files in sorted(files_per_class.items()):
        if len(files) < 2:
            raise DatasetError(
                f"Class {name!r} has {len(files)} usable image(s); at least 2 are needed to split it "
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
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder.")
    root = _find_root(path)
    folders, _ = _children(root)
    split_folders = {}
    for item in folders:
        split = SPLIT_ALIASES.get(item.name.lower())
        if split is not None and split not in split_folders:
            split_folders[split] = item
    layout = "splits" if "train" in split_folders else "flat"
    if layout == "splits":
        if "validation" not in split_folders:
            raise DatasetError(
                f"{root}: has a train folder but no validation folder. Expected train/<class>/ and "
                "validation/<class>/, or one folder of <class>/ subfolders."
            )
        class_folders = {split: _children(split_path)[0] for split, split_path in split_folders.items()}
    else:
        class_folders = {"all": folders}

    # Gather candidate files per (split, class), then check them all in one parallel pass.
    candidates: list[tuple[str, str, Path]] = []
    for split, class_paths in class_folders.items():
        for class_path in class_paths:
            for file_path in _class_files(class_path):
                candidates.append((split, class_path.name, file_path))
    reasons = _check_files([item[2] for item in candidates], workers or decoder_threads())

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
    # Loose files beside the class folders cannot be labelled.
    for split_path in ([root] if layout == "flat" else list(split_folders.values())):
        for loose in _children(split_path)[1]:
            rejected.append(Rejected(str(loose), "file outside any class folder (cannot tell its class)"))

    rejected = _with_archive_names(rejected, path)
    if layout == "flat":
        usable = dict(zip(("train", "validation"), _stratified_split(
            _non_empty(usable["all"], root), validation_fraction, seed)))
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
    """Adds the archive member names that `tlcore.zips` recorded for the files it extracted."""
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
        raise DatasetError(f"{root}: class folder(s) {empty} contain no usable image.")
    return files_per_class


def _check_classes(usable: dict[str, dict[str, list[Path]]], root: Path) -> list[str]:
    classes = sorted(set().union(*(set(per_class) for per_class in usable.values())))
    if len(classes) < 2:
        raise DatasetError(
            f"{root}: found {len(classes)} class folder(s) {classes}; at least 2 are needed. "
            "Expected train/<class>/ and validation/<class>/, or one folder of <class>/ subfolders."
        )
    for split, per_class in usable.items():
        missing = [name for name in classes if name not in per_class]
        if missing:
            raise DatasetError(f"{root}: class(es) {missing} missing from the {split} split.")
        empty = [name for name in classes if not per_class[name]]
        if empty:
            raise DatasetError(f"{root}: class(es) {empty} have no usable image in the {split} split.")
    return classes


def fingerprint(dataset: DatasetScan) -> str:
    """A short hash of the files (paths, sizes, modification times), classes and split.

    Two scans with the same fingerprint contain the same bytes in the same roles, so features
    computed for one can be reused for the other.
    """
    digest = hashlib.sha256()
    digest.update(repr(dataset.classes).encode())
    for split in sorted(dataset.splits):
        for sample in dataset.splits[split]:
            stat = os.stat(sample.path)
            digest.update(f"{split}\0{sample.path}\0{sample.label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def load_images(
    paths: Sequence[str], image_size: int, workers: int | None = None, processes: bool | None = None
) -> np.ndarray:
    """Decodes and resizes images in parallel (`decoded_batches`) into one uint8 array (N, size, size, 3).

    Args:
        paths: image files.
        image_size: side of the square images.
        workers: decoder threads or processes, as `decoded_batches`.
        processes: decode in processes, as `decoded_batches`.

    Returns:
        The images, in the order of `paths`.

    Raises:
        images.InvalidImageError: a file cannot be decoded.
    """
    output = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)
    position = 0
    for batch in decoded_batches(paths, image_size, LOAD_BATCH_SIZE, workers=workers, processes=processes):
        output[position:position + len(batch)] = batch
        position += len(batch)
    return output


def decoded_batches(
    paths: Sequence[str],
    image_size: int,
    batch_size: int,
    ahead: int = PREFETCH_BATCHES,
    workers: int | None = None,
    processes: bool | None = None,
) -> Iterator[np.ndarray]:
    """uint8 batches (n, size, size, 3) of images decoded by the one decoder, in order, ahead of use.

    For passes that only need the pixels, in order (feature extraction, cached views, loading a
    split into memory): a pool of decoders of its own decodes each batch in one slice per worker,
    straight into the batch's array, `ahead` batches before they are asked for. Decoding alone, that
    spent 0.35 to 0.6 ms less CPU per image than a `tf.data` map (`make_dataset`: a Python call per
    image through `tf.numpy_function`, a float32 copy and the batching) in probes on two cores: CPU
    time the model has instead (`python -m tlcore.bench`, section 1). The decoders run at the lowest
    priority, as `make_dataset`'s do. They are threads, or, on a machine of
    `DECODER_PROCESSES_FROM_CORES` cores or more, processes writing into shared memory
    (`tlcore.decoder_processes`), which the GIL does not hold back.

    Args:
        paths: image files.
        image_size: side of the square images.
        batch_size: images per batch (the last batch may be smaller).
        ahead: batches decoded ahead of the one being used (at least 1).
        workers: decoder threads or processes (default: `decoder_processes()` when decoding in
            processes, else `decoder_threads()`, one per core, at most 8).
        processes: decode in processes (True) or threads (False); default: processes when
            `decoder_processes()` is not 0.

    Yields:
        uint8 arrays of shape (n, image_size, image_size, 3), n = batch_size but for the last one.

    Raises:
        images.InvalidImageError: a file cannot be decoded (raised with the batch that holds it;
            the batches before it have been yielded).
        ValueError: image_size, batch_size, ahead or workers is not a positive integer.
    """
    checked = [("image_size", image_size), ("batch_size", batch_size), ("ahead", ahead)]
    if workers is not None:
        checked.append(("workers", workers))
    for name, value in checked:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, received {value!r}.")
    if processes is None:
        processes = decoder_processes() > 0
    if processes:
        from tlcore import decoder_processes as pool_of_processes  # Loaded only where it is used.

        yield from pool_of_processes.decoded_batches(paths, image_size, batch_size, ahead,
                                                     workers or decoder_processes() or decoder_threads())
        return
    paths = [str(path) for path in paths]
    workers = workers or decoder_threads()
    starts = iter(range(0, len(paths), batch_size))
    pending: collections.deque = collections.deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tlcore-decoder",
                              initializer=_lower_decoder_thread)

    def decode_slice(output: np.ndarray, batch_paths: list[str], begin: int, end: int) -> None:
        for index in range(begin, end):
            output[index] = images.load_resized(batch_paths[index], image_size)

    def submit(start: int) -> None:
        batch_paths = paths[start:start + batch_size]
        output = np.empty((len(batch_paths), image_size, image_size, 3), dtype=np.uint8)
        pending.append((output, [pool.submit(decode_slice, output, batch_paths, begin, end)
                                 for begin, end in batch_slices(len(batch_paths), workers)]))

    try:
        for start in itertools.islice(starts, ahead):
            submit(start)
        while pending:
            output, futures = pending.popleft()
            for future in futures:
                future.result()
            following = next(starts, None)
            if following is not None:
                submit(following)  # Before yielding: the decoders work while the caller uses this batch.
            yield output
    finally:
        # A caller that stops early (a stop request, an error) does not wait for batches it will not use.
        pool.shutdown(wait=True, cancel_futures=True)


def encode_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Targets for Keras: 0/1 floats for two classes (sigmoid), one-hot rows for more (softmax)."""
    labels = np.asarray(labels, dtype=np.int64)
    if num_classes == 2:
        return labels.astype("float32")
    return np.eye(num_classes, dtype="float32")[labels]


def make_dataset(
    paths: Sequence[str],
    labels: Iterable[int] | None,
    num_classes: int,
    image_size: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 1337,
):
    """A `tf.data` pipeline of (images, targets) batches decoded by the one decoder.

    Images come out as float32 RGB in [0, 255], shaped (batch, size, size, 3); each model
    scales them itself (see `tlcore.layers.Preprocess`).

    Args:
        paths: image files.
        labels: their class indices, or None for an images-only pipeline.
        num_classes: the number of classes (2 means one sigmoid output).
        image_size: side of the square images.
        batch_size: images per batch.
        shuffle: reshuffle the files every epoch (training).
        seed: the shuffle seed.

    Returns:
        A batched, prefetched `tf.data.Dataset`.
    """
    import tensorflow as tf

    paths = [str(path) for path in paths]

    def load(path):
        _lower_decoder_thread()
        return images.load_resized(path.decode() if isinstance(path, bytes) else str(path), image_size)

    def decode(path):
        image = tf.numpy_function(load, [path], tf.uint8, stateful=False)
        image.set_shape((image_size, image_size, 3))
        return tf.cast(image, tf.float32)

    dataset = tf.data.Dataset.from_tensor_slices(paths)
    if labels is not None:
        targets = encode_labels(np.asarray(list(labels)), num_classes)
        dataset = tf.data.Dataset.zip((dataset, tf.data.Dataset.from_tensor_slices(targets)))
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    # One decoding call per core (at most MAX_DECODER_THREADS), two batches ahead, and tf.data's
    # autotuner off: on a CPU the decoders share the cores with the model, and the autotuner (a thread
    # of its own, buffers that grow) cost a third of the extraction throughput on two cores
    # (tlcore.bench, section 1). Pillow releases the GIL while it decodes, so the calls run in
    # parallel, on a pool of the pipeline's own (whose threads `_lower_decoder_thread` may lower
    # without touching TensorFlow's).
    parallel_calls = decoder_threads()
    if labels is not None:
        dataset = dataset.map(lambda path, target: (decode(path), target), num_parallel_calls=parallel_calls)
    else:
        dataset = dataset.map(decode, num_parallel_calls=parallel_calls)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = parallel_calls
    return dataset.batch(batch_size).prefetch(PREFETCH_BATCHES).with_options(options)


_decoder_thread = threading.local()


def _lower_decoder_thread() -> None:
    """Gives the calling decoder thread the lowest priority (nice 19), once per thread, on Linux.

    The model's threads then keep the cores while the prefetched batches last, and the decoders
    fill the moments the model leaves idle instead of preempting it; when the model waits for a
    batch, nothing else wants the cores and the decoders run at full speed. Linux alone applies
    a niceness to one thread; elsewhere this would renice the whole process, so it does nothing.
    """
    if getattr(_decoder_thread, "lowered", False) or sys.platform != "linux":
        return
    _decoder_thread.lowered = True
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
