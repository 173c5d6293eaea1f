"""The data explorer's map as a chart: every image a point, coloured by class, shaped by split."""

from __future__ import annotations

from typing import Iterable

import altair as alt
import pandas as pd

from tlcore.files import printable
from tlcore.insight.charts import CATEGORY_SCHEME, CLASS_LABEL_LIMIT


def exploration_map(points: Iterable, root: str = "", height: int = 420) -> alt.Chart:
    """The data explorer's map: one dot per image, coloured by class, shaped by split.

    Args:
        points: `tlcore.insight.explore.MapPoint`s (path, label, split, x, y).
        root: the data set's folder; the tooltip names files relative to it.
        height: the chart's height in pixels.

    Returns:
        A scatter chart whose tooltip names each image's file, class and split.
    """
    prefix = root.rstrip("/") + "/" if root else ""
    rows = [
        {
            "file": printable(point.path.removeprefix(prefix)),  # A name that is not UTF-8 too.
            "class": point.label,
            "split": point.split,
            "x": point.x,
            "y": point.y,
        }
        for point in points
    ]
    frame = pd.DataFrame(rows, columns=["file", "class", "split", "x", "y"])
    return (
        alt.Chart(frame)
        .mark_point(filled=True, size=60, opacity=0.8)
        .encode(
            x=alt.X("x:Q", title="first principal component", axis=alt.Axis(labels=False, ticks=False)),
            y=alt.Y("y:Q", title="second principal component", axis=alt.Axis(labels=False, ticks=False)),
            color=alt.Color(
                "class:N", scale=alt.Scale(scheme=CATEGORY_SCHEME), legend=alt.Legend(labelLimit=CLASS_LABEL_LIMIT)
            ),
            shape=alt.Shape("split:N"),
            tooltip=["file", "class", "split"],
        )
        .properties(height=height)
        .interactive()
    )
