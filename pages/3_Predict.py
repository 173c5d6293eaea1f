"""Predict: a finished run's model on uploaded photos or a camera snapshot (top predictions, where it
looked), a folder or zip of photos to a CSV, and the model exported for serving."""

import streamlit as st

from tlcore.data.images import SUPPORTED_EXTENSIONS, InvalidImageError
from tlcore.insight import charts
from tlcore.runs import catalog, monitor, saved_model, store
from tlcore.serving import predict
from views import cached, camera_view, frame, markdown, server, session, ship_view

frame.draw()


# The decoder's own list, as the folder scan and the batch prediction use: a photo that trains can be uploaded.
PHOTO_TYPES = [extension.removeprefix(".") for extension in SUPPORTED_EXTENSIONS]


def run_label(row: dict, data_name: str | None) -> str:
    """'97.4% · 1 · Feature extraction, EfficientNet-Lite0 on cats and dogs (done) · <id> (<name>)': its model's
    validation accuracy (to 0.1%, as on the other pages), its strategy, backbone and data set as people read them,
    its state and its id (and the name given it). The model is its last stage's, which after 1 -> 2 -> 3 can be
    below an earlier stage's best (what this showed before)."""
    accuracy = row["model_val_accuracy"]
    measured = "no accuracy" if accuracy is None else f"{accuracy:.1%}"
    name = f"{row['run']} ({row['label']})" if row.get("label") else row["run"]
    state = row["state"]
    if row.get("model_stage"):  # Cut short: the model of the last stage it finished.
        state = f"{state}, model of {monitor.stage_name(row['model_stage'])}"
    data = f" on {data_name}" if data_name else ""
    # The accuracy first and the id last: a narrow window's box cuts the end of the line.
    return f"{measured} · {catalog.strategy_title(row['strategy'])}, {row['model']}{data} ({state}) · {name}"


st.title("Predict")
finished = [run for run in store.list_runs(server.runs_dir()) if saved_model.usable(run)]
if not finished:
    st.info("No finished run with a model yet: train one on the Train page.")
    st.page_link("pages/2_Train.py", label="Go to the Train page", icon=":material/model_training:")
    st.stop()

rows = {run.id: catalog.describe(run) for run in finished}
ids = list(rows)
# The best finished model, not the newest run (which may be a stopped or a scratch one): of the session's
# data set when one was trained on it (the most accurate run overall may know other classes).
dataset = session.current_dataset()
on_this_data = [row for row in rows.values() if dataset and catalog.same_folder(row["data_dir"], dataset.root)]
best = catalog.best_finished(on_this_data) or catalog.best_finished(list(rows.values()))
names = session.dataset_names()  # Each run's data set by its library name (an upload's folder is generated).
data_names = {
    key: session.dataset_name(row["data_dir"], names) if row["data_dir"] else None for key, row in rows.items()
}
# The run of the address first (`?model=<id>`, written below): a reload keeps the run chosen here. Not `?run=`,
# which the sidebar reads as the session's run (the run training, say).
linked = session.linked_run("model")
asked = st.query_params.get("model")
if asked and linked not in rows:  # A link to a run deleted since, or from another machine: said, not ignored.
    st.warning(
        markdown.escape(f"The link's run {asked} is not here or has no usable model: showing another run below.")
    )
run_id = st.selectbox(
    "Predict with the model of run",
    ids,
    index=ids.index(linked if linked in rows else best),
    key="predict_run",
    format_func=lambda key: run_label(rows[key], data_names[key]),
    help="Each run with a usable model, its validation accuracy first. The page opens on the run of its address "
    "(kept there when chosen, so a reload keeps it), else the most accurate finished (done) run of the data set "
    "chosen on the Data page, or of all runs when none was trained on it. The sidebar's current run is the "
    "Train page's, which may be another.",
)
st.query_params["model"] = run_id
try:
    predictor = cached.predictor(run_id)
except (predict.ModelLoadError, ValueError) as error:
    st.error(markdown.escape(error))
    st.stop()
st.caption(
    markdown.escape(
        f"{len(predictor.labels)} classes: {', '.join(predictor.labels)}. "
        f"Photos are resized to {predictor.image_size} × {predictor.image_size} pixels, "
        "exactly as in training. The model always answers with one of its classes, even for a photo of "
        "something else."
    )
)

photos_tab, camera_tab, batch_tab, export_tab = st.tabs(
    ["Photos", "Camera", "A folder or zip of photos", "Export the model"]
)
with camera_tab:
    camera_view.camera(run_id, list(predictor.labels))
with batch_tab:
    ship_view.batch(run_id, predictor)
with export_tab:
    ship_view.export(run_id)

with photos_tab:
    uploads = st.file_uploader(
        f"Photos ({', '.join(PHOTO_TYPES)})", type=PHOTO_TYPES, accept_multiple_files=True, key="predict_uploads"
    )
    explain = st.toggle(
        "Show where the model looked (Grad-CAM)",
        key="predict_gradcam",
        persist_state="session",
        help="A heatmap over each photo of the regions that most raised the score of its top class, "
        "from the last convolutional feature map of the base.",
    )
    left, right = st.columns(2)
    top = left.number_input(
        "Top predictions to show",
        1,
        len(predictor.labels),
        value=min(3, len(predictor.labels)),
        key="predict_top",
        help="How many of the most likely classes each photo lists, with their probabilities.",
    )
    opacity = (
        right.slider(
            "Heatmap opacity",
            0.0,
            1.0,
            cached.GRADCAM_OPACITY,
            step=0.05,
            key="predict_gradcam_opacity",
            help="0 shows the photo alone, 1 the heatmap alone.",
        )
        if explain
        else cached.GRADCAM_OPACITY
    )
    if not uploads:
        st.info("Upload one or several photos to see what the model thinks they are.")
        st.stop()

    top = int(top)
    with st.spinner("Predicting..."):
        results = cached.predictions(run_id, [(upload.getvalue(), upload.name) for upload in uploads], top)
    for upload, result in zip(uploads, results):
        with st.container(border=True):
            if "error" in result:
                st.error(markdown.escape(f"{upload.name}: {result['error']}"))
                continue
            best = result["top"][0]
            columns = st.columns([1, 1, 2] if explain else [1, 2])
            try:
                picture, _ = cached.upload_thumbnail(upload.getvalue(), upload.name, 256)
                columns[0].image(picture, caption=markdown.escape(upload.name))
            except InvalidImageError as error:
                columns[0].error(markdown.escape(error.reason))
            if explain:
                try:
                    with st.spinner("Computing Grad-CAM..."):
                        overlay = cached.gradcam_overlay(
                            run_id, upload.getvalue(), upload.name, best["label"], opacity=opacity
                        )
                    columns[1].image(overlay, caption=markdown.escape(f"where it looked for {best['label']}"))
                except (ValueError, InvalidImageError, predict.ModelLoadError) as error:
                    columns[1].warning(markdown.escape(f"No heatmap: {getattr(error, 'reason', error)}"))
            columns[-1].markdown(f"Most likely: **{markdown.escape(best['label'])}** ({best['probability']:.0%})")
            columns[-1].altair_chart(charts.prediction_bars(result["top"], height=60 + 34 * top), width="stretch")
