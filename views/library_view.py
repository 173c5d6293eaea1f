"""The Data page's library: every data set this app has scanned, extracted or built, to use again,
rename or delete (`tlcore.data.library`).

Not a page. Names are shown as text (selectbox labels and metrics are never Markdown).
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from tlcore import wording
from tlcore.data import library
from tlcore.runs import catalog, store
from views import markdown, server, session


def describe(entry: library.Entry) -> str:
    """'pets: 2 classes, 24 train / 12 validation images (upload)'.

    Nothing in it changes by itself: the selector keeps its choice by this text, and a label that changed
    (the minutes since last use, once part of it) made it fall back to the first entry, so Use and Delete
    acted on another data set than the one shown.
    """
    images = " / ".join(f"{count} {split}" for split, count in entry.images.items())
    return f"{entry.name}: {len(entry.classes)} classes, {images} images ({entry.kind})"


def ago(moment: float) -> str:
    seconds = max(0.0, time.time() - moment)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}{'s' if unit != 'min' and seconds >= 2 * size else ''} ago"
    return "just now"


def choose() -> library.Entry | None:
    """Lists the library with Use, Rename and Delete; returns the entry to use when Use was pressed."""
    data_dir = server.data_dir()
    known = {entry.id: entry for entry in library.entries(data_dir)}
    if "library_deleted" in st.session_state:  # Above the empty library's note: the last one deleted is said too.
        st.success(markdown.escape(st.session_state.pop("library_deleted")))
    if not known:
        st.info("The library is empty: every folder scanned, zip extracted or demo set built is added here.")
        return None
    wanted = st.selectbox("Data set", list(known), key="library_choice", format_func=lambda key: describe(known[key]))
    entry = known[wanted]
    st.caption(markdown.escape(f"{entry.path} · classes: {', '.join(entry.classes)} · used {ago(entry.used)}"))
    owned = library.is_owned(data_dir, entry.path)
    chosen = entry if st.button("Use this data set", type="primary", key="library_use") else None
    # The name and its button on a row of their own: beside them, "Use this data set" read as part of renaming.
    name_key = f"library_name_{entry.id}"
    name_column, button_column = st.columns([3, 1], vertical_alignment="bottom")
    name_column.text_input("Name", value=entry.name, key=name_key)
    button_column.button("Rename", key="library_rename", on_click=_rename, args=(data_dir, entry, name_key))
    if "library_renamed" in st.session_state:
        renamed, message = st.session_state.pop("library_renamed")
        (st.success if renamed else st.error)(markdown.escape(message))
    what = (
        "the app's copy of its photos and its cached features are removed"
        if owned
        else "it is forgotten with its cached features; your folder stays as it is"
    )
    # Only for the app's own copy, which goes: a folder of the person's own stays for its runs.
    runs = store.list_runs(server.runs_dir()) if owned else []
    trained = [run for run in runs if catalog.same_folder(run.config().get("data_dir"), entry.path)]
    if trained:  # Said before, not found out after: they lose their photos, not their models.
        keep = "keeps its model" if len(trained) == 1 else "keep their models"
        what += (
            f". {wording.count(len(trained), 'run')} trained on it {keep} (Predict, exports) but can no longer be "
            "evaluated, resumed or trained on it again"
        )
    confirmed = st.checkbox(
        markdown.escape(f"Yes, delete {entry.name}: {what}"), key=f"library_delete_confirmed_{entry.id}"
    )
    if st.button("Delete", icon=":material/delete:", key="library_delete", disabled=not confirmed):
        try:
            removed = library.delete(data_dir, entry.id, server.runs_dir())
        except (ValueError, OSError) as error:
            st.error(markdown.escape(error))
        else:
            current = session.current_dataset()
            if current is not None and Path(current.root).resolve() == Path(entry.path):
                st.session_state.pop("dataset", None)
                st.query_params.pop("dataset", None)
            # What the removed folders were: "5 folders removed" left a person guessing.
            copies = [folder for folder in removed if library.is_owned(data_dir, folder)]
            parts = (["the app's copy of its photos"] if copies else []) + (
                [wording.count(len(removed) - len(copies), "feature cache")] if len(removed) > len(copies) else []
            )
            gone = f" ({' and '.join(parts)} removed)" if parts else ""
            st.session_state["library_deleted"] = f"{entry.name}: deleted{gone}."
            st.rerun()
    return chosen


def _rename(data_dir, entry: library.Entry, name_key: str) -> None:
    """Renames an entry (a button's callback, run before the page is drawn again); the selector stays on it."""
    new_name = st.session_state.get(name_key, entry.name)
    if new_name == entry.name:
        return
    try:
        renamed = library.rename(data_dir, entry.id, new_name)
    except (ValueError, OSError) as error:
        st.session_state["library_renamed"] = (False, f"Not renamed: {error}")
        return
    # The selector's text names the entry, so it changed: keep the choice by its id, not by that text.
    st.session_state["library_choice"] = entry.id
    st.session_state["library_renamed"] = (True, f"{entry.name} is now {renamed.name}.")  # As stored (spaces folded).
