"""A finished run's evaluation on the Train page: accuracy, confusion matrix, per-class scores, mistakes.

Not a page. `show(run, key)` draws it; `key` keeps the widgets of two views on one page apart (the
current run, and a run picked in the runs table). The figures are computed once per model file and
split by `tlcore.insight.evaluate` (cached in the run folder), so they appear instantly afterwards.
"""

from pathlib import Path

import pandas as pd
import streamlit as st

from tlcore.data import folders
from tlcore.data.dataset import DatasetError
from tlcore.data.images import InvalidImageError
from tlcore.insight import charts, evaluate
from tlcore.runs import saved_model, store
from tlcore.serving import predict
from views import cached, gallery, markdown, page_progress

PER_PAGE = 12
TABLE_WIDTH = 360  # Pixels of the per-class table: a class name and four numbers, whole.
# The per-class scores and their column titles, each to 0.1% as the accuracies are everywhere.
SCORES = (("precision", "precision"), ("recall", "recall"), ("f1", "F1"))


def per_class_table(result: evaluate.Evaluation) -> pd.DataFrame:
    """The per-class table, its scores in percent."""
    table = pd.DataFrame(result.per_class())
    for name, _ in SCORES:
        table[name] = table[name] * 100
    return table


SPLITS = ("validation", "test")  # Training never measures the train split.


def evaluable(run: store.Run) -> bool:
    """Whether a run has ended with a model to evaluate (a finished stage's, for a run cut short)."""
    return saved_model.usable(run)


def show(run: store.Run, key: str) -> None:
    """The evaluation of a finished run: a button until it is computed, then the figures."""
    st.subheader("Evaluation")
    data_dir = run.config().get("data_dir")
    found = folders.split_names(data_dir) if isinstance(data_dir, str) and data_dir else ()  # Damaged: not text.
    splits = [split for split in SPLITS if split in found] or ["validation"]
    split = "validation"
    if len(splits) > 1:
        split = st.segmented_control(
            "Split", splits, default="validation", required=True, key=f"{key}_evaluation_split"
        )
    result = evaluate.load_cached(run, split)
    if result is None and isinstance(data_dir, str) and data_dir and not Path(data_dir).is_dir():
        # Offered, the button only named a missing path: the data set was deleted from the library, or moved.
        st.info(markdown.escape(f"Not evaluated: its data set, {data_dir}, is no longer there."))
        return
    if result is None:
        slot = st.empty()  # Cleared once the figures are there.
        offer = slot.container()
        offer.caption(
            f"Measure the model on the {split} images: a confusion matrix, precision, recall and F1 "
            "per class, and the images it gets wrong."
        )
        if not offer.button(
            f"Evaluate on the {split} split", icon=":material/fact_check:", key=f"{key}_evaluate_{split}"
        ):
            return
        try:
            with st.spinner(f"Predicting every {split} image..."), page_progress.shown_in(offer) as display:
                result = evaluate.evaluate(run, split, display=display)
        except (ValueError, DatasetError, predict.ModelLoadError, OSError) as error:
            st.error(markdown.escape(error))
            return
        slot.empty()
    render(result, key, pages_key=f"{key}_{run.id}_{split}_mistakes_page", data_dir=data_dir)


def render(result: evaluate.Evaluation, key: str, pages_key: str, data_dir: str | None = None) -> None:
    """Accuracy, the confusion matrix (counts or shares), the per-class table and the mistakes.

    Args:
        result: the evaluation.
        key: keeps this view's widgets apart from another's on the page.
        pages_key: the key of the mistakes' page selector.
        data_dir: the data set folder the run trained on, which the mistakes' file names are relative to.
    """
    gallery.metrics(
        [
            ("Accuracy", f"{result.accuracy:.1%}"),
            (f"{result.split.capitalize()} images", result.images),
            ("Mistakes", len(result.mistakes)),
        ]
    )
    # A row that wraps: the table beside the matrix where there is room, under it where there is not
    # (side by side in fixed columns, a matrix of 5 classes or more ran under the table). The matrix keeps
    # its own width where it has it and shrinks, legend and all, in a narrower window.
    width = int(charts.confusion_matrix(result).width)  # The same counted or shared.
    with st.container(horizontal=True, gap="medium"):
        with st.container(width=width, key=f"{key}_confusion_matrix"):
            normalised = st.toggle(
                "Share of each true class",
                key=f"{key}_normalised",
                persist_state="session",
                help="Colour each row by the share of that class's images, instead of counts.",
            )
            st.altair_chart(charts.confusion_matrix(result, normalised), width="stretch")
        with st.container(width=TABLE_WIDTH, key=f"{key}_per_class"):
            st.caption(
                "Per class: precision (of the images predicted as the class, the share that are), recall "
                "(of the class's images, the share found) and F1 (their harmonic mean)."
            )
            st.dataframe(
                per_class_table(result),
                hide_index=True,
                width="stretch",
                column_config={name: st.column_config.NumberColumn(title, format="%.1f%%") for name, title in SCORES}
                | {"support": st.column_config.NumberColumn("images")},
            )
    mistakes(result, pages_key, data_dir)


def file_name(path: str, data_dir: str | None) -> str:
    """An image's path relative to the data set folder, as a person finds it there; its full path when outside."""
    if data_dir:
        try:
            # Scans resolve the folder, not each file (a linked photo keeps its place in the folder).
            return Path(path).absolute().relative_to(Path(data_dir).expanduser().resolve()).as_posix()
        except (TypeError, ValueError, OSError):
            pass
    return path


def mistakes(result: evaluate.Evaluation, pages_key: str, data_dir: str | None = None) -> None:
    """The misclassified images, most confident first, a page at a time, each captioned with its file name."""
    st.markdown(f"**Mistakes** on the {result.split} split, most confident first")
    if not result.mistakes:
        st.caption("None: the model classifies every image of this split correctly.")
        return
    pages = -(-len(result.mistakes) // PER_PAGE)
    page = st.pagination(pages, key=pages_key) if pages > 1 else 1
    st.caption(f"{len(result.mistakes)} images, page {page} of {pages}")
    shown = result.mistakes[(page - 1) * PER_PAGE : page * PER_PAGE]
    for cell, mistake in zip(gallery.cells(len(shown)), shown):
        with cell:
            name = file_name(mistake.path, data_dir)
            # Two lines (a Markdown hard break), each escaped: a file or class name shows as typed.
            caption = (
                markdown.file_name(name)
                + "  \n"
                + markdown.escape(
                    f"true: {mistake.true_label} · predicted: {mistake.predicted_label} ({mistake.probability:.0%})"
                )
            )
            try:
                picture, _ = cached.thumbnail(mistake.path)
            except (InvalidImageError, OSError) as error:
                st.error(markdown.escape(f"{name}: {getattr(error, 'reason', error)}"))
                st.caption(caption)
                continue
            st.image(picture, caption=caption, width="stretch")
