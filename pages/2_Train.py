"""Train: choose the settings, start a run in a worker process, watch it live, compare runs."""

import dataclasses
from pathlib import Path

import streamlit as st

from tlcore import wording
from tlcore.config import (
    PRESET_DESCRIPTIONS,
    PRESET_TITLES,
    PRESETS,
    STRATEGIES,
    AugmentationConfig,
    TrainConfig,
    preset_augmentation,
)
from tlcore.data.dataset import DatasetError
from tlcore.insight import layer_stack
from tlcore.models.registry import BACKBONES
from tlcore.runs import catalog, store, worker
from views import (
    augment_view,
    cached,
    compare_view,
    evaluation_view,
    frame,
    levels_view,
    markdown,
    run_view,
    server,
    session,
    train_options,
)

session_lines = frame.draw()


# Settings a preset fills in: every setting on the page but the strategy, which stays the person's choice.
PRESET_FIELDS = tuple(name for name in train_options.PAGE_FIELDS if name != "strategy")
# Augmentation settings (the Data page's) that some preset sets: choosing any preset sets them, so that going
# back from the quality preset to the default brings its rotation, shifts and zoom back. The flips, brightness
# and contrast stay as the person chose them.
PRESET_AUGMENTATION_FIELDS = tuple(
    sorted({name for values in PRESETS.values() for name in values.get("augmentation", {})})
)


def chosen_alpha(key: str) -> float:
    """The width multiplier chosen for a backbone: one its ImageNet weights exist for, else 1.0."""
    alpha = st.session_state.get("train_alpha")
    return alpha if alpha in BACKBONES[key].weights_alphas else 1.0


def backbone_label(key: str) -> str:
    """The backbone's name and whether its weights are offline.

    Independent of the size and alpha chosen: a label that changed with them would make Streamlit
    see a new selectbox and fall back to its first option. The caption under the widgets gives the
    status of the exact weight file (a MobileNet has one per width multiplier and size).
    """
    weights = markdown.weights_phrase(cached.weights_status(key), cached.offline_variants(key), detailed=False)
    return f"{BACKBONES[key].display_name} ({weights})"


def preset_values(preset: str) -> dict:
    """The settings a preset gives: TrainConfig's defaults, then the preset's own."""
    values = {
        field.name: field.default
        for field in dataclasses.fields(TrainConfig)
        if field.default is not dataclasses.MISSING
    }
    values.update(PRESETS[preset])
    return values


def apply_preset() -> None:
    values = preset_values(session.preset())
    for name in PRESET_FIELDS:
        st.session_state[f"train_{name}"] = values[name]


def use_run_settings(config: dict) -> None:
    """A run's settings in the form, its strategy too, and its augmentation on the Data page: what the shown run
    trained with, which the form (kept from the last session, `tlcore.drafts`, else the preset's) may no longer be."""
    try:
        settings = TrainConfig.from_dict(config)  # Checked: a damaged config must not reach the widgets.
    except (ValueError, TypeError) as error:
        st.session_state["train_settings_message"] = f"Its settings cannot be used: {error}"
        return
    for name in (*PRESET_FIELDS, "strategy"):
        st.session_state[f"train_{name}"] = getattr(settings, name)
    augment_view.set_settings(settings.augmentation.to_dict())
    backbone = BACKBONES[settings.backbone]
    if backbone.supports_alpha and settings.alpha not in backbone.weights_alphas:
        # The page offers the multipliers ImageNet weights exist for: it falls back to 1.0 (`chosen_alpha`).
        st.session_state["train_settings_message"] = (
            f"Its width multiplier {settings.alpha:g} is not one the page offers "
            f"({', '.join(f'{alpha:g}' for alpha in backbone.weights_alphas)}): 1.0 is set instead."
        )


def changed_from_preset(preset: str) -> list[str]:
    """'Epochs 3' for each setting on the page that differs from the preset's, of those a run of the strategy
    and backbone chosen uses (a disabled one, or MobileNet's width multiplier kept after another backbone, is not
    what trains), then 'Flip upside down on' for each augmentation setting that differs, when the strategy
    augments."""
    values = preset_values(preset)
    unused = train_options.unused_settings(
        st.session_state.get("train_strategy", TrainConfig.strategy),
        st.session_state.get("train_backbone", TrainConfig.backbone),
    )
    changed = []
    for name in PRESET_FIELDS:
        if name in unused:
            continue
        value = st.session_state.get(f"train_{name}")
        if value is not None and value != values[name]:
            label = TrainConfig.__dataclass_fields__[name].metadata.get("label", name)
            changed.append(f"{label} {train_options.shown_value(name, value)}")
    # The Data page's augmentation too: a preset sets some of it, and the rest is kept from earlier sessions.
    strategy = st.session_state.get("train_strategy", TrainConfig.strategy)
    if STRATEGIES[strategy].augments:  # Feature extraction trains on the photos as they are.
        chosen, given = session.augmentation(), preset_augmentation(preset)
        for item in dataclasses.fields(AugmentationConfig):
            value = getattr(chosen, item.name)
            if value != getattr(given, item.name):
                changed.append(f"{item.metadata.get('label', item.name)} {wording.setting_value(value)}")
    return changed


def choose_preset() -> None:
    """A preset chosen: its settings here, and on the Data page the augmentation settings that presets set."""
    apply_preset()
    augmentation = preset_augmentation(session.preset())
    augment_view.set_settings({name: getattr(augmentation, name) for name in PRESET_AUGMENTATION_FIELDS})


st.title("Train")
run = session.current_run()
if run is not None:
    if session.keeps_run(run):
        st.query_params["run"] = run.id  # A reload, or the address copied, opens this run again.
    st.header("Current run", anchor="current-run")  # The start note below the form links here.
    if run.state in session.ACTIVE_STATES:
        run_view.live(run.id)
    else:
        run_view.show(run)
        if evaluation_view.evaluable(run):
            evaluation_view.show(run, key="current")

dataset = session.current_dataset()
run_config = run.config() if run is not None else {}  # Read once a draw: the button and the new run use it.
previous_data = run_config.get("data_dir") if isinstance(run_config.get("data_dir"), str) else None
if dataset is None and previous_data and not Path(previous_data).is_dir():  # Deleted from the library, or moved.
    st.caption(
        markdown.escape(
            f"No new run on the current run's data set: {previous_data} is no longer there (deleted from the "
            "library, or moved)."
        )
    )
elif dataset is None and previous_data and st.button("New run on the same data set", icon=":material/replay:"):
    try:
        dataset = cached.scan_folder(
            previous_data,
            run_config.get("validation_fraction", TrainConfig.validation_fraction),
            run_config.get("split_seed", run_config.get("seed", TrainConfig.split_seed)),
        )
        session.use_dataset(dataset)
        session_lines.draw()  # The sidebar names the data set at once.
    except (DatasetError, ValueError, OSError) as error:
        st.error(markdown.escape(error))
if dataset is None:
    st.info("Choose a data set on the Data page to start a new run.")
    st.page_link("pages/1_Data.py", label="Go to the Data page", icon=":material/photo_library:")
else:
    with st.container(border=True):
        st.subheader("New run")
        st.markdown(markdown.dataset_line(dataset, session.dataset_name(dataset.root)))
        if run_config:
            st.button(
                "Use the current run's settings",
                icon=":material/content_copy:",
                on_click=use_run_settings,
                args=(run_config,),
                help=markdown.escape(
                    f"Fills the settings below, the strategy included, and the Data page's augmentation with those "
                    f"run {run.id} trained with."
                ),
            )
            if "train_settings_message" in st.session_state:
                st.warning(markdown.escape(st.session_state.pop("train_settings_message")))
        weighting_notice = st.empty()  # Filled once the class weight setting is read, below.
        # What the session does not hold yet, from the last session's settings (session.reopen_settings) or
        # from none, comes from the preset.
        for name, value in preset_values(session.preset()).items():
            if name in PRESET_FIELDS:
                st.session_state.setdefault(f"train_{name}", value)
        keep = {"persist_state": "session"}
        # Through the session state, not the widget's default: a new session may start from the last one's preset.
        st.session_state.setdefault("train_preset", "default")
        preset = st.segmented_control(
            "Preset",
            list(PRESETS),
            format_func=PRESET_TITLES.get,
            required=True,
            key="train_preset",
            on_change=choose_preset,
            **keep,
        )
        changed = changed_from_preset(preset)
        # The preset stays highlighted once settings below are changed: said, so it is not read as what trains.
        since = f" Changed since: {', '.join(changed)}." if changed else ""
        st.caption(markdown.escape(f"{PRESET_DESCRIPTIONS[preset]}.{since}"))
        left, right = st.columns(2)
        backbone = left.selectbox("Backbone", list(BACKBONES), format_func=backbone_label, key="train_backbone", **keep)
        weights = right.radio(
            "Weights",
            list(train_options.metadata("weights")["choices"]),
            key="train_weights",
            horizontal=True,
            **keep,
            format_func=train_options.CHOICE_TITLES["weights"].get,
        )
        minimum = BACKBONES[backbone].min_size
        st.session_state["train_image_size"] = max(minimum, int(st.session_state.get("train_image_size") or minimum))
        sizes = train_options.metadata("image_size")
        image_size = left.number_input(
            sizes["label"], minimum, sizes["max"], step=sizes["step"], key="train_image_size", **keep
        )
        if BACKBONES[backbone].supports_alpha:
            # The multipliers its ImageNet weights exist for (MobileNetV2's are not MobileNet's).
            st.session_state["train_alpha"] = chosen_alpha(backbone)
            alpha = right.select_slider(
                "Width multiplier (alpha)", BACKBONES[backbone].weights_alphas, key="train_alpha", **keep
            )
        else:
            alpha = 1.0
            right.caption("Width multiplier (alpha): MobileNet and MobileNetV2 only.")
        status = cached.weights_status(backbone, image_size, alpha)
        st.caption(
            markdown.escape(f"{BACKBONES[backbone].display_name}: {BACKBONES[backbone].description}. {status.message}")
        )
        if weights == "imagenet" and not status.available:
            # A weight package comes from pip, not from a download at run time: a network alone does not help.
            when = "Until that package is installed" if status.source == "bundled" else "Without a network"
            st.warning(f"{when} this run will fail: choose EfficientNet-Lite0 (weights bundled) or random weights.")
        strategy = st.radio(
            "Strategy",
            list(STRATEGIES),
            format_func=lambda key: STRATEGIES[key].title,
            key="train_strategy",
            captions=[strategy.description for strategy in STRATEGIES.values()],
            **keep,
        )
        with st.expander("Hyperparameters", key="train_hyperparameters"):
            extras = train_options.disabled_extras("hyperparameters", strategy, backbone)
            settings = train_options.settings_widgets("hyperparameters", keep, extras)
            levels_view.feature_levels_check(
                dataset, backbone, int(image_size), disabled=weights != "imagenet" or not status.available
            )

        options, notice = train_options.options(dataset, strategy, backbone, keep)
        settings.update(options)
        if notice:
            weighting_notice.info(markdown.escape(notice), icon=":material/balance:")

        def new_config() -> TrainConfig:
            """The run these widgets describe (raises ValueError for a bad combination)."""
            return TrainConfig(
                data_dir=dataset.root,
                strategy=strategy,
                backbone=backbone,
                weights=weights,
                alpha=alpha,
                image_size=int(image_size),
                augmentation=session.augmentation(),
                validation_fraction=dataset.validation_fraction,
                split_seed=dataset.seed,  # The split the Data page showed, whatever the Seed.
                **settings,
            )

        head_title = train_options.CHOICE_TITLES["head"][settings["head"]]
        train_options.learning_rate_finder(
            dataset,
            new_config,
            disabled=weights == "imagenet" and not status.available,
            description=f"{BACKBONES[backbone].display_name} at {int(image_size)} px, "
            f"{head_title} head, {train_options.CHOICE_TITLES['optimizer'][settings['optimizer']]}, "
            f"batch size {int(settings['batch_size'])}",
        )
        st.caption(
            markdown.escape(f"Augmentation (set on the Data page): {wording.augmentation(session.augmentation())}")
        )
        with st.expander("What this strategy trains: the layer stack", expanded=True, key="train_layer_stack"):
            try:
                stack = cached.layer_stack(
                    backbone,
                    int(image_size),
                    strategy,
                    alpha,
                    dataset.num_classes,
                    settings["head"],
                    int(settings["dense_units"]),
                    int(settings["feature_levels"]),
                )
            except ValueError as error:
                st.error(markdown.escape(error))
            else:
                st.markdown("\n".join(f"{number}. {step}" for number, step in enumerate(stack.steps, 1)))
                for phase in stack.phases:
                    counts = stack.counts(phase)
                    st.caption(
                        f"{STRATEGIES[phase].phase}: {counts['trainable']:,} parameters trained, "
                        f"{counts['frozen']:,} frozen"
                    )
                st.altair_chart(layer_stack.stack_chart(stack), width="stretch")
        if st.button(
            "Start training",
            type="primary",
            icon=":material/play_arrow:",
            help="Trains in a separate process; one training runs at a time, later ones wait as queued.",
        ):
            try:
                started = worker.start(new_config(), server.runs_dir())
            except ValueError as error:  # A setting out of range, a full queue, a second click.
                st.error(markdown.escape(error))
            else:
                st.session_state["run_id"] = started.id
                st.session_state["started_run"] = started.id  # Said below the button after the rerun,
                st.session_state["started_toast"] = True  # and once in a toast.
                st.rerun()  # Draw the new run at the top.
        started_id = st.session_state.get("started_run")
        if started_id is not None and st.session_state.pop("started_toast", False):
            st.toast(
                markdown.escape(f"Run {started_id} started: its progress is at the top of the page."),
                icon=":material/play_arrow:",
            )
        if run is not None and run.id == started_id and run.state in session.ACTIVE_STATES:
            # Kept while the run trains (the page is redrawn when its state changes): the page stays scrolled
            # at the button while the progress is drawn at the top, out of view.
            st.success(
                markdown.escape(f"Run {started_id} started")
                + ": its progress and Stop button are under [Current run](#current-run)."
            )
        elif started_id is not None:
            del st.session_state["started_run"]
        session.remember_settings()  # As the form filled and corrected them (a backbone's smallest size, say).

if dataset is not None:
    runs = store.list_runs(server.runs_dir())
    transfer, has_baseline = catalog.transfer_rows(runs, dataset.root)
    if transfer:
        st.header("What transfer bought")
        note = "" if has_baseline else " " + (catalog.missing_baseline_note(runs, dataset.root) or "")
        st.caption(
            markdown.escape(
                f"The finished runs on {session.dataset_name(dataset.root)}, the most accurate saved model first, "
                f"beside the small CNN trained from scratch.{note}"
            )
        )
        st.markdown(markdown.table(transfer))

compare_view.show(run)
