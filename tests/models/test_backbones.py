"""The backbone registry and the bases built from it: weights status, cache-first loading, preprocessing, top blocks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.helpers.paths import PROJECT_ROOT, shared_path
from tlcore.config import TrainConfig
from tlcore.models import backbones, heads, registry
from tlcore.models.layers import Preprocess

MOBILENET_WEIGHTS = ("weights", "mobilenet_2_5_224_tf_no_top.h5")

# Run in a fresh interpreter whose sockets refuse to connect: proves "no network" and lets
# KERAS_HOME take effect (Keras reads it once, when it is imported).
OFFLINE_PRELUDE = """
import socket
def refuse(*arguments, **keyword_arguments):
    raise OSError("network disabled in this test")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
"""


def run_offline(code: str, keras_home: Path) -> dict:
    environment = dict(os.environ, KERAS_HOME=str(keras_home), TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(PROJECT_ROOT))
    completed = subprocess.run(
        [sys.executable, "-c", OFFLINE_PRELUDE + code],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        cwd=PROJECT_ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_registry_has_the_documented_keys():
    expected = {"vgg16", "vgg19", "resnet50", "inception_v3", "mobilenet", "mobilenet_v2"}
    expected |= {f"efficientnet_lite{index}" for index in range(3)}
    expected |= {f"efficientnet_b{index}" for index in range(7)}
    assert set(registry.BACKBONES) == expected
    assert registry.BACKBONES["vgg16"].default_size == 150
    with pytest.raises(ValueError, match="Unknown backbone 'vgg17'"):
        registry.get_backbone("vgg17")


def test_weights_file_names_match_keras_applications():
    assert registry.weights_file_name("vgg16") == "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert registry.weights_file_name("mobilenet", 224, 0.25) == "mobilenet_2_5_224_tf_no_top.h5"
    assert registry.weights_file_name("mobilenet", 150, 1.0) == "mobilenet_1_0_224_tf_no_top.h5"
    assert registry.weights_file_name("mobilenet_v2", 160, 1.0) == (
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5"
    )
    assert registry.weights_file_name("efficientnet_b3") == "efficientnetb3_notop.h5"
    assert registry.weights_file_name("efficientnet_lite0") is None


def test_lite0_weights_are_bundled_and_others_need_a_download(tmp_path):
    code = """
import json
from tlcore.models import registry
print(json.dumps({name: registry.weights_status(name, 224).__dict__ for name in registry.BACKBONES}))
"""
    statuses = run_offline(code, tmp_path)
    assert statuses["efficientnet_lite0"]["available"] is True
    assert statuses["efficientnet_lite0"]["source"] == "bundled"
    assert statuses["efficientnet_lite1"]["available"] is True, "the quality preset's backbone is installed too"
    for name, status in statuses.items():
        if name.startswith("efficientnet_lite"):
            # Lite1 and Lite2 ship in packages of their own: bundled when installed, never a download.
            assert status["source"] == "bundled", name
        else:
            assert status["available"] is False, name
            assert status["source"] == "download"
            assert status["location"].startswith(str(tmp_path / "models"))


def test_the_mobilenets_imagenet_alphas_are_those_keras_accepts(tmp_path):
    # Keras checks alpha before it looks for the weights: a refused alpha raises about alpha, an
    # accepted one gets as far as the (refused) download.
    code = """
import json
import keras
accepted = {}
for name, builder in (("mobilenet", keras.applications.MobileNet), ("mobilenet_v2", keras.applications.MobileNetV2)):
    accepted[name] = []
    for alpha in (0.25, 0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
        try:
            builder(input_shape=(128, 128, 3), alpha=alpha, include_top=False, weights="imagenet")
        except ValueError as error:
            if "alpha" not in str(error):
                raise
        except Exception:
            accepted[name].append(alpha)
print(json.dumps(accepted))
"""
    accepted = run_offline(code, tmp_path)
    for name in ("mobilenet", "mobilenet_v2"):
        assert tuple(accepted[name]) == registry.BACKBONES[name].weights_alphas, name
    assert not any(
        backbone.supports_alpha
        for name, backbone in registry.BACKBONES.items()
        if name not in ("mobilenet", "mobilenet_v2")
    )


def test_configs_refuse_an_alpha_without_imagenet_weights():
    from tlcore.config import TrainConfig

    with pytest.raises(
        ValueError, match=r"MobileNetV2 exist for alpha 0.35, 0.5, 0.75, 1, 1.3, 1.4, received alpha=0.25"
    ):
        TrainConfig(data_dir="photos", backbone="mobilenet_v2", alpha=0.25, weights="imagenet")
    with pytest.raises(ValueError, match=r"MobileNet exist for alpha 0.25, 0.5, 0.75, 1, received alpha=1.4"):
        TrainConfig(data_dir="photos", backbone="mobilenet", alpha=1.4, weights="imagenet")
    assert TrainConfig(data_dir="photos", backbone="mobilenet_v2", alpha=0.25, weights="none").alpha == 0.25
    assert TrainConfig(data_dir="photos", backbone="mobilenet_v2", alpha=1.4, weights="imagenet").alpha == 1.4
    with pytest.raises(ValueError, match="alpha applies to MobileNet and MobileNetV2 only"):
        TrainConfig(data_dir="photos", backbone="vgg16", alpha=0.5)


def test_mobilenet_imagenet_weights_load_from_a_seeded_keras_home_without_network(tmp_path):
    weights = shared_path(*MOBILENET_WEIGHTS)
    (tmp_path / "models").mkdir()
    shutil.copy(weights, tmp_path / "models" / weights.name)
    code = """
import json
import numpy as np
from tlcore.models import backbones, registry
status = registry.weights_status("mobilenet", 224, alpha=0.25)
base = backbones.build_base("mobilenet", 224, weights="imagenet", alpha=0.25)
kernel = base.get_layer("conv1").get_weights()[0]
variants = {name: registry.offline_variants(name) for name in ("mobilenet", "mobilenet_v2", "vgg16")}
print(json.dumps({"status": status.__dict__, "output": list(base.output.shape[1:]), "variants": variants,
                  "kernel_sum": float(np.sum(kernel)), "kernel_shape": list(kernel.shape)}))
"""
    result = run_offline(code, tmp_path)
    assert result["status"]["available"] is True and result["status"]["source"] == "cache"
    assert result["output"] == [7, 7, 256]
    # The one file cached is the one variant offline (the default, alpha 1.0 at 224 px, is not).
    assert result["variants"] == {"mobilenet": [[0.25, 224]], "mobilenet_v2": [], "vgg16": []}
    import h5py

    # The loaded kernel is the file's kernel, not a random initialisation.
    with h5py.File(weights, "r") as weights_file:
        names = []
        weights_file.visit(names.append)
        kernel_name = next(name for name in names if name.startswith("conv1/") and "kernel" in name)
        expected = np.asarray(weights_file[kernel_name])
    assert result["kernel_shape"] == list(expected.shape)
    assert result["kernel_sum"] == pytest.approx(float(expected.sum()), rel=1e-6)


def test_missing_weights_offline_give_a_clear_error(tmp_path):
    code = """
import json
from tlcore.models import backbones
try:
    backbones.build_base("vgg16", 64, weights="imagenet")
    print(json.dumps({"error": None}))
except backbones.WeightsUnavailableError as error:
    print(json.dumps({"error": str(error)}))
"""
    message = run_offline(code, tmp_path)["error"]
    assert message is not None
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message


def test_preprocessing_matches_keras_applications():
    pixels = np.random.default_rng(0).uniform(0, 255, size=(2, 8, 8, 3)).astype("float32")
    caffe = keras.ops.convert_to_numpy(Preprocess("caffe")(pixels))
    np.testing.assert_allclose(caffe, keras.applications.vgg16.preprocess_input(pixels.copy()), atol=1e-4)
    inception = keras.ops.convert_to_numpy(Preprocess("tf")(pixels))
    np.testing.assert_allclose(inception, keras.applications.mobilenet.preprocess_input(pixels.copy()), atol=1e-5)
    with pytest.raises(ValueError, match="Unknown preprocessing mode"):
        Preprocess("bgr")


@pytest.mark.parametrize("name", sorted(registry.BACKBONES))
def test_every_backbone_builds_and_splits_at_its_top_block(name):
    size = max(registry.BACKBONES[name].min_size, 75)
    base = backbones.build_base(name, size, weights=None)
    base.trainable = False
    bottom, top = heads.split_base(base, name)
    pixels = np.random.default_rng(1).uniform(-1, 1, size=(1, size, size, 3)).astype("float32")
    # The split is exact: the top block applied to the bottom's output is the whole base.
    np.testing.assert_allclose(top(bottom(pixels)), base(pixels), atol=1e-5)
    unfrozen = heads.unfreeze_top_block(base, name)
    assert unfrozen, name
    trainable_layers = {layer.name for layer in base.layers if layer.trainable and layer.weights}
    assert trainable_layers == set(unfrozen)
    # The top block is a small part of the network.
    assert len(base.trainable_weights) < len(base.weights) / 2


@pytest.mark.parametrize("name", sorted(key for key, entry in registry.BACKBONES.items() if entry.stage_prefixes))
def test_stacked_bases_hold_each_stage_and_split_exactly(name):
    size = 96
    plain = backbones.build_base(name, size, weights=None)
    pixels = np.random.default_rng(2).uniform(0, 1, size=(2, size, size, 3)).astype("float32")
    block7_input = heads.top_block_input(plain, name)
    stage5 = plain.get_layer([layer.name for layer in plain.layers if layer.name.startswith("block5")][-1]).output
    stage_outputs = keras.Model(plain.input, [stage5, block7_input, plain.output])(pixels)
    for levels in (2, 3):
        base = heads.stack_stages(plain, name, levels)
        stacked = np.asarray(base(pixels))
        # The base's own output comes last, the stage before it (the top block's input) just before.
        channels = [stage_outputs[2].shape[-1], stage_outputs[1].shape[-1]]
        np.testing.assert_allclose(stacked[..., -channels[0] :], stage_outputs[2], atol=1e-5)
        np.testing.assert_allclose(stacked[..., -sum(channels) : -channels[0]], stage_outputs[1], atol=1e-5)
        if levels == 3:
            # Stage 5 at twice the resolution, average-pooled 2 x 2 onto the base's grid.
            pooled = np.asarray(keras.layers.AveragePooling2D(2, padding="same")(stage_outputs[0]))
            np.testing.assert_allclose(stacked[..., : -sum(channels)], pooled, atol=1e-5)
        assert stacked.shape[-1] == sum(channels) + (stage_outputs[0].shape[-1] if levels == 3 else 0)
        bottom, top = heads.split_base(base, name)
        np.testing.assert_allclose(top(bottom(pixels)), stacked, atol=1e-5)
        # Stacking adds no weights: fine-tuning unfreezes the same layers as on the plain base.
        assert len(base.weights) == len(plain.weights)
        assert heads.unfreeze_top_block(base, name) == heads.unfreeze_top_block(plain, name)


def test_stacking_refuses_levels_its_backbone_has_not():
    base = backbones.build_base("efficientnet_lite0", 96, weights=None)
    with pytest.raises(ValueError, match="levels must be from 2 to 3 for EfficientNet-Lite0, received 4"):
        heads.stack_stages(base, "efficientnet_lite0", 4)
    vgg = backbones.build_base("vgg16", 64, weights=None)
    with pytest.raises(ValueError, match="levels must be from 2 to 1 for VGG16"):
        heads.stack_stages(vgg, "vgg16", 2)


def test_feature_levels_fall_back_to_what_the_backbone_has():
    assert TrainConfig(data_dir="photos").stacked_levels == 1
    assert TrainConfig(data_dir="photos", feature_levels=3).stacked_levels == 3
    assert TrainConfig(data_dir="photos", feature_levels=3, backbone="vgg16", image_size=150).stacked_levels == 1
    assert TrainConfig(data_dir="photos", feature_levels=2).stacked_levels == 2
    assert TrainConfig.from_dict({"data_dir": "photos"}).feature_levels == 1  # A run from before the setting.
    with pytest.raises(ValueError, match="feature_levels"):
        TrainConfig(data_dir="photos", feature_levels=0)
