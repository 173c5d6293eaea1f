"""Mixed precision and XLA: the options train real models, record what ran, and change nothing else."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from tests.helpers import cli
from tests.helpers.cli import options
from tests.helpers.runs import LITE0_SETTINGS, finished_run, train_config
from tlcore.config import TrainConfig
from tlcore.models import heads
from tlcore.runs import store
from tlcore.serving import predict
from tlcore.training import feature_cache


@pytest.fixture(scope="module")
def photos(catsdogs_subset) -> Path:
    """12 train + 8 validation real photos per class."""
    return catsdogs_subset("precision", train=12, validation=8)


def lite0_config(data_dir: Path, **settings) -> TrainConfig:
    """EfficientNet-Lite0 with its bundled ImageNet weights, small images, a few epochs."""
    return train_config(data_dir, LITE0_SETTINGS, **{"image_size": 128, "epochs": 20, "augmented_views": 2, **settings})


def every_layer(layer):
    """A layer and, depth first, every layer nested in it."""
    yield layer
    for inner in getattr(layer, "layers", []):
        yield from every_layer(inner)


def test_bad_precision_and_jit_values_are_refused_with_what_was_received(photos):
    with pytest.raises(ValueError, match="precision must be one of .*'float64'"):
        lite0_config(photos, precision="float64")
    with pytest.raises(ValueError, match="jit_compile must be True or False, received 'yes'"):
        lite0_config(photos, jit_compile="yes")
    assert TrainConfig.from_dict({"data_dir": "x"}).precision == "float32"  # Runs saved before the option.


def test_xla_support_is_read_from_every_nested_layer():
    inputs = keras.Input((32, 32, 3))
    augmentation = keras.Sequential([keras.layers.RandomFlip(), keras.layers.RandomZoom(0.2)], name="augmentation")
    head = keras.Sequential([keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1)], name="head")
    assert heads.supports_xla(keras.Model(inputs, head(inputs)))
    assert not heads.supports_xla(keras.Model(inputs, head(augmentation(inputs))))  # RandomZoom: no XLA.


def test_mixed_bfloat16_with_xla_trains_as_well_as_float32_and_saves_a_float32_model(photos, tmp_path):
    reference = finished_run(lite0_config(photos), tmp_path / "float32")
    fast = finished_run(lite0_config(photos, precision="mixed_bfloat16", jit_compile=True), tmp_path / "mixed")
    assert keras.config.dtype_policy().name == "float32"  # The run's policy does not leak out of it.

    reference_result = reference.summary()["results"]["feature_extraction"]
    fast_result = fast.summary()["results"]["feature_extraction"]
    assert fast.summary()["precision"] == "mixed_bfloat16" and fast.summary()["jit_compile"] is True
    assert fast_result["jit_compile"] is True and reference_result["jit_compile"] is False
    # ImageNet features separate cats from dogs in either precision.
    assert reference_result["val_accuracy"] >= 0.7
    assert fast_result["val_accuracy"] >= 0.7
    assert abs(fast_result["val_accuracy"] - reference_result["val_accuracy"]) <= 0.125

    # Each precision has its own cache entry, and bfloat16 features stay close to float32 ones.
    cached = {}
    for name in ("float32", "mixed"):
        entries = sorted(feature_cache.cache_dir(tmp_path / name).glob("*/train.npy"))
        assert len(entries) == 1
        cached[name] = feature_cache.FeatureFile(entries[0]).read()
    assert cached["float32"].shape == cached["mixed"].shape
    error = np.abs(cached["mixed"] - cached["float32"]).mean() / np.abs(cached["float32"]).mean()
    assert 0 < error < 0.05

    # The saved model computes in bfloat16 and outputs float32 probabilities (a bfloat16 softmax loses
    # the small ones), which agree with the float32 run's labels.
    predictors = {"float32": predict.load(reference), "mixed": predict.load(fast)}
    mixed_model = predictors["mixed"].model
    assert mixed_model.get_layer("head").get_layer("output").dtype_policy.name == "float32"
    assert mixed_model.output.dtype == "float32"
    assert "bfloat16" in {layer.dtype_policy.compute_dtype for layer in every_layer(mixed_model) if layer.weights}
    photo_paths = sorted(str(path) for path in (photos / "validation").glob("*/*.jpg"))
    assert len(photo_paths) == 16
    outputs = {}
    for name, predictor in predictors.items():
        results = predict.predict_sources(predictor, photo_paths, top=1)
        outputs[name] = [result["top"][0]["label"] for result in results]
    agreement = np.mean([a == b for a, b in zip(outputs["float32"], outputs["mixed"], strict=True)])
    assert agreement >= 0.85


def test_xla_is_skipped_for_models_that_augment_inside_and_used_on_cached_views(photos, tmp_path):
    cached = finished_run(
        lite0_config(photos, strategy="frozen_augmented", epochs=10, jit_compile=True, precision="mixed_float16"),
        tmp_path / "cached",
    )
    naive = finished_run(
        lite0_config(photos, strategy="frozen_augmented", epochs=10, jit_compile=True, augmented_views=0),
        tmp_path / "naive",
    )
    # Cached views train the head's tail (Dense, Dropout, output): XLA. End to end the model holds
    # RandomZoom and RandomTranslation, which XLA cannot compile: trained without, not refused.
    assert cached.summary()["results"]["frozen_augmented"]["jit_compile"] is True
    assert naive.summary()["results"]["frozen_augmented"]["jit_compile"] is False
    for run in (cached, naive):
        # 10 epochs of one step each learn: 0.69-0.94 over seeds 1337 and 1-4 (8 + 8 validation photos; one
        # class for all scores 0.5).
        assert run.summary()["results"]["frozen_augmented"]["val_accuracy"] >= 0.625
        predict.load(run)  # Saved and loaded back with safe_mode.


def test_the_cli_flags_reach_the_run_and_its_summary(photos, tmp_path):
    settings = options(strategy="feature_extraction", image_size=96, epochs=2, batch_size=8)
    settings += options(precision="mixed_bfloat16", xla=True, runs_dir=tmp_path, json=True)
    completed = cli.tlcore("train", "--data", str(photos), *settings)
    assert completed.returncode == 0, completed.stderr[-3000:]
    run = store.resolve(cli.last_json(completed)["run"], tmp_path)
    assert run.config()["precision"] == "mixed_bfloat16" and run.config()["jit_compile"] is True
    assert run.summary()["results"]["feature_extraction"]["jit_compile"] is True
    assert "Precision mixed_bfloat16, XLA on" in completed.stderr

    help_text = cli.tlcore("train", "--help").stdout
    assert "--precision {float32,mixed_float16,mixed_bfloat16}" in help_text and "--xla" in help_text
