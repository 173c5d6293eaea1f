"""Text for Streamlit's Markdown: names shown as typed, small tables, the one-line data set summary."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from tlcore.data.dataset import DatasetScan

# Characters that Streamlit's Markdown would treat as formatting (":" starts emoji and colour codes).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")


def escape(value: object) -> str:
    """Escapes a string (a class or folder name) so Markdown shows it as plain text."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(value))


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


def dataset_line(scan: DatasetScan) -> str:
    """'catsdogs: 2 classes (cats, dogs), 40 train / 20 validation images', Markdown-escaped."""
    counts = {split: len(samples) for split, samples in scan.splits.items()}
    shown = ", ".join(scan.classes[:6]) + (", ..." if scan.num_classes > 6 else "")
    parts = " / ".join(f"{count} {split}" for split, count in counts.items())
    return escape(f"{Path(scan.root).name}: {scan.num_classes} classes ({shown}), {parts} images")
