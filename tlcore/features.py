"""Feature cache: a frozen backbone's feature maps for a data set, computed once, reused by later runs.

The key covers everything the features depend on (backbone, weights, width, image size, the data
set's fingerprint and this module's version), so a cached entry can never be stale: a changed
file changes the fingerprint and therefore the key.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from tlcore.runs import write_json

CACHE_VERSION = 2  # 2: augmented views are really augmented (1 cached unaugmented copies).


def cache_key(backbone: str, weights: str, alpha: float, image_size: int, dataset_fingerprint: str,
              extra=None) -> str:
    """A short hash of everything cached activations depend on.

    Args:
        backbone, weights, alpha, image_size: what builds the base.
        dataset_fingerprint: `tlcore.data.fingerprint` of the data set.
        extra: anything else they depend on (augmentation settings, view count, ...), JSON-able.
    """
    text = json.dumps([CACHE_VERSION, backbone, weights, float(alpha), image_size, dataset_fingerprint, extra],
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_dir(runs_dir: str | os.PathLike) -> Path:
    """Where cached features live: a hidden folder of the runs folder (not a run)."""
    return Path(runs_dir) / ".cache" / "features"


def load(directory: Path, key: str, split: str) -> np.ndarray | None:
    """Returns cached features of a split, or None when absent or unreadable."""
    path = directory / key / f"{split}.npy"
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None


def save(directory: Path, key: str, split: str, features: np.ndarray, description: dict) -> None:
    """Stores features atomically (temporary file, then rename)."""
    folder = directory / key
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{split}.{os.getpid()}.npy"
    np.save(temporary, features, allow_pickle=False)
    os.replace(temporary, folder / f"{split}.npy")
    write_json(folder / "meta.json", description)
