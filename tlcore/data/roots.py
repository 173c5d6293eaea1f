"""The folders a typed path may lead into: data sets and batch folders are read only below them.

The app lets people type a folder path (a data set, a folder of photos to predict). Anything the server
process can read would otherwise be listable and decodable through it, so a typed path is resolved
(symbolic links and `..` followed) and kept only when it lies under an allowed root.

The roots come from `$TLCORE_DATA_ROOTS` (paths separated by `os.pathsep`), else the app's data folder
(`$TLCORE_DATA_DIR`, default `data/` of `tlcore.home`) and the user's home folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from tlcore import home

ROOTS_VARIABLE = "TLCORE_DATA_ROOTS"
DATA_DIR_VARIABLE = home.DATA_DIR_VARIABLE


class OutsideRootsError(ValueError):
    """A typed path that resolves outside every allowed root."""


def allowed_roots(environment: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The allowed roots, resolved (symbolic links followed), without duplicates, in order.

    Args:
        environment: where to read the variables (default `os.environ`).

    Returns:
        The roots from TLCORE_DATA_ROOTS when it names any, else the data folder and the home folder.
    """
    environment = os.environ if environment is None else environment
    configured = [item for item in environment.get(ROOTS_VARIABLE, "").split(os.pathsep) if item.strip()]
    if configured:
        candidates = configured
    else:
        candidates = [str(home.default_folder("data", environment)), "~"]
    roots: list[Path] = []
    for candidate in candidates:
        root = Path(candidate.strip()).expanduser().resolve()
        if root not in roots:
            roots.append(root)
    return tuple(roots)


def resolve_under_roots(path: str | os.PathLike, roots: Sequence[str | os.PathLike] | None = None) -> Path:
    """Resolves a typed path and refuses it unless it lies under (or is) an allowed root.

    Symbolic links are followed before the check, so a link inside a root that leads outside is
    refused, and a path that does not exist yet is judged by where it would be.

    Args:
        path: the path as typed (`~` is expanded; relative paths are relative to the current folder).
        roots: the allowed roots (default `allowed_roots()`).

    Returns:
        The resolved path.

    Raises:
        OutsideRootsError: the path resolves outside every root (the message names both).
        ValueError: the path is empty.
    """
    text = os.fspath(path)
    if not str(text).strip():
        raise ValueError("path must name a folder or file, received an empty path.")
    resolved = Path(text).expanduser().resolve()
    chosen = allowed_roots() if roots is None else tuple(Path(root).expanduser().resolve() for root in roots)
    if any(resolved == root or resolved.is_relative_to(root) for root in chosen):
        return resolved
    listed = ", ".join(str(root) for root in chosen) or "(none)"
    # The resolved path only where it differs from the path typed (a link, "..", "~"): "/x (resolved to /x)"
    # said the same path twice.
    shown = text if str(resolved) == text else f"{text} (resolved to {resolved})"
    raise OutsideRootsError(
        f"{shown} is outside the allowed data folders: expected a path under one of "
        f"{listed}. Whoever starts the app (or the CLI) can allow other folders: the environment variable "
        f"{ROOTS_VARIABLE} lists them."
    )
