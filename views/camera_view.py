"""The Predict page's camera tab: a snapshot classified, with where the model looked (Grad-CAM).

Not a page. The snapshot takes the uploads' path: `cached.predictions` (the one decoder, the run's
model) and `cached.gradcam_overlay`, so a camera photo and an uploaded one are predicted alike.
"""

from __future__ import annotations

import streamlit as st

from tlcore.data.images import InvalidImageError
from tlcore.insight import charts
from tlcore.serving import predict
from views import cached, markdown


def camera(run_id: str, labels: list[str]) -> None:
    """A camera input; its snapshot's top classes, and the heatmap of the most likely one."""
    # Half the page on a desktop (full width, the preview was taller than the window); a phone stacks the columns.
    camera_column, settings_column = st.columns(2)
    shot = camera_column.camera_input("Take a photo to classify", key="predict_camera")
    top = settings_column.number_input(
        "Top predictions to show",
        1,
        len(labels),
        value=min(3, len(labels)),
        key="camera_top",
        help="How many of the most likely classes the snapshot lists, with their probabilities.",
    )
    if shot is None:
        st.info("Take a photo: the model classifies it and shows where it looked.")
        return
    top = int(top)
    content = shot.getvalue()
    with st.spinner("Predicting..."):
        result = cached.predictions(run_id, [(content, "camera snapshot")], top)[0]
    if "error" in result:
        st.error(markdown.escape(f"camera snapshot: {result['error']}"))
        return
    best = result["top"][0]
    with st.container(border=True):
        heatmap_column, chart_column = st.columns([1, 2])
        try:
            with st.spinner("Computing Grad-CAM..."):
                overlay = cached.gradcam_overlay(run_id, content, "camera snapshot", best["label"])
            heatmap_column.image(overlay, caption=markdown.escape(f"where it looked for {best['label']}"))
        except (ValueError, InvalidImageError, predict.ModelLoadError) as error:
            heatmap_column.warning(markdown.escape(f"No heatmap: {getattr(error, 'reason', error)}"))
        chart_column.markdown(f"Most likely: **{markdown.escape(best['label'])}** ({best['probability']:.0%})")
        chart_column.altair_chart(charts.prediction_bars(result["top"], height=60 + 34 * top), width="stretch")
