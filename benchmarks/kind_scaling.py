"""Diagnostics: the size of each adapter kind's first training step against rank-matched LoRA.

For every case (one kind's element, and per-site LoRA of the same rank on the same sites) a
fresh all-MiniLM-L6-v2 gets the element, takes ONE AdamW step (lr 1e-3, weight decay 0, the
recipe's optimiser; adapters only, the head frozen, eval mode so no dropout) on an MRPC train
batch, and is probed on another batch:

- ``init``: max |logits - base logits| before the step (the "adapted == base at init" rule);
- ``site``: RMS over non-padded tokens of ||delta(x)|| at each member site (the term a wrapper
  or a shortcut adds), averaged over the element's member sites;
- ``hidden``: RMS over tokens of ||h_L - h_L(base)||, the last hidden state's change;
- ``dloss``: probe-batch loss after the step minus before.

Usage (a few minutes at one thread):
    nice -n 5 env OMP_NUM_THREADS=1 python benchmarks/kind_scaling.py [--scale rslora|kind2] [--json out.json]

``--scale rslora`` passes the recipe's rank-stabilised rule to ``apply_allocation`` (what
training does); whether a kind follows it is up to the kind's ``apply``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from typing import Any

import torch

from heterosearch.adapters import apply_allocation, count_adapter_params
from heterosearch.api import _task_batches
from heterosearch.models import discover_sites
from heterosearch.models.loading import load_model
from heterosearch.recipe import LORA_ALPHA, LR
from heterosearch.space.allocation import Allocation
from heterosearch.space.scale import LoraScale

L = 6
ALL = list(range(L))


def bank(role: str, variant: str, rank: int) -> dict[str, Any]:
    return {"role": role, "layers": ALL, "rank": rank, "variant": variant}


def mos(role: str, r_e: int, rank: int) -> dict[str, Any]:
    return {"role": role, "r_e": r_e, "shards": 2, "r_p": 1, "ranks": {str(i): rank for i in ALL}}


def lora_on(role: str, rank: int, layers: list[int] = ALL) -> Allocation:
    return Allocation(lora={f"L{i}.{role}": rank for i in layers})


CASES: list[tuple[str, Allocation, Allocation]] = [
    # (name, element, rank-matched LoRA on the same sites)
    ("lora v r8", lora_on("v", 8), lora_on("v", 8)),
    ("bank v share_ab r8", Allocation(elements={"bank": [bank("v", "share_ab", 8)]}), lora_on("v", 8)),
    ("bank v share_ab r32", Allocation(elements={"bank": [bank("v", "share_ab", 32)]}), lora_on("v", 32)),
    ("bank v share_a r8", Allocation(elements={"bank": [bank("v", "share_a", 8)]}), lora_on("v", 8)),
    ("bank v share_b r8", Allocation(elements={"bank": [bank("v", "share_b", 8)]}), lora_on("v", 8)),
    ("bank v tl6 r8", Allocation(elements={"bank": [bank("v", "tl6", 8)]}), lora_on("v", 8)),
    ("bank ffn_in share_ab r32", Allocation(elements={"bank": [bank("ffn_in", "share_ab", 32)]}), lora_on("ffn_in", 32)),
    ("mos k re8 r16", Allocation(elements={"mos": [mos("k", 8, 16)]}), lora_on("k", 16)),
    ("mos v re2 r4", Allocation(elements={"mos": [mos("v", 2, 4)]}), lora_on("v", 4)),
    # shortcuts: compared with LoRA on the d x d site that adds to the same residual sum (o for
    # the attention residual, a d x d stand-in does not exist for the FFN residual: ffn_out is
    # 1536 -> 384) and with LoRA on q, the d x d site that reads the same source x_l.
    ("shortcut L2 residual_1 r16", Allocation(elements={"shortcut": [{"layer": 2, "ctype": "residual_1", "rank": 16}]}),
     lora_on("o", 16, [2])),
    ("shortcut L2 residual_2 r16", Allocation(elements={"shortcut": [{"layer": 2, "ctype": "residual_2", "rank": 16}]}),
     lora_on("ffn_out", 16, [2])),
    ("shortcut L2 shortcut_sa r16", Allocation(elements={"shortcut": [{"layer": 2, "ctype": "shortcut_sa", "rank": 16}]}),
     lora_on("q", 16, [2])),
    ("shortcut L2 shortcut_ffn r16", Allocation(elements={"shortcut": [{"layer": 2, "ctype": "shortcut_ffn", "rank": 16}]}),
     lora_on("o", 16, [2])),
]


def _mask_rms(t: torch.Tensor, mask: torch.Tensor) -> float:
    """RMS over non-padded tokens of the per-token L2 norm; t: (B, T, d) or (B*T, d)."""
    norms = t.reshape(-1, t.shape[-1]).norm(dim=-1)
    keep = mask.reshape(-1).bool()
    return float(norms[keep].pow(2).mean().sqrt())


def probe(model: Any, batch: dict[str, torch.Tensor]) -> tuple[dict[str, float], torch.Tensor, torch.Tensor, float]:
    """(site delta RMS by module name, last hidden state, logits, loss) on ``batch``."""
    deltas: dict[str, float] = {}
    handles = []
    mask = batch["attention_mask"]
    for name, module in model.named_modules():
        if hasattr(module, "base_layer") and callable(getattr(module, "delta", None)):
            def hook(m: Any, args: Any, out: Any, name: str = name) -> None:
                deltas[name] = _mask_rms(m.delta(args[0]).detach(), mask)
            handles.append(module.register_forward_hook(hook))
        elif type(module).__name__ == "ShortcutTerm":
            def hook2(m: Any, args: Any, out: Any, name: str = name) -> None:
                deltas[name] = _mask_rms(out.detach(), mask)
            handles.append(module.register_forward_hook(hook2))
    try:
        with torch.no_grad():
            out = model(**batch, output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    return deltas, out.hidden_states[-1], out.logits, float(out.loss)


def one_step(base: Any, sites: Any, alloc: Allocation, scale: Any, batches: list[dict[str, torch.Tensor]],
             ref: tuple[torch.Tensor, torch.Tensor, float]) -> dict[str, float]:
    model = copy.deepcopy(base)
    apply_allocation(model, sites, alloc, scale, seed=0, train_head=False)
    model.eval()
    _, h0, logits0, loss0 = probe(model, batches[1])
    init = float((logits0 - ref[1]).abs().max())
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    model(**batches[0]).loss.backward()
    opt.step()
    deltas, h1, _, loss1 = probe(model, batches[1])
    mask = batches[1]["attention_mask"]
    return {
        "params": count_adapter_params(model),
        "init": init,
        "site": sum(deltas.values()) / max(1, len(deltas)),
        "n_sites": len(deltas),
        "hidden": _mask_rms(h1 - ref[0], mask),
        "dloss": loss1 - loss0,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--only", default=None, help="substring of case names to run")
    args = ap.parse_args()
    torch.manual_seed(0)
    base, tok = load_model(None, 2, seed=0)
    sites = discover_sites(base)
    batches = _task_batches("mrpc", tok, 32, 128, 2, seed=0)
    _, h_ref, logits_ref, loss_ref = probe(base, batches[1])
    scale = LoraScale("rslora", LORA_ALPHA)
    rows = []
    for name, element, matched in CASES:
        if args.only and args.only not in name:
            continue
        t0 = time.perf_counter()
        a = one_step(base, sites, element, scale, batches, (h_ref, logits_ref, loss_ref))
        b = one_step(base, sites, matched, scale, batches, (h_ref, logits_ref, loss_ref))
        row = {"case": name, "kind": a, "lora": b, "site_ratio": a["site"] / b["site"],
               "hidden_ratio": a["hidden"] / b["hidden"]}
        rows.append(row)
        print(f"{name:30s} params {a['params']:7d} (LoRA {b['params']:7d})  init {a['init']:.1e}  "
              f"site {a['site']:.4f} vs {b['site']:.4f} (x{row['site_ratio']:.2f})  "
              f"hidden {a['hidden']:.4f} vs {b['hidden']:.4f} (x{row['hidden_ratio']:.2f})  "
              f"dloss {a['dloss']:+.4f} vs {b['dloss']:+.4f}  [{time.perf_counter() - t0:.0f}s]", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
