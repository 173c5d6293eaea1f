"""The one image decoder: a path or bytes in, an RGB uint8 array (or a clear error) out.

Every reader in tlcore (folder scan, zip ingest, training pipeline, prediction upload) goes
through `decode` or `load_resized`, so training and prediction can never disagree about what a
file contains: same format whitelist, same EXIF orientation, same colour conversion, same resize.
What a file may declare and how much memory decodes may hold at once is `tlcore.data.image_limits`.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps

from tlcore.data import image_limits, pillow_warnings

# Formats we accept. Pillow would try every plugin it has; limiting the list keeps odd formats
# (PSD, EPS via Ghostscript, ...) out of a teaching tool's attack surface.
SUPPORTED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")
SUPPORTED_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")

# Conversions work on bands of rows this many pixels large, so no whole-image temporary is made.
CONVERSION_CHUNK_PIXELS = 1 << 20

# Composite transparent images onto white, the way a person sees them in a viewer.
BACKGROUND = (255, 255, 255)

Source = Union[str, os.PathLike, bytes]


class InvalidImageError(Exception):
    """A file that cannot be used as an image, with the file's name and a human reason."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _describe(source: Source, name: str | None) -> str:
    if name is not None:
        return str(name)
    if isinstance(source, bytes):
        return "<uploaded bytes>"
    return str(source)


def _open(stream, source: Source, label: str) -> Image.Image:
    """Opens (header only) with the format whitelist and the pixel cap, before any decoding."""
    # Outside the try: a warning raised again (under an "error" filter) is not a file we cannot read.
    with pillow_warnings.naming(label):
        try:
            image = Image.open(stream, formats=SUPPORTED_FORMATS)
        except Image.DecompressionBombError:
            # Pillow refuses images above twice its own MAX_IMAGE_PIXELS with a message of its own
            # ("could be decompression bomb DOS attack"): report them as our cap does, which is lower.
            raise _too_large(label, _declared_size(stream)) from None
        except Exception:  # PIL.UnidentifiedImageError, OSError, SyntaxError from broken headers, ...
            raise InvalidImageError(
                label,
                f"not a supported image ({_sniff(source)}); expected one of {', '.join(SUPPORTED_FORMATS)}",
            ) from None
    width, height = image.size
    if width * height > image_limits.MAX_PIXELS:
        raise _too_large(label, image.size)
    return image


def _check_decoded_bytes(image: Image.Image, label: str) -> None:
    """Refuses an image whose decoded pixels would exceed `image_limits.MAX_DECODED_BYTES`."""
    reason = image_limits.too_many_decoded_bytes_reason(image.mode, image.size)
    if reason is not None:
        raise InvalidImageError(label, reason)


def _too_large(label: str, size: tuple[int, int] | None) -> InvalidImageError:
    """The error for an image above `image_limits.MAX_PIXELS`, naming its size when the header could be read."""
    return InvalidImageError(label, image_limits.too_many_pixels_reason(size))


def _declared_size(stream) -> tuple[int, int] | None:
    """The (width, height) an image's header declares, or None when no accepted format reads it.

    For images that `Image.open` refuses outright: it checks the size only after the format's
    plugin has read the header, and the plugin itself reads no pixels, so asking the plugin
    directly gives the size without decoding anything.
    """
    for image_format in SUPPORTED_FORMATS:
        if image_format not in Image.OPEN:  # Not loaded, so not the plugin that opened the header.
            continue
        factory, accept = Image.OPEN[image_format]
        stream.seek(0)
        if accept is not None and accept(stream.read(16)) is not True:
            continue
        stream.seek(0)
        try:
            return factory(stream, None).size
        except Exception:  # noqa: BLE001 - a header this plugin cannot read: try the next format.
            continue
    return None


@contextlib.contextmanager
def _stream(source: Source, label: str):
    """Yields a binary stream over the source, refusing missing and empty files up front."""
    if isinstance(source, bytes):
        if len(source) == 0:
            raise InvalidImageError(label, "the file is empty (0 bytes)")
        yield io.BytesIO(source)
        return
    path = Path(source)
    if not path.is_file():
        # A pipe, a socket or a device named like a photo: it exists, so "no such file" would mislead.
        raise InvalidImageError(label, "not a regular file" if path.exists() else "no such file")
    if path.stat().st_size == 0:
        raise InvalidImageError(label, "the file is empty (0 bytes)")
    try:
        stream = open(path, "rb")
    except OSError as error:  # No permission to read it, say: this file is refused, not the whole batch.
        raise InvalidImageError(label, f"cannot be read ({error.strerror or error})") from error
    with stream:
        yield stream


def _sniff(source: Source) -> str:
    """A short description of what a file that is not an image looks like."""
    try:
        if isinstance(source, bytes):
            head = source[:512]
        else:
            # Read the head only: a multi-gigabyte file renamed `.jpg` must not be loaded whole.
            with open(source, "rb") as stream:
                head = stream.read(512)
    except OSError:
        return "unreadable"
    lowered = head.lower().lstrip()
    if lowered.startswith(b"<!doctype html") or lowered.startswith(b"<html"):
        return "looks like an HTML page"
    if head and all(32 <= byte < 127 or byte in (9, 10, 13) for byte in head):
        return "looks like a text file"
    return "unrecognised content"


def _row_bands(image: Image.Image):
    """Yields (top, bottom) row ranges of about CONVERSION_CHUNK_PIXELS pixels covering the image."""
    width, height = image.size
    rows = max(1, CONVERSION_CHUNK_PIXELS // max(1, width))
    for top in range(0, height, rows):
        yield top, min(height, top + rows)


def _integer_grey_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit (or 32-bit integer) greyscale to RGB: the full 16-bit range scaled to 8 bits.

    Pillow's own convert("RGB") would clip everything above 255 to white. round(value / 257) is
    computed as (value + 128) // 257 in integers (value / 257 never falls on a half), band by band,
    so no float64 copy of the whole image is ever made.
    """
    result = Image.new("RGB", image.size)
    width = image.size[0]
    for top, bottom in _row_bands(image):
        values = np.asarray(image.crop((0, top, width, bottom)), dtype=np.int64)
        grey = (np.clip(values, 0, 65535) + 128) // 257
        result.paste(Image.fromarray(grey.astype(np.uint8), mode="L").convert("RGB"), (0, top))
    return result


def _float_grey_to_rgb(image: Image.Image) -> Image.Image:
    """Floating-point greyscale to RGB: values clipped to 0..255 and rounded, band by band."""
    result = Image.new("RGB", image.size)
    width = image.size[0]
    for top, bottom in _row_bands(image):
        values = np.asarray(image.crop((0, top, width, bottom)), dtype=np.float64)
        grey = np.clip(values, 0, 255).round().astype(np.uint8)
        result.paste(Image.fromarray(grey, mode="L").convert("RGB"), (0, top))
    return result


def _composite_on_background(rgba: Image.Image) -> Image.Image:
    """An RGBA image composited onto BACKGROUND, band by band (no whole-image background copy)."""
    result = Image.new("RGB", rgba.size)
    width = rgba.size[0]
    for top, bottom in _row_bands(rgba):
        band = rgba.crop((0, top, width, bottom))
        background = Image.new("RGBA", band.size, BACKGROUND + (255,))
        result.paste(Image.alpha_composite(background, band).convert("RGB"), (0, top))
    return result


def _to_rgb(image: Image.Image) -> Image.Image:
    """Converts any mode to RGB the same way everywhere."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return _integer_grey_to_rgb(image)
    if image.mode == "F":
        return _float_grey_to_rgb(image)
    if image.mode == "P":
        has_alpha = "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        if image.mode == "RGB":
            return image
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _composite_on_background(image if image.mode == "RGBA" else image.convert("RGBA"))
    # CMYK, YCbCr, L, 1, LAB, HSV: Pillow's conversion.
    return image.convert("RGB")


def _decode_array(source: Source, label: str, image_size: int | None, draft_side: int | None = None) -> np.ndarray:
    """Opens, checks and fully decodes an image into an RGB uint8 array.

    Args:
        source: a path or the bytes of a file.
        label: the name errors show.
        image_size: the side of the square to stretch the image to, or None for its own size.
        draft_side: with image_size None, a JPEG may be decoded at a reduced scale whose sides stay at
            least this long (for display; None decodes at full size).

    Returns:
        An array of shape (height, width, 3), or (image_size, image_size, 3), dtype uint8.

    Raises:
        InvalidImageError: the file is not a usable image (damaged, too large, or memory ran out).
    """
    with _stream(source, label) as stream:
        image = _open(stream, source, label)
        try:
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)  # Animated GIF/WebP: the first frame represents the file.
            draft = image_size if image_size is not None else draft_side
            if draft is not None and image.format == "JPEG":
                # Let libjpeg decode at a reduced scale (still >= the target size): a large photo
                # then never exists in memory at full size, and decoding is several times faster.
                image.draft("RGB", (draft, draft))
            # Checked after draft: what counts is what the decoder will allocate, not the header.
            _check_decoded_bytes(image, label)
            with image_limits.decode_memory.reserve(image_limits.working_memory(image.mode, image.size)):
                image.load()  # Decode fully: a truncated file fails here, not later in training.
                with pillow_warnings.naming(label):
                    image.getexif()  # Parsed once here, and kept for exif_transpose.
                # In place: without an orientation tag, exif_transpose would return a whole copy.
                ImageOps.exif_transpose(image, in_place=True)
                image = _to_rgb(image)
                if image_size is not None:
                    return np.asarray(stretch_to_square(image, image_size), dtype=np.uint8).copy()
                return np.asarray(image, dtype=np.uint8)
        except Image.DecompressionBombError:  # A later frame of an animation larger than the first.
            raise _too_large(label, None) from None
        except MemoryError:
            width, height = image.size
            raise InvalidImageError(
                label, f"not a usable image: not enough memory to decode {width} x {height} pixels"
            ) from None
        except OSError as error:
            reason = str(error) or type(error).__name__
            if "truncated" in reason.lower() or "broken" in reason.lower():
                reason = f"the file is truncated or damaged ({reason})"
            raise InvalidImageError(label, f"cannot decode the image: {reason}") from None
        except (ValueError, SyntaxError, EOFError, struct.error, IndexError) as error:
            raise InvalidImageError(label, f"cannot decode the image: {error}") from None


def decode(source: Source, *, name: str | None = None) -> np.ndarray:
    """Decodes an image file or its bytes into an RGB uint8 array.

    Args:
        source: a path, or the bytes of an uploaded file.
        name: the name to show in errors (defaults to the path, or "<uploaded bytes>").

    Returns:
        An array of shape (height, width, 3) and dtype uint8, EXIF orientation applied.

    Raises:
        InvalidImageError: the file is empty, not an accepted format, too large (pixels or decoded
            bytes), damaged, or memory ran out while decoding it.
    """
    return _decode_array(source, _describe(source, name), image_size=None)


def decode_reduced(source: Source, max_side: int, *, name: str | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Decodes an image to show it with sides of about `max_side`: a JPEG at libjpeg's reduced scale.

    The pixels are as `decode` gives them (EXIF orientation, colour conversion), only smaller where
    the format can decode smaller: a JPEG comes out at the smallest of its 1/1, 1/2, 1/4 and 1/8
    scales whose sides are still at least `max_side`, so shrinking it to a thumbnail loses nothing.

    Args:
        source: a path, or the bytes of an uploaded file.
        max_side: the side the caller will shrink the picture to, in pixels.
        name: the name to show in errors.

    Returns:
        (RGB uint8 array, (width, height) of the whole image, upright).

    Raises:
        InvalidImageError: as `decode`.
        ValueError: max_side is not a positive integer.
    """
    if not isinstance(max_side, int) or isinstance(max_side, bool) or max_side < 1:
        raise ValueError(f"max_side must be a positive integer, received {max_side!r}.")
    label = _describe(source, name)
    pixels = _decode_array(source, label, image_size=None, draft_side=max_side)
    return pixels, _upright_size(source, label)


# EXIF orientations that turn the picture a quarter (5-8: transposed, rotated 90 or 270 degrees, transversed).
QUARTER_TURN_ORIENTATIONS = (5, 6, 7, 8)
EXIF_ORIENTATION_TAG = 0x0112


def _upright_size(source: Source, label: str) -> tuple[int, int]:
    """The (width, height) of the whole image as shown upright, from its header (no pixels decoded)."""
    with _stream(source, label) as stream:
        image = _open(stream, source, label)
        width, height = image.size
        with pillow_warnings.naming(label):
            orientation = image.getexif().get(EXIF_ORIENTATION_TAG)
        if orientation in QUARTER_TURN_ORIENTATIONS:
            return height, width
        return width, height


def load_resized(source: Source, image_size: int, *, name: str | None = None) -> np.ndarray:
    """Decodes an image and resizes it to a square, exactly as training and prediction need it.

    The image is stretched to `image_size` x `image_size` (no crop), as Keras'
    `flow_from_directory(target_size=...)` does, with the filter of `stretch_to_square`.

    Args:
        source: a path, or the bytes of an uploaded file.
        image_size: the side of the square output, in pixels.
        name: the name to show in errors.

    Returns:
        An array of shape (image_size, image_size, 3) and dtype uint8.

    Raises:
        InvalidImageError: as `decode`.
        ValueError: image_size is not a positive integer.
    """
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, received {image_size!r}.")
    return _decode_array(source, _describe(source, name), image_size=image_size)


def stretch_to_square(image: Image.Image, size: int) -> Image.Image:
    """Stretches an image to size x size (no crop): the one resize of training and prediction.

    Shrinking in both directions averages the pixels each output pixel covers (Pillow's BOX
    filter, area averaging: no aliasing, and cheaper than the triangle filter, which matters because
    decoding shares the cores with the model); anything else, enlarging along
    either side, is bilinear, which does not turn small images into blocks.

    Args:
        image: an RGB image.
        size: the side of the square output, in pixels.

    Returns:
        The image itself when it is already size x size, else a resized copy.
    """
    width, height = image.size
    if (width, height) == (size, size):
        return image
    shrinks = width >= size and height >= size
    return image.resize((size, size), Image.Resampling.BOX if shrinks else Image.Resampling.BILINEAR)


def has_image_extension(path: str | os.PathLike) -> bool:
    """Whether a file name ends with an extension we treat as an image."""
    return Path(path).suffix.lower() in SUPPORTED_EXTENSIONS
