"""One run on screen: its state, progress with the time left, Stop button and live curves.

Not a page: the Train page calls `show` for a finished run and `live` (which polls) for one
that is queued or running.
"""

import streamlit as st

from app_pages import common
from tlcore import charts, monitor, runs

STATE_BOXES = {"queued": st.info, "running": st.info, "stopping": st.warning, "done": st.success,
               "stopped": st.warning, "failed": st.error, "interrupted": st.error}
STATE_MESSAGES = {"queued": "waiting for its turn", "running": "training", "stopping": "stopping after this batch",
                  "done": "finished", "stopped": "stopped on request; the model keeps what it had learned"}


def stage_result(stage: str, result: dict) -> str:
    """'feature extraction: best validation accuracy 91.7% after 1 epoch, 12 s' (one stage of a summary)."""
    epochs = result.get("epochs", 0)
    return (f"{monitor.STAGE_NAMES.get(stage, stage)}: best validation accuracy "
            f"{result.get('best_val_accuracy') or 0:.1%} after {epochs} epoch{'' if epochs == 1 else 's'}, "
            f"{monitor.format_seconds(result.get('seconds') or 0)}")


def show(run: runs.Run) -> None:
    """The run's state, progress, Stop button (while it runs) and curves."""
    status, config = run.status(), run.config()
    state = status.get("state", "unknown")
    st.markdown(common.text(f"{run.id} · {config.get('backbone')} · {config.get('image_size')} px"))
    message = STATE_MESSAGES.get(state) or status.get("error") or ""
    STATE_BOXES.get(state, st.info)(common.text(f"{state}: {message}"))
    if state in common.ACTIVE_STATES:
        estimate = monitor.estimate(config, status, run.progress(), run.metrics())
        st.progress(estimate.fraction or 0.0, text=common.text(estimate.text))
        st.button("Stop", icon=":material/stop_circle:", disabled=state == "stopping", on_click=run.request_stop,
                  help="Ends training after the current batch; the model keeps what it learned so far.")
    results = run.summary().get("results", {})
    if results:
        st.caption(" · ".join(stage_result(stage, result) for stage, result in results.items()))
    records = run.metrics()
    if not records and state not in common.ACTIVE_STATES:
        # A run that failed or was stopped before its first epoch: no curve is coming.
        st.caption(f"No epoch finished before the run ended ({state}): no curves to show.")
        return
    for chart in charts.history(records):
        st.altair_chart(chart, width="stretch")


@st.fragment(run_every=2)
def live(run_id: str) -> None:
    """Polls the run folder every 2 s; once the run ends, reruns the whole page (runs table included)."""
    try:
        run = runs.resolve(run_id, common.runs_dir())
    except ValueError as error:
        st.error(common.text(error))
        return
    show(run)
    if run.state not in common.ACTIVE_STATES:
        st.rerun()
