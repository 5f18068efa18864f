"""``lookahead``: an allocation-level objective that is not additive over sites.

Why: proxy scores are computed per candidate at init, so their sum cannot see how adapters
interact (two sites that learn the same direction, a rank that only helps next to another).
Here the *whole* allocation is instantiated and briefly trained, and the objective is how
much that lowers the validation loss.

The B = 0 pitfall (docs/methods.md section 2): at init every adapter's output is 0, so the
adapted model equals the base model and many gradients vanish; an objective measured there
would be the same for every allocation. So the allocation first takes ``steps`` AdamW steps
(the recipe's lr, constant: too few steps for a warm-up) on small ``fit`` batches; after the first
step B != 0 and every adapter trains. The value is

    value = mean val loss of the starting model - mean val loss after the steps   (nats/example)

on fixed batches of the *carved validation split* (selection data; never the GLUE dev
file, which is the report-only test split). Higher is better. The starting model is the base
model with the head at the run's seed (adapters add 0 at init), so its loss is measured once.

Deterministic: the same seed builds the same head and adapters (``apply_allocation``), the
batches are fixed, and the steps run with dropout off (``model.eval()``): no random draw
happens after init, so one trial's value is a pure function of the allocation (given the
machine's float arithmetic; thread count may change the last bits).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from heterosearch.errors import UserError


@dataclass(frozen=True)
class LookaheadConfig:
    """How one lookahead trial trains and measures (recorded in search.json)."""

    # Sized for a ~4-minute search on MiniLM at one CPU thread (benchmarks/lookahead_seconds.py):
    # one recipe-size step (batch 32 x ~100 tokens) cost ~12 CPU s on the loaded 2-core machine,
    # so a trial is 4 steps of 8 examples plus 64 validation examples (~1.7 such steps).
    steps: int = 4  # AdamW steps on the fit batches (cycled)
    fit_batches: int = 4  # distinct training batches the steps cycle through
    fit_batch_size: int = 8
    val_batches: int = 2  # held-out batches of the validation split
    val_batch_size: int = 32
    lr: float = 1e-3  # the recipe's (recipe.LR); the run passes its own --lr
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "fit_batches", "fit_batch_size", "val_batches", "val_batch_size"):
            if not 1 <= getattr(self, name) <= 10_000:
                raise UserError(f"lookahead {name} must be in [1, 10000], got {getattr(self, name)}")
        if not 0 < self.lr <= 10:
            raise UserError(f"lookahead lr must be in (0, 10], got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Lookahead:
    """``choice -> value``: instantiate, take ``steps`` AdamW steps, return the drop of validation loss.

    ``base``: the task model with its head (not changed: every trial trains a deep copy);
    ``to_allocation``: choice -> ``Allocation`` (``optimize.build.decode``); ``fit``/``val``:
    lists of batch dicts with ``labels`` (train part / validation split).
    """

    def __init__(self, base: Any, sites: Sequence[Any], scaling: Any, to_allocation: Callable[[dict[str, Any]], Any],
                 fit: Sequence[dict[str, Any]], val: Sequence[dict[str, Any]], cfg: LookaheadConfig) -> None:
        if not fit or not val:
            raise UserError("the lookahead objective needs at least one training and one validation batch")
        self.base, self.sites, self.scaling = base, list(sites), scaling
        self.to_allocation, self.cfg = to_allocation, cfg
        self.fit, self.val = list(fit)[: cfg.fit_batches], list(val)[: cfg.val_batches]
        self.start_loss = self._val_loss(self._fresh_head_model())
        self.seconds: list[float] = []  # wall seconds per trained allocation (cache hits excluded)
        self.cpu_seconds: list[float] = []  # CPU seconds of this process, the same (wall time depends on machine load)
        self._cache: dict[str, float] = {}  # a repaired point often equals one already trained: deterministic, so reuse

    def _fresh_head_model(self) -> Any:
        import torch

        torch.manual_seed(self.cfg.seed)
        return copy.deepcopy(self.base)

    def _val_loss(self, model: Any) -> float:
        import torch

        model.eval()
        total, n = 0.0, 0
        with torch.inference_mode():
            for batch in self.val:
                size = int(batch["labels"].shape[0])
                total += float(model(**batch).loss) * size  # mean loss per example (CE, or MSE for regression)
                n += size
        return total / n

    def __call__(self, choice: dict[str, Any]) -> float:
        import torch

        from heterosearch.adapters import apply_allocation

        allocation = self.to_allocation(choice)
        key = json.dumps(allocation.to_dict(), sort_keys=True)
        if key in self._cache:
            return self._cache[key]
        t0, c0 = time.perf_counter(), time.process_time()
        model = self._fresh_head_model()
        apply_allocation(model, self.sites, allocation, self.scaling, seed=self.cfg.seed)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=self.cfg.lr, weight_decay=0.0)
        model.eval()  # dropout off: no random draws after init, so the value is deterministic
        for step in range(self.cfg.steps):
            loss = model(**self.fit[step % len(self.fit)]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        after = self._val_loss(model)
        self.seconds.append(time.perf_counter() - t0)
        self.cpu_seconds.append(time.process_time() - c0)
        value = self.start_loss - after  # NaN/inf if training diverged: the objective fails that trial, never ranks it
        self._cache[key] = value
        return value


def fit_and_val_batches(tokenizer: Any, train: Any, val: Any, cfg: LookaheadConfig
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The run's lookahead batches: seeded random draws of training examples (not length-grouped:
    the first grouped batch is the longest) and of validation examples (not length-sorted)."""
    import numpy as np

    from heterosearch.tasks.batching import collate, train_batches

    if len(val) == 0:
        raise UserError("the lookahead objective needs a validation split: raise --val-fraction")
    fit_idx = train_batches(train, cfg.fit_batch_size, cfg.seed, epoch=0, grouped=False)[: cfg.fit_batches]
    order = np.random.default_rng(cfg.seed).permutation(len(val))[: cfg.val_batches * cfg.val_batch_size].tolist()
    val_idx = [order[i:i + cfg.val_batch_size] for i in range(0, len(order), cfg.val_batch_size)]
    return [collate(tokenizer, train, i) for i in fit_idx], [collate(tokenizer, val, i) for i in val_idx]


#: The run settings a lookahead value depends on (stored in the study: a worker rebuilds the objective from them).
RUN_KEYS = ("task", "model", "space", "seed", "data_dir", "batch_size", "max_length", "lr", "val_fraction", "split_seed")


def spec_for_run(run_cfg: Any, cfg: LookaheadConfig) -> dict[str, Any]:
    """What a lookahead study evaluates: its config and the run settings it was built from."""
    settings = run_cfg.to_dict()
    return {"name": "lookahead", "config": cfg.to_dict(), "run": {k: settings[k] for k in RUN_KEYS}}


def for_run(run: Any, cfg: LookaheadConfig) -> Lookahead:
    """The lookahead objective of a run (``pipeline.RunInputs``): its model, sites, train part and validation split."""
    from heterosearch.optimize.build import decode

    tokenizer = run.tokenizer
    fit, val = fit_and_val_batches(tokenizer, run.encoded["train"], run.encoded["val"], cfg)
    space, sites = run.space, run.sites
    return Lookahead(run.take_model(), run.all_sites, space.lora.scaling, lambda choice: decode(choice, space, sites),
                     fit, val, cfg)


def from_spec(spec: dict[str, Any]) -> Lookahead:
    """Rebuild a study's lookahead objective (``heterosearch worker``): same model, data and settings needed here."""
    from heterosearch.pipeline.config import RunConfig
    from heterosearch.pipeline.inputs import RunInputs

    return for_run(RunInputs(cfg=RunConfig(**spec["run"])), LookaheadConfig(**spec["config"]))


def run_config(run_cfg: Any) -> LookaheadConfig:
    """A run's lookahead settings: the defaults with the run's lr and seed."""
    return LookaheadConfig(lr=run_cfg.lr, seed=run_cfg.seed)
