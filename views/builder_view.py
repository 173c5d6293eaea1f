"""The Data page's builder: a data set made in the browser from uploads and camera shots (`tlcore.data.builder`).

Not a page. The set is an ordinary class folder under `built/` of the app's data folder; "Use this
data set" hands its folder to the page, which scans it and adds it to the library like any other.
Session state keys:
    builder_set              the name of the set being made
    builder_upload_round     bumped after each upload is added, so the uploader starts empty again
    builder_camera_added     the camera snapshots (file ids) already added, so a rerun adds none twice
    builder_removed          the photo removed last (set, class, name, bytes), for "Put back"
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from tlcore.data import browse, builder, library
from tlcore.data.dataset import DatasetError, DatasetScan
from tlcore.data.images import SUPPORTED_EXTENSIONS, InvalidImageError
from views import cached, markdown, server, session

PHOTO_TYPES = [extension.removeprefix(".") for extension in SUPPORTED_EXTENSIONS]
# Pixels of a photo's card: four fit beside each other on a phone.
THUMBNAIL_WIDTH = 96
# Thumbnails drawn per class; a set made by hand is small, and the Browse section shows every photo.
MOST_SHOWN = 24


def build() -> str | None:
    """Draws the builder; returns the set's folder when "Use this data set" was pressed, else None."""
    st.caption(
        "Name the classes, then add photos to each: upload several at once, or take them with the camera. "
        "The set is saved as a class-folder data set in the app's data folder."
    )
    folder = _choose_set()
    if folder is None:
        return None
    with st.form("builder_class_form", border=False, clear_on_submit=True):
        name_column, button_column = st.columns([3, 1], vertical_alignment="bottom")
        new_class = name_column.text_input("New class", placeholder="a class name, e.g. cats", key="builder_new_class")
        if button_column.form_submit_button("Add class", icon=":material/add:"):
            _act(builder.add_class, folder, new_class)
    per_class = builder.photos(folder)
    if per_class:
        _add_photos(folder, list(per_class))
        _offer_undo(folder)
        for name, found in builder.photos(folder).items():
            _class_box(folder, name, found)
    needs = builder.missing(folder)
    if needs:
        st.info("Before training, this set needs:\n" + "\n".join(f"- {markdown.escape(need)}" for need in needs))
        return None
    if st.button("Use this data set", type="primary", icon=":material/check:", key="builder_use"):
        return str(folder)
    return None


def making_another(folder: str) -> bool:
    """Whether the builder shows a set (`builder_set`) other than the data set at `folder`."""
    chosen = st.session_state.get("builder_set")
    made = builder.built_root(server.data_dir()) / chosen if chosen else None
    if made is None or not made.is_dir():  # None chosen yet, or deleted meanwhile (another tab).
        return False
    return Path(folder).resolve() != made.resolve()


def refreshed(current: DatasetScan) -> DatasetScan:
    """The data set in use, scanned again when it is the set the builder shows and its photos changed.

    Photos added to or removed from the set in use left its scan as it was: the scan report, the sidebar
    and the Train page counted the photos it had when it was chosen, while a run trained on those it had
    then. The scan is cached by the folder's files, so an unchanged set is not read again.

    Args:
        current: the session's data set (`session.current_dataset()`).

    Returns:
        The scan in use now: the new one when the set changed, else `current`.
    """
    chosen = st.session_state.get("builder_set")
    made = builder.built_root(server.data_dir()) / chosen if chosen else None
    if made is None or not made.is_dir() or made.resolve() != Path(current.root).resolve():
        return current
    try:
        scanned = cached.scan_folder(current.root, current.validation_fraction, current.seed)
    except (DatasetError, ValueError, OSError):
        return current  # Short of photos now, say: the builder lists what it needs.
    if scanned == current:
        return current
    session.use_dataset(scanned)
    try:
        library.record(server.data_dir(), scanned, "built")  # Its entry's counts too.
    except OSError:  # The scan is in use; only the library's counts wait for the next change.
        pass
    return scanned


def _act(action, *arguments) -> bool:
    """Runs a change to the set; shows what went wrong instead of failing. Returns whether it worked."""
    try:
        action(*arguments)
    except (ValueError, OSError) as error:
        st.error(markdown.escape(error))
        return False
    return True


def _choose_set() -> Path | None:
    """The set being made: picked from the made sets, or a new one named here."""
    data_dir = server.data_dir()
    made = {path.name: path for path in builder.sets(data_dir)}
    with st.form("builder_set_form", border=False, clear_on_submit=True):
        name_column, button_column = st.columns([3, 1], vertical_alignment="bottom")
        new_set = name_column.text_input("New data set", placeholder="a name, e.g. my pets", key="builder_new_set")
        if button_column.form_submit_button("Create", icon=":material/create_new_folder:"):
            try:
                folder = builder.create_set(data_dir, new_set)
            except (ValueError, OSError) as error:
                st.error(markdown.escape(error))
            else:
                made[folder.name] = folder
                st.session_state["builder_set"] = folder.name
    if not made:
        st.info("Name a new data set to start.")
        return None
    if st.session_state.get("builder_set") not in made:
        st.session_state["builder_set"] = next(iter(made))
    picked_column, delete_column = st.columns([3, 1], vertical_alignment="bottom")
    names = session.dataset_names()  # A set renamed in the library is shown by that name, as everywhere else.
    chosen = picked_column.selectbox(
        "Data set being made",
        list(made),
        key="builder_set",
        format_func=lambda folder: session.dataset_name(str(made[folder]), names),
    )
    with delete_column.popover("Delete set", icon=":material/delete:"):
        st.caption(markdown.escape(f"Deletes {session.dataset_name(str(made[chosen]), names)} and all its photos."))
        if st.button("Delete it", type="primary", key="builder_delete_set") and _act(
            builder.delete_set, made[chosen], data_dir, server.runs_dir()
        ):
            st.session_state.pop("builder_set", None)
            current = session.current_dataset()
            if current is not None and Path(current.root) == made[chosen].resolve():
                st.session_state.pop("dataset", None)  # The page would go on showing photos that are gone.
                st.query_params.pop("dataset", None)
            st.rerun()
    return made[chosen]


def _add_photos(folder: Path, names: list[str]) -> None:
    """Upload several photos, or take one with the camera, into the class picked."""
    target = st.selectbox("Add photos to class", names, key="builder_target")
    upload_tab, camera_tab = st.tabs(["Upload photos", "Camera"])
    with upload_tab:
        round_number = st.session_state.setdefault("builder_upload_round", 0)
        uploads = st.file_uploader(
            f"Photos ({', '.join(PHOTO_TYPES)})",
            type=PHOTO_TYPES,
            accept_multiple_files=True,
            key=f"builder_uploads_{round_number}",
        )
        if uploads and st.button(
            f"Add {builder.counted(len(uploads), 'photo')} to {target}", type="primary", key="builder_add"
        ):
            _report(folder, target, [(upload.getvalue(), upload.name) for upload in uploads])
            st.session_state["builder_upload_round"] = round_number + 1
            st.rerun()
    with camera_tab:
        # Half the page on a desktop (full width, the preview was taller than the window); a phone stacks the columns.
        shot = st.columns(2)[0].camera_input(f"A photo for {target}", key="builder_camera")
        added = st.session_state.setdefault("builder_camera_added", set())
        if shot is not None and shot.file_id not in added:
            added.add(shot.file_id)
            _report(folder, target, [(shot.getvalue(), "camera.jpg")])
        if shot is not None:
            st.caption("Clear the photo to take the next one.")
    for message in st.session_state.pop("builder_messages", []):
        (st.success if message.startswith("Added") else st.error)(markdown.escape(message))


def _report(folder: Path, target: str, uploads: list[tuple[bytes, str]]) -> None:
    """Adds photos and keeps what became of them for the next run of the page to show."""
    try:
        report = builder.add_photos(folder, target, uploads)
    except (ValueError, OSError) as error:
        messages = [str(error)]
    else:
        messages = [f"Added {builder.counted(len(report.added), 'photo')} to {target}."] if report.added else []
        messages += [f"{name}: {reason}" for name, reason in report.refused]
    st.session_state.setdefault("builder_messages", []).extend(messages)


def _remove(folder: Path, class_name: str, path: Path) -> bool:
    """Deletes a photo, keeping its bytes so that "Put back" can restore it. Returns whether it was removed."""
    try:
        content = path.read_bytes()
    except OSError as error:
        st.error(markdown.escape(f"{path.name}: {error.strerror or error}"))
        return False
    if not _act(builder.remove_photo, folder, path):
        return False
    st.session_state["builder_removed"] = {
        "set": str(folder),
        "class": class_name,
        "name": path.name,
        "content": content,
    }
    return True


def _offer_undo(folder: Path) -> None:
    """A "Put back" button for the photo removed last from this set, while its class is there."""
    removed = st.session_state.get("builder_removed")
    if not removed or removed["set"] != str(folder) or removed["class"] not in builder.classes(folder):
        return
    text_column, button_column = st.columns([3, 1], vertical_alignment="center")
    text_column.caption(markdown.escape(f"Removed {removed['name']} from {removed['class']}."))
    if button_column.button("Put back", icon=":material/undo:", key="builder_undo"):
        st.session_state.pop("builder_removed")
        _report(folder, removed["class"], [(removed["content"], removed["name"])])
        st.rerun()


def _class_box(folder: Path, name: str, found: list[Path]) -> None:
    """One class: its thumbnails, each with a remove button, and renaming or deleting the class."""
    with st.container(border=True):
        title_column, edit_column = st.columns([3, 1], vertical_alignment="center")
        title_column.markdown(f"**{markdown.escape(name)}** · {builder.counted(len(found), 'photo')}")
        with edit_column.popover("Rename or delete", icon=":material/edit:"):
            renamed = st.text_input("Class name", value=name, key=f"builder_rename_{name}")
            if st.button("Rename", key=f"builder_rename_button_{name}"):
                if _act(builder.rename_class, folder, name, renamed):
                    st.rerun()
            if st.button("Delete class and its photos", key=f"builder_delete_{name}"):
                if _act(builder.delete_class, folder, name):
                    st.rerun()
        if not found:
            st.caption("No photos yet.")
            return
        # A wrapping row of fixed-width cards: several to a line on a phone too (columns stack one per line there).
        row = st.container(horizontal=True, gap="small")
        # As a person counts, as the Browse grid shows them: sorted as text, 1106 came before 114.
        shown = [Path(item) for item in browse.natural_order([str(path) for path in found])]
        for path in shown[:MOST_SHOWN]:
            with row.container(width=THUMBNAIL_WIDTH, gap="small"):
                try:
                    picture, _ = cached.thumbnail(str(path), 160)
                    st.image(picture, caption=markdown.file_name(path.name), width="stretch")
                except (InvalidImageError, OSError) as error:
                    st.error(markdown.escape(f"{path.name}: {getattr(error, 'reason', error)}"))
                # Text alone: with an icon, "Remove" broke over two lines in a card this narrow.
                if st.button(
                    "Remove",
                    key=f"builder_remove_{name}_{path.name}",
                    help=markdown.escape(f"Delete {path.name}"),
                    width="stretch",
                ):
                    if _remove(folder, name, path):
                        st.rerun()
        if len(found) > MOST_SHOWN:
            st.caption(f"and {len(found) - MOST_SHOWN} more")
