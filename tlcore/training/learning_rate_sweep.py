"""The learning-rate finder's result, without TensorFlow: the pages read it from a find's folder."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LearningRateSweep:
    """The finder's result.

    Attributes:
        learning_rates: the rate of each step.
        losses: the smoothed training loss after each step.
        suggestion: the suggested learning rate (steepest descent of the smoothed loss).
    """

    learning_rates: tuple[float, ...]
    losses: tuple[float, ...]
    suggestion: float

    def __post_init__(self) -> None:
        if len(self.learning_rates) != len(self.losses):
            raise ValueError(
                f"Expected one loss per learning rate, received {len(self.learning_rates)} rates "
                f"and {len(self.losses)} losses."
            )

    def to_json(self) -> dict:
        return {"learning_rates": list(self.learning_rates), "losses": list(self.losses), "suggestion": self.suggestion}

    @classmethod
    def from_json(cls, value: dict) -> LearningRateSweep:
        return cls(
            tuple(float(rate) for rate in value["learning_rates"]),
            tuple(float(loss) for loss in value["losses"]),
            float(value["suggestion"]),
        )
