"""tf.distribute: the same small job on 1 and on 2 replicas (the CPU split into 2 logical devices)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import cli
from tests.helpers.cli import options
from tlcore.config import TrainConfig
from tlcore.training import distribute


@pytest.fixture(scope="module")
def photos(catsdogs_subset) -> Path:
    return catsdogs_subset("distribute", train=40, validation=20)


def train(photos: Path, runs_dir: Path, *flags: str) -> dict:
    # A new process each: the CPU can only be split before TensorFlow starts.
    settings = options(strategy="all", image_size=96, epochs=8, fine_tuning_epochs=2, batch_size=8, augmented_views=2)
    completed = cli.tlcore("train", "--data", str(photos), *settings, *options(runs_dir=runs_dir, json=True), *flags)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return cli.last_json(completed)


def test_one_and_two_replicas_reach_the_same_accuracy(photos, tmp_path):
    # Both under MirroredStrategy, so the variables are created (and initialised) the same way.
    single = train(
        photos, tmp_path / "one", "--distribution", "mirrored", "--cpu-replicas", "1", "--replica-scaling", "none"
    )
    mirrored = train(
        photos, tmp_path / "two", "--distribution", "mirrored", "--cpu-replicas", "2", "--replica-scaling", "none"
    )
    assert single["replicas"] == 1 and mirrored["replicas"] == 2
    assert single["global_batch_size"] == mirrored["global_batch_size"] == 8
    for stage in ("feature_extraction", "frozen_augmented", "fine_tuning"):
        # Same global batch and learning rate: the same training, but for floating-point order
        # and each replica's own dropout draws. 0.05 is 2 of the 40 validation photos.
        assert mirrored["results"][stage]["val_accuracy"] > 0.75
        assert abs(single["results"][stage]["val_accuracy"] - mirrored["results"][stage]["val_accuracy"]) <= 0.05
    summary = json.loads((Path(mirrored["run"]) / "summary.json").read_text())
    assert summary["replicas"] == 2


def test_linear_scaling_multiplies_batch_and_learning_rate():
    config = TrainConfig(data_dir="x", batch_size=16)
    assert distribute.scaled(config, 4) == (64, 4.0)
    assert distribute.scaled(TrainConfig(data_dir="x", batch_size=16, replica_scaling="none"), 4) == (16, 1.0)
    with pytest.raises(ValueError, match="distribution must be one of"):
        TrainConfig(data_dir="x", distribution="horovod")
