"""The learning-rate finder's chart: loss against learning rate, the suggestion marked. No Streamlit, no TensorFlow."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd


def learning_rate_frame(sweep) -> pd.DataFrame:
    """The sweep's points: columns learning_rate, loss (non-finite losses left out)."""
    frame = pd.DataFrame(
        {
            "learning_rate": [float(rate) for rate in sweep.learning_rates],
            "loss": [float(loss) for loss in sweep.losses],
        }
    )
    return frame[np.isfinite(frame["loss"])]


def learning_rate_sweep(sweep, height: int = 260) -> alt.LayerChart:
    """The learning-rate finder's loss against learning rate (log scale), the suggestion marked.

    Args:
        sweep: a `tlcore.training.learning_rate_sweep.LearningRateSweep` (learning_rates, losses, suggestion).
    """
    frame = learning_rate_frame(sweep)
    rates = frame["learning_rate"] if not frame.empty else pd.Series([float(sweep.suggestion)])
    decades = [
        10.0**power for power in range(int(np.floor(np.log10(rates.min()))), int(np.ceil(np.log10(rates.max()))) + 1)
    ]
    x = alt.X(
        "learning_rate:Q",
        scale=alt.Scale(type="log"),
        title="learning rate (log scale)",
        axis=alt.Axis(format=".0e", values=decades),
    )
    line = (
        alt.Chart(frame)
        .mark_line()
        .encode(
            x=x,
            y=alt.Y("loss:Q", title="training loss (smoothed)", scale=alt.Scale(zero=False)),
            tooltip=[
                alt.Tooltip("learning_rate:Q", title="learning rate", format=".2e"),
                alt.Tooltip("loss:Q", format=".4f"),
            ],
        )
    )
    marker = pd.DataFrame(
        {"learning_rate": [float(sweep.suggestion)], "label": [f"suggested {float(sweep.suggestion):.1e}"]}
    )
    rule = (
        alt.Chart(marker)
        .mark_rule(color="#d62728", strokeDash=[4, 3])
        .encode(x=x, tooltip=[alt.Tooltip("learning_rate:Q", title="suggested learning rate", format=".2e")])
    )
    text = (
        alt.Chart(marker)
        .mark_text(align="left", dx=5, dy=-6, color="#d62728", baseline="top")
        .encode(x=x, y=alt.value(0), text="label:N")
    )
    return (line + rule + text).properties(height=height)
