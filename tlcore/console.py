"""What the command line shows on the terminal besides its results: TensorFlow's start-up kept quiet.

TensorFlow 2.21 writes two kinds of start-up lines to standard error as it is imported:

- C++ log lines (`cpu_feature_guard`: "This TensorFlow binary is optimized to use ..."), which
  `TF_CPP_MIN_LOG_LEVEL=2` silences, as it silences later INFO and WARNING lines of its C++ code;
- "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR" and
  "I0000 ... port.cc:...] oneDNN custom operations are on ...", written by absl before TensorFlow
  reads `TF_CPP_MIN_LOG_LEVEL`, so no environment variable silences them, once per shared library
  that logs (twice). Only `TF_ENABLE_ONEDNN_OPTS=0` removes the oneDNN line, by turning oneDNN off,
  which changes speed and results: not an option. So `import_tensorflow_quietly` imports TensorFlow
  with the process's standard error (file descriptor 2, which C++ writes to) sent to a temporary
  file, then writes back every line that is not such an INFO or WARNING line.

TensorFlow Lite's interpreter (LiteRT) writes "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
the first time it allocates its tensors, through its own logger, which no environment variable
silences: `quiet_native_lines` keeps it out the same way, while TensorFlow's INFO lines are off.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import tempfile
import warnings
from contextlib import contextmanager
from typing import Iterator, NoReturn

from tlcore import temporaries

# The exit status of a command ended by Ctrl+C (128 + SIGINT), as shells report it.
INTERRUPTED_EXIT_CODE = 128 + signal.SIGINT
# Shows the terminal's cursor again: rich hides it while it draws progress bars.
SHOW_CURSOR = "\x1b[?25h"
# The real standard error while `import_tensorflow_quietly` sends descriptor 2 to a file (else None).
_standard_error_while_captured: int | None = None

# absl's pre-initialisation notice, and absl/TensorFlow log lines of severity INFO (I) or WARNING (W):
# "I0000 00:00:1796475848.647415   29688 port.cc:153] message".
START_UP_NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"^[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\] "),
    re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."),
)


_TLCORE_FOLDER = os.path.dirname(os.path.abspath(__file__))
_default_format_warning = warnings.formatwarning


def format_warning(message, category, filename, lineno, line=None) -> str:
    """Formats a warning tlcore raises as "warning: MESSAGE", the way errors read "error: ...".

    tlcore's warnings are for people (a photo's damaged EXIF names the photo): the source line
    Python adds says nothing to them. Other libraries' warnings keep Python's format.
    """
    if os.path.abspath(filename).startswith(_TLCORE_FOLDER + os.sep):
        return f"warning: {message}\n"
    return _default_format_warning(message, category, filename, lineno, line)


def is_start_up_noise(line: str) -> bool:
    """Whether a line of standard error is one of TensorFlow's start-up INFO or WARNING lines."""
    return any(pattern.match(line) for pattern in START_UP_NOISE)


def import_tensorflow_quietly(verbose: bool = False) -> None:
    """Imports TensorFlow without its start-up lines on standard error (all of them with `verbose`).

    Call it before anything imports TensorFlow (Keras does); afterwards it does nothing. Errors
    and anything else written while importing still reach standard error, in order.

    Args:
        verbose: leave TensorFlow's logging as it is and show every line.
    """
    if verbose:
        return
    # Read by TensorFlow's C++ logging once it starts: later INFO and WARNING lines stay out too.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow's Python-side warnings too ("5 out of the last 7 calls ... triggered tf.function retracing").
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if "tensorflow" in sys.modules:
        return
    with quiet_native_lines():
        import tensorflow  # noqa: F401


def informative_lines_hidden() -> bool:
    """Whether TensorFlow's INFO lines are off (`TF_CPP_MIN_LOG_LEVEL` 1 or more), as a command without
    --verbose sets them."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() not in ("", "0")


@contextmanager
def quiet_native_lines() -> Iterator[None]:
    """Runs a block with descriptor 2 sent to a file, then writes back every line but the start-up noise.

    For C++ code that logs to standard error whatever Python asks: TensorFlow's import, the TFLite
    interpreter's first allocation. Errors and other lines still reach standard error, in order.
    """
    global _standard_error_while_captured
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        _standard_error_while_captured = saved
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            _standard_error_while_captured = None
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            kept = [line for line in lines if not is_start_up_noise(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _standard_error_descriptor() -> int:
    """Descriptor 2, or the real standard error while `import_tensorflow_quietly` captures descriptor 2."""
    return 2 if _standard_error_while_captured is None else _standard_error_while_captured


def write_to_standard_error(text: str) -> None:
    """Writes straight to standard error's descriptor, as a signal handler may: no buffer, no lock.

    While `import_tensorflow_quietly` captures descriptor 2, the text goes to the real standard error.
    A closed standard error is ignored.
    """
    try:
        os.write(_standard_error_descriptor(), text.encode("utf-8", errors="replace"))
    except OSError:
        pass


def end_at_once(message: str) -> NoReturn:
    """Ends the process now with INTERRUPTED_EXIT_CODE, from a Ctrl+C signal handler.

    Raising KeyboardInterrupt instead would unwind through whatever the main thread is running:
    inside TensorFlow's C++ code that comes out as an unrelated exception (a SystemError, an
    AttributeError, once in CI a segmentation fault). So the process ends with `os._exit`, after
    removing the temporaries being written (`tlcore.temporaries`), passing on what standard output
    holds, and writing `message` to standard error with the cursor shown again on a terminal. Nothing
    here may raise: the process ends whatever fails on the way.

    Args:
        message: one line saying what happened.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Another Ctrl+C must not start this again halfway.
    try:
        sys.stdout.flush()
    except (OSError, RuntimeError, ValueError):
        pass  # A closed pipe, or the interrupted code was writing to standard output itself.
    try:
        temporaries.remove_all()
    except Exception:  # noqa: BLE001 - see the docstring.
        pass
    show_cursor = os.isatty(_standard_error_descriptor())
    write_to_standard_error(f"\n{message}\n" + (SHOW_CURSOR if show_cursor else ""))
    os._exit(INTERRUPTED_EXIT_CODE)
