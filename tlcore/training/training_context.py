"""What the stages of one run share: the data set, its decoded images, the run folder and the models so far."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from tlcore import framework_private, progress, temporaries
from tlcore.config import IMBALANCE_RATIO, TrainConfig
from tlcore.data import pipeline
from tlcore.data.dataset import DatasetScan
from tlcore.models import heads
from tlcore.training import distribute, feature_cache, multi_worker, resume
from tlcore.training.callbacks import RunRecorder, StopOnRequest

if TYPE_CHECKING:  # Only for the annotation: augmented imports this module.
    from tlcore.training.augmented import StagedModels

# Above this many bytes of decoded training images, stream from files instead of holding them.
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3
EXTRACTION_BATCH_SIZE = 32
# progress.json is a file write: extraction reports its count at most about once a second.
PROGRESS_INTERVAL_SECONDS = 1.0


# TensorBoard logs of a run: <run>/tensorboard/<stage>/{train,validation}/events.out.tfevents.*
TENSORBOARD_FOLDER = "tensorboard"


def tensorboard_installed() -> bool:
    """Whether the `tensorboard` package (an optional extra) is there: tf.summary needs it to write logs."""
    return importlib.util.find_spec("tensorboard") is not None


class StageStopped(Exception):
    """Raised between stages when the run was asked to stop."""


def class_weights_for(labels: np.ndarray, num_classes: int, mode: str) -> dict[int, float] | None:
    """Weights inversely proportional to class counts (mean weight 1), as scikit-learn's "balanced".

    Args:
        labels: the training labels.
        num_classes: the number of classes.
        mode: "auto" (only when the imbalance reaches `config.IMBALANCE_RATIO`), "balanced" or "none".

    Returns:
        A Keras `class_weight` dict, or None for unweighted training.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    if mode == "none" or counts.min() == 0:
        return None
    if mode == "auto" and counts.max() < IMBALANCE_RATIO * counts.min():
        return None
    return {index: float(counts.sum() / (num_classes * count)) for index, count in enumerate(counts)}


@dataclass
class TrainingContext:
    """What the stages of one run share: the data, the run folder and the models so far."""

    config: TrainConfig
    dataset: DatasetScan
    run: object = None
    stream: object = None
    runs_dir: str | None = None
    images: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    frozen_epochs: int = 0
    frozen_model: keras.Model | None = None
    frozen_base: keras.Model | None = None
    model: keras.Model | None = None
    # The head feature extraction trained, which frozen + augmentation continues (config.continue_head).
    feature_head: keras.Model | None = None
    staged: StagedModels | None = None
    temporary_directory: str | None = None
    replicas: int = 1
    # A finished stage whose final weights are loaded instead of training it again (on resume), if any.
    restoring: str | None = None
    # The model the latest `fit` trained: what a finished stage keeps for resuming.
    fitted: keras.Model | None = None
    # Where messages, bars and epoch lines go: plain lines on `stream` unless one is given.
    display: progress.Display | None = None
    # This process's task when several workers train the run together (`distribute.shared_task`); None alone.
    worker: distribute.WorkerTask | None = None
    # The generator states `fit` gave this worker's own random stream so far (a later stage may share them).
    separated_generators: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.display is None:
            self.display = progress.Display(self.stream)

    @property
    def batch_size(self) -> int:
        """The global batch size (all replicas together)."""
        return distribute.scaled(self.config, self.replicas)[0]

    def learning_rate(self, rate: float) -> float:
        """A configured learning rate, scaled for the replica count."""
        return rate * distribute.scaled(self.config, self.replicas)[1]

    def compile(self, model: keras.Model, rate: float) -> None:
        """Compiles a model to train at a configured learning rate (scaled for the replicas), with
        the run's optimizer, its loss for the number of classes and XLA when the run asks for it."""
        heads.compile_model(
            model, self.dataset.num_classes, self.config.optimizer, self.learning_rate(rate), self.config.jit_compile
        )

    def callbacks(self, stage: str, epochs: int) -> list:
        items = []
        # Fine-tuning continues the frozen model, so its curves continue that model's epoch count;
        # every other stage trains a new model from epoch 1.
        offset = self.frozen_epochs if stage == "fine_tuning" else 0
        if self.run is not None:
            items += [RunRecorder(self.run, stage, offset, epochs), StopOnRequest(self.run)]
        shown = self.display.epoch_callback(stage, epochs, offset)
        if shown is not None:
            items.append(shown)
        if self.run is not None and tensorboard_installed():
            # Scalars per epoch only: no graph, no profile, nothing per batch (small logs, no slowdown).
            items.append(
                keras.callbacks.TensorBoard(
                    log_dir=str(self.run.path / TENSORBOARD_FOLDER / stage),
                    write_graph=False,
                    profile_batch=0,
                    update_freq="epoch",
                )
            )
        if self.run is not None:
            # After RunRecorder: see StageBackup.
            items.append(resume.StageBackup(self.run, stage))
        if self.config.keeps_best_weights:
            # Keras restores the best epoch's weights when fit ends; a patience past the last epoch never stops.
            patience = self.config.early_stopping_patience or epochs + 1
            items.append(
                keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
            )
        if self.config.distribution == "multi_worker":
            # Last: it makes any other callback's stop every worker's.
            items.append(multi_worker.StopTogether(self.run))
        return items

    def fit(self, model: keras.Model, stage: str, data, epochs: int, extra_callbacks=(), **options):
        """`model.fit` for one stage, continuing from the stage's backup when the run has one.

        When `restoring` names the stage, it finished before the run was resumed: its final weights are
        loaded instead, and the History returned is empty.

        Args:
            model: the compiled model.
            stage: the stage it trains.
            data: the training batches.
            epochs: the stage's epochs.
            extra_callbacks: callbacks after the run's own (the batches' `follow`).
            **options: more `fit` arguments (validation_data, shuffle).

        Returns:
            The History, with the epochs trained before a resume put back in front of the new ones.
        """
        self.fitted = model
        if stage == self.restoring:
            resume.restore_stage(self.run, stage, model)
            history = keras.callbacks.History()
            history.set_model(model)
            return history
        if self.worker is not None:
            # Every worker seeded Keras alike: without this, each worker's rows of a global batch would get
            # the same dropout masks (and augmentation) as the chief's rows.
            self.separated_generators += multi_worker.separate_random_streams(
                model, self.worker.rank, self.separated_generators
            )
        callbacks = self.callbacks(stage, epochs) + list(extra_callbacks)
        # A model an earlier stage resumed keeps that stage's restored epoch; this stage counts from its
        # own start (or from its own backup, which StageBackup loads when the fit begins).
        framework_private.forget_restored_epoch(model)
        history = model.fit(
            data, epochs=epochs, verbose=0, class_weight=self.class_weights(), callbacks=callbacks, **options
        )
        backup = next((item for item in callbacks if isinstance(item, resume.StageBackup)), None)
        if backup is not None and backup.restored_epochs:
            for key, values in resume.earlier_epochs(self.run, stage, backup.restored_epochs).items():
                history.history[key] = values + list(history.history.get(key, []))
        return history

    def class_weights(self) -> dict[int, float] | None:
        """Keras `class_weight` for the training split, or None when classes are not weighted."""
        return class_weights_for(self.dataset.labels("train"), self.dataset.num_classes, self.config.class_weight)

    def stop_requested(self) -> bool:
        """Whether this process's run was asked to stop (see `any_worker_stops` when several workers train it)."""
        return self.run is not None and self.run.stop_requested()

    def any_worker_stops(self) -> bool:
        """Whether the run was asked to stop: on this worker, or on any worker when several train it together.

        A stop request (the Stop button, `tlcore stop`, Ctrl+C) reaches one worker's run only. With
        several workers this is one collective all-reduce, so every worker must ask at the same point
        (after the same batch of the same loop); when any was asked, each marks its own run, so that
        all of them end the stage alike. Inside `fit`, `multi_worker.StopTogether` does the same.
        """
        wanted = self.stop_requested()
        # The run's strategy: every stage runs inside its scope.
        if self.worker is None or not multi_worker.any_worker(wanted, tf.distribute.get_strategy()):
            return wanted
        if self.run is not None and not wanted:
            self.run.request_stop()
        return True

    def every_worker(self, condition: bool) -> bool:
        """Whether a condition holds on every worker training the run (on this process, when it trains alone).

        With several workers this is one collective all-reduce, at the same point on every worker.
        """
        if self.worker is None:
            return condition
        return not multi_worker.any_worker(not condition, tf.distribute.get_strategy())

    def feature_directory(self) -> Path:
        """The feature cache of the runs folder, or a temporary folder removed by `close`."""
        if self.runs_dir is not None:
            return feature_cache.cache_dir(self.runs_dir)
        if self.temporary_directory is None:
            self.temporary_directory = temporaries.register(tempfile.mkdtemp(prefix="tlcore-features-"))
        return Path(self.temporary_directory)

    def close(self) -> None:
        if self.temporary_directory is not None:
            shutil.rmtree(self.temporary_directory, ignore_errors=True)
            temporaries.release(self.temporary_directory)
            self.temporary_directory = None

    def image_batches(self, split: str):
        """float32 image batches of a split, in order: from memory, or decoded from the files as they go.

        Args:
            split: "train" or "validation".
        """
        fits = len(self.dataset.paths(split)) * self.config.image_size**2 * 3 <= IN_MEMORY_LIMIT_BYTES
        # Decoded once into memory when it fits, for the passes to come; else streamed from the files.
        if split in self.images or fits:
            decoded = self.decoded(split)
            for start in range(0, len(decoded), EXTRACTION_BATCH_SIZE):
                yield decoded[start : start + EXTRACTION_BATCH_SIZE].astype("float32")
            return
        for batch in pipeline.decoded_batches(self.dataset.paths(split), self.config.image_size, EXTRACTION_BATCH_SIZE):
            yield batch.astype("float32")

    def say(self, message: str) -> None:
        self.display.print(message)

    def task(self, description: str, total: int | None) -> progress.Task:
        """A bar of `total` things done (images extracted, cached) on the display."""
        return self.display.task(description, total)

    def targets(self, split: str) -> np.ndarray:
        return pipeline.encode_labels(self.dataset.labels(split), self.dataset.num_classes)

    def decoded(self, split: str) -> np.ndarray:
        """Training images of a split decoded once into memory (uint8)."""
        if split not in self.images:
            self.images[split] = pipeline.load_images(self.dataset.paths(split), self.config.image_size)
        return self.images[split]

    def image_pipeline(self, split: str, shuffle: bool):
        """(images, targets) batches for end-to-end training; decoded once when they fit in memory."""
        config = self.config
        paths = self.dataset.paths(split)
        size_bytes = len(paths) * config.image_size**2 * 3
        if size_bytes > IN_MEMORY_LIMIT_BYTES:
            return pipeline.make_dataset(
                paths,
                self.dataset.labels(split),
                self.dataset.num_classes,
                config.image_size,
                self.batch_size,
                shuffle=shuffle,
                seed=config.seed,
            )
        batches = tf.data.Dataset.from_tensor_slices((self.decoded(split), self.targets(split)))
        if shuffle:
            batches = batches.shuffle(len(paths), seed=config.seed, reshuffle_each_iteration=True)
        batches = batches.batch(self.batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
        return batches.prefetch(pipeline.PREFETCH_BATCHES).with_options(pipeline.without_autotuner())


def history_result(
    history: keras.callbacks.History, seconds: float, stopped: bool, restored_best: bool = False
) -> dict:
    """A stage's results from its Keras history.

    When the best weights (lowest validation loss) were restored, by early stopping or
    `keep_weights="best"`, the final model's metrics are that epoch's, not the last one's, and
    `kept_weights` says which. An epoch cut short by a stop request (RunRecorder marks the
    history) is not counted among the stage's epochs.
    """
    partial = bool(getattr(history, "partial_epoch", False))
    values = history.history
    validation = values.get("val_accuracy") or []
    losses = values.get("val_loss") or []
    final = int(np.argmin(losses)) if restored_best and losses else len(validation) - 1
    return {
        "val_accuracy": float(validation[final]) if validation else None,
        "val_loss": float(losses[final]) if losses else None,
        "best_val_accuracy": float(max(validation)) if validation else None,
        "accuracy": float(values["accuracy"][final]) if values.get("accuracy") else None,
        "epochs": len(validation) - partial if validation else 0,
        "partial_epoch": partial,
        "final_epoch": final + 1 if validation else None,
        "kept_weights": "best" if restored_best and losses else "last",
        "seconds": seconds,
        "stopped": stopped,
        # Whether Keras really compiled this stage's training step with XLA (see compile_model).
        "jit_compile": bool(getattr(history.model, "jit_compile", False)),
    }
