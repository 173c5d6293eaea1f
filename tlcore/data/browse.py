"""Looking at a data set folder: a cheap change stamp, thumbnails that keep their shape, and the
order a person reads file names in.

The Data page keys its cached scans on `folder_stamp` (so an edited folder is scanned again),
and shows `thumbnail`s decoded by the one decoder (`tlcore.data.images.decode`: same EXIF rotation,
same colour conversion, same refusals as training). No Streamlit here.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from tlcore.data import images

# A data set folder with more files than this is refused before any image is decoded (someone
# typed "/" or their home folder).
MAX_FILES = 200_000
# Background of square thumbnails.
PADDING = (240, 242, 246)
# Frame of preview images: a mid grey, seen around a white copy (brightness 1.0) and a black one alike.
FRAME = (128, 128, 128)


class FolderTooLargeError(ValueError):
    """A folder holding far more files than a data set does."""


def folder_stamp(folder: str | os.PathLike, max_files: int = MAX_FILES) -> str:
    """A short hash of every file's relative path, size and modification time below a folder.

    Args:
        folder: the data set folder.
        max_files: refuse folders with more files than this.

    Returns:
        16 hex digits; equal stamps mean an unchanged folder (for a cache key, not a checksum).

    Raises:
        FolderTooLargeError: more than `max_files` files.
        OSError: the folder cannot be listed.
    """
    root = Path(folder)
    # Paths as their bytes on disk (`os.fsencode`): a name that is not valid UTF-8 holds lone
    # surrogates, which `str.encode` refuses; for any other name the bytes are the same as before.
    digest = hashlib.sha256(os.fsencode(root))
    count = 0
    for directory, subfolders, names in os.walk(root, onerror=_raise):
        subfolders.sort()
        for name in sorted(names):
            count += 1
            if count > max_files:
                raise FolderTooLargeError(
                    f"{root}: holds more than {max_files:,} files; choose the folder of one data set "
                    "(class folders, or train/ and validation/)."
                )
            path = Path(directory) / name
            try:
                stat = path.stat()
                digest.update(os.fsencode(path.relative_to(root)))
                digest.update(f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(os.fsencode(path.relative_to(root)))
                digest.update(b"\0missing\n")
    return digest.hexdigest()[:16]


def _raise(error: OSError) -> None:
    raise error


def thumbnail(
    source: images.Source, max_side: int = 192, *, name: str | None = None, square: bool = False
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decodes an image (a JPEG at a reduced scale, see `images.decode_reduced`) and shrinks it to fit a
    square, keeping its aspect ratio.

    Args:
        source: a path, or the bytes of an upload.
        max_side: the longest side of the thumbnail, in pixels.
        name: the name to show in errors.
        square: centre it on a light square of `max_side` pixels (even grids of mixed shapes).

    Returns:
        (RGB uint8 array, (width, height) of the original image).

    Raises:
        InvalidImageError: as `tlcore.data.images.decode`.
        ValueError: max_side is not a positive integer.
    """
    pixels, (width, height) = images.decode_reduced(source, max_side, name=name)
    picture = Image.fromarray(pixels)
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if square:
        canvas = Image.new("RGB", (max_side, max_side), PADDING)
        canvas.paste(picture, ((max_side - picture.width) // 2, (max_side - picture.height) // 2))
        picture = canvas
    return np.asarray(picture, dtype=np.uint8), (width, height)


def natural_order(paths: Sequence[str]) -> list[str]:
    """Paths sorted by file name as a person counts: cat.2.jpg before cat.10.jpg, case ignored.

    For display only: the data set keeps its own (sorted) order, on which its seeded split and the
    feature cache's fingerprint depend.

    Args:
        paths: file paths.

    Returns:
        The same paths, runs of digits in their names compared as numbers.
    """

    def key(path: str) -> tuple:
        # re.split with a group alternates text and digits, text first: like parts meet like parts.
        parts = re.split(r"(\d+)", Path(path).name)
        return tuple(int(part) if index % 2 else part.casefold() for index, part in enumerate(parts)), path

    return sorted(paths, key=key)


def human_size(count: int) -> str:
    """'812 B', '34.5 KB', '2.1 MB'."""
    if count < 1024:
        return f"{count} B"
    if count < 1024**2:
        return f"{count / 1024:.1f} KB"
    return f"{count / 1024**2:.1f} MB"


def framed(picture: np.ndarray, thickness: int = 2, colour: tuple[int, int, int] = FRAME) -> np.ndarray:
    """An RGB uint8 image with a frame around it, so a blank white or black image still reads as an image.

    Args:
        picture: an RGB uint8 array (height, width, 3).
        thickness: the frame's width in pixels.
        colour: the frame's RGB colour.

    Returns:
        A new array, 2 * thickness pixels taller and wider.

    Raises:
        ValueError: the picture is not (height, width, 3) or the thickness is below 1.
    """
    if picture.ndim != 3 or picture.shape[-1] != 3:
        raise ValueError(f"picture must have shape (height, width, 3), received {picture.shape}.")
    if not isinstance(thickness, int) or thickness < 1:
        raise ValueError(f"thickness must be an integer >= 1, received {thickness!r}.")
    height, width = picture.shape[:2]
    result = np.empty((height + 2 * thickness, width + 2 * thickness, 3), dtype=np.uint8)
    result[...] = np.asarray(colour, dtype=np.uint8)
    result[thickness:-thickness, thickness:-thickness] = picture
    return result
