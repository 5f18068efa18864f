"""``TrainConfig``: the training recipe as data, torch-free (a run's settings build one without loading the loop)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from heterosearch import recipe


@dataclass
class TrainConfig:
    epochs: float = recipe.EPOCHS
    max_steps: int | None = None  # caps the steps of ``epochs`` (for quick checks)
    batch_size: int = recipe.BATCH_SIZE
    eval_batch_size: int = 64
    lr: float = recipe.LR
    weight_decay: float = 0.0
    warmup: float = recipe.WARMUP  # fraction of steps
    max_length: int = recipe.MAX_LENGTH
    grouped_batches: bool = True
    seed: int = 0
    checkpoint_every: int = 25  # steps between checkpoints when a checkpoint path is given (0 = never)

    def steps_for(self, n_examples: int) -> int:
        per_epoch = math.ceil(n_examples / self.batch_size)
        steps = max(1, math.ceil(per_epoch * self.epochs))
        return min(steps, self.max_steps) if self.max_steps else steps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def without_seed(self) -> dict[str, Any]:
        """``to_dict`` minus the seed: what the trainings of one recipe over several seeds share."""
        d = self.to_dict()
        d.pop("seed", None)
        return d
