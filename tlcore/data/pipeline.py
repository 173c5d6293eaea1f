"""Decoded images for training and extraction: whole lists, batches decoded ahead, and tf.data pipelines."""

from __future__ import annotations

import collections
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, Sequence

import numpy as np

from tlcore.data import decoder_processes, decoders, images

# Batches a file pipeline decodes ahead of the model.
PREFETCH_BATCHES = 2
# Images per batch when `load_images` decodes a whole list.
LOAD_BATCH_SIZE = 32


def load_images(
    paths: Sequence[str], image_size: int, workers: int | None = None, processes: bool | None = None
) -> np.ndarray:
    """Decodes and resizes images in parallel (`decoded_batches`) into one uint8 array (N, size, size, 3).

    Args:
        paths: image files.
        image_size: side of the square images.
        workers: decoder threads or processes, as `decoded_batches`.
        processes: decode in processes, as `decoded_batches`.

    Returns:
        The images, in the order of `paths`.

    Raises:
        images.InvalidImageError: a file cannot be decoded.
    """
    output = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)
    position = 0
    for batch in decoded_batches(paths, image_size, LOAD_BATCH_SIZE, workers=workers, processes=processes):
        output[position : position + len(batch)] = batch
        position += len(batch)
    return output


def decoded_batches(
    paths: Sequence[str],
    image_size: int,
    batch_size: int,
    ahead: int = PREFETCH_BATCHES,
    workers: int | None = None,
    processes: bool | None = None,
) -> Iterator[np.ndarray]:
    """uint8 batches (n, size, size, 3) of images decoded by the one decoder, in order, ahead of use.

    For passes that only need the pixels, in order (feature extraction, cached views, loading a
    split into memory): a pool of decoders of its own decodes each batch in one slice per worker,
    straight into the batch's array, `ahead` batches before they are asked for. Decoding alone, that
    spends less CPU per image than a `tf.data` map (`make_dataset`: a Python call per image through
    `tf.numpy_function`, a float32 copy and the batching): CPU time the model has instead
    (`python -m benchmarks.throughput`, section 1). The decoders run at the lowest priority, as
    `make_dataset`'s do. They are threads, or, on a machine of
    `DECODER_PROCESSES_FROM_CORES` cores or more, processes writing into shared memory
    (`tlcore.data.decoder_processes`), which the GIL does not hold back.

    Args:
        paths: image files.
        image_size: side of the square images.
        batch_size: images per batch (the last batch may be smaller).
        ahead: batches decoded ahead of the one being used (at least 1).
        workers: decoder threads or processes (default: `decoder_processes()` when decoding in
            processes, else `decoder_threads()`, one per core, at most 8).
        processes: decode in processes (True) or threads (False); default: processes when
            `decoder_processes()` is not 0.

    Yields:
        uint8 arrays of shape (n, image_size, image_size, 3), n = batch_size but for the last one.

    Raises:
        images.InvalidImageError: a file cannot be decoded (raised with the batch that holds it;
            the batches before it have been yielded).
        ValueError: image_size, batch_size, ahead or workers is not a positive integer.
    """
    checked = [("image_size", image_size), ("batch_size", batch_size), ("ahead", ahead)]
    if workers is not None:
        checked.append(("workers", workers))
    for name, value in checked:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, received {value!r}.")
    if processes is None:
        processes = decoders.decoder_processes() > 0
    if processes:
        yield from decoder_processes.decoded_batches(
            paths, image_size, batch_size, ahead, workers or decoders.decoder_processes() or decoders.decoder_threads()
        )
        return
    paths = [str(path) for path in paths]
    workers = workers or decoders.decoder_threads()
    starts = iter(range(0, len(paths), batch_size))
    pending: collections.deque = collections.deque()
    pool = ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix="tlcore-decoder", initializer=decoders.lower_decoder_thread
    )

    def decode_slice(output: np.ndarray, batch_paths: list[str], begin: int, end: int) -> None:
        for index in range(begin, end):
            output[index] = images.load_resized(batch_paths[index], image_size)

    def submit(start: int) -> None:
        batch_paths = paths[start : start + batch_size]
        output = np.empty((len(batch_paths), image_size, image_size, 3), dtype=np.uint8)
        pending.append(
            (
                output,
                [
                    pool.submit(decode_slice, output, batch_paths, begin, end)
                    for begin, end in decoders.batch_slices(len(batch_paths), workers)
                ],
            )
        )

    try:
        for start in itertools.islice(starts, ahead):
            submit(start)
        while pending:
            output, futures = pending.popleft()
            for future in futures:
                future.result()
            following = next(starts, None)
            if following is not None:
                submit(following)  # Before yielding: the decoders work while the caller uses this batch.
            yield output
    finally:
        # A caller that stops early (a stop request, an error) does not wait for batches it will not use.
        pool.shutdown(wait=True, cancel_futures=True)


def encode_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Targets for Keras: 0/1 floats for two classes (sigmoid), one-hot rows for more (softmax)."""
    labels = np.asarray(labels, dtype=np.int64)
    if num_classes == 2:
        return labels.astype("float32")
    return np.eye(num_classes, dtype="float32")[labels]


def make_dataset(
    paths: Sequence[str],
    labels: Iterable[int] | None,
    num_classes: int,
    image_size: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 1337,
):
    """A `tf.data` pipeline of (images, targets) batches decoded by the one decoder.

    Images come out as float32 RGB in [0, 255], shaped (batch, size, size, 3); each model
    scales them itself (see `tlcore.models.layers.Preprocess`).

    Args:
        paths: image files.
        labels: their class indices, or None for an images-only pipeline.
        num_classes: the number of classes (2 means one sigmoid output).
        image_size: side of the square images.
        batch_size: images per batch.
        shuffle: reshuffle the files every epoch (training).
        seed: the shuffle seed.

    Returns:
        A batched, prefetched `tf.data.Dataset`.
    """
    # Heavy: imports TensorFlow.
    import tensorflow as tf

    # As the bytes on disk: TensorFlow encodes a str path as UTF-8, which a file name that is not valid
    # UTF-8 (a str with lone surrogates) cannot be; `os.fsdecode` turns the bytes back into that str.
    paths = [os.fsencode(path) for path in paths]

    def load(path):
        decoders.lower_decoder_thread()
        return images.load_resized(os.fsdecode(path) if isinstance(path, bytes) else str(path), image_size)

    def decode(path):
        image = tf.numpy_function(load, [path], tf.uint8, stateful=False)
        image.set_shape((image_size, image_size, 3))
        return tf.cast(image, tf.float32)

    dataset = tf.data.Dataset.from_tensor_slices(paths)
    if labels is not None:
        targets = encode_labels(np.asarray(list(labels)), num_classes)
        dataset = tf.data.Dataset.zip((dataset, tf.data.Dataset.from_tensor_slices(targets)))
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    # One decoding call per core (at most MAX_DECODER_THREADS), two batches ahead, and tf.data's
    # autotuner off: on a CPU the decoders share the cores with the model, and the autotuner (a thread
    # of its own, buffers that grow) cost extraction throughput (benchmarks.throughput, section 1;
    # README, "Speed"). Pillow releases the GIL while it decodes, so the calls run in
    # parallel, on a pool of the pipeline's own (whose threads `_lower_decoder_thread` may lower
    # without touching TensorFlow's).
    parallel_calls = decoders.decoder_threads()
    if labels is not None:
        dataset = dataset.map(lambda path, target: (decode(path), target), num_parallel_calls=parallel_calls)
    else:
        dataset = dataset.map(decode, num_parallel_calls=parallel_calls)
    return dataset.batch(batch_size).prefetch(PREFETCH_BATCHES).with_options(without_autotuner(parallel_calls))


def without_autotuner(threads: int | None = None):
    """`tf.data.Options` with tf.data's autotuner off, for every pipeline that training reads.

    The autotuner is a thread of its own per iterator, and Keras makes a new iterator of its data at
    the start and the end of every epoch. Deleting an iterator waits for that thread to finish its
    current round: with epochs of a few seconds, epochs of some runs began up to an epoch's length
    late (benchmarks/RESULTS.md). On a CPU it also takes cores from the model (see `make_dataset`).
    Keras turns it off itself only for a PyDataset read by several workers.

    Args:
        threads: the size of the pipeline's own thread pool (None: tf.data's shared pool).
    """
    # Heavy: imports TensorFlow.
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    if threads is not None:
        options.threading.private_threadpool_size = threads
    return options
