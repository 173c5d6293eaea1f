"""Pure functions from metrics and scan reports to Altair charts. No Streamlit, no TensorFlow."""

from __future__ import annotations

from typing import Iterable

import altair as alt
import pandas as pd

# Pixels a class name may take in a chart's axis or legend before it is cut.
CLASS_LABEL_LIMIT = 240
# Colours of categories (stages, runs, classes, splits): Streamlit's theme starts its palette with a dark and a
# light blue, so two classes of a data set, or stages 1 and 2, looked alike; Tableau's ten start blue, orange.
CATEGORY_SCHEME = "tableau10"

STAGE_TITLES = {
    "feature_extraction": "1 feature extraction",
    "frozen_augmented": "2 frozen + augmentation",
    "fine_tuning": "3 fine-tuning",
    "scratch": "scratch baseline",
}


def history_frame(records: Iterable[dict], run: str | None = None) -> pd.DataFrame:
    """Long-form metrics: one row per (epoch, metric, split) from a run's epoch records.

    Args:
        records: the run's metrics (`Run.metrics()`): dicts with stage, epoch, loss, accuracy,
            val_loss, val_accuracy.
        run: a run id to label the rows with (for comparing runs).

    Returns:
        A DataFrame with columns run, stage, epoch, metric ("loss"/"accuracy"), split
        ("training"/"validation"), value.
    """
    rows = []
    for record in records:
        if record.get("partial"):
            continue  # An epoch cut short by a stop: its training metrics are of a few batches only.
        for key, metric, split in (
            ("loss", "loss", "training"),
            ("val_loss", "loss", "validation"),
            ("accuracy", "accuracy", "training"),
            ("val_accuracy", "accuracy", "validation"),
        ):
            value = record.get(key)
            if value is None:
                continue
            rows.append(
                {
                    "run": run or "",
                    "stage": STAGE_TITLES.get(record.get("stage"), record.get("stage")),
                    "epoch": int(record.get("epoch", 0)),
                    "metric": metric,
                    "split": split,
                    "value": float(value),
                }
            )
    return pd.DataFrame(rows, columns=["run", "stage", "epoch", "metric", "split", "value"])


# Epochs are whole numbers: without a format, Vega-Lite labelled the axis of a one-epoch run
# "1.000000" (and "0.333333" beside it).
EPOCH_AXIS = alt.Axis(format="d", tickMinStep=1)


def value_axis(metric: str) -> dict:
    """The y axis and tooltip formats of a metric: accuracy in percent, as everywhere in the app."""
    if metric == "accuracy":
        # "~%" trims trailing zeros: with "%" a run at 100% every epoch (one value, so ticks a tiny step
        # apart) was labelled "100.000000%".
        return {"axis": alt.Axis(format="~%"), "tooltip": ".1%"}
    return {"axis": alt.Axis(), "tooltip": ".4f"}


# Pixels a run id may take in the comparison's legend: with its symbol, it fits a phone's column.
RUN_LABEL_LIMIT = 260
# The dash legend draws line pieces, not the points of `mark_line(point=True)`, whose filled
# circles would hide the dashes (and, in Streamlit's theme, came out blank).
DASH_LEGEND_SYMBOLS = {
    "symbolType": "stroke",
    "symbolStrokeColor": "gray",
    "symbolStrokeWidth": 2,
    "symbolFillColor": "transparent",
}


def history(records: Iterable[dict], height: int = 220) -> list[alt.Chart | alt.LayerChart]:
    """Loss and accuracy per epoch, training (dashed) vs validation (solid), one colour per stage.

    Two charts, to be drawn one above the other, each as wide as its column: Streamlit fits a
    single (or layered) chart to the column, whereas a concatenation of both came out wider than
    the column and cut its own legend off. Both charts give every stage the same colour; the
    legends sit below the accuracy chart only. Fine-tuning continues the epoch count of frozen +
    augmentation, and a rule marks where it starts, so the five classic steps read left to right.

    Args:
        records: the run's metrics (`Run.metrics()`).
        height: the height of each chart, in pixels.

    Returns:
        [loss chart, accuracy chart], or one placeholder chart before the first epoch.
    """
    frame = history_frame(records)
    if frame.empty:
        return [
            alt.Chart(pd.DataFrame({"text": ["The curves start when the first epoch ends."]}))
            .mark_text(size=14, color="gray")
            .encode(text="text:N")
            .properties(height=60)
        ]
    # Records come in the order they trained: the colours follow the schedule, the same in both charts.
    stages = list(dict.fromkeys(frame["stage"]))
    result = []
    for metric in ("loss", "accuracy"):
        subset = frame[frame["metric"] == metric]
        with_legends = metric == "accuracy"  # The lower chart.
        formats = value_axis(metric)
        base = alt.Chart(subset).encode(
            # From the first epoch to the last: Vega's default included 0, so a run's curves began a step in.
            x=alt.X("epoch:Q", title="epoch", axis=EPOCH_AXIS, scale=alt.Scale(zero=False, nice=False)),
            y=alt.Y("value:Q", title=metric, scale=alt.Scale(zero=False), axis=formats["axis"]),
            color=alt.Color(
                "stage:N",
                title="strategy",
                scale=alt.Scale(domain=stages, scheme=CATEGORY_SCHEME),
                # One entry per row: in a single row the three stages and two splits ran 670 px wide,
                # past the edge of a phone's 390 px column, and the last entries were cut off.
                legend=alt.Legend(orient="bottom", columns=1) if with_legends else None,
            ),
            strokeDash=alt.StrokeDash(
                "split:N",
                title="data",
                sort=["validation", "training"],
                legend=alt.Legend(orient="bottom", columns=1, **DASH_LEGEND_SYMBOLS) if with_legends else None,
            ),
            tooltip=["stage", "split", "epoch", alt.Tooltip("value:Q", format=formats["tooltip"])],
        )
        layer = base.mark_line(point=True)
        starts = subset[subset["stage"] == STAGE_TITLES["fine_tuning"]]
        if not starts.empty:
            # Named, as the Keras fine-tuning guide's "Start Fine Tuning" line is: unnamed, it went unread.
            marker = pd.DataFrame({"epoch": [starts["epoch"].min() - 0.5], "text": ["fine-tuning starts"]})
            rule = alt.Chart(marker).mark_rule(strokeDash=[2, 2], color="gray").encode(x="epoch:Q")
            # Right of the rule, over fine-tuning's epochs; left of it while there is one, whose half an epoch
            # of plot the name would run past.
            after = starts["epoch"].nunique() > 1
            name = (
                alt.Chart(marker)
                .mark_text(
                    align="left" if after else "right",
                    baseline="top",
                    dx=4 if after else -4,
                    dy=4,
                    color="gray",
                    fontSize=11,
                )
                .encode(x="epoch:Q", y=alt.value(0), text="text:N")
            )
            layer = layer + rule + name
        # Fit the width to the column, keep the plot's height (a fitted height would shrink the
        # plot to make room for the legend).
        result.append(
            layer.properties(height=height, title=metric, autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))
        )
    return result


def compare(histories: dict[str, list[dict]], metric: str = "val_accuracy", height: int = 300) -> alt.Chart:
    """Overlay one validation metric of several runs, one colour per run.

    Args:
        histories: run id -> its epoch records.
        metric: "val_accuracy", "val_loss", "accuracy" or "loss".
    """
    split = "validation" if metric.startswith("val_") else "training"
    # The stages of a 1 -> 2 -> 3 run share its colour: the dash tells them apart, in the training order.
    stages = [title for key, title in STAGE_TITLES.items() if key != "scratch"] + [STAGE_TITLES["scratch"]]
    name = metric.removeprefix("val_")
    frames = [history_frame(records, run) for run, records in histories.items()]
    frame = pd.concat(frames, ignore_index=True) if frames else history_frame([])
    frame = frame[(frame["metric"] == name) & (frame["split"] == split)]
    formats = value_axis(name)
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", axis=EPOCH_AXIS),
            y=alt.Y("value:Q", title=f"{split} {name}", scale=alt.Scale(zero=False), axis=formats["axis"]),
            # Each legend one entry per row, the stages above the plot and the runs below it: side by
            # side in rows they ran past the edge of a phone's 390 px column. A run id longer than the
            # label limit ends in an ellipsis (the tooltip has it whole).
            color=alt.Color(
                "run:N",
                scale=alt.Scale(scheme=CATEGORY_SCHEME),
                legend=alt.Legend(orient="bottom", columns=1, labelLimit=RUN_LABEL_LIMIT),
            ),
            strokeDash=alt.StrokeDash(
                "stage:N",
                title="stage",
                scale=alt.Scale(domain=stages),
                legend=alt.Legend(
                    orient="top",
                    columns=1,
                    values=[stage for stage in stages if stage in set(frame["stage"])],
                    **DASH_LEGEND_SYMBOLS,
                ),
            ),
            tooltip=["run", "stage", "epoch", alt.Tooltip("value:Q", format=formats["tooltip"])],
        )
        # As `history`: the width fits the column, the plot keeps its height (fitted whole, the plot
        # shrank to a strip under its two legends).
        .properties(height=height, autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))
    )


# Pixels of one bar of `split_counts`, and what its axes and paddings take besides the bars.
SPLIT_BAR_HEIGHT = 14
SPLIT_CHART_FRAME = 56


def split_counts(counts: dict[str, dict[str, int]], height: int | None = None) -> alt.Chart:
    """Images per class, grouped by split (a scan report's `counts()`).

    Args:
        counts: split -> class -> number of images.
        height: the chart's height in pixels, axis included. By default every bar gets
            SPLIT_BAR_HEIGHT pixels: a fixed height squeezed three classes of two splits into
            thin bars and hid every other class name (a label that does not fit is dropped).

    Returns:
        A horizontal bar chart, one band per class, one bar per split in it.
    """
    rows = [
        {"split": split, "class": name, "images": count}
        for split, per_class in counts.items()
        for name, count in per_class.items()
    ]
    frame = pd.DataFrame(rows, columns=["split", "class", "images"])
    if height is None:
        height = SPLIT_CHART_FRAME + SPLIT_BAR_HEIGHT * len(frame)
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            # Whole images: a small set's axis ticked 0.5, 1.0, 1.5 images.
            x=alt.X("images:Q", axis=alt.Axis(tickMinStep=1, format=",d")),
            # Whole class names up to a limit (Vega-Lite's default cut "sunflowers" to "sunflo...").
            y=alt.Y("class:N", title=None, axis=alt.Axis(labelLimit=CLASS_LABEL_LIMIT)),
            color=alt.Color("split:N", scale=alt.Scale(scheme=CATEGORY_SCHEME)),
            yOffset="split:N",
            tooltip=["split", "class", "images"],
        )
        .properties(height=height)
    )


def prediction_bars(top: list[dict], height: int = 120) -> alt.Chart:
    """Horizontal bars of a prediction's top labels and probabilities."""
    frame = pd.DataFrame(top, columns=["label", "probability"])
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            y=alt.Y("label:N", sort="-x", title=None),
            tooltip=["label", alt.Tooltip("probability:Q", format=".1%")],
        )
        .properties(height=height)
    )


def confusion_frame(evaluation, normalised: bool = False) -> pd.DataFrame:
    """One row per (true class, predicted class): count, share of the true class, and the shown value.

    Args:
        evaluation: a `tlcore.insight.evaluate.Evaluation` (classes, confusion, normalised).
        normalised: show each cell as its share of the true class instead of its count.

    Returns:
        A DataFrame with columns true, predicted, count, share, value, label (the cell's text).
    """
    rows = []
    for row, true_name in enumerate(evaluation.classes):
        for column, predicted_name in enumerate(evaluation.classes):
            count, share = int(evaluation.confusion[row][column]), float(evaluation.normalised[row][column])
            rows.append(
                {
                    "true": true_name,
                    "predicted": predicted_name,
                    "count": count,
                    "share": share,
                    "value": share if normalised else float(count),
                    "label": f"{share:.0%}" if normalised else str(count),
                }
            )
    return pd.DataFrame(rows, columns=["true", "predicted", "count", "share", "value", "label"])


# The confusion matrix's colour legend, under it: its title and gradient bar.
LEGEND_HEIGHT = 40


def confusion_matrix(evaluation, normalised: bool = False) -> alt.LayerChart:
    """A heatmap of an evaluation's confusion matrix: true classes down, predicted classes across.

    Each cell shows its count (or, normalised, its share of the true class); the diagonal holds the
    correct predictions. Class names are data, drawn as text. The cells shrink as classes are added
    (110 px for two classes, 720 px of cells at most); the chart's size includes its axes and legend,
    as Streamlit fits a chart into its size. The legend lies under the matrix, so that a narrow column
    gives its room to the cells.

    Args:
        evaluation: a `tlcore.insight.evaluate.Evaluation`.
        normalised: colour and label cells by share of the true class instead of count.
    """
    frame = confusion_frame(evaluation, normalised)
    order = list(evaluation.classes)
    cell = max(24, min(110, 440 // len(order)))
    side = min(720, cell * len(order))
    names = min(160, 7 * max(len(name) for name in order))  # Pixels of the longest class name, as a label.
    upright = names < side / len(order)
    top = 1.0 if normalised else max(1.0, float(frame["value"].max()))
    base = alt.Chart(frame).encode(
        x=alt.X(
            "predicted:N",
            sort=order,
            title="predicted class",
            axis=alt.Axis(labelAngle=0 if upright else -45, labelLimit=160, labelOverlap=False, labelFlush=False),
        ),
        y=alt.Y("true:N", sort=order, title="true class", axis=alt.Axis(labelLimit=160, labelOverlap=False)),
        tooltip=[
            alt.Tooltip("true:N", title="true class"),
            alt.Tooltip("predicted:N", title="predicted class"),
            alt.Tooltip("count:Q", title="images"),
            alt.Tooltip("share:Q", title="share of the true class", format=".1%"),
        ],
    )
    # An empty cell is white: the scheme's palest blue, which it had, looked like a cell of one mistake.
    cells = base.mark_rect(stroke="#e5e7eb").encode(
        color=alt.condition(
            alt.datum.count > 0,
            alt.Color(
                "value:Q",
                scale=alt.Scale(scheme="blues", domain=[0, top]),
                title="share of the true class" if normalised else "images",
                legend=alt.Legend(format=".0%" if normalised else "d", orient="bottom", direction="horizontal"),
            ),
            alt.value("white"),
        )
    )
    labels = base.mark_text(fontSize=13 if cell >= 40 else 9).encode(
        text="label:N", color=alt.condition(alt.datum.value > top / 2, alt.value("white"), alt.value("black"))
    )
    below = 40 + (20 if upright else int(0.72 * names))  # The x axis: its labels and its title.
    return (cells + labels).properties(width=side + names + 40, height=side + below + 10 + LEGEND_HEIGHT)
