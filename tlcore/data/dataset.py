"""A scanned data set: its classes, its files per split, what was rejected and why; a record that round-trips
through JSON.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

SPLIT_NAMES = ("train", "validation", "test")


# Written by tlcore.data.zips beside the files it extracts: generated relative path -> archive member name.
ARCHIVE_NAMES_FILE = ".names.json"
# What `DatasetScan.from_json` needs of a record written by `DatasetScan.to_json`.
RECORD_KEYS = ("root", "layout", "classes", "files", "validation_fraction", "seed")


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
            "rejected": [
                {"path": item.path, "reason": item.reason, **({"original": item.original} if item.original else {})}
                for item in self.rejected
            ],
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
        if (
            not isinstance(classes, list)
            or len(classes) < 2
            or len(set(classes)) != len(classes)
            or not all(isinstance(name, str) for name in classes)
        ):
            raise ValueError(f"classes must be a list of at least 2 distinct class names, received {classes!r}.")
        if values["layout"] not in ("splits", "flat"):
            raise ValueError(f"layout must be 'splits' or 'flat', received {values['layout']!r}.")
        fraction, seed = values["validation_fraction"], values["seed"]
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            raise ValueError(f"validation_fraction must be a number in (0, 1), received {fraction!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, received {seed!r}.")
        files = values["files"]
        if (
            not isinstance(files, dict)
            or "train" not in files
            or "validation" not in files
            or any(split not in SPLIT_NAMES for split in files)
        ):
            received = list(files) if isinstance(files, dict) else type(files).__name__
            raise ValueError(
                f"files must hold the splits train, validation and optionally test, received {received!r}."
            )
        splits = {}
        for split in SPLIT_NAMES:
            if split not in files:
                continue
            per_class = files[split]
            if not isinstance(per_class, dict) or sorted(per_class) != sorted(classes):
                received = sorted(per_class) if isinstance(per_class, dict) else type(per_class).__name__
                raise ValueError(
                    f"files[{split!r}] must list the image paths of each class {classes}, received {received!r}."
                )
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
            for item in rejected
        ):
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


def fingerprint(dataset: DatasetScan) -> str:
    """A short hash of the files (paths, sizes, modification times), classes and split.

    Two scans with the same fingerprint contain the same bytes in the same roles, so features
    computed for one can be reused for the other.

    Paths are hashed as the bytes the file system holds (`os.fsencode`): a file name that is not
    valid UTF-8 reaches Python as a str with lone surrogates, which `str.encode` refuses. For any
    other name the bytes are its UTF-8 encoding, as before, so existing feature caches still match.
    """
    digest = hashlib.sha256()
    digest.update(repr(dataset.classes).encode())  # repr escapes lone surrogates: always encodable.
    for split in sorted(dataset.splits):
        for sample in dataset.splits[split]:
            stat = os.stat(sample.path)
            digest.update(f"{split}\0".encode())
            digest.update(os.fsencode(sample.path))
            digest.update(f"\0{sample.label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
