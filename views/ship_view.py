"""The Predict page's two ways out of the studio: a folder or zip of photos to a CSV, and model exports.

Not a page. Results are kept in session state per run, so a download or another widget's rerun does
not predict or export again:
    batch_result     {"run", "source", "rows"} of the latest batch prediction
    exports          {(run id, format): ExportResult.to_dict()} of the exports made in this session
"""

from pathlib import Path

import pandas as pd
import streamlit as st

from tlcore import wording
from tlcore.data import browse, roots, zips
from tlcore.files import printable
from tlcore.runs import store
from tlcore.serving import batch as batch_prediction
from tlcore.serving import export as exporting
from tlcore.serving import export_archive, predict
from views import markdown, page_progress, server

FORMATS = {
    "keras": ("Keras", "the run's .keras model and labels.json, to load with keras.saving.load_model or train on"),
    "savedmodel": (
        "SavedModel",
        'a TensorFlow SavedModel folder for TF Serving (input "image": RGB pixels 0-255), zipped, labels.json inside',
    ),
    "tflite": ("TFLite", "a float32 .tflite file for phones and edge devices, with labels.json"),
    "tflite-int8": ("TFLite int8", "8-bit weights: about 4x smaller, nearly the same predictions, with labels.json"),
}


def batch(run_id: str, predictor) -> None:
    """A zip upload or a folder path -> a table of predictions and its CSV."""
    st.caption(
        "Every photo in a zip archive or a folder (subfolders included) gets its top label and "
        "probabilities; files that are not usable photos are listed with the reason. Photos in folders named "
        "after the classes (a test set sorted by class) are scored against them."
    )
    source = st.segmented_control(
        "Photos from", ["Zip upload", "Folder"], default="Zip upload", required=True, key="batch_source"
    )
    target, name = None, None
    if source == "Zip upload":
        archive = st.file_uploader("A zip archive of photos", type=["zip"], key="batch_zip")
        if archive is not None:
            target, name = archive.getvalue(), archive.name
    else:
        folder = st.text_input("Folder path", key="batch_folder", placeholder="/path/to/photos").strip()
        if folder:
            target, name = folder, folder
    top = st.number_input(
        "Top predictions to show",  # As the Photos and Camera tabs name it.
        1,
        len(predictor.labels),
        min(3, len(predictor.labels)),
        key="batch_top",
        help="How many of the most likely classes each photo's row lists (the table's and the CSV's top k column).",
    )
    if st.button(
        "Predict every photo",
        type="primary",
        icon=":material/batch_prediction:",
        key="batch_predict",
        disabled=target is None,
    ):
        try:
            # A typed folder is read only under the allowed data roots (refused with their names otherwise).
            source = target if isinstance(target, bytes) else roots.resolve_under_roots(target)
            with st.spinner("Predicting..."), page_progress.shown_in(st.container()) as display:
                rows = batch_prediction.predict_folder(predictor, source, top=int(top), display=display)
        except browse.FolderTooLargeError as error:
            st.error(markdown.escape(f"Too many files to predict. {error}"))
            st.session_state.pop("batch_result", None)
        except (zips.UnsafeArchiveError, ValueError, OSError) as error:
            # An upload's error would name "<uploaded archive>": name the file instead. The other
            # messages already name the folder or file typed.
            reason = f"{name}: {error.reason}" if isinstance(error, zips.UnsafeArchiveError) else error
            st.error(markdown.escape(reason))
            st.session_state.pop("batch_result", None)  # Its table would read as this source's.
        else:
            # A typed folder's own name may name a class too (`.../validation/cats`); an archive's does not.
            folder = None if isinstance(source, bytes) else Path(source).name
            st.session_state["batch_result"] = {"run": run_id, "source": name, "rows": rows, "folder": folder}
    result = st.session_state.get("batch_result")
    if not result or result["run"] != run_id:
        return
    rows = result["rows"]
    if not rows:  # An empty folder or zip: no table of nothing, no CSV of a header alone.
        st.warning(markdown.escape(f"{Path(result['source']).name}: {batch_prediction.NO_FILES}."))
        return
    failed = sum(row["error"] is not None for row in rows)
    problems = f", {wording.count(failed, 'file')} could not be used (the error column says why)." if failed else "."
    predicted = wording.count(len(rows) - failed, "photo")
    st.markdown(markdown.escape(f"{Path(result['source']).name}: {predicted} predicted{problems}"))
    score = batch_prediction.score_by_folder(rows, predictor.labels, result.get("folder"))
    if score is not None:  # Photos sorted into class folders: how many the model put in theirs.
        st.markdown(markdown.escape(score.describe()))
    elif note := batch_prediction.unscored_note(rows, predictor.labels, result.get("folder")):
        st.caption(markdown.escape(note))  # Photos in folders the model has no class for: why they go unscored.
    # Percentages as numbers (the column sorts), to 0.1% as everywhere else ("percent" showed 96% beside
    # 61.23%, and whole percents in "top k" 100% beside 99.7%); cells of the other kind of row are blank,
    # not "None" (the placeholder of the error rows' missing probability).
    table = pd.DataFrame(
        [
            {
                "file": printable(row["file"]),  # A name that is not UTF-8 too: the table carries text.
                "top label": row["top_label"] or "",
                "probability": None if row["probability"] is None else 100 * row["probability"],
                "top k": "; ".join(f"{item['label']} {item['probability']:.1%}" for item in row["top_k"]),
                "error": row["error"] or "",
            }
            for row in rows
        ]
    )
    st.dataframe(
        table,
        hide_index=True,
        placeholder="",
        column_config={
            "file": st.column_config.TextColumn("file", width="medium"),
            "probability": st.column_config.NumberColumn("probability", format="%.1f%%"),
            "error": st.column_config.TextColumn("error", width="large"),
        },
    )
    st.download_button(
        "Download the CSV",
        # A file name that is not UTF-8 is written as the bytes it was, as `tlcore predict --csv` writes it.
        batch_prediction.to_csv(rows).encode("utf-8", "surrogateescape"),
        file_name="predictions.csv",
        mime="text/csv",
        icon=":material/download:",
        on_click="ignore",
        key="batch_csv",
    )


def export(run_id: str) -> None:
    """A button per format that exports (and checks) the model, then a download of the artefact."""
    st.caption(
        "Each export is loaded back and run on the run's validation images; it is refused unless it gives "
        f"{exporting.rule_in_words()} (8-bit rounding may tip images the model nearly ties on)."
    )
    # The run's exports as its folder records them (this session's, another tab's, the CLI's), read on each draw:
    # an export of a model that a resume has replaced since is not offered.
    try:
        made = exporting.recorded_exports(store.resolve(run_id, server.runs_dir()))
    except ValueError:
        made = {}
    for format, (title, description) in FORMATS.items():
        with st.container(border=True):
            left, right = st.columns([3, 2])
            left.markdown(f"**{title}**: {markdown.escape(description)}")
            if right.button(f"Export as {title}", icon=":material/deployed_code:", key=f"export_{format}"):
                try:
                    with (
                        st.spinner(f"Exporting as {title} and checking it on the validation images..."),
                        page_progress.shown_in(left) as display,
                    ):
                        made[format] = exporting.export(
                            run_id, format, runs_dir=server.runs_dir(), display=display
                        ).to_dict()
                except (exporting.ExportError, predict.ModelLoadError, ValueError, OSError) as error:
                    left.error(markdown.escape(error))
            result = made.get(format)
            if result is None or not Path(result["path"]).exists():
                continue
            path = Path(result["path"])
            size = (
                sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
                if path.is_dir()
                else path.stat().st_size
            )
            left.success(
                markdown.escape(
                    f"{path.name} ({browse.human_size(size)}) agrees with the Keras model on {result['agreement']:.1%} "
                    f"of {result['images']} validation images (largest probability difference "
                    f"{result['max_difference']:.2g}); accuracy {result['accuracy']:.1%}, the Keras model's "
                    f"{result['keras_accuracy']:.1%}. The download, {export_archive.archive_name(run_id, format)}, "
                    f"holds {export_archive.archive_contents(path, format)}."
                )
            )
            right.download_button(
                f"Download {title}",
                data=lambda path=result["path"], format=format: export_archive.archive(path, format),
                file_name=export_archive.archive_name(run_id, format),
                mime="application/zip",
                icon=":material/download:",
                on_click="ignore",
                key=f"download_{format}",
            )
