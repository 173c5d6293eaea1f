"""One source for a setting: TrainConfig's field metadata drives validation and the Train page's widgets."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tlcore.config import PRESETS, AugmentationConfig, TrainConfig
from tlcore.models.registry import BACKBONES
from tlcore.settings import SETTING_KEYS, setting, setting_type, settings_of

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = (TrainConfig, AugmentationConfig)
# Values that let a setting sit at its bounds: an alpha other than 1.0 needs a MobileNet without ImageNet weights.
NEEDS = {"alpha": {"backbone": "mobilenet_v2", "weights": "none"}}


def build(config_class: type, **values):
    if config_class is TrainConfig:
        return TrainConfig(data_dir="photos", **values)
    return config_class(**values)


def bounded_settings() -> list:
    return [
        pytest.param(config_class, item, side, id=f"{item.name}-{side}")
        for config_class in CONFIGS
        for item in settings_of(config_class)
        for side in ("min", "max")
        if item.metadata.get(side) is not None
    ]


def just_outside(item: dataclasses.Field, side: str) -> float:
    bound = item.metadata[side]
    if setting_type(item) is int:
        return bound - 1 if side == "min" else bound + 1
    return math.nextafter(bound, -math.inf if side == "min" else math.inf)


def test_every_field_people_set_is_a_described_setting():
    for config_class in CONFIGS:
        names = {item.name for item in settings_of(config_class)}
        assert names == {item.name for item in dataclasses.fields(config_class)} - {"augmentation"}
        for item in settings_of(config_class):
            metadata = item.metadata
            assert set(metadata) <= SETTING_KEYS, item.name
            assert metadata["help"] and "(default" not in metadata["help"], item.name  # Help texts add it.
            assert ". " not in metadata["help"] and not metadata["help"].endswith("."), f"one sentence: {item.name}"
            if item.default is dataclasses.MISSING:
                continue
            assert isinstance(item.default, setting_type(item)), item.name
            if "choices" in metadata:
                assert item.default in metadata["choices"], item.name
            if setting_type(item) in (int, float):
                assert metadata.get("min", -math.inf) <= item.default <= metadata.get("max", math.inf), item.name


def test_choices_come_from_the_registries():
    fields = TrainConfig.__dataclass_fields__
    assert fields["backbone"].metadata["choices"] == tuple(BACKBONES)
    assert fields["image_size"].metadata["min"] == min(backbone.min_size for backbone in BACKBONES.values())
    for preset in PRESETS.values():
        for name, value in preset.items():
            if name == "augmentation":  # Overrides of AugmentationConfig's settings.
                for inner, inner_value in value.items():
                    build(AugmentationConfig, **{inner: inner_value})
            else:
                build(TrainConfig, **{name: value})  # Every preset value is one the metadata accepts.


@pytest.mark.parametrize("config_class, item, side", bounded_settings())
def test_bounds_in_the_metadata_are_what_validation_enforces(config_class, item, side):
    needs = NEEDS.get(item.name, {})
    bound = item.metadata[side]
    assert getattr(build(config_class, **needs, **{item.name: bound}), item.name) == bound
    outside = just_outside(item, side)
    with pytest.raises(ValueError, match=rf"^{item.name} must be .*received {outside!r}"):
        build(config_class, **needs, **{item.name: outside})


def test_a_value_outside_the_choices_or_of_the_wrong_type_is_refused_naming_the_field():
    for config_class in CONFIGS:
        for item in settings_of(config_class):
            if item.default is dataclasses.MISSING:
                continue
            wrong = "no such choice" if "choices" in item.metadata else "12" if setting_type(item) is not str else 12
            with pytest.raises(ValueError, match=rf"^{item.name} must be .*received {wrong!r}"):
                build(config_class, **NEEDS.get(item.name, {}), **{item.name: wrong})
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, received True"):
        build(TrainConfig, epochs=True)
    with pytest.raises(ValueError, match="dropout must be a number in .*received nan"):
        build(TrainConfig, dropout=math.nan)


def test_a_backbone_with_a_larger_minimum_size_still_refuses_smaller_images():
    with pytest.raises(ValueError, match="image_size must be at least 75 for backbone 'inception_v3', received 40"):
        build(TrainConfig, backbone="inception_v3", image_size=40)


def test_a_misspelt_metadata_key_is_refused_where_the_setting_is_declared():
    with pytest.raises(ValueError, match=r"Unknown setting metadata \['maximum'\]"):
        setting(1, "a count", maximum=3)


def test_the_config_module_imports_no_tensorflow_or_keras():
    code = "import sys, tlcore.config; print(sorted({m.split('.')[0] for m in sys.modules} & {'keras', 'tensorflow'}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_train_page_draws_every_setting_marked_for_it_from_the_metadata(small_catsdogs, tmp_path, monkeypatch):
    from tests.app.page_kit import open_page
    from tlcore.data import folders

    monkeypatch.setenv("TLCORE_RUNS_DIR", str(tmp_path / "runs"))
    at = open_page()
    at.session_state["dataset"] = folders.scan(str(small_catsdogs))
    at = open_page("pages/2_Train.py", at)
    at.selectbox(key="train_backbone").set_value("mobilenet_v2").run()  # The width multiplier shows for MobileNets.
    assert not at.exception, [item.message for item in at.exception]
    widgets = {
        widget.key: widget
        for kind in (at.selectbox, at.number_input, at.toggle, at.radio, at.select_slider)
        for widget in kind
        if widget.key and widget.key.startswith("train_")
    }
    marked = [item for item in settings_of(TrainConfig) if item.metadata.get("page")]
    assert {"epochs", "learning_rate", "jit_compile", "augmented_views"} <= {item.name for item in marked}
    for item in marked:
        widget = widgets.get(f"train_{item.name}")
        assert widget is not None, f"no widget for {item.name}"
        assert widget.label == item.metadata["label"], item.name
        if widget.type == "number_input" and item.name != "image_size":  # Its minimum is the backbone's.
            assert (widget.min, widget.max) == (item.metadata.get("min"), item.metadata.get("max")), item.name
            assert widget.help.startswith(item.metadata["help"][0].upper() + item.metadata["help"][1:]), item.name
        if widget.type in ("selectbox", "radio"):
            assert len(widget.options) == len(item.metadata["choices"]), item.name


def test_a_config_json_written_before_split_seed_loads_and_splits_with_its_seed(small_catsdogs, tmp_path):
    """Run folders older than split_seed: their config.json has a seed only, which seeded their split."""
    import json

    from tlcore.insight import evaluate
    from tlcore.runs import store

    old = TrainConfig(data_dir=str(small_catsdogs), seed=42).to_dict()
    del old["split_seed"]
    run = store.create(TrainConfig(data_dir=str(small_catsdogs)), tmp_path)
    (run.path / "config.json").write_text(json.dumps(old))
    loaded = run.train_config()
    assert (loaded.seed, loaded.split_seed) == (42, 42)
    assert evaluate._recorded_split(run.config()) == (0.2, 42)
    assert TrainConfig.from_dict({"data_dir": str(small_catsdogs)}).split_seed == TrainConfig.split_seed == 1337
