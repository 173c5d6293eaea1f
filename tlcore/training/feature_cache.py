"""Feature cache: a frozen backbone's activations for a data set, computed once, reused by later runs.

The key covers everything the activations depend on (backbone, weights, width, image size, the
data set's fingerprint, this module's version, and for augmented views the augmentation), so a
cached entry can never be stale: a changed file changes the fingerprint and therefore the key.

Activations are streamed to `.npy` files batch by batch (`FeatureWriter`) and read back row by
row (`FeatureFile`), never held whole in memory, so data sets larger than memory work too.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from tlcore import temporaries
from tlcore.config import TrainConfig
from tlcore.data import pipeline
from tlcore.files import write_json

CACHE_VERSION = 5  # 2: views really augmented; 3: streamed .npy files; 4: head vectors cached too;
# 5: images shrink by area averaging (images.stretch_to_square).


def cache_key(config: TrainConfig, dataset_fingerprint: str, extra=None) -> str:
    """A short hash of everything cached activations depend on.

    Args:
        config: the run's settings; its backbone, weights, alpha and image size build the base, and
            without pretrained weights (weights "none") its seed draws the base's weights.
        dataset_fingerprint: `tlcore.data.dataset.fingerprint` of the data set.
        extra: anything else they depend on (augmentation settings, view count, ...), JSON-able.
    """
    base = [config.backbone, config.weights, float(config.alpha), config.image_size]
    if config.weights == "none":
        base.append(config.seed)
    text = json.dumps([CACHE_VERSION, *base, dataset_fingerprint, extra], default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def features_key(config: TrainConfig, dataset_fingerprint: str) -> str:
    """The cache key of feature extraction's features (and of the boundary activations kept beside them)."""
    return cache_key(config, dataset_fingerprint, extra=[config.precision, config.stacked_levels])


def cache_dir(runs_dir: str | os.PathLike) -> Path:
    """Where cached features live: a hidden folder of the runs folder (not a run)."""
    return Path(runs_dir) / ".cache" / "features"


class FeatureWriter:
    """Writes rows of a known count and shape to a `.npy` file as they come, then renames it into place.

    Args:
        path: the final file.
        count: how many rows will be written.
        row_shape: the shape of one row.
    """

    def __init__(self, path: Path, count: int, row_shape: Sequence[int]):
        self.path = Path(path)
        self.count = count
        self.row_shape = tuple(int(size) for size in row_shape)
        self.written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.temporary = temporaries.register(self.path.with_name(f".{self.path.stem}.{os.getpid()}.partial"))
        self.stream = open(self.temporary, "wb")
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype("float32")),
            "fortran_order": False,
            "shape": (count, *self.row_shape),
        }
        np.lib.format.write_array_header_1_0(self.stream, header)

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype="float32")
        if rows.shape[1:] != self.row_shape or self.written + len(rows) > self.count:
            raise ValueError(
                f"Expected rows of shape (*, {self.row_shape}) up to {self.count} in all, received "
                f"{rows.shape} after {self.written}."
            )
        self.stream.write(rows.tobytes())
        self.written += len(rows)

    def close(self) -> None:
        """Finishes the file; an incomplete file is discarded, never left to be read as a cache."""
        self.stream.close()
        if self.written != self.count:
            self.discard()
            raise ValueError(f"{self.path}: {self.written} rows written, expected {self.count}.")
        os.replace(self.temporary, self.path)
        temporaries.release(self.temporary)

    def discard(self) -> None:
        self.stream.close()
        self.temporary.unlink(missing_ok=True)
        temporaries.release(self.temporary)


class FeatureFile:
    """Reads rows of a `.npy` file by seeking: only the rows asked for are ever in memory."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as stream:
            version = np.lib.format.read_magic(stream)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, dtype = read_header(stream)
            self.offset = stream.tell()
            file_size = os.fstat(stream.fileno()).st_size
        if fortran_order or dtype != np.dtype("float32") or len(shape) < 1:
            raise ValueError(f"{self.path}: expected a C-ordered float32 array, found {dtype} {shape}.")
        self.shape = tuple(shape)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * 4
        # The header states the row count before any row is written: a file cut short (a crash, a full
        # disk, a copy interrupted) still has a whole header, and only its size tells it apart.
        expected_size = self.offset + self.shape[0] * self.row_bytes
        if file_size != expected_size:
            raise ValueError(
                f"{self.path}: {file_size} bytes, expected {expected_size} for {self.shape[0]} rows of "
                f"{self.row_bytes} bytes (the file is truncated or damaged)."
            )

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, indices) -> np.ndarray:
        """The rows at these indices, in the order given."""
        indices = np.asarray(indices, dtype=np.int64)
        output = np.empty((len(indices), *self.shape[1:]), dtype="float32")
        with open(self.path, "rb") as stream:
            for position, index in enumerate(indices):
                stream.seek(self.offset + int(index) * self.row_bytes)
                output[position] = np.frombuffer(stream.read(self.row_bytes), dtype="float32").reshape(self.shape[1:])
        return output

    def read(self) -> np.ndarray:
        """All rows (for small files)."""
        return self.rows(np.arange(len(self)))


def load(directory: Path | None, key: str, split: str, count: int) -> FeatureFile | None:
    """Returns cached features of a split with `count` rows, or None when absent or unusable.

    Unusable includes a file of the wrong size (see FeatureFile): the caller then extracts the
    features again and replaces it.
    """
    if directory is None:
        return None
    try:
        cached = FeatureFile(Path(directory) / key / f"{split}.npy")
    except (OSError, ValueError):
        return None
    return cached if len(cached) == count else None


def describe(directory: Path, key: str, description: dict) -> None:
    write_json(Path(directory) / key / "meta.json", description)


def view_rows(views: int, count: int, copies: int | None = None, seed: int = 0) -> np.ndarray:
    """Where each view of each image lies in a file of cached rows: an array (views, count) of row indices.

    Args:
        views: the views an epoch cycles through (epoch e reads view e mod views).
        count: the images.
        copies: None when the file holds `views` blocks of `count` rows, one per view; else the number of
            blocks it holds (flip copies of every image, `augment.flip_copies`), and each view of an image
            is one of its copies drawn at random.
        seed: seeds the draws.
    """
    images = np.arange(count)
    if copies is None:
        return np.arange(views)[:, np.newaxis] * count + images
    if copies < 1:
        raise ValueError(f"copies must be at least 1, received {copies!r}.")
    # Drawn row after row, so the first views are the same whatever the number of views (a short run's).
    return np.random.default_rng([seed, 7919]).integers(0, copies, size=(views, count)) * count + images


class RowBatches:
    """Training batches read from a FeatureFile: the rows of epoch e's view of each image, reshuffled every epoch.

    With `views` > 1 the file holds rows of several views of each image and epoch e reads view e mod
    views: block e mod views of `len(targets)` rows, or where `rows_of_views` says. Training batches (a
    seed) learn the epoch from the callback `follow()` returns: pass it to `fit`, with `dataset()` as
    the data.

    Args:
        features: the FeatureFile.
        targets: one target per image.
        batch_size: rows per batch.
        seed: the shuffle seed (None: keep the file's order, for validation).
        views: how many views of each image the file holds.
        rows_of_views: the row of each view of each image, (views, images) (`view_rows`); None: `views`
            blocks of rows, one per view.
    """

    def __init__(
        self,
        features: FeatureFile,
        targets: np.ndarray,
        batch_size: int,
        seed: int | None = None,
        views: int = 1,
        rows_of_views: np.ndarray | None = None,
    ):
        if rows_of_views is None:
            if len(features) != views * len(targets):
                raise ValueError(f"Expected {views} x {len(targets)} rows, received {len(features)}.")
            rows_of_views = view_rows(views, len(targets))
        elif rows_of_views.shape != (views, len(targets)) or rows_of_views.max(initial=0) >= len(features):
            raise ValueError(
                f"Expected rows of views of shape ({views}, {len(targets)}) within the file's {len(features)} "
                f"rows, received shape {rows_of_views.shape} up to row {rows_of_views.max(initial=0)}."
            )
        self.features, self.targets, self.batch_size, self.seed, self.views = (
            features,
            targets,
            batch_size,
            seed,
            views,
        )
        self.rows_of_views = rows_of_views
        self.epoch = 0
        self._next_epoch = 0
        self._order()

    def _order(self) -> None:
        count = len(self.targets)
        self.order = (
            np.arange(count) if self.seed is None else np.random.default_rng([self.seed, self.epoch]).permutation(count)
        )

    def __len__(self) -> int:
        return -(-len(self.targets) // self.batch_size)

    def __getitem__(self, index: int):
        images = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        return self.features.rows(self.rows_of_views[self.epoch % self.views, images]), self.targets[images]

    def follow(self) -> keras.callbacks.Callback:
        """A callback for `fit(callbacks=...)` that tells these batches which epoch Keras trains.

        Keras opens an epoch of the data more often than it trains one (before training, to learn
        the shapes; once more under a distribution strategy), so counting the openings misnumbered
        the epochs (epoch e read view e + 1). Keras numbers its epochs to its callbacks, each just
        before it opens that epoch's data.
        """
        batches = self

        class FollowEpochs(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                batches._next_epoch = epoch

        return FollowEpochs()

    def on_epoch_begin(self) -> None:
        if self.seed is not None and self.epoch != self._next_epoch:
            self.epoch = self._next_epoch
            self._order()

    def dataset(self):
        """These batches as a `tf.data.Dataset` for `fit` (training or validation data).

        Read as Keras reads a `keras.utils.PyDataset`: each pass begins with the epoch `follow()`
        announced, training batches (a seed) come in an order shuffled by Python's `random` (resume
        keeps its state), and each batch is read when the pipeline asks for it. Unlike Keras' own
        pipeline for a PyDataset, this one runs with tf.data's autotuner off
        (`pipeline.without_autotuner`: with it on, epochs began late).
        """
        # Heavy: imports TensorFlow.
        import tensorflow as tf

        def generate():
            self.on_epoch_begin()
            indices = list(range(len(self)))
            if self.seed is not None:
                random.shuffle(indices)
            for index in indices:
                yield self[index]

        signature = (
            tf.TensorSpec((None, *self.features.shape[1:]), tf.float32),
            tf.TensorSpec((None, *self.targets.shape[1:]), tf.as_dtype(self.targets.dtype)),
        )
        batches = tf.data.Dataset.from_generator(generate, output_signature=signature)
        # A known length, as a PyDataset has: Keras then counts the steps of every epoch, the first included.
        batches = batches.apply(tf.data.experimental.assert_cardinality(len(self)))
        return batches.prefetch(pipeline.PREFETCH_BATCHES).with_options(pipeline.without_autotuner())
