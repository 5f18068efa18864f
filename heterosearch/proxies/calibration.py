"""Calibrate proxy scores across adapter kinds against a short training signal (optional).

Why: a proxy's raw values are comparable within a kind, not across kinds. ``spectral`` is the
first-order loss decrease of a *gradient-descent* step in weight space, sum sigma_j(G)^2: it
grows with the square of the gradient. Training uses Adam, whose step does not grow with the
gradient (each entry moves by about lr), so the loss decrease a kind actually buys per step
grows roughly linearly with |G|. Kinds whose gradients are large by construction are
overrated: a shortcut reads and writes the residual stream (on all-MiniLM-L6-v2 MRPC its
best candidate scored 9x the best LoRA site at 0.8x the parameters), and a bank's or pool's
gradient is a sum over its member layers. The ``full`` space's winner spent half its budget
on 23 shortcuts and four shared banks that way, and lost to every baseline.

What is measured: per kind of the space, the options of its ``per_kind`` best groups (each
group's best option by raw value), each instantiated alone on a copy of the base model and
trained ``steps`` AdamW steps (the recipe's lr, constant, no weight decay, adapters only:
the head stays frozen, as it was when the scores were taken; eval mode, so no dropout) on the
scoring batches. The signal is the loss decrease on ``val_batches`` from the validation split
(before minus after). Per kind the factor is the median over its options of
signal / raw value, and values are rescaled by factor_kind / factor_lora, so per-site LoRA's
values (and a LoRA-only search) are unchanged and other kinds are put in LoRA's units.
``optimize/build.py`` applies the factors before its normalisation by the best single option.

With the space's ``signal: with_head`` (``space/calibration.py``) each option trains together
with the head on ``steps`` distinct training batches instead, and the same training of the head
alone is subtracted: the frozen signal fails when the head is fresh, because adapters alone
cannot lower a loss that a random head dominates (STS-B: every option's validation loss rose,
reports/stsb-full-cal-83k).

The factors are recorded with every measured point (``scores.json`` meta, ``search.json``).
A kind whose signal is not positive for any option gets no factor (its values stay raw)
and the record says so: the training signal cannot rank it.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from heterosearch.space.calibration import CalibrationSpec

SIGNAL = ("validation-loss decrease after a few AdamW steps of one option alone "
          "(adapters only, head frozen, eval mode), on the scoring batches")
SIGNAL_WITH_HEAD = ("validation-loss decrease after a few AdamW steps of one option and the head on distinct "
                    "training batches (eval mode), minus the same training of the head alone")


def pick_options(space: Any, sites: Sequence[Any], scores: Any, proxy: str, per_kind: int) -> dict[str, list[Any]]:
    """kind -> [(group key, option, raw value)] of its ``per_kind`` best groups, best first."""
    from heterosearch.adapters.kinds import ADAPTER_KINDS
    from heterosearch.optimize.build import option_groups

    best: dict[str, list[tuple[str, Any, float]]] = {}
    for og in option_groups(space, sites):
        vals = ADAPTER_KINDS.get(og.kind).module("options").values(scores, proxy, og)
        if not vals:
            continue
        scored = [(vals[o.label], o) for o in og.options if o.elements and o.label in vals and vals[o.label] > 0]
        if scored:
            value, option = max(scored, key=lambda t: t[0])
            best.setdefault(og.kind, []).append((og.key, option, float(value)))
    return {k: sorted(v, key=lambda t: -t[2])[:per_kind] for k, v in best.items()}


def _mean_loss(model: Any, batches: Sequence[Mapping[str, Any]]) -> float:
    import torch

    with torch.no_grad():
        return sum(float(model(**b).loss) for b in batches) / len(batches)


def measure(model: Any, sites: Sequence[Any], elements: Mapping[str, Sequence[Any]], scale: Any,
            train: Sequence[Mapping[str, Any]], val: Sequence[Mapping[str, Any]], steps: int, lr: float,
            seed: int, train_head: bool = False) -> float:
    """Validation-loss decrease of ``elements`` trained ``steps`` AdamW steps on a copy of ``model``
    (with the head when ``train_head``; ``elements`` empty and ``train_head``: the head alone)."""
    import torch

    from heterosearch.adapters import apply_allocation
    from heterosearch.space.allocation import Allocation

    twin = copy.deepcopy(model)
    torch.manual_seed(seed)
    apply_allocation(twin, sites, Allocation.from_elements(dict(elements)), scale, seed=seed, train_head=train_head)
    twin.eval()  # no dropout: the signal is a function of (option, batches, seed)
    before = _mean_loss(twin, val)
    params = [p for p in twin.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    for step in range(steps):
        twin(**train[step % len(train)]).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return before - _mean_loss(twin, val)


def calibrate(model: Any, sites: Sequence[Any], space: Any, scores: Any, proxy: str,
              train: Sequence[Mapping[str, Any]], val: Sequence[Mapping[str, Any]], spec: CalibrationSpec,
              seed: int) -> dict[str, Any]:
    """The record: per-kind factors (LoRA = 1) and every measured point; ``model`` is not changed."""
    from heterosearch import recipe

    if not train or not val:
        raise ValueError("calibration needs training and validation batches")
    t0 = time.perf_counter()
    lr = spec.lr if spec.lr is not None else recipe.LR
    with_head = spec.signal == "with_head"
    val = val[: spec.val_batches]
    # with_head: what the head alone reaches in the same steps on the same batches is subtracted,
    # so an option is credited only with what it adds (a fresh head learns fast by itself).
    reference = measure(model, sites, {}, space.lora.scaling, train, val, spec.steps, lr, seed, True) if with_head else None
    points: list[dict[str, Any]] = []
    ratios: dict[str, list[float]] = {}
    for kind, picked in pick_options(space, sites, scores, proxy, spec.per_kind).items():
        for key, option, value in picked:
            signal = measure(model, sites, {kind: option.elements}, space.lora.scaling, train, val,
                             spec.steps, lr, seed, with_head)
            if reference is not None:
                signal -= reference
            points.append({"kind": kind, "group": key, "option": str(option.label), "score": value, "signal": signal})
            if signal > 0:
                ratios.setdefault(kind, []).append(signal / value)
    per_kind = {k: statistics.median(v) for k, v in ratios.items()}
    factors: dict[str, float] = {}
    note = None
    if "lora" in per_kind:
        factors = {k: v / per_kind["lora"] for k, v in per_kind.items()}
    else:
        note = "per-site LoRA gave no positive signal: no factors (values stay raw)"
    unranked = sorted({p["kind"] for p in points} - set(factors))
    return {
        "proxy": proxy,
        "signal": SIGNAL_WITH_HEAD if with_head else SIGNAL,
        "spec": {**spec.to_dict(), "lr": lr},
        "train_batches": min(len(train), spec.steps),
        **({"head_alone_decrease": reference} if with_head else {}),
        "factors": factors,
        "uncalibrated": unranked,
        "note": note,
        "points": points,
        "seconds": time.perf_counter() - t0,
    }


def factors_for(scores: Any, proxy: str) -> dict[str, float] | None:
    """The per-kind factors stored with ``scores`` for ``proxy`` (None: not calibrated for it)."""
    record = scores.meta.get("calibration") if isinstance(getattr(scores, "meta", None), dict) else None
    if not record or record.get("proxy") != proxy or not record.get("factors"):
        return None
    return {str(k): float(v) for k, v in record["factors"].items()}


def factors_recorded(scores: Any, proxy: str) -> bool:
    """True when ``scores`` carry a calibration record for ``proxy`` (with or without factors)."""
    record = scores.meta.get("calibration") if isinstance(getattr(scores, "meta", None), dict) else None
    return bool(record) and record.get("proxy") == proxy


def first_batches(tokenizer: Any, enc: Any, batch_size: int, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` batches of an encoded split, drawn as training batches are (seeded shuffle, epoch 0):
    a fixed sample of every length, not the shortest examples that length-sorted eval batches start with."""
    from heterosearch.tasks.batching import collate, train_batches

    return [collate(tokenizer, enc, idx) for idx in train_batches(enc, batch_size, seed, epoch=0)[:n]]
