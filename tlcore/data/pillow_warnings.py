"""Pillow's warnings about a file, raised again with the file's name.

Pillow warns of what it skips in a damaged file (an EXIF tag past the data's end, say) with
`warnings.warn`, which names no file; with thousands of photos decoded by several threads, "Tag data
larger than file" alone leaves a person nothing to look at. `naming` records Pillow's warnings while a
file's header or EXIF is read and raises each again as "FILE: message".
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings

from PIL import Image

# Before Python 3.14 catch_warnings swaps process-wide state (the filters, showwarning): two threads in it
# at once can leave one's state behind. The decoders' short header and EXIF reads take turns under this lock;
# the pixels decode outside it.
_LOCK = threading.RLock()
_PILLOW_FOLDER = os.path.dirname(Image.__file__)


@contextlib.contextmanager
def naming(label: str):
    """Raises Pillow's warnings from inside the block again once it ends, their messages starting with `label`.

    Pillow's user warnings (what it skipped in the file) are recorded whatever the filters and raised
    again, named, under the caller's filters: an "error" filter then raises after the read, not inside
    Pillow, where it would break the read of a usable photo. Other warnings (Pillow's deprecations,
    another thread's while the block runs) have met the filters already and are shown as they would
    have been, even when the block raises. Pillow's DecompressionBombWarning is dropped:
    `tlcore.data.image_limits` applies a lower cap of its own.

    Args:
        label: the file's name as errors show it.
    """
    caught: list[warnings.WarningMessage] = []
    try:
        with _LOCK, warnings.catch_warnings(record=True) as recorded:
            caught = recorded
            warnings.filterwarnings("always", category=UserWarning, module=r"PIL\.")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        # After catch_warnings has put the process's own showwarning back.
        for warning in caught:
            if not _about_the_file(warning):
                warnings.showwarning(
                    warning.message, warning.category, warning.filename, warning.lineno, warning.file, warning.line
                )
    for warning in caught:
        if _about_the_file(warning):
            warnings.warn(f"{label}: {warning.message}", warning.category)


def _about_the_file(warning: warnings.WarningMessage) -> bool:
    """Whether a recorded warning is Pillow's about the file it reads (a user warning from its code)."""
    return issubclass(warning.category, UserWarning) and warning.filename.startswith(_PILLOW_FOLDER + os.sep)
