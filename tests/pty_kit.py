"""Running `python -m tlcore ...` in a pseudo-terminal, as a person at a terminal runs it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class TerminalProcess:
    """`python -m tlcore ARGUMENTS` with a pseudo-terminal as its standard input, output and error.

    Args:
        arguments: the command line after `python -m tlcore`.
        columns: the terminal's width.
    """

    def __init__(self, *arguments: str, columns: int = 120):
        self.pid, self.terminal = pty.fork()
        if self.pid == 0:  # The child: its own session, the pseudo-terminal its controlling terminal.
            os.chdir(PROJECT_ROOT)
            os.execv(sys.executable, [sys.executable, "-m", "tlcore", *arguments])
        fcntl.ioctl(self.terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        self.output = b""
        self.exit_code = None

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", errors="replace")

    def read(self, timeout: float) -> bool:
        """Reads what the process wrote for up to `timeout` seconds; False once it closed the terminal."""
        ready, _, _ = select.select([self.terminal], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.terminal, 65536)
        except OSError:  # EIO: the child ended and closed its side.
            return False
        self.output += chunk
        return bool(chunk)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        """Reads until `text` was written; fails after `timeout` seconds or when the process ends first."""
        deadline = time.monotonic() + timeout
        while text not in self.text:
            if time.monotonic() > deadline or not self.read(min(1.0, deadline - time.monotonic())):
                raise AssertionError(f"{text!r} never came; the terminal showed:\n{self.text[-3000:]}")

    def press_control_c(self) -> None:
        """Types Ctrl+C: the terminal sends SIGINT to its foreground process group."""
        os.write(self.terminal, b"\x03")

    def finish(self, timeout: float = 300) -> int:
        """Reads to the end; returns the exit code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.read(1.0):
            pass
        _, status = os.waitpid(self.pid, 0)
        os.close(self.terminal)
        self.exit_code = os.waitstatus_to_exitcode(status)
        return self.exit_code
