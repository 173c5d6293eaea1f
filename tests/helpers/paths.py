"""The project root and the read-only `../shared` folder (real photos, weights, guides).

`TLCORE_SHARED_DIR` points the tests at another shared folder; only these helpers read it. Without the shared
folder, every test that needs it is skipped with the same reason, `SHARED_MISSING_REASON`'s, and the run ends with
one line counting those skips (see `pytest_terminal_summary` in tests/conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR_VARIABLE = "TLCORE_SHARED_DIR"
SHARED_PARTS = ("data/catsdogs", "data/scenes", "weights")
SHARED_MISSING = "../shared is missing"


def shared_dir() -> Path:
    """The shared folder: `$TLCORE_SHARED_DIR`, or `shared` beside the project root."""
    return Path(os.environ.get(SHARED_DIR_VARIABLE) or PROJECT_ROOT.parent / "shared")


def shared_missing_reason() -> str:
    """The one reason every test skipped for want of the shared folder gives."""
    return (
        f"{SHARED_MISSING}: expected {', '.join(SHARED_PARTS)} in {shared_dir()} "
        f"(or set {SHARED_DIR_VARIABLE} to the folder that holds them)"
    )


def shared_is_complete() -> bool:
    """Whether the shared folder holds every part the tests read."""
    return all((shared_dir() / part).is_dir() for part in SHARED_PARTS)


def shared_path(*parts: str) -> Path:
    """A path inside the shared folder; skips the calling test when the shared folder is missing.

    A complete shared folder that lacks `parts` is not a reason to skip: the test then fails on the path.
    """
    if not shared_is_complete():
        pytest.skip(shared_missing_reason())
    return shared_dir().joinpath(*parts)
