"""Files written whole or not at all, and JSON read back tolerantly: what runs, caches and the library keep.

Every file is written to a temporary name, flushed and renamed into place, so a reader (the dashboard,
another process) never sees half a file, and a crash leaves the old file or the new one. Readers take a
missing or damaged file as a default instead of failing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from tlcore import temporaries

# write_atomic's temporaries: no pid, but a write holds one for a moment only (`tlcore.runs.partials` cleans them).
ATOMIC_TEMPORARY_PATTERN = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")


def write_atomic(path: Path, text: str, *, make_folders: bool = True) -> None:
    """Writes a text file through a temporary file, an fsync and a rename.

    The file is created with mode 0666 and the folders with 0777, less the umask, as ordinary tools
    do (tempfile.mkstemp would make it 0600: unreadable to anyone else sharing the runs folder).
    The data is flushed to disk before the rename and the folder after it, so a crash or power cut
    leaves the old file or the new one, never an empty file under the final name.

    Args:
        path: the file to write.
        text: its whole content.
        make_folders: create the folders above it that are missing; when False, a missing folder raises
            FileNotFoundError (a run's own files: a run folder deleted while it trains must stay deleted).
    """
    if make_folders:
        path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    with temporaries.being_written(temporary):
        # O_EXCL: the random name is ours alone; the kernel applies the umask to 0o666.
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        # surrogateescape: a file name that is not valid UTF-8 (in a predictions CSV, say) holds lone
        # surrogates, which strict UTF-8 refuses; they are written back as the name's bytes on disk.
        with os.fdopen(handle, "w", encoding="utf-8", errors="surrogateescape") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Flushes a folder's entries (a rename into it) to disk, where the platform allows it."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder: its renames are not made durable this way.
        return
    try:
        os.fsync(handle)
    except OSError:  # Some file systems refuse fsync on a folder; the rename itself is done.
        pass
    finally:
        os.close(handle)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, json_text(value))


def json_text(value: Any, indent: int | None = 2) -> str:
    """The JSON every file here holds: indented (or one line, with indent None), numpy scalars as numbers."""
    return json.dumps(value, indent=indent, default=_json_default)


def _json_default(value: Any):
    # numpy scalars from Keras logs.
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"Not JSON serialisable: {type(value).__name__}")


def read_json(path: Path, default: Any = None) -> Any:
    """Reads a JSON file; a missing or damaged file gives `default`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def read_json_object(path: Path) -> dict:
    """Reads a JSON file that should hold an object; a missing or damaged file gives {}.

    Valid JSON of another type (`[1]`, `3`, `"text"`) counts as damaged too: callers call `.get` on
    the result, and one such file must not break every reader of the runs folder.

    Args:
        path: the file.

    Returns:
        The object read, or an empty dict.
    """
    value = read_json(path, {})
    return value if isinstance(value, dict) else {}


def printable(text: str) -> str:
    """A path or file name fit to show anywhere: the bytes of a name that is not UTF-8 shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
