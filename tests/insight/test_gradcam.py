"""Grad-CAM: a verifiable synthetic case, every kind of tlcore model, a trained model on a real photo, overlay."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.helpers.runs import LITE0_SETTINGS, trained_run
from tlcore.config import AugmentationConfig, TrainConfig
from tlcore.data import augment, images
from tlcore.insight import gradcam, gradcam_chain
from tlcore.models import backbones, heads
from tlcore.serving import predict

# Where the synthetic image has its red, green and blue squares (row slice, column slice) at 64 x 64.
SQUARES = {0: (slice(4, 24), slice(4, 24)), 1: (slice(4, 20), slice(42, 58)), 2: (slice(42, 58), slice(22, 38))}


def colour_detector(confidence: float = 0.05) -> keras.Model:
    """A 3-class model whose evidence is known: class c = how much of the image is pure colour c.

    A 1x1 convolution turns each pixel into (red, green, blue) "purity" (the channel minus the other
    two, through a ReLU: 0 on grey), pooled over the image, then a softmax over the three, whose
    logits are `confidence` times the purities (large: probabilities of exactly 0 and 1).
    """
    inputs = keras.Input(shape=(32, 32, 3), name="image")
    conv = keras.layers.Conv2D(3, 1, activation="relu", name="conv")
    x = conv(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    dense = keras.layers.Dense(3, activation="softmax", name="output")
    outputs = dense(x)
    conv.set_weights([(2 * np.eye(3) - 1).reshape(1, 1, 3, 3).astype("float32"), np.zeros(3, "float32")])
    dense.set_weights([confidence * np.eye(3, dtype="float32"), np.zeros(3, "float32")])
    return keras.Model(inputs, outputs, name="colour_detector")


def red_or_green_detector(confidence: float) -> keras.Model:
    """Two classes as tlcore builds them: a convolution, then a nested head ending in one sigmoid unit.

    The head's logit is `confidence` times (green purity - red purity): class 1 is "green", class 0 "red".
    """
    inputs = keras.Input(shape=(32, 32, 3), name="image")
    conv = keras.layers.Conv2D(3, 1, activation="relu", name="conv")
    head_inputs = keras.Input(shape=(32, 32, 3), name="features")
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(head_inputs)
    dense = keras.layers.Dense(1, activation="sigmoid", name="output")
    head = keras.Model(head_inputs, dense(pooled), name="head")
    model = keras.Model(inputs, head(conv(inputs)), name="red_or_green")
    conv.set_weights([(2 * np.eye(3) - 1).reshape(1, 1, 3, 3).astype("float32"), np.zeros(3, "float32")])
    dense.set_weights([confidence * np.array([[-1.0], [1.0], [0.0]], "float32"), np.zeros(1, "float32")])
    return model


def squares_image() -> np.ndarray:
    """Grey 64 x 64 with a red (largest), a green and a blue square."""
    image = np.full((64, 64, 3), 128, dtype=np.uint8)
    for channel, (rows, columns) in SQUARES.items():
        image[rows, columns] = 0
        image[rows, columns, channel] = 255
    return image


def test_heatmap_highlights_the_object_of_the_explained_class():
    model, image = colour_detector(), squares_image()
    heatmaps = {index: gradcam.gradcam(model, image, class_index=index) for index in range(3)}
    for index, heatmap in heatmaps.items():
        assert heatmap.shape == (64, 64) and heatmap.dtype == np.float32
        rows, columns = SQUARES[index]
        inside = np.zeros((64, 64), dtype=bool)
        inside[rows, columns] = True
        peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        assert inside[peak], f"class {index}: the peak {peak} is outside its square"
        assert heatmap[inside].mean() > 0.5 and heatmap[~inside].mean() < 0.2
    # Each class points at its own square, so the maps differ; no class index explains the top class (red).
    assert np.abs(heatmaps[0] - heatmaps[1]).mean() > 0.1
    np.testing.assert_allclose(gradcam.gradcam(model, image), heatmaps[0])


def inside_square(index: int) -> np.ndarray:
    inside = np.zeros((64, 64), dtype=bool)
    inside[SQUARES[index]] = True
    return inside


def test_a_saturated_softmax_is_explained_by_its_logits():
    # Probabilities of exactly 1 and 0 have no gradient; the logits still say where the evidence is.
    image = squares_image()
    confident = colour_detector(confidence=500.0)
    batch = gradcam.resize_image(image, 32)[np.newaxis].astype("float32")
    probabilities = keras.ops.convert_to_numpy(confident(batch))[0]
    assert probabilities[0] == 1.0 and probabilities[1] == 0.0 and probabilities[2] == 0.0  # Saturated.
    for index in range(3):
        calm = gradcam.gradcam(colour_detector(), image, class_index=index)
        heatmap = gradcam.gradcam(confident, image, class_index=index)
        assert heatmap[inside_square(index)].mean() > 0.5 and heatmap[~inside_square(index)].mean() < 0.2
        np.testing.assert_allclose(heatmap, calm, atol=1e-5)  # The logits' gradients scale; the map does not.


@pytest.mark.parametrize("confidence", [0.05, 1000.0])
def test_one_sigmoid_unit_in_a_nested_head_explains_both_classes(confidence):
    model, image = red_or_green_detector(confidence), squares_image()
    batch = gradcam.resize_image(image, 32)[np.newaxis].astype("float32")
    probability = float(keras.ops.convert_to_numpy(model(batch))[0, 0])
    assert probability < 0.5 and (confidence < 1 or probability == 0.0)  # More red than green; saturated at 1000.
    _, _, probabilities, chosen = gradcam_chain.feature_map_and_gradients(model, batch)
    np.testing.assert_allclose(probabilities, [1.0 - probability, probability], atol=1e-6)
    assert chosen == 0
    red, green = (gradcam.gradcam(model, image, class_index=index) for index in (0, 1))
    assert red[inside_square(0)].mean() > 0.5 and red[~inside_square(0)].mean() < 0.2
    assert green[inside_square(1)].mean() > 0.5 and green[~inside_square(1)].mean() < 0.2
    np.testing.assert_allclose(gradcam.gradcam(model, image), red)


def test_heatmap_from_weights_channels_by_their_mean_gradient():
    features = np.zeros((2, 2, 2))
    features[0, 1, 0] = 3.0  # Channel 0: evidence top right.
    features[1, 0, 1] = 5.0  # Channel 1: counter-evidence bottom left.
    gradients = np.stack([np.full((2, 2), 1.0), np.full((2, 2), -1.0)], axis=-1)
    np.testing.assert_allclose(gradcam.heatmap_from(features, gradients), [[0, 1], [0, 0]])
    np.testing.assert_allclose(gradcam.heatmap_from(features, -gradients), [[0, 0], [1, 0]])
    assert not gradcam.heatmap_from(np.zeros((2, 2, 2)), gradients).any()  # No evidence: zeros, not NaN.


@pytest.mark.parametrize(
    "name, target",
    [
        ("vgg16", "block5_conv3"),
        ("efficientnet_lite0", "top_activation"),
        ("mobilenet_v2", "out_relu"),
        ("scratch", None),
    ],
)
def test_every_kind_of_model_gives_a_heatmap_of_the_images_shape(name, target):
    augmentation = augment.build_layers(AugmentationConfig())  # Must be skipped: random at inference otherwise.
    if name == "scratch":
        model = heads.build_scratch_model(64, 3, augmentation)
        base = model.get_layer("conv4")
    else:
        base = backbones.build_base(name, 64, weights=None)
        base.trainable = False
        head = heads.build_head(base.output.shape[1:], 3, TrainConfig(data_dir="unused"))
        model = heads.assemble(64, base, head, backbones.preprocessing_layer(name), augmentation)
    position, inner = gradcam_chain.find_target(gradcam_chain.inference_layers(model))
    layer = gradcam_chain.inference_layers(model)[position]
    assert layer is base and inner == target
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    for class_index in (None, 2):
        heatmap = gradcam.gradcam(model, image, class_index=class_index)
        assert heatmap.shape == (40, 56) and np.isfinite(heatmap).all()


def test_bad_arguments_and_models_that_are_not_a_chain_are_refused():
    model, image = colour_detector(), squares_image()
    with pytest.raises(ValueError, match="class_index"):
        gradcam.gradcam(model, image, class_index=3)
    with pytest.raises(ValueError, match="uint8"):
        gradcam.gradcam(model, image.astype("float32"))
    inputs = keras.Input(shape=(32, 32, 3))
    features = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    joined = keras.layers.Concatenate()(
        [keras.layers.GlobalAveragePooling2D()(features), keras.layers.GlobalAveragePooling2D()(inputs)]
    )
    branching = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(joined))
    with pytest.raises(ValueError, match="not a chain"):
        gradcam.gradcam(branching, image)
    with pytest.raises(ValueError, match="No convolutional feature map"):
        dense_only = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
        gradcam.gradcam(dense_only, image)


def _frames(traceback) -> int:
    count = 0
    while traceback is not None:
        count, traceback = count + 1, traceback.tb_next
    return count


def test_each_refusal_is_a_new_error_that_does_not_carry_the_previous_one():
    inputs = keras.Input(shape=(32, 32, 3))
    features = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    joined = keras.layers.Concatenate()(
        [keras.layers.GlobalAveragePooling2D()(features), keras.layers.GlobalAveragePooling2D()(inputs)]
    )
    branching = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(joined))
    refusals = []
    for _ in range(3):
        with pytest.raises(ValueError, match="not a chain") as caught:
            gradcam.gradcam(branching, squares_image())
        refusals.append(caught.value)
    assert len({id(error) for error in refusals}) == 3
    # A re-raised shared object gathers the frames of every raise: its traceback grows each time.
    assert _frames(refusals[2].__traceback__) == _frames(refusals[0].__traceback__)
    for earlier, later in zip(refusals, refusals[1:]):
        assert later.__context__ is not earlier and later.__cause__ is not earlier


@pytest.fixture(scope="module")
def trained_predictor(tmp_path_factory, catsdogs_subset) -> predict.Predictor:
    """An EfficientNet-Lite0 (ImageNet weights) feature-extraction run at 96 px on 8 photos per class."""
    root = catsdogs_subset("gradcam_photos", train=8, validation=4)
    return predict.load(trained_run(tmp_path_factory.mktemp("gradcam_runs"), root, LITE0_SETTINGS))


def test_trained_model_on_a_real_photo_gives_a_structured_heatmap(trained_predictor, catsdogs_dir):
    path = sorted((catsdogs_dir / "validation" / "dogs").iterdir())[10]
    photo = images.decode(path)
    heatmaps = [gradcam.gradcam(trained_predictor, photo, class_index=index) for index in (0, 1)]
    for heatmap in heatmaps:
        assert heatmap.shape == photo.shape[:2]
    top = gradcam.gradcam(trained_predictor, photo)
    assert top.std() > 0.05 and top.max() > 0.9  # Not constant: some regions matter more.
    assert np.abs(heatmaps[0] - heatmaps[1]).mean() > 0.05  # Evidence for "cats" is not evidence for "dogs".


def test_explaining_a_file_explains_the_pixels_its_prediction_saw(trained_predictor, catsdogs_dir, tmp_path):
    path = sorted((catsdogs_dir / "validation" / "cats").iterdir())[3]
    [predicted] = predict.predict_sources(trained_predictor, [path])
    heatmap, probabilities, chosen = gradcam.explain_source(trained_predictor, path)
    size = trained_predictor.image_size
    assert heatmap.shape == (size, size) and heatmap.dtype == np.float32 and heatmap.max() > 0.9
    # The same input as the prediction: the same top class with the same probability (a display
    # thumbnail stretched again to the model's size would be another input, with other scores).
    assert trained_predictor.labels[chosen] == predicted["top"][0]["label"]
    assert probabilities[chosen] == pytest.approx(predicted["top"][0]["probability"], abs=1e-5)
    expected = trained_predictor.probabilities(images.load_resized(path, size)[np.newaxis])[0]
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    # The bytes of an upload give the same; an explicit class is explained as asked.
    from_bytes, _, _ = gradcam.explain_source(trained_predictor, path.read_bytes(), name=path.name)
    np.testing.assert_allclose(from_bytes, heatmap, atol=1e-5)
    assert gradcam.explain_source(trained_predictor, path, class_index=1 - chosen)[2] == 1 - chosen
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(path.read_bytes()[:200])
    with pytest.raises(images.InvalidImageError, match="broken.jpg"):
        gradcam.explain_source(trained_predictor, broken)


def test_colour_map_and_overlay():
    blue, middle, red = gradcam.jet(np.array([0.0, 0.5, 1.0]))
    assert blue[2] > 0.4 and blue[0] == 0 and red[0] > 0.4 and red[2] == 0 and middle[1] == 1.0
    image = squares_image()
    heatmap = np.zeros((8, 8), dtype=np.float32)
    heatmap[:4, :4] = 1.0  # Another size than the image: resized.
    blended = gradcam.overlay(image, heatmap, alpha=0.4)
    assert blended.shape == image.shape and blended.dtype == np.uint8
    np.testing.assert_array_equal(gradcam.overlay(image, heatmap, alpha=0.0), image)
    coloured = gradcam.overlay(image, heatmap, alpha=1.0)
    assert coloured[2, 2, 0] > 100 and coloured[2, 2, 2] == 0  # Hot: red.
    assert coloured[60, 60, 2] > 100 and coloured[60, 60, 0] == 0  # Cold: blue.
    with pytest.raises(ValueError, match="alpha"):
        gradcam.overlay(image, heatmap, alpha=1.5)
