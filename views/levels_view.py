"""The Train page's feature-levels check: which feature levels suit the chosen data set, measured.

Not a page. `feature_levels_check` runs `tlcore.insight.feature_levels.suggest_feature_levels` on
request for the data set, backbone and image size the page shows, keeps its answer in
`st.session_state["levels_suggestion"]` ({"for", "result"}) and offers a button that sets the
"Feature levels" widget (key `train_feature_levels`) to the suggestion.
"""

import streamlit as st

from tlcore.data.dataset import DatasetScan
from tlcore.data.images import InvalidImageError
from tlcore.insight import feature_levels
from tlcore.models.registry import BACKBONES
from views import markdown, server


def feature_levels_check(dataset: DatasetScan, backbone: str, image_size: int, disabled: bool = False) -> None:
    """A button that measures which feature levels suit these photos, what it found, and a button that applies it.

    Args:
        dataset: the data set the page trains on.
        backbone, image_size: the page's choices; the check reads the same features a run of them would.
        disabled: whether the check cannot run (the backbone's pretrained weights are missing).
    """
    if BACKBONES[backbone].max_feature_levels < 2:
        st.caption(f"Feature levels: {BACKBONES[backbone].display_name} registers no stages to stack, so 1.")
        return
    # The photos themselves, not only the folder: a rescan after photos were added or removed measures anew.
    photos = hash(tuple(dataset.paths("train")))
    key = (dataset.root, dataset.validation_fraction, dataset.seed, photos, backbone, int(image_size))
    if st.button(
        "Check which feature levels suit these photos",
        icon=":material/layers:",
        key="levels_check_run",
        disabled=disabled,
        help="Classifies every training photo out of fold from the base's output alone and from its last stages "
        "stacked, and suggests the stack when it is right on more photos than chance explains. The features "
        "are cached: a run with the suggested levels reuses them (at float32 precision, on the photos as "
        "scanned, not cleaned).",
    ):
        try:
            with st.spinner("Extracting the stacked features of the training photos, then comparing..."):
                suggestion = feature_levels.suggest_feature_levels(
                    dataset, backbone, int(image_size), seed=dataset.seed, runs_dir=server.runs_dir()
                )
        except (ValueError, OSError, InvalidImageError) as error:
            st.error(markdown.escape(error))
            return
        st.session_state["levels_suggestion"] = {"for": key, "result": suggestion}
    found = st.session_state.get("levels_suggestion")
    if not found or found["for"] != key:
        return
    suggestion = found["result"]
    st.caption(markdown.escape(f"Feature levels: {suggestion.reason}"))

    def apply() -> None:
        st.session_state["train_feature_levels"] = suggestion.levels

    if st.session_state.get("train_feature_levels") != suggestion.levels:
        st.button(
            f"Use {suggestion.levels} feature level{'s' if suggestion.levels > 1 else ''}",
            on_click=apply,
            icon=":material/check:",
            key="levels_check_apply",
        )
    else:
        st.caption("Feature levels are set as suggested.")
