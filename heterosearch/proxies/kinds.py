"""Proxy scores of the non-LoRA kinds (shortcut, bank, mos), from the same scoring state.

What is defined, and why (README "Scores across kinds"):

- shortcut: a LoRA-adapted shortcut adds s B A h at a point of the residual stream, which is a
  LoRA site with a zero base map. Its gradient G_s = dL/dS (d x d) at a virtual zero map is
  collected for all 4L-1 candidates by one extra forward/backward per scoring batch, and every
  *data* proxy (grad_norm, snip, spectral) is then computed exactly as for a LoRA site, with the
  same seeded virtual adapter. synflow is undefined (its data-free pass has no shortcut maps).
- bank and mos: one update shared by several sites. ``spectral`` is defined: the first-order
  gain of the best update the bank / pool can express (adapters/bank/scoring.py and
  adapters/mos/scoring.py say exactly how). grad_norm, snip and synflow of a shared tensor at
  init are not defined in a way comparable to per-site scores, so they are reported as
  undefined, never as zeros.

Normalisation across kinds: ``spectral`` values of every kind are first-order loss decreases
of a gradient step in the same units (sum of squared singular values of a loss gradient), so
they are compared raw; the search divides every value by the best single option's value only
to make objectives readable. grad_norm and snip of shortcuts use the same virtual-adapter
convention as LoRA sites, so their units match too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

UNDEFINED = {
    "shortcut": {"synflow": "synflow's data-free pass has no shortcut maps to differentiate"},
    "bank": {
        "grad_norm": "a shared tensor's init-time gradient norm is not comparable to per-site scores",
        "snip": "SNIP of a shared bank at init is not comparable to per-site scores",
        "synflow": "synflow is defined for per-site adapters only",
    },
    "mos": {
        "grad_norm": "a shard pool's init-time gradient norm is not comparable to per-site scores",
        "snip": "SNIP of a shard pool at init is not comparable to per-site scores",
        "synflow": "synflow is defined for per-site adapters only",
    },
}


def membership_layers(membership: str, n_layers: int) -> tuple[int, ...]:
    """all = every layer; lower / upper = the first / second half (the odd middle goes up)."""
    half = n_layers // 2
    if membership == "all":
        return tuple(range(n_layers))
    if membership == "lower":
        return tuple(range(half))
    if membership == "upper":
        return tuple(range(half, n_layers))
    raise ValueError(f"unknown bank membership {membership!r}")


def bank_label(variant: str, rank: int, membership: str) -> str:
    return f"{variant}:r{rank}:{membership}"


def mos_label(r_e: int, rank: int) -> str:
    return f"re{r_e}:r{rank}"


def mos_valid(r_e: int, rank: int, r_p: int, n_layers: int) -> bool:
    """MoS draws rank - r_p public ranks without replacement from a public pool of (r_e - r_p) L."""
    return r_p <= r_e and r_p <= rank and rank - r_p <= (r_e - r_p) * n_layers


def score_kinds(
    model: Any,
    sites: Sequence[Any],
    batches: Sequence[dict[str, Any]],
    space: Any,
    grads: dict[str, dict[str, torch.Tensor]],
    proxies: Sequence[str],
    seed: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    """(values, undefined): values[proxy][kind] holds curves (shortcut) or option values (bank, mos)."""
    from heterosearch.adapters.bank import BankElement, bank_spectral
    from heterosearch.adapters.mos import MosElement, mos_spectral
    from heterosearch.proxies import PROXIES
    from heterosearch.proxies.base import SiteState
    from heterosearch.proxies.state import virtual_adapter

    n_layers = max(s.layer for s in sites) + 1
    values: dict[str, dict[str, Any]] = {p: {} for p in proxies}
    undefined: dict[str, dict[str, str]] = {p: {} for p in proxies}
    for kind in ("shortcut", "bank", "mos"):
        if kind not in space.kinds:
            continue
        for p in proxies:
            if p in UNDEFINED[kind]:
                undefined[p][kind] = UNDEFINED[kind][p]

    if "shortcut" in space.kinds:
        from heterosearch.adapters.shortcut import candidates, shortcut_gradients
        from heterosearch.adapters.shortcut.config import hidden_size

        sc = space.kinds["shortcut"]
        cands = [(layer, c) for layer, c in candidates(n_layers) if c in sc.types]
        G = shortcut_gradients(model, sites, cands, batches)
        d = hidden_size(sites)
        r_max = max(sc.ranks)
        for p in proxies:
            if p in UNDEFINED["shortcut"]:
                continue
            proxy = PROXIES.get(p)()
            curves = {}
            for key, g in G.items():
                pseudo = type("V", (), {"key": key, "d_in": d, "d_out": d})()
                A, B = virtual_adapter(pseudo, r_max, seed)  # type: ignore[arg-type]
                curves[key] = [float(v) for v in proxy.curve(SiteState(g, A, B, 2.0))]
            values[p]["shortcut"] = curves

    data_G = grads.get("data", {})
    if "bank" in space.kinds and "spectral" in proxies:
        bank = space.kinds["bank"]
        out: dict[str, dict[str, float]] = {}
        for role in bank.roles:
            if not any(s.role == role for s in sites):
                continue
            out[role] = {}
            for membership in bank.membership:
                layers = membership_layers(membership, n_layers)
                if len(layers) < 2:
                    continue
                for variant in bank.variants:
                    for rank in bank.ranks:
                        if rank > 0:
                            e = BankElement(role=role, layers=layers, rank=rank, variant=variant)
                            out[role][bank_label(variant, rank, membership)] = bank_spectral(data_G, e)
        values["spectral"]["bank"] = out
    if "mos" in space.kinds and "spectral" in proxies:
        mos = space.kinds["mos"]
        out_m: dict[str, dict[str, float]] = {}
        for role in mos.roles:
            if not any(s.role == role for s in sites):
                continue
            out_m[role] = {}
            for r_e in mos.equivalent_ranks:
                for rank in mos.site_ranks:
                    if r_e > 0 and mos_valid(r_e, rank, mos.private_rank, n_layers):
                        e = MosElement(role=role, r_e=r_e, shards=mos.shards, r_p=mos.private_rank,
                                       ranks={i: rank for i in range(n_layers)})
                        out_m[role][mos_label(r_e, rank)] = mos_spectral(data_G, e)
        values["spectral"]["mos"] = out_m
    return values, undefined
