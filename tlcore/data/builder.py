"""Data sets made in the browser: classes named by a person, filled with uploaded photos or camera shots.

A made set is an ordinary class-folder data set (`<set>/<class>/<photo>`, the flat layout that
`tlcore.data.folders.scan` splits with a seed) under `built/` of the app's data folder, so the CLI,
the library and training see nothing special. Every photo goes through the one decoder
(`tlcore.data.images`) before it is written: a file that could not train is refused with its name and
reason, and nothing of it is kept. `missing` says, in words, what stands between a set and training.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from PIL import Image

from tlcore.data import folders, images, library
from tlcore.data.images import InvalidImageError

BUILT_FOLDER = "built"
MINIMUM_CLASSES = 2
# The scan holds a fifth of each class out for validation: with four photos a class keeps three to train on.
MINIMUM_PHOTOS = 4
NAME_LENGTH = 60
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp"}


@dataclass(frozen=True)
class AddReport:
    """What became of a batch of photos added to a class.

    Attributes:
        added: the files written, in the order given.
        refused: (the name the photo came with, why it was refused), for the others.
    """

    added: tuple[Path, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()


def built_root(data_dir: str | os.PathLike) -> Path:
    """The folder that holds the sets made in the browser."""
    return Path(data_dir) / BUILT_FOLDER


def check_name(name: str, what: str = "class") -> str:
    """A set's or class's name, spaces tidied, usable as a folder name.

    Raises:
        ValueError: an empty name, one too long, one with a path separator or a leading dot, a split
            folder's name (a class called "train" would turn the set into the train/validation layout),
            or operating-system debris such as "__MACOSX".
    """
    if not isinstance(name, str):
        raise ValueError(f"A {what} name must be text, received {name!r}.")
    tidied = " ".join(name.split())
    if not tidied:
        raise ValueError(f"A {what} name cannot be empty.")
    if len(tidied) > NAME_LENGTH:
        raise ValueError(f"A {what} name has at most {NAME_LENGTH} characters, received {len(tidied)}.")
    if "/" in tidied or "\\" in tidied or "\x00" in tidied:
        raise ValueError(f"A {what} name cannot hold '/', '\\' or NUL, received {tidied!r}.")
    if folders.is_ignored(Path(tidied)) or tidied in (".", ".."):
        raise ValueError(f"A {what} name cannot start with '.' or be a system folder's name, received {tidied!r}.")
    if what == "class" and tidied.lower() in folders.SPLIT_ALIASES:
        raise ValueError(
            f"{tidied!r} names a split folder ({', '.join(sorted(folders.SPLIT_ALIASES))}); choose another class name."
        )
    return tidied


def sets(data_dir: str | os.PathLike) -> list[Path]:
    """The made sets of a data folder, by name."""
    root = built_root(data_dir)
    if not root.is_dir():
        return []
    return sorted(path for path in root.iterdir() if path.is_dir() and not folders.is_ignored(path))


def create_set(data_dir: str | os.PathLike, name: str) -> Path:
    """Makes an empty set folder under `built/`.

    Raises:
        ValueError: a name `check_name` refuses, or a set of that name exists.
    """
    folder = built_root(data_dir) / check_name(name, "data set")
    if folder.exists():
        raise ValueError(f"A data set named {folder.name!r} exists already in {folder.parent}.")
    folder.mkdir(parents=True)
    return folder


def delete_set(folder: str | os.PathLike, data_dir: str | os.PathLike, runs_dir: str | os.PathLike) -> None:
    """Removes a made set's folder and its photos, and forgets it in the library with its cached features.

    Args:
        folder: the set's folder.
        data_dir: the app's data folder (its library).
        runs_dir: the runs folder (its feature caches).
    """
    root = _set_folder(folder)
    if library.find(data_dir, library.entry_id(root)) is not None:
        library.delete(data_dir, library.entry_id(root), runs_dir)
    shutil.rmtree(root, ignore_errors=True)  # Already gone when the library removed it as the app's own copy.


def classes(folder: str | os.PathLike) -> list[str]:
    """The class names of a set, sorted as the scan sorts them."""
    return sorted(path.name for path in _set_folder(folder).iterdir() if path.is_dir() and not folders.is_ignored(path))


def photos(folder: str | os.PathLike) -> dict[str, list[Path]]:
    """Class -> its photos, by file name."""
    root = _set_folder(folder)
    return {
        name: sorted(path for path in (root / name).iterdir() if path.is_file() and images.has_image_extension(path))
        for name in classes(root)
    }


def add_class(folder: str | os.PathLike, name: str) -> Path:
    """Adds an empty class folder.

    Raises:
        ValueError: a refused name, or a class of that name (in any letter case) exists.
    """
    root = _set_folder(folder)
    name = check_name(name)
    clash = [existing for existing in classes(root) if existing.lower() == name.lower()]
    if clash:
        raise ValueError(f"The data set has a class {clash[0]!r} already.")
    (root / name).mkdir()
    return root / name


def rename_class(folder: str | os.PathLike, old: str, new: str) -> Path:
    """Renames a class (its folder); its photos go with it.

    Raises:
        ValueError: no class `old`, a refused new name, or another class of the new name.
    """
    root = _set_folder(folder)
    source = _class_folder(root, old)
    new = check_name(new)
    if new == old:
        return source
    clash = [existing for existing in classes(root) if existing.lower() == new.lower() and existing != old]
    if clash:
        raise ValueError(f"The data set has a class {clash[0]!r} already.")
    return source.rename(root / new)


def delete_class(folder: str | os.PathLike, name: str) -> None:
    """Removes a class with its photos.

    Raises:
        ValueError: no such class.
    """
    shutil.rmtree(_class_folder(_set_folder(folder), name))


class DuplicatePhotoError(Exception):
    """A photo whose bytes the data set holds already; `reason` says where."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = name, reason


def add_photo(folder: str | os.PathLike, class_name: str, content: bytes, name: str) -> Path:
    """Decodes a photo with the one decoder, then writes its bytes, unchanged, into a class.

    The file is named after `name` (tidied; numbered when taken) with the extension of its real format.

    Returns:
        The file written.

    Raises:
        InvalidImageError: the photo cannot be decoded (named `name`, with the reason); nothing is written.
        DuplicatePhotoError: the set holds these very bytes already, in this class or another (twice in one
            class it would count double, and it could land in training and validation both; in two classes
            it would teach both labels); nothing is written.
        ValueError: no such class.
    """
    root = _set_folder(folder)
    target = _class_folder(root, class_name)
    images.decode(content, name=name)
    same = same_photo(root, content)
    if same is not None:
        raise DuplicatePhotoError(name, f"the same photo is in the data set already, as {same}.")
    with Image.open(io.BytesIO(content)) as opened:  # The header alone: the decode above read it whole.
        # A phone's MPO is a JPEG with extra frames the decoder reads as a JPEG.
        extension = EXTENSIONS.get(opened.format, ".jpg")
    # Never a hidden file (a scan skips those) nor a path: letters, digits, "_", "-" and inner dots.
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(name).stem).strip("-.")[:NAME_LENGTH] or "photo"
    path, number = target / f"{stem}{extension}", 1
    while path.exists():
        number += 1
        path = target / f"{stem}-{number}{extension}"
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_bytes(content)
    os.replace(temporary, path)  # A scan never sees half a photo.
    return path


def same_photo(folder: str | os.PathLike, content: bytes) -> str | None:
    """'<class>/<file>' of a photo of the set with exactly these bytes, or None."""
    for class_name, found in photos(folder).items():
        for path in found:
            # Only a file of the same size is read: adding a photo stays cheap in a large class.
            if path.stat().st_size == len(content) and path.read_bytes() == content:
                return f"{class_name}/{path.name}"
    return None


def add_photos(folder: str | os.PathLike, class_name: str, uploads: Iterable[tuple[bytes, str]]) -> AddReport:
    """`add_photo` for each (bytes, name); a refused photo is reported and the others still go in.

    Raises:
        ValueError: no such class.
    """
    added, refused = [], []
    for content, name in uploads:
        try:
            added.append(add_photo(folder, class_name, content, name))
        except (InvalidImageError, DuplicatePhotoError) as error:
            refused.append((name, error.reason))
    return AddReport(tuple(added), tuple(refused))


def remove_photo(folder: str | os.PathLike, path: str | os.PathLike) -> None:
    """Deletes one photo of the set.

    Raises:
        ValueError: the path is not a photo inside one of the set's classes.
    """
    root = _set_folder(folder).resolve()
    photo = Path(path).resolve()
    if photo.parent.parent != root or not photo.is_file():
        raise ValueError(f"{path}: not a photo of the data set at {root}.")
    photo.unlink()


def missing(folder: str | os.PathLike) -> list[str]:
    """What a set lacks before it can train, in words; [] when it is ready.

    Training needs MINIMUM_CLASSES classes with MINIMUM_PHOTOS photos each.
    """
    per_class = photos(folder)
    needs = []
    if len(per_class) < MINIMUM_CLASSES:
        needs.append(
            f"{counted(MINIMUM_CLASSES - len(per_class), 'more class')}: training needs at least {MINIMUM_CLASSES}."
        )
    for name, found in per_class.items():
        if len(found) < MINIMUM_PHOTOS:
            short = counted(MINIMUM_PHOTOS - len(found), "more photo")
            needs.append(f"{short} in {name!r} (it has {len(found)} of {MINIMUM_PHOTOS}).")
    return needs


def counted(count: int, noun: str) -> str:
    """'1 photo', '3 photos', '2 more classes'."""
    return f"{count} {noun}{'' if count == 1 else 'es' if noun.endswith('s') else 's'}"


def _set_folder(folder: str | os.PathLike) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"{path}: no such data set folder.")
    return path


def _class_folder(root: Path, name: str) -> Path:
    if name not in classes(root):
        raise ValueError(f"No class {name!r} in the data set at {root}; it has {classes(root)}.")
    return root / name
