"""What each stage of a run added to the stage before it, in words, from the saved models' accuracies.

The classic story says each strategy improves on the one before: augmentation on feature extraction,
fine-tuning on the frozen base. On some photos it does not (natural scenes, or a larger backbone whose
frozen features are already good), and a person reading three percentages may miss it, or keep a
fine-tuned model that scores less than the feature-extraction model they had. So a run that trained
several stages says, per step, whether the change helped, made no clear difference or cost accuracy,
and, when the saved model is not the most accurate of the stages, which stage was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tlcore import wording
from tlcore.config import AugmentationConfig
from tlcore.files import read_json_object
from tlcore.runs import saved_model
from tlcore.strategies import STRATEGIES

# Within half a point two stages count as scoring the same, as the learning benchmark's targets count
# them: on a few hundred validation photos the training seed alone moves a stage by as much
# (benchmarks/RESULTS.md).
TIE_POINTS = 0.5
# On a small validation set one photo is worth several points: a difference of up to this many photos
# counts as the same there (on 40 photos, 5 points).
TIE_PHOTOS = 2
# The stages that follow one another in a run, and what each changes from the stage before it.
CHANGES = {
    "frozen_augmented": ("feature_extraction", "training on augmented copies"),
    "fine_tuning": ("frozen_augmented", "unfreezing the top block"),
}
VERDICTS = ("helped", "no clear difference", "cost accuracy")
# The stages of a transfer-learning run, in training order (scratch is a baseline of its own).
TRANSFER_STAGES = ("feature_extraction", "frozen_augmented", "fine_tuning")


def tie_points(validation_images: int | None) -> float:
    """The largest difference, in points, that counts as none: half a point, or TIE_PHOTOS photos' worth
    when that is more; half a point when the number of validation photos is unknown."""
    if isinstance(validation_images, bool) or not isinstance(validation_images, int) or validation_images < 1:
        return TIE_POINTS
    return max(TIE_POINTS, round(TIE_PHOTOS * 100 / validation_images, 1))


@dataclass(frozen=True)
class StageStep:
    """How one stage's saved model scored against the stage before it in the same run.

    Attributes:
        stage: the later stage ("frozen_augmented" or "fine_tuning").
        previous: the stage before it.
        points: the later stage's validation accuracy minus the earlier one's, in percentage points.
        verdict: "helped" (more than `tie` up), "cost accuracy" (more than `tie` down) or "no clear difference".
        tie: the largest difference that counts as none (`tie_points`).
        validation_images: how many photos scored both stages, or None when not known; a tie they set
            (TIE_PHOTOS photos' worth, wider than half a point) is said in photos.
    """

    stage: str
    previous: str
    points: float
    verdict: str
    tie: float = TIE_POINTS
    validation_images: int | None = None

    def __post_init__(self) -> None:
        if self.stage not in CHANGES or CHANGES[self.stage][0] != self.previous:
            expected = [(stage, previous) for stage, (previous, _) in CHANGES.items()]
            raise ValueError(f"(stage, previous) must be one of {expected}, received {(self.stage, self.previous)!r}.")
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, received {self.verdict!r}.")
        if not math.isfinite(self.points):
            raise ValueError(f"points must be a finite number, received {self.points!r}.")
        if self.validation_images is not None and (
            isinstance(self.validation_images, bool)
            or not isinstance(self.validation_images, int)
            or self.validation_images < 1
        ):
            raise ValueError(
                f"validation_images must be a positive integer or None, received {self.validation_images!r}."
            )
        if not TIE_POINTS <= self.tie <= 100:
            raise ValueError(f"tie must lie in [{TIE_POINTS}, 100] points, received {self.tie!r}.")
        if self.verdict != verdict(self.points, self.tie):
            raise ValueError(
                f"verdict must be {verdict(self.points, self.tie)!r} for {self.points!r} points with a tie of "
                f"{self.tie!r}, received {self.verdict!r}."
            )


def _accuracy(result: dict | None) -> float | None:
    """A finished stage's saved-model validation accuracy; None for a missing, stopped or unscored stage."""
    if not isinstance(result, dict) or result.get("stopped") or result.get("partial_epoch"):
        return None
    accuracy = result.get("val_accuracy")
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not math.isfinite(accuracy):
        return None
    return float(accuracy)


def verdict(points: float, tie: float = TIE_POINTS) -> str:
    """ "helped", "no clear difference" or "cost accuracy" for a change of `points` percentage points."""
    if points > tie:
        return "helped"
    if points < -tie:
        return "cost accuracy"
    return "no clear difference"


def stage_steps(results: dict, validation_images: int | None = None) -> list[StageStep]:
    """Each stage of a run against the stage before it, in training order.

    Args:
        results: the run's results per stage (`summary.json`'s "results"), each with "val_accuracy" (the
            saved model's) and "stopped".
        validation_images: how many photos scored them, for the tie (`tie_points`); None when unknown.

    Returns:
        One StageStep per stage whose previous stage is in the run too; stages stopped partway or without
        an accuracy are left out.
    """
    tie = tie_points(validation_images)
    counted = isinstance(validation_images, int) and not isinstance(validation_images, bool) and validation_images > 0
    steps = []
    for stage, (previous, _) in CHANGES.items():
        later, earlier = _accuracy(results.get(stage)), _accuracy(results.get(previous))
        if later is None or earlier is None:
            continue
        points = round((later - earlier) * 100, 1)
        steps.append(
            StageStep(stage, previous, points, verdict(points, tie), tie, validation_images if counted else None)
        )
    return steps


def points_phrase(points: float) -> str:
    """'0.8 point', '2.0 points' for a difference either way (British usage: 'point' up to one)."""
    return f"{abs(points):.1f} point{'' if abs(points) <= 1 else 's'}"


def _within(step: StageStep) -> str:
    """Why a difference counts as none: 'within half a point', or in photos when a few photos set the tie.

    "5.0 points above, within 5.0 points" read as a contradiction on 40 photos; "2 of the 40 validation
    photos; up to 2 count as no difference" says why.
    """
    if step.tie == TIE_POINTS:
        return "within half a point"
    if step.validation_images is None:
        return f"within {points_phrase(step.tie)}"
    photos = round(abs(step.points) * step.validation_images / 100)
    return f"{photos} of the {step.validation_images} validation photos; up to {TIE_PHOTOS} count as no difference"


def describe(step: StageStep) -> str:
    """The step in a sentence, e.g. 'Frozen + augmentation scored 2.0 points below feature extraction: training on
    augmented copies cost accuracy on these photos.'"""
    change = CHANGES[step.stage][1]
    stage = STRATEGIES[step.stage].stage_name.capitalize()
    previous = STRATEGIES[step.previous].stage_name
    if step.points == 0:
        compared = f"the same as {previous}"
    else:
        compared = f"{points_phrase(step.points)} {'above' if step.points > 0 else 'below'} {previous}"
    if step.verdict == "no clear difference" and step.points != 0:
        in_photos = step.tie > TIE_POINTS and step.validation_images is not None
        compared += f" ({_within(step)})" if in_photos else f", {_within(step)}"
    outcome = {
        "helped": "helped",
        "no clear difference": "made no clear difference",
        "cost accuracy": "cost accuracy",
    }[step.verdict]
    return f"{stage} scored {compared}: {change} {outcome} on these photos."


def better_stage(
    results: dict, saved_stage: str | None, validation_images: int | None = None
) -> tuple[str, float] | None:
    """The stage that scored clearly more than the saved model's, and by how many points.

    Args:
        results: the run's results per stage.
        saved_stage: the stage whose weights the run's model file holds (`saved_model.saved_stage`), or None.
        validation_images: how many photos scored them, for the tie (`tie_points`); None when unknown.

    Returns:
        (stage, points) for the most accurate finished stage when it beats the saved stage by more than the
        tie; None otherwise, or when the saved stage has no accuracy.
    """
    if saved_stage not in TRANSFER_STAGES:
        return None
    saved = _accuracy(results.get(saved_stage))
    scored = {stage: _accuracy(results.get(stage)) for stage in TRANSFER_STAGES}
    scored = {stage: accuracy for stage, accuracy in scored.items() if accuracy is not None}
    if saved is None:
        return None
    best = max(scored, key=scored.get)
    points = round((scored[best] - saved) * 100, 1)
    return (best, points) if points > tie_points(validation_images) else None


def lines(
    results: dict,
    saved_stage: str | None,
    validation_images: int | None = None,
    augmentation: AugmentationConfig | None = None,
) -> list[str]:
    """What the run's stages added, one sentence per step, then which stage scored more than the saved model.

    Args:
        results: the run's results per stage.
        saved_stage: the stage whose weights the run's model file holds, or None.
        validation_images: how many photos scored them, for the tie (`tie_points`); None when unknown.
        augmentation: the run's augmentation: when augmented copies cost accuracy, a sentence names it, so a
            person sees what to change (an upside-down flip on upright photos, say); None leaves it out.

    Returns:
        The sentences; empty for a run of one stage.
    """
    sentences = []
    for step in stage_steps(results, validation_images):
        sentences.append(describe(step))
        if step.stage == "frozen_augmented" and step.verdict == "cost accuracy" and augmentation is not None:
            sentences.append(
                f"Its copies had {wording.augmentation(augmentation)}: the Data page's flip check measures which "
                "flips suit these photos, and its preview shows what each setting does to them."
            )
    better = better_stage(results, saved_stage, validation_images)
    if better is not None:
        stage, points = better
        sentence = (
            f"The saved model is {STRATEGIES[saved_stage].stage_name}'s ({_accuracy(results[saved_stage]):.1%}); "
            f"{STRATEGIES[stage].stage_name}'s scored {points_phrase(points)} more on the same "
            "validation photos."
        )
        if stage == "feature_extraction":
            sentence += (
                " A run of feature extraction alone, with the same settings and seed, trains that same model again"
                " from the features this run cached."
            )
        sentences.append(sentence)
    return sentences


def validation_images(run) -> int | None:
    """How many validation photos scored the run's stages (its `dataset.json`), or None when not recorded."""
    splits = read_json_object(run.path / "dataset.json").get("splits")
    counts = splits.get("validation") if isinstance(splits, dict) else None
    if not isinstance(counts, dict) or not all(type(count) is int and count >= 0 for count in counts.values()):
        return None
    return sum(counts.values()) or None


def for_run(run, results: dict, state: str | None = None) -> list[str]:
    """`lines` for a run: the stage its model holds (`saved_model.saved_stage`), its validation photos and its
    augmentation read from its folder. Never raises for a damaged or missing file."""
    values = run.config().get("augmentation")
    try:
        augmentation = AugmentationConfig.from_dict(values) if isinstance(values, dict) else None
    except (ValueError, TypeError):  # A damaged config: the sentences without it.
        augmentation = None
    return lines(results, saved_model.saved_stage(run, results, state), validation_images(run), augmentation)
