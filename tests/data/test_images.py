"""The one decoder against the bad-input kit (shared/guide/bad-input.md, "Images").

Every file is generated here in `tmp_path`; each case goes through the four ways an image is read:
`decode` and `load_resized`, from a path (folder scan, training) and from bytes (an upload).
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tests.helpers.images import bomb_png, declared_png, encoded, png_chunk
from tests.helpers.paths import PROJECT_ROOT
from tlcore.data import image_limits, images

ENTRY_POINTS = ("decode", "load_resized", "decode-bytes", "load_resized-bytes")
RESIZED = 24


# --- generated files -------------------------------------------------------------------------


def _photo(width: int = 128, height: int = 96, seed: int = 0) -> Image.Image:
    """A photo-like image: random 8 x 8 blocks (so JPEG and PNG files have real content)."""
    blocks = np.random.default_rng(seed).integers(0, 256, (height // 8, width // 8, 3))
    return Image.fromarray(np.kron(blocks, np.ones((8, 8, 1))).astype(np.uint8))


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


BAD_FILES = {
    # id: (file name, content factory, a word the reason must contain)
    "zero-byte": ("empty.jpg", lambda: b"", "empty"),
    "text-as-jpg": ("notes.jpg", lambda: b"Shopping list:\n- cat food\n- dog treats\n", "text"),
    "html-as-png": (
        "page.png",
        lambda: b"<!DOCTYPE html>\n<html><head><title>Cat</title></head><body><img src=cat.jpg></body></html>",
        "html",
    ),
    "truncated-jpeg": ("cut.jpg", lambda: _truncated(encoded(_photo(), "JPEG", quality=90)), "truncated"),
    "truncated-png": ("cut.png", lambda: _truncated(encoded(_photo(), "PNG")), "truncated"),
    "tiff": ("scan.tif", lambda: encoded(_photo(), "TIFF"), "expected one of"),
    "ico": ("favicon.ico", lambda: encoded(_photo(64, 64), "ICO"), "expected one of"),
}


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _read(entry: str, path: Path, image_size: int = RESIZED) -> tuple[np.ndarray, str]:
    """Reads `path` through one entry point. Returns the array and the name errors must carry."""
    if entry == "decode":
        return images.decode(path), str(path)
    if entry == "load_resized":
        return images.load_resized(path, image_size), str(path)
    name = f"upload/{path.name}"
    data = path.read_bytes()
    if entry == "decode-bytes":
        return images.decode(data, name=name), name
    return images.load_resized(data, image_size, name=name), name


def _refused(entry: str, path: Path) -> images.InvalidImageError:
    """Asserts the entry point refuses the file with an InvalidImageError naming it; returns it."""
    expected_name = str(path) if "bytes" not in entry else f"upload/{path.name}"
    with pytest.raises(images.InvalidImageError) as caught:
        _read(entry, path)
    error = caught.value
    assert error.path == expected_name
    assert isinstance(error.reason, str) and len(error.reason) > 10
    assert expected_name in str(error) and error.reason in str(error)
    return error


def _rgb(array: np.ndarray, shape: tuple[int, int]) -> None:
    assert array.dtype == np.uint8
    assert array.shape == (*shape, 3)


# --- refused files ---------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_is_refused_with_its_name_and_reason(tmp_path, case, entry):
    name, content, word = BAD_FILES[case]
    path = _write(tmp_path, name, content())
    error = _refused(entry, path)
    assert word in error.reason.lower()


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("case", ["tiff", "ico"])
def test_unsupported_format_reason_lists_accepted_formats(tmp_path, case, entry):
    name, content, _ = BAD_FILES[case]
    error = _refused(entry, _write(tmp_path, name, content()))
    assert {"JPEG", "PNG"} <= set(images.SUPPORTED_FORMATS)
    for accepted in images.SUPPORTED_FORMATS:
        assert accepted in error.reason


def test_truncated_jpeg_passes_pillow_verify_but_not_the_decoder(tmp_path):
    """Why the decoder decodes fully: Pillow's verify() accepts a JPEG cut in half."""
    data = _truncated(encoded(_photo(), "JPEG", quality=90))
    with Image.open(io.BytesIO(data)) as image:
        image.verify()  # no error: verify() does not decode the JPEG scan data
    for entry in ENTRY_POINTS:
        assert "truncated" in _refused(entry, _write(tmp_path, "cut.jpg", data)).reason


def test_html_and_text_reasons_are_told_apart(tmp_path):
    html = _refused("decode", _write(tmp_path, "page.png", BAD_FILES["html-as-png"][1]()))
    text = _refused("decode", _write(tmp_path, "notes.jpg", BAD_FILES["text-as-jpg"][1]()))
    assert "HTML" in html.reason
    assert "HTML" not in text.reason and "text" in text.reason


def test_missing_file_is_refused(tmp_path):
    path = tmp_path / "gone.jpg"
    for read in (images.decode, lambda source: images.load_resized(source, RESIZED)):
        with pytest.raises(images.InvalidImageError) as caught:
            read(path)
        assert caught.value.path == str(path)
        assert "no such file" in caught.value.reason


def test_uploaded_bytes_without_a_name_are_labelled(tmp_path):
    with pytest.raises(images.InvalidImageError) as caught:
        images.decode(b"not an image at all")
    assert caught.value.path == "<uploaded bytes>"
    with pytest.raises(images.InvalidImageError) as caught:
        images.load_resized(b"", RESIZED)
    assert caught.value.path == "<uploaded bytes>"
    assert "empty" in caught.value.reason


def test_huge_non_image_is_refused_without_reading_it_whole(tmp_path):
    """A large file renamed .jpg (a video, a disk image): only its head is read to describe it."""
    path = tmp_path / "movie.jpg"
    with open(path, "wb") as stream:
        stream.write(b"\x00\x00\x00\x18ftypmp42")
        stream.truncate(256 * 1024 * 1024)  # sparse: costs no disk
    tracemalloc.start()
    try:
        error = _refused("decode", path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "not a supported image" in error.reason
    assert peak < 16 * 1024 * 1024, f"read {peak / 2**20:.0f} MiB to refuse a non-image"


@pytest.mark.parametrize("image_size", [0, -160, 1.5, "160", True, None])
def test_load_resized_rejects_a_bad_size(tmp_path, image_size):
    path = _write(tmp_path, "photo.png", encoded(_photo(), "PNG"))
    with pytest.raises(ValueError, match=repr(image_size).replace(".", r"\.")):
        images.load_resized(path, image_size)


# --- decompression bombs ---------------------------------------------------------------------


@pytest.fixture
def no_decoding(monkeypatch):
    """Makes any pixel decoding fail the test: a bomb must be refused from its header alone."""

    def refuse_to_decode(self, *args, **kwargs):
        raise AssertionError(f"decoded the pixels of a {self.size} image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_to_decode)
    monkeypatch.setattr(Image.Image, "load", refuse_to_decode)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_decompression_bomb_is_refused_before_decoding(tmp_path, no_decoding, entry):
    assert len(bomb_png()) < 200_000  # a small file declaring 400 megapixels
    path = _write(tmp_path, "bomb.png", bomb_png())
    error = _refused(entry, path)  # `no_decoding` fails the test if a single pixel is decoded.
    assert "decompression bomb" in error.reason.lower()


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_pixel_cap_holds_without_pillows_own_guard(tmp_path, monkeypatch, no_decoding, entry):
    """Our cap does not rely on Pillow's global MAX_IMAGE_PIXELS, which any library may switch off."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    error = _refused(entry, _write(tmp_path, "bomb.png", bomb_png()))
    assert "20000 x 20000" in error.reason
    assert f"{image_limits.MAX_PIXELS:,}" in error.reason


def _declaring(image_format: str, width: int, height: int) -> bytes:
    """A 16 x 16 image whose header is rewritten to declare width x height pixels."""
    data = bytearray(encoded(Image.new("RGB", (16, 16), (90, 60, 30)), image_format))
    if image_format == "JPEG":
        start = data.index(b"\xff\xc0") + 5  # The frame header: length, precision, then height, width.
        data[start : start + 4] = struct.pack(">HH", height, width)
    else:  # GIF: the logical screen, then the first frame's descriptor.
        data[6:10] = struct.pack("<HH", width, height)
        start = data.index(b"\x2c") + 5
        data[start : start + 4] = struct.pack("<HH", width, height)
    return bytes(data)


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """Image format -> a small file declaring 20000 x 20000 pixels (made before `no_decoding` applies)."""
    return {"PNG": bomb_png(), "JPEG": _declaring("JPEG", 20_000, 20_000), "GIF": _declaring("GIF", 20_000, 20_000)}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "GIF"])
def test_bomb_above_pillows_own_limit_gets_our_message_not_pillows(tmp_path, bombs, no_decoding, entry, image_format):
    """400 megapixels is above twice Pillow's MAX_IMAGE_PIXELS: Image.open raises before our cap runs."""
    assert 20_000 * 20_000 > 2 * Image.MAX_IMAGE_PIXELS
    error = _refused(entry, _write(tmp_path, f"bomb.{image_format.lower()}", bombs[image_format]))
    assert error.reason == (
        "image is 20000 x 20000 = 400,000,000 pixels, above the limit of 100,000,000 pixels "
        "(possible decompression bomb)"
    )


def test_image_just_above_the_cap_is_refused(tmp_path, no_decoding):
    """110 megapixels: under Pillow's own error threshold, above ours."""
    error = _refused("load_resized", _write(tmp_path, "wide.png", declared_png(11_000, 10_000)))
    assert "11000 x 10000" in error.reason and "decompression bomb" in error.reason


# --- colour conversion -------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_cmyk_jpeg_becomes_rgb(tmp_path, entry):
    image = Image.new("CMYK", (32, 16), (0, 255, 255, 0))  # red
    image.paste((0, 0, 0, 255), (16, 0, 32, 16))  # black
    path = _write(tmp_path, "cmyk.jpg", encoded(image, "JPEG", quality=95))
    with Image.open(path) as opened:
        assert opened.mode == "CMYK"
    array, _ = _read(entry, path, image_size=32)
    _rgb(array, (16, 32) if entry.startswith("decode") else (32, 32))
    left, right = array[:, :12].reshape(-1, 3), array[:, -12:].reshape(-1, 3)
    np.testing.assert_allclose(left.mean(0), (255, 0, 0), atol=10)
    np.testing.assert_allclose(right.mean(0), (0, 0, 0), atol=10)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_16_bit_greyscale_png_scales_to_8_bits(tmp_path, entry):
    """Mid-grey 32768 of 65535 is mid-grey 128, not white (Pillow's plain convert clips it)."""
    columns = np.array([0, 32768, 65535], dtype=np.uint16)
    values = np.repeat(np.repeat(columns, 8)[np.newaxis], 8, axis=0)  # 8 x 24: three 8-px bands
    path = _write(tmp_path, "grey16.png", encoded(Image.fromarray(values), "PNG"))
    with Image.open(path) as opened:
        assert opened.mode.startswith("I")  # really 16-bit on disk
    array, _ = _read(entry, path, image_size=24)
    _rgb(array, (8, 24) if entry.startswith("decode") else (24, 24))
    assert np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2])
    bands = [array[:, 8 * index + 3 : 8 * index + 5, 0] for index in range(3)]
    for band, expected in zip(bands, (0, 128, 255)):
        assert np.abs(band.astype(int) - expected).max() <= 1, (band, expected)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_rgba_png_is_composited_on_white(tmp_path, entry):
    colours = [(255, 0, 0, 255), (0, 0, 0, 0), (0, 0, 255, 128), (0, 128, 0, 255)]
    image = Image.new("RGBA", (32, 8))
    for index, colour in enumerate(colours):
        image.paste(colour, (8 * index, 0, 8 * index + 8, 8))
    path = _write(tmp_path, "rgba.png", encoded(image, "PNG"))
    array, _ = _read(entry, path, image_size=32)
    _rgb(array, (8, 32) if entry.startswith("decode") else (32, 32))
    expected = [(255, 0, 0), (255, 255, 255), (127, 127, 255), (0, 128, 0)]
    for index, colour in enumerate(expected):
        centre = array[:, 8 * index + 3 : 8 * index + 5].reshape(-1, 3)
        np.testing.assert_allclose(centre.mean(0), colour, atol=2)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_palette_gif_becomes_rgb(tmp_path, entry):
    image = Image.new("P", (30, 10))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0, 0, 0] * 253)
    for index in range(3):
        image.paste(index, (10 * index, 0, 10 * index + 10, 10))
    path = _write(tmp_path, "stripes.gif", encoded(image, "GIF"))
    array, _ = _read(entry, path, image_size=30)
    _rgb(array, (10, 30) if entry.startswith("decode") else (30, 30))
    for index, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        assert (array[:, 10 * index + 3 : 10 * index + 7] == colour).all()


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_transparent_gif_is_composited_on_white(tmp_path, entry):
    image = Image.new("P", (16, 8))
    image.putpalette([0, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    image.paste(1, (8, 0, 16, 8))  # right half blue, left half index 0 = transparent black
    path = _write(tmp_path, "clear.gif", encoded(image, "GIF", transparency=0))
    array, _ = _read(entry, path, image_size=16)
    assert (array[:, 2:6] == (255, 255, 255)).all()
    assert (array[:, 10:14] == (0, 0, 255)).all()


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_animated_gif_gives_its_first_frame(tmp_path, entry):
    frames = [Image.new("RGB", (20, 10), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    path = _write(tmp_path, "blink.gif", data)
    with Image.open(path) as opened:
        assert opened.n_frames == 3
    array, _ = _read(entry, path, image_size=20)
    _rgb(array, (10, 20) if entry.startswith("decode") else (20, 20))
    assert (array == (255, 0, 0)).all()


def test_greyscale_jpeg_becomes_three_equal_channels(tmp_path):
    grey = Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1)))
    path = _write(tmp_path, "grey.jpg", encoded(grey, "JPEG", quality=95))
    for entry in ENTRY_POINTS:
        array, _ = _read(entry, path)
        assert array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8
        assert np.array_equal(array[..., 0], array[..., 2])


# --- EXIF orientation ---------------------------------------------------------------------------

# Stored 40 wide x 20 high with a red 8 x 8 marker in the stored top-left corner.
# EXIF orientation -> (displayed height, width), corner where the marker is seen.
ORIENTATIONS = {
    1: ((20, 40), "top-left"),
    3: ((20, 40), "bottom-right"),
    6: ((40, 20), "top-right"),
    8: ((40, 20), "bottom-left"),
}


def _marked(width: int, height: int, marker: int) -> Image.Image:
    pixels = np.full((height, width, 3), 255, dtype=np.uint8)
    pixels[:marker, :marker] = (255, 0, 0)
    return Image.fromarray(pixels)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _corners(array: np.ndarray, inset: int) -> dict[str, np.ndarray]:
    height, width = array.shape[:2]
    rows = {"top": inset, "bottom": height - 1 - inset}
    columns = {"left": inset, "right": width - 1 - inset}
    return {f"{row}-{column}": array[rows[row], columns[column]].astype(int) for row in rows for column in columns}


def _assert_marker_in(array: np.ndarray, corner: str, inset: int) -> None:
    for name, pixel in _corners(array, inset).items():
        if name == corner:
            assert pixel[0] > 200 and pixel[1] < 60 and pixel[2] < 60, (name, pixel)
        else:
            assert (pixel > 200).all(), (name, pixel)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied_the_same_way_everywhere(tmp_path, orientation, image_format):
    shape, corner = ORIENTATIONS[orientation]
    data = encoded(
        _marked(40, 20, 8), image_format, exif=_exif(orientation), **({"quality": 95} if image_format == "JPEG" else {})
    )
    path = _write(tmp_path, f"turned.{image_format.lower()}", data)

    decoded = images.decode(path)
    _rgb(decoded, shape)
    _assert_marker_in(decoded, corner, inset=2)

    resized = images.load_resized(path, 40)
    _rgb(resized, (40, 40))
    _assert_marker_in(resized, corner, inset=2)
    expected = np.asarray(images.stretch_to_square(Image.fromarray(decoded), 40))
    assert np.array_equal(resized, expected)

    # An upload of the same file (prediction) gives exactly what training reads from disk.
    assert np.array_equal(images.decode(data, name="upload.jpg"), decoded)
    assert np.array_equal(images.load_resized(data, 40, name="upload.jpg"), resized)


def test_exif_orientation_survives_the_reduced_jpeg_decode(tmp_path):
    """load_resized decodes large JPEGs at a reduced scale: the orientation must still be applied."""
    path = _write(tmp_path, "large.jpg", encoded(_marked(800, 400, 160), "JPEG", quality=95, exif=_exif(6)))
    decoded = images.decode(path)
    _rgb(decoded, (800, 400))
    _assert_marker_in(decoded, "top-right", inset=20)
    resized = images.load_resized(path, 100)
    _rgb(resized, (100, 100))
    _assert_marker_in(resized, "top-right", inset=5)
    full_then_resized = np.asarray(images.stretch_to_square(Image.fromarray(decoded), 100))
    assert np.abs(resized.astype(int) - full_then_resized).mean() < 8


def test_stretch_to_square_averages_areas_when_shrinking_and_is_bilinear_when_enlarging():
    stripes = np.zeros((8, 8, 3), np.uint8)
    stripes[:, 1::2] = 255  # One-pixel vertical stripes: a filter that skips pixels aliases them.
    shrunk = np.asarray(images.stretch_to_square(Image.fromarray(stripes), 4))
    assert shrunk.shape == (4, 4, 3)
    assert np.all(np.abs(shrunk.astype(int) - 128) <= 1), "each output pixel averages one black, one white"

    # Shrinking one side while enlarging the other is bilinear, as is enlarging both.
    wide = Image.fromarray(np.repeat(stripes, 2, axis=1))  # 16 wide, 8 high
    for image in (wide, Image.fromarray(stripes)):
        expected = np.asarray(image.resize((12, 12), Image.Resampling.BILINEAR))
        assert np.array_equal(np.asarray(images.stretch_to_square(image, 12)), expected)

    square = Image.fromarray(stripes)
    assert images.stretch_to_square(square, 8) is square


# --- huge but valid photo -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def huge_jpeg(tmp_path_factory) -> Path:
    """An 8000 x 6000 (48 megapixel) JPEG: left half red, right half blue."""
    image = Image.new("RGB", (8000, 6000), (220, 20, 20))
    image.paste((20, 20, 220), (4000, 0, 8000, 6000))
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    image.save(path, "JPEG", quality=85)
    return path


def _damaged_exif(orientation: int) -> bytes:
    """EXIF whose description tag points past the data's end, as a damaged camera file has."""
    exif = Image.Exif()
    exif[0x010E] = "a description longer than what is left of the data " * 2
    exif[0x0112] = orientation
    return exif.tobytes()[:-60]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_damaged_exif_warning_names_the_file_and_the_photo_still_turns(tmp_path, entry):
    data = encoded(_marked(40, 20, 8), "JPEG", quality=95, exif=_damaged_exif(6))
    path = _write(tmp_path, "damaged-exif.jpg", data)
    expected_name = str(path) if "bytes" not in entry else f"upload/{path.name}"

    with pytest.warns(UserWarning) as caught:
        array, _ = _read(entry, path, image_size=40)

    messages = [str(warning.message) for warning in caught]
    assert any(message.startswith(f"{expected_name}: ") and "Skipping tag 270" in message for message in messages)
    # The orientation tag before the damage still applies.
    _rgb(array, (40, 20) if "resized" not in entry else (40, 40))
    _assert_marker_in(array, "top-right", inset=2)


def test_damaged_exif_warnings_name_their_own_files_across_threads_and_leave_the_filters_as_they_were(tmp_path):
    """Decoder threads read headers at once: each warning names its file, and no thread's filters are left behind."""
    import concurrent.futures
    import warnings

    paths = []
    for index in range(24):
        exif = _damaged_exif(1) if index % 2 == 0 else _exif(1)
        paths.append(_write(tmp_path, f"photo-{index}.jpg", encoded(_photo(seed=index), "JPEG", exif=exif)))
    filters_before = list(warnings.filters)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(lambda path: images.decode_reduced(path, 32), paths * 4))

    named = {str(warning.message).split(": ", 1)[0] for warning in caught if "Skipping tag 270" in str(warning.message)}
    assert named == {str(path) for path in paths[::2]}
    assert warnings.filters == filters_before


@pytest.mark.parametrize("entry", ["load_resized", "load_resized-bytes"])
def test_huge_photo_loads_resized(huge_jpeg, entry):
    array, _ = _read(entry, huge_jpeg, image_size=160)
    _rgb(array, (160, 160))
    np.testing.assert_allclose(array[:, :70].reshape(-1, 3).mean(0), (220, 20, 20), atol=6)
    np.testing.assert_allclose(array[:, -70:].reshape(-1, 3).mean(0), (20, 20, 220), atol=6)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak memory from /proc")
def test_huge_photo_memory_stays_bounded(huge_jpeg):
    """load_resized never holds the full 48 MP photo; a full decode does (which checks the measure).

    The peak is the fresh process's VmHWM: unlike getrusage's ru_maxrss, it does not start at the
    parent's (this test process's) peak.
    """
    script = (
        "import json, re, sys\n"
        "from tlcore.data import images\n"
        "def peak():\n"
        "    status = open('/proc/self/status').read()\n"
        "    return int(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)) * 1024\n"
        "start = peak()\n"
        "images.load_resized(sys.argv[1], 160)\n"
        "resized = peak()\n"
        "images.decode(sys.argv[1])\n"
        "decoded = peak()\n"
        "print(json.dumps({'resized': resized - start, 'decoded': decoded - resized}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(huge_jpeg)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    growth = json.loads(result.stdout.strip().splitlines()[-1])
    mib = 2**20
    assert growth["decoded"] > 100 * mib, f"the measure saw no full decode: {growth}"
    assert growth["resized"] < 40 * mib, f"load_resized grew the peak memory by {growth['resized'] / mib:.0f} MiB"


def test_has_image_extension():
    for name in ("cat.JPG", "a.jpeg", "b.png", "c.gif", "d.bmp", "e.webp"):
        assert images.has_image_extension(name), name
    for name in ("notes.txt", "scan.tiff", "Thumbs.db", "jpg", "cat.jpg.zip"):
        assert not images.has_image_extension(name), name


# --- memory bounded by what the decoder decodes ------------------------------------------------


def _flat_png(width: int, height: int, bit_depth: int, colour_type: int, pixel: bytes) -> bytes:
    """A valid PNG whose every pixel is `pixel` (raw sample bytes), written row band by row band.

    Tiny on disk and cheap to make, however large it declares itself: the test process never holds
    the decoded image.
    """
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    row = b"\x00" + pixel * width  # filter byte "none" + samples
    compressor = zlib.compressobj(9)
    rows_per_chunk = 200
    data = (
        b"".join(
            compressor.compress(row * min(rows_per_chunk, height - start)) for start in range(0, height, rows_per_chunk)
        )
        + compressor.flush()
    )
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


GREY, RGBA = 0, 6  # PNG colour types


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak memory from /proc")
def test_scanning_images_large_in_memory_stays_bounded(tmp_path):
    """16-bit and RGBA images within the pixel cap: the scan's peak memory stays under 1 GiB.

    The peak is the scanning process's VmHWM, as in test_huge_photo_memory_stays_bounded. Before the
    decoded-bytes cap, the float64 16-bit conversion and the whole-image compositing copies took
    gigabytes for each of these, on every scan thread at once.
    """
    for class_name in ("cats", "dogs"):
        (tmp_path / class_name).mkdir()
        for index in range(2):
            _photo(seed=index).save(tmp_path / class_name / f"{class_name}.{index}.png")
    big_files = {
        "cats/grey16.png": _flat_png(10000, 10000, 16, GREY, b"\x80\x00"),
        "cats/rgba.png": _flat_png(10000, 10000, 8, RGBA, b"\x10\x20\x30\x80"),
        "dogs/rgba16.png": _flat_png(10000, 10000, 16, RGBA, b"\x10\x00\x20\x00\x30\x00\x80\x00"),
        "dogs/rgba16-photo-size.png": _flat_png(8000, 6000, 16, RGBA, b"\x10\x00\x20\x00\x30\x00\x80\x00"),
    }
    for name, data in big_files.items():
        (tmp_path / name).write_bytes(data)
    script = (
        "import json, re, sys\n"
        "from tlcore.data import folders\n"
        "scan = folders.scan(sys.argv[1], workers=4)\n"
        "status = open('/proc/self/status').read()\n"
        "peak = int(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)) * 1024\n"
        "print(json.dumps({'peak': peak, 'rejected': {r.path: r.reason for r in scan.rejected},\n"
        "                  'usable': [s.path for split in scan.splits.values() for s in split]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["peak"] < 2**30, f"the scan peaked at {report['peak'] / 2**20:.0f} MiB"
    rejected = {Path(path).name: reason for path, reason in report["rejected"].items()}
    usable = {Path(path).name for path in report["usable"]}
    # Within the decoded-bytes cap: decoded. Above it (100 MP x 4 bytes): refused, saying why.
    assert {"grey16.png", "rgba16-photo-size.png"} <= usable
    assert set(rejected) == {"rgba.png", "rgba16.png"}
    for reason in rejected.values():
        assert "once decoded" in reason and "MiB" in reason, reason


def _old_16_bit_conversion(values: np.ndarray) -> np.ndarray:
    """The float64 conversion the decoder used before (the reference the integer one must match)."""
    grey = np.clip(values.astype(np.float64) / 257.0, 0, 255).round().astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def test_16_bit_conversion_matches_the_float_conversion_for_every_value(tmp_path):
    # Every 16-bit value, over enough rows (1500 x 1000) that the conversion works in several bands.
    values = (np.arange(1500 * 1000, dtype=np.uint64) * 7 % 65536).astype(np.uint16).reshape(1000, 1500)
    path = _write(tmp_path, "grey16.png", encoded(Image.fromarray(values), "PNG"))
    np.testing.assert_array_equal(images.decode(path), _old_16_bit_conversion(values))


def test_rgba_compositing_matches_the_whole_image_composite(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, (1000, 1500, 4), dtype=np.uint8)
    rgba = Image.fromarray(pixels, mode="RGBA")
    path = _write(tmp_path, "rgba.png", encoded(rgba, "PNG"))
    whole = Image.alpha_composite(Image.new("RGBA", rgba.size, images.BACKGROUND + (255,)), rgba)
    np.testing.assert_array_equal(images.decode(path), np.asarray(whole.convert("RGB")))


def test_decoded_bytes_counts_what_pillow_allocates():
    assert image_limits.decoded_bytes("I;16", (100, 10)) == 2000
    assert image_limits.decoded_bytes("L", (100, 10)) == 1000
    assert image_limits.decoded_bytes("RGB", (100, 10)) == 4000  # Pillow pads RGB to 4 bytes a pixel
    assert image_limits.decoded_bytes("RGBA", (100, 10)) == 4000
    with pytest.raises(ValueError, match="'XYZ'"):
        image_limits.decoded_bytes("XYZ", (1, 1))


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the mapped memory from /proc")
def test_running_out_of_memory_is_a_rejection_naming_the_file(tmp_path):
    """A MemoryError while decoding (here: a real one, from an address-space limit) is a rejection."""
    path = _write(tmp_path, "grey16.png", _flat_png(8000, 6000, 16, GREY, b"\x80\x00"))
    script = (
        "import re, resource, sys\n"
        "from tlcore.data import images\n"
        "status = open('/proc/self/status').read()\n"
        "mapped = int(re.search(r'VmSize:\\s+(\\d+) kB', status).group(1)) * 1024\n"
        "# Room for the 96 MB of decoded pixels, not for the RGB result.\n"
        "limit = mapped + 150 * 2**20\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
        "try:\n"
        "    images.decode(sys.argv[1])\n"
        "except images.InvalidImageError as error:\n"
        "    print('refused:', error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert f"refused: {path}: not a usable image: not enough memory" in result.stdout


def test_decode_reduced_decodes_a_large_jpeg_smaller_but_never_below_the_side_asked_and_keeps_its_upright_size():
    picture = Image.new("RGB", (2000, 1200), (30, 120, 200))
    exif = Image.Exif()
    exif[images.EXIF_ORIENTATION_TAG] = 6  # Shown 1200 wide, 2000 high.
    pixels, size = images.decode_reduced(encoded(picture, "JPEG", exif=exif), 256, name="large.jpg")
    assert size == (1200, 2000)
    assert pixels.shape == (500, 300, 3), "a quarter of each side: the smallest scale still >= 256"
    assert np.abs(pixels.astype(int).mean(axis=(0, 1)) - (30, 120, 200)).max() <= 3
    png = encoded(picture, "PNG")
    assert images.decode_reduced(png, 256)[0].shape == (1200, 2000, 3), "only JPEG decodes at a reduced scale"
    with pytest.raises(ValueError, match="max_side must be a positive integer, received 0"):
        images.decode_reduced(png, 0)


def test_a_pipe_named_like_a_photo_is_not_a_regular_file_not_a_missing_one(tmp_path):
    pipe = tmp_path / "photo.jpg"
    os.mkfifo(pipe)
    with pytest.raises(images.InvalidImageError, match="photo.jpg: not a regular file$"):
        images.load_resized(pipe, 32)
