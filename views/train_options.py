"""The Train page's training options (early stopping, class weights, augmented views, precision, XLA) and
learning-rate finder.

Not a page. `options` draws the option widgets and returns their TrainConfig fields;
`learning_rate_finder` runs `tlcore.training.lr_finder` on request (in this process) and keeps its sweep in
`st.session_state["lr_sweep"]` ({"sweep", "for"}), drawn until the next sweep replaces it.
"""

from typing import Callable

import streamlit as st

from tlcore.config import IMBALANCE_RATIO, TrainConfig
from tlcore.data.dataset import DatasetError, DatasetScan
from tlcore.insight import charts
from tlcore.training import lr_finder
from tlcore.training.training_context import class_weights_for
from views import markdown, server

CLASS_WEIGHTS = {"auto": "auto (when imbalanced)", "balanced": "always", "none": "never"}
PRECISIONS = {
    "float32": "float32 (default)",
    "mixed_float16": "mixed float16 (NVIDIA GPUs)",
    "mixed_bfloat16": "mixed bfloat16 (TPUs, recent GPUs and CPUs)",
}
# The TrainConfig fields `options` draws (the Train page gives new sessions their defaults).
OPTION_FIELDS = ("early_stopping_patience", "class_weight", "augmented_views", "precision", "jit_compile")
# Strategies that train on augmented views of the photos (the others ignore `augmented_views`).
VIEW_STRATEGIES = ("frozen_augmented", "fine_tuning", "all")


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


def options(dataset: DatasetScan, strategy: str, keep: dict) -> tuple[dict, str | None]:
    """The options expander: (TrainConfig fields, a notice to show in view when the classes get weighted)."""
    with st.expander(
        "Training options: early stopping, class weights, augmented views, precision", key="train_options"
    ):
        one, two, three = st.columns(3)
        values = {
            "early_stopping_patience": one.number_input(
                "Early stopping patience (epochs)",
                0,
                1000,
                key="train_early_stopping_patience",
                **keep,
                help="Stop a stage once the validation loss has not improved for this many epochs, and keep the "
                "weights of its best epoch. 0 turns early stopping off.",
            ),
            "class_weight": two.selectbox(
                "Class weights",
                list(CLASS_WEIGHTS),
                format_func=CLASS_WEIGHTS.get,
                key="train_class_weight",
                **keep,
                help="Weight each class's loss inversely to its number of training images, so a rare class counts "
                f'as much as a common one. "auto" does so when the largest class has {IMBALANCE_RATIO}× '
                "the images of the smallest or more.",
            ),
            "augmented_views": three.number_input(
                "Augmented views (0 = end to end)",
                0,
                1000,
                key="train_augmented_views",
                **keep,
                disabled=strategy not in VIEW_STRATEGIES,
                help="For frozen base + augmentation and fine-tuning: epoch e trains on view e mod K. A run of "
                "fewer epochs than views caches one view per epoch.",
            ),
        }
        four, five = st.columns([2, 1])
        values["precision"] = four.selectbox(
            "Precision",
            list(PRECISIONS),
            format_func=PRECISIONS.get,
            key="train_precision",
            **keep,
            help="Mixed precision computes in 16 bits and keeps the weights and the output layer in float32: "
            "on an NVIDIA H200 (measured under Keras on JAX; TensorFlow's GPU path not yet), bfloat16 ran "
            "EfficientNet-Lite0 1.4x faster at a batch of 256, hardly faster at 32; on a CPU without "
            "bfloat16 units it is slower.",
        )
        values["jit_compile"] = five.toggle(
            "XLA compilation",
            key="train_jit_compile",
            **keep,
            help="Compile training steps and forward passes with XLA where every layer allows it (models that "
            "augment inside train without it). Faster on GPUs; such runs are not bit-for-bit reproducible.",
        )
        weighted, note = class_weight_note(dataset, values["class_weight"])
        if not weighted:  # When weighted, the notice says so at the top of the form.
            st.caption(markdown.escape(note))
        st.caption(
            "Augmented views (strategies 2 and 3): with K views, K randomly augmented copies of every "
            "training photo go through the frozen base once and are cached; epoch e trains on copy "
            "e mod K, so epochs are fast. 0 trains end to end instead: new random copies every epoch, "
            "through the whole base, much slower on a CPU."
        )
    return values, note if weighted else None


def rounded_rate(rate: float) -> float:
    """A suggested learning rate to 2 significant digits, within the learning rate input's range."""
    return float(f"{min(max(rate, 1e-7), 0.5):.2g}")


def use_suggested_rate(rate: float) -> None:
    st.session_state["train_learning_rate"] = rounded_rate(rate)


def learning_rate_finder(
    dataset: DatasetScan, new_config: Callable[[], TrainConfig], description: str, disabled: bool
) -> None:
    """A button that sweeps the head's learning rate, the loss chart, and a button to use the suggestion."""
    with st.expander("Learning-rate finder", key="train_lr_finder"):
        st.caption(
            "Trains the head for one short sweep on the frozen base's features while the learning rate "
            "grows from 0.000001 to 1, and plots the loss against the rate: a good rate is where the loss "
            "still falls steeply, well before it shoots up. The first sweep extracts the features of the "
            "training images once (cached in the runs folder and reused by training): it can take a while."
        )
        if st.button("Find a learning rate", icon=":material/query_stats:", key="train_find_lr", disabled=disabled):
            try:
                config = new_config()
                with st.spinner("Extracting features and sweeping the learning rate..."):
                    sweep = lr_finder.find_learning_rate(config, runs_dir=server.runs_dir(), dataset=dataset)
            except (ValueError, DatasetError, OSError) as error:
                st.error(markdown.escape(error))
            else:
                st.session_state["lr_sweep"] = {"sweep": sweep, "for": description}
        found = st.session_state.get("lr_sweep")
        if not found:
            return
        suggestion = found["sweep"].suggestion
        st.altair_chart(charts.learning_rate_sweep(found["sweep"]), width="stretch")
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
