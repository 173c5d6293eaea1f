"""Strategies 2 and 3 and the scratch baseline: training on augmented images.

Frozen + augmentation trains a head on top of the frozen base (a new one, or in strategy "all" by
default the one feature extraction trained); by default K augmented views of each training image are
pushed through the frozen part of the base once and cached (`cached_views`; epoch e trains on view e
mod K), with 0 views it trains end to end. Fine-tuning continues that model with the base's top
block unfrozen at a lower learning rate. Scratch trains a small CNN from random weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import numpy as np

from tlcore.data import augment
from tlcore.models import backbones, heads
from tlcore.training import cached_views, feature_cache, training_context

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
    train_views: feature_cache.FeatureFile  # blocks of (images, *boundary_shape) rows: one per view or flip copy
    validation: feature_cache.FeatureFile  # (images, *boundary_shape)
    train_vectors: feature_cache.FeatureFile  # the same blocks of (images, head input size) rows
    validation_vectors: feature_cache.FeatureFile
    views: int
    view_rows: np.ndarray  # (views, images): the row of each view of each image in the train files
    flip_copies: int | None  # the flip copies the views are drawn from (augment.flip_copies), None: one per view
    seconds: float
    from_cache: bool

    def view(self, index: int) -> np.ndarray:
        """The boundary activations of augmented view `index` of every training image."""
        return self.train_views.rows(self.view_rows[index])


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
    cached, seconds, from_cache = cached_views.extract_views(context, bottom, top, head_first, preprocess)
    views, copies = cached_views.views_to_cache(config), augment.flip_copies(config.augmentation)
    view_rows = feature_cache.view_rows(
        views, len(context.dataset.paths("train")), None if copies is None else len(copies), config.seed
    )
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
        views,
        view_rows,
        None if copies is None else len(copies),
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
    batches = feature_cache.RowBatches(
        train_rows, context.targets("train"), context.batch_size, seed, staged.views, staged.view_rows
    )
    return context.fit(
        model,
        stage,
        batches.dataset(),
        epochs,
        [batches.follow()],
        validation_data=feature_cache.RowBatches(
            validation_rows, context.targets("validation"), training_context.EXTRACTION_BATCH_SIZE
        ).dataset(),
        shuffle=False,  # The batches come shuffled (RowBatches.dataset).
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
                # How many flip copies of each image its views were drawn from (None: one pass per view).
                "flip_copies": context.staged.flip_copies,
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
