"""Cached views for strategies 2 and 3: the frozen base's activations of augmented views of the training images.

The part of the base that strategies 2 and 3 never train runs once per augmented view of each training
image, and once on the validation images; `augmented` trains on what is cached here. When flips are all the
augmentation does, each view is drawn from the few flip copies of each image, cached one pass each; when
feature extraction kept the activations entering the top block in the feature cache (`keeps_boundary_activations`), the
photos as they are and the validation photos come from its pass, so only the flipped copies pass through the
base again.
"""

from __future__ import annotations

import functools
import time

import keras
import numpy as np

from tlcore.config import TrainConfig, stages_for
from tlcore.data import augment
from tlcore.data.dataset import fingerprint
from tlcore.models.inference import augmented_inference_function, inference_function
from tlcore.training import feature_cache, training_context

# Part of the cache key of every cached view: 2 since each flip toggle has a RandomFlip of its own (both flips
# were one coin before, so caches made then hold other views).
VIEWS_CACHE_VERSION = 2
# What the progress adds to a pass read from the activations feature extraction kept.
FROM_EXTRACTION = "the activations feature extraction's pass kept"


def views_to_cache(config: TrainConfig) -> int:
    """How many of the config's `augmented_views` its run reads, and so caches.

    Epoch e of a cached stage trains on view e mod K, and each stage counts its epochs from 0: a
    run of fewer epochs than K never reads the views past its epoch count. Each view is seeded by
    its index, so caching only those trains exactly as caching all K would, sooner (a 2-epoch run
    caches 2 views, not 5).
    """
    stages = stages_for(config.strategy)
    epochs = [config.epochs] if "frozen_augmented" in stages else []
    if "fine_tuning" in stages:
        epochs.append(config.fine_tuning_epochs)
    return min(config.augmented_views, max(epochs, default=config.augmented_views))


def keeps_boundary_activations(config: TrainConfig) -> bool:
    """Whether feature extraction keeps the photos' boundary activations, for frozen + augmentation to read.

    When flips are all the augmentation does (or it does nothing), the photo as it is is one of the
    copies frozen + augmentation caches, and the validation photos are never augmented: both pass
    through the frozen base as in feature extraction. A run that trains both stages keeps the
    activations entering the top block from that pass (`extraction.extract_features`), and frozen +
    augmentation only passes the flipped copies through the base (none, with the augmentation off).
    Features read from the cache come with kept activations only when the run that extracted them
    kept them too; otherwise frozen + augmentation makes its own passes, with the same results.
    """
    stages = stages_for(config.strategy)
    return (
        "feature_extraction" in stages
        and "frozen_augmented" in stages
        and config.augmented_views > 0
        and augment.flip_copies(config.augmentation) is not None
    )


def extract_views(
    context: training_context.TrainingContext, bottom: keras.Model, top: keras.Model, head_first, preprocess
) -> tuple:
    """Cached activations for strategies 2 and 3, for K augmented views of the training images (or, when
    flips are all the augmentation does, for their flip copies: `augment.flip_copies`) and for the
    validation images: the boundary activations (entering the top block) and the head's input vectors.
    Cached on disk by everything they depend on. The boundary activations feature extraction kept in
    the feature cache for these photos (`keeps_boundary_activations`) stand in for the passes over the photos as
    they are and over the validation photos: the same rows, and the same vectors from them.

    Returns:
        (dict name -> FeatureFile, seconds, whether everything came from the cache).
    """
    config, dataset = context.config, context.dataset
    started = time.time()
    directory = context.feature_directory()
    boundary_shape = tuple(bottom.output.shape[1:])
    vector_shape = tuple(head_first.output.shape[1:])
    data_fingerprint = fingerprint(dataset)  # Stats every file: once per call.
    views = views_to_cache(config)
    # Flips alone make a few copies of each image: those are cached, whatever the number of views (so that a
    # short run draws the first views of a longer one), and each view is drawn from them.
    copies = augment.flip_copies(config.augmentation)
    blocks = views if copies is None else len(copies)  # Blocks of rows of the training images.
    # Flip copies depend on the flips alone; augmented views on every setting, their number and the seed.
    what = [config.augmentation.to_dict(), views, config.seed] if copies is None else ["flip copies", copies]
    key = feature_cache.cache_key(
        config,
        data_fingerprint,
        extra=[VIEWS_CACHE_VERSION, boundary_shape, config.head, *what, config.precision, config.stacked_levels],
    )
    train_count, validation_count = len(dataset.paths("train")), len(dataset.paths("validation"))
    counts = {
        "train_views": blocks * train_count,
        "train_vectors": blocks * train_count,
        "validation_boundary": validation_count,
        "validation_vectors": validation_count,
    }
    cached = {name: feature_cache.load(directory, key, name, count) for name, count in counts.items()}
    from_cache = all(value is not None for value in cached.values())
    # The stop checks after each batch below are all-reduces that every worker must make: only when every
    # worker computes the views (the chief may have them cached by an earlier run, the others never do).
    # Else a stop waits for the check after caching (run_frozen_augmented).
    check_stop = context.every_worker(not from_cache)
    if from_cache:
        return cached, time.time() - started, True
    size = config.image_size
    inputs = keras.Input(shape=(size, size, 3), name="image")
    bottom_model = keras.Model(inputs, bottom(preprocess(inputs), training=False))
    to_boundary = inference_function(bottom_model, jit_compile=config.jit_compile)
    boundary = keras.Input(shape=boundary_shape, name="boundary")
    to_vector = inference_function(
        keras.Model(boundary, head_first(top(boundary, training=False))), jit_compile=config.jit_compile
    )
    # The photos as they are (the first flip copy) and the validation photos, from feature extraction's pass.
    reused = _kept_boundary(context, boundary_shape, data_fingerprint) if copies is not None else {}
    writers = {}
    try:
        for name, count in counts.items():
            shape = vector_shape if name.endswith("vectors") else boundary_shape
            writers[name] = feature_cache.FeatureWriter(directory / key / f"{name}.npy", count, shape)
        if copies is not None and len(copies) == 1:
            context.say("[frozen_augmented] the augmentation is off: caching each image once, every view is the image")
        elif copies is not None:
            context.say(
                f"[frozen_augmented] flips are the only augmentation: caching {len(copies)} copies of each "
                f"image ({'; '.join(augment.describe_flip_copy(copy) for copy in copies)}), from which each of "
                f"the {views} views draws"
            )
        passes = [(block, "train") for block in range(blocks)] + [(None, "validation")]
        for block, split in passes:
            forward = to_boundary
            from_extraction = split in reused and (block is None or copies[block] == (False, False))
            if block is not None:
                progress = {"view": block + 1, "views": blocks}
                if copies is not None:
                    copy = copies[block]
                    progress["copy"] = augment.describe_flip_copy(copy)
                    name = f"copy {block + 1}/{blocks} ({progress['copy']})"
                    forward = functools.partial(_flipped_forward, to_boundary, copy)
                else:
                    name = f"augmented view {block + 1}/{views}"
                    # Each view has its own seed, so the K views differ and a rerun draws the same ones.
                    augmentation = augment.build_layers(config.augmentation, seed=config.seed + 7919 * (block + 1))
                    forward = _augmented_forward(bottom_model, to_boundary, augmentation, config.jit_compile)
                context.say(f"[frozen_augmented] caching {name}" + (f": {FROM_EXTRACTION}" if from_extraction else ""))
                if context.run is not None:
                    context.run.set_progress(
                        {
                            "stage": "frozen_augmented",
                            "phase": "caching",
                            **progress,
                            "stage_elapsed": time.time() - started,
                            "time": time.time(),
                        }
                    )
            else:
                name = "validation"
                if from_extraction:
                    context.say(f"[frozen_augmented] caching validation: {FROM_EXTRACTION}")
            prefix = "train_" if split == "train" else "validation_"
            bar = context.task(f"[frozen_augmented] caching {name}", len(dataset.paths(split)))
            try:
                batches = _row_batches(reused[split]) if from_extraction else context.image_batches(split)
                for batch in batches:
                    activations = batch if from_extraction else forward(batch)
                    writers[prefix + ("views" if split == "train" else "boundary")].write(activations)
                    writers[prefix + "vectors"].write(to_vector(activations))
                    bar.advance(len(batch))
                    if check_stop and context.any_worker_stops():
                        raise training_context.StageStopped()  # Partial activations are never cached.
            finally:
                bar.close()
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.discard()
        raise
    feature_cache.describe(
        directory,
        key,
        {
            "backbone": config.backbone,
            "image_size": config.image_size,
            "head": config.head,
            "data": dataset.root,  # Lets the data set library remove a deleted set's caches.
            "views": views,
            "flip_copies": None if copies is None else [list(copy) for copy in copies],
            "boundary": list(boundary_shape),
            "data_fingerprint": data_fingerprint,
        },
    )
    return (
        {name: feature_cache.FeatureFile(directory / key / f"{name}.npy") for name in counts},
        time.time() - started,
        False,
    )


def _kept_boundary(context: training_context.TrainingContext, boundary_shape: tuple, data_fingerprint: str) -> dict:
    """The boundary activations feature extraction kept in the cache for these photos, split -> FeatureFile.

    Under the features' key of the photos as they are now (`feature_cache.features_key`): activations of
    a photo edited since are not read as the new photo's.
    """
    key = feature_cache.features_key(context.config, data_fingerprint)
    kept = {}
    for split in ("train", "validation"):
        rows = feature_cache.load(
            context.feature_directory(), key, f"{split}_boundary", len(context.dataset.paths(split))
        )
        if rows is not None and rows.shape[1:] == boundary_shape:
            kept[split] = rows
    return kept


def _row_batches(rows: feature_cache.FeatureFile):
    """The rows of a file in order, in batches of the size `TrainingContext.image_batches` gives images.

    The same batches: the vectors computed from them are then the same, bit for bit, as from a pass
    over the images.
    """
    size = training_context.EXTRACTION_BATCH_SIZE
    for start in range(0, len(rows), size):
        yield rows.rows(np.arange(start, min(start + size, len(rows))))


def _flipped_forward(forward, copy: augment.FlipCopy, batch: np.ndarray):
    return forward(augment.flip_copy(batch, copy))


def _augmented_forward(model: keras.Model, forward, augmentation, jit_compile: bool):
    """`forward(augmentation(x))` with the augmentation in training mode, as one graph when possible.

    Under XLA the augmentation (which XLA cannot compile) runs eagerly before the compiled forward
    pass; otherwise both run in one `tf.function`, with the same outputs (`inference.augmented_inference_function`).
    Either way the layers are called directly: inside `predict` Keras would switch them off.
    """
    if jit_compile:
        return lambda batch: forward(augmentation(batch, training=True))
    return augmented_inference_function(model, augmentation)
