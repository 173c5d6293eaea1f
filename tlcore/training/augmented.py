"""Strategies 2 and 3 and the scratch baseline: training on augmented images.

Frozen + augmentation trains a head on top of the frozen base (a new one, or in strategy "all" by
default the one feature extraction trained); by default K augmented views of
each training image are pushed through the frozen part of the base once and cached (epoch e trains on
view e mod K), with 0 views it trains end to end. Fine-tuning continues that model with the base's top
block unfrozen at a lower learning rate. Scratch trains a small CNN from random weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import numpy as np

from tlcore.config import TrainConfig, stages_for
from tlcore.data import augment
from tlcore.data.dataset import fingerprint
from tlcore.models import backbones, heads
from tlcore.models.inference import augmented_inference_function, inference_function
from tlcore.training import feature_cache, training_context

# The classic small CNN from scratch (Deep Learning with Python) learns at RMSprop 1e-4.
SCRATCH_LEARNING_RATE = 1e-4


@dataclass
class StagedModels:
    """The frozen base split where fine-tuning begins, with cached activations.

    `bottom` (input -> the tensor entering the top block) never changes in strategies 2 and 3,
    so it runs once per augmented view. In the same pass the frozen top block and the head's
    parameter-free first layer (Flatten or pooling) turn each view into the vector the head's
    Dense layer takes: frozen + augmentation then only trains `tail` (Dense, Dropout, output) on
    those vectors, and fine-tuning trains `trainer` (top block + head) on the boundary
    activations. All share their layers with `base` and `head`, so the saved model has it all.
    """

    base: keras.Model
    top: keras.Model
    head: keras.Model
    tail: keras.Model
    trainer: keras.Model
    train_views: feature_cache.FeatureFile  # views blocks of (images, *boundary_shape) rows
    validation: feature_cache.FeatureFile  # (images, *boundary_shape)
    train_vectors: feature_cache.FeatureFile  # views blocks of (images, head input size) rows
    validation_vectors: feature_cache.FeatureFile
    views: int
    seconds: float
    from_cache: bool

    def view(self, index: int) -> np.ndarray:
        """The boundary activations of augmented view `index` of every training image."""
        count = len(self.train_views) // self.views
        return self.train_views.rows(np.arange(index * count, (index + 1) * count))


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


def extract_views(
    context: training_context.TrainingContext, bottom: keras.Model, top: keras.Model, head_first, preprocess
) -> tuple:
    """Cached activations for strategies 2 and 3, for K augmented views of the training images and
    for the validation images: the boundary activations (entering the top block) and the head's
    input vectors. Cached on disk by everything they depend on.

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
    key = feature_cache.cache_key(
        config.backbone,
        config.weights,
        config.alpha,
        config.image_size,
        data_fingerprint,
        extra=[
            boundary_shape,
            config.head,
            config.augmentation.to_dict(),
            views,
            config.seed,
            config.precision,
            config.stacked_levels,
        ],
    )
    train_count, validation_count = len(dataset.paths("train")), len(dataset.paths("validation"))
    counts = {
        "train_views": views * train_count,
        "train_vectors": views * train_count,
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
    writers = {}
    try:
        for name, count in counts.items():
            shape = vector_shape if name.endswith("vectors") else boundary_shape
            writers[name] = feature_cache.FeatureWriter(directory / key / f"{name}.npy", count, shape)
        passes = [(view, "train") for view in range(views)] + [(None, "validation")]
        for view, split in passes:
            augmented_boundary = None
            if view is not None:
                context.say(f"[frozen_augmented] caching augmented view {view + 1}/{views}")
                if context.run is not None:
                    context.run.set_progress(
                        {
                            "stage": "frozen_augmented",
                            "phase": "caching",
                            "view": view + 1,
                            "views": views,
                            "stage_elapsed": time.time() - started,
                            "time": time.time(),
                        }
                    )
                # Each view has its own seed, so the K views differ and a rerun draws the same ones.
                augmentation = augment.build_layers(config.augmentation, seed=config.seed + 7919 * (view + 1))
                augmented_boundary = _augmented_forward(bottom_model, to_boundary, augmentation, config.jit_compile)
            prefix = "train_" if split == "train" else "validation_"
            name = f"view {view + 1}/{views}" if view is not None else "validation"
            bar = context.task(f"[frozen_augmented] caching {name}", len(dataset.paths(split)))
            try:
                for batch in context.image_batches(split):
                    activations = (augmented_boundary or to_boundary)(batch)
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
            "boundary": list(boundary_shape),
            "data_fingerprint": data_fingerprint,
        },
    )
    return (
        {name: feature_cache.FeatureFile(directory / key / f"{name}.npy") for name in counts},
        time.time() - started,
        False,
    )


def _augmented_forward(model: keras.Model, forward, augmentation, jit_compile: bool):
    """`forward(augmentation(x))` with the augmentation in training mode, as one graph when possible.

    Under XLA the augmentation (which XLA cannot compile) runs eagerly before the compiled forward
    pass; otherwise both run in one `tf.function`, with the same outputs (`inference.augmented_inference_function`).
    Either way the layers are called directly: inside `predict` Keras would switch them off.
    """
    if jit_compile:
        return lambda batch: forward(augmentation(batch, training=True))
    return augmented_inference_function(model, augmentation)


def new_or_continued_head(context: training_context.TrainingContext, base: keras.Model) -> keras.Model:
    """Frozen + augmentation's head: a copy of the one feature extraction trained, or a new one.

    Feature extraction's head has learned the classes from the same frozen features, without
    augmentation; continuing it on augmented views keeps what it learned (a new head spends its
    epochs relearning it, and on scenes ended below feature extraction: benchmarks/RESULTS.md).
    A copy, so the model feature extraction saved keeps its own weights.
    """
    config = context.config
    head = heads.build_head(base.output.shape[1:], context.dataset.num_classes, config)
    if config.continue_head and context.feature_head is not None:
        head.set_weights(context.feature_head.get_weights())
        context.say("[frozen_augmented] the head starts from the one feature extraction trained")
    return head


def build_staged(context: training_context.TrainingContext) -> StagedModels:
    config = context.config
    base = heads.build_frozen_base(config)
    preprocess = backbones.preprocessing_layer(config.backbone)
    bottom, top = heads.split_base(base, config.backbone)
    head = new_or_continued_head(context, base)
    head_first, tail = heads.split_head(head)
    cached, seconds, from_cache = extract_views(context, bottom, top, head_first, preprocess)
    boundary = keras.Input(shape=bottom.output.shape[1:], name="boundary")
    trainer = keras.Model(boundary, head(top(boundary, training=False)), name="staged_classifier")
    return StagedModels(
        base,
        top,
        head,
        tail,
        trainer,
        cached["train_views"],
        cached["validation_boundary"],
        cached["train_vectors"],
        cached["validation_vectors"],
        views_to_cache(config),
        seconds,
        from_cache,
    )


def _fit_staged(context: training_context.TrainingContext, stage: str, epochs: int, learning_rate: float, seed: int):
    """Frozen + augmentation trains the head's tail on cached vectors; fine-tuning trains the top
    block and the head on cached boundary activations."""
    staged = context.staged
    if stage == "fine_tuning":
        model, train_rows, validation_rows = staged.trainer, staged.train_views, staged.validation
    else:
        model, train_rows, validation_rows = staged.tail, staged.train_vectors, staged.validation_vectors
    context.compile(model, learning_rate)
    batches = feature_cache.RowBatches(train_rows, context.targets("train"), context.batch_size, seed, staged.views)
    return context.fit(
        model,
        stage,
        batches,
        epochs,
        [batches.follow()],
        validation_data=feature_cache.RowBatches(
            validation_rows, context.targets("validation"), training_context.EXTRACTION_BATCH_SIZE
        ),
    )


def _final_model(context: training_context.TrainingContext, staged: StagedModels) -> keras.Model:
    config, dataset = context.config, context.dataset
    augmentation = augment.build_layers(config.augmentation, seed=config.seed)
    model = heads.assemble(
        config.image_size, staged.base, staged.head, backbones.preprocessing_layer(config.backbone), augmentation
    )
    heads.compile_model(model, dataset.num_classes, config.optimizer, config.learning_rate)
    return model


def _fit_end_to_end(context: training_context.TrainingContext, model: keras.Model, stage: str, epochs: int):
    """Trains a whole model on images, augmented anew every epoch by the model's own layers."""
    return context.fit(
        model,
        stage,
        context.image_pipeline("train", shuffle=True),
        epochs,
        validation_data=context.image_pipeline("validation", shuffle=False),
        shuffle=False,  # The pipeline shuffles.
    )


def run_frozen_augmented(context: training_context.TrainingContext) -> dict:
    config = context.config
    keras.utils.set_random_seed(config.seed)
    started = time.time()
    if config.augmented_views:
        context.staged = build_staged(context)
        if context.any_worker_stops():
            raise training_context.StageStopped()
        history = _fit_staged(context, "frozen_augmented", config.epochs, config.learning_rate, config.seed)
        context.model = _final_model(context, context.staged)
        result = training_context.history_result(
            history, time.time() - started, context.any_worker_stops(), config.keeps_best_weights
        )
        result.update(
            {
                "path": "cached_views",
                "views": context.staged.views,
                "extraction_seconds": context.staged.seconds,
                "features_from_cache": context.staged.from_cache,
            }
        )
        return result
    base = heads.build_frozen_base(config)
    preprocess = backbones.preprocessing_layer(config.backbone)
    head = new_or_continued_head(context, base)
    augmentation = augment.build_layers(config.augmentation, seed=config.seed)
    model = heads.assemble(config.image_size, base, head, preprocess, augmentation)
    context.compile(model, config.learning_rate)
    history = _fit_end_to_end(context, model, "frozen_augmented", config.epochs)
    context.frozen_model, context.frozen_base, context.model = model, base, model
    result = training_context.history_result(
        history, time.time() - started, context.any_worker_stops(), config.keeps_best_weights
    )
    result["path"] = "end_to_end"
    return result


def run_fine_tuning(context: training_context.TrainingContext) -> dict:
    config = context.config
    if context.staged is None and context.frozen_model is None:
        raise RuntimeError("fine_tuning needs the model of frozen_augmented; run that stage first.")
    keras.utils.set_random_seed(config.seed + 1)
    started = time.time()
    base = context.staged.base if context.staged is not None else context.frozen_base
    unfrozen = heads.unfreeze_top_block(base, config.backbone)
    context.say(f"[fine_tuning] unfrozen: {', '.join(unfrozen)}")
    if context.staged is not None:
        # Recompiled inside _fit_staged, after trainable changed.
        history = _fit_staged(
            context, "fine_tuning", config.fine_tuning_epochs, config.fine_tuning_learning_rate, config.seed + 1
        )
        context.model = _final_model(context, context.staged)
        path = "cached_views"
    else:
        model = context.frozen_model
        context.compile(model, config.fine_tuning_learning_rate)
        history = _fit_end_to_end(context, model, "fine_tuning", config.fine_tuning_epochs)
        context.model = model
        path = "end_to_end"
    result = training_context.history_result(
        history, time.time() - started, context.any_worker_stops(), config.keeps_best_weights
    )
    result.update({"unfrozen_layers": unfrozen, "path": path})
    return result


def run_scratch(context: training_context.TrainingContext) -> dict:
    config, dataset = context.config, context.dataset
    keras.utils.set_random_seed(config.seed)
    started = time.time()
    augmentation = augment.build_layers(config.augmentation, seed=config.seed)
    model = heads.build_scratch_model(config.image_size, dataset.num_classes, augmentation)
    context.compile(model, SCRATCH_LEARNING_RATE)
    history = _fit_end_to_end(context, model, "scratch", config.epochs)
    context.model = model
    return training_context.history_result(
        history, time.time() - started, context.any_worker_stops(), config.keeps_best_weights
    )
