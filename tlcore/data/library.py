"""The data set library: every data set the app has scanned, extracted or built, to pick again.

One JSON file in the app's data folder (`library.json`) lists each data set by its folder: a name a
person can change, the path, its classes and images per split, the validation fraction and seed it
was scanned with, and when it was added and last used. The Data page records a data set each time it
is scanned; after a reload, every page reopens the link's data set (`?dataset=<id>`), else the last one used.

Deleting an entry forgets it; a copy the app made inside the data folder (an extracted upload, a demo
set, a cleaned copy) is removed too, with the cached features of that folder. A folder outside the
data folder belongs to its owner and is never removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from tlcore.data.dataset import DatasetScan
from tlcore.files import read_json, write_json

LIBRARY_FILE = "library.json"
LIBRARY_VERSION = 1
KINDS = ("folder", "upload", "demo", "built")
# tlcore.training.feature_cache.cache_dir's folder, named here because that module loads Keras.
FEATURE_CACHE_FOLDER = Path(".cache") / "features"


@dataclass(frozen=True)
class Entry:
    """One data set of the library.

    Attributes:
        id: a short hash of the folder's path (the same folder is one entry).
        name: what the library shows; the folder's name until renamed.
        path: the scanned folder, resolved.
        kind: how it came: "folder" (typed), "upload" (a zip), "demo" or "built" (made on the Data page,
            `tlcore.data.builder`, or a cleaned copy).
        classes: the class names.
        images: split -> number of images.
        validation_fraction, seed: the split the scan used when the set has no validation folder.
        added, used: when it was first recorded and last picked (seconds since the epoch).
    """

    id: str
    name: str
    path: str
    kind: str
    classes: tuple[str, ...]
    images: dict[str, int] = field(default_factory=dict)
    validation_fraction: float = 0.2
    seed: int = 1337
    added: float = 0.0
    used: float = 0.0

    @staticmethod
    def from_dict(value: dict) -> Entry:
        value = dict(value)
        value["classes"] = tuple(value.get("classes", ()))
        return Entry(**{key: value[key] for key in Entry.__dataclass_fields__ if key in value})


def entry_id(path: str | os.PathLike) -> str:
    # The bytes on disk (`os.fsencode`): a folder name that is not valid UTF-8 holds lone surrogates,
    # which `str.encode` refuses; for any other name the bytes, and so the key, are the same as before.
    return hashlib.sha256(os.fsencode(Path(path).resolve())).hexdigest()[:12]


def library_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / LIBRARY_FILE


def entries(data_dir: str | os.PathLike) -> list[Entry]:
    """The library's data sets, most recently used first; a missing or damaged file gives none."""
    raw = read_json(library_path(data_dir), default={})
    items = raw.get("entries", []) if isinstance(raw, dict) else []
    found = []
    for item in items:
        try:
            found.append(Entry.from_dict(item))
        except (TypeError, KeyError):  # A hand-edited or older record: leave it out, keep the rest.
            continue
    return sorted(found, key=lambda entry: entry.used, reverse=True)


def find(data_dir: str | os.PathLike, wanted: str | None) -> Entry | None:
    """The entry with this id, or None (also for None)."""
    return next((entry for entry in entries(data_dir) if entry.id == wanted), None) if wanted else None


def last_used(data_dir: str | os.PathLike) -> Entry | None:
    """The most recently used data set whose folder still exists, or None."""
    return next((entry for entry in entries(data_dir) if Path(entry.path).is_dir()), None)


def record(data_dir: str | os.PathLike, scan: DatasetScan, kind: str, now: float | None = None) -> Entry:
    """Adds a scanned data set, or refreshes its entry (counts, split, last used; a chosen name stays).

    Args:
        data_dir: the app's data folder.
        scan: the data set as scanned.
        kind: one of KINDS.
        now: the time to record (default the current time).

    Returns:
        The entry as saved.

    Raises:
        ValueError: an unknown kind.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, received {kind!r}.")
    now = time.time() if now is None else now
    path = str(Path(scan.root).resolve())
    with _locked(data_dir) as current:
        earlier = current.get(entry_id(path))
        entry = Entry(
            id=entry_id(path),
            name=earlier.name if earlier else Path(path).name,
            path=path,
            kind=earlier.kind if earlier and kind == "folder" else kind,
            classes=tuple(scan.classes),
            images={split: len(samples) for split, samples in scan.splits.items()},
            validation_fraction=float(scan.validation_fraction),
            seed=int(scan.seed),
            added=earlier.added if earlier else now,
            used=now,
        )
        current[entry.id] = entry
    return entry


def rename(data_dir: str | os.PathLike, wanted: str, name: str) -> Entry:
    """Gives an entry a new name (the folder is not renamed).

    Raises:
        ValueError: an empty name, or no entry with this id.
    """
    name = " ".join(name.split())
    if not name:
        raise ValueError("A data set's name cannot be empty.")
    with _locked(data_dir) as current:
        if wanted not in current:
            raise ValueError(f"No data set {wanted!r} in the library.")
        current[wanted] = Entry.from_dict(asdict(current[wanted]) | {"name": name})
        return current[wanted]


def is_owned(data_dir: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether a folder is a copy the app made: strictly inside the data folder."""
    folder, resolved = Path(data_dir).resolve(), Path(path).resolve()
    return resolved != folder and resolved.is_relative_to(folder)


def delete(data_dir: str | os.PathLike, wanted: str, runs_dir: str | os.PathLike) -> list[Path]:
    """Forgets a data set; removes the app's own copy of it and the features cached for that folder.

    A copy is the folder the app made for it inside the data folder (for an upload whose photos sit in
    a wrapper folder, the whole extracted folder). A folder outside the data folder is left as it is.

    Args:
        data_dir: the app's data folder.
        wanted: the entry's id.
        runs_dir: the runs folder, whose feature caches name the data set folder they were made from.

    Returns:
        The folders removed (none for a folder of the user's own with no cached features).

    Raises:
        ValueError: no entry with this id.
    """
    with _locked(data_dir) as current:
        if wanted not in current:
            raise ValueError(f"No data set {wanted!r} in the library.")
        entry = current.pop(wanted)
    removed = []
    relative = (
        Path(entry.path).resolve().relative_to(Path(data_dir).resolve()) if is_owned(data_dir, entry.path) else None
    )
    # A copy is uploads/<name>, demo/<name>, ...: a set scanned as uploads/ itself would take every upload with it.
    if relative is not None and len(relative.parts) >= 2:
        copy = Path(data_dir).resolve().joinpath(*relative.parts[:2])
        if copy.is_dir():
            shutil.rmtree(copy, ignore_errors=True)
            removed.append(copy)
    caches = Path(runs_dir) / FEATURE_CACHE_FOLDER
    for meta in sorted(caches.glob("*/meta.json")) if caches.is_dir() else []:
        described = read_json(meta, default={})
        if isinstance(described, dict) and described.get("data") == entry.path:
            shutil.rmtree(meta.parent, ignore_errors=True)
            removed.append(meta.parent)
    return removed


@contextlib.contextmanager
def _locked(data_dir: str | os.PathLike) -> Iterator[dict[str, Entry]]:
    """The entries by id, written back on leaving; one writer at a time (sessions share the folder)."""
    folder = Path(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{LIBRARY_FILE}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes, also if the process dies.
        current = {entry.id: entry for entry in entries(folder)}
        yield current
        write_json(
            library_path(folder),
            {"version": LIBRARY_VERSION, "entries": [asdict(entry) for entry in current.values()]},
        )
