"""The augmentation preview of the Data page: every setting, and copies drawn by the training layers.

Not a page. A fragment, so moving a slider redraws the preview without rerunning the whole page.
The chosen settings go to `st.session_state["augmentation"]`, which the Train page uses.
"""

import dataclasses
import secrets
from pathlib import Path

import streamlit as st

from tlcore.config import PRESET_TITLES, AugmentationConfig, preset_augmentation
from tlcore.data import browse
from tlcore.data.dataset import DatasetScan
from tlcore.data.images import InvalidImageError
from tlcore.files import printable
from tlcore.insight import orientation
from tlcore.settings import settings_of
from views import cached, gallery, markdown, session

# Augmentation sliders: setting -> (label, lowest, highest, step), from AugmentationConfig's field metadata.
SLIDERS = {
    item.name: (item.metadata["label"], item.metadata["min"], item.metadata["max"], item.metadata["step"])
    for item in settings_of(AugmentationConfig)
    if "min" in item.metadata
}
FIELDS = AugmentationConfig.__dataclass_fields__


def widget_key(name: str) -> str:
    """The session-state key of an augmentation setting's widget."""
    return f"aug_{name}"


def set_settings(values: dict) -> None:
    """Sets some augmentation settings from another page (a Train page preset): the widgets and the settings used.

    Args:
        values: AugmentationConfig field -> value; the other settings stay as chosen.
    """
    for name, value in values.items():
        st.session_state[widget_key(name)] = value
    st.session_state["augmentation"] = dataclasses.replace(session.augmentation(), **values)


@st.fragment
def preview(dataset: DatasetScan) -> None:
    """Settings on the left, the original and 8 augmented copies on the right; reruns on its own."""
    preset = session.preset()
    defaults = preset_augmentation(preset).to_dict()
    keys = {name: widget_key(name) for name in defaults}
    for name, key in keys.items():
        st.session_state.setdefault(key, defaults[name])
    train_paths = dataset.paths("train")
    image_key = session.preview_image_key(dataset)

    def reset() -> None:
        for name, key in keys.items():
            st.session_state[key] = defaults[name]

    def pick_random() -> None:
        st.session_state[image_key] = train_paths[secrets.randbelow(len(train_paths))]

    def draw_again() -> None:
        st.session_state["preview_seed"] = st.session_state.get("preview_seed", 0) + 1

    settings_column, preview_column = st.columns([1, 2])
    with settings_column:
        image = st.selectbox(
            "Image",
            train_paths,
            key=image_key,
            format_func=lambda path: printable(
                str(Path(path).relative_to(dataset.root)) if path.startswith(dataset.root) else Path(path).name
            ),
        )
        st.button("Random image", on_click=pick_random, icon=":material/shuffle:")
        keep = {"persist_state": "session"}
        values = {
            name: st.slider(label, low, high, step=step, key=keys[name], **keep)
            for name, (label, low, high, step) in SLIDERS.items()
        }
        for name in ("horizontal_flip", "vertical_flip"):
            values[name] = st.toggle(FIELDS[name].metadata["label"], key=keys[name], **keep)
        flip_check(dataset, keys)
        fill_mode = FIELDS["fill_mode"].metadata
        values["fill_mode"] = st.selectbox(fill_mode["label"], fill_mode["choices"], key=keys["fill_mode"], **keep)
        # By the preset's title, as the Train page offers it: "the seed preset" named an internal key.
        title = PRESET_TITLES.get(preset, preset)
        reset_label = "Reset to the defaults" if preset == "default" else f"Reset to the “{title}” preset's settings"
        st.button(reset_label, on_click=reset, icon=":material/restart_alt:")
    try:
        settings = AugmentationConfig(**values)
    except ValueError as error:
        st.error(markdown.escape(error))
        return
    st.session_state["augmentation"] = settings
    session.remember_settings()  # The fragment reruns alone: a page start would not see a slider moved here.

    with preview_column:
        size = int(st.session_state.get("train_image_size") or 160)
        st.button("New random draws", on_click=draw_again, icon=":material/casino:")
        try:
            original, copies = cached.preview(
                image, size, settings, count=8, seed=st.session_state.get("preview_seed", 0)
            )
        except (InvalidImageError, OSError) as error:
            st.error(markdown.escape(error))
            return
        # Three to a row at every window width (in st.columns(3), which stack on a phone, each copy filled the
        # window's width: nine screens of scrolling; in fixed-width cells that wrap, a window of 800 to 950 px
        # with the sidebar open had one per row).
        cells = gallery.grid(rows=3, per_row=3)
        # Framed and numbered: at brightness 1.0 a copy can be all white, which looked like a missing image.
        cells[0].image(browse.framed(original), caption=f"original, as training sees it ({size} px)", width="stretch")
        for number, (cell, copy) in enumerate(zip(cells[1:], copies), start=1):
            cell.image(browse.framed(copy), caption=f"copy {number}", width="stretch")
        if settings.is_identity:
            st.caption("Every transformation is off: training would see the photos unchanged.")


def flip_check(dataset: DatasetScan, keys: dict[str, str]) -> None:
    """A button that measures which flips suit these photos, what it found, and a button that applies it."""
    key = (dataset.root, dataset.validation_fraction, dataset.seed)
    if st.button("Check which flips suit these photos", icon=":material/flip:", key="flip_check_run"):
        try:
            with st.spinner("Telling flipped copies of a sample of the photos from the originals..."):
                suggestions = orientation.suggest_flips(dataset, seed=dataset.seed)
        except (ValueError, OSError, InvalidImageError) as error:
            st.error(markdown.escape(error))
            return
        st.session_state["flip_suggestions"] = {"for": key, "result": suggestions}
    found = st.session_state.get("flip_suggestions")
    if not found or found["for"] != key:
        return
    suggestions = found["result"]
    for suggestion in suggestions:
        st.caption(markdown.escape(f"{FIELDS[suggestion.setting].metadata['label']}: {suggestion.reason}"))

    def apply() -> None:
        for suggestion in suggestions:
            st.session_state[keys[suggestion.setting]] = suggestion.suggested

    if any(st.session_state[keys[suggestion.setting]] != suggestion.suggested for suggestion in suggestions):
        st.button("Apply the suggested flips", on_click=apply, icon=":material/check:", key="flip_check_apply")
    else:
        st.caption("The flips are set as suggested.")
