"""The Predict page: photos, the bad-input kit, Grad-CAM, exports, batch prediction (one tiny trained run)."""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.app.page_kit import (
    bad_input_kit,
    click,
    open_page,
    plain,
    scan,
    texts,
    trained_run,
    zip_bytes,
)
from tlcore import files
from tlcore.models.registry import BACKBONES
from tlcore.runs import store
from tlcore.serving import predict


def _predict_page(trained_runs: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("TLCORE_RUNS_DIR", str(trained_runs))
    return open_page("pages/3_Predict.py")


def test_predict_page_predicts_good_photos_and_names_the_bad_file(trained_runs, monkeypatch, small_catsdogs):
    at = _predict_page(trained_runs, monkeypatch)
    cat = sorted((small_catsdogs / "validation" / "cats").iterdir())[0]
    at.file_uploader(key="predict_uploads").set_value(
        [
            (cat.name, cat.read_bytes(), "image/jpeg"),
            ("notes.jpg", b"These are my notes, not a photo.\n", "image/jpeg"),
        ]
    ).run()
    assert not at.exception
    predictions = [markdown.value for markdown in at.markdown if markdown.value.startswith("Most likely")]
    # The label and probability the run's model gives this photo, not merely one of its classes.
    [run] = store.list_runs(trained_runs)
    [expected] = predict.predict_sources(predict.load(run), [cat], top=1)
    best = expected["top"][0]
    assert predictions == [f"Most likely: **{best['label']}** ({best['probability']:.0%})"]
    assert len(at.error) == 1 and "notes.jpg" in plain(at.error[0].value)
    assert "text file" in at.error[0].value
    accuracy = store.describe(run)["model_val_accuracy"]
    # Strategy and backbone by their names, not their keys ("feature_extraction", "efficientnet_lite0").
    backbone = BACKBONES[run.config()["backbone"]].display_name
    assert "The model always answers with one of its classes, even for a photo of something else." in texts(at)
    assert at.selectbox(key="predict_run").options == [
        f"{accuracy:.1%} · 1 · Feature extraction, {backbone} on {Path(run.config()['data_dir']).name} (done) · "
        f"{run.id}"
    ]


def test_predict_page_survives_the_whole_bad_input_kit(trained_runs, monkeypatch, small_catsdogs):
    kit = bad_input_kit(sorted((small_catsdogs / "validation" / "dogs").iterdir())[0])
    at = _predict_page(trained_runs, monkeypatch)
    at.file_uploader(key="predict_uploads").set_value(
        [(name, content, "application/octet-stream") for name, (content, _) in kit.items()]
    ).run()
    assert not at.exception, [item.message for item in at.exception]
    errors = [plain(element.value) for element in at.error]
    for name, (_, word) in kit.items():
        mine = [error for error in errors if error.startswith(f"{name}:")]
        if word is None:
            assert not mine, mine
        else:
            assert len(mine) == 1 and word in mine[0].lower(), (name, mine)
    predictions = [markdown.value for markdown in at.markdown if markdown.value.startswith("Most likely")]
    assert len(predictions) == sum(word is None for _, word in kit.values())


def test_predict_page_loads_the_model_once_per_run(trained_runs, monkeypatch, small_catsdogs):
    from tlcore.serving import predict
    from views import cached

    calls = []
    original = predict.load
    monkeypatch.setattr(predict, "load", lambda *args, **kwargs: calls.append(args) or original(*args, **kwargs))
    cached._predictor.clear()
    at = _predict_page(trained_runs, monkeypatch)
    cat = sorted((small_catsdogs / "validation" / "cats").iterdir())[0]
    for _ in range(3):
        at.file_uploader(key="predict_uploads").set_value((cat.name, cat.read_bytes(), "image/jpeg")).run()
    assert len(calls) == 1
    assert not at.exception


def test_predict_page_grad_cam_draws_an_overlay_beside_each_photo(trained_runs, monkeypatch, small_catsdogs):
    at = _predict_page(trained_runs, monkeypatch)
    photos = [sorted((small_catsdogs / "validation" / name).iterdir())[0] for name in ("cats", "dogs")]
    at.file_uploader(key="predict_uploads").set_value(
        [(photo.name, photo.read_bytes(), "image/jpeg") for photo in photos]
    ).run()
    assert len(at.image) == 2, "photos only, until asked"
    at.toggle(key="predict_gradcam").set_value(True).run()
    assert not at.exception and not at.warning, [element.value for element in at.warning]
    captions = [plain(caption) for element in at.image for caption in element.captions]
    assert sorted(caption for caption in captions if caption.startswith("where it looked")) == sorted(
        f"where it looked for {plain(markdown.value).split('**')[1]}"
        for markdown in at.markdown
        if markdown.value.startswith("Most likely")
    )
    overlays = [element for element in at.image if plain(element.captions[0]).startswith("where it looked")]
    assert len(overlays) == 2


def test_predict_page_exports_tflite_and_offers_the_download(trained_runs, monkeypatch):
    at = _predict_page(trained_runs, monkeypatch)
    assert not at.download_button, "nothing to download before an export"
    click(at, "Export as TFLite")
    assert not at.error, [element.value for element in at.error]
    assert [button.label for button in at.download_button] == ["Download TFLite"]
    agreement = (
        r"model\.tflite \([0-9.]+ [KM]B\) agrees with the Keras model on 100\.0% of 12 validation images "
        r"\(largest probability difference .*\); accuracy ([0-9.]+)%, the Keras model's \1%\. "
        rf"The download, {trained_run(trained_runs).id}-tflite\.zip, holds model\.tflite and labels\.json\.$"
    )
    assert any(re.match(agreement, plain(box.value)) for box in at.success), [box.value for box in at.success]
    exported = trained_run(trained_runs).path / "exports" / "model.tflite"
    assert exported.is_file()
    # Another session (a reload, another tab) finds the export and its check; one deleted since is not offered.
    at = _predict_page(trained_runs, monkeypatch)
    assert [button.label for button in at.download_button] == ["Download TFLite"]
    assert any(re.match(agreement, plain(box.value)) for box in at.success), [box.value for box in at.success]
    # A resume rewrites the run's model: its earlier export is no longer offered as this model's.
    model = trained_run(trained_runs).model_path
    times = model.stat()
    os.utime(model, ns=(times.st_atime_ns, times.st_mtime_ns + 1_000_000_000))
    assert not _predict_page(trained_runs, monkeypatch).download_button
    assert not at.run().download_button, "nor in the session that saw it before"
    os.utime(model, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert _predict_page(trained_runs, monkeypatch).download_button
    exported.unlink()
    assert not _predict_page(trained_runs, monkeypatch).download_button


def test_predict_page_batch_zip_gives_a_table_and_a_csv(trained_runs, monkeypatch, small_catsdogs):
    at = _predict_page(trained_runs, monkeypatch)
    photos = sorted((small_catsdogs / "validation" / "cats").iterdir())[:2]
    archive = zip_bytes({f"album/{photo.name}": photo.read_bytes() for photo in photos} | {"album/notes.txt": b"notes"})
    at.file_uploader(key="batch_zip").set_value(("album.zip", archive, "application/zip")).run()
    click(at, "Predict every photo")
    assert not at.error, [element.value for element in at.error]
    table = at.dataframe[0].value
    assert list(table.columns) == ["file", "top label", "probability", "top k", "error"]
    assert list(table["file"]) == [f"album/{photo.name}" for photo in photos] + ["album/notes.txt"]
    assert set(table["top label"][:2]) <= {"cats", "dogs"} and "not an image" in table["error"].iloc[2]
    assert list(table["error"][:2]) == ["", ""] and table["top label"].iloc[2] == ""
    assert all(50 <= value <= 100 for value in table["probability"][:2]), "the top label's share, in percent"
    assert "album.zip: 2 photos predicted, 1 file could not be used" in texts(at)
    assert "folders named after a class" not in texts(at)  # "album" names no class.
    assert "Not scored" not in texts(at), "one folder of photos is an album, not photos sorted by class"
    assert [button.label for button in at.download_button] == ["Download the CSV"]


def test_predict_page_batch_scores_photos_sorted_into_class_folders(trained_runs, monkeypatch, small_catsdogs):
    at = _predict_page(trained_runs, monkeypatch)
    cats = sorted((small_catsdogs / "validation" / "cats").iterdir())[:2]
    dogs = sorted((small_catsdogs / "validation" / "dogs").iterdir())[:1]
    members = {f"test/cats/{photo.name}": photo.read_bytes() for photo in cats}
    members |= {f"test/dogs/{photo.name}": photo.read_bytes() for photo in dogs} | {"test/readme.txt": b"notes"}
    at.file_uploader(key="batch_zip").set_value(("test.zip", zip_bytes(members), "application/zip")).run()
    click(at, "Predict every photo")
    table = at.dataframe[0].value
    right = {
        name: sum(table["top label"][table["file"].str.startswith(f"test/{name}/")] == name)
        for name in ("cats", "dogs")
    }
    correct = right["cats"] + right["dogs"]
    assert (
        f"Of the 3 photos in folders named after a class, {correct} ({correct / 3:.1%}) were predicted as their "
        f"folder's class: cats {right['cats']} of 2, dogs {right['dogs']} of 1." in texts(at)
    )


def _predict_batch_zip(at: AppTest, small_catsdogs: Path) -> AppTest:
    """Predicts a zip of two cat photos and a text file on the Predict page's batch tab."""
    photos = sorted((small_catsdogs / "validation" / "cats").iterdir())[:2]
    archive = zip_bytes({f"album/{photo.name}": photo.read_bytes() for photo in photos} | {"album/notes.txt": b"notes"})
    at.file_uploader(key="batch_zip").set_value(("album.zip", archive, "application/zip")).run()
    return click(at, "Predict every photo")


def test_predict_page_batch_table_leaves_error_cells_blank_and_gives_top_k_to_a_tenth(
    trained_runs, monkeypatch, small_catsdogs
):
    at = _predict_batch_zip(_predict_page(trained_runs, monkeypatch), small_catsdogs)
    element = at.dataframe[0]
    table = element.value
    # The error row has no probability; the browser writes "None" in such a cell unless the table says
    # what to show instead (an unset placeholder reads "" too, hence HasField).
    assert table["error"].iloc[2] and pd.isna(table["probability"].iloc[2])
    assert element.proto.HasField("placeholder") and element.proto.placeholder == ""
    for label, probability, top_k in zip(table["top label"][:2], table["probability"][:2], table["top k"][:2]):
        items = top_k.split("; ")
        assert items[0] == f"{label} {probability:.1f}%", "the top label's share, as in the probability column"
        assert all(re.fullmatch(r"(cats|dogs) \d{1,3}\.\d%", item) for item in items), items


def test_predict_page_batch_of_a_missing_folder_names_it_and_clears_the_old_table(
    trained_runs, monkeypatch, small_catsdogs, tmp_path
):
    at = _predict_batch_zip(_predict_page(trained_runs, monkeypatch), small_catsdogs)
    assert at.dataframe, "the zip's table"
    missing = tmp_path / "nope"
    at.segmented_control(key="batch_source").set_value("Folder").run()
    at.text_input(key="batch_folder").input(str(missing)).run()
    click(at, "Predict every photo")
    assert [plain(element.value) for element in at.error] == [
        f"{missing} does not exist: expected a folder of photos or a .zip archive."
    ]
    assert not at.dataframe and not at.download_button, "the zip's table is not this folder's"
    photo = sorted((small_catsdogs / "validation" / "cats").iterdir())[0]
    at.text_input(key="batch_folder").input(str(photo)).run()
    click(at, "Predict every photo")
    assert [plain(element.value) for element in at.error] == [
        f"{photo} is neither a folder nor a .zip archive: expected a folder of photos or a .zip archive."
    ]


def test_predict_page_batch_of_a_folder_with_a_name_that_is_not_utf8_shows_it_and_keeps_its_bytes(
    trained_runs, monkeypatch, small_catsdogs, tmp_path
):
    # The table (pandas' text columns) and the CSV download could not carry the name: the page failed whole.
    folder = tmp_path / "album"
    folder.mkdir()
    photo = sorted((small_catsdogs / "validation" / "cats").iterdir())[0]
    shutil.copy(photo, folder / os.fsdecode(b"caf\xe9.jpg"))
    at = _predict_page(trained_runs, monkeypatch)
    at.segmented_control(key="batch_source").set_value("Folder").run()
    at.text_input(key="batch_folder").input(str(folder)).run()
    click(at, "Predict every photo")
    assert not at.error, [element.value for element in at.error]
    assert list(at.dataframe[0].value["file"]) == ["caf\ufffd.jpg"]
    assert [button.label for button in at.download_button] == ["Download the CSV"]


def test_predict_page_takes_every_photo_type_the_data_set_scan_takes(trained_runs, monkeypatch, small_catsdogs):
    from tlcore.data import images

    at = _predict_page(trained_runs, monkeypatch)
    uploader = at.file_uploader(key="predict_uploads")
    assert sorted(uploader.allowed_type) == sorted(images.SUPPORTED_EXTENSIONS)
    photo = Image.open(sorted((small_catsdogs / "validation" / "dogs").iterdir())[0]).convert("RGB")
    uploads = []
    for extension in images.SUPPORTED_EXTENSIONS:
        buffer = io.BytesIO()
        photo.save(buffer, format={".jpg": "JPEG"}.get(extension, extension[1:].upper()))
        uploads.append((f"dog{extension}", buffer.getvalue(), "application/octet-stream"))
    uploader.set_value(uploads).run()  # Streamlit refuses (raises for) a type the uploader does not list.
    assert not at.exception and not at.error, [element.value for element in at.error]
    predictions = [markdown.value for markdown in at.markdown if markdown.value.startswith("Most likely")]
    assert len(predictions) == len(images.SUPPORTED_EXTENSIONS)


def _scored(run, accuracy: float) -> None:
    """Gives a fake finished feature-extraction run a summary with this validation accuracy."""
    files.write_json(
        run.path / "summary.json",
        {"results": {"feature_extraction": {"val_accuracy": accuracy}}, "final_stage": "feature_extraction"},
    )


def test_predict_page_defaults_to_the_best_finished_run_not_the_newest(folders, small_catsdogs):
    from tests.app.page_kit import fake_finished_run

    good = fake_finished_run(folders["runs"], small_catsdogs)
    _scored(good, 0.9)
    newest = fake_finished_run(folders["runs"], small_catsdogs)
    newest.set_status("stopped")
    files.write_json(
        newest.path / "summary.json", {"results": {"scratch": {"val_accuracy": 0.48}}, "final_stage": "scratch"}
    )
    newest.path.rename(newest.path.with_name("29991231-235959-scratch-ffff"))  # Sorts first: the newest.
    at = open_page("pages/3_Predict.py")
    assert at.selectbox(key="predict_run").value == good.id


def test_predict_page_defaults_to_the_best_run_of_the_sessions_data_set(folders, small_catsdogs, tmp_path):
    # It chose the most accurate run of any data set: with cats and dogs chosen, a scenes model came first.
    from tests.app.page_kit import fake_finished_run

    other_data = tmp_path / "scenes"
    shutil.copytree(small_catsdogs, other_data)
    elsewhere = fake_finished_run(folders["runs"], other_data)
    here = fake_finished_run(folders["runs"], small_catsdogs)
    for run, accuracy in ((elsewhere, 0.99), (here, 0.8)):
        _scored(run, accuracy)
    at = open_page("pages/3_Predict.py")  # No data set chosen: the best overall.
    assert at.selectbox(key="predict_run").value == elsewhere.id
    at = open_page("pages/3_Predict.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    assert at.selectbox(key="predict_run").value == here.id
    labels = at.selectbox(key="predict_run").options
    assert sum(f" on {small_catsdogs.name} (" in label for label in labels) == 1


def test_predict_page_lists_the_top_k_asked_for_and_blends_the_heatmap_at_the_opacity_set(
    trained_runs, monkeypatch, small_catsdogs
):
    import pyarrow

    at = _predict_page(trained_runs, monkeypatch)
    photo = sorted((small_catsdogs / "validation" / "cats").iterdir())[0]
    at.file_uploader(key="predict_uploads").set_value([(photo.name, photo.read_bytes(), "image/jpeg")]).run()

    def bars() -> int:
        chart = at.get("vega_lite_chart")[-1]
        return len(pyarrow.ipc.open_stream(chart.proto.datasets[0].data.data).read_pandas())

    assert at.number_input(key="predict_top").value == 2 and bars() == 2, "3, or every class of fewer"
    at.number_input(key="predict_top").set_value(1).run()
    assert not at.exception and bars() == 1
    at.toggle(key="predict_gradcam").set_value(True).run()
    assert at.slider(key="predict_gradcam_opacity").value == pytest.approx(0.45)
    shown = [element.proto.imgs[0].url for element in at.image]
    at.slider(key="predict_gradcam_opacity").set_value(0.9).run()
    assert not at.exception and not at.warning
    again = [element.proto.imgs[0].url for element in at.image]
    assert again[0] == shown[0] and again[1] != shown[1], "the photo stays, the overlay is blended anew"


def test_predict_page_decodes_an_upload_once_across_reruns_and_a_new_file_of_the_same_name_again(
    trained_runs, monkeypatch, small_catsdogs
):
    import streamlit as st

    from tlcore.data import images

    decoded = []
    original = images._decode_array  # The one decoder every read goes through; counted, not replaced.

    def counted(source, label, *rest, **options):
        decoded.append(label)
        return original(source, label, *rest, **options)

    monkeypatch.setattr(images, "_decode_array", counted)
    st.cache_data.clear()  # Photos an earlier test predicted are decoded afresh here.
    at = _predict_page(trained_runs, monkeypatch)
    cat, other = sorted((small_catsdogs / "validation" / "cats").iterdir())[:2]
    uploads = at.file_uploader(key="predict_uploads")
    uploads.set_value((cat.name, cat.read_bytes(), "image/jpeg")).run()
    at.toggle(key="predict_gradcam").set_value(True).run()
    assert len(at.image) == 2 and not at.warning
    first = len(decoded)
    assert first and set(decoded) == {cat.name}
    for _ in range(3):
        at.run()
    at.slider(key="predict_gradcam_opacity").set_value(0.7).run()
    assert len(at.image) == 2 and len(decoded) == first, "reruns decode nothing again"
    at.file_uploader(key="predict_uploads").set_value((cat.name, other.read_bytes(), "image/jpeg")).run()
    assert len(at.image) == 2 and not at.error
    assert len(decoded) == 2 * first, "another file under the same name is decoded as a new photo"


def test_the_run_chosen_on_predict_is_kept_in_the_address_so_a_reload_keeps_it(folders, small_catsdogs):
    # A reload jumped back to the best run, away from the run the person had chosen.
    from tests.app.page_kit import APP, TIMEOUT, fake_finished_run

    best = fake_finished_run(folders["runs"], small_catsdogs)
    _scored(best, 0.9)
    other = fake_finished_run(folders["runs"], small_catsdogs)
    at = open_page("pages/3_Predict.py")
    assert at.selectbox(key="predict_run").value == best.id and at.query_params["model"] == best.id
    # Named apart from the sidebar's "Current run" (the Train page's), which may be another run.
    assert at.selectbox(key="predict_run").label == "Predict with the model of run"
    at.selectbox(key="predict_run").set_value(other.id).run()
    assert at.query_params["model"] == other.id
    assert "run" not in at.query_params, "?run= is the session's run, which the sidebar names"
    reloaded = AppTest.from_file(str(APP), default_timeout=TIMEOUT)  # A reload: a new session, the same address.
    reloaded.query_params["model"] = other.id
    reloaded = open_page("pages/3_Predict.py", reloaded.run())
    assert reloaded.selectbox(key="predict_run").value == other.id and not reloaded.warning
    # A link to a run that is not here (deleted since) is said, not silently replaced by the best run.
    gone = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    gone.query_params["model"] = "20261201-000000-all-efficientnet_lite0-dead"
    gone = open_page("pages/3_Predict.py", gone.run())
    assert [plain(box.value) for box in gone.warning] == [
        "The link's run 20261201-000000-all-efficientnet_lite0-dead is not here or has no usable model: showing "
        "another run below."
    ]
    assert gone.selectbox(key="predict_run").value == best.id and gone.query_params["model"] == best.id
