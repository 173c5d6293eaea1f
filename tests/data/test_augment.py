"""Augmentation settings, the Keras layers built from them, and the preview made by those layers."""

from __future__ import annotations

import numpy as np
import pytest

from tlcore.config import AugmentationConfig
from tlcore.data import augment

ALL_OFF = dict(rotation_degrees=0, width_shift=0, height_shift=0, zoom=0, horizontal_flip=False, vertical_flip=False)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A 64 x 64 RGB image with no symmetry: random 8 x 8 blocks."""
    blocks = np.random.default_rng(0).integers(0, 256, (8, 8, 3))
    return np.kron(blocks, np.ones((8, 8, 1))).astype(np.uint8)


def test_preview_draws_distinct_copies_of_the_input_shape(image):
    copies = augment.preview(image, AugmentationConfig(), count=6, seed=1)
    assert len(copies) == 6
    for copy in copies:
        assert copy.dtype == np.uint8 and copy.shape == image.shape
        assert not np.array_equal(copy, image)
    for first in range(6):
        for second in range(first + 1, 6):
            assert not np.array_equal(copies[first], copies[second]), (first, second)


def test_preview_same_seed_same_copies_other_seed_new_ones(image):
    first = augment.preview(image, AugmentationConfig(), count=4, seed=21)
    again = augment.preview(image, AugmentationConfig(), count=4, seed=21)
    other = augment.preview(image, AugmentationConfig(), count=4, seed=22)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not any(np.array_equal(a, b) for a, b in zip(first, other))


def test_preview_with_everything_off_returns_the_input(image):
    settings = AugmentationConfig(**ALL_OFF)
    assert settings.is_identity
    copies = augment.preview(image, settings, count=3, seed=5)
    assert len(copies) == 3
    for copy in copies:
        assert copy.dtype == np.uint8 and np.array_equal(copy, image)


@pytest.mark.parametrize(
    ("flip", "seed"),
    [("horizontal_flip", 0), ("horizontal_flip", 1), ("horizontal_flip", 2), ("vertical_flip", 4)],
)
def test_one_flip_alone_gives_the_image_or_its_flip_each_at_random(image, flip, seed):
    settings = AugmentationConfig(**{**ALL_OFF, flip: True})
    copies = augment.preview(image, settings, count=12, seed=seed)
    flipped = image[:, ::-1] if flip == "horizontal_flip" else image[::-1]
    assert len(copies) == 12 and not np.array_equal(flipped, image)
    kinds = []
    for copy in copies:
        if np.array_equal(copy, image):
            kinds.append("same")
        elif np.array_equal(copy, flipped):
            kinds.append("flipped")
        else:
            pytest.fail(f"{flip} produced something other than the image or its flip")
    assert set(kinds) == {"same", "flipped"}  # each copy is flipped on its own (12 draws: P(fail) = 2/4096)


@pytest.mark.parametrize(
    ("flips", "expected"),
    [
        ({"horizontal_flip": True}, [(False, False), (True, False)]),
        ({"vertical_flip": True}, [(False, False), (False, True)]),
        (
            {"horizontal_flip": True, "vertical_flip": True},
            [(False, False), (True, False), (False, True), (True, True)],
        ),
        ({}, [(False, False)]),
    ],
)
def test_flip_copies_are_every_image_the_flip_layer_makes(image, flips, expected):
    """The copies training caches for a flips-only augmentation are exactly what RandomFlip draws, each of them."""
    settings = AugmentationConfig(**{**ALL_OFF, **flips})
    copies = augment.flip_copies(settings)
    assert list(copies) == expected
    made = [augment.flip_copy(image[np.newaxis], copy)[0] for copy in copies]
    drawn = augment.preview(image, settings, count=40, seed=3)
    which = []
    for copy in drawn:
        matches = [index for index, candidate in enumerate(made) if np.array_equal(copy, candidate)]
        assert len(matches) == 1, "each drawn image is one flip copy, and the copies differ"
        which.append(matches[0])
    assert set(which) == set(range(len(copies)))  # Every copy is drawn (40 draws of at most 4 copies).


def test_flip_copies_are_none_when_anything_but_flips_is_on():
    assert augment.flip_copies(AugmentationConfig()) is None  # The default rotates, shifts and zooms.
    for setting in ("rotation_degrees", "width_shift", "height_shift", "zoom", "brightness", "contrast"):
        settings = AugmentationConfig(**{**ALL_OFF, "horizontal_flip": True, setting: 0.1})
        assert augment.flip_copies(settings) is None, setting
    with pytest.raises(ValueError, match=r"images must have shape \(batch, height, width, channels\), received"):
        augment.flip_copy(np.zeros((8, 8, 3)), (True, False))


def _bright_line_offsets(copies: list[np.ndarray], axis: int) -> set[int]:
    """Where a bright line through the middle of a 64 x 64 image went in each copy: rows (axis 0) or columns."""
    return {int(np.argmax(copy[..., 0].mean(axis=1 - axis))) - 32 for copy in copies}


@pytest.mark.parametrize(("setting", "axis"), [("height_shift", 0), ("width_shift", 1)])
def test_shifts_go_both_ways_as_the_summary_says(setting, axis):
    """wording.augmentation says "10% up or down" and "10% left or right": the layers must shift both ways."""
    line = np.zeros((64, 64, 3), np.uint8)
    if axis == 0:
        line[32] = 255
    else:
        line[:, 32] = 255
    copies = augment.preview(line, AugmentationConfig(**{**ALL_OFF, setting: 0.2}), count=12, seed=3)
    offsets = _bright_line_offsets(copies, axis)
    assert min(offsets) < 0 < max(offsets), offsets


def test_layers_follow_the_settings():
    names = [layer.name for layer in augment.build_layers(AugmentationConfig(brightness=0.2, contrast=0.3)).layers]
    assert names == ["flip_left_right", "rotation", "shift", "zoom", "brightness", "contrast"]
    assert augment.build_layers(AugmentationConfig(**ALL_OFF)).layers == []
    only_zoom = augment.build_layers(AugmentationConfig(**{**ALL_OFF, "zoom": 0.1}))
    assert [layer.name for layer in only_zoom.layers] == ["zoom"]
    both_flips = augment.build_layers(AugmentationConfig(**{**ALL_OFF, "horizontal_flip": True, "vertical_flip": True}))
    assert [layer.name for layer in both_flips.layers] == ["flip_left_right", "flip_upside_down"]


def test_layers_are_identity_in_inference(image):
    layers = augment.build_layers(AugmentationConfig(brightness=0.3, contrast=0.3), seed=9)
    batch = np.stack([image, image[::-1]]).astype("float32")
    output = np.asarray(layers(batch, training=False))
    assert output.dtype == np.float32
    assert np.array_equal(output, batch)
    # ... and not in training, so the check above is not vacuous.
    assert not np.array_equal(np.asarray(layers(batch, training=True)), batch)


def test_preview_refuses_bad_arguments(image):
    for count in (0, -1, 2.0):
        with pytest.raises(ValueError, match=repr(count)):
            augment.preview(image, AugmentationConfig(), count=count)
    with pytest.raises(ValueError, match=r"\(64, 64\)"):
        augment.preview(image[..., 0], AugmentationConfig())


@pytest.mark.parametrize(
    "settings, received",
    [
        ({"rotation_degrees": -5}, "-5"),
        ({"rotation_degrees": 181}, "181"),
        ({"rotation_degrees": True}, "True"),
        ({"width_shift": 1.5}, "1.5"),
        ({"height_shift": -0.1}, "-0.1"),
        ({"zoom": 0.95}, "0.95"),
        ({"zoom": "0.2"}, "'0.2'"),
        ({"brightness": 2}, "2"),
        ({"contrast": -1}, "-1"),
        ({"horizontal_flip": "yes"}, "'yes'"),
        ({"vertical_flip": 1}, "1"),
        ({"fill_mode": "mirror"}, "'mirror'"),
    ],
)
def test_augmentation_config_names_the_bad_value(settings, received):
    (field,) = settings
    with pytest.raises(ValueError) as caught:
        AugmentationConfig(**settings)
    message = str(caught.value)
    assert field in message and f"received {received}" in message


def test_augmentation_config_round_trips_and_refuses_unknown_keys():
    settings = AugmentationConfig(rotation_degrees=10, zoom=0.1, brightness=0.2)
    assert AugmentationConfig.from_dict(settings.to_dict()) == settings
    with pytest.raises(ValueError, match="rotation"):
        AugmentationConfig.from_dict({"rotation": 10})


def test_augmentation_compiled_with_the_model_gives_the_eager_outputs_bit_for_bit(image):
    """Cached views run the augmentation inside the model's graph: the same views as called eagerly."""
    import keras

    from tlcore.models.inference import augmented_inference_function, inference_function

    keras.utils.set_random_seed(3)
    inputs = keras.Input((64, 64, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, strides=2)(inputs / 255.0))
    settings = AugmentationConfig(brightness=0.2, contrast=0.2)  # Every layer: flip, rotation, shift, zoom, ...
    batch = np.stack([image, image[::-1], image[:, ::-1], image.transpose(1, 0, 2)]).astype("float32")
    eager_layers, compiled_layers = (augment.build_layers(settings, seed=41) for _ in range(2))
    forward, compiled = inference_function(model), augmented_inference_function(model, compiled_layers)
    for _ in range(2):  # The second call draws new transforms, alike in both.
        eager = forward(eager_layers(batch, training=True))
        assert np.array_equal(compiled(batch), eager)
    assert not np.array_equal(eager, forward(batch))  # The augmentation did something.
