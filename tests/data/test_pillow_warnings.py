"""Pillow's warnings about a file, raised again with the file's name (tlcore.data.pillow_warnings).

What the decoder's callers see is in tests/data/test_images.py; here, what happens to the other warnings
raised while a file is read, and under an "error" filter.
"""

from __future__ import annotations

import io
import warnings

import pytest
from PIL import Image

from tlcore.data import images, pillow_warnings


def _damaged_exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "a description longer than what is left of the data " * 2
    stream = io.BytesIO()
    Image.new("RGB", (32, 24), (90, 120, 200)).save(stream, "JPEG", exif=exif.tobytes()[:-60])
    return stream.getvalue()


def _read_exif(data: bytes) -> None:
    Image.open(io.BytesIO(data)).getexif()


def test_pillows_warning_is_named_and_another_is_shown_as_it_was():
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with pillow_warnings.naming("photos/cat.jpg"):
            _read_exif(_damaged_exif_jpeg())
            warnings.warn("something else happened", RuntimeWarning)

    messages = {str(warning.message): warning for warning in shown}
    assert "photos/cat.jpg: Tag data larger than file. Skipping tag 270" in messages
    assert messages["something else happened"].category is RuntimeWarning
    assert messages["something else happened"].filename == __file__
    assert len(shown) == 2


def test_when_the_read_fails_pillows_warnings_are_dropped_and_the_others_still_shown():
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="the read failed"):
            with pillow_warnings.naming("photos/cat.jpg"):
                _read_exif(_damaged_exif_jpeg())
                warnings.warn("something else happened", RuntimeWarning)
                raise ValueError("the read failed")

    assert [str(warning.message) for warning in shown] == ["something else happened"]


def test_under_an_error_filter_the_named_warning_is_raised_and_not_mistaken_for_an_unreadable_file():
    data = _damaged_exif_jpeg()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="^upload/cat.jpg: Tag data larger than file"):
            images.decode(data, name="upload/cat.jpg")
    # Without the filter the same photo decodes.
    with pytest.warns(UserWarning, match="^upload/cat.jpg: "):
        assert images.decode(data, name="upload/cat.jpg").shape == (24, 32, 3)


def test_each_read_of_a_damaged_file_names_that_file():
    data = _damaged_exif_jpeg()
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        for name in ("a.jpg", "b.jpg", "a.jpg"):
            images.decode(data, name=name)
    assert [str(warning.message).split(":")[0] for warning in shown] == ["a.jpg", "b.jpg", "a.jpg"]
