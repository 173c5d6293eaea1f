"""Training options: class weights, early stopping, the learning-rate finder, cached vs end-to-end."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.runs import LITE0_SETTINGS, TINY_SETTINGS, train_config
from tlcore.config import TrainConfig
from tlcore.data import augment
from tlcore.insight import evaluate
from tlcore.models import heads
from tlcore.runs import store, worker
from tlcore.training import augmented, lr_finder, training_context


@pytest.fixture(scope="module")
def imbalanced(catsdogs_subset) -> Path:
    """12 cats against 4 dogs for training, 4 + 4 for validation."""
    return catsdogs_subset("imbalanced", train={"cats": 12, "dogs": 4}, validation=4)


def config_for(data_dir: Path, **settings) -> TrainConfig:
    """The tiny run's settings with two epochs, then `settings` over them."""
    return train_config(data_dir, **{"epochs": 2, **settings})


def test_class_weights_are_inverse_frequencies():
    labels = np.array([0] * 30 + [1] * 10)
    weights = training_context.class_weights_for(labels, 2, "auto")
    assert weights == pytest.approx({0: 40 / 60, 1: 40 / 20})
    # Weighted counts are equal: each class contributes the same to the loss.
    assert weights[0] * 30 == pytest.approx(weights[1] * 10)
    assert training_context.class_weights_for(labels, 2, "none") is None
    nearly_balanced = np.array([0] * 12 + [1] * 10)
    assert training_context.class_weights_for(nearly_balanced, 2, "auto") is None
    assert training_context.class_weights_for(nearly_balanced, 2, "balanced") == pytest.approx({0: 22 / 24, 1: 22 / 20})
    three = training_context.class_weights_for(np.array([0] * 8 + [1] * 4 + [2] * 2), 3, "auto")
    assert three[2] > three[1] > three[0]


def test_an_imbalanced_data_set_is_weighted_and_says_so(imbalanced, tmp_path, capsys):
    run = store.create(config_for(imbalanced), tmp_path)
    import sys

    status = worker.execute(run, runs_dir=tmp_path, stream=sys.stdout)
    assert status["state"] == "done"
    assert run.summary()["class_weight"] == pytest.approx({"0": 16 / 24, "1": 16 / 8})
    assert "imbalanced" in capsys.readouterr().out
    assert run.summary()["seed"] == 1337


def test_early_stopping_stops_and_restores_the_best_epoch(imbalanced, tmp_path):
    # A learning rate this high makes the validation loss worse soon; patience 1 stops there.
    config = config_for(imbalanced, epochs=30, learning_rate=0.05, optimizer="adam", early_stopping_patience=1)
    run = store.create(config, tmp_path)
    worker.execute(run, runs_dir=tmp_path)
    result = run.summary()["results"]["feature_extraction"]
    losses = [record["val_loss"] for record in run.metrics()]
    assert result["epochs"] < 30
    assert result["val_loss"] == pytest.approx(min(losses))
    assert result["final_epoch"] == int(np.argmin(losses)) + 1


def test_keep_weights_best_saves_the_epoch_of_lowest_validation_loss_and_says_so(imbalanced, tmp_path):
    # A learning rate this high makes the validation loss move from epoch to epoch; every epoch runs.
    settings = {"epochs": 6, "learning_rate": 0.05, "optimizer": "adam"}
    best = store.create(config_for(imbalanced, keep_weights="best", **settings), tmp_path / "best")
    last = store.create(config_for(imbalanced, **settings), tmp_path / "last")
    for run in (best, last):
        assert worker.execute(run, runs_dir=run.path.parent)["state"] == "done"
    losses = [record["val_loss"] for record in best.metrics()]
    result = best.summary()["results"]["feature_extraction"]
    assert result["epochs"] == 6 and result["kept_weights"] == "best"
    assert result["final_epoch"] == int(np.argmin(losses)) + 1 and result["val_loss"] == pytest.approx(min(losses))
    # The headline is what the saved model scores, whichever epoch it kept.
    assert evaluate.evaluate(best).accuracy == pytest.approx(result["val_accuracy"], abs=1e-6)
    kept_last = last.summary()["results"]["feature_extraction"]
    assert kept_last["kept_weights"] == "last" and kept_last["final_epoch"] == 6
    assert evaluate.evaluate(last).accuracy == pytest.approx(kept_last["val_accuracy"], abs=1e-6)


def test_learning_rate_finder_sweeps_and_suggests_a_rate_inside_the_range(imbalanced, tmp_path):
    sweep = lr_finder.find_learning_rate(config_for(imbalanced), runs_dir=tmp_path, start=1e-5, end=1.0, steps=30)
    assert 10 <= len(sweep.learning_rates) <= 30
    assert list(sweep.learning_rates) == sorted(sweep.learning_rates)
    assert sweep.learning_rates[0] == pytest.approx(1e-5)
    # The rate where the recorded (smoothed) loss falls fastest, one of the rates swept.
    assert sweep.suggestion == lr_finder.suggest(sweep.learning_rates, sweep.losses)
    assert all(np.isfinite(sweep.losses[: len(sweep.losses) // 2]))


def test_suggestion_is_the_steepest_descent():
    rates = np.geomspace(1e-5, 1, 50)
    # Loss falls fastest around 1e-3 and diverges after 1e-1.
    losses = 1.0 - 0.8 / (1 + np.exp(-(np.log10(rates) + 3) * 4)) + np.where(rates > 0.1, (rates - 0.1) * 20, 0)
    suggestion = lr_finder.suggest(rates, losses)
    assert 3e-4 < suggestion < 3e-3
    with pytest.raises(ValueError, match="at least 3 points"):
        lr_finder.suggest([1e-3, 1e-2], [1.0, 0.5])


def test_cached_views_and_end_to_end_train_the_same_stages(imbalanced, tmp_path):
    cached = store.create(config_for(imbalanced, strategy="fine_tuning", augmented_views=2), tmp_path / "cached")
    naive = store.create(config_for(imbalanced, strategy="fine_tuning", augmented_views=0), tmp_path / "naive")
    for run in (cached, naive):
        assert worker.execute(run, runs_dir=run.path.parent)["state"] == "done"
    cached_results, naive_results = cached.summary()["results"], naive.summary()["results"]
    assert cached_results["frozen_augmented"]["path"] == "cached_views"
    assert naive_results["frozen_augmented"]["path"] == "end_to_end"
    assert cached_results["fine_tuning"]["unfrozen_layers"] == naive_results["fine_tuning"]["unfrozen_layers"]
    assert [record["epoch"] for record in cached.metrics()] == [1, 2, 3]
    # A second run with the same settings reuses the cached views.
    again = store.create(config_for(imbalanced, strategy="frozen_augmented", augmented_views=2), tmp_path / "cached")
    worker.execute(again, runs_dir=again.path.parent)
    assert again.summary()["results"]["frozen_augmented"]["features_from_cache"] is True


@pytest.mark.parametrize("in_memory", [True, False], ids=["decoded into memory", "decoded as they go"])
def test_end_to_end_training_reads_its_images_without_the_autotuner(imbalanced, tmp_path, monkeypatch, in_memory):
    """With tf.data's autotuner on, Keras' new iterators every epoch made epochs begin late
    (`pipeline.without_autotuner`)."""
    from tlcore.data import folders

    if not in_memory:
        monkeypatch.setattr(training_context, "IN_MEMORY_LIMIT_BYTES", 0)
    config = config_for(imbalanced, strategy="frozen_augmented", augmented_views=0)
    context = training_context.TrainingContext(config=config, dataset=folders.scan(imbalanced), runs_dir=str(tmp_path))
    for split, shuffle in (("train", True), ("validation", False)):
        batches = context.image_pipeline(split, shuffle)
        assert batches.options().autotune.enabled is False
        targets = np.concatenate([batch_targets for _, batch_targets in batches])
        assert sorted(targets.tolist()) == sorted(context.targets(split).tolist())
    assert (split in context.images) is in_memory


def test_cached_augmented_views_differ_from_each_other(imbalanced, tmp_path):
    from tlcore.data import folders

    # Three epochs read the three views (a run caches only the views its epochs read).
    config = config_for(imbalanced, strategy="frozen_augmented", augmented_views=3, epochs=3)
    context = training_context.TrainingContext(config=config, dataset=folders.scan(imbalanced), runs_dir=str(tmp_path))
    staged = augmented.build_staged(context)
    views = [staged.view(index) for index in range(3)]
    assert staged.views == 3 and len(staged.train_views) == 3 * 16 and views[0].shape[0] == 16
    assert not np.allclose(views[0], views[1])
    assert not np.allclose(views[1], views[2])
    # Each view is augmented: it differs from the activations of the plain training images.
    from tlcore.models import backbones

    bottom, _ = heads.split_base(staged.base, "vgg16")
    preprocess = backbones.preprocessing_layer("vgg16")
    plain = np.asarray(bottom(preprocess(context.decoded("train").astype("float32"))))
    assert staged.validation.shape[1:] == views[0].shape[1:] == plain.shape[1:]
    for view in views:
        assert not np.allclose(view, plain, atol=1e-3)


def test_with_flips_only_the_views_are_drawn_from_two_cached_copies(imbalanced, tmp_path, monkeypatch):
    """Left-right flips alone make two images of a photo: two passes through the base, not one per view."""
    from tlcore.config import AugmentationConfig
    from tlcore.data import folders
    from tlcore.models import backbones

    flips = AugmentationConfig(rotation_degrees=0, width_shift=0, height_shift=0, zoom=0)
    config = config_for(imbalanced, strategy="frozen_augmented", augmented_views=3, epochs=3, augmentation=flips)

    def copies_drawn(runs_dir):
        """The staged models, and for each view which photos it holds mirrored (of those whose mirror differs)."""
        context = training_context.TrainingContext(config=config, dataset=folders.scan(imbalanced), runs_dir=runs_dir)
        staged = augmented.build_staged(context)
        bottom, _ = heads.split_base(staged.base, "vgg16")
        preprocess = backbones.preprocessing_layer("vgg16")
        photos = context.decoded("train").astype("float32")
        plain, mirrored = (np.asarray(bottom(preprocess(images))) for images in (photos, photos[:, :, ::-1]))
        # At this tiny size some photos' activations equal their mirror's: those cannot tell the copies apart.
        telling = ~np.isclose(plain, mirrored, atol=1e-4).all(axis=(1, 2, 3))
        assert telling.sum() >= 8
        drawn = []
        for index in range(3):
            view = staged.view(index)
            is_plain = np.isclose(view, plain, atol=1e-4).all(axis=(1, 2, 3))
            is_mirrored = np.isclose(view, mirrored, atol=1e-4).all(axis=(1, 2, 3))
            assert np.all(is_plain | is_mirrored), "every row is the photo's activations or its mirror's"
            drawn.append(is_mirrored[telling])
        return staged, drawn

    staged, drawn = copies_drawn(str(tmp_path / "copies"))
    assert staged.flip_copies == 2 and len(staged.train_views) == 2 * 16 and staged.views == 3
    assert all(0 < mirrored.sum() < len(mirrored) for mirrored in drawn), "each view mixes photos and mirrors"
    assert not np.array_equal(drawn[0], drawn[1]) and not np.array_equal(drawn[1], drawn[2])
    run = store.create(config, tmp_path / "copies")
    assert worker.execute(run, runs_dir=tmp_path / "copies")["state"] == "done"
    result = run.summary()["results"]["frozen_augmented"]
    assert (result["views"], result["flip_copies"], result["features_from_cache"]) == (3, 2, True)
    # The copies do not depend on the number of views: another run shares them. Nor on the seed, with pretrained
    # weights; this base is untrained, drawn by the seed, so a run of another seed has a base of its own.
    for other_settings, shared in (({"augmented_views": 5}, True), ({"seed": 7}, False)):
        other = store.create(dataclasses.replace(config, **other_settings), tmp_path / "copies")
        assert worker.execute(other, runs_dir=tmp_path / "copies")["state"] == "done"
        assert other.summary()["results"]["frozen_augmented"]["features_from_cache"] is shared
    # The augmentation layers, one pass per view, make rows of the same two kinds: the copies are the augmentation.
    monkeypatch.setattr(augment, "flip_copies", lambda settings: None)
    by_layers, drawn = copies_drawn(str(tmp_path / "layers"))
    assert by_layers.flip_copies is None and len(by_layers.train_views) == 3 * 16
    assert all(0 < mirrored.sum() < len(mirrored) for mirrored in drawn)


@pytest.mark.parametrize(
    "preset",
    [TINY_SETTINGS, LITE0_SETTINGS, {**LITE0_SETTINGS, "feature_levels": 3}],
    ids=["vgg16 32 px untrained", "efficientnet_lite0 96 px imagenet", "efficientnet_lite0 3 feature levels"],
)
def test_frozen_augmented_reads_the_photos_activations_from_feature_extractions_pass(
    imbalanced, tmp_path, monkeypatch, preset
):
    """With flips only, a run of both stages passes only the mirrored photos through the base in stage 2.

    The photos as they are and the validation photos come from feature extraction's pass, and every cached
    file, metric and weight is what the separate passes give, bit for bit.
    """
    from tlcore.config import AugmentationConfig
    from tlcore.serving import predict
    from tlcore.training import cached_views

    flips = AugmentationConfig(rotation_degrees=0, width_shift=0, height_shift=0, zoom=0)
    config = train_config(
        imbalanced, preset, strategy="all", augmented_views=3, epochs=2, fine_tuning_epochs=2, augmentation=flips
    )
    assert cached_views.keeps_boundary_activations(config)
    passes = []  # The splits stage 2 decodes for a pass through the base.
    image_batches = training_context.TrainingContext.image_batches

    def counted(context, split):
        passes.append(split)
        return image_batches(context, split)

    monkeypatch.setattr(training_context.TrainingContext, "image_batches", counted)

    def trained(runs_dir):
        passes.clear()
        run, lines = store.create(config, runs_dir), io.StringIO()
        assert worker.execute(run, runs_dir=runs_dir, stream=lines)["state"] == "done"
        cached = {path.relative_to(runs_dir): path.read_bytes() for path in sorted(runs_dir.rglob("*.npy"))}
        return run, cached, list(passes), lines.getvalue()

    reused, reused_files, reused_passes, log = trained(tmp_path / "reused")
    assert log.count(cached_views.FROM_EXTRACTION) == 2
    monkeypatch.setattr(cached_views, "keeps_boundary_activations", lambda config: False)
    separate, separate_files, separate_passes, log = trained(tmp_path / "separate")
    assert cached_views.FROM_EXTRACTION not in log

    assert separate_passes == ["train", "train", "validation"]  # The photos, their mirrors, validation.
    assert reused_passes == ["train"]  # The mirrors only.
    # Feature extraction keeps the boundary activations beside its features; every other file is in both.
    kept = set(reused_files) - set(separate_files)
    assert sorted(path.name for path in kept) == ["train_boundary.npy", "validation_boundary.npy"]
    assert {path.parent / "train.npy" for path in kept} <= set(separate_files)
    for path, contents in separate_files.items():
        assert reused_files[path] == contents, f"{path} differs"

    def learned(run):
        """The run's metrics without the clock's."""
        return [
            {key: value for key, value in record.items() if key not in {"seconds", "time"}} for record in run.metrics()
        ]

    assert learned(reused) == learned(separate) and len(learned(reused)) == 6
    models = [predict.load_model_file(run.model_path) for run in (reused, separate)]
    for mine, theirs in zip(models[0].weights, models[1].weights, strict=True):
        assert np.array_equal(mine.numpy(), theirs.numpy()), mine.path


def test_frozen_augmented_makes_its_own_passes_when_the_photos_changed_after_feature_extraction(
    imbalanced, tmp_path, monkeypatch
):
    """Kept activations of photos that changed since would be cached as the new photos' activations."""
    from tlcore.config import AugmentationConfig
    from tlcore.data import dataset
    from tlcore.training import cached_views

    flips = AugmentationConfig(rotation_degrees=0, width_shift=0, height_shift=0, zoom=0)
    config = config_for(imbalanced, strategy="all", augmented_views=2, fine_tuning_epochs=1, augmentation=flips)
    # As if a photo was edited between the stages: frozen + augmentation sees another fingerprint.
    monkeypatch.setattr(cached_views, "fingerprint", lambda scan: "changed " + dataset.fingerprint(scan))
    passes = []
    image_batches = training_context.TrainingContext.image_batches
    monkeypatch.setattr(
        training_context.TrainingContext,
        "image_batches",
        lambda context, split: passes.append(split) or image_batches(context, split),
    )
    run, lines = store.create(config, tmp_path), io.StringIO()
    assert worker.execute(run, runs_dir=tmp_path, stream=lines)["state"] == "done"
    assert passes == ["train", "train", "validation"] and cached_views.FROM_EXTRACTION not in lines.getvalue()


def test_only_a_run_of_both_stages_with_flips_alone_keeps_the_boundary_activations():
    from tlcore.config import AugmentationConfig
    from tlcore.training import cached_views

    flips = AugmentationConfig(rotation_degrees=0, width_shift=0, height_shift=0, zoom=0)

    def keeps(**settings):
        return cached_views.keeps_boundary_activations(TrainConfig(data_dir="photos", **settings))

    assert keeps(strategy="all", augmentation=flips)
    assert not keeps(strategy="all")  # Rotations, shifts and zooms: no view is the photo as it is.
    assert not keeps(strategy="feature_extraction", augmentation=flips)
    assert not keeps(strategy="frozen_augmented", augmentation=flips)
    assert not keeps(strategy="all", augmentation=flips, augmented_views=0)  # Trained end to end.
    # With the augmentation off every view is the photo as it is: frozen + augmentation needs no pass of its own.
    assert keeps(strategy="all", augmentation=dataclasses.replace(flips, horizontal_flip=False))


def test_with_the_augmentation_off_each_image_is_cached_once(imbalanced, tmp_path):
    from tlcore.config import AugmentationConfig
    from tlcore.data import folders

    off = AugmentationConfig(rotation_degrees=0, width_shift=0, height_shift=0, zoom=0, horizontal_flip=False)
    config = config_for(imbalanced, strategy="frozen_augmented", augmented_views=3, epochs=3, augmentation=off)
    context = training_context.TrainingContext(config=config, dataset=folders.scan(imbalanced), runs_dir=str(tmp_path))
    staged = augmented.build_staged(context)
    assert staged.flip_copies == 1 and len(staged.train_views) == 16
    assert np.array_equal(staged.view(0), staged.view(2))


@pytest.mark.parametrize("strategy", ["frozen_augmented", "fine_tuning"])
def test_cached_training_reports_what_the_saved_model_does(imbalanced, tmp_path, strategy):
    """The validation metrics measured on cached activations are those of the saved model on the photos."""
    from tlcore.data import folders, pipeline
    from tlcore.serving import predict

    config = config_for(
        imbalanced, strategy=strategy, augmented_views=2, head="global_average", epochs=2, learning_rate=1e-3
    )
    run = store.create(config, tmp_path)
    assert worker.execute(run, runs_dir=tmp_path)["state"] == "done"
    last = run.metrics()[-1]
    predictor = predict.load(run, tmp_path)
    dataset = folders.scan(imbalanced)
    probabilities = predictor.probabilities(pipeline.load_images(dataset.paths("validation"), 32))[:, 1]
    labels = dataset.labels("validation")
    accuracy = float(np.mean((probabilities > 0.5) == (labels == 1)))
    loss = float(-np.mean(labels * np.log(probabilities + 1e-7) + (1 - labels) * np.log(1 - probabilities + 1e-7)))
    assert accuracy == pytest.approx(last["val_accuracy"], abs=1e-6)
    assert loss == pytest.approx(last["val_loss"], abs=1e-3)


def test_suggestion_ignores_the_noisy_start_of_the_sweep():
    rates = np.geomspace(1e-6, 1, 60)
    losses = 0.7 - 0.5 / (1 + np.exp(-(np.log10(rates) + 3.5) * 3))
    losses[:3] = [0.9, 0.5, 0.72]  # Smoothing not settled yet: a steep drop that means nothing.
    assert 1e-5 < lr_finder.suggest(rates, losses) < 1e-2


@pytest.mark.parametrize("continue_head", [True, False])
def test_frozen_augmented_continues_the_head_feature_extraction_trained(imbalanced, tmp_path, continue_head):
    from tlcore.data import folders
    from tlcore.training import extraction

    config = config_for(imbalanced, strategy="all", augmented_views=1, epochs=1, continue_head=continue_head)
    context = training_context.TrainingContext(config=config, dataset=folders.scan(imbalanced), runs_dir=str(tmp_path))
    extraction.run_feature_extraction(context)
    trained = [weights.copy() for weights in context.feature_head.get_weights()]
    staged = augmented.build_staged(context)
    starts_from = staged.head.get_weights()
    same = all(np.array_equal(left, right) for left, right in zip(trained, starts_from))
    assert same is continue_head
    # A copy: training frozen + augmentation leaves the model feature extraction saved as it was.
    assert staged.head is not context.feature_head
    staged.head.set_weights([weights + 1 for weights in starts_from])
    assert all(np.array_equal(left, right) for left, right in zip(trained, context.feature_head.get_weights()))
