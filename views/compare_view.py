"""The Train page's "Compare runs": every run in a table, the curves of those selected, and one run's actions.

Not a page: the Train page calls `show` at its end.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from tlcore.insight import charts
from tlcore.runs import catalog, store
from views import evaluation_view, markdown, run_view, server, session

CURVES = {
    "val_accuracy": "validation accuracy",
    "val_loss": "validation loss",
    "accuracy": "training accuracy",
    "loss": "training loss",
}


def show(run: store.Run | None) -> None:
    """The runs table, with the selected runs' curves overlaid; for one selected run, its actions.

    Args:
        run: the page's current run (its evaluation is shown above it already), or None.
    """
    if deleted := st.session_state.pop("deleted_run", None):
        deleted_id, was_current = deleted
        # Said when the page's current run changed with it, which went unexplained.
        shown = f"; the current run is now {run.id}" if was_current and run is not None else ""
        st.toast(markdown.escape(f"Deleted run {deleted_id}{shown}."), icon=":material/delete:")
    st.header("Compare runs")
    names = session.dataset_names()
    table = pd.DataFrame(
        [
            catalog.compare_row(row, session.dataset_name(row["data_dir"], names) if row.get("data_dir") else None)
            for row in (catalog.describe(item) for item in store.list_runs(server.runs_dir()))
        ]
    )
    if table.empty:
        st.caption("Finished runs appear here.")
        return
    if not table["name"].any():  # No run named: an empty column took a phone's fourth, before the strategy.
        table = table.drop(columns="name")
    picked = st.dataframe(
        table,
        hide_index=True,
        on_select="rerun",
        selection_mode="multi-row",
        key="runs_table",
        column_config={
            "run": st.column_config.TextColumn("run"),  # Sized to the ids: they are what the CLI takes.
            "name": st.column_config.TextColumn("name", width="medium"),  # A name given was cut to its first word.
            # "97.5% in 3 · Fine-tuning" was cut to "97.5% in 1 ·" when the table was first drawn.
            "best stage": st.column_config.TextColumn("best stage", width="medium"),
        },
    )
    selected = [table["run"].iloc[row] for row in picked.selection.rows]
    if not selected:
        st.caption("Select runs in the table to overlay their curves.")
        return
    metric = st.segmented_control(
        "Curve", list(CURVES), format_func=CURVES.get, default="val_accuracy", required=True, key="compare_metric"
    )
    histories = {}
    for run_id in selected:
        try:
            chosen_run = store.resolve(run_id, server.runs_dir())
        except ValueError:
            continue  # Deleted since the table was drawn.
        name = catalog.label(chosen_run)
        # A name given first, cut short so the id stays whole: the legend cuts a long line at its end.
        shown = name if name is None or len(name) <= 24 else name[:23] + "…"
        histories[f"{shown} ({run_id})" if shown else run_id] = chosen_run.metrics()
    st.altair_chart(charts.compare(histories, metric), width="stretch")
    if len(selected) == 1:
        try:
            chosen = store.resolve(selected[0], server.runs_dir())
        except ValueError:
            return  # Deleted since the table was drawn.
        if st.button("Show this run as the current run"):
            st.session_state["run_id"] = chosen.id
            st.rerun()
        run_view.manage(chosen)
        if (run is None or chosen.id != run.id) and evaluation_view.evaluable(chosen):
            evaluation_view.show(chosen, key="selected")
