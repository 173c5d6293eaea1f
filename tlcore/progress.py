"""Progress of the long steps on the command line: rich bars on a terminal, plain lines elsewhere.

A `Display` receives messages, tasks (a count of things done out of a total: images extracted,
cached or predicted) and epochs (the batches of each epoch, through a Keras callback). The plain
display, for logs, pipes and `--json`, prints the messages and one line per finished epoch, as
before. `RichDisplay`, chosen by `for_stream` when the stream is a terminal, also draws a bar per
task and per epoch (rich, installed with Keras) and keeps the message and epoch lines above them.
"""

from __future__ import annotations

# Keras (and so TensorFlow) is imported only when a display makes its callback: the command line
# imports this module before it imports TensorFlow quietly (`tlcore.console`).


class Task:
    """A count of things done out of a total; the plain display shows nothing of it."""

    def advance(self, count: int = 1, **fields) -> None:
        """Counts `count` more things done; `fields` (e.g. loss) are shown beside the bar."""

    def close(self) -> None:
        """Ends the task (done, or cut short)."""


class Display:
    """Plain progress: messages and one line per epoch on a stream (nothing at all without a stream).

    Args:
        stream: a text stream, or None for a display that shows nothing.
    """

    def __init__(self, stream=None):
        self.stream = stream

    def print(self, message: str) -> None:
        if self.stream is not None:
            print(message, file=self.stream, flush=True)

    def task(self, description: str, total: int | None) -> Task:
        """A task of `total` things (None: unknown) named `description`."""
        return Task()

    def epoch_callback(self, stage: str, epochs: int, epoch_offset: int = 0):
        """A Keras callback that shows a stage's epochs, or None when nothing is shown."""
        # Heavy: imports Keras (see the module's comment).
        from tlcore.training.callbacks import PrintProgress

        if self.stream is None:
            return None
        return PrintProgress(stage, self.stream, epoch_offset)

    def close(self) -> None:
        """Stops drawing; the display is not used after."""


class RichTask(Task):
    def __init__(self, progress, description: str, total: int | None):
        self.progress = progress
        self.identifier = progress.add_task(description, total=total, status="")

    def advance(self, count: int = 1, **fields) -> None:
        status = "  ".join(f"{name} {value:.4f}" for name, value in fields.items() if value is not None)
        self.progress.update(self.identifier, advance=count, status=status)

    def close(self) -> None:
        # Drawn once as it ends, so that even a task shorter than a refresh shows, then taken off.
        self.progress.refresh()
        self.progress.remove_task(self.identifier)


class RichDisplay(Display):
    """Bars on a terminal: one per running task or epoch, with messages and epoch lines printed above."""

    def __init__(self, stream):
        super().__init__(stream)
        # Deferred: only a terminal draws bars, and rich (installed with Keras) is slower to import than
        # the light commands (`tlcore runs`, `tlcore stop`) take to run.
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(file=stream)
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
        )
        self.progress.start()

    def print(self, message: str) -> None:
        self.progress.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def task(self, description: str, total: int | None) -> Task:
        return RichTask(self.progress, description, total)

    def epoch_callback(self, stage: str, epochs: int, epoch_offset: int = 0):
        # Heavy: imports Keras (see the module's comment).
        from tlcore.training.callbacks import BarProgress

        return BarProgress(self, stage, epochs, epoch_offset)

    def close(self) -> None:
        self.progress.stop()


def for_stream(stream, plain: bool = False) -> Display:
    """The display for a stream: bars when it is a terminal (and `plain` is not asked), else plain lines.

    Args:
        stream: where progress goes (standard error on the command line), or None for nothing.
        plain: plain lines even on a terminal (`--json`, whose output a script reads).
    """
    if stream is not None and not plain and hasattr(stream, "isatty") and stream.isatty():
        return RichDisplay(stream)
    return Display(stream)
