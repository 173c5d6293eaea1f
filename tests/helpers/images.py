"""Generated image files: encoded images, decompression bombs, and the bad-input kit of shared/guide/bad-input.md."""

from __future__ import annotations

import functools
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encoded(image: Image.Image, image_format: str, **options) -> bytes:
    """The bytes of `image` saved in `image_format` (Pillow's save options pass through)."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload, CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def declared_png(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height RGB pixels, with no pixel data: a bomb's calling card."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"")) + png_chunk(b"IEND", b"")


@functools.lru_cache(maxsize=4)
def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A complete, valid 1-bit PNG of width x height black pixels: a few kB on disk, gigabytes once decoded.

    Cached: compressing 20000 rows takes a moment, and the bytes never change.
    """
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = bytes(1 + (width + 7) // 8)  # Filter byte + packed pixels.
    compressor = zlib.compressobj(9)
    rows_per_piece = 500
    data = b"".join(
        compressor.compress(row * min(rows_per_piece, height - start)) for start in range(0, height, rows_per_piece)
    )
    data += compressor.flush()
    return PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def bad_input_kit(photo: Path) -> dict[str, tuple[bytes, str | None]]:
    """The bad-input kit made from one real photo.

    Returns:
        File name -> (bytes, a word its rejection reason must contain, or None for an odd file that must work).
    """
    original = photo.read_bytes()
    with Image.open(photo) as opened:
        rgb = opened.convert("RGB")
    png = encoded(rgb, "PNG")
    exif = Image.Exif()
    exif[0x0112] = 6  # Rotated 90 degrees.
    frames = [rgb.quantize(64), rgb.rotate(90).quantize(64)]
    grey16 = Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    return {
        "zero.jpg": (b"", "empty"),
        "text.jpg": (b"just some words about a cat\n", "text"),
        "page.png": (b"<!DOCTYPE html><html><body>not a photo</body></html>", "html"),
        "truncated.jpg": (original[: len(original) // 2], "truncated"),
        "truncated.png": (png[: len(png) // 2], "decode"),
        "bomb.png": (bomb_png(), "pixels"),
        "cmyk.jpg": (encoded(rgb.convert("CMYK"), "JPEG"), None),
        "grey16.png": (encoded(grey16, "PNG"), None),
        "rgba.png": (encoded(rgb.convert("RGBA"), "PNG"), None),
        "palette.gif": (encoded(rgb.quantize(32), "GIF"), None),
        "animated.gif": (encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100), None),
        "rotated.jpg": (encoded(rgb, "JPEG", exif=exif), None),
        "photo.webp": (encoded(rgb, "WEBP"), None),
        "huge.jpg": (encoded(rgb.resize((8000, 6000)), "JPEG", quality=60), None),
    }


def refuse_reading(monkeypatch, locked: Path) -> None:
    """Makes the decoder's open() of `locked` fail as a file without read permission does.

    The tests run as root, which reads any file whatever its mode, so the operating system's refusal
    is injected where `tlcore.data.images` opens files; every other file opens for real.
    """
    from tlcore.data import images

    def refusing_open(path, *arguments, **keywords):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *arguments, **keywords)

    monkeypatch.setattr(images, "open", refusing_open, raising=False)
