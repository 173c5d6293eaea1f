"""Tests that fail when learning breaks: each strategy, trained on a small real set, must learn.

Every case trains one strategy through the worker on real photos from ../shared, then checks the
SAVED model, loaded back from the run folder:

- it scores above a floor on the validation photos (judged against the folder each photo came
  from, so a swapped label mapping fails too), and on scenes every class is recognised;
- every layer the strategy freezes holds exactly its pretrained weights, BatchNorm statistics
  included, compared with a freshly built base;
- every layer the strategy trains has moved away from the values it had before training.

The floors are set from the accuracies `python -m tests.training.measure_floors` measures over
five seeds (see tests/README.md); `python tests/break_training.py` shows that each kind of broken
training makes at least one of these tests fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.helpers.paths import shared_dir, shared_missing_reason
from tlcore.config import AugmentationConfig, TrainConfig, stages_for
from tlcore.models import backbones, heads
from tlcore.runs import store, worker
from tlcore.serving import predict

SHARED_DATA = shared_dir() / "data"
# The seed the tests train with; measure_floors trains this one and four more.
TEST_SEED = 1
# Settings every transfer case shares: the offline backbone at a small size, a few epochs.
TRANSFER = dict(backbone="efficientnet_lite0", weights="imagenet", image_size=96, batch_size=8, epochs=5)
# Horizontal flips only: the default rotations and zooms slow a small CNN down too much for a short test.
FLIP_ONLY = AugmentationConfig(rotation_degrees=0, width_shift=0, height_shift=0, zoom=0, vertical_flip=False)


@dataclass(frozen=True)
class LearningCase:
    """One strategy trained on a small real data set, and what its saved model must score.

    Attributes:
        name: the test id.
        data: the data set folder under ../shared/data ("catsdogs" or "scenes").
        classes: the class folders used, in the order the data set lists them.
        train_per_class: training photos per class (the first ones by file name).
        validation_per_class: validation photos per class.
        settings: TrainConfig fields on top of data_dir and seed.
        floor: the least validation accuracy the saved model must reach: about 0.1 under the least
            of five seeds, on a 0.05 grid (the measurement is in tests/README.md).
        class_floor: the least share of each class's validation photos predicted as that class.
    """

    name: str
    data: str
    classes: tuple[str, ...]
    train_per_class: int
    validation_per_class: int
    settings: dict = field(default_factory=dict)
    floor: float = 0.0
    class_floor: float = 0.0

    def config(self, data_dir: Path, seed: int = TEST_SEED) -> TrainConfig:
        return TrainConfig(data_dir=str(data_dir), seed=seed, **self.settings)

    @property
    def chance(self) -> float:
        return 1.0 / len(self.classes)


CATSDOGS = dict(data="catsdogs", classes=("cats", "dogs"), train_per_class=40, validation_per_class=25)
SCENES = ("buildings", "forest", "glacier", "sea")

CASES = [
    LearningCase("feature_extraction", **CATSDOGS, settings=dict(TRANSFER, strategy="feature_extraction"), floor=0.8),
    LearningCase(
        "frozen_augmented-cached",
        **CATSDOGS,
        settings=dict(TRANSFER, strategy="frozen_augmented", augmented_views=3),
        floor=0.7,
    ),
    LearningCase(
        "frozen_augmented-end_to_end",
        **CATSDOGS,
        settings=dict(TRANSFER, strategy="frozen_augmented", augmented_views=0),
        floor=0.7,
    ),
    LearningCase(
        "fine_tuning-cached",
        **CATSDOGS,
        settings=dict(TRANSFER, strategy="fine_tuning", augmented_views=3, fine_tuning_epochs=2),
        floor=0.75,
    ),
    LearningCase(
        "fine_tuning-cached-stacked",  # Features from three stages (feature_levels), through the cached split.
        **CATSDOGS,
        settings=dict(TRANSFER, strategy="fine_tuning", augmented_views=3, fine_tuning_epochs=2, feature_levels=3),
        floor=0.7,
    ),
    LearningCase(
        "fine_tuning-end_to_end",
        **CATSDOGS,
        settings=dict(TRANSFER, strategy="fine_tuning", augmented_views=0, fine_tuning_epochs=2),
        floor=0.7,
    ),
    LearningCase(
        "scenes-feature_extraction",
        data="scenes",
        classes=SCENES,
        train_per_class=30,
        validation_per_class=20,
        settings=dict(TRANSFER, strategy="feature_extraction"),
        floor=0.8,
        class_floor=0.5,
    ),
    LearningCase(
        "scenes-scratch",
        data="scenes",
        classes=("buildings", "forest", "sea"),
        train_per_class=40,
        validation_per_class=20,
        settings=dict(strategy="scratch", image_size=64, batch_size=8, epochs=12, augmentation=FLIP_ONLY),
        floor=0.55,
    ),
]
MULTI_CLASS = [case for case in CASES if len(case.classes) > 2 and case.class_floor]
TRANSFER_CASES = [case for case in CASES if case.settings["strategy"] != "scratch"]


def make_subset(root: Path, case: LearningCase) -> Path:
    """A data set folder of symbolic links to the first photos of each class in ../shared.

    Args:
        root: an empty or missing folder to fill.
        case: which data set, classes and counts.

    Returns:
        root, holding train/<class>/ and validation/<class>/.
    """
    for split, count in (("train", case.train_per_class), ("validation", case.validation_per_class)):
        for class_name in case.classes:
            source = SHARED_DATA / case.data / split / class_name
            photos = sorted(path for path in source.iterdir() if path.suffix.lower() == ".jpg")[:count]
            if len(photos) < count:
                raise ValueError(f"{source} has {len(photos)} photos, the case needs {count}.")
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for photo in photos:
                (folder / photo.name).symlink_to(photo)
    return root


def leaf_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of a model with its nested models (base, head, augmentation) opened, in order."""
    found = []
    for layer in model.layers:
        found += leaf_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return found


def weight_values(layer: keras.layers.Layer) -> list[np.ndarray]:
    return [np.array(weight.numpy()) for weight in layer.weights]


@dataclass
class TrainedCase:
    """A case trained once: its run folder and each layer's weights before any training."""

    case: LearningCase
    data_dir: Path
    run: store.Run
    runs_dir: Path
    initial: dict[str, list[np.ndarray]]

    def saved_model(self) -> keras.Model:
        return predict.load_model_file(self.run.model_path)


def train_case(case: LearningCase, data_dir: Path, runs_dir: Path, seed: int = TEST_SEED) -> TrainedCase:
    """Trains a case through the worker, recording each layer's weights when it is first compiled.

    Every stage compiles what it trains before fitting (`heads.compile_model`), so the weights a
    layer has at its first compile are the ones it starts training from.
    """
    initial: dict[str, list[np.ndarray]] = {}
    compile_model = heads.compile_model

    def recording_compile(model, *arguments, **keyword_arguments):
        for layer in leaf_layers(model):
            if layer.weights:
                initial.setdefault(layer.name, weight_values(layer))
        return compile_model(model, *arguments, **keyword_arguments)

    run = store.create(case.config(data_dir, seed), runs_dir)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(heads, "compile_model", recording_compile)
        status = worker.execute(run, runs_dir=runs_dir)
    assert status["state"] == "done", status
    return TrainedCase(case, data_dir, run, runs_dir, initial)


def validation_predictions(trained: TrainedCase) -> dict[str, list[str]]:
    """Class folder -> the label the saved model (and its labels.json) gives each of its validation photos."""
    predictor = predict.load(trained.run, trained.runs_dir)
    predicted = {}
    for class_name in trained.case.classes:
        photos = sorted((trained.data_dir / "validation" / class_name).iterdir())
        results = predict.predict_sources(predictor, photos, top=1)
        predicted[class_name] = [result["top"][0]["label"] for result in results]
    return predicted


def accuracy(predicted: dict[str, list[str]]) -> float:
    right = sum(label == class_name for class_name, labels in predicted.items() for label in labels)
    return right / sum(len(labels) for labels in predicted.values())


@pytest.fixture(scope="module")
def trained_case(tmp_path_factory):
    """Trains a case the first time a test asks for it; every later test of the module reuses that run."""
    done: dict[str, TrainedCase] = {}

    def get(case: LearningCase) -> TrainedCase:
        if case.name not in done:
            if not (SHARED_DATA / case.data).is_dir():
                pytest.skip(shared_missing_reason())
            root = tmp_path_factory.mktemp(case.name)
            done[case.name] = train_case(case, make_subset(root / "data", case), root / "runs")
        return done[case.name]

    return get


def case_ids(cases: list[LearningCase]) -> list[str]:
    return [case.name for case in cases]


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_saved_model_scores_above_its_floor(case, trained_case):
    trained = trained_case(case)
    score = accuracy(validation_predictions(trained))
    assert score >= case.floor, (
        f"{case.name}: the saved model scores {score:.3f} on {case.validation_per_class * len(case.classes)} "
        f"validation photos, under its floor {case.floor} (chance {case.chance:.2f})"
    )


@pytest.mark.parametrize("case", MULTI_CLASS, ids=case_ids(MULTI_CLASS))
def test_each_class_is_recognised(case, trained_case):
    """A label mapping shifted or swapped between classes fails here even if the overall score survived."""
    trained = trained_case(case)
    predicted = validation_predictions(trained)
    shares = {name: labels.count(name) / len(labels) for name, labels in predicted.items()}
    assert min(shares.values()) >= trained.case.class_floor, (
        f"share of each class's photos predicted as that class: {shares}, floor {trained.case.class_floor}"
    )


@pytest.mark.parametrize("case", TRANSFER_CASES, ids=case_ids(TRANSFER_CASES))
def test_frozen_layers_keep_their_pretrained_weights_and_trained_ones_change(case, trained_case):
    """The base is frozen in every transfer strategy; fine-tuning trains the top block's layers but its
    BatchNorm layers, which `heads.unfreeze_top_block` keeps frozen (and the base runs with
    training=False, so their moving statistics never update either)."""
    trained = trained_case(case)
    config = case.config(trained.data_dir)
    fresh = backbones.build_base(config.backbone, config.image_size, config.weights, config.alpha)
    saved_base = trained.saved_model().get_layer(fresh.name)
    if "fine_tuning" in stages_for(config.strategy):
        top_block = set(backbones.top_block_layer_names(fresh, config.backbone))
        trainable = {
            layer.name
            for layer in fresh.layers
            if layer.name in top_block and layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
        }
        assert trainable, "fine-tuning found nothing to train in the top block"
        assert set(trained.run.summary()["results"]["fine_tuning"]["unfrozen_layers"]) == trainable
    else:
        trainable = set()
    frozen_changed, trained_unchanged = [], []
    for layer in (layer for layer in fresh.layers if layer.weights):
        saved_values = weight_values(saved_base.get_layer(layer.name))
        for weight, before, after in zip(layer.weights, weight_values(layer), saved_values):
            if layer.name not in trainable and not np.array_equal(before, after):
                frozen_changed.append(f"{layer.name}/{weight.name}")
            if layer.name in trainable and np.array_equal(before, after):
                trained_unchanged.append(f"{layer.name}/{weight.name}")
    assert frozen_changed == [], "these frozen weights differ from the pretrained ones in the saved model"
    assert trained_unchanged == [], "these top-block weights still hold their pretrained values"


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_trained_layers_moved_from_their_starting_weights(case, trained_case):
    """The head (or every layer of the scratch CNN) ends with other weights than it started with, in the saved model."""
    trained = trained_case(case)
    saved = trained.saved_model()
    scratch = case.settings["strategy"] == "scratch"
    layers = [layer for layer in leaf_layers(saved if scratch else saved.get_layer("head")) if layer.weights]
    assert layers, "no trained layer found in the saved model"
    unchanged = [
        f"{layer.name}/{weight.name}"
        for layer in layers
        for weight, before, after in zip(layer.weights, trained.initial[layer.name], weight_values(layer))
        if np.array_equal(before, after)
    ]
    assert unchanged == [], "these trained weights still hold their starting values"
