"""One run on screen: its state, progress with the time left, Stop or Resume button, what each stage added and
live curves.

Not a page: the Train page calls `show` for a finished run and `live` (which polls) for one
that is queued or running.
"""

import time

import streamlit as st

from tlcore.data import cleaning
from tlcore.data.dataset import DatasetError
from tlcore.insight import stage_steps
from tlcore.runs import catalog, monitor, resumption, saved_model, store, worker
from views import cached, markdown, server, session

STATE_BOXES = {
    "queued": st.info,
    "running": st.info,
    "stopping": st.warning,
    "done": st.success,
    "stopped": st.warning,
    "failed": st.error,
    "interrupted": st.error,
}
# The headline above a run: its state first, as the runs table and the CLI name it, then what it means. A failed
# or interrupted run says its error instead.
STATE_HEADLINES = {
    "queued": "Queued",  # The progress line below says what it waits for.
    "running": "Running: training",
    "stopping": "Stopping: training ends after this batch",
    "done": "Done: every stage finished",
    "stopped": "Stopped on request: the model keeps what it had learned",
}
# While a run is live, the rest of the page (the sidebar's run line, the runs table) is redrawn by a
# full rerun: at once when the run's state changes, and at most this often when only its epochs do.
PAGE_REFRESH_SECONDS = 20


def state_headline(state: str, error: str | None) -> str:
    """'Done: every stage finished', 'Failed: <its error>': the run's state and what it means."""
    if state in STATE_HEADLINES:
        return STATE_HEADLINES[state]
    return f"{str(state).capitalize()}: {error or 'no error was recorded'}"  # Any value a damaged status holds.


def stage_result(stage: str, result: dict) -> str:
    """'feature extraction: saved model 91.2% (epoch 7 of 10, lowest validation loss), best epoch 92.0%, 12 s'."""
    epochs = result.get("epochs", 0)
    # A stop inside an epoch: that epoch's batches trained the model, but it is no full epoch.
    partial = " and part of another (stopped)" if result.get("partial_epoch") else ""
    seconds = monitor.format_seconds(result.get("seconds") or 0)
    saved = result.get("val_accuracy")
    if saved is None:  # Results written before the saved epoch was recorded.
        return (
            f"{monitor.stage_name(stage)}: best validation accuracy {result.get('best_val_accuracy') or 0:.1%} "
            f"after {epochs} epoch{'' if epochs == 1 else 's'}{partial}, {seconds}"
        )
    if result.get("kept_weights") == "best":
        which = f"epoch {result.get('final_epoch')} of {epochs}{partial}, lowest validation loss"
    else:
        which = f"last of {epochs} epoch{'' if epochs == 1 else 's'}{partial}"
    return (
        f"{monitor.stage_name(stage)}: saved model {saved:.1%} ({which}), "
        f"best epoch {result.get('best_val_accuracy') or 0:.1%}, {seconds}"
    )


def kept_model_text(kept: dict) -> str:
    """What a run cut short kept, from its `saved_model.stage_record`: which stage's model, and its accuracy."""
    accuracy = kept.get("val_accuracy")
    scored = f", {accuracy:.1%} on validation" if accuracy is not None else ""
    stage = monitor.stage_name(kept["stage"])
    used = "is kept: Predict and the evaluation use it."
    if kept.get("finished"):
        return f"The model of its last finished stage ({stage}{scored}) {used}"
    return f"The model of {stage} as it was when the run was stopped{scored} {used}"


def show(run: store.Run) -> tuple[str, int]:
    """The run's state, progress, Stop button (while it runs) or Resume button (when it can be resumed), each
    stage's result with what it added to the stage before it (`insight.stage_steps`), and the curves.

    Returns:
        What it drew of the run, as `seen` gives it: (state, epochs recorded).
    """
    status, config, records = run.status(), run.config(), run.metrics()  # Each file read once a draw.
    state = status.get("state", "unknown")
    name = catalog.label(run)
    title = f"{run.id} ({name})" if name else run.id
    # Its data set too: the data set chosen for a new run below may be another.
    data = f" · on {session.dataset_name(config['data_dir'])}" if config.get("data_dir") else ""
    st.markdown(markdown.escape(f"{title} · {store.model_name(config)} · {config.get('image_size')} px{data}"))
    STATE_BOXES.get(state, st.info)(markdown.escape(state_headline(state, status.get("error"))))
    if state in session.ACTIVE_STATES:
        # A queued run waits for the run training in its runs folder, if there is one; else its worker is starting.
        training = store.training_run(run.path.parent, exclude=run.id) if state == "queued" else None
        estimate = monitor.estimate(
            config, status, run.progress(), records, waiting_for=training.id if training else None
        )
        st.progress(estimate.fraction or 0.0, text=markdown.escape(estimate.text))
        st.button(
            "Stop",
            icon=":material/stop_circle:",
            disabled=state == "stopping",
            on_click=run.request_stop,
            help="Ends training after the current batch; the model keeps what it learned so far.",
        )
    if state in resumption.RESUMABLE_STATES:
        offer_resume(run)
    kept = saved_model.stage_record(run) if state in store.CUT_SHORT_STATES else None
    if kept is not None:
        st.caption(markdown.escape(kept_model_text(kept)))
    # A run training or cut short has no summary of its own (one in the folder is from before a resume): the
    # stages it finished say what it reached.
    summary = {} if state in session.ACTIVE_STATES else run.summary()
    if state in session.ACTIVE_STATES:
        results = resumption.finished_stages(run)
    else:
        finished = resumption.finished_stages(run) if state in store.CUT_SHORT_STATES else {}
        results = finished or summary.get("results", {})
    if results:
        line = " · ".join(stage_result(stage, result) for stage, result in results.items())
        total = summary.get("seconds") if state == "done" and len(results) > 1 else None
        if isinstance(total, (int, float)) and not isinstance(total, bool):
            # The runs table's time: the stages' seconds add up to less, which read as a disagreement.
            line += f" · {monitor.format_seconds(total)} in all, building and saving the models included"
        st.caption(line)
        lessons = stage_steps.for_run(run, results, state)
        if lessons:
            st.markdown("\n".join(f"- {markdown.escape(line)}" for line in lessons))
    applied = cleaning.applied_in_run(run.path)  # A run on the cleaned view says which decisions it used.
    if applied is not None:
        st.caption(markdown.escape(cleaning.describe_applied(applied)))
    records = [record for record in records if not record.get("partial")]  # Never drawn as an epoch.
    if not records and state not in session.ACTIVE_STATES:
        # A run that failed or was stopped before its first epoch: no curve is coming.
        st.caption(f"No epoch finished before the run ended ({state}): no curves to show.")
    else:
        for chart in cached.history_charts(run.path, records):
            st.altair_chart(chart, width="stretch")
    return state, len(records)


def offer_resume(run: store.Run) -> None:
    """A Resume button for an interrupted or stopped run that kept a backup; else why it cannot be resumed."""
    reason = resumption.why_not_resumable(run)
    if reason is not None:
        st.caption(markdown.escape(reason))
        return
    point = resumption.resume_point(run)
    if st.button(
        "Resume",
        icon=":material/play_circle:",
        key=f"resume_{run.id}",
        help=markdown.escape(
            f"Continues {point.describe(monitor.stage_name)} in a new training process; "
            "finished stages are not trained again."
        ),
    ):
        try:
            worker.resume(run, server.runs_dir())
        # Resumed meanwhile from another session or the command line; or its data set moved or changed.
        except (ValueError, DatasetError) as error:
            st.error(markdown.escape(error))
            return
        st.session_state["run_id"] = run.id
        st.rerun()  # Drawn again as a live run.


def seen(run: store.Run) -> tuple[str, int]:
    """(state, epochs recorded): what the sidebar and the runs table show of a run."""
    return run.state, len(run.metrics())


def page_is_stale(drawn: tuple[str, int] | None, drawn_at: float, current: tuple[str, int], now: float) -> bool:
    """Whether the page's last full run drew an out-of-date run (`seen` then and now): at once when the
    state changed or the run ended, and only PAGE_REFRESH_SECONDS after that run when only its epochs did."""
    if drawn is None or current[0] not in session.ACTIVE_STATES or current[0] != drawn[0]:
        return True
    return current[1] != drawn[1] and now - drawn_at >= PAGE_REFRESH_SECONDS


def live(run_id: str) -> None:
    """The run, redrawn every 2 s while it is queued or training (see `poll`)."""
    try:
        drawn = seen(store.resolve(run_id, server.runs_dir()))
    except ValueError:
        drawn = None  # Deleted meanwhile: `poll` says so.
    poll(run_id, drawn, time.time())


@st.fragment(run_every=2)
def poll(run_id: str, drawn: tuple[str, int] | None, drawn_at: float) -> None:
    """Polls the run folder every 2 s, redrawing only itself; reruns the whole page when the rest of it is stale.

    A fragment's reruns get the arguments of the page's last full run, so `drawn` is what that run
    drew of this run (in the sidebar, the runs table) and `drawn_at` when: the page reruns when
    `page_is_stale`, not on every poll.
    """
    try:
        run = store.resolve(run_id, server.runs_dir())
    except ValueError as error:
        st.error(markdown.escape(error))
        return
    if page_is_stale(drawn, drawn_at, show(run), time.time()):
        st.rerun()


def manage(run: store.Run) -> None:
    """Renaming and deleting one run (picked alone in the runs table); deleting asks for a confirmation."""
    with st.expander("Rename or delete this run", key="manage_run"):
        name_key = f"run_name_{run.id}"
        # Through the state alone: a widget given a value and a state set by `save_name` logged a warning.
        st.session_state.setdefault(name_key, catalog.label(run) or "")
        st.text_input("Name, shown beside the id", max_chars=catalog.LABEL_MAX_CHARACTERS, key=name_key)
        saved_key = f"run_name_saved_{run.id}"

        def save_name() -> None:
            # Read from the session here: arguments bound at draw time would hold the name before the edit.
            try:
                stored = catalog.rename(run, st.session_state.get(name_key, ""))
            except (ValueError, OSError) as error:  # Deleted meanwhile: it leaves the table, so a toast says it.
                st.toast(markdown.escape(error), icon=":material/error:")
                return
            st.session_state[name_key] = stored or ""  # As stored: spaces folded, cut to the longest name.
            st.session_state[saved_key] = f"Named {run.id} “{stored}”." if stored else f"{run.id} has no name now."

        st.button("Save the name", on_click=save_name)
        if saved_key in st.session_state:
            st.caption(markdown.escape(st.session_state.pop(saved_key)))
        active = run.state in store.ACTIVE_STATES
        confirmed = st.checkbox(
            f"Yes, delete run {run.id}: its model, curves and logs",
            key=f"delete_confirmed_{run.id}",
            disabled=active,
            help="Feature caches stay: other runs on the same data share them.",
        )
        if active:
            st.caption("A queued or training run cannot be deleted: stop it first.")
        if st.button("Delete this run", type="primary", icon=":material/delete:", disabled=active or not confirmed):
            current = session.current_run()  # Before the deletion, which makes it fall back to another run.
            was_current = current is not None and current.id == run.id
            try:
                catalog.delete(run)
            except (ValueError, OSError) as error:
                st.error(markdown.escape(error))
                return
            if st.session_state.get("run_id") == run.id:
                del st.session_state["run_id"]
            if st.query_params.get("run") == run.id:  # A reload would look for it again.
                del st.query_params["run"]
            st.session_state.pop("runs_table", None)  # Its rows counted the deleted run.
            # Said after the rerun: the page shows another run as its current one, which went unexplained.
            st.session_state["deleted_run"] = (run.id, was_current)
            st.rerun()
