"""The short verification training: one loop that reads top to bottom (nanoGPT style).

Defaults (``TrainConfig``) follow the prototype in measured.md: AdamW lr 5e-4, batch 32,
max length 128, alpha = 2r, linear decay with 6 % warm-up. Winner and baselines train with
the same seed, so they see the same data order, schedule and head initialisation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from heterosearch.adapters import apply_allocation, count_adapter_params, head_parameters
from heterosearch.progress import track
from heterosearch.space.allocation import Allocation
from heterosearch.tasks.batching import Encoded, collate, eval_batches, train_batches


@dataclass
class TrainConfig:
    epochs: float = 1.0
    max_steps: int | None = None  # caps the steps of ``epochs`` (for quick checks)
    batch_size: int = 32
    eval_batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup: float = 0.06  # fraction of steps
    max_length: int = 128
    grouped_batches: bool = True
    seed: int = 0

    def steps_for(self, n_examples: int) -> int:
        per_epoch = math.ceil(n_examples / self.batch_size)
        steps = max(1, math.ceil(per_epoch * self.epochs))
        return min(steps, self.max_steps) if self.max_steps else steps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    params: int
    head_params: int
    steps: int
    train_loss: float
    seconds: float
    tokens_per_second: float
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> metrics

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(model: torch.nn.Module, tokenizer: Any, enc: Encoded, spec: Any, batch_size: int) -> dict[str, float]:
    """Metrics of ``model`` on a labelled split (GLUE convention, fractions)."""
    from heterosearch.tasks import compute_metrics

    model.eval()
    preds: list[Any] = []
    order: list[int] = []
    with torch.inference_mode():
        for idx in eval_batches(enc, batch_size):
            batch = collate(tokenizer, enc, idx)
            batch.pop("labels", None)
            logits = model(**batch).logits
            preds.extend(logits.squeeze(-1).tolist() if enc.regression else logits.argmax(-1).tolist())
            order.extend(idx)
    labels = [enc.labels[i] for i in order]  # type: ignore[index]
    return compute_metrics(spec, preds, labels)


def train_allocation(
    model_factory: Callable[[], torch.nn.Module],
    tokenizer: Any,
    sites: list[Any],
    allocation: Allocation,
    scaling: float,
    train: Encoded,
    evals: Mapping[str, Encoded],
    spec: Any,
    cfg: TrainConfig,
    label: str = "train",
) -> TrainResult:
    """Build a fresh model, apply ``allocation``, train the adapters and the head, evaluate."""
    torch.manual_seed(cfg.seed)
    model = model_factory()
    apply_allocation(model, sites, allocation, scaling, seed=cfg.seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_adapter = count_adapter_params(model)
    n_head = sum(p.numel() for p in head_parameters(model).values())

    steps = cfg.steps_for(len(train))
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = int(cfg.warmup * steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup))
    )

    def batches() -> Any:
        epoch = 0
        while True:
            for idx in train_batches(train, cfg.batch_size, cfg.seed, epoch, grouped=cfg.grouped_batches):
                yield idx
            epoch += 1

    model.train()
    losses: list[float] = []
    tokens = 0
    t0 = time.perf_counter()
    stream = batches()
    for _ in track(range(steps), f"train {label}", total=steps):
        idx = next(stream)
        batch = collate(tokenizer, train, idx)
        tokens += int(batch["attention_mask"].sum())
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    seconds = time.perf_counter() - t0

    metrics = {name: evaluate(model, tokenizer, enc, spec, cfg.eval_batch_size) for name, enc in evals.items()}
    return TrainResult(
        params=n_adapter,
        head_params=n_head,
        steps=steps,
        train_loss=float(np.mean(losses[-max(1, len(losses) // 10) :])),
        seconds=seconds,
        tokens_per_second=tokens / seconds if seconds > 0 else 0.0,
        metrics=metrics,
    )
