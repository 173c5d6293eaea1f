"""Text for Streamlit's Markdown: names shown as typed, small tables, the one-line data set summary, and
the phrase that says whether a backbone's weights are offline."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from tlcore.data.dataset import DatasetScan
from tlcore.files import printable
from tlcore.models.registry import WeightsStatus

# Characters that Streamlit's Markdown would treat as formatting (":" starts emoji and colour codes).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")


def escape(value: object) -> str:
    """Escapes a string (a class or folder name) so Markdown shows it as plain text; the bytes of a name that
    is not UTF-8 show as U+FFFD (as they are, the page could not be sent)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", printable(str(value)))


# Where a file name may wrap in a narrow caption: after the separators a person reads as boundaries (not
# after a dot: "21054." over "jpg" split a name from its extension).
_NAME_BREAKS = re.compile(r"([/_\-])(?=.)")
# A zero-width space: a break opportunity the browser takes before it breaks a name mid-word.
_BREAK_OPPORTUNITY = "\u200b"


def file_name(value: object) -> str:
    """Escapes a file name or relative path for a narrow caption, letting it wrap after / _ and -.

    A thumbnail's caption is as wide as the thumbnail; a path such as "validation/cats/cat.2034.jpg" is wider
    than that, and the browser broke it wherever the line ran out ("validation/cats/ca" + "t.2034.jpg").
    """
    return escape(_NAME_BREAKS.sub(lambda match: match.group(1) + _BREAK_OPPORTUNITY, str(value)))


def text_width(names: Iterable[object], widest: int = 360) -> int:
    """Pixels a data grid's column needs to show every name whole, up to `widest` (then it scrolls).

    Average-width glyphs of the grid's font, the column's padding, and room for its sort arrow.
    """
    longest = max((len(str(name)) for name in names), default=0)
    return min(widest, max(80, 40 + 9 * longest))


def table(rows: list[dict]) -> str:
    """A Markdown table of `rows` (one dict per row, the first row's keys as the header), each cell escaped.

    For small read-only tables on light pages: st.dataframe's grid is a further 1.2 MB of JavaScript
    that a first visit's browser has to fetch and compile.
    """
    if not rows:
        raise ValueError("markdown.table needs at least one row, received none.")
    header = list(rows[0])
    lines = ["| " + " | ".join(escape(name) for name in header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(escape("" if row[name] is None else row[name]) for name in header) + " |")
    return "\n".join(lines)


def dataset_line(scan: DatasetScan, name: str | None = None) -> str:
    """'catsdogs: 2 classes (cats, dogs), 40 train / 20 validation images', Markdown-escaped.

    Args:
        scan: the data set.
        name: what to call it (its name in the library, `session.dataset_name`); default its folder's name.
    """
    counts = {split: len(samples) for split, samples in scan.splits.items()}
    shown = ", ".join(scan.classes[:6]) + (", ..." if scan.num_classes > 6 else "")
    parts = " / ".join(f"{count} {split}" for split, count in counts.items())
    return escape(f"{name or Path(scan.root).name}: {scan.num_classes} classes ({shown}), {parts} images")


def weights_phrase(status: WeightsStatus, offline_variants: list[tuple[float, int]], *, detailed: bool) -> str:
    """Whether a backbone's ImageNet weights are offline, in the words Home's table and the Train page share.

    Args:
        status: the weights' status (`registry.weights_status`) at the size a new run starts at.
        offline_variants: the (alpha, size) pairs of a MobileNet whose weight files are in the Keras cache
            (`registry.offline_variants`); it has one file per width multiplier and size.
        detailed: name those pairs (Home's table); otherwise say "some sizes", so that a label does not change
            with the alpha and size chosen (a changed label makes Streamlit see a new selectbox).

    Returns:
        "available offline", "needs its weight package" (shipped in a pip package, never downloaded),
        "offline for some sizes" (or the sizes), or "needs a download".
    """
    if status.available:
        return "available offline"
    if status.source == "bundled":
        return "needs its weight package"
    if not offline_variants:
        return "needs a download"
    if not detailed:
        return "offline for some sizes"
    pairs = ", ".join(f"alpha {alpha:g} at {size} px" for alpha, size in offline_variants)
    return f"offline for {pairs}; others need a download"
