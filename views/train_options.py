"""The Train page's setting widgets, its training options (early stopping, class weights, augmented views,
precision, XLA) and learning-rate finder.

Not a page. `settings_widgets` draws the widgets of one part of the page from TrainConfig's field metadata
(label, choices, bounds, help); `options` draws the option widgets and returns their TrainConfig fields;
`learning_rate_finder` starts a find on request (`tlcore.runs.finder_jobs`: a worker process that waits for
the training lock), follows it in `st.session_state["lr_find"]` ({"job", "for"}) and, once done, keeps its
sweep in `st.session_state["lr_sweep"]` ({"sweep", "for"}), drawn until the next sweep replaces it.
"""

import dataclasses
from typing import Any, Callable

import streamlit as st

from tlcore import wording
from tlcore.config import IMBALANCE_RATIO, TrainConfig
from tlcore.data.dataset import DatasetError, DatasetScan
from tlcore.insight import learning_rate_chart
from tlcore.models.registry import BACKBONES
from tlcore.runs import finder_jobs, store
from tlcore.settings import setting_type, settings_of
from tlcore.strategies import stages_for
from tlcore.training.training_context import class_weights_for
from views import markdown, server

# How the page names a choice; the choices themselves, like every bound, label and help text, are
# TrainConfig's field metadata (a choice missing here shows as itself).
CHOICE_TITLES = {
    "weights": {"imagenet": "ImageNet (pretrained)", "none": "random (no download)"},
    "head": {"global_average": "pooling + Dense", "flatten": "Flatten + Dense"},
    "optimizer": {"rmsprop": "RMSprop", "adam": "Adam"},
    "class_weight": {"auto": "auto (when imbalanced)", "balanced": "always", "none": "never"},
    "precision": {
        "float32": "float32 (default)",
        "mixed_float16": "mixed float16 (NVIDIA GPUs)",
        "mixed_bfloat16": "mixed bfloat16 (TPUs, recent GPUs and CPUs)",
    },
}
# Learning rates need more digits than a number input's default two.
NUMBER_FORMATS = {"learning_rate": "%.6f", "fine_tuning_learning_rate": "%.6f"}
# The TrainConfig fields the Train page sets, by the part of the page that draws them (field metadata "page").
PAGE_FIELDS = {
    item.name: item.metadata["page"] for item in settings_of(TrainConfig) if item.metadata.get("page") is not None
}
# Strategies that train on augmented views of the photos (the others ignore `augmented_views`).
VIEW_STRATEGIES = ("frozen_augmented", "fine_tuning", "all")


def metadata(name: str) -> dict[str, Any]:
    """A TrainConfig field's metadata: help, label, choices, bounds (see tlcore.settings)."""
    return dict(TrainConfig.__dataclass_fields__[name].metadata)


def shown_value(name: str, value: Any) -> str:
    """A setting's value as its widget shows it: a choice's title, a learning rate's digits, on/off."""
    if name in CHOICE_TITLES:
        return CHOICE_TITLES[name].get(value, str(value))
    if name == "backbone" and value in BACKBONES:
        return BACKBONES[value].display_name
    return wording.setting_value(value)


def help_sentence(name: str) -> str:
    """The field's help text as a sentence for a widget's tooltip."""
    text = metadata(name)["help"]
    return text[0].upper() + text[1:] + "."


def setting_widget(container, setting: dataclasses.Field, keep: dict, **extra: Any):
    """One TrainConfig setting's widget, keyed train_<field>: a selectbox, a toggle or a number input.

    Args:
        container: where to draw it (a column, an expander, `st`).
        setting: the TrainConfig field; its metadata gives the label, choices, bounds and help.
        keep: widget arguments every Train page widget takes.
        **extra: further widget arguments (e.g. `disabled`).

    Returns:
        The widget's value.
    """
    options = {"key": f"train_{setting.name}", "help": help_sentence(setting.name), **keep, **extra}
    label = setting.metadata.get("label", setting.name)
    if "choices" in setting.metadata:
        titles = CHOICE_TITLES.get(setting.name, {})
        return container.selectbox(
            label, list(setting.metadata["choices"]), format_func=lambda choice: titles.get(choice, choice), **options
        )
    kind = setting_type(setting)
    if kind is bool:
        return container.toggle(label, **options)
    # Bounds, step and value of one type: Streamlit refuses an int bound on a float input.
    low, high, step = (setting.metadata.get(key) for key in ("min", "max", "step"))
    return container.number_input(
        label,
        None if low is None else kind(low),
        None if high is None else kind(high),
        step=None if step is None else kind(step),
        format=NUMBER_FORMATS.get(setting.name),
        **options,
    )


def settings_widgets(part: str, keep: dict, extras: dict[str, dict] | None = None) -> dict[str, Any]:
    """The widgets of one part of the page (field metadata "page"), three to a row: field -> value."""
    extras = extras or {}
    settings = [item for item in settings_of(TrainConfig) if PAGE_FIELDS.get(item.name) == part]
    columns = st.columns(3)
    return {
        item.name: setting_widget(columns[index % 3], item, keep, **extras.get(item.name, {}))
        for index, item in enumerate(settings)
    }


def unused_settings(strategy: str, backbone: str) -> set[str]:
    """The settings a run of this strategy and backbone does not use: their widgets are disabled (or, for the
    width multiplier, not drawn), and a preset's "Changed since" leaves them out."""
    unused = set()
    if "fine_tuning" not in stages_for(strategy):
        unused |= {"fine_tuning_epochs", "fine_tuning_learning_rate"}
    if strategy not in VIEW_STRATEGIES:
        unused.add("augmented_views")
    if strategy != "all":  # Only strategy "all" trains feature extraction's head for stage 2 to continue.
        unused.add("continue_head")
    if backbone not in BACKBONES or not BACKBONES[backbone].supports_alpha:
        unused.add("alpha")
    return unused


def disabled_extras(part: str, strategy: str, backbone: str) -> dict[str, dict]:
    """`settings_widgets` extras that disable the settings of one part of the page that a run would not use."""
    return {name: {"disabled": True} for name in unused_settings(strategy, backbone) if PAGE_FIELDS.get(name) == part}


def class_weight_note(dataset: DatasetScan, mode: str) -> tuple[bool, str]:
    """(whether training weights the classes, a sentence saying so and why) for this data set and mode."""
    counts = dataset.counts()["train"].values()
    weights = class_weights_for(dataset.labels("train"), dataset.num_classes, mode)
    spread = f"{max(counts)} training images in the largest class, {min(counts)} in the smallest"
    if weights is None:
        if mode == "auto":
            return False, f'Classes are balanced enough ({spread}): "auto" trains without class weights.'
        return False, "Every image counts the same in the loss."
    shown = ", ".join(f"{name} ×{weights[index]:.2f}" for index, name in enumerate(dataset.classes[:8]))
    shown += ", ..." if dataset.num_classes > 8 else ""
    why = (
        f'This data set is imbalanced ({spread}, {IMBALANCE_RATIO}× or more): class weights "auto" weight'
        if mode == "auto"
        else 'Class weights "always" weight'
    )
    return True, f"{why} each class's loss inversely to its count: {shown}."


def options(dataset: DatasetScan, strategy: str, backbone: str, keep: dict) -> tuple[dict, str | None]:
    """The options expander: (TrainConfig fields, a notice to show in view when the classes get weighted)."""
    with st.expander(
        "Training options: early stopping, class weights, augmented views, precision", key="train_options"
    ):
        values = settings_widgets("options", keep, disabled_extras("options", strategy, backbone))
        weighted, note = class_weight_note(dataset, values["class_weight"])
        if not weighted:  # When weighted, the notice says so at the top of the form.
            st.caption(markdown.escape(note))
        st.caption(
            "Augmented views (strategies 2 and 3): with K views, K randomly augmented copies of every "
            "training photo go through the frozen base once and are cached; epoch e trains on copy "
            "e mod K, so epochs are fast. When flips are the only augmentation, a photo has just 2 flipped "
            "copies (4 with both flips): those are cached, and each view is one of them. 0 trains end to end "
            "instead: new random copies every epoch, through the whole base, much slower on a CPU."
        )
    return values, note if weighted else None


def rounded_rate(rate: float) -> float:
    """A suggested learning rate to 2 significant digits, within the learning rate input's range."""
    bounds = metadata("learning_rate")
    return float(f"{min(max(rate, bounds['min']), bounds['max']):.2g}")


def use_suggested_rate(rate: float) -> None:
    st.session_state["train_learning_rate"] = rounded_rate(rate)


def learning_rate_finder(
    dataset: DatasetScan, new_config: Callable[[], TrainConfig], description: str, disabled: bool
) -> None:
    """A button that starts a learning-rate find, its progress, the loss chart, and a button to use the suggestion."""
    with st.expander("Learning-rate finder", key="train_lr_finder"):
        st.caption(
            "Trains the head for one short sweep on the frozen base's features while the learning rate "
            "grows from 0.000001 to 1, and plots the loss against the rate: a good rate is where the loss "
            "still falls steeply, well before it shoots up. The first sweep extracts the features of the "
            "training images once (cached in the runs folder and reused by training): it can take a while. "
            "It runs in a process of its own and waits for its turn while a training runs."
        )
        # Settled before the button is drawn: a find that has just ended frees the button in this run.
        pending, ended = settle_find(st.session_state.get("lr_find"))
        if st.button(
            "Find a learning rate",
            icon=":material/query_stats:",
            key="train_find_lr",
            disabled=disabled or pending is not None,
        ):
            try:
                job = finder_jobs.start(new_config(), server.runs_dir())
            except (ValueError, DatasetError, OSError) as error:
                ended = str(error)
            else:
                st.session_state["lr_find"] = pending = {"job": job.id, "for": description}
        if ended:
            st.error(markdown.escape(ended))
        if pending is not None:
            poll_find(pending["job"])
        found = st.session_state.get("lr_sweep")
        if not found:
            return
        suggestion = found["sweep"].suggestion
        st.altair_chart(learning_rate_chart.learning_rate_sweep(found["sweep"]), width="stretch")
        st.markdown(
            markdown.escape(
                f"Suggested learning rate: {suggestion:.2g} (where the smoothed loss falls fastest), "
                f"for {found['for']}."
            )
        )
        st.button(
            f"Use {suggestion:.2g} as the learning rate",
            on_click=use_suggested_rate,
            args=(suggestion,),
            key="train_use_lr",
        )
        if st.session_state.get("train_learning_rate") == rounded_rate(suggestion):
            st.caption("The learning rate under Hyperparameters is set to the suggestion.")


# What a find's state means to the person waiting for it.
FIND_STATE_TEXTS = {
    # Queued also while its process starts, with nothing else running: "waiting for its turn" misled then.
    "queued": "Starting (it waits while another find holds the CPU)...",
    "running": "Extracting features and sweeping the learning rate...",
    "stopping": "Stopping...",
}


def settle_find(pending: dict | None) -> tuple[dict | None, str | None]:
    """(the find still pending or None, the error it ended with or None); an ended find's sweep is kept
    in `st.session_state["lr_sweep"]` and the find forgotten."""
    if pending is None:
        return None, None
    try:
        job = finder_jobs.resolve(pending["job"], server.runs_dir())
    except ValueError as error:
        st.session_state.pop("lr_find", None)
        return None, str(error)
    status = job.status()
    if status["state"] in FIND_STATE_TEXTS:
        return pending, None
    st.session_state.pop("lr_find", None)
    sweep = finder_jobs.sweep_of(job)
    if sweep is None:
        return None, f"The learning-rate finder ended {status['state']}: {status.get('error') or ''}"
    st.session_state["lr_sweep"] = {"sweep": sweep, "for": pending["for"]}
    return None, None


@st.fragment(run_every=1)
def poll_find(job_id: str) -> None:
    """Shows the find's state every second; reruns the page once it has ended, to draw its sweep."""
    try:
        state = finder_jobs.resolve(job_id, server.runs_dir()).state
    except ValueError:
        state = "gone"
    if state not in FIND_STATE_TEXTS:
        st.rerun()
    training = store.training_run(server.runs_dir()) if state == "queued" else None
    if training is not None:  # It waits for that run, for minutes maybe: said, not "starting".
        st.caption(markdown.escape(f"Waiting for run {training.id} to finish (one training at a time)..."))
    else:
        st.caption(FIND_STATE_TEXTS[state])
