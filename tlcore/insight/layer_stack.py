"""What each strategy trains: a backbone's layer stack, grouped into blocks, frozen or trainable.

`layer_stack` builds the base with random weights (the architecture is what matters here, and
no download is needed), then replays the strategy's steps on it with the very functions training
uses (`base.trainable = False`, `heads.unfreeze_top_block`), and records per block and per
training phase how many parameters are trainable. `stack_chart` draws that as an Altair chart.
No Streamlit here; the Train page caches the result.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from types import SimpleNamespace

import altair as alt
import pandas as pd

from tlcore.config import STRATEGIES, AugmentationConfig, stages_for
from tlcore.models.registry import get_backbone

# The classic fine-tuning recipe (Deep Learning with Python), step by step.
FIVE_STEPS = (
    "Add a new classifier head on top of the pretrained base.",
    "Freeze the base, so its pretrained weights stay as they are.",
    "Train the head.",
    "Unfreeze the base's top block (BatchNorm layers stay frozen).",
    "Train the top block and the head together, at a low learning rate.",
)

# What strategy "all" does between freezing the base and unfreezing its top block: stages 1 and 2.
SEQUENCE_STEPS = (
    "Run the frozen base once over every image, then train the head on the saved features (feature extraction).",
    "Train the head further on randomly augmented images, through the frozen base (by default the head of the "
    "step before, continued).",
)

STATES = ("frozen", "partly trainable", "trainable", "no weights")
STATE_COLOURS = ("#7fa7d1", "#f6c38b", "#e8590c", "#e5e7eb")

# Layer-name patterns that name a block, in order of preference (see `_block_key`).
_BLOCK_PATTERNS = (
    re.compile(r"^(block\d+)[a-z]?_"),  # VGG "block5_conv1", EfficientNet "block6d_dwconv" (stage 6)
    re.compile(r"^(block_\d+)_"),  # MobileNetV2 "block_16_project"
    re.compile(r"^(conv\d+_block\d+)_"),  # ResNet50 "conv5_block3_2_conv"
    re.compile(r"^conv_(?:dw|pw|pad)_(\d+)"),  # MobileNet "conv_pw_13_relu"
    re.compile(r"^(stem|top)_"),  # EfficientNet stem and top
    re.compile(r"^(mixed\d+)$"),  # InceptionV3 module outputs
)
# The scratch CNN: conv1 + pool1 are block 1, and so on; the rest is its classifier.
_SCRATCH_BLOCK = re.compile(r"^(?:conv|pool)(\d+)$")
_SCRATCH_HEAD = ("flatten", "dropout", "dense", "output")


@dataclass(frozen=True)
class Block:
    """A group of consecutive layers shown as one row of the stack.

    Attributes:
        name: the block's name ("block5", "conv5_block3", "stem", "head: dense", ...).
        part: "base" or "head".
        layers: how many layers it groups.
        parameters: its parameters, trainable or not.
        trainable: phase -> parameters trainable in that phase.
    """

    name: str
    part: str
    layers: int
    parameters: int
    trainable: dict

    def state(self, phase: str) -> str:
        if self.parameters == 0:
            return "no weights"
        count = self.trainable.get(phase, 0)
        if count == 0:
            return "frozen"
        return "trainable" if count >= self.parameters else "partly trainable"


@dataclass(frozen=True)
class LayerStack:
    """A model's blocks, base first and head last, with what each training phase trains.

    Attributes:
        backbone: the registry key ("scratch" for the baseline CNN).
        image_size: the input size the stack was built for.
        strategy: the strategy shown.
        phases: the training phases of the strategy, in order (`tlcore.config.stages_for`).
        blocks: base blocks in model order (input side first), then the head's layers.
        steps: the recipe the strategy follows, one sentence per step.
        unfrozen_layers: the layers fine-tuning unfreezes (empty without fine-tuning).
    """

    backbone: str
    image_size: int
    strategy: str
    phases: tuple[str, ...]
    blocks: tuple[Block, ...]
    steps: tuple[str, ...]
    unfrozen_layers: tuple[str, ...] = ()

    def counts(self, phase: str) -> dict:
        """Parameters trainable and frozen in one phase, over base and head."""
        total = sum(block.parameters for block in self.blocks)
        trainable = sum(block.trainable.get(phase, 0) for block in self.blocks)
        return {"trainable": trainable, "frozen": total - trainable, "total": total}

    def frame(self) -> pd.DataFrame:
        """One row per (phase, block): order, block, part, layers, parameters, trainable, state."""
        rows = [
            {
                "phase": STRATEGIES[phase].phase,
                "order": order,
                "block": block.name,
                "part": block.part,
                "layers": block.layers,
                "parameters": block.parameters,
                "trainable": block.trainable.get(phase, 0),
                "state": block.state(phase),
            }
            for phase in self.phases
            for order, block in enumerate(self.blocks)
        ]
        return pd.DataFrame(rows)

    def table(self) -> pd.DataFrame:
        """One row per block, one column per phase with its state: a compact table."""
        rows = []
        for block in self.blocks:
            row = {"block": block.name, "layers": block.layers, "parameters": block.parameters}
            for phase in self.phases:
                row[STRATEGIES[phase].phase.split(":")[0]] = block.state(phase)
            rows.append(row)
        return pd.DataFrame(rows)


def _block_key(name: str) -> str | None:
    for pattern in _BLOCK_PATTERNS:
        match = pattern.match(name)
        if match:
            key = match.group(1)
            return f"conv_{key}" if key.isdigit() else key
    return None


def group_layers(names: list[str]) -> list[str]:
    """A block name for each layer name, so consecutive layers of one block share it.

    Layers whose names say nothing (`conv2d_12`, `Conv1`, `out_relu`) join the stem before the
    first named block, the top after the last one, or the block they sit in. InceptionV3's
    auto-named layers belong to the `mixedN` module that follows them.
    """
    keys = [_block_key(name) for name in names]
    if any(key and key.startswith("mixed") for key in keys):
        result, pending = [], 0
        for key in keys:
            pending += 1
            if key and key.startswith("mixed"):
                result += [key] * pending
                pending = 0
        return result + ["top"] * pending
    known = [index for index, key in enumerate(keys) if key]
    if not known:
        return ["base"] * len(names)
    first, last = known[0], known[-1]
    result, current = [], "stem"
    for index, key in enumerate(keys):
        if key:
            current = key
        elif index < first:
            current = "stem"
        elif index > last:
            current = "top"
        result.append(current)
    return result


def _scratch_keys(names: list[str]) -> list[str]:
    keys = []
    for name in names:
        match = _SCRATCH_BLOCK.match(name)
        keys.append(f"block{match.group(1)}" if match else name)
    return keys


def _blocks(rows_per_phase: dict[str, list[dict]], part: str, keys_for=None) -> list[Block]:
    """Merges per-layer rows (one list per phase, same layers) into blocks named by `keys_for`."""
    phases = list(rows_per_phase)
    rows = rows_per_phase[phases[0]]
    names = [row["name"] for row in rows]
    keys = keys_for(names) if keys_for is not None else [f"head: {name}" for name in names]
    blocks: list[Block] = []
    for index, key in enumerate(keys):
        trainable = {
            phase: rows_per_phase[phase][index]["parameters"] if rows_per_phase[phase][index]["trainable"] else 0
            for phase in phases
        }
        if blocks and blocks[-1].name == key:
            previous = blocks[-1]
            blocks[-1] = Block(
                key,
                part,
                previous.layers + 1,
                previous.parameters + rows[index]["parameters"],
                {phase: previous.trainable[phase] + trainable[phase] for phase in phases},
            )
        else:
            blocks.append(Block(key, part, 1, rows[index]["parameters"], trainable))
    return blocks


def _without_inputs(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["type"] != "InputLayer"]


def _head_settings(head: str, dense_units: int, dropout: float) -> SimpleNamespace:
    # `strategies.build_head` reads only these three settings of a TrainConfig.
    return SimpleNamespace(head=head, dense_units=dense_units, dropout=dropout)


def layer_stack(
    backbone: str,
    image_size: int,
    strategy: str,
    alpha: float = 1.0,
    num_classes: int = 2,
    head: str = "global_average",
    dense_units: int = 256,
    dropout: float = 0.5,
    feature_levels: int = 1,
) -> LayerStack:
    """The blocks of the model a strategy trains, and which of them each phase trains.

    Args:
        backbone: a key of `tlcore.models.registry.BACKBONES` (ignored by "scratch").
        image_size: side of the square input, in pixels.
        strategy: a key of `tlcore.config.STRATEGIES`.
        alpha: the MobileNets' width multiplier.
        num_classes: classes of the data set (the output layer's size).
        head: "flatten" or "global_average", as in TrainConfig.
        dense_units: units of the head's Dense layer.
        dropout: the head's dropout rate.
        feature_levels: stages whose outputs the head reads, as in TrainConfig (at most what the
            backbone has; the stacking adds no weights, but the head's Dense layer grows).

    Returns:
        A LayerStack.

    Raises:
        ValueError: an unknown backbone or strategy, or an image size the backbone refuses.
    """
    # Heavy: each imports Keras (the stack is read off a model built for the purpose).
    from tlcore.data import augment
    from tlcore.models import backbones, heads

    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}. Expected one of {list(STRATEGIES)}.")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, received {num_classes!r}.")
    if isinstance(feature_levels, bool) or not isinstance(feature_levels, int) or feature_levels < 1:
        raise ValueError(f"feature_levels must be an integer >= 1, received {feature_levels!r}.")
    phases = stages_for(strategy)
    if strategy == "scratch":
        model = heads.build_scratch_model(image_size, num_classes, augment.build_layers(AugmentationConfig()))
        rows = [row for row in _without_inputs(heads.layer_table(model)) if row["name"] != "augmentation"]
        base_rows = [row for row in rows if row["name"] not in _SCRATCH_HEAD]
        head_rows = [row for row in rows if row["name"] in _SCRATCH_HEAD]
        blocks = _blocks({"scratch": base_rows}, "base", _scratch_keys) + _blocks({"scratch": head_rows}, "head")
        steps = ("Build a small CNN with random weights.", "Train every layer on augmented images.")
        return LayerStack("scratch", image_size, strategy, phases, tuple(blocks), steps)

    base = backbones.build_base(backbone, image_size, weights=None, alpha=alpha)
    levels = get_backbone(backbone).stacked_levels(feature_levels)
    if levels > 1:
        base = heads.stack_stages(base, backbone, levels)
    classifier = heads.build_head(base.output.shape[1:], num_classes, _head_settings(head, dense_units, dropout))
    head_rows = _without_inputs(heads.layer_table(classifier))
    base_rows: dict[str, list[dict]] = {}
    unfrozen: list[str] = []
    for phase in phases:
        if phase == "fine_tuning":
            unfrozen = heads.unfreeze_top_block(base, backbone)
        else:
            base.trainable = False
        base_rows[phase] = _without_inputs(heads.layer_table(base))
    blocks = _blocks(base_rows, "base", group_layers) + _blocks({phase: head_rows for phase in phases}, "head")
    first_step = (
        FIVE_STEPS[0]
        if levels == 1
        else f"Add a new classifier head on the outputs of the base's last {levels} stages."
    )
    if strategy == "all":
        # The whole schedule: the five steps alone left out feature extraction, whose head stage 2 continues
        # by default.
        steps = (first_step, FIVE_STEPS[1], *SEQUENCE_STEPS, *FIVE_STEPS[3:])
    elif "fine_tuning" in phases:
        steps = (first_step, *FIVE_STEPS[1:])
    elif strategy == "feature_extraction":
        steps = (first_step, FIVE_STEPS[1]) + (
            "Run the frozen base once over every image, then train the head on the saved features.",
        )
    else:
        steps = (first_step, FIVE_STEPS[1]) + ("Train the head on randomly augmented images, through the frozen base.",)
    return LayerStack(backbone, image_size, strategy, tuple(phases), tuple(blocks), steps, tuple(unfrozen))


def stack_chart(stack: LayerStack, row_height: int = 24, column_width: int = 220) -> alt.Chart:
    """The layer stack as coloured cells: one column per phase, input at the bottom, head on top.

    Each cell shows the block's parameter count; its colour says whether that phase trains it.
    Its width (columns of `column_width` pixels) is for layouts that show a chart at its own width;
    the Train page stretches it to the page instead, so that it fits a phone's screen too: the
    phase names are wrapped into short lines and the legend takes two columns for that.
    """
    frame = stack.frame()
    frame["label"] = [f"{count:,}" if count else "-" for count in frame["parameters"]]
    order = [block.name for block in reversed(stack.blocks)]
    phases = [STRATEGIES[phase].phase for phase in stack.phases]
    # Column titles: the phase's name before the colon, in lines of 12 characters at most (a Vega
    # label that is an array is drawn as lines), so that three columns fit a narrow screen.
    title_lines = {phase: textwrap.wrap(phase.split(":")[0], 12) for phase in phases}
    base = alt.Chart(frame).encode(
        x=alt.X(
            "phase:N",
            title=None,
            sort=phases,
            axis=alt.Axis(
                orient="top",
                labelAngle=0,
                labelLimit=column_width,
                labelFontSize=11,
                # Vega hides a label that touches its neighbour: at 420 px "augmentation" did.
                labelOverlap=False,
                labelExpr=f"{json.dumps(title_lines)}[datum.label] || datum.label",
            ),
        ),
        y=alt.Y("block:N", title=None, sort=order, axis=alt.Axis(labelFontSize=11, labelLimit=160, labelOverlap=False)),
    )
    cells = base.mark_rect(stroke="white", strokeWidth=2).encode(
        color=alt.Color(
            "state:N",
            title=None,
            scale=alt.Scale(domain=list(STATES), range=list(STATE_COLOURS)),
            legend=alt.Legend(orient="bottom", direction="horizontal", columns=2),
        ),
        tooltip=[
            alt.Tooltip("phase:N"),
            alt.Tooltip("block:N"),
            alt.Tooltip("layers:Q"),
            alt.Tooltip("parameters:Q", format=","),
            alt.Tooltip("trainable:Q", title="trainable parameters", format=","),
            alt.Tooltip("state:N"),
        ],
    )
    labels = base.mark_text(fontSize=10, color="#111827").encode(text="label:N")
    # The size includes the axes and the legend (Streamlit fits the whole chart into it).
    width = max(480, 170 + column_width * len(phases))
    return (cells + labels).properties(width=width, height=row_height * len(stack.blocks) + 80)
