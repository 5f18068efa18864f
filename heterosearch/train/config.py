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
    lora_dropout: float = 0.0  # on LoRA's input x (PEFT's lora_dropout); LoRA only, not banks, pools or shortcuts
    grouped_batches: bool = True
    seed: int = 0
    checkpoint_every: int = 25  # steps between checkpoints when a checkpoint path is given (0 = never)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (train/device.py): part of the recipe
    device: str = "cpu"  # where it runs (auto | cpu | cuda[:N] | mps): not part of the recipe

    def steps_for(self, n_examples: int) -> int:
        per_epoch = math.ceil(n_examples / self.batch_size)
        steps = max(1, math.ceil(per_epoch * self.epochs))
        return min(steps, self.max_steps) if self.max_steps else steps

    def to_dict(self) -> dict[str, Any]:
        """The recipe as recorded and compared. The device is left out (the same recipe on another
        device is the same experiment); fp32 and no LoRA dropout are left implicit, so files written before the
        precision setting existed still compare equal."""
        d = asdict(self)
        d.pop("device")
        if d["precision"] == "fp32":
            d.pop("precision")
        if not d["lora_dropout"]:
            d.pop("lora_dropout")  # as fp32: recipes recorded before the setting existed compare equal
        return d

    def without_seed(self) -> dict[str, Any]:
        """``to_dict`` minus the seed: what the trainings of one recipe over several seeds share."""
        d = self.to_dict()
        d.pop("seed", None)
        return d
