"""Bad input through every entry point that is not a page (those are in test_app.py), and the server settings.

The kit of ../shared/guide/bad-input.md is generated here: each bad file must be named with its reason and
skipped, every good one used, through the folder scan, a zip upload, and the CLI's scan and predict.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tomllib
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlcore.config import TrainConfig
from tlcore.data import folders, zips
from tlcore.runs import store, worker

ROOT = Path(__file__).resolve().parents[1]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    import struct

    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A valid PNG header declaring width x height 1-bit pixels, with a tiny compressed body."""
    import struct

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * ((width // 8 + 1) * 64))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


def _encoded(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def bad_input_kit(photo: Path) -> dict[str, tuple[bytes, str | None]]:
    """File name -> (bytes, a word its rejection reason must contain, or None for a file that must work)."""
    original = photo.read_bytes()
    rgb = Image.open(photo).convert("RGB")
    png = _encoded(rgb, "PNG")
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [rgb.quantize(64), rgb.rotate(90).quantize(64)]
    animated = io.BytesIO()
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    grey16 = Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    return {
        "zero.jpg": (b"", "empty"),
        "text.jpg": (b"just some words about a cat\n", "text"),
        "page.png": (b"<!DOCTYPE html><html><body>not a photo</body></html>", "html"),
        "truncated.jpg": (original[: len(original) // 2], "truncated"),
        "truncated.png": (png[: len(png) // 2], "decode"),
        "bomb.png": (_bomb_png(), "pixels"),
        "cmyk.jpg": (_encoded(rgb.convert("CMYK"), "JPEG"), None),
        "grey16.png": (_encoded(grey16, "PNG"), None),
        "rgba.png": (_encoded(rgb.convert("RGBA"), "PNG"), None),
        "palette.gif": (_encoded(rgb.quantize(32), "GIF"), None),
        "animated.gif": (animated.getvalue(), None),
        "rotated.jpg": (_encoded(rgb, "JPEG", exif=exif), None),
        "huge.jpg": (_encoded(rgb.resize((8000, 6000)), "JPEG", quality=60), None),
    }


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


def test_cli_scan_and_predict_name_each_bad_file(kit_data_set, kit, catsdogs_subset, tmp_path):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    scan = subprocess.run(
        [sys.executable, "-m", "tlcore", "scan", str(kit_data_set), "--json"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert scan.returncode == 0, scan.stderr
    rejected = {Path(item["path"]).name for item in json.loads(scan.stdout)["rejected"]}
    assert rejected == set(expected_rejections(kit))

    photos = catsdogs_subset("kit_training", train=4, validation=2)
    config = TrainConfig(
        data_dir=str(photos),
        strategy="feature_extraction",
        backbone="vgg16",
        weights="none",
        image_size=32,
        epochs=1,
        batch_size=4,
        head="flatten",
        learning_rate=1e-4,
    )
    run = store.create(config, tmp_path)
    assert worker.execute(run, runs_dir=tmp_path)["state"] == "done"
    files = [str(kit_data_set / "train" / "cats" / name) for name in kit]
    predict = subprocess.run(
        [sys.executable, "-m", "tlcore", "predict", "--run", run.id, "--runs-dir", str(tmp_path), "--json", *files],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
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
    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["enableXsrfProtection"] is True
    assert settings["server"]["enableCORS"] is True
    assert settings["server"]["headless"] is True
    assert 1 <= settings["server"]["maxUploadSize"] <= 1000  # Megabytes: room for a zipped data set, not unbounded.
    assert settings["client"]["showErrorDetails"] in ("none", False)
    assert settings["browser"]["gatherUsageStats"] is False
