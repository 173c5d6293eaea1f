"""Cleaning a runs folder of the temporaries that killed or failed writers left behind.

Writers in a runs folder build each file under a temporary name and rename it into place once it is
whole (`tlcore.files.write_atomic`, a model being saved, features being extracted). A process
killed midway leaves that temporary behind; `clean_partials` removes the ones whose writer is gone.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from tlcore import temporaries
from tlcore.files import ATOMIC_TEMPORARY_PATTERN
from tlcore.runs.store import default_runs_dir, process_alive

# Partial files (a model being saved, features being extracted) younger than this are never removed,
# whatever their process: a pid alone could have been recycled, a fresh mtime means work in progress.
STALE_PARTIAL_SECONDS = 600
# The temporary names writers in a runs folder use, with the pid of the process that writes them.
PARTIAL_PATTERNS = (
    re.compile(r"^\.partial-(?P<pid>\d+)-.+$"),  # training.trainer.save_model
    re.compile(r"^\..+\.(?P<pid>\d+)\.partial$"),  # training.feature_cache.FeatureWriter
)


def _is_stale_partial(path: Path, now: float) -> bool:
    """Whether a runs-folder entry is a temporary left behind by a process that is gone."""
    try:
        age = now - path.lstat().st_mtime
    except OSError:
        return False
    if age < STALE_PARTIAL_SECONDS:
        return False
    if ATOMIC_TEMPORARY_PATTERN.match(path.name):
        return True
    for pattern in PARTIAL_PATTERNS:
        match = pattern.match(path.name)
        if match:
            return not process_alive(int(match.group("pid")))
    return False


def clean_partials(runs_dir: str | os.PathLike | None = None, now: float | None = None) -> list[Path]:
    """Removes the temporaries that killed or failed writers left in a runs folder.

    Looked at: the runs folder itself, each run folder, and each feature cache entry. Removed: a
    partial model or feature file whose process is gone, and an atomic write's temporary, each
    once it is older than STALE_PARTIAL_SECONDS. Symbolic links are removed as links, never
    followed.

    Args:
        runs_dir: the runs folder (default `default_runs_dir()`).
        now: the time to judge ages by (default: the current time).

    Returns:
        The paths removed.
    """
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    now = time.time() if now is None else now
    folders = [runs_dir]
    folders += [path for path in _entries(runs_dir) if path.is_dir() and not path.is_symlink()]
    cache = runs_dir / ".cache" / "features"
    folders += [path for path in _entries(cache) if path.is_dir() and not path.is_symlink()]
    removed = []
    for folder in folders:
        for path in _entries(folder):
            if not _is_stale_partial(path, now):
                continue
            try:
                temporaries.remove(path)
            except OSError:
                continue  # Gone already, or not ours to remove: the next clean-up tries again.
            removed.append(path)
    return removed


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []
