"""The limits of the one image decoder (`tlcore.data.images`): pixels, decoded bytes, and shared memory.

A file is refused from its header, before anything is decoded, when it declares more than MAX_PIXELS
pixels or would take more than MAX_DECODED_BYTES once decoded. The decodes of one process (the folder
scan decodes on several threads) then share DECODE_MEMORY_BUDGET of working memory through `decode_memory`.
The reasons are plain text: `tlcore.data.images` raises them as its `InvalidImageError`.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
from PIL import ImageMode

# 100 megapixels: an 8000 x 6000 photo (48 MP) decodes, a 20000 x 20000 "bomb" (400 MP) does not.
MAX_PIXELS = 100_000_000

# The pixel cap alone does not bound memory: what the decoder allocates is pixels x bytes per pixel,
# and Pillow keeps every multi-band 8-bit mode (RGB, RGBA, LA, CMYK, ...) in 4 bytes a pixel and
# 16-bit greyscale in 2. This cap is checked from the header, before decoding: an 8000 x 6000 photo
# (48 MP x 4 bytes) decodes, a 100 MP RGB or RGBA image (400 MB once decoded) does not.
MAX_DECODED_BYTES = 256 * 2**20

# Working memory all the decodes of one process may hold at once (the folder scan decodes on up to
# 8 threads). A decode that would go past it waits for the others to finish; a decode alone always
# runs, so one image at the cap still decodes.
DECODE_MEMORY_BUDGET = 1024 * 2**20

# Bytes a pixel may take while it is converted to RGB: an RGBA intermediate (palette or LA images)
# and the RGB result, each 4 bytes a pixel in Pillow.
CONVERSION_BYTES_PER_PIXEL = 8


def decoded_bytes(mode: str, size: tuple[int, int]) -> int:
    """The bytes Pillow allocates for an image of this mode and size once it is decoded.

    Args:
        mode: a Pillow mode, such as "RGB", "RGBA", "I;16" or "P".
        size: (width, height) in pixels.

    Returns:
        width x height x bytes per pixel, where every multi-band mode takes 4 bytes a pixel (Pillow
        pads RGB to 4) and a single-band mode takes the size of its band.

    Raises:
        ValueError: the mode is not one Pillow knows.
    """
    try:
        mode_description = ImageMode.getmode(mode)
    except KeyError:
        raise ValueError(f"mode must be a Pillow image mode, received {mode!r}.") from None
    if len(mode_description.bands) > 1:
        bytes_per_pixel = 4
    else:
        bytes_per_pixel = np.dtype(mode_description.typestr).itemsize
    width, height = size
    return width * height * bytes_per_pixel


def working_memory(mode: str, size: tuple[int, int]) -> int:
    """The bytes a decode reserves: the decoded pixels and their conversion to RGB."""
    width, height = size
    return decoded_bytes(mode, size) + width * height * CONVERSION_BYTES_PER_PIXEL


def too_many_pixels_reason(size: tuple[int, int] | None) -> str:
    """Why an image above MAX_PIXELS is refused, naming its size when the header could be read."""
    if size is None:
        declared = "image is"
    else:
        width, height = size
        declared = f"image is {width} x {height} = {width * height:,} pixels,"
    return f"{declared} above the limit of {MAX_PIXELS:,} pixels (possible decompression bomb)"


def too_many_decoded_bytes_reason(mode: str, size: tuple[int, int]) -> str | None:
    """Why an image whose decoded pixels would exceed MAX_DECODED_BYTES is refused, or None when it fits."""
    size_in_memory = decoded_bytes(mode, size)
    if size_in_memory <= MAX_DECODED_BYTES:
        return None
    width, height = size
    return (
        f"image is {width} x {height} in mode {mode}, {size_in_memory / 2**20:,.0f} MiB once "
        f"decoded, above the limit of {MAX_DECODED_BYTES / 2**20:,.0f} MiB"
    )


class MemoryBudget:
    """Bytes that the threads of this process may hold at once; a request alone always goes through.

    Args:
        limit: the bytes the threads may hold together.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.in_use = 0
        self._condition = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, amount: int):
        """Holds `amount` bytes while the block runs, first waiting until they fit (or nothing else is held)."""
        with self._condition:
            while self.in_use > 0 and self.in_use + amount > self.limit:
                self._condition.wait()
            self.in_use += amount
        try:
            yield
        finally:
            with self._condition:
                self.in_use -= amount
                self._condition.notify_all()


# The one budget of this process's decodes.
decode_memory = MemoryBudget(DECODE_MEMORY_BUDGET)
