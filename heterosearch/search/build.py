"""Turn a search space + proxy scores into a ``Problem`` and a chosen option set into an Allocation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from heterosearch.errors import UserError
from heterosearch.search.problem import Group, Problem, RoleBlock
from heterosearch.space.allocation import Allocation
from heterosearch.space.budget import bank_params, lora_params, mos_params, shortcut_params

RANK = "rank."
SHORTCUT = "shortcut."


def _membership_layers(membership: str, n_layers: int) -> tuple[int, ...]:
    from heterosearch.proxies.kinds import membership_layers

    return membership_layers(membership, n_layers)


def build_problem(space: Any, sites: Sequence[Any], scores: Any, proxy: str, budget: int) -> Problem:
    """Groups per site (LoRA rank), per shortcut candidate, and per role a bank/MoS alternative."""
    lora = space.lora
    ranks = sorted({0, *lora.ranks})
    for kind in ("shortcut", "bank", "mos"):
        if kind in space.kinds and kind in scores.undefined.get(proxy, {}):
            raise UserError(
                f"proxy {proxy!r} is undefined for kind {kind!r} ({scores.undefined[proxy][kind]}); "
                f"use --proxy spectral or a space without {kind}"
            )
    raw: list[tuple[Group, list[float]]] = []

    lora_groups: dict[str, list[Group]] = {}
    for s in sites:
        g = Group(RANK + s.key, ranks, [], [lora_params(s.d_in, s.d_out, r) for r in ranks])
        raw.append((g, scores.table(proxy, ranks, [s.key])[0].tolist()))
        lora_groups.setdefault(s.role, []).append(g)

    independent: list[Group] = []
    if "shortcut" in space.kinds:
        sc = space.kinds["shortcut"]
        curves = scores.kinds.get(proxy, {}).get("shortcut")
        if curves is None:
            raise UserError(f"scores have no shortcut values for proxy {proxy!r}; rerun scoring")
        d = next(s.d_out for s in sites if s.role == "o")
        for key, curve in curves.items():
            g = Group(SHORTCUT + key, list(sc.ranks), [], [shortcut_params(d, r) for r in sc.ranks])
            raw.append((g, [curve[r] for r in sc.ranks]))
            independent.append(g)

    n_layers = max(s.layer for s in sites) + 1
    roles: list[RoleBlock] = []
    for role, groups in lora_groups.items():
        alts: dict[str, Group] = {}
        site = next(s for s in sites if s.role == role)
        bank_vals = scores.kinds.get(proxy, {}).get("bank", {}).get(role)
        if "bank" in space.kinds and bank_vals:
            labels, costs, vals = ["off"], [0], [0.0]
            for label, v in bank_vals.items():
                variant, r, membership = label.split(":")
                n = len(_membership_layers(membership, n_layers))
                labels.append(label)
                costs.append(bank_params(variant, int(r[1:]), site.d_in, site.d_out, n))
                vals.append(v)
            g = Group(f"bank.{role}", labels, [], costs)
            raw.append((g, vals))
            alts["bank"] = g
        mos_vals = scores.kinds.get(proxy, {}).get("mos", {}).get(role)
        if "mos" in space.kinds and mos_vals:
            labels, costs, vals = ["off"], [0], [0.0]
            for label, v in mos_vals.items():
                r_e = int(label.split(":")[0][2:])
                labels.append(label)
                costs.append(mos_params(r_e, n_layers, site.d_in, site.d_out))
                vals.append(v)
            g = Group(f"mos.{role}", labels, [], costs)
            raw.append((g, vals))
            alts["mos"] = g
        if alts:
            roles.append(RoleBlock(role, groups, alts))
        else:
            independent[:0] = groups
    # Normalise by the best single option, so objectives read alike across proxies and spaces.
    top = max((max(v) for _, v in raw), default=0.0)
    for g, v in raw:
        g.values = [x / top if top > 0 else x for x in v]
    order = {g.key: i for i, (g, _) in enumerate(raw)}
    independent.sort(key=lambda g: order[g.key])
    return Problem(budget=budget, groups=independent, roles=roles)


def decode(choice: dict[str, Any], space: Any, sites: Sequence[Any]) -> Allocation:
    """The Allocation a choice (Optuna params or the exact solution) stands for."""
    n_layers = max(s.layer for s in sites) + 1
    lora: dict[str, int] = {}
    elements: dict[str, list[dict[str, Any]]] = {"shortcut": [], "bank": [], "mos": []}
    modes = {k[len("mode."):]: v for k, v in choice.items() if k.startswith("mode.")}
    for key, value in choice.items():
        if key.startswith(RANK):
            site_key = key[len(RANK):]
            if modes.get(site_key.split(".", 1)[1], "lora") == "lora" and int(value) > 0:
                lora[site_key] = int(value)
        elif key.startswith(SHORTCUT) and int(value) > 0:
            layer, ctype = key[len(SHORTCUT):].split(".", 1)
            elements["shortcut"].append({"layer": int(layer[1:]), "ctype": ctype, "rank": int(value)})
        elif key.startswith("bank.") and value != "off" and modes.get(key[5:]) == "bank":
            variant, r, membership = str(value).split(":")
            elements["bank"].append({"role": key[5:], "layers": list(_membership_layers(membership, n_layers)),
                                     "rank": int(r[1:]), "variant": variant})
        elif key.startswith("mos.") and value != "off" and modes.get(key[4:]) == "mos":
            r_e, r = str(value).split(":")
            mos = space.kinds["mos"]
            elements["mos"].append({"role": key[4:], "r_e": int(r_e[2:]), "shards": mos.shards, "r_p": mos.private_rank,
                                    "ranks": {str(i): int(r[1:]) for i in range(n_layers)}})
    return Allocation(lora=lora, elements=elements)
