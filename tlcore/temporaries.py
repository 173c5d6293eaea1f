"""The temporary files and folders this process is writing, so that a process ending at once removes them.

Writers build each file (or folder) under a temporary name and rename it into place once it is
whole, inside `being_written`: it removes the temporary when the writer fails, and registers it
meanwhile. A process that ends at once, with `os._exit` (the command line's answer to Ctrl+C,
`tlcore.console.end_at_once`), runs no `finally` block or context exit: the ending removes what is
registered instead. What a killed process leaves is another matter
(`tlcore.runs.partials` cleans a runs folder of it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

# The temporaries being written, registered and not yet released. A set changed one whole call at a
# time, so a signal handler that runs between two bytecodes of the writer sees it consistent.
_BEING_WRITTEN: set[Path] = set()


def register(path: str | os.PathLike) -> Path:
    """Marks `path` as a temporary this process is writing (nothing need exist there yet)."""
    path = Path(path)
    _BEING_WRITTEN.add(path)
    return path


def release(path: str | os.PathLike) -> None:
    """Forgets `path`: renamed into place, or removed by its writer."""
    _BEING_WRITTEN.discard(Path(path))


@contextlib.contextmanager
def being_written(path: str | os.PathLike) -> Iterator[Path]:
    """Registers `path` for the block, which renames it into place; removes what is there if the block raises."""
    registered = register(path)
    try:
        yield registered
    except BaseException:
        with contextlib.suppress(OSError):
            remove(registered)
        raise
    finally:
        release(registered)


@contextlib.contextmanager
def temporary_directory(prefix: str) -> Iterator[Path]:
    """A new folder in the temp folder (`tempfile.mkdtemp`), registered while it exists, removed after the block."""
    with being_written(tempfile.mkdtemp(prefix=prefix)) as folder:
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def registered() -> tuple[Path, ...]:
    """The temporaries being written now."""
    return tuple(_BEING_WRITTEN)


def remove(path: Path) -> None:
    """Removes a file, or a folder with its contents; a symbolic link is removed as a link, never followed.

    Raises:
        OSError: it could not be removed (FileNotFoundError: nothing is there).
    """
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def remove_all() -> list[Path]:
    """Removes every registered temporary (a file, or a folder and its contents); for a process ending at once.

    Returns:
        The paths removed (those already renamed or never created are skipped).
    """
    removed = []
    for path in registered():
        try:
            remove(path)
        except FileNotFoundError:
            pass  # Renamed into place a moment ago, or not created yet.
        except OSError:
            continue  # Left for `tlcore.runs.partials`; the process is ending and must not fail now.
        else:
            removed.append(path)
        _BEING_WRITTEN.discard(path)
    return removed
