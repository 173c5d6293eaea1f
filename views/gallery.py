"""Grids that hold their shape on a phone, where st.columns stacks its columns one under another.

Either cells of a fixed width in rows that wrap (as many in a row as the window holds), or rows that never
wrap, of cells sharing the row's width.
"""

from __future__ import annotations

import streamlit as st

# Six cells across the main column of a 1400 px window beside the sidebar (a page of twelve thumbnails in two
# rows), two on a 420 px phone.
CELL_WIDTH = 140
# Five metrics across that column, two on a phone of 360 px.
METRIC_WIDTH = 150


def cells(count: int, width: int = CELL_WIDTH) -> list:
    """`count` containers of `width` pixels, laid out in rows that wrap at the window's edge.

    st.columns stacks its columns one under another on a window at most 640 px wide, so a page of
    twelve thumbnails in st.columns(6) became one long column of single images on a phone.

    Args:
        count: how many cells.
        width: each cell's width in pixels.

    Returns:
        The cells, in reading order.
    """
    row = st.container(horizontal=True, wrap=True, gap="small")
    return [row.container(width=width) for _ in range(count)]


def metrics(values: list[tuple[str, object]]) -> None:
    """Draws numbers as st.metric, METRIC_WIDTH pixels each, in a row that wraps.

    In st.columns they stacked one per row on a phone: a screen of large numbers.

    Args:
        values: `(label, value)` pairs, in reading order.
    """
    row = st.container(horizontal=True, wrap=True, gap="small")
    for label, value in values:
        row.metric(label, value, width=METRIC_WIDTH)


def grid(rows: int, per_row: int) -> list:
    """`rows` x `per_row` containers, each row's cells sharing its width, at every window width.

    Args:
        rows: how many rows.
        per_row: how many cells in each row.

    Returns:
        The cells, in reading order.
    """
    in_order = []
    for _ in range(rows):
        row = st.container(horizontal=True, wrap=False, gap="small")
        in_order.extend(row.container(width="stretch") for _ in range(per_row))
    return in_order
