"""The strategies on small real photos: run folder contract, multi-class, fine-tuning, reloading."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.helpers import cli
from tests.helpers.cli import options
from tests.helpers.runs import finished_run, train_config
from tlcore import files
from tlcore.config import AugmentationConfig, TrainConfig, stages_for
from tlcore.data import folders
from tlcore.insight import stage_steps
from tlcore.models import backbones, heads
from tlcore.runs import store, worker
from tlcore.serving import predict
from tlcore.training import cached_views, extraction, feature_cache, training_context


@pytest.fixture(scope="module")
def tiny_data(catsdogs_subset) -> Path:
    """8 train + 4 validation real photos per class of cats vs dogs."""
    return catsdogs_subset("tiny", train=8, validation=4)


@pytest.mark.parametrize("strategy", ["feature_extraction", "frozen_augmented", "fine_tuning", "scratch"])
def test_each_strategy_fills_the_run_folder(tiny_data, tmp_path, strategy):
    run = finished_run(train_config(tiny_data, strategy=strategy), tmp_path)

    assert json.loads((run.path / "config.json").read_text())["strategy"] == strategy
    assert run.status()["state"] == "done"
    assert run.labels() == ["cats", "dogs"]
    stages = [record["stage"] for record in run.metrics()]
    assert stages == list(stages_for(strategy))  # One epoch per stage here.
    for record in run.metrics():
        assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(record)
    summary = run.summary()
    assert set(summary["results"]) == set(stages_for(strategy))
    # What the summary reports is what the saved model scores on the validation photos.
    from tlcore.insight import evaluate

    assert summary["results"][strategy]["val_accuracy"] == pytest.approx(evaluate.evaluate(run).accuracy, abs=1e-6)
    model = predict.load_model_file(run.model_path)
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 1)


def test_all_runs_the_three_strategies_in_order_with_continuing_fine_tuning_epochs(tiny_data, tmp_path):
    run = finished_run(train_config(tiny_data, strategy="all", epochs=2, fine_tuning_epochs=2), tmp_path)
    records = [(record["stage"], record["epoch"]) for record in run.metrics()]
    assert records == [
        ("feature_extraction", 1),
        ("feature_extraction", 2),
        ("frozen_augmented", 1),
        ("frozen_augmented", 2),
        ("fine_tuning", 3),
        ("fine_tuning", 4),
    ]
    assert run.summary()["results"]["fine_tuning"]["unfrozen_layers"] == [
        "block5_conv1",
        "block5_conv2",
        "block5_conv3",
    ]
    # The saved model is the fine-tuned one: the accuracy the runs table gives it is what it scores.
    from tlcore.insight import evaluate

    row = store.describe(run)
    assert row["model_val_accuracy"] == pytest.approx(evaluate.evaluate(run).accuracy, abs=1e-6)
    assert row["model_val_accuracy"] == pytest.approx(run.metrics()[-1]["val_accuracy"])

    # What the run view promises when feature extraction beat the saved model (insight.stage_steps): feature
    # extraction alone, same settings and seed, trains that stage's model again, from the features cached.
    alone = finished_run(train_config(tiny_data, strategy="feature_extraction", epochs=2), tmp_path)
    assert alone.summary()["results"]["feature_extraction"]["features_from_cache"] is True

    def losses(records):
        return [(record["loss"], record["val_loss"]) for record in records if record["stage"] == "feature_extraction"]

    assert losses(alone.metrics()) == losses(run.metrics())
    # Its tie counts the photos that scored the stages (from the run's dataset.json).
    assert stage_steps.validation_images(run) == len(folders.scan(tiny_data).paths("validation"))


def test_multi_class_uses_softmax_and_categorical_targets(flat_small, tmp_path):
    config = train_config(flat_small, strategy="feature_extraction", validation_fraction=0.25)
    run = finished_run(config, tmp_path)
    predictor = predict.load(run.id, tmp_path)
    assert predictor.labels == ("cats", "dogs", "greys")
    assert predictor.model.output_shape == (None, 3)
    images = sorted((flat_small / "greys").iterdir())[:3]
    results = predict.predict_sources(predictor, images, top=3)
    for result in results:
        probabilities = [item["probability"] for item in result["top"]]
        assert len(probabilities) == 3
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        assert probabilities == sorted(probabilities, reverse=True)


def test_vgg16_fine_tuning_unfreezes_exactly_block5():
    base = backbones.build_base("vgg16", 48, weights=None)
    base.trainable = False
    unfrozen = heads.unfreeze_top_block(base, "vgg16")
    assert unfrozen == ["block5_conv1", "block5_conv2", "block5_conv3"]
    trainable = {layer.name for layer in base.layers if layer.trainable and layer.weights}
    assert trainable == set(unfrozen)
    assert len(base.trainable_weights) == 6  # 3 kernels + 3 biases.


def test_fine_tuning_keeps_batch_normalization_frozen():
    base = backbones.build_base("mobilenet_v2", 64, weights=None)
    base.trainable = False
    unfrozen = heads.unfreeze_top_block(base, "mobilenet_v2")
    assert unfrozen and all(name.startswith(("block_16", "Conv_1")) for name in unfrozen)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.trainable, layer.name


def test_saved_model_reloads_safely_with_identical_probabilities(tiny_data, tmp_path):
    config = train_config(tiny_data, strategy="frozen_augmented", augmentation=AugmentationConfig())
    # Through the worker, as the app and the CLI train: predict.load takes the model of a run that ended.
    run = finished_run(config, tmp_path)
    assert run.summary()["results"]["frozen_augmented"]["epochs"] == 1
    predictor = predict.load(run, tmp_path)
    photos = sorted((tiny_data / "validation" / "dogs").iterdir())
    from tlcore.data import pipeline

    batch = pipeline.load_images([str(path) for path in photos], 32)
    # The reloaded model (safe_mode=True) against the same file reloaded again, and against
    # predict_sources, which decodes with the same decoder as training.
    first = predictor.probabilities(batch)
    second = predict.load(run, tmp_path).probabilities(batch)
    np.testing.assert_allclose(first, second, atol=1e-5)
    via_files = predict.predict_sources(predictor, photos, top=2)
    for row, result in zip(first, via_files):
        probability_of_dogs = next(item["probability"] for item in result["top"] if item["label"] == "dogs")
        assert probability_of_dogs == pytest.approx(row[1], abs=1e-5)


def test_in_memory_model_and_saved_model_agree(tiny_data, tmp_path):
    config = train_config(tiny_data, strategy="feature_extraction")
    context_model = {}

    original_assemble = heads.assemble

    def keep(*arguments, **keyword_arguments):
        model = original_assemble(*arguments, **keyword_arguments)
        context_model["model"] = model
        return model

    heads.assemble = keep
    try:
        run = finished_run(config, tmp_path)
    finally:
        heads.assemble = original_assemble
    from tlcore.data import pipeline

    batch = pipeline.load_images(
        run_paths := [str(path) for path in sorted((tiny_data / "validation" / "cats").iterdir())], 32
    )
    before = np.asarray(context_model["model"].predict(batch.astype("float32"), verbose=0))
    after = np.asarray(predict.load(run, tmp_path).model.predict(batch.astype("float32"), verbose=0))
    assert len(run_paths) == 4
    np.testing.assert_allclose(before, after, atol=1e-5)


def test_same_seed_same_metrics(tiny_data, tmp_path):
    first = finished_run(train_config(tiny_data, strategy="frozen_augmented", epochs=2), tmp_path / "a")
    second = finished_run(train_config(tiny_data, strategy="frozen_augmented", epochs=2), tmp_path / "b")
    other = finished_run(train_config(tiny_data, strategy="frozen_augmented", epochs=2, seed=7), tmp_path / "c")
    losses = lambda run: [record["loss"] for record in run.metrics()]  # noqa: E731
    assert losses(first) == losses(second)
    assert losses(first) != losses(other)


def test_views_streamed_from_the_files_train_exactly_as_views_decoded_into_memory(tiny_data, tmp_path, monkeypatch):
    """Beyond the in-memory limit the views are decoded batch by batch from the files: same pixels, same run."""
    in_memory = finished_run(
        train_config(tiny_data, strategy="fine_tuning", epochs=2, fine_tuning_epochs=2), tmp_path / "memory"
    )
    monkeypatch.setattr(training_context, "IN_MEMORY_LIMIT_BYTES", 0)
    streamed = finished_run(
        train_config(tiny_data, strategy="fine_tuning", epochs=2, fine_tuning_epochs=2), tmp_path / "streamed"
    )
    metrics = lambda run: [(record["stage"], record["loss"], record["val_loss"]) for record in run.metrics()]  # noqa: E731
    assert len(metrics(streamed)) == 4
    assert metrics(streamed) == metrics(in_memory)


@pytest.mark.parametrize(
    ("strategy", "epochs", "fine_tuning_epochs", "views", "expected"),
    [
        ("fine_tuning", 2, 3, 10, 3),  # Each stage reads views 0 .. its epochs - 1.
        ("frozen_augmented", 2, 30, 10, 2),  # No fine-tuning stage: its epochs do not count.
        ("all", 30, 30, 10, 10),  # The seed's schedule reads every view.
        ("feature_extraction", 2, 2, 10, 10),  # No cached stage: nothing to cap.
    ],
)
def test_views_to_cache_are_the_views_the_epochs_read(strategy, epochs, fine_tuning_epochs, views, expected):
    config = TrainConfig(
        data_dir="-", strategy=strategy, epochs=epochs, fine_tuning_epochs=fine_tuning_epochs, augmented_views=views
    )
    assert cached_views.views_to_cache(config) == expected


@pytest.mark.parametrize("distributed", [False, True], ids=["one device", "mirrored"])
def test_epoch_e_of_a_stage_trains_on_view_e(tmp_path, distributed):
    """Keras opens an epoch of the data more often than it trains one (once more before training, and
    again under a distribution strategy); the views follow Keras' own epoch numbers."""
    import tensorflow as tf

    images, views = 8, 10
    writer = feature_cache.FeatureWriter(tmp_path / "views.npy", views * images, (1,))
    writer.write(np.repeat(np.arange(views, dtype="float32"), images)[:, None])  # Each row holds its view.
    writer.close()
    read = []

    class Recording(feature_cache.RowBatches):
        def __getitem__(self, index):
            rows, targets = super().__getitem__(index)
            read.append(set(rows[:, 0].tolist()))
            return rows, targets

    class EpochStart(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            read.append(("begin", epoch))

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"]) if distributed else tf.distribute.get_strategy()
    with strategy.scope():
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
    batches = Recording(
        feature_cache.FeatureFile(tmp_path / "views.npy"), np.zeros(images, "float32"), 4, seed=1, views=views
    )
    model.fit(batches.dataset(), epochs=3, verbose=0, callbacks=[EpochStart(), batches.follow()], shuffle=False)
    epoch, views_read = None, {}
    for entry in read:
        if isinstance(entry, tuple):
            epoch = entry[1]
        elif epoch is not None:
            views_read.setdefault(epoch, set()).update(entry)
    assert views_read == {0: {0.0}, 1: {1.0}, 2: {2.0}}


def test_batches_of_cached_rows_train_as_keras_trains_a_py_dataset_with_the_autotuner_off(tmp_path):
    """`RowBatches.dataset()` replaced handing the batches to Keras as a PyDataset, whose pipeline keeps
    tf.data's autotuner on (epochs then began late, benchmarks/RESULTS.md): the same rows in the same
    order, the same class weights, the same weights trained."""
    import random

    from benchmarks.epoch_start import KerasPyDataset

    images = 40
    writer = feature_cache.FeatureWriter(tmp_path / "rows.npy", 2 * images, (3,))
    writer.write(np.random.default_rng(0).random((2 * images, 3), dtype="float32"))
    writer.close()
    features = feature_cache.FeatureFile(tmp_path / "rows.npy")
    targets = keras.utils.to_categorical(np.arange(images) % 3 == 0, 2).astype("float32")
    drawn = feature_cache.view_rows(2, images, copies=2, seed=4)

    def trained(data_of, keras_shuffles: bool):
        keras.utils.set_random_seed(7)  # Python's `random` too, which shuffles the order of the batches.
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.3), keras.layers.Dense(2, "softmax")])
        model.compile(keras.optimizers.RMSprop(0.01), "categorical_crossentropy")
        batches = feature_cache.RowBatches(features, targets, 6, seed=2, views=2, rows_of_views=drawn)
        validation = feature_cache.RowBatches(features, targets, 16, rows_of_views=drawn[1:])
        history = model.fit(
            data_of(batches),
            validation_data=data_of(validation),
            epochs=4,
            verbose=0,
            class_weight={0: 1.0, 1: 2.0},
            callbacks=[batches.follow()],
            shuffle=keras_shuffles,
        )
        return model.get_weights(), history.history, random.random()

    dataset_weights, dataset_history, dataset_random = trained(lambda batches: batches.dataset(), False)
    keras_weights, keras_history, keras_random = trained(KerasPyDataset, True)
    assert all(np.array_equal(ours, theirs) for ours, theirs in zip(dataset_weights, keras_weights))
    assert dataset_history == keras_history
    assert dataset_random == keras_random, "Python's random drew as often (resume keeps its state)"
    dataset = feature_cache.RowBatches(features, targets, 6, rows_of_views=drawn[:1]).dataset()
    assert dataset.options().autotune.enabled is False


def test_view_rows_are_blocks_per_view_or_draws_among_copies(tmp_path):
    assert feature_cache.view_rows(3, 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    drawn = feature_cache.view_rows(5, 100, copies=2, seed=1)
    assert drawn.shape == (5, 100)
    assert np.all(drawn % 100 == np.arange(100)), "each view of image i is a copy of image i"
    copies = drawn // 100
    assert set(np.unique(copies)) == {0, 1} and all(0.3 < row.mean() < 0.7 for row in copies)
    assert not np.array_equal(copies[0], copies[1])
    assert np.array_equal(drawn, feature_cache.view_rows(5, 100, copies=2, seed=1))
    assert not np.array_equal(drawn, feature_cache.view_rows(5, 100, copies=2, seed=2))
    # A run that reads fewer views (a short run) reads the same first ones.
    assert np.array_equal(drawn[:3], feature_cache.view_rows(3, 100, copies=2, seed=1))
    # Batches read each epoch's view where the table says: rows hold copy * 100 + image.
    writer = feature_cache.FeatureWriter(tmp_path / "copies.npy", 200, (1,))
    writer.write(np.arange(200, dtype="float32")[:, None])
    writer.close()
    features = feature_cache.FeatureFile(tmp_path / "copies.npy")
    batches = feature_cache.RowBatches(features, np.zeros(100, "float32"), 100, seed=3, views=5, rows_of_views=drawn)
    batches._next_epoch = 1
    batches.on_epoch_begin()
    rows, _ = batches[0]
    assert rows[:, 0].tolist() == drawn[1].tolist()
    with pytest.raises(ValueError, match=r"Expected rows of views of shape \(5, 100\) within the file's 200 rows"):
        feature_cache.RowBatches(features, np.zeros(100, "float32"), 10, views=5, rows_of_views=drawn[:4])
    with pytest.raises(ValueError, match="up to row 299"):
        feature_cache.RowBatches(features, np.zeros(100, "float32"), 10, views=5, rows_of_views=drawn + 100)


def test_a_short_run_caches_only_the_views_it_reads_and_trains_as_with_all_of_them(tiny_data, tmp_path, monkeypatch):
    config = train_config(tiny_data, strategy="fine_tuning", epochs=2, fine_tuning_epochs=3, augmented_views=10)
    short = finished_run(config, tmp_path / "short")
    result = short.summary()["results"]["frozen_augmented"]
    assert result["views"] == 3
    cached = list((tmp_path / "short" / ".cache").rglob("train_views.npy"))
    assert len(cached) == 1 and np.load(cached[0], mmap_mode="r").shape[0] == 3 * 16  # 16 training photos.
    monkeypatch.setattr(cached_views, "views_to_cache", lambda config: config.augmented_views)  # All 10, as before.
    every = finished_run(config, tmp_path / "every")
    assert every.summary()["results"]["frozen_augmented"]["views"] == 10

    def metrics(run):
        return [(record["stage"], record["loss"], record["val_loss"]) for record in run.metrics()]

    assert len(metrics(short)) == 5 and metrics(short) == metrics(every)


def test_feature_cache_is_reused_by_a_second_run(tiny_data, tmp_path):
    first = finished_run(train_config(tiny_data, strategy="feature_extraction"), tmp_path)
    second = finished_run(
        train_config(tiny_data, strategy="feature_extraction", learning_rate=1e-3, dense_units=32), tmp_path
    )
    assert first.summary()["results"]["feature_extraction"]["features_from_cache"] is False
    assert second.summary()["results"]["feature_extraction"]["features_from_cache"] is True
    other_size = finished_run(train_config(tiny_data, strategy="feature_extraction", image_size=40), tmp_path)
    assert other_size.summary()["results"]["feature_extraction"]["features_from_cache"] is False
    # Without pretrained weights the seed draws the base: another seed's features are another base's,
    # and reading them would train a head for a base the saved model does not have.
    other_seed = finished_run(train_config(tiny_data, strategy="feature_extraction", seed=7), tmp_path)
    assert other_seed.summary()["results"]["feature_extraction"]["features_from_cache"] is False


def test_features_left_by_a_stop_between_the_splits_are_described_for_the_data_set_library(
    tiny_data, tmp_path, monkeypatch
):
    """The library removes a deleted data set's caches by their description (meta.json)."""
    extract_to_file = extraction.extract_to_file

    def stop(batch):
        raise training_context.StageStopped()

    def stopped_at_validation(context, forward, paths, writer, split=None, check_stop=True):
        # The real pass, stopped at its first validation batch: it discards what it was writing.
        extract_to_file(context, stop if split == "validation" else forward, paths, writer, split, check_stop)

    monkeypatch.setattr(extraction, "extract_to_file", stopped_at_validation)
    config = train_config(tiny_data)
    context = training_context.TrainingContext(config=config, dataset=folders.scan(tiny_data), runs_dir=str(tmp_path))
    base, preprocess = heads.build_frozen_base(config), backbones.preprocessing_layer(config.backbone)
    with pytest.raises(training_context.StageStopped):
        extraction.extract_features(context, base, preprocess)
    (train_features,) = (tmp_path / ".cache").rglob("train.npy")
    assert json.loads((train_features.parent / "meta.json").read_text())["data"] == context.dataset.root
    assert not list((tmp_path / ".cache").rglob("validation*.npy"))
    assert not list((tmp_path / ".cache").rglob("*.partial")), "the stopped pass discards what it was writing"


def test_the_seed_is_part_of_the_cache_key_only_for_a_base_without_pretrained_weights():
    def key(**settings):
        return feature_cache.features_key(TrainConfig(data_dir="photos", **settings), "fingerprint")

    assert key(weights="none", seed=1) != key(weights="none", seed=2)
    assert key(weights="imagenet", seed=1) == key(weights="imagenet", seed=2)


@pytest.mark.parametrize(
    "strategy, cached_file", [("feature_extraction", "train.npy"), ("frozen_augmented", "train_views.npy")]
)
def test_a_truncated_cache_file_is_rebuilt_and_the_run_succeeds(tiny_data, tmp_path, strategy, cached_file):
    config = train_config(tiny_data, strategy=strategy, augmented_views=2)
    first = finished_run(config, tmp_path)
    (cache_file,) = (tmp_path / ".cache").rglob(cached_file)
    full_size = cache_file.stat().st_size
    with open(cache_file, "r+b") as stream:  # As a crash mid-copy leaves it: whole header, rows cut short.
        stream.truncate(full_size - 1000)
    second = finished_run(config, tmp_path)
    stage = first.summary()["final_stage"]
    assert second.summary()["results"][stage]["features_from_cache"] is False
    assert cache_file.stat().st_size == full_size
    third = finished_run(config, tmp_path)
    assert third.summary()["results"][stage]["features_from_cache"] is True


def test_a_failing_run_ends_as_failed_with_the_error(tiny_data, tmp_path):
    config = train_config(tmp_path / "gone", strategy="feature_extraction")
    run = store.create(config, tmp_path / "runs")
    status = worker.execute(run, runs_dir=tmp_path / "runs")
    assert status["state"] == "failed"
    assert "does not exist" in status["error"]
    assert store.describe(run)["state"] == "failed"


def test_stop_request_ends_training_after_the_current_batch(tiny_data, tmp_path):
    """A stop requested during batch 3 ends the fit right after it: 3 batches, not 4."""
    from tlcore.training.callbacks import StopOnRequest

    run = store.create(train_config(tiny_data), tmp_path)
    batches = []

    class RequestAtThirdBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches.append(batch)
            if batch == 2:
                run.request_stop()

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    inputs = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    history = model.fit(
        inputs, inputs[:, :1], batch_size=4, epochs=3, verbose=0, callbacks=[RequestAtThirdBatch(), StopOnRequest(run)]
    )
    assert batches == [0, 1, 2]
    assert len(history.history["loss"]) == 1


def test_stop_request_during_validation_ends_training_with_that_epoch(tiny_data, tmp_path):
    """A stop that arrives after an epoch's last batch (while it validates) must not start another epoch.

    The worker test caught this: a stop written during validation let the next epoch train a batch
    and record a second, partial epoch.
    """
    from tlcore.training.callbacks import StopOnRequest

    run = store.create(train_config(tiny_data), tmp_path)
    batches = []

    class RequestDuringFirstValidation(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches.append(batch)

        def on_test_begin(self, logs=None):
            if not run.stop_requested():
                run.request_stop()

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    inputs = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    history = model.fit(
        inputs,
        inputs[:, :1],
        batch_size=16,
        epochs=3,
        verbose=0,
        validation_data=(inputs[:8], inputs[:8, :1]),
        callbacks=[RequestDuringFirstValidation(), StopOnRequest(run)],
    )
    assert batches == [0, 1, 2, 3]  # The first epoch trained whole, no batch of a second one.
    assert len(history.history["val_loss"]) == 1  # And its validation was not cut short.


def test_runs_cannot_escape_the_runs_folder(tiny_data, tmp_path):
    run = finished_run(train_config(tiny_data, strategy="feature_extraction"), tmp_path / "runs")
    assert store.resolve(run.id, tmp_path / "runs").path == run.path.resolve()
    # A real run folder outside the runs folder, by its path: refused for where it is, not for what it lacks.
    outside = shutil.copytree(run.path, tmp_path / "elsewhere" / run.id)
    with pytest.raises(ValueError, match="not inside the runs folder"):
        store.resolve(str(outside), tmp_path / "runs")
    for bad in ("../runs", "/etc", str(tmp_path), "a/../../x"):
        with pytest.raises(ValueError, match="not inside the runs folder"):
            store.resolve(bad, tmp_path / "runs")
    with pytest.raises(ValueError, match="Invalid run id '..'"):
        store.resolve("..", tmp_path / "runs")
    with pytest.raises(ValueError, match="No run 'nonexistent-run'"):
        store.resolve("nonexistent-run", tmp_path / "runs")


def test_half_written_run_folder_does_not_break_the_table(tmp_path):
    broken = tmp_path / "20260101-000000-all-vgg16-dead"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    (broken / "metrics.jsonl").write_text('{"stage": "feature_extraction", "epoch": 1, "val_accuracy": 0.5}\n{"sta')
    (tmp_path / "no-config-yet").mkdir()
    rows = [store.describe(run) for run in store.list_runs(tmp_path)]
    assert len(rows) == 1
    assert rows[0]["state"] == "unknown"
    assert rows[0]["best_val_accuracy"] == 0.5
    for summary in (
        '{"results": {"x": {"val_accuracy": 0.7}}, "final_stage": ["x"]}',
        '{"results": {"x": {"val_accuracy": "0.7"}}, "final_stage": "x"}',
        '{"results": [1]}',
        "[]",
    ):
        (broken / "summary.json").write_text(summary)
        assert store.describe(store.Run(broken))["model_val_accuracy"] is None, summary
    (broken / "summary.json").write_text('{"results": {"x": {"val_accuracy": 0.7}}, "final_stage": "x"}')
    assert store.describe(store.Run(broken))["model_val_accuracy"] == 0.7


def test_cli_train_predict_runs_json(tiny_data, tmp_path):
    settings = options(strategy="feature_extraction", backbone="vgg16", weights="none", image_size=32, epochs=2)
    completed = cli.tlcore(
        "train", "--data", str(tiny_data), *settings, *options(batch_size=4, runs_dir=tmp_path, json=True)
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = cli.last_json(completed)
    assert result["status"] == "done"
    assert set(result["results"]) == {"feature_extraction"}
    assert {"val_accuracy", "val_loss", "seconds"} <= set(result["results"]["feature_extraction"])
    assert "[feature_extraction] epoch 2" in completed.stderr

    bad = tmp_path / "not-a-photo.jpg"
    bad.write_text("hello")
    good = sorted((tiny_data / "validation" / "cats").iterdir())[0]
    run_id = Path(result["run"]).name
    listing = options(runs_dir=tmp_path, json=True)
    completed = cli.tlcore("predict", "--run", run_id, str(good), str(bad), *options(top=2), *listing)
    predictions = json.loads(completed.stdout)
    assert completed.returncode == 1  # One image failed.
    assert predictions[0]["image"] == str(good)
    # The same labels and probabilities as predicting in this process (any 2-class answer names both labels).
    (expected,) = predict.predict_sources(predict.load(run_id, tmp_path), [good], top=2)
    assert [item["label"] for item in predictions[0]["top"]] == [item["label"] for item in expected["top"]]
    probabilities = [item["probability"] for item in predictions[0]["top"]]
    assert probabilities == pytest.approx([item["probability"] for item in expected["top"]], abs=1e-5)
    assert predictions[1] == {"image": str(bad), "error": predictions[1]["error"]}
    assert "text" in predictions[1]["error"]

    rows = json.loads(cli.tlcore("runs", *listing).stdout)
    assert rows[0]["state"] == "done" and rows[0]["epochs"] == 2
    assert rows[0]["model_val_accuracy"] == pytest.approx(result["results"]["feature_extraction"]["val_accuracy"])
    completed = cli.tlcore("runs", *options(runs_dir=tmp_path))
    assert f"model_val_accuracy={rows[0]['model_val_accuracy']:.4f}" in completed.stdout


def _recording_progress(monkeypatch) -> list[dict]:
    """Every progress record any run writes, in order (still written to its folder)."""
    records = []
    original = store.Run.set_progress

    def record(run, value):
        records.append(dict(value))
        original(run, value)

    monkeypatch.setattr(store.Run, "set_progress", record)
    return records


def test_feature_extraction_reports_the_images_it_has_extracted_per_split(tiny_data, tmp_path, monkeypatch):
    records = _recording_progress(monkeypatch)
    finished_run(train_config(tiny_data, strategy="feature_extraction"), tmp_path)
    extracting = [record for record in records if record.get("phase") == "extracting"]
    assert {record["stage"] for record in extracting} == {"feature_extraction"}
    for split, total in (("train", 16), ("validation", 8)):
        counts = [record["images"] for record in extracting if record["split"] == split]
        assert counts[0] == 0 and counts[-1] == total, counts  # From the start to the last image.
        assert counts == sorted(counts)
        assert {record["total"] for record in extracting if record["split"] == split} == {total}
    splits = [record["split"] for record in extracting]
    assert splits == sorted(splits, key=["train", "validation"].index), "the train split first, then validation"


@pytest.mark.parametrize(("interval", "expected"), [(0.0, [0, 32, 64, 96, 128, 160]), (3600.0, [0, 160])])
def test_extraction_progress_is_written_at_most_once_per_batch_and_interval(
    tiny_data, tmp_path, monkeypatch, interval, expected
):
    config = train_config(tiny_data, strategy="feature_extraction")
    dataset = folders.scan(str(tiny_data), config.validation_fraction, config.seed)
    run = store.create(config, tmp_path)
    records = _recording_progress(monkeypatch)
    monkeypatch.setattr(training_context, "PROGRESS_INTERVAL_SECONDS", interval)
    paths = dataset.paths("train") * 10  # 160 images: 5 batches of 32.
    writer = feature_cache.FeatureWriter(tmp_path / "features.npy", len(paths), (2,))
    context = training_context.TrainingContext(config=config, dataset=dataset, run=run)
    extraction.extract_to_file(
        context, lambda batch: np.zeros((len(batch), 2), "float32"), paths, writer, split="train"
    )
    assert [record["images"] for record in records] == expected
    assert run.progress() == records[-1] and run.progress()["total"] == 160


def test_an_extraction_that_cannot_start_discards_its_partial_file(tiny_data, tmp_path, monkeypatch):
    from tlcore import temporaries

    config = train_config(tiny_data, strategy="feature_extraction")
    dataset = folders.scan(str(tiny_data), config.validation_fraction, config.seed)
    run = store.create(config, tmp_path)

    def full_disk(self, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.Run, "set_progress", full_disk)  # The first progress record, before any batch.
    writer = feature_cache.FeatureWriter(tmp_path / "features.npy", 4, (2,))
    context = training_context.TrainingContext(config=config, dataset=dataset, run=run)
    with pytest.raises(OSError, match="No space left"):
        extraction.extract_to_file(context, lambda batch: np.zeros((len(batch), 2), "float32"), [], writer)
    # The writer's temporary file was left behind (and registered for removal) when the pass failed to start.
    assert not writer.temporary.exists() and writer.temporary not in temporaries.registered()


def test_scratch_runs_name_no_backbone_and_old_scratch_folders_still_read(tmp_path):
    scratch = store.create(TrainConfig(data_dir=str(tmp_path), strategy="scratch"), tmp_path)
    transfer = store.create(TrainConfig(data_dir=str(tmp_path), strategy="feature_extraction"), tmp_path)
    backbone = TrainConfig.backbone
    assert "-scratch-" in scratch.id and backbone not in scratch.id
    assert f"-feature_extraction-{backbone}-" in transfer.id
    assert store.describe(scratch)["model"] == store.SCRATCH_MODEL == "small CNN"
    assert store.describe(scratch)["backbone"] is None  # `runs --json`: a registry key or nothing, for programs.
    assert store.describe(transfer)["backbone"] == backbone  # For programs; "model" is for people.
    assert store.describe(transfer)["model"] == "EfficientNet-Lite0"
    # A folder from before: the backbone in its id and config; still found, listed and described.
    old = tmp_path / f"20250101-000000-scratch-{backbone}-ab12"
    old.mkdir()
    files.write_json(old / "config.json", TrainConfig(data_dir=str(tmp_path), strategy="scratch").to_dict())
    store.Run(old).set_status("done")
    assert store.resolve(old.name, tmp_path).path == old.resolve()
    row = next(store.describe(run) for run in store.list_runs(tmp_path) if run.id == old.name)
    assert row["state"] == "done" and row["model"] == "small CNN" and row["backbone"] is None


def test_training_run_is_the_live_running_run_of_the_folder(tmp_path):
    import psutil

    config = TrainConfig(data_dir=str(tmp_path), strategy="feature_extraction")
    queued = store.create(config, tmp_path)
    assert store.training_run(tmp_path, exclude=queued.id) is None
    running = store.create(config, tmp_path)
    running.set_status("running", pid=os.getpid(), started=psutil.Process(os.getpid()).create_time())
    assert store.training_run(tmp_path, exclude=queued.id).id == running.id
    assert store.training_run(tmp_path, exclude=running.id) is None
    running.set_status("running", pid=2**22 + 12345, started=1.0)  # Its worker is gone: interrupted.
    assert store.training_run(tmp_path, exclude=queued.id) is None


def test_cli_runs_lines_up_its_columns_and_lists_a_half_written_folder(tmp_path, capsys):
    from tlcore.cli import main

    short = store.create(TrainConfig(data_dir="-", strategy="scratch"), tmp_path)  # No backbone in its id.
    long = store.create(
        TrainConfig(data_dir="-", strategy="feature_extraction", backbone="efficientnet_lite0"), tmp_path
    )
    damaged = tmp_path / "20200101-000000-damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{}")  # A folder half written: no strategy, backbone or size.
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    by_run = {line.split()[0]: line for line in lines}
    assert sorted(by_run) == sorted([long.id, short.id, damaged.name])
    states = [line.index(" queued ") if " queued " in line else line.index(" unknown ") for line in lines]
    assert len(set(states)) == 1, lines  # The state column starts at the same place on every line.
    assert "small CNN" in by_run[short.id] and by_run[damaged.name].split()[1:4] == ["unknown", "-", "-"]


def test_a_run_whose_seed_differs_from_its_split_seed_trains_on_the_split_the_data_page_showed(flat_small, tmp_path):
    """The Train page's Seed seeds the training; the split is the Data page's (its split seed)."""
    from tlcore.insight import evaluate

    shown = folders.scan(flat_small, 0.2, 7)  # What the Data page showed with split seed 7.
    config = train_config(flat_small, seed=99, split_seed=7)
    assert folders.scan(flat_small, 0.2, 99).paths("validation") != shown.paths("validation"), "another split"
    run = finished_run(config, tmp_path)
    recorded = json.loads((run.path / "dataset.json").read_text())
    assert recorded["seed"] == 7
    for split in ("train", "validation"):
        assert sorted(path for per_class in recorded["files"][split].values() for path in per_class) == sorted(
            shown.paths(split)
        )
    assert evaluate.dataset_for(run).paths("validation") == shown.paths("validation")
