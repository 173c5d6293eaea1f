"""Bad input through every entry point that is not a page (those are in test_app.py), and the server settings.

The kit of ../shared/guide/bad-input.md is generated here: each bad file must be named with its reason and
skipped, every good one used, through the folder scan, a zip upload, and the CLI's scan and predict.
"""

from __future__ import annotations

import io
import json
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.helpers import cli
from tests.helpers.images import bad_input_kit
from tests.helpers.paths import PROJECT_ROOT
from tlcore.data import folders, zips


@pytest.fixture(scope="module")
def kit(catsdogs_dir) -> dict[str, tuple[bytes, str | None]]:
    return bad_input_kit(sorted((catsdogs_dir / "validation" / "cats").iterdir())[0])


@pytest.fixture(scope="module")
def kit_data_set(tmp_path_factory, kit, catsdogs_subset) -> Path:
    """4 + 2 real photos per class, the kit in train/cats, and macOS/Windows debris."""
    source = catsdogs_subset("kit_source", train=4, validation=2)
    root = tmp_path_factory.mktemp("kit_data_set")
    for path in source.rglob("*.jpg"):
        target = root / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    for name, (content, _) in kit.items():
        (root / "train" / "cats" / name).write_bytes(content)
    (root / "__MACOSX" / "train" / "cats").mkdir(parents=True)
    (root / "__MACOSX" / "train" / "cats" / "._cat.1.jpg").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (root / "train" / "cats" / "._cat.1.jpg").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (root / "train" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "train" / "dogs" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    return root


def expected_rejections(kit) -> dict[str, str]:
    return {name: word for name, (_, word) in kit.items() if word is not None}


def test_folder_scan_rejects_exactly_the_bad_files_with_reasons(kit_data_set, kit):
    dataset = folders.scan(kit_data_set)
    rejected = {Path(item.path).name: item.reason for item in dataset.rejected}
    assert set(rejected) == set(expected_rejections(kit))
    for name, word in expected_rejections(kit).items():
        assert word in rejected[name].lower(), (name, rejected[name])
    good = sum(word is None for _, word in kit.values())
    assert dataset.counts()["train"] == {"cats": 4 + good, "dogs": 4}
    assert dataset.classes == ("cats", "dogs")  # Debris is never a class.


def test_cli_scan_and_predict_name_each_bad_file(kit_data_set, kit, tiny_trained_run):
    scan = cli.tlcore("scan", str(kit_data_set), "--json")
    assert scan.returncode == 0, scan.stderr
    rejected = {Path(item["path"]).name for item in json.loads(scan.stdout)["rejected"]}
    assert rejected == set(expected_rejections(kit))

    run = tiny_trained_run
    files = [str(kit_data_set / "train" / "cats" / name) for name in kit]
    predict = cli.tlcore("predict", *cli.options(run=run.id, runs_dir=run.path.parent, json=True), *files)
    assert predict.returncode == 1, predict.stderr[-2000:]  # Some files failed, the others were predicted.
    results = {Path(item["image"]).name: item for item in json.loads(predict.stdout)}
    for name, (_, word) in kit.items():
        if word is None:
            assert "top" in results[name], results[name]
        else:
            assert word in results[name]["error"].lower(), results[name]


def test_zip_upload_names_bad_files_by_their_name_in_the_archive(kit_data_set, kit, tmp_path):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as writer:
        for path in sorted(kit_data_set.rglob("*")):
            if path.is_file():
                writer.write(path, f"my photos/{path.relative_to(kit_data_set).as_posix()}")
    report = zips.extract_dataset(archive.getvalue(), tmp_path / "upload", name="photos.zip")
    assert report.debris_skipped >= 4
    dataset = folders.scan(tmp_path / "upload")
    originals = {item.original: item.reason for item in dataset.rejected}
    expected = {f"my photos/train/cats/{name}" for name in expected_rejections(kit)}
    assert set(originals) == expected
    assert all(item.name.startswith("my photos/") for item in dataset.rejected)
    assert dataset.counts()["train"]["cats"] == 4 + sum(word is None for _, word in kit.values())


def test_server_settings_keep_protections_on_and_tracebacks_off():
    settings = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["enableXsrfProtection"] is True
    assert settings["server"]["enableCORS"] is True
    assert settings["server"]["headless"] is True
    assert settings["server"]["address"] == "127.0.0.1"  # Reachable from this machine only, unless shared on purpose.
    assert 1 <= settings["server"]["maxUploadSize"] <= 1000  # Megabytes: room for a zipped data set, not unbounded.
    assert settings["client"]["showErrorDetails"] in ("none", False)
    assert settings["browser"]["gatherUsageStats"] is False
