"""Progress of a long step on a page: what `tlcore` says it is doing, and a bar of the things done.

Not a page. `tlcore` reports its long steps (an export's conversion and check, an evaluation's
predictions) to a `tlcore.progress.Display`; on the command line that is a line or a rich bar, and
here it is a caption and an `st.progress` bar in a slot of the page, cleared when the step ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tlcore import progress
from views import markdown


class PageTask(progress.Task):
    """One task's bar: "Checking the tflite export on the validation images: 64 of 500".

    Args:
        slot: the `st.empty()` the bar is drawn in.
        description: what is counted.
        total: how many things there are, or None when not known (the bar then only counts).
    """

    def __init__(self, slot, description: str, total: int | None):
        self.slot = slot
        self.description = description
        self.total = total
        self.done = 0
        self.draw()

    def draw(self) -> None:
        if self.total:
            text = f"{self.description}: {min(self.done, self.total):,} of {self.total:,}"
            self.slot.progress(min(1.0, self.done / self.total), text=markdown.escape(text))
        else:
            self.slot.caption(markdown.escape(f"{self.description}: {self.done:,}"))

    def advance(self, count: int = 1, **fields) -> None:
        self.done += count
        self.draw()

    def close(self) -> None:
        self.slot.empty()


class PageDisplay(progress.Display):
    """A `tlcore.progress.Display` drawn in a container: the latest message as a caption, tasks as bars.

    Args:
        container: where to draw (a column, a container); the display adds its own slots to it.
    """

    def __init__(self, container):
        super().__init__(stream=None)
        self.message = container.empty()
        self.bars = container.container()

    def print(self, message: str) -> None:
        self.message.caption(markdown.escape(message))

    def task(self, description: str, total: int | None) -> PageTask:
        return PageTask(self.bars.empty(), description, total)

    def close(self) -> None:
        self.message.empty()


@contextlib.contextmanager
def shown_in(container) -> Iterator[PageDisplay]:
    """A PageDisplay in a slot of `container`, cleared when the block ends (whether it succeeded or not)."""
    slot = container.empty()
    display = PageDisplay(slot.container())
    try:
        yield display
    finally:
        display.close()
        slot.empty()
