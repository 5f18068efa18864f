"""AdaLoRA (PEFT) as a baseline, trained exactly like ``train.train_allocation`` trains an allocation.

Same seed, model factory (so the same head initialisation), batches, AdamW settings and
warm-up/linear-decay schedule; the only differences are AdaLoRA's own: SVD-form adapters
on every site of the space, its orthogonal regulariser (added to the loss by PEFT's
``AdaLoraModel.forward``), and ``update_and_allocate(step)`` after every optimizer step,
which the Hugging Face Trainer does not call for you.

Counting, honestly: AdaLoRA keeps full-size ``init_r`` tensors and masks pruned ranks by
zeroing entries of ``lora_E``, so the trainable tensors never shrink. We report both

- ``params_allocated``: every adapter tensor element (``init_r x (d_in + d_out + 1)`` per site),
- ``params`` (the effective budget count): the kept rank-triplets after the final mask,
  ``kept_r x (d_in + d_out + 1)`` per site, plus ``params_lora_equivalent``
  (``kept_r x (d_in + d_out)``, the LoRA-formula count of the same ranks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from heterosearch.progress import track
from heterosearch.space.scale import as_scale
from heterosearch.tasks.batching import Encoded, collate
from heterosearch.train.loop import batch_stream, make_optimizer, outcome


@dataclass
class AdaLoraResult:
    params: int  # effective: kept triplets x (d_in + d_out + 1)
    params_lora_equivalent: int
    params_allocated: int
    head_params: int
    target_r: int
    init_r: int
    final_ranks: dict[str, int]
    steps: int
    train_loss: float
    seconds: float
    tokens_per_second: float
    schedule: dict[str, int]
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    eval_loss: dict[str, float] = field(default_factory=dict)
    trivial: dict[str, bool] = field(default_factory=dict)


#: At one step PEFT's AdaLoRA has no room for its rank schedule: its
#: update_and_allocate fails with a KeyError. verify skips AdaLoRA below this and says why.
ADALORA_MIN_STEPS = 2


def adalora_schedule(steps: int) -> dict[str, int]:
    """tinit (warm-up without pruning), tfinal (training at the final budget) and deltaT for ``steps``.

    10 % / 20 % of the steps, as in AdaLoRA's GLUE recipes (tinit < total_step - tfinal always).
    """
    tinit = int(0.1 * steps)
    tfinal = int(0.2 * steps)
    if tinit >= steps - tfinal:
        tinit, tfinal = 0, 0
    return {"total_step": steps, "tinit": tinit, "tfinal": tfinal, "deltaT": max(1, steps // 100)}


def train_adalora(
    model_factory: Callable[[], torch.nn.Module],
    tokenizer: Any,
    sites: Sequence[Any],
    target_r: int,
    init_r: int,
    scaling: Any,
    train: Encoded,
    evals: Mapping[str, Encoded],
    spec: Any,
    cfg: Any,
    label: str = "adalora",
) -> AdaLoraResult:
    """Fresh model -> AdaLoRA on ``sites`` -> the training loop of ``train_allocation`` + update_and_allocate."""
    from peft import AdaLoraConfig, get_peft_model

    from heterosearch.train.loop import evaluate_split

    torch.manual_seed(cfg.seed)
    base = model_factory()
    steps = cfg.steps_for(len(train))
    sched = adalora_schedule(steps)
    config = AdaLoraConfig(
        task_type="SEQ_CLS",
        target_modules=[s.name for s in sites],
        init_r=init_r,
        target_r=target_r,
        # PEFT scales by lora_alpha / (current rank): at init_r, the s our LoRA has at init_r.
        lora_alpha=as_scale(scaling).alpha_at(init_r),
        lora_dropout=cfg.lora_dropout,  # the recipe's, as every method trains with
        **sched,
    )
    model = get_peft_model(base, config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    by_site = _adapter_tensors(model, sites)
    allocated = sum(p.numel() for parts in by_site.values() for p in parts.values())
    n_head = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n)

    optimizer, schedule = make_optimizer(trainable, cfg, steps)  # the schedule every method trains with

    model.train()
    losses: list[float] = []
    tokens = 0
    t0 = time.perf_counter()
    stream = batch_stream(train, cfg)
    for step in track(range(steps), f"train {label}", total=steps):
        idx = next(stream)
        batch = collate(tokenizer, train, idx)
        tokens += int(batch["attention_mask"].sum())
        loss = model(**batch).loss  # includes AdaLoRA's orthogonal regulariser
        loss.backward()
        optimizer.step()
        model.base_model.update_and_allocate(step + 1)  # completed steps: the final mask lands at total_step - tfinal
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    seconds = time.perf_counter() - t0

    final = _final_ranks(model, by_site, init_r)
    effective = sum(final[s.key] * (s.d_in + s.d_out + 1) for s in sites)
    lora_equiv = sum(final[s.key] * (s.d_in + s.d_out) for s in sites)
    evaluated = {name: evaluate_split(model, tokenizer, enc, spec, cfg.eval_batch_size) for name, enc in evals.items()}
    return AdaLoraResult(
        params=effective,
        params_lora_equivalent=lora_equiv,
        params_allocated=allocated,
        head_params=n_head,
        target_r=target_r,
        init_r=init_r,
        final_ranks=final,
        steps=steps,
        schedule=sched,
        **outcome(losses, tokens, seconds, evaluated),
    )


def _adapter_tensors(model: torch.nn.Module, sites: Sequence[Any]) -> dict[str, dict[str, torch.nn.Parameter]]:
    """site key -> {"lora_A": p, "lora_B": p, "lora_E": p} of the AdaLoRA adapters."""
    names = {s.name: s.key for s in sites}
    out: dict[str, dict[str, torch.nn.Parameter]] = {s.key: {} for s in sites}
    for n, p in model.named_parameters():
        for part in ("lora_A", "lora_B", "lora_E"):
            marker = f".{part}."
            if marker in n:
                module = n.split(marker)[0]
                for site_name, key in names.items():
                    if module == site_name or module.endswith("." + site_name):
                        out[key][part] = p
    empty = [k for k, v in out.items() if set(v) != {"lora_A", "lora_B", "lora_E"}]
    if empty:
        raise RuntimeError(f"AdaLoRA did not adapt {len(empty)} site(s), e.g. {empty[0]}")
    return out


def _final_ranks(model: torch.nn.Module, by_site: dict[str, dict[str, torch.nn.Parameter]], init_r: int) -> dict[str, int]:
    """Kept ranks per site: the final rank pattern's True entries (non-zero E entries if none was set)."""
    pattern = model.peft_config["default"].rank_pattern or {}
    out = {}
    for key, parts in by_site.items():
        e_param = parts["lora_E"]
        mask = None
        for name, kept in pattern.items():
            if _same_tensor_name(model, name, e_param):
                mask = kept
                break
        if mask is not None:
            out[key] = int(sum(bool(x) for x in mask))
        else:
            out[key] = int((e_param.detach() != 0).sum()) if pattern else init_r
    return out


def _same_tensor_name(model: torch.nn.Module, name: str, param: torch.nn.Parameter) -> bool:
    for prefix in ("", "base_model.model.", "base_model."):
        try:
            if model.get_parameter(prefix + name) is param:
                return True
        except AttributeError:
            continue
    return False
