"""The Data page's explorer (`tlcore.insight.explore`): the map, near-duplicates and leaks, likely wrong labels.

Not a page. Exploring extracts a pretrained backbone's features of every photo (kept in the runs
folder's feature cache), so it runs on a button, and its result is kept in session state per data set
and split:
    exploration      {"for": (root, validation fraction, seed), "result": Exploration}
Decisions on the suspects (keep, drop, relabel) are saved with `tlcore.data.cleaning`; the photos are
never touched.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from tlcore import wording
from tlcore.data import cleaning
from tlcore.data.dataset import DatasetScan
from tlcore.data.images import InvalidImageError
from tlcore.files import printable
from tlcore.insight import explore, explore_chart
from views import cached, markdown, server

# Suspects offered for a decision, likeliest wrong first (the rest are summarised).
MOST_SUSPECTS = 25


def explorer(dataset: DatasetScan) -> None:
    """A button that explores the data set, then its map, its near-duplicates and its suspects."""
    st.caption(
        "A map of the photos by what a pretrained network sees in them, the near-duplicates (a leak when "
        "they join train to validation or two classes) and the photos whose label looks wrong. The first "
        "exploration extracts features of every photo (cached for later ones and for training)."
    )
    key = (dataset.root, dataset.validation_fraction, dataset.seed)
    if st.button("Explore this data set", icon=":material/travel_explore:", key="explore_run"):
        try:
            with st.spinner("Exploring: features of every photo, then the map, duplicates and suspects..."):
                result = explore.explore(dataset, runs_dir=server.runs_dir())
        except (ValueError, OSError) as error:
            st.error(markdown.escape(error))
            return
        st.session_state["exploration"] = {"for": key, "result": result}
    found = st.session_state.get("exploration")
    if not found or found["for"] != key:
        return
    result = found["result"]
    source = "features from the cache" if result.features_from_cache else "features extracted"
    st.caption(
        f"{wording.count(len(result.map), 'photo')}, {wording.count(len(result.duplicates), 'near-duplicate pair')}"
        f" of which {wording.count(len(result.leaks), 'leak')}, "
        f"{wording.count(len(result.suspects), 'likely wrong label')}; "
        f"{result.seconds:.0f} s, {source}."
    )
    st.altair_chart(explore_chart.exploration_map(result.map, dataset.root), width="stretch")

    def name(path: str) -> str:
        return printable(path.removeprefix(dataset.root.rstrip("/") + "/"))  # A name that is not UTF-8 too.

    st.subheader("Near-duplicates and leaks")
    if result.duplicates:
        st.dataframe(
            pd.DataFrame(
                [
                    {"photo": name(pair.a), "twin": name(pair.b), "similarity": pair.similarity, "leak": pair.leak}
                    for pair in result.duplicates
                ]
            ),
            hide_index=True,
            column_config={
                "photo": st.column_config.TextColumn("photo", width="large"),
                "twin": st.column_config.TextColumn("twin", width="large"),
                "similarity": st.column_config.NumberColumn("similarity", format="%.3f"),
            },
        )
    else:
        st.caption("No near-duplicates.")

    st.subheader("Likely wrong labels")
    if not result.suspects:
        st.caption("No photo's label looks wrong.")
        return
    try:
        read = cleaning.read_decisions(dataset, server.data_dir())
    except (ValueError, OSError) as error:  # A damaged or hand-edited file.
        st.warning(markdown.escape(f"Earlier decisions were not loaded, and saving replaces them: {error}"))
        read = cleaning.SavedDecisions({})
    saved = read.decisions
    if read.set_aside:
        described = cleaning.describe_set_aside(read.set_aside, dataset.root).removesuffix(".")
        st.caption(markdown.escape(f"{described}, and left out when you save."))
    options = cleaning.choices(dataset.classes)
    shown = result.suspects[:MOST_SUSPECTS]
    with st.form("explore_decisions", border=False):
        picked = []
        for index, suspect in enumerate(shown):
            # The photo beside its verdict: a person decided "keep", "drop" or "relabel" without seeing it.
            picture, text, choice = st.columns([1, 3, 2], vertical_alignment="center")
            try:
                picture.image(cached.thumbnail(suspect.path, 96)[0], width="stretch")
            except (InvalidImageError, OSError) as error:
                picture.caption(markdown.escape(getattr(error, "reason", str(error))))
            text.markdown(
                markdown.escape(
                    f"{name(suspect.path)}: labelled {suspect.label}, looks like {suspect.suggested} (a classifier "
                    f"that never saw it rates it {1 - suspect.score:.0%} {suspect.label})"
                )
            )
            current = cleaning.choice_of(saved.get(suspect.path))
            picked.append(
                choice.selectbox(
                    "Decision",
                    options,
                    index=options.index(current) if current in options else 0,
                    key=f"explore_choice_{index}",
                    label_visibility="collapsed",
                )
            )
        if len(result.suspects) > len(shown):
            st.caption(f"The {len(result.suspects) - len(shown)} less likely ones are not listed.")
        if st.form_submit_button("Save decisions", type="primary"):
            decisions = saved | {
                suspect.path: cleaning.decision_for(suspect.path, choice) for suspect, choice in zip(shown, picked)
            }
            try:
                cleaning.save_decisions(dataset, decisions.values(), server.data_dir())
            except (ValueError, OSError) as error:
                st.error(markdown.escape(error))
            else:
                changed = sum(decision.action != "keep" for decision in decisions.values())
                # Where, in words: the file's name ("scenes-af9cbd803441.json") meant nothing to a person.
                saved = (
                    f"{wording.count(changed, 'photo')} to drop or relabel, saved in the app's data folder (the "
                    "photos are untouched); a run applies them when “Use the cleaning decisions” is on (the Train "
                    "page's training options)."
                )
                st.success(markdown.escape(saved))
