"""Demo data sets: the TensorFlow tutorials' cats vs dogs (downloaded), and an offline texture set.

`download_cats_and_dogs` needs network access once, then works from the Keras cache.
`build_offline_demo` needs nothing: it cuts photographs that ship inside scikit-image into patches.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from tlcore import temporaries
from tlcore.data import zips

CATS_AND_DOGS_URL = "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"
CATS_AND_DOGS_FILE = "cats_and_dogs_filtered.zip"
# Our extraction folder, beside the downloaded zip. Not Keras' own
# `cats_and_dogs_filtered_extracted` (what `get_file(..., extract=True)` makes), so a tutorial's
# copy is never touched.
CATS_AND_DOGS_FOLDER = "cats_and_dogs_filtered_tlcore"
# Written last, so its presence means a complete extraction (or a complete offline build).
MARKER_FILE = ".tlcore-demo.json"

# Offline demo: three textures a pretrained CNN separates easily. Each loader returns a 512 x 512
# greyscale photograph bundled in the scikit-image wheel (no download through pooch, unlike e.g.
# `skimage.data.cells3d`).
OFFLINE_CLASSES = {
    "brick": skimage.data.brick,
    "grass": skimage.data.grass,
    "gravel": skimage.data.gravel,
}
OFFLINE_IMAGES_PER_CLASS = 60
OFFLINE_IMAGE_SIZE = 128
# Patch sides, in source pixels: from a quarter to two thirds of the photograph, so the set mixes
# close-ups and wide views.
OFFLINE_PATCH_SIZES = (128, 340)
OFFLINE_SEED = 1337
# Change when anything above changes, so an existing build is replaced rather than reused.
OFFLINE_VERSION = 1


class DemoDataError(Exception):
    """A demo data set that cannot be made available (no network, damaged download, ...).

    Args:
        message: the whole message, for a log or a traceback.
        reason: for a failed download, why, in a few words ("Name or service not known", "the server
            answered 404 (Not Found)"), for a page to say in its own words; None otherwise.
        answered: whether a server answered the download (an HTTP error), not a missing network.
    """

    def __init__(self, message: str, reason: str | None = None, answered: bool = False):
        super().__init__(message)
        self.reason = reason
        self.answered = answered


def download_failure_reason(error: Exception) -> tuple[str, bool]:
    """Why a download by `keras.utils.get_file` failed, without the address its message repeats.

    Keras re-raises urllib's errors as "URL fetch failure on <origin>: <code or errno> -- <reason>".

    Returns:
        (the reason in a few words, whether a server answered: an HTTP error, not a missing network).
    """
    text = str(error)
    if " -- " not in text:
        return text, False
    head, reason = text.rsplit(" -- ", 1)
    code = head.rsplit(": ", 1)[-1]
    reason = re.sub(r"^\[Errno -?\d+\] ", "", reason.strip())
    if code.isdigit():
        return f"the server answered {code} ({reason})", True
    return reason, False


def _dataset_root(folder: Path) -> Path:
    """The folder holding train/ and validation/, at most two levels below `folder`."""
    children = sorted(path for path in folder.iterdir() if path.is_dir())
    grandchildren = [inner for path in children for inner in sorted(path.iterdir()) if inner.is_dir()]
    for candidate in [folder, *children, *grandchildren]:
        if (candidate / "train").is_dir() and (candidate / "validation").is_dir():
            return candidate
    raise DemoDataError(
        f"{folder}: the extracted archive has no train/ and validation/ folders; expected "
        "cats_and_dogs_filtered/train/ and cats_and_dogs_filtered/validation/."
    )


def download_cats_and_dogs(cache_dir: str | os.PathLike | None = None, origin: str = CATS_AND_DOGS_URL) -> Path:
    """Downloads (once) and safely extracts the cats vs dogs set of the TensorFlow tutorials.

    The zip goes through Keras' own cache (`keras.utils.get_file`, so a copy fetched by a tutorial
    is reused), then through `zips.extract_dataset`, never Python's `extractall`. Both steps are
    skipped when already done.

    Args:
        cache_dir: the Keras cache folder (default `$KERAS_HOME`, or `~/.keras`); the archive and
            its extraction go to its `datasets/` subfolder.
        origin: the URL of `cats_and_dogs_filtered.zip`.

    Returns:
        The folder holding `train/` and `validation/` (2,000 and 1,000 images of cats and dogs),
        ready for `tlcore.data.folders.scan`.

    Raises:
        DemoDataError: the download failed (no network access, server error), or the downloaded
            archive is unusable (it is then deleted, so the next call downloads it again).
    """
    import keras  # Imported here: it loads TensorFlow, which the offline demo does not need.

    if cache_dir is not None:
        cache_dir = Path(cache_dir).expanduser()
        # Keras silently falls back to /tmp/.keras when the folder is missing (not writable).
        cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        archive = Path(
            keras.utils.get_file(
                CATS_AND_DOGS_FILE,
                origin,
                cache_dir=None if cache_dir is None else os.fspath(cache_dir),
                cache_subdir="datasets",
            )
        )
    except Exception as error:  # Keras re-raises urllib's errors as a bare Exception.
        reason, answered = download_failure_reason(error)
        what_now = "Try again later." if answered else "It needs network access."
        raise DemoDataError(
            f"Could not download the cats vs dogs demo data set from {origin}: {reason}. {what_now} The offline "
            "demo data set needs no download (textures photographed in scikit-image: the Data page's \"Offline "
            'demo" button, or tlcore.data.demo.build_offline_demo(folder) in Python).',
            reason=reason,
            answered=answered,
        ) from None

    # Beside the archive, which is where Keras put it (it falls back to /tmp/.keras when the cache
    # folder is not writable).
    destination = archive.parent / CATS_AND_DOGS_FOLDER
    marker = destination / MARKER_FILE
    if not marker.is_file():
        if destination.exists():
            # Our own folder without its marker: an extraction interrupted before the marker.
            shutil.rmtree(destination)
        try:
            report = zips.extract_dataset(archive, destination)
        except zips.UnsafeArchiveError as error:
            archive.unlink(missing_ok=True)
            raise DemoDataError(
                f"The downloaded file {archive} cannot be used ({error.reason}). It was deleted; try "
                "again to download it anew."
            ) from None
        summary = {"origin": origin, "files": report.files_written}
        marker.write_text(json.dumps(summary), encoding="utf-8")
    return _dataset_root(destination)


def _offline_settings() -> dict:
    return {
        "version": OFFLINE_VERSION,
        "classes": sorted(OFFLINE_CLASSES),
        "images_per_class": OFFLINE_IMAGES_PER_CLASS,
        "image_size": OFFLINE_IMAGE_SIZE,
        "patch_sizes": list(OFFLINE_PATCH_SIZES),
        "seed": OFFLINE_SEED,
    }


def _is_built(folder: Path) -> bool:
    try:
        return json.loads((folder / MARKER_FILE).read_text(encoding="utf-8")) == _offline_settings()
    except (OSError, ValueError):
        return False


def _write_patches(photo: np.ndarray, folder: Path, rng: np.random.Generator) -> None:
    """Writes random square crops of one photograph, resized and randomly flipped, as JPEGs."""
    source = Image.fromarray(photo).convert("RGB")  # RGB like every other data set the app sees.
    width, height = source.size
    low, high = OFFLINE_PATCH_SIZES
    for index in range(OFFLINE_IMAGES_PER_CLASS):
        side = int(rng.integers(low, min(high, width, height) + 1))
        left = int(rng.integers(0, width - side + 1))
        top = int(rng.integers(0, height - side + 1))
        patch = source.crop((left, top, left + side, top + side))
        patch = patch.resize((OFFLINE_IMAGE_SIZE, OFFLINE_IMAGE_SIZE), Image.Resampling.LANCZOS)
        if rng.random() < 0.5:
            patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if rng.random() < 0.5:
            patch = patch.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        patch.save(folder / f"{folder.name}_{index:03d}.jpg", quality=90)


def build_offline_demo(destination: str | os.PathLike) -> Path:
    """Builds a small three-class data set (brick, grass, gravel) with no network access.

    Each class is cut from one photograph bundled with scikit-image: overlapping random square
    patches (seeded, so every build is identical), resized to 128 x 128 and randomly flipped,
    written as JPEGs in the flat layout `destination/<class>/`. Nothing is rebuilt when
    `destination` already holds this version of the set.

    Args:
        destination: the folder to build in; it must not exist, be empty, or hold an earlier
            offline demo (which is replaced).

    Returns:
        `destination` as an absolute path, ready for `tlcore.data.folders.scan`.

    Raises:
        ValueError: destination exists and holds something else.
    """
    destination = Path(destination).expanduser().resolve()
    if _is_built(destination):
        return destination
    if destination.exists() and (
        not destination.is_dir() or (any(destination.iterdir()) and not (destination / MARKER_FILE).is_file())
    ):
        raise ValueError(
            f"destination must be a new folder, an empty one or an earlier offline demo, received "
            f"{str(destination)!r}, which holds other files."
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the destination and rename at the end, so a half-built set is never seen.
    # Hidden (the scanner skips it), unique per call, with the usual permissions (mkdtemp: 0700).
    partial = destination.parent / f".{destination.name}.partial-{uuid.uuid4().hex[:12]}"
    with temporaries.being_written(partial) as temporary:
        temporary.mkdir()
        for index, (name, load) in enumerate(sorted(OFFLINE_CLASSES.items())):
            folder = temporary / name
            folder.mkdir()
            # One generator per class, seeded by (seed, class index): classes are independent.
            _write_patches(load(), folder, np.random.default_rng([OFFLINE_SEED, index]))
        (temporary / MARKER_FILE).write_text(json.dumps(_offline_settings()), encoding="utf-8")
        if destination.exists():
            shutil.rmtree(destination)  # Empty, or an earlier version of this demo.
        try:
            os.rename(temporary, destination)
        except OSError:
            # Another session built it at the same time; theirs is as good as ours, and ours goes.
            if not _is_built(destination):
                raise
            shutil.rmtree(temporary, ignore_errors=True)
    return destination
