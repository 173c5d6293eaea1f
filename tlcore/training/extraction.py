"""Strategy 1, feature extraction: the frozen base runs once over every image; a small head trains on the
cached features.
"""

from __future__ import annotations

import time

import keras

from tlcore.data import pipeline
from tlcore.data.dataset import fingerprint
from tlcore.models import backbones, heads
from tlcore.models.inference import inference_function
from tlcore.training import cached_views, feature_cache, training_context


def extract_to_file(
    context: training_context.TrainingContext,
    forward,
    paths: list[str],
    writer: feature_cache.FeatureWriter | tuple[feature_cache.FeatureWriter, ...],
    split: str | None = None,
    check_stop: bool = True,
) -> None:
    """Streams images from their files through a forward pass, batch by batch, into a FeatureWriter (or several).

    The decoders fill the next batches in parallel with the forward passes (`data.decoded_batches`),
    and each batch's outputs go straight to disk: memory holds a few batches, however many images
    there are. A stop request ends it after the current batch; partial features are never cached.
    With a run, the images done so far go to its progress (phase "extracting") when it begins, at
    most every PROGRESS_INTERVAL_SECONDS after that, and when the last image is done.

    Args:
        context: the run's context (config, data set, run folder, stop requests).
        forward: the extractor's compiled forward pass (`inference_function`), RGB pixels in
            [0, 255] -> feature maps (or a list of outputs, one per writer); built once and reused for
            every split.
        paths: the image files, in the order the rows are written.
        writer: receives one row per image (or a tuple of writers, one per output of `forward`);
            closed when all are written, discarded otherwise.
        split: the split these images are ("train", "validation"), named in the progress.
        check_stop: whether to check for a stop request after each batch. When several workers train
            together, the check is an all-reduce every worker must make (`any_worker_stops`): False
            when some worker reads the features from its cache instead.
    """
    total = len(paths)
    reported = 0.0
    writers = writer if isinstance(writer, tuple) else (writer,)

    def report(done: int) -> None:
        nonlocal reported
        if context.run is None:
            return
        reported = time.monotonic()
        context.run.set_progress(
            {
                "stage": "feature_extraction",
                "phase": "extracting",
                "split": split,
                "images": done,
                "total": total,
                "time": time.time(),
            }
        )

    try:
        # At once: the first batch also compiles the forward pass, which takes a while.
        report(0)
        batches = pipeline.decoded_batches(paths, context.config.image_size, training_context.EXTRACTION_BATCH_SIZE)
        bar = context.task(f"[feature_extraction] {split or 'images'} features", total)
    except BaseException:
        for each in writers:
            each.discard()  # "Discarded otherwise": also when the pass could not start.
        raise
    try:
        for batch in batches:
            outputs = forward(batch)
            for each, rows in zip(writers, outputs if len(writers) > 1 else (outputs,), strict=True):
                each.write(rows)
            bar.advance(len(batch))
            if check_stop and context.any_worker_stops():
                raise training_context.StageStopped()
            done = writers[0].written
            if done == total or time.monotonic() - reported >= training_context.PROGRESS_INTERVAL_SECONDS:
                report(done)
        for each in writers:
            each.close()
    except BaseException:
        for each in writers:
            each.discard()
        raise
    finally:
        bar.close()
        batches.close()  # Stops the decoders at once when the loop ended early.


def extract_features(
    context: training_context.TrainingContext,
    base: keras.Model,
    preprocess,
    splits: tuple[str, ...] = ("train", "validation"),
    boundary: bool = False,
) -> tuple[dict, float, bool]:
    """Feature maps of the images of some splits, from the cache when possible.

    Args:
        context: the run's context (config, data set, feature cache folder).
        base: the frozen backbone.
        preprocess: its preprocessing layer.
        splits: the splits to extract: training needs train and validation; the data explorer
            (`tlcore.insight.explore`) every split of the data set, test included.
        boundary: also keep the activations entering the base's top block (`heads.split_base`),
            from the same pass, beside the features ("<split>_boundary.npy"): frozen + augmentation
            reads them when the photos as they are are among its views (`cached_views.keeps_boundary_activations`),
            instead of a pass of its own.

    Returns:
        (split -> FeatureFile, seconds spent, whether they all came from the cache).
    """
    config, dataset = context.config, context.dataset
    started = time.time()
    directory = context.feature_directory()
    data_fingerprint = fingerprint(dataset)  # Stats every file: once per call.
    key = feature_cache.features_key(config, data_fingerprint)
    inputs = keras.Input(shape=(config.image_size, config.image_size, 3), name="image")
    if boundary:
        # One pass, two outputs: the same activations and features as separate passes of the bottom
        # and of the whole base (test_frozen_augmented_reads_the_photos_activations_from_feature_extractions_pass).
        bottom, top = heads.split_base(base, config.backbone)
        activations = bottom(preprocess(inputs), training=False)
        extractor = keras.Model(inputs, [activations, top(activations, training=False)], name="extractor")
        boundary_shape = tuple(bottom.output.shape[1:])
    else:
        extractor = keras.Model(inputs, base(preprocess(inputs), training=False), name="extractor")
    # Described before any file is written: a stop between the splits leaves the first split's files, which
    # the data set library finds through this description when the data set is removed.
    feature_cache.describe(
        directory,
        key,
        {
            "backbone": config.backbone,
            "weights": config.weights,
            "alpha": config.alpha,
            "image_size": config.image_size,
            "data": dataset.root,
            "data_fingerprint": data_fingerprint,
        },
    )
    forward = None  # Compiled on the first split that is not cached, reused for the next.
    result, from_cache = {}, True
    for split in splits:
        count = len(dataset.paths(split))
        cached = feature_cache.load(directory, key, split, count)
        # The chief may have these features from an earlier run; the other workers never do (see
        # extract_to_file's check_stop).
        every_worker_extracts = context.every_worker(cached is None)
        if cached is not None:
            result[split] = cached
            continue
        from_cache = False
        context.say(f"[feature_extraction] extracting {split} features ({count} images)")
        # One pass: stream from the files, decoding in parallel with the forward passes.
        forward = forward or inference_function(extractor, jit_compile=config.jit_compile)
        path = directory / key / f"{split}.npy"
        writer = feature_cache.FeatureWriter(path, count, base.output.shape[1:])
        if boundary:
            kept = feature_cache.FeatureWriter(directory / key / f"{split}_boundary.npy", count, boundary_shape)
            writer = (kept, writer)
        extract_to_file(context, forward, dataset.paths(split), writer, split=split, check_stop=every_worker_extracts)
        result[split] = feature_cache.FeatureFile(path)
    return result, time.time() - started, from_cache


def run_feature_extraction(context: training_context.TrainingContext) -> dict:
    config, dataset = context.config, context.dataset
    keras.utils.set_random_seed(config.seed)
    started = time.time()
    base = heads.build_frozen_base(config)
    preprocess = backbones.preprocessing_layer(config.backbone)
    feature_maps, extraction_seconds, from_cache = extract_features(
        context, base, preprocess, boundary=cached_views.keeps_boundary_activations(config)
    )
    head = heads.build_head(feature_maps["train"].shape[1:], dataset.num_classes, config)
    context.compile(head, config.learning_rate)
    if context.any_worker_stops():
        raise training_context.StageStopped()
    # Read back from disk batch by batch: the features never have to fit in memory.
    batches = feature_cache.RowBatches(feature_maps["train"], context.targets("train"), context.batch_size, config.seed)
    history = context.fit(
        head,
        "feature_extraction",
        batches.dataset(),
        config.epochs,
        [batches.follow()],
        validation_data=feature_cache.RowBatches(
            feature_maps["validation"], context.targets("validation"), training_context.EXTRACTION_BATCH_SIZE
        ).dataset(),
        shuffle=False,  # The batches come shuffled (RowBatches.dataset).
    )
    context.feature_head = head
    context.model = heads.assemble(config.image_size, base, head, preprocess)
    heads.compile_model(context.model, dataset.num_classes, config.optimizer, config.learning_rate)
    result = training_context.history_result(
        history, time.time() - started, context.any_worker_stops(), config.keeps_best_weights
    )
    result.update({"extraction_seconds": extraction_seconds, "features_from_cache": from_cache})
    return result
