"""Continuing a run where it ended: each stage backed up every epoch, each finished stage kept.

While a stage trains, `StageBackup` (keras.callbacks.BackupAndRestore) writes the model's weights and
optimizer state after every finished epoch into the run folder (`tlcore.runs.resumption` has the layout);
a fit of the same stage started later begins after that epoch. When a stage finishes, its final weights
are kept (the next stage or the final model may need them), its results recorded, and its backup removed.

Keras's weight files leave out the random generators' states (dropout masks, augmentation, and Python's
`random`, which shuffles the order of each epoch's batches of cached features as Keras shuffles a
PyDataset's), so they are kept beside the backup, per epoch: on the CPU a resumed run on cached features
then trains exactly as an uninterrupted one would have.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import keras
import numpy as np

from tlcore import temporaries
from tlcore.files import read_json, write_json
from tlcore.runs import resumption
from tlcore.runs.store import Run

# Generator states kept per stage: the epoch being backed up, the latest backup's and the one before it
# (BackupAndRestore's double_checkpoint falls back to that one when the latest cannot be read).
GENERATOR_STATES_KEPT = 3


def generator_variables(model: keras.Model) -> list:
    """The model's state that is not a weight: its random generators' (dropout, augmentation layers)."""
    weights = {id(variable) for variable in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def _generator_states(model: keras.Model) -> dict:
    """The model's generators' states, and Python's and NumPy's global ones (the batches of cached
    features come in an order shuffled by Python's `random`: `feature_cache.RowBatches.dataset`)."""
    numpy_state = np.random.get_state()
    return {
        "layers": [np.asarray(variable).tolist() for variable in generator_variables(model)],
        "python": random.getstate(),
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
    }


def save_generators(model: keras.Model, path: Path, epochs: int) -> None:
    """Adds the generators' states after `epochs` epochs to a JSON file of the latest few."""
    states = read_json(path, {})
    states = states if isinstance(states, dict) else {}
    states[str(epochs)] = _generator_states(model)
    latest = sorted(states, key=int)[-GENERATOR_STATES_KEPT:]
    write_json(path, {key: states[key] for key in latest})


def restore_generators(model: keras.Model, path: Path, epochs: int) -> bool:
    """Sets the generators to their states after `epochs` epochs, when they were kept for that epoch."""
    states = read_json(path, {})
    state = states.get(str(epochs)) if isinstance(states, dict) else None
    variables = generator_variables(model)
    if not isinstance(state, dict) or len(state.get("layers", ())) != len(variables):
        return False  # Not kept (another model, or a damaged file): drawn anew.
    for variable, value in zip(variables, state["layers"]):
        variable.assign(np.asarray(value, dtype=variable.dtype))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    return True


class StageBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore for one stage of a run, which also keeps the run's metrics and generators in step.

    Every finished epoch is backed up (save_freq "epoch"), with the previous backup kept in case the
    latest is damaged (double_checkpoint); the backup stays when `fit` ends (delete_checkpoint False),
    since a stopped stage may be resumed: `finish_stage` removes it once the stage is finished. An epoch
    cut short by a stop request is not backed up: it is trained again on resume.

    When `fit` begins after a backup, the metrics the resumed epochs will write again are dropped and
    the generators restored. Place it after RunRecorder: a worker killed between the two then leaves
    an epoch recorded but not backed up, which the resumed stage trains and records again.

    Args:
        run: the `tlcore.runs.store.Run` being trained.
        stage: the stage this `fit` trains.
    """

    def __init__(self, run: Run, stage: str):
        folder = str(resumption.backup_folder(run, stage))
        super().__init__(folder, save_freq="epoch", double_checkpoint=True, delete_checkpoint=False)
        self.run = run
        self.stage = stage
        self.restored_epochs = 0
        self.batches = 0

    @property
    def generators_path(self) -> Path:
        return resumption.folder(self.run) / f"{self.stage}.seeds.json"

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # Loads the backup (the previous one if the latest is damaged).
        self.restored_epochs = resumption.backed_up_epochs(self.run, self.stage)
        resumption.trim_metrics(self.run, self.stage, self.restored_epochs)
        if self.restored_epochs:
            restore_generators(self.model, self.generators_path, self.restored_epochs)

    def on_epoch_begin(self, epoch, logs=None):
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches = batch + 1
        super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        steps = self.params.get("steps") if self.params else None
        if steps and self.batches < steps:
            return  # Cut short by a stop: not a finished epoch.
        # Before the backup: a backup never lacks its generators (states of a later epoch are harmless).
        save_generators(self.model, self.generators_path, epoch + 1)
        super().on_epoch_end(epoch, logs)


def earlier_epochs(run: Run, stage: str, epochs: int) -> dict[str, list[float]]:
    """The logs of a stage's first `epochs` epochs, as recorded before a resume (History's layout)."""
    records = sorted(
        (record for record in run.metrics() if record.get("stage") == stage and not record.get("partial")),
        key=lambda record: record.get("stage_epoch", 0),
    )[:epochs]
    keys = {key for record in records for key in record} - {"stage", "epoch", "stage_epoch", "seconds", "time"}
    return {key: [record.get(key) for record in records] for key in sorted(keys)}


def _weights_path(run: Run, stage: str) -> Path:
    return resumption.folder(run) / f"{stage}.weights.h5"


def finish_stage(run: Run, stage: str, model: keras.Model, result: dict) -> None:
    """Keeps a finished stage's final weights and generators and its results; removes its backup.

    Args:
        run: the run.
        stage: the stage that finished.
        model: the model that stage trained (its final weights, the best ones with early stopping).
        result: the stage's results, as the summary records them.
    """
    path = _weights_path(run, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".partial-{os.getpid()}-{path.name}")  # Keras wants the .weights.h5 ending.
    with temporaries.being_written(temporary):
        model.save_weights(temporary)
        os.replace(temporary, path)
    save_generators(model, path.with_suffix(".seeds.json"), 0)
    resumption.record_finished(run, stage, json.loads(json.dumps(result, default=float)))


def restore_stage(run: Run, stage: str, model: keras.Model) -> None:
    """Gives a rebuilt model a finished stage's final weights and generators (instead of training it again)."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)  # The file holds its state: load it into place.
    path = _weights_path(run, stage)
    model.load_weights(path)
    restore_generators(model, path.with_suffix(".seeds.json"), 0)
