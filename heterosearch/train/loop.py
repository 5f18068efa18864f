"""The short training of an allocation: one loop that reads top to bottom (nanoGPT style).

``TrainConfig`` (``train/config.py``) holds the recipe; the run's recipe (``RunConfig``) was chosen by the sweep in
``benchmarks/recipe_sweep.py`` on the validation split (reports/README.md): AdamW, batch 32,
max length 128, LoRA scale s = 2 sqrt(2) / sqrt(r), 6 % linear warm-up then linear decay to 0.
Winner and baselines train with the same seed, so they see the same data order, schedule and head initialisation.

With ``checkpoint=PATH`` the loop saves every ``checkpoint_every`` steps the trainable
tensors (adapters + head), optimizer, scheduler, step and RNG state, atomically, and a
killed run resumes from there: the data stream is deterministic per (seed, epoch), so the
resumed run sees the same batches, and the result equals an uninterrupted run's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from heterosearch.adapters import apply_allocation, count_adapter_params, head_parameters
from heterosearch.progress import track
from heterosearch.space.allocation import Allocation
from heterosearch.tasks.batching import Encoded, collate, eval_batches, train_batches
from heterosearch.train.config import TrainConfig
from heterosearch.train.device import autocast, check_precision, grad_scaler, resolve_device, to_device


@dataclass
class TrainResult:
    params: int
    head_params: int
    steps: int
    train_loss: float
    seconds: float
    tokens_per_second: float
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> metrics
    resumed_from: int = 0  # the step a checkpoint resumed this model from (0 = trained in one go)
    eval_loss: dict[str, float] = field(default_factory=dict)  # split -> mean loss per example
    trivial: dict[str, bool] = field(default_factory=dict)  # split -> one class predicted / no correlation

    def summary(self) -> dict[str, Any]:
        """The fields every results file records for one trained model."""
        return {
            "params": self.params,
            "head_params": self.head_params,
            "splits": self.metrics,
            "eval_loss": self.eval_loss,
            "trivial": self.trivial,
            "steps": self.steps,
            "train_loss": self.train_loss,
            "seconds": self.seconds,
            "tokens_per_second": self.tokens_per_second,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(model: torch.nn.Module, tokenizer: Any, enc: Encoded, spec: Any, batch_size: int) -> dict[str, float]:
    """Metrics of ``model`` on a labelled split (GLUE convention, fractions)."""
    return evaluate_with_loss(model, tokenizer, enc, spec, batch_size)[0]


#: A classifier whose most frequent prediction covers at least this share of a split "predicts one class".
ONE_CLASS_SHARE = 0.99
#: A regressor whose |Pearson r| stays below this has learnt only a trivial correlation.
TRIVIAL_CORRELATION = 0.1


def is_trivial(preds: list[Any], regression: bool, metrics: Mapping[str, float]) -> bool:
    """True when a model has learnt nothing usable on a split: it (nearly) always predicts the
    same class (MRPC's majority class scores 68.4 % accuracy and 81.2 F1 that way), or, for
    regression, its predictions barely correlate with the labels."""
    if not preds:
        return True
    if regression:
        return abs(metrics.get("pearson", 0.0)) < TRIVIAL_CORRELATION
    _, counts = np.unique(np.asarray(preds), return_counts=True)
    return bool(counts.max() / len(preds) >= ONE_CLASS_SHARE)


def evaluate_with_loss(model: torch.nn.Module, tokenizer: Any, enc: Encoded, spec: Any, batch_size: int) -> tuple[dict[str, float], float]:
    """(metrics, mean loss per example) on a labelled split."""
    metrics, loss, _ = evaluate_split(model, tokenizer, enc, spec, batch_size)
    return metrics, loss


def evaluate_split(model: torch.nn.Module, tokenizer: Any, enc: Encoded, spec: Any, batch_size: int,
                   precision: str = "fp32") -> tuple[dict[str, float], float, bool]:
    """(metrics, mean loss per example, trivial) on a labelled split (``is_trivial``).

    The loss (cross-entropy; squared error for regression, as the model's training loss) is
    kept because it still ranks models when the metric cannot: after a short training
    every model may predict MRPC's majority class (same accuracy), yet their losses differ.
    """
    from heterosearch.tasks import compute_metrics

    if enc.lm:
        return evaluate_lm(model, tokenizer, enc, batch_size, precision)
    model.eval()
    device = next(model.parameters()).device
    preds: list[Any] = []
    order: list[int] = []
    total = 0.0
    with torch.inference_mode():
        for idx in eval_batches(enc, batch_size):
            batch = to_device(collate(tokenizer, enc, idx), device)
            gold = batch.pop("labels", None)
            with autocast(device, precision):
                logits = model(**batch).logits.float()  # metrics and losses in float32
            if gold is not None:
                if enc.regression:
                    total += float(torch.nn.functional.mse_loss(logits.squeeze(-1).float(), gold.float(), reduction="sum"))
                else:
                    total += float(torch.nn.functional.cross_entropy(logits.float(), gold, reduction="sum"))
            preds.extend(logits.squeeze(-1).tolist() if enc.regression else logits.argmax(-1).tolist())
            order.extend(idx)
    labels = [enc.labels[i] for i in order]  # type: ignore[index]
    metrics = compute_metrics(spec, preds, labels)
    return metrics, total / max(1, len(order)), is_trivial(preds, enc.regression, metrics)


def evaluate_lm(model: torch.nn.Module, tokenizer: Any, enc: Encoded, batch_size: int,
                precision: str = "fp32") -> tuple[dict[str, float], float, bool]:
    """({"loss", "perplexity"}, loss, False) of a causal LM on a split (``tasks/lm.py``).

    loss = mean cross-entropy per target token (response tokens; labels -100 are skipped) over
    the whole split, not a mean of batch means, so it does not depend on the batching;
    perplexity = exp(loss). Lower is better. Never "trivial" (there is no class to collapse to).
    """
    import math

    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.inference_mode():
        for idx in eval_batches(enc, batch_size):
            batch = to_device(collate(tokenizer, enc, idx), device)
            labels = batch.pop("labels")
            with autocast(device, precision):
                logits = model(**batch).logits.float()  # (B, T, vocab)
            # Position t predicts token t + 1, as the model's own loss shifts them.
            target = labels[:, 1:]
            total += float(torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"))
            count += int((target != -100).sum())
    loss = total / max(1, count)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}, loss, False


def make_optimizer(trainable: list[torch.nn.Parameter], cfg: TrainConfig, steps: int) -> tuple[Any, Any]:
    """AdamW with linear warm-up then linear decay to 0: the one schedule every method trains with."""
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = int(cfg.warmup * steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup))
    )
    return optimizer, schedule


def batch_stream(train: Encoded, cfg: TrainConfig) -> Iterator[list[int]]:
    """Endless index batches, epoch after epoch, seeded: the same data order for every method."""
    epoch = 0
    while True:
        yield from train_batches(train, cfg.batch_size, cfg.seed, epoch, grouped=cfg.grouped_batches)
        epoch += 1


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
    checkpoint: Path | None = None,
    save_dir: Path | None = None,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Build a fresh model, apply ``allocation``, train the adapters and the head, evaluate.

    ``checkpoint``: resume from this file if it holds a checkpoint of the same training
    (allocation, schedule, settings), save to it every ``cfg.checkpoint_every`` steps, and
    delete it once the model is trained and evaluated. ``on_step(done)``: called after every
    step instead of drawing a progress bar (``train/parallel.py`` draws one for all its processes).
    """
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    device = resolve_device(cfg.device)
    check_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    model = model_factory()
    apply_allocation(model, sites, allocation, scaling, seed=cfg.seed)  # on the CPU: the same init everywhere
    if cfg.lora_dropout:
        from heterosearch.adapters.lora import set_lora_dropout

        set_lora_dropout(model, cfg.lora_dropout)
    model.to(device)
    scaler = grad_scaler(device, cfg.precision)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_adapter = count_adapter_params(model)
    n_head = sum(p.numel() for p in head_parameters(model).values())

    steps = cfg.steps_for(len(train))
    optimizer, schedule = make_optimizer(trainable, cfg, steps)

    # What a checkpoint must match to be resumed: same allocation, length and settings.
    fingerprint = {"label": label, "allocation": allocation.to_dict(), "steps": steps, "examples": len(train),
                   "config": {k: v for k, v in cfg.to_dict().items() if k != "checkpoint_every"}}
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    losses: list[float] = []
    tokens = 0
    start = 0
    elapsed = 0.0  # training seconds before this process (resumed runs)
    state = load_checkpoint(checkpoint, fingerprint, trained) if checkpoint is not None else None
    if state is not None:
        with torch.no_grad():
            for name, p in trained.items():
                p.copy_(state["trained"][name])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        start, losses, tokens, elapsed = state["step"], list(state["losses"]), state["tokens"], state["seconds"]

    model.train()
    t0 = time.perf_counter()
    stream = batch_stream(train, cfg)
    for _ in range(start):  # the data order is a pure function of (seed, epoch): skip what was trained
        next(stream)
    every = cfg.checkpoint_every if checkpoint is not None else 0
    step_range = range(start, steps) if on_step is not None else track(range(start, steps), f"train {label}", total=steps - start)
    for step in step_range:
        idx = next(stream)
        batch = to_device(collate(tokenizer, train, idx), device)
        tokens += int(batch["attention_mask"].sum())
        with autocast(device, cfg.precision):
            loss = model(**batch).loss
        if scaler is not None:  # fp16: scale the loss so small gradients survive float16
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        done = step + 1
        if on_step is not None:
            on_step(done)
        if every and (done % every == 0 or done == steps):
            assert checkpoint is not None
            save_checkpoint(checkpoint, {
                "fingerprint": fingerprint, "step": done, "trained": {n: p.detach() for n, p in trained.items()},
                "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "torch_rng": torch.get_rng_state(), "losses": losses, "tokens": tokens,
                "seconds": elapsed + time.perf_counter() - t0,
            })
    seconds = elapsed + time.perf_counter() - t0

    evaluated = {name: evaluate_split(model, tokenizer, enc, spec, cfg.eval_batch_size, cfg.precision)
                 for name, enc in evals.items()}
    model.to("cpu")  # saved tensors and the caller's view are on the CPU whatever the device
    if save_dir is not None:  # trained adapters + head, reloadable with heterosearch.load_adapters
        from heterosearch.export.loader import save_adapters

        save_adapters(model, save_dir)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)  # this model is done; the caller records its result
        if checkpoint.parent.name == "checkpoints":
            try:
                checkpoint.parent.rmdir()  # only if no other model's checkpoint is left
            except OSError:
                pass
    return TrainResult(
        params=n_adapter,
        head_params=n_head,
        steps=steps,
        resumed_from=start,
        **outcome(losses, tokens, seconds, evaluated),
    )


def outcome(losses: list[float], tokens: int, seconds: float,
            evaluated: Mapping[str, tuple[dict[str, float], float, bool]]) -> dict[str, Any]:
    """What every short training reports besides its counts (the train stage's and AdaLoRA's).

    train_loss: the mean loss over the last tenth of the steps; per eval split (``evaluate_split``'s
    triple): its metrics, its eval loss and whether the model predicts a single class there.
    """
    return {
        "train_loss": float(np.mean(losses[-max(1, len(losses) // 10) :])),
        "seconds": seconds,
        "tokens_per_second": tokens / seconds if seconds > 0 else 0.0,
        "metrics": {name: m for name, (m, _, _) in evaluated.items()},
        "eval_loss": {name: loss for name, (_, loss, _) in evaluated.items()},
        "trivial": {name: t for name, (_, _, t) in evaluated.items()},
    }


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, rename: never a torn checkpoint."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    for attempt in range(3):  # another process's finished training may remove the empty folder in between
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fh = open(tmp, "wb")
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    try:
        with fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path, fingerprint: dict[str, Any], trained: Mapping[str, torch.nn.Parameter]) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it belongs to this training, else None (it is then overwritten)."""
    from heterosearch.progress import say

    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable: start over rather than fail the run
        say(f"[yellow]checkpoint {path} is unreadable ({type(exc).__name__}); training from the start[/yellow]")
        return None
    saved = state.get("trained", {}) if isinstance(state, dict) else {}
    if (
        not isinstance(state, dict)
        or state.get("fingerprint") != fingerprint
        or set(saved) != set(trained)
        or any(saved[n].shape != p.shape for n, p in trained.items())
    ):
        say(f"[yellow]checkpoint {path} is from other settings; training from the start[/yellow]")
        return None
    say(f"[dim]{fingerprint['label']}: resuming from the checkpoint at step {state['step']}[/dim]")
    return state
