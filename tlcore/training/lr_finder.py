"""A learning-rate finder for the head (Smith 2015, as fastai's `lr_find`).

The head is trained on cached features for one short sweep while the learning rate grows
exponentially from `start` to `end`; the loss against the rate shows where training is fast and
where it diverges. The suggestion is the rate of steepest descent of the smoothed loss.

It sets global seeds and fills the feature cache: call it in a process of its own, as
`tlcore.runs.finder_jobs` does (the app and the CLI go through that job).
"""

from __future__ import annotations

import keras
import numpy as np

from tlcore.config import TrainConfig
from tlcore.data import folders
from tlcore.data.dataset import DatasetScan
from tlcore.models import backbones, heads
from tlcore.training import extraction, training_context
from tlcore.training.learning_rate_sweep import LearningRateSweep


class _ExponentialSweep(keras.callbacks.Callback):
    def __init__(self, start: float, end: float, steps: int, smoothing: float = 0.9):
        super().__init__()
        self.rates = np.geomspace(start, end, steps)
        self.smoothing = smoothing
        self.step = 0
        self.average = 0.0
        self.best = np.inf
        self.recorded_rates, self.recorded_losses = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(float(self.rates[min(self.step, len(self.rates) - 1)]))

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", np.nan))
        # Keras reports the epoch's running mean; the sweep runs as one epoch, so recover the
        # batch's own loss from the running mean.
        batch_loss = loss * (batch + 1) - getattr(self, "_previous_sum", 0.0)
        self._previous_sum = loss * (batch + 1)
        self.average = self.smoothing * self.average + (1 - self.smoothing) * batch_loss
        smoothed = self.average / (1 - self.smoothing ** (self.step + 1))
        self.recorded_rates.append(float(self.rates[min(self.step, len(self.rates) - 1)]))
        self.recorded_losses.append(smoothed)
        self.best = min(self.best, smoothed)
        self.step += 1
        # Stop once the loss has clearly diverged, or at the end of the sweep.
        if self.step >= len(self.rates) or not np.isfinite(smoothed) or smoothed > 4 * self.best:
            self.model.stop_training = True


def suggest(learning_rates, losses) -> float:
    """The rate where the smoothed loss falls fastest (per log-rate), ignoring both ends.

    The first tenth of the sweep is skipped: the exponential smoothing has not settled there yet
    and its noise would win (fastai skips the start too); the diverged tail after the lowest loss
    is cut off.
    """
    rates = np.asarray(learning_rates, dtype="float64")
    values = np.asarray(losses, dtype="float64")
    if len(rates) < 3:
        raise ValueError(f"A suggestion needs at least 3 points, received {len(rates)}.")
    skip = len(rates) // 10
    end = int(np.argmin(values)) + 1
    if end - skip < 3:
        return float(rates[max(0, end - 1) // 2])
    slopes = np.gradient(values[skip:end], np.log10(rates[skip:end]))
    return float(rates[skip + int(np.argmin(slopes))])


def find_learning_rate(
    config: TrainConfig,
    runs_dir=None,
    start: float = 1e-6,
    end: float = 1.0,
    steps: int = 100,
    dataset: DatasetScan | None = None,
) -> LearningRateSweep:
    """Sweeps the head's learning rate on the data set's (cached) features.

    Args:
        config: backbone, image size, head and optimizer come from it.
        runs_dir: the runs folder whose feature cache is used (and filled).
        start: the first learning rate.
        end: the last learning rate.
        steps: how many training steps the sweep takes.
        dataset: an already scanned data set (scanned from `config.data_dir` when None).

    Returns:
        A LearningRateSweep.
    """
    if not 0 < start < end:
        raise ValueError(f"Expected 0 < start < end, received start={start!r}, end={end!r}.")
    if not isinstance(steps, int) or steps < 10:
        raise ValueError(f"steps must be an integer >= 10, received {steps!r}.")
    keras.utils.set_random_seed(config.seed)
    if dataset is None:
        dataset = folders.scan(config.data_dir, config.validation_fraction, config.split_seed)
    context = training_context.TrainingContext(
        config=config, dataset=dataset, runs_dir=str(runs_dir) if runs_dir is not None else None
    )
    base = heads.build_frozen_base(config)
    try:
        feature_maps, _, _ = extraction.extract_features(context, base, backbones.preprocessing_layer(config.backbone))
        features, targets = feature_maps["train"].read(), context.targets("train")
    finally:
        context.close()
    head = heads.build_head(features.shape[1:], dataset.num_classes, config)
    heads.compile_model(head, dataset.num_classes, config.optimizer, start)
    # Enough repeats of the training set for `steps` batches, in one epoch.
    repeats = -(-steps * config.batch_size // len(features))
    order = np.random.default_rng(config.seed).permutation(np.tile(np.arange(len(features)), repeats))
    sweep = _ExponentialSweep(start, end, steps)
    head.fit(
        features[order],
        targets[order],
        batch_size=config.batch_size,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[sweep],
    )
    return LearningRateSweep(
        tuple(sweep.recorded_rates), tuple(sweep.recorded_losses), suggest(sweep.recorded_rates, sweep.recorded_losses)
    )
