"""How late each epoch on cached features begins: Keras' pipeline for a PyDataset against `RowBatches.dataset`.

python -m benchmarks.epoch_start [--epochs 10] [--rows 2000] [--repeats 1]

Fine-tuning and the heads train on rows read from a feature file (`tlcore.training.feature_cache.RowBatches`).
Keras reads a `keras.utils.PyDataset` through a tf.data pipeline with tf.data's autotuner on, and makes a new
iterator of it at the start and the end of every epoch; `RowBatches.dataset()` is the same batches with the
autotuner off. Both train the same stand-in for fine-tuning's top block (1 x 1 expansion to 1152 channels,
3 x 3 depthwise, projection to 320, 1 x 1 to 1280, pooling, a softmax over 2 classes; random weights) on the
same random rows of EfficientNet-Lite1's boundary at 240 px (8 x 8 x 192), batches of 32, validated after each epoch
on the first 500 rows.

Prints one table: per way, the median epoch, and how long each epoch waited between its start and its first
batch (median, largest, sum over the epochs). Exits 1 when an epoch of `RowBatches.dataset()` waited more than
a tenth of its median epoch. Results go in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from tlcore.training import feature_cache

BOUNDARY_SHAPE = (8, 8, 192)
BATCH_SIZE = 32
# Validated after every epoch as training validates: the first rows, in batches of 64.
VALIDATION_ROWS = 500
VALIDATION_BATCH_SIZE = 64
# The two ways, as the table names them.
KERAS_WAY = "Keras' PyDataset pipeline (autotuner on)"
DATASET_WAY = "RowBatches.dataset()"


class KerasPyDataset(keras.utils.PyDataset):
    """The batches handed to Keras as a PyDataset (how `fit` read them before `RowBatches.dataset`)."""

    def __init__(self, batches: feature_cache.RowBatches):
        super().__init__()
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        return self.batches[index]

    def on_epoch_begin(self) -> None:
        self.batches.on_epoch_begin()


class EpochWaits(keras.callbacks.Callback):
    """Records each epoch's seconds and the seconds from its start to its first batch."""

    def __init__(self):
        super().__init__()
        self.epochs, self.waits = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.started, self.first_batch = time.perf_counter(), None

    def on_train_batch_begin(self, batch, logs=None):
        if self.first_batch is None:
            self.first_batch = time.perf_counter()
            self.waits.append(self.first_batch - self.started)

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(time.perf_counter() - self.started)


def stand_in_top_block() -> keras.Model:
    inputs = keras.Input(BOUNDARY_SHAPE)
    x = keras.layers.Conv2D(1152, 1, activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(320, 1)(x)
    x = keras.layers.Conv2D(1280, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.compile(keras.optimizers.RMSprop(1e-5), "categorical_crossentropy")
    return model


def write_rows(path: Path, rows: int) -> feature_cache.FeatureFile:
    writer = feature_cache.FeatureWriter(path, rows, BOUNDARY_SHAPE)
    generator = np.random.default_rng(0)
    for start in range(0, rows, 256):
        writer.write(generator.random((min(256, rows - start), *BOUNDARY_SHAPE), dtype="float32"))
    writer.close()
    return feature_cache.FeatureFile(path)


def measure(way: str, features: feature_cache.FeatureFile, targets: np.ndarray, epochs: int) -> EpochWaits:
    keras.utils.set_random_seed(1)
    batches = feature_cache.RowBatches(features, targets, BATCH_SIZE, seed=1)
    validation = feature_cache.RowBatches(
        features, targets[:VALIDATION_ROWS], VALIDATION_BATCH_SIZE, rows_of_views=np.arange(VALIDATION_ROWS)[None]
    )
    if way == DATASET_WAY:
        data, validation_data = batches.dataset(), validation.dataset()
    else:
        data, validation_data = KerasPyDataset(batches), KerasPyDataset(validation)
    waits = EpochWaits()
    stand_in_top_block().fit(
        data,
        validation_data=validation_data,
        epochs=epochs,
        verbose=0,
        callbacks=[waits, batches.follow()],
        shuffle=way != DATASET_WAY,  # The dataset shuffles its batches itself.
    )
    return waits


def misses(way: str, waits: EpochWaits) -> bool:
    """Whether a way misses the target: `RowBatches.dataset()` never waits a tenth of its median epoch."""
    return way == DATASET_WAY and max(waits.waits) > statistics.median(waits.epochs) / 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1, help="measure each way this many times, in turn")
    arguments = parser.parse_args()
    targets = keras.utils.to_categorical(np.arange(arguments.rows) % 2, 2).astype("float32")
    rows = []
    missed = False
    with tempfile.TemporaryDirectory(prefix="tlcore-epoch-start-") as folder:
        features = write_rows(Path(folder) / "rows.npy", arguments.rows)
        for repeat in range(arguments.repeats):
            for way in (KERAS_WAY, DATASET_WAY):
                waits = measure(way, features, targets, arguments.epochs)
                median_epoch = statistics.median(waits.epochs)
                rows.append(
                    f"| {way} | {repeat + 1} | {median_epoch:.2f} | {statistics.median(waits.waits):.2f} | "
                    f"{max(waits.waits):.2f} | {sum(waits.waits):.1f} / {sum(waits.epochs):.1f} |"
                )
                missed = missed or misses(way, waits)
    print(
        f"{arguments.epochs} epochs of {arguments.rows} rows {BOUNDARY_SHAPE}, batches of {BATCH_SIZE}, "
        f"{VALIDATION_ROWS} validated after each:"
    )
    print("| way | repeat | median epoch (s) | wait for the first batch: median (s) | largest (s) | sum / epochs (s) |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("target: RowBatches.dataset() never waits a tenth of an epoch:", "MISS" if missed else "PASS")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
