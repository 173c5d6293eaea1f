"""The ways to train, in one table: what the trainer runs, the monitor reports, the layer stack draws and the
pages describe."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Strategy:
    """One way to train, as the trainer, the monitor, the layer stack and the pages describe it.

    Attributes:
        key: what `--strategy` and `TrainConfig.strategy` take.
        title: the name people see, numbered as the classic story tells it ("1 · Feature extraction").
        stage_name: the stage in words, lower case, as progress lines read ("feature extraction").
        phase: what the stage does to the model's layers, for the layer stack.
        description: one or two sentences for people choosing a strategy.
        stages: the stages this strategy trains, in order (each the key of a single-stage strategy).
        end_to_end: whether its epochs train on images (costly) rather than on cached features.
        augments: whether its training images are augmented.
    """

    key: str
    title: str
    stage_name: str
    phase: str
    description: str
    stages: tuple[str, ...]
    end_to_end: bool = False
    augments: bool = False

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError(f"Strategy {self.key!r} must train at least one stage, received stages={self.stages!r}.")


STRATEGIES: dict[str, Strategy] = {
    strategy.key: strategy
    for strategy in (
        Strategy(
            key="feature_extraction",
            title="1 · Feature extraction",
            stage_name="feature extraction",
            phase="feature extraction: train the head on cached features",
            description="Run the frozen pretrained base once over every image, then train only a small classifier "
            "on the cached features: fastest, no augmentation.",
            stages=("feature_extraction",),
        ),
        Strategy(
            key="frozen_augmented",
            title="2 · Frozen base + augmentation",
            stage_name="frozen + augmentation",
            phase="frozen + augmentation: train a head on augmented images",
            description="Keep the pretrained base frozen and train a new classifier on top of it on randomly "
            "augmented images (a few augmented views of each image, set under Training options, go through the "
            "frozen base once and are cached; 0 views trains end to end): slower, generalises better.",
            stages=("frozen_augmented",),
            end_to_end=True,
            augments=True,
        ),
        Strategy(
            key="fine_tuning",
            title="3 · Fine-tuning",
            stage_name="fine-tuning",
            phase="fine-tuning: top block unfrozen, train again",
            description="After frozen + augmentation, unfreeze the base's top block and keep training at a lower "
            "learning rate, so the top features adapt to your classes.",
            stages=("frozen_augmented", "fine_tuning"),
            end_to_end=True,
            augments=True,
        ),
        Strategy(
            key="scratch",
            title="Baseline · a small CNN from scratch",
            stage_name="scratch baseline",
            phase="scratch: every layer trains",
            description="A small CNN trained from random weights with the same augmentation: the baseline that "
            "shows what transfer learning buys.",
            stages=("scratch",),
            end_to_end=True,
            augments=True,
        ),
        Strategy(
            key="all",
            title="1 → 2 → 3 in sequence",
            stage_name="1 → 2 → 3",
            phase="the classic sequence",
            description="Feature extraction, then frozen + augmentation, then fine-tuning, in sequence (the classic "
            "notebook's schedule); by default frozen + augmentation continues the classifier feature extraction "
            "trained (Training options).",
            stages=("feature_extraction", "frozen_augmented", "fine_tuning"),
            augments=True,
        ),
    )
}
# What `--strategy` accepts: each strategy, or `all` = the seed's sequence 1, 2, 3.
STRATEGY_CHOICES = tuple(STRATEGIES)


def stages_for(strategy: str) -> tuple[str, ...]:
    """The stages a strategy trains, in order: fine-tuning starts from a frozen + augmentation stage."""
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}. Expected one of {list(STRATEGIES)}.")
    return STRATEGIES[strategy].stages
