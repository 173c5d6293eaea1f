"""The transfer-learning strategies, and the scratch baseline.

1. feature_extraction: run the frozen base once over train and validation images, keep the
   feature maps, train the head (Flatten or pooling, Dense, Dropout, output) on them.
2. frozen_augmented: frozen base + a new head, trained end to end on augmented images.
3. fine_tuning: continue from 2 with the base's top block unfrozen, at a lower learning rate.
4. scratch: a small CNN trained from scratch with the same augmentation, as a baseline.

Every stage ends with a complete model (Input -> [augmentation] -> Preprocess -> base -> head)
that takes RGB pixels in [0, 255], so prediction needs nothing but the saved file.
Keras rules followed (from its transfer-learning guide): freeze with `trainable = False`, call the
base with `training=False` so BatchNorm stays in inference mode, recompile after any change to
`trainable`, and fine-tune only after the head has converged, at a low learning rate.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from tlcore import augment, backbones, data, features
from tlcore.callbacks import PrintProgress, RunRecorder, StopOnRequest
from tlcore.config import TrainConfig
from tlcore.inference import augmented_inference_function, inference_function

# Above this many bytes of decoded training images, stream from files instead of holding them.
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3
EXTRACTION_BATCH_SIZE = 32
# progress.json is a file write: extraction reports its count at most about once a second.
PROGRESS_INTERVAL_SECONDS = 1.0
# The classic small CNN from scratch (Deep Learning with Python) learns at RMSprop 1e-4.
SCRATCH_LEARNING_RATE = 1e-4

STRATEGY_DESCRIPTIONS = {
    "feature_extraction": "Run the frozen pretrained base once over every image, then train only a small "
    "classifier on the cached features: fastest, no augmentation.",
    "frozen_augmented": "Keep the pretrained base frozen and train a new classifier on top of it on randomly "
    "augmented images (by default K augmented views cached through the frozen base once; 0 views trains end "
    "to end): slower, generalises better.",
    "fine_tuning": "After frozen + augmentation, unfreeze the base's top block and keep training at a "
    "lower learning rate, so the top features adapt to your classes.",
    "scratch": "A small CNN trained from random weights with the same augmentation: the baseline that "
    "shows what transfer learning buys.",
    "all": "Feature extraction, then frozen + augmentation, then fine-tuning, in sequence (the classic "
    "notebook's schedule).",
}


class StageStopped(Exception):
    """Raised between stages when the run was asked to stop."""


def output_layer(num_classes: int) -> keras.layers.Dense:
    """One sigmoid unit for two classes, a softmax over classes otherwise.

    Always float32, also under a mixed-precision policy: a softmax or sigmoid in float16 loses
    small probabilities and makes the loss unstable (Keras' mixed-precision guide).
    """
    if num_classes == 2:
        return keras.layers.Dense(1, activation="sigmoid", name="output", dtype="float32")
    return keras.layers.Dense(num_classes, activation="softmax", name="output", dtype="float32")


def class_weights_for(labels: np.ndarray, num_classes: int, mode: str) -> dict[int, float] | None:
    """Weights inversely proportional to class counts (mean weight 1), as scikit-learn's "balanced".

    Args:
        labels: the training labels.
        num_classes: the number of classes.
        mode: "auto" (only when the imbalance reaches `config.IMBALANCE_RATIO`), "balanced" or "none".

    Returns:
        A Keras `class_weight` dict, or None for unweighted training.
    """
    from tlcore.config import IMBALANCE_RATIO

    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    if mode == "none" or counts.min() == 0:
        return None
    if mode == "auto" and counts.max() < IMBALANCE_RATIO * counts.min():
        return None
    return {index: float(counts.sum() / (num_classes * count)) for index, count in enumerate(counts)}


def build_head(feature_shape: tuple[int, ...], num_classes: int, config: TrainConfig) -> keras.Model:
    """The classifier on top of a feature map: Flatten (or pooling), Dense, Dropout, output.

    Args:
        feature_shape: the base's output shape without the batch axis, e.g. (4, 4, 512).
        num_classes: the number of classes.
        config: head, dense_units and dropout are read from it.

    Returns:
        A `keras.Model` named "head".
    """
    inputs = keras.Input(shape=feature_shape, name="features")
    if config.head == "flatten":
        x = keras.layers.Flatten(name="flatten")(inputs)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(inputs)
    x = keras.layers.Dense(config.dense_units, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    return keras.Model(inputs, output_layer(num_classes)(x), name="head")


def build_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    raise ValueError(f"Unknown optimizer {name!r}. Expected 'rmsprop' or 'adam'.")


def supports_xla(model: keras.layers.Layer) -> bool:
    """Whether every layer of a model, nested models included, can be compiled with XLA."""
    inner = getattr(model, "layers", [])
    return bool(getattr(model, "supports_jit", True)) and all(supports_xla(layer) for layer in inner)


def compile_model(model: keras.Model, num_classes: int, optimizer: str, learning_rate: float,
                  jit_compile: bool = False) -> None:
    """Binary cross-entropy for two classes, categorical cross-entropy for more.

    Args:
        model: the model to compile.
        num_classes: the number of classes.
        optimizer: "rmsprop" or "adam".
        learning_rate: the optimizer's learning rate.
        jit_compile: train with XLA, if every layer supports it (see `supports_xla`).
    """
    loss = "binary_crossentropy" if num_classes == 2 else "categorical_crossentropy"
    # Under "mixed_float16" Keras wraps the optimizer in a LossScaleOptimizer itself.
    model.compile(optimizer=build_optimizer(optimizer, learning_rate), loss=loss, metrics=["accuracy"],
                  jit_compile=bool(jit_compile and supports_xla(model)))


def assemble(image_size: int, base: keras.Model, head: keras.Model, preprocess, augmentation=None) -> keras.Model:
    """The full classifier: RGB pixels in [0, 255] -> [augmentation] -> preprocessing -> base -> head."""
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = augmentation(inputs) if augmentation is not None else inputs
    x = preprocess(x)
    x = base(x, training=False)  # BatchNorm in inference mode, also once unfrozen.
    return keras.Model(inputs, head(x), name="classifier")


def build_scratch_model(image_size: int, num_classes: int, augmentation) -> keras.Model:
    """The classic small convnet (4 conv blocks, Dropout 0.5, Dense 512), trained from scratch."""
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = augmentation(inputs)
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(x)
    for index, filters in enumerate((32, 64, 128, 128)):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{index + 1}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{index + 1}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    x = keras.layers.Dense(512, activation="relu", name="dense")(x)
    return keras.Model(inputs, output_layer(num_classes)(x), name="scratch_cnn")


def unfreeze_top_block(base: keras.Model, backbone: str) -> list[str]:
    """Makes the base's top block trainable (BatchNorm layers stay frozen); returns those layers' names."""
    top_block = set(backbones.top_block_layer_names(base, backbone))
    base.trainable = True
    unfrozen = []
    for layer in base.layers:
        trainable = layer.name in top_block and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        if trainable and layer.weights:
            unfrozen.append(layer.name)
    return unfrozen


def layer_table(model: keras.Model) -> list[dict]:
    """Per layer of a base model: name, type, parameters, trainable (for the layer-stack view)."""
    rows = []
    for layer in model.layers:
        rows.append(
            {
                "name": layer.name,
                "type": type(layer).__name__,
                "parameters": int(sum(np.prod(weight.shape) for weight in layer.weights)),
                "trainable": bool(layer.trainable and layer.trainable_weights),
            }
        )
    return rows


def count_parameters(model: keras.Model) -> dict:
    trainable = int(sum(np.prod(weight.shape) for weight in model.trainable_weights))
    total = int(sum(np.prod(weight.shape) for weight in model.weights))
    return {"trainable": trainable, "frozen": total - trainable, "total": total}


@dataclass
class TrainingContext:
    """What the stages of one run share: the data, the run folder and the models so far."""

    config: TrainConfig
    dataset: data.DatasetScan
    run: object = None
    stream: object = None
    runs_dir: str | None = None
    images: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    frozen_epochs: int = 0
    frozen_model: keras.Model | None = None
    frozen_base: keras.Model | None = None
    model: keras.Model | None = None
    staged: "StagedModels | None" = None
    temporary_directory: str | None = None
    replicas: int = 1

    @property
    def batch_size(self) -> int:
        """The global batch size (all replicas together)."""
        from tlcore import distribute

        return distribute.scaled(self.config, self.replicas)[0]

    def learning_rate(self, rate: float) -> float:
        """A configured learning rate, scaled for the replica count."""
        from tlcore import distribute

        return rate * distribute.scaled(self.config, self.replicas)[1]

    def compile(self, model: keras.Model, rate: float) -> None:
        """Compiles a model to train at a configured learning rate (scaled for the replicas), with
        the run's optimizer, its loss for the number of classes and XLA when the run asks for it."""
        compile_model(model, self.dataset.num_classes, self.config.optimizer, self.learning_rate(rate),
                      self.config.jit_compile)

    def callbacks(self, stage: str, epochs: int) -> list:
        items = []
        # Fine-tuning continues the frozen model, so its curves continue that model's epoch count;
        # every other stage trains a new model from epoch 1.
        offset = self.frozen_epochs if stage == "fine_tuning" else 0
        if self.run is not None:
            items += [RunRecorder(self.run, stage, offset, epochs), StopOnRequest(self.run)]
        if self.stream is not None:
            items.append(PrintProgress(stage, self.stream, offset))
        if self.config.early_stopping_patience:
            items.append(keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=self.config.early_stopping_patience, restore_best_weights=True))
        return items

    def class_weights(self) -> dict[int, float] | None:
        """Keras `class_weight` for the training split, or None when classes are not weighted."""
        return class_weights_for(self.dataset.labels("train"), self.dataset.num_classes, self.config.class_weight)

    def stop_requested(self) -> bool:
        return self.run is not None and self.run.stop_requested()

    def feature_directory(self) -> Path:
        """The feature cache of the runs folder, or a temporary folder removed by `close`."""
        if self.runs_dir is not None:
            return features.cache_dir(self.runs_dir)
        if self.temporary_directory is None:
            self.temporary_directory = tempfile.mkdtemp(prefix="tlcore-features-")
        return Path(self.temporary_directory)

    def close(self) -> None:
        if self.temporary_directory is not None:
            shutil.rmtree(self.temporary_directory, ignore_errors=True)
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
                yield decoded[start:start + EXTRACTION_BATCH_SIZE].astype("float32")
            return
        for batch in data.decoded_batches(self.dataset.paths(split), self.config.image_size, EXTRACTION_BATCH_SIZE):
            yield batch.astype("float32")

    def say(self, message: str) -> None:
        if self.stream is not None:
            print(message, file=self.stream, flush=True)

    def targets(self, split: str) -> np.ndarray:
        return data.encode_labels(self.dataset.labels(split), self.dataset.num_classes)

    def decoded(self, split: str) -> np.ndarray:
        """Training images of a split decoded once into memory (uint8)."""
        if split not in self.images:
            self.images[split] = data.load_images(self.dataset.paths(split), self.config.image_size)
        return self.images[split]

    def image_pipeline(self, split: str, shuffle: bool):
        """(images, targets) batches for end-to-end training; decoded once when they fit in memory."""
        import tensorflow as tf

        config = self.config
        paths = self.dataset.paths(split)
        size_bytes = len(paths) * config.image_size**2 * 3
        if size_bytes > IN_MEMORY_LIMIT_BYTES:
            return data.make_dataset(paths, self.dataset.labels(split), self.dataset.num_classes,
                                     config.image_size, self.batch_size, shuffle=shuffle, seed=config.seed)
        pipeline = tf.data.Dataset.from_tensor_slices((self.decoded(split), self.targets(split)))
        if shuffle:
            pipeline = pipeline.shuffle(len(paths), seed=config.seed, reshuffle_each_iteration=True)
        pipeline = pipeline.batch(self.batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
        return pipeline.prefetch(tf.data.AUTOTUNE)


def _history_result(history: keras.callbacks.History, seconds: float, stopped: bool,
                    restored_best: bool = False) -> dict:
    """A stage's results from its Keras history.

    With early stopping the best weights (lowest validation loss) were restored, so the final
    model's metrics are that epoch's, not the last one's.
    """
    values = history.history
    validation = values.get("val_accuracy") or []
    losses = values.get("val_loss") or []
    final = int(np.argmin(losses)) if restored_best and losses else len(validation) - 1
    return {
        "val_accuracy": float(validation[final]) if validation else None,
        "val_loss": float(losses[final]) if losses else None,
        "best_val_accuracy": float(max(validation)) if validation else None,
        "accuracy": float(values["accuracy"][final]) if values.get("accuracy") else None,
        "epochs": len(validation),
        "final_epoch": final + 1 if validation else None,
        "seconds": seconds,
        "stopped": stopped,
        # Whether Keras really compiled this stage's training step with XLA (see compile_model).
        "jit_compile": bool(getattr(history.model, "jit_compile", False)),
    }


def build_frozen_base(config: TrainConfig) -> keras.Model:
    """The config's backbone with `trainable = False`."""
    base = backbones.build_base(config.backbone, config.image_size, config.weights, config.alpha)
    base.trainable = False
    return base


def extract_to_file(context: TrainingContext, forward, paths: list[str], writer: features.FeatureWriter,
                    split: str | None = None) -> None:
    """Streams images from their files through a forward pass, batch by batch, into a FeatureWriter.

    The decoders fill the next batches in parallel with the forward passes (`data.decoded_batches`),
    and each batch's outputs go straight to disk: memory holds a few batches, however many images
    there are. A stop request ends it after the current batch; partial features are never cached.
    With a run, the images done so far go to its progress (phase "extracting") when it begins, at
    most every PROGRESS_INTERVAL_SECONDS after that, and when the last image is done.

    Args:
        context: the run's context (config, data set, run folder, stop requests).
        forward: the extractor's compiled forward pass (`inference_function`), RGB pixels in
            [0, 255] -> feature maps; built once and reused for every split.
        paths: the image files, in the order the rows are written.
        writer: receives one row per image; closed when all are written, discarded otherwise.
        split: the split these images are ("train", "validation"), named in the progress.
    """
    total = len(paths)
    reported = 0.0

    def report(done: int) -> None:
        nonlocal reported
        if context.run is None:
            return
        reported = time.monotonic()
        context.run.set_progress({"stage": "feature_extraction", "phase": "extracting", "split": split,
                                  "images": done, "total": total, "time": time.time()})

    # At once: the first batch also compiles the forward pass, which takes a while.
    report(0)
    batches = data.decoded_batches(paths, context.config.image_size, EXTRACTION_BATCH_SIZE)
    try:
        for batch in batches:
            writer.write(forward(batch))
            if context.stop_requested():
                raise StageStopped()
            if writer.written == total or time.monotonic() - reported >= PROGRESS_INTERVAL_SECONDS:
                report(writer.written)
        writer.close()
    except BaseException:
        writer.discard()
        raise
    finally:
        batches.close()  # Stops the decoders at once when the loop ended early.


def extract_features(context: TrainingContext, base: keras.Model, preprocess) -> tuple[dict, float, bool]:
    """Feature maps of the train and validation images, from the cache when possible.

    Returns:
        (split -> FeatureFile, seconds spent, whether they all came from the cache).
    """
    config, dataset = context.config, context.dataset
    started = time.time()
    directory = context.feature_directory()
    fingerprint = data.fingerprint(dataset)  # Stats every file: once per call.
    key = features.cache_key(config.backbone, config.weights, config.alpha, config.image_size,
                             fingerprint, extra=[config.precision])
    inputs = keras.Input(shape=(config.image_size, config.image_size, 3), name="image")
    extractor = keras.Model(inputs, base(preprocess(inputs), training=False), name="extractor")
    forward = None  # Compiled on the first split that is not cached, reused for the next.
    result, from_cache = {}, True
    for split in ("train", "validation"):
        count = len(dataset.paths(split))
        cached = features.load(directory, key, split, count)
        if cached is not None:
            result[split] = cached
            continue
        from_cache = False
        context.say(f"[feature_extraction] extracting {split} features ({count} images)")
        path = directory / key / f"{split}.npy"
        # One pass: stream from the files, decoding in parallel with the forward passes.
        forward = forward or inference_function(extractor, jit_compile=config.jit_compile)
        extract_to_file(context, forward, dataset.paths(split),
                        features.FeatureWriter(path, count, base.output.shape[1:]), split=split)
        result[split] = features.FeatureFile(path)
    features.describe(directory, key, {
        "backbone": config.backbone, "weights": config.weights, "alpha": config.alpha, "image_size": config.image_size,
        "data": dataset.root, "fingerprint": fingerprint})
    return result, time.time() - started, from_cache


def run_feature_extraction(context: TrainingContext) -> dict:
    config, dataset = context.config, context.dataset
    keras.utils.set_random_seed(config.seed)
    started = time.time()
    base = build_frozen_base(config)
    preprocess = backbones.preprocessing_layer(config.backbone)
    feature_maps, extraction_seconds, from_cache = extract_features(context, base, preprocess)
    head = build_head(feature_maps["train"].shape[1:], dataset.num_classes, config)
    context.compile(head, config.learning_rate)
    if context.stop_requested():
        raise StageStopped()
    # Read back from disk batch by batch: the features never have to fit in memory.
    batches = features.RowBatches(feature_maps["train"], context.targets("train"), context.batch_size, config.seed)
    history = head.fit(
        batches,
        validation_data=features.RowBatches(feature_maps["validation"], context.targets("validation"),
                                            EXTRACTION_BATCH_SIZE),
        epochs=config.epochs, verbose=0, class_weight=context.class_weights(),
        callbacks=context.callbacks("feature_extraction", config.epochs) + [batches.follow()],
    )
    context.model = assemble(config.image_size, base, head, preprocess)
    compile_model(context.model, dataset.num_classes, config.optimizer, config.learning_rate)
    result = _history_result(history, time.time() - started, context.stop_requested(),
                             bool(config.early_stopping_patience))
    result.update({"extraction_seconds": extraction_seconds, "features_from_cache": from_cache})
    return result


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
    train_views: features.FeatureFile  # views blocks of (images, *boundary_shape) rows
    validation: features.FeatureFile  # (images, *boundary_shape)
    train_vectors: features.FeatureFile  # views blocks of (images, head input size) rows
    validation_vectors: features.FeatureFile
    views: int
    seconds: float
    from_cache: bool

    def view(self, index: int) -> np.ndarray:
        """The boundary activations of augmented view `index` of every training image."""
        count = len(self.train_views) // self.views
        return self.train_views.rows(np.arange(index * count, (index + 1) * count))


def split_base(base: keras.Model, backbone: str) -> tuple[keras.Model, keras.Model]:
    """Splits a base into (bottom, top) at the input of its top block; top(bottom(x)) == base(x)."""
    names = [layer.name for layer in base.layers]
    first_top = backbones.top_block_layer_names(base, backbone)[0]
    boundary = base.get_layer(names[names.index(first_top) - 1]).output
    bottom = keras.Model(base.input, boundary, name="bottom")
    top = keras.Model(boundary, base.output, name="top_block")
    return bottom, top


def split_head(head: keras.Model) -> tuple[keras.layers.Layer, keras.Model]:
    """(the head's parameter-free first layer, a model of the rest sharing the head's layers)."""
    first = head.layers[1]  # Flatten or GlobalAveragePooling2D, after the Input.
    vector = keras.Input(shape=first.output.shape[1:], name="head_input")
    x = vector
    for layer in head.layers[2:]:
        x = layer(x)
    return first, keras.Model(vector, x, name="head_tail")


def views_to_cache(config: TrainConfig) -> int:
    """How many of the config's `augmented_views` its run reads, and so caches.

    Epoch e of a cached stage trains on view e mod K, and each stage counts its epochs from 0: a
    run of fewer epochs than K never reads the views past its epoch count. Each view is seeded by
    its index, so caching only those trains exactly as caching all K would, sooner (a 2-epoch run
    caches 2 views, not 10).
    """
    stages = stages_for(config.strategy)
    epochs = [config.epochs] if "frozen_augmented" in stages else []
    if "fine_tuning" in stages:
        epochs.append(config.fine_tuning_epochs)
    return min(config.augmented_views, max(epochs, default=config.augmented_views))


def extract_views(context: TrainingContext, bottom: keras.Model, top: keras.Model, head_first, preprocess) -> tuple:
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
    fingerprint = data.fingerprint(dataset)  # Stats every file: once per call.
    views = views_to_cache(config)
    key = features.cache_key(config.backbone, config.weights, config.alpha, config.image_size, fingerprint,
                             extra=[boundary_shape, config.head, config.augmentation.to_dict(), views,
                                    config.seed, config.precision])
    train_count, validation_count = len(dataset.paths("train")), len(dataset.paths("validation"))
    counts = {"train_views": views * train_count, "train_vectors": views * train_count,
              "validation_boundary": validation_count, "validation_vectors": validation_count}
    cached = {name: features.load(directory, key, name, count) for name, count in counts.items()}
    if all(value is not None for value in cached.values()):
        return cached, time.time() - started, True
    size = config.image_size
    inputs = keras.Input(shape=(size, size, 3), name="image")
    bottom_model = keras.Model(inputs, bottom(preprocess(inputs), training=False))
    to_boundary = inference_function(bottom_model, jit_compile=config.jit_compile)
    boundary = keras.Input(shape=boundary_shape, name="boundary")
    to_vector = inference_function(keras.Model(boundary, head_first(top(boundary, training=False))),
                                   jit_compile=config.jit_compile)
    writers = {name: features.FeatureWriter(directory / key / f"{name}.npy", count,
                                            vector_shape if name.endswith("vectors") else boundary_shape)
               for name, count in counts.items()}
    try:
        passes = [(view, "train") for view in range(views)] + [(None, "validation")]
        for view, split in passes:
            augmented_boundary = None
            if view is not None:
                context.say(f"[frozen_augmented] caching augmented view {view + 1}/{views}")
                if context.run is not None:
                    context.run.set_progress({"stage": "frozen_augmented", "phase": "caching", "view": view + 1,
                                              "views": views, "stage_elapsed": time.time() - started,
                                              "time": time.time()})
                # Each view has its own seed, so the K views differ and a rerun draws the same ones.
                augmentation = augment.build_layers(config.augmentation, seed=config.seed + 7919 * (view + 1))
                augmented_boundary = _augmented_forward(bottom_model, to_boundary, augmentation, config.jit_compile)
            prefix = "train_" if split == "train" else "validation_"
            for batch in context.image_batches(split):
                activations = (augmented_boundary or to_boundary)(batch)
                writers[prefix + ("views" if split == "train" else "boundary")].write(activations)
                writers[prefix + "vectors"].write(to_vector(activations))
                if context.stop_requested():
                    raise StageStopped()  # Partial activations are never cached.
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.discard()
        raise
    features.describe(directory, key, {"backbone": config.backbone, "image_size": config.image_size,
                                       "head": config.head, "views": views,
                                       "boundary": list(boundary_shape), "fingerprint": fingerprint})
    return ({name: features.FeatureFile(directory / key / f"{name}.npy") for name in counts},
            time.time() - started, False)


def _augmented_forward(model: keras.Model, forward, augmentation, jit_compile: bool):
    """`forward(augmentation(x))` with the augmentation in training mode, as one graph when possible.

    Under XLA the augmentation (which XLA cannot compile) runs eagerly before the compiled forward
    pass; otherwise both run in one `tf.function`, with the same outputs (`inference.augmented_inference_function`).
    Either way the layers are called directly: inside `predict` Keras would switch them off.
    """
    if jit_compile:
        return lambda batch: forward(augmentation(batch, training=True))
    return augmented_inference_function(model, augmentation)


def build_staged(context: TrainingContext) -> StagedModels:
    config, dataset = context.config, context.dataset
    base = build_frozen_base(config)
    preprocess = backbones.preprocessing_layer(config.backbone)
    bottom, top = split_base(base, config.backbone)
    head = build_head(base.output.shape[1:], dataset.num_classes, config)
    head_first, tail = split_head(head)
    cached, seconds, from_cache = extract_views(context, bottom, top, head_first, preprocess)
    boundary = keras.Input(shape=bottom.output.shape[1:], name="boundary")
    trainer = keras.Model(boundary, head(top(boundary, training=False)), name="staged_classifier")
    return StagedModels(base, top, head, tail, trainer, cached["train_views"], cached["validation_boundary"],
                        cached["train_vectors"], cached["validation_vectors"], views_to_cache(config), seconds,
                        from_cache)


def _fit_staged(context: TrainingContext, stage: str, epochs: int, learning_rate: float, seed: int):
    """Frozen + augmentation trains the head's tail on cached vectors; fine-tuning trains the top
    block and the head on cached boundary activations."""
    staged = context.staged
    if stage == "fine_tuning":
        model, train_rows, validation_rows = staged.trainer, staged.train_views, staged.validation
    else:
        model, train_rows, validation_rows = staged.tail, staged.train_vectors, staged.validation_vectors
    context.compile(model, learning_rate)
    batches = features.RowBatches(train_rows, context.targets("train"), context.batch_size, seed, staged.views)
    return model.fit(
        batches,
        validation_data=features.RowBatches(validation_rows, context.targets("validation"), EXTRACTION_BATCH_SIZE),
        epochs=epochs, verbose=0, class_weight=context.class_weights(),
        callbacks=context.callbacks(stage, epochs) + [batches.follow()],
    )


def _final_model(context: TrainingContext, staged: StagedModels) -> keras.Model:
    config, dataset = context.config, context.dataset
    augmentation = augment.build_layers(config.augmentation, seed=config.seed)
    model = assemble(config.image_size, staged.base, staged.head, backbones.preprocessing_layer(config.backbone),
                     augmentation)
    compile_model(model, dataset.num_classes, config.optimizer, config.learning_rate)
    return model


def _fit_end_to_end(context: TrainingContext, model: keras.Model, stage: str, epochs: int):
    """Trains a whole model on images, augmented anew every epoch by the model's own layers."""
    return model.fit(
        context.image_pipeline("train", shuffle=True),
        validation_data=context.image_pipeline("validation", shuffle=False),
        epochs=epochs, verbose=0, shuffle=False,  # The pipeline shuffles.
        class_weight=context.class_weights(), callbacks=context.callbacks(stage, epochs),
    )


def run_frozen_augmented(context: TrainingContext) -> dict:
    config, dataset = context.config, context.dataset
    keras.utils.set_random_seed(config.seed)
    started = time.time()
    if config.augmented_views:
        context.staged = build_staged(context)
        if context.stop_requested():
            raise StageStopped()
        history = _fit_staged(context, "frozen_augmented", config.epochs, config.learning_rate, config.seed)
        context.model = _final_model(context, context.staged)
        result = _history_result(history, time.time() - started, context.stop_requested(),
                             bool(config.early_stopping_patience))
        result.update({"path": "cached_views", "views": context.staged.views,
                       "extraction_seconds": context.staged.seconds, "features_from_cache": context.staged.from_cache})
        return result
    base = build_frozen_base(config)
    preprocess = backbones.preprocessing_layer(config.backbone)
    head = build_head(base.output.shape[1:], dataset.num_classes, config)
    augmentation = augment.build_layers(config.augmentation, seed=config.seed)
    model = assemble(config.image_size, base, head, preprocess, augmentation)
    context.compile(model, config.learning_rate)
    history = _fit_end_to_end(context, model, "frozen_augmented", config.epochs)
    context.frozen_model, context.frozen_base, context.model = model, base, model
    result = _history_result(history, time.time() - started, context.stop_requested(),
                             bool(config.early_stopping_patience))
    result["path"] = "end_to_end"
    return result


def run_fine_tuning(context: TrainingContext) -> dict:
    config = context.config
    if context.staged is None and context.frozen_model is None:
        raise RuntimeError("fine_tuning needs the model of frozen_augmented; run that stage first.")
    keras.utils.set_random_seed(config.seed + 1)
    started = time.time()
    base = context.staged.base if context.staged is not None else context.frozen_base
    unfrozen = unfreeze_top_block(base, config.backbone)
    context.say(f"[fine_tuning] unfrozen: {', '.join(unfrozen)}")
    if context.staged is not None:
        # Recompiled inside _fit_staged, after trainable changed.
        history = _fit_staged(context, "fine_tuning", config.fine_tuning_epochs, config.fine_tuning_learning_rate,
                              config.seed + 1)
        context.model = _final_model(context, context.staged)
        path = "cached_views"
    else:
        model = context.frozen_model
        context.compile(model, config.fine_tuning_learning_rate)
        history = _fit_end_to_end(context, model, "fine_tuning", config.fine_tuning_epochs)
        context.model = model
        path = "end_to_end"
    result = _history_result(history, time.time() - started, context.stop_requested(),
                             bool(config.early_stopping_patience))
    result.update({"unfrozen_layers": unfrozen, "path": path})
    return result


def run_scratch(context: TrainingContext) -> dict:
    config, dataset = context.config, context.dataset
    keras.utils.set_random_seed(config.seed)
    started = time.time()
    augmentation = augment.build_layers(config.augmentation, seed=config.seed)
    model = build_scratch_model(config.image_size, dataset.num_classes, augmentation)
    context.compile(model, SCRATCH_LEARNING_RATE)
    history = _fit_end_to_end(context, model, "scratch", config.epochs)
    context.model = model
    return _history_result(history, time.time() - started, context.stop_requested(),
                             bool(config.early_stopping_patience))


STAGES = {
    "feature_extraction": run_feature_extraction,
    "frozen_augmented": run_frozen_augmented,
    "fine_tuning": run_fine_tuning,
    "scratch": run_scratch,
}


def stages_for(strategy: str) -> tuple[str, ...]:
    """The stages a strategy trains: fine-tuning starts from a frozen + augmentation stage."""
    if strategy == "all":
        return ("feature_extraction", "frozen_augmented", "fine_tuning")
    if strategy == "fine_tuning":
        return ("frozen_augmented", "fine_tuning")
    return (strategy,)


def train(config: TrainConfig, run=None, stream=None, runs_dir=None, dataset=None) -> dict:
    """Trains every stage of a config's strategy; saves the final model into the run folder.

    Args:
        config: what to train.
        run: the `tlcore.runs.Run` receiving metrics, labels, summary and model (None: nothing saved).
        stream: a text stream for progress lines (the CLI), or None.
        runs_dir: the runs folder, whose `.cache` holds reusable features.
        dataset: an already scanned data set (scanned from `config.data_dir` when None).

    Returns:
        The summary: per stage its results, plus totals.
    """
    from tlcore import distribute

    # First: splitting the CPU into logical devices must happen before TensorFlow starts up.
    strategy = distribute.strategy_for(config)
    set_determinism(not config.jit_compile)
    started = time.time()
    if dataset is None:
        dataset = data.scan(config.data_dir, config.validation_fraction, config.seed)
    context = TrainingContext(config=config, dataset=dataset, run=run, stream=stream,
                              runs_dir=str(runs_dir) if runs_dir is not None else None)
    if run is not None:
        from tlcore.runs import write_json

        write_json(run.path / "labels.json", list(dataset.classes))
        write_json(run.path / "dataset.json", dataset.to_json())
    context.say(f"Data: {dataset.root}: {dataset.num_classes} classes, "
                f"{len(dataset.paths('train'))} train / {len(dataset.paths('validation'))} validation images")
    weights = context.class_weights()
    if weights is not None:
        context.say("Classes are imbalanced: weighting the loss by class "
                    + ", ".join(f"{dataset.classes[index]}={weight:.2f}" for index, weight in weights.items()))
    context.replicas = strategy.num_replicas_in_sync
    if context.replicas > 1:
        context.say(f"Training on {context.replicas} replicas ({type(strategy).__name__}): global batch "
                    f"{context.batch_size}, learning rates x{distribute.scaled(config, context.replicas)[1]:g}")
    if config.precision != "float32" or config.jit_compile:
        context.say(f"Precision {config.precision}, XLA {'on' if config.jit_compile else 'off'}")
    policy = keras.config.dtype_policy()
    try:
        # Layers take the policy when they are built: set it for this run only.
        keras.config.set_dtype_policy(config.precision)
        # Every model is built, compiled and trained inside the scope, so its variables are mirrored.
        with strategy.scope():
            stopped = _run_stages(context)
        return _finish(context, run, started, stopped)
    finally:
        keras.config.set_dtype_policy(policy)
        context.close()


def set_determinism(enabled: bool) -> None:
    """Same seed, same result on the CPU; off with XLA, whose GPU kernels are not all deterministic
    (TensorFlow refuses them under determinism) and which is asked for speed, not reproducibility."""
    import tensorflow as tf
    from tensorflow.python.framework import config as framework_config

    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:
        framework_config.disable_op_determinism()


def _run_stages(context: TrainingContext) -> bool:
    """Trains the stages in order; returns whether the run was stopped."""
    run = context.run
    for stage in stages_for(context.config.strategy):
        if context.stop_requested():
            return True
        if run is not None:
            run.set_status(run.raw_status().get("state", "running"), stage=stage)
        context.say(f"[{stage}] starting")
        try:
            result = STAGES[stage](context)
        except StageStopped:
            return True
        context.results[stage] = result
        if stage == "frozen_augmented":
            context.frozen_epochs = result["epochs"]
        if result["stopped"]:
            return True
    return False


def _finish(context: TrainingContext, run, started: float, stopped: bool) -> dict:
    """Writes the summary and the final model (also of a stopped run) into the run folder."""
    summary = {
        "results": context.results,
        "seed": context.config.seed,
        "class_weight": context.class_weights(),
        "seconds": time.time() - started,
        "stopped": stopped,
        "classes": list(context.dataset.classes),
        "final_stage": next(reversed(context.results), None),
        "replicas": context.replicas,
        "global_batch_size": context.batch_size,
        "precision": context.config.precision,
        "jit_compile": context.config.jit_compile,
    }
    if run is not None:
        from tlcore.runs import write_json

        if context.model is not None:
            save_model(context.model, run.model_path)
            summary["parameters"] = count_parameters(context.model)
        write_json(run.path / "summary.json", summary)
    return summary


def save_model(model: keras.Model, path) -> None:
    """Saves a `.keras` file atomically (Keras needs the suffix, so the temporary name keeps it)."""
    from pathlib import Path

    path = Path(path)
    temporary = path.with_name(f".partial-{os.getpid()}-{path.name}")
    model.save(temporary)
    os.replace(temporary, path)
