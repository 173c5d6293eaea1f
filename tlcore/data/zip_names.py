"""Member names of a zip archive: which are unsafe, which are debris, and folder names safe on every system.

The checks `tlcore.data.zips` runs on every name before anything is written.
"""

from __future__ import annotations

import re
import stat
import unicodedata
import zipfile
from pathlib import Path

from tlcore.data import folders

# Folder levels accepted in a member name; real data sets use 2 to 4.
MAX_DEPTH = 32
# Longest folder name written (class names come from folder names and are shown in the app).
MAX_FOLDER_NAME = 64
# Characters that are separators or invalid in file names on some operating system.
_UNSAFE_CHARACTERS = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
# Names Windows reserves for devices, whatever the extension.
_RESERVED_NAMES = {"con", "prn", "aux", "nul"} | {f"{port}{digit}" for port in ("com", "lpt") for digit in range(1, 10)}


def unsafe_reason(name: str) -> str | None:
    """Why a member name could write outside the destination, or is not a valid name; None if fine."""
    if not name:
        return "has an empty name"
    if "\x00" in name:
        return "contains a NUL character"
    if "\\" in name:
        return "contains a backslash (a Windows path separator that could hide '..' components)"
    if name.startswith("/"):
        return "is an absolute path"
    if re.match(r"^[A-Za-z]:", name):
        return "starts with a drive letter"
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return "has a '..' component (it would be written outside the destination folder)"
    if len(parts) > MAX_DEPTH:
        return f"has {len(parts)} levels; at most {MAX_DEPTH} are accepted"
    return None


def parts(name: str) -> list[str]:
    """The components of a checked member name; '.' and empty components mean nothing."""
    return [part for part in name.split("/") if part not in ("", ".")]


def is_debris(parts: list[str]) -> bool:
    # Same rule as the folder scanner: a hidden or OS-debris component anywhere leaves the file out.
    return any(folders.is_ignored(Path(part)) for part in parts)


def is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def sanitise_file(name: str) -> tuple[str, str]:
    """(stem, extension) of a file name safe on every operating system, close to the original.

    The extension is kept as it is (it was checked against the supported image types); the stem
    follows the folder rule, and a stem of only dots or spaces becomes "image".
    """
    path = Path(name)
    return (sanitise_folder(path.stem) if path.stem.strip(". ") else "image"), path.suffix


def sanitise_folder(name: str) -> str:
    """A folder name safe on every operating system, close to the original."""
    name = unicodedata.normalize("NFC", name)
    name = _UNSAFE_CHARACTERS.sub("_", name)
    # Leading dots would hide the folder (and '.'/'..' mean something); trailing dots and spaces are
    # dropped by Windows.
    name = name.strip().lstrip(".").rstrip(". ")[:MAX_FOLDER_NAME].rstrip(". ")
    if not name:
        return "folder"
    if name.split(".")[0].lower() in _RESERVED_NAMES:
        name = f"{name}_"
    return name
