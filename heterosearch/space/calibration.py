"""A space's optional ``calibration:`` section: how much training signal maps proxy scores across kinds.

Torch-free (it is parsed with the space file); the measurement is ``proxies/calibration.py``.
Absent, a search compares every kind's raw proxy values (the behaviour of every space without
the section, ``lora`` among them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from heterosearch.space.fields import Where

#: How an option's training signal is taken (``proxies/calibration.py``):
#: - ``frozen_head``: the option's adapters alone train ``steps`` steps on the scoring batches
#:   (cycled) against the model's head as it is (frozen, as when the scores were taken);
#: - ``with_head``: the option and the head train together on ``steps`` distinct training batches,
#:   and the same training of the head alone is subtracted, so the signal is what the option adds
#:   to what a trained head gets by itself. A freshly initialised head (every task's head before
#:   training) is what the frozen signal has to get past: on STS-B it left every option's
#:   validation loss rising (reports/stsb-full-cal-83k).
SIGNALS = ("frozen_head", "with_head")


@dataclass(frozen=True)
class CalibrationSpec:
    """``steps`` AdamW steps per option, ``per_kind`` options per kind, ``val_batches`` of the validation split."""

    steps: int = 8
    per_kind: int = 2
    val_batches: int = 4
    lr: float | None = None  # None: the recipe's (recipe.LR)
    signal: str = "frozen_head"  # SIGNALS

    def __post_init__(self) -> None:
        for name in ("steps", "per_kind", "val_batches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
                raise ValueError(f"calibration.{name} must be an integer in [1, 1000], got {value!r}")
        lr = self.lr
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < 1):
            raise ValueError(f"calibration.lr must be a number in (0, 1), got {lr!r}")
        if self.signal not in SIGNALS:
            raise ValueError(f"calibration.signal must be one of {', '.join(SIGNALS)}, got {self.signal!r}")

    def to_dict(self) -> dict[str, Any]:
        """As recorded; the default signal is left implicit, so records written before the setting existed compare equal."""
        d = asdict(self)
        if d["signal"] == "frozen_head":
            d.pop("signal")
        return d

    def as_section(self) -> dict[str, Any]:
        """The YAML section that loads back to this spec."""
        return {k: v for k, v in self.to_dict().items() if v is not None}

    @classmethod
    def from_dict(cls, data: Any, where: Where, path: str) -> CalibrationSpec:
        where.check_keys(path, data, ("steps", "per_kind", "val_batches", "lr", "signal"))
        try:
            return cls(**data)
        except ValueError as exc:
            raise where.fail(path, str(exc)) from None
