"""Small training runs: the settings the tests train with, and one function that trains a run to the end."""

from __future__ import annotations

from pathlib import Path

from tlcore.config import TrainConfig
from tlcore.runs import store, worker

# The cheapest real run: VGG16 without pretrained weights at 32 px, one epoch of feature extraction.
TINY_SETTINGS = {
    "strategy": "feature_extraction",
    "backbone": "vgg16",
    "weights": "none",
    "image_size": 32,
    "epochs": 1,
    "fine_tuning_epochs": 1,
    "batch_size": 4,
    "head": "flatten",
    "learning_rate": 1e-4,
}

# A run that learns something in seconds: EfficientNet-Lite0 with its bundled ImageNet weights, feature extraction.
LITE0_SETTINGS = {
    "strategy": "feature_extraction",
    "backbone": "efficientnet_lite0",
    "weights": "imagenet",
    "image_size": 96,
    "epochs": 3,
    "fine_tuning_epochs": 1,
    "batch_size": 8,
    "head": "global_average",
    "learning_rate": 1e-3,
}


def train_config(data_dir: Path, preset: dict = TINY_SETTINGS, **settings) -> TrainConfig:
    """A TrainConfig for `data_dir`: the preset's settings, then `settings` over them."""
    return TrainConfig(**{**preset, **settings, "data_dir": str(data_dir)})


def finished_run(config: TrainConfig, runs_dir: Path) -> store.Run:
    """Creates a run of `config` in `runs_dir` and trains it in this process; fails the test unless it ends done."""
    run = store.create(config, runs_dir)
    status = worker.execute(run, runs_dir=runs_dir)
    assert status["state"] == "done", status.get("error", status)
    return run


def trained_run(runs_dir: Path, data_dir: Path, preset: dict = TINY_SETTINGS, **settings) -> store.Run:
    """A finished run on `data_dir` in `runs_dir`, trained with the preset's settings and `settings` over them."""
    return finished_run(train_config(data_dir, preset, **settings), runs_dir)
