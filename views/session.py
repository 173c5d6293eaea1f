"""What this browser session is working with: its data set, augmentation settings and run.

Session state keys:
    dataset          the current DatasetScan (set on the Data page)
    augmentation     the AugmentationConfig chosen on the Data page, used by the Train page
    train_preset     the preset chosen on the Train page (its widget's key); the Data page resets to its augmentation
    library_reopened set once the session's first page has reopened the link's or the last used data set
    settings_reopened set once the session's first page has put the settings last chosen in the app in place
    settings_seen    this session's settings as a SettingsDraft (tlcore.drafts) when it last saved what changed
    run_id           the current run; when absent, the link's (?run=<id>), else the running run, else the
                     newest queued one, else the newest run of any state is shown
    lr_sweep         the latest learning-rate sweep of the Train page ({"sweep", "for"})
    batch_result     the Predict page's latest batch prediction ({"run", "source", "rows"})
    exports          the exports made on the Predict page ({(run id, format): ExportResult.to_dict()})
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import streamlit as st

from tlcore import drafts
from tlcore.config import AugmentationConfig, preset_augmentation
from tlcore.data import library
from tlcore.data.dataset import DatasetError, DatasetScan
from tlcore.models.registry import BACKBONES
from tlcore.runs import store
from views import cached, markdown, server

ACTIVE_STATES = store.ACTIVE_STATES


def use_dataset(scan: DatasetScan) -> None:
    st.session_state["dataset"] = scan
    st.session_state.pop(preview_image_key(scan), None)  # A new scan starts the preview at its first image.


def preview_image_key(scan: DatasetScan) -> str:
    """The augmentation preview's image selector, one per data set folder.

    With one key for every data set, the browser kept showing the previous set's file name in the
    box over the new set's first image (a keyed widget keeps its value in the frontend).
    """
    return "aug_image_" + hashlib.sha256(os.fsencode(scan.root)).hexdigest()[:16]


def current_dataset() -> DatasetScan | None:
    return st.session_state.get("dataset")


def dataset_names() -> dict[str, str]:
    """Folder -> name of every data set in the library (a person may have renamed it there): one read."""
    return {entry.path: entry.name for entry in library.entries(server.data_dir())}


def dataset_name(folder: str, names: dict[str, str] | None = None) -> str:
    """A data set folder's name in the library (`names`, else read now), else the folder's name."""
    if not isinstance(folder, str):  # A damaged config.json's data_dir: shown as it is, never a crash.
        return str(folder)
    names = dataset_names() if names is None else names
    try:
        resolved = str(Path(folder).resolve())
    except OSError:
        resolved = folder
    return names.get(resolved) or Path(folder).name


def reopen_dataset() -> None:
    """Once per session, whichever page it opens on: the data set of the link (`?dataset=<id>`), else the
    last one used, scanned again with its split. A reload or a new tab starts an empty session."""
    if st.session_state.get("library_reopened"):
        return
    st.session_state["library_reopened"] = True
    if current_dataset() is not None:
        return
    data_dir = server.data_dir()
    remembered = library.find(data_dir, st.query_params.get("dataset")) or library.last_used(data_dir)
    if remembered is None or not Path(remembered.path).is_dir():
        return
    try:
        with st.spinner(markdown.escape(f"Reopening {remembered.name}: each image is decoded once, the first time...")):
            use_dataset(cached.scan_folder(remembered.path, remembered.validation_fraction, remembered.seed))
    except (DatasetError, ValueError, OSError):
        return  # Changed since: the Data page's library offers it again, and says what is wrong when used.


def reopen_settings() -> None:
    """Once per session, whichever page it opens on: the Train page's preset and settings and the augmentation
    last chosen in the app (`tlcore.drafts`), so that a reload or a new tab keeps them. The settings the draft
    does not hold come from its preset as the pages draw them; those this session holds already stay."""
    if st.session_state.get("settings_reopened"):
        return
    st.session_state["settings_reopened"] = True
    draft = drafts.load(server.data_dir())
    if draft.preset is not None:
        st.session_state.setdefault("train_preset", draft.preset)
    for name, value in draft.train.items():
        st.session_state.setdefault(f"train_{name}", value)
    if draft.augmentation and "augmentation" not in st.session_state:
        for name, value in draft.augmentation.items():
            # The Data page's sliders (views.augment_view.widget_key); the others start at the preset's values.
            st.session_state.setdefault(f"aug_{name}", value)
        st.session_state["augmentation"] = preset_augmentation(draft.preset or "default", draft.augmentation)


def remember_settings() -> None:
    """Saves what this session changed of the preset, the Train page's settings and the augmentation since it
    last looked (`tlcore.drafts.apply_changes`: what another tab changed stays).

    Called as a page starts (a widget's new value is in the session state by then), after the Train page's form
    (which fills and corrects settings as it draws) and after the augmentation preview reruns alone. A combination
    TrainConfig refuses is not saved: the last one it accepted stays.
    """
    train = {
        name: st.session_state[f"train_{name}"]
        for name in drafts.TRAIN_FIELDS
        if st.session_state.get(f"train_{name}") is not None
    }
    backbone = BACKBONES.get(train.get("backbone"))
    if backbone is None or not backbone.supports_alpha:
        train.pop("alpha", None)  # Kept by its widget after leaving MobileNet; the page trains with 1.0 then.
    chosen = st.session_state.get("augmentation")
    try:
        now = drafts.SettingsDraft(
            preset=st.session_state.get("train_preset"),
            train=train,
            augmentation=chosen.to_dict() if isinstance(chosen, AugmentationConfig) else {},
        )
    except (ValueError, TypeError):
        return
    before = st.session_state.get("settings_seen", drafts.SettingsDraft())
    if now == before:
        return
    try:
        stored = drafts.load(server.data_dir())
        try:
            changed = drafts.apply_changes(stored, before, now)
        except (ValueError, TypeError):  # Another tab's settings and this one's do not go together: this one's.
            changed = now
        if changed != stored:
            drafts.save(server.data_dir(), changed)
    except OSError:
        return  # A read-only data folder: the settings still hold for this session.
    st.session_state["settings_seen"] = now


def preset() -> str:
    """The preset chosen on the Train page, "default" until one is."""
    return st.session_state.get("train_preset") or "default"


def augmentation() -> AugmentationConfig:
    return st.session_state.get("augmentation") or AugmentationConfig()


def linked_run(parameter: str = "run") -> str | None:
    """The run id of the link (`?run=<id>`; Predict's `?model=<id>`) when it names a run of the runs folder;
    never a path."""
    wanted = st.query_params.get(parameter)
    if not wanted or Path(wanted).name != wanted:  # An id only: resolve would take a path inside the folder too.
        return None
    try:
        return store.resolve(wanted, server.runs_dir()).id
    except ValueError:  # Not a run of the runs folder: a deleted run, say.
        return None


def current_run() -> store.Run | None:
    """The session's run; in a fresh session, the run of the link (`?run=<id>`), else the running run, else
    the newest queued one, else the newest run, so a new tab opened after training ended shows its result."""
    run_id = st.session_state.get("run_id") or linked_run()
    if run_id:
        try:
            return store.resolve(run_id, server.runs_dir())
        except ValueError:  # Deleted meanwhile.
            st.session_state.pop("run_id", None)
    # The run training first: runs train one at a time, so a newer queued run is waiting for it
    # (showing the queued one hid the progress and Stop button).
    runs = store.list_runs(server.runs_dir())  # Newest first.
    states = {run.id: run.state for run in runs}  # Each status read once.
    run = next((run for run in runs if states[run.id] in store.TRAINING_STATES), None)
    if run is None:
        run = next((run for run in runs if states[run.id] == "queued"), None)
        if run is None:
            # Shown, not kept: a run started meanwhile (another tab, the CLI) takes its place on the next rerun.
            return runs[0] if runs else None
    st.session_state["run_id"] = run.id
    return run


def keeps_run(run: store.Run) -> bool:
    """Whether the session keeps showing this run (it chose, started, linked to or follows it), rather than
    showing it only until a run starts."""
    return run.id in (st.session_state.get("run_id"), st.query_params.get("run"))
