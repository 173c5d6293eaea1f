"""The Predict page's camera tab: a snapshot classified through the uploads' path, with its Grad-CAM heatmap."""

from __future__ import annotations

from tests.app.page_kit import open_page, plain, texts


def test_the_camera_tab_classifies_a_snapshot_and_shows_where_the_model_looked(
    trained_runs, monkeypatch, small_catsdogs
):
    monkeypatch.setenv("TLCORE_RUNS_DIR", str(trained_runs))
    at = open_page("pages/3_Predict.py")
    assert "Take a photo: the model classifies it and shows where it looked." in texts(at)
    cat = sorted((small_catsdogs / "validation" / "cats").iterdir())[0]
    at.camera_input(key="predict_camera").set_value(("shot.jpg", cat.read_bytes(), "image/jpeg")).run()
    assert not at.exception and not at.error, [error.value for error in at.error]
    [prediction] = [plain(element.value) for element in at.markdown if element.value.startswith("Most likely")]
    label = "cats" if "cats" in prediction else "dogs"
    assert prediction.startswith(f"Most likely: **{label}** (")
    captions = [plain(caption) for element in at.image for caption in element.captions]
    assert captions == [f"where it looked for {label}"]
    assert not at.warning, "a heatmap, not 'No heatmap'"
    # The same photo uploaded in the Photos tab gets the same answer: one prediction path.
    at.file_uploader(key="predict_uploads").set_value([(cat.name, cat.read_bytes(), "image/jpeg")]).run()
    answers = [plain(element.value) for element in at.markdown if element.value.startswith("Most likely")]
    assert answers == [prediction, prediction]


def test_a_snapshot_the_decoder_refuses_is_named_not_a_traceback(trained_runs, monkeypatch):
    monkeypatch.setenv("TLCORE_RUNS_DIR", str(trained_runs))
    at = open_page("pages/3_Predict.py")
    at.camera_input(key="predict_camera").set_value(("shot.jpg", b"\xff\xd8\xff broken", "image/jpeg")).run()
    assert not at.exception
    [error] = [plain(error.value) for error in at.error]
    assert error.startswith("camera snapshot: not a supported image"), error


def test_the_snapshot_lists_as_many_classes_as_asked(trained_runs, monkeypatch, small_catsdogs):
    # The camera tab listed a fixed top 3 (capped at the classes) whatever the person wanted.
    import pyarrow

    monkeypatch.setenv("TLCORE_RUNS_DIR", str(trained_runs))
    at = open_page("pages/3_Predict.py")
    cat = sorted((small_catsdogs / "validation" / "cats").iterdir())[0]
    at.camera_input(key="predict_camera").set_value(("shot.jpg", cat.read_bytes(), "image/jpeg")).run()
    for top in (2, 1):
        at.number_input(key="camera_top").set_value(top).run()
        chart = at.get("vega_lite_chart")[-1]
        assert len(pyarrow.ipc.open_stream(chart.proto.datasets[0].data.data).read_pandas()) == top
