"""Pure functions from metrics and scan reports to Altair charts. No Streamlit, no TensorFlow."""

from __future__ import annotations

from typing import Iterable

import altair as alt
import pandas as pd

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


def history(records: Iterable[dict], height: int = 220) -> alt.VConcatChart | alt.Chart:
    """Loss and accuracy per epoch, training (dashed) vs validation (solid), one colour per stage.

    Fine-tuning continues the epoch count of frozen + augmentation, and a rule marks where it
    starts, so the five classic steps read left to right.
    """
    frame = history_frame(records)
    if frame.empty:
        return alt.Chart(pd.DataFrame({"text": ["Waiting for the first epoch..."]})).mark_text(
            size=14, color="gray").encode(text="text:N").properties(height=60)
    charts = []
    for metric in ("loss", "accuracy"):
        subset = frame[frame["metric"] == metric]
        base = alt.Chart(subset).encode(
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("value:Q", title=metric, scale=alt.Scale(zero=False)),
            color=alt.Color("stage:N", title="strategy"),
            strokeDash=alt.StrokeDash("split:N", title="data", sort=["validation", "training"]),
            tooltip=["stage", "split", "epoch", alt.Tooltip("value:Q", format=".4f")],
        )
        layer = base.mark_line(point=True)
        starts = subset[subset["stage"] == STAGE_TITLES["fine_tuning"]]
        if not starts.empty:
            rule = alt.Chart(pd.DataFrame({"epoch": [starts["epoch"].min() - 0.5]})).mark_rule(
                strokeDash=[2, 2], color="gray").encode(x="epoch:Q")
            layer = layer + rule
        charts.append(layer.properties(height=height, title=metric))
    return alt.vconcat(*charts).resolve_scale(color="shared", strokeDash="shared")


def compare(histories: dict[str, list[dict]], metric: str = "val_accuracy", height: int = 300) -> alt.Chart:
    """Overlay one validation metric of several runs, one colour per run.

    Args:
        histories: run id -> its epoch records.
        metric: "val_accuracy", "val_loss", "accuracy" or "loss".
    """
    split = "validation" if metric.startswith("val_") else "training"
    name = metric.removeprefix("val_")
    frames = [history_frame(records, run) for run, records in histories.items()]
    frame = pd.concat(frames, ignore_index=True) if frames else history_frame([])
    frame = frame[(frame["metric"] == name) & (frame["split"] == split)]
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("value:Q", title=metric, scale=alt.Scale(zero=False)),
        color=alt.Color("run:N", legend=alt.Legend(orient="bottom", columns=1, labelLimit=400)),
        detail="stage:N",
        tooltip=["run", "stage", "epoch", alt.Tooltip("value:Q", format=".4f")],
    ).properties(height=height)


def split_counts(counts: dict[str, dict[str, int]], height: int = 200) -> alt.Chart:
    """Images per class, grouped by split (a scan report's `counts()`)."""
    rows = [{"split": split, "class": name, "images": count}
            for split, per_class in counts.items() for name, count in per_class.items()]
    frame = pd.DataFrame(rows, columns=["split", "class", "images"])
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("images:Q"),
        y=alt.Y("class:N", title=None),
        color=alt.Color("split:N"),
        yOffset="split:N",
        tooltip=["split", "class", "images"],
    ).properties(height=height)


def prediction_bars(top: list[dict], height: int = 120) -> alt.Chart:
    """Horizontal bars of a prediction's top labels and probabilities."""
    frame = pd.DataFrame(top, columns=["label", "probability"])
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        y=alt.Y("label:N", sort="-x", title=None),
        tooltip=["label", alt.Tooltip("probability:Q", format=".1%")],
    ).properties(height=height)
