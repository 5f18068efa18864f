"""Turn a search space + proxy scores into a ``Problem`` and a chosen option set into an Allocation.

Both loop over the kinds of the space; each kind says what its candidates are
(``adapters/<kind>/options.py``: option groups whose options carry elements) and how they are
scored. Costs are the elements' own exact counts (``space.kinds.count_params``), so the budget
the search respects is the one the instantiated model has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from heterosearch.errors import UserError
from heterosearch.optimize.problem import Group, Problem, RoleBlock
from heterosearch.space.allocation import Allocation
from heterosearch.space.kinds import count_params
from heterosearch.space.options import OptionGroup


def _space_kinds(space: Any) -> list[Any]:
    """The space's kinds, in apply order (the order their groups enter the problem)."""
    from heterosearch.adapters.kinds import in_apply_order

    return [k for k in in_apply_order() if k.name in space.kinds]


def option_groups(space: Any, sites: Sequence[Any]) -> list[OptionGroup]:
    """Every kind's option groups over ``sites``, kinds in apply order."""
    return [g for k in _space_kinds(space) for g in k.module("options").groups(space.kinds[k.name], sites)]


def build_problem(space: Any, sites: Sequence[Any], scores: Any, proxy: str, budget: int,
                  calibration: Mapping[str, float] | None = None) -> Problem:
    """Groups per site (LoRA rank), per free candidate (shortcut), and per role its alternatives (bank, MoS).

    ``calibration``: kind -> factor multiplying that kind's raw values before the normalisation
    (``proxies/calibration.py``; kinds it does not name keep factor 1). None: raw values.

    Group order (it is Optuna's parameter order, so it decides the trials): site groups in site
    order, then free groups, then per role (in order of first appearance among the sites) its
    alternatives in kind apply order.
    """
    _ = space.lora  # every space adapts sites with LoRA at least (raises a UserError otherwise)
    kinds = _space_kinds(space)
    undefined = scores.undefined.get(proxy, {})
    for name in space.kinds:  # in the space file's order: the first undefined kind is named
        if name in undefined:
            raise UserError(
                f"proxy {proxy!r} is undefined for kind {name!r} ({undefined[name]}); "
                f"use --proxy spectral or a space without {name}"
            )
    site_map = {s.key: s for s in sites}
    # (option group, problem group, raw values) per shape, kinds in apply order
    by_shape: dict[str, list[tuple[OptionGroup, Group, list[float]]]] = {"site": [], "free": [], "role": []}
    for kind in kinds:
        options = kind.module("options")
        for og in options.groups(space.kinds[kind.name], sites):
            vals = options.values(scores, proxy, og)
            if not vals:
                continue  # nothing scored (a role without banks): no such alternative
            if calibration and kind.name in calibration:  # the hook of proxies/calibration.py
                vals = {label: v * calibration[kind.name] for label, v in vals.items()}
            kept = [o for o in og.options if o.label in vals]
            g = Group(og.key, [o.label for o in kept], [], [count_params(o.elements, site_map) for o in kept])
            by_shape[og.shape].append((og, g, [vals[o.label] for o in kept]))
    raw = [(g, v) for _, g, v in by_shape["site"] + by_shape["free"]]
    site_groups: dict[str | None, list[Group]] = {}
    for og, g, _ in by_shape["site"]:
        site_groups.setdefault(og.role, []).append(g)
    independent = [g for _, g, _ in by_shape["free"]]
    roles: list[RoleBlock] = []
    for role, groups in site_groups.items():
        alts: dict[str, Group] = {}
        for og, g, v in by_shape["role"]:
            if og.role == role:
                raw.append((g, v))
                alts[og.kind] = g
        if alts:
            roles.append(RoleBlock(str(role), groups, alts))
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
    """The Allocation a choice (Optuna params or the exact solution) stands for.

    Each chosen label is looked up in the same option groups the problem was built from; a
    role's site groups count only in its site mode, an alternative only when ``mode.<role>``
    names it.
    """
    groups = {g.key: g for g in option_groups(space, sites)}
    modes = {k[len("mode."):]: v for k, v in choice.items() if k.startswith("mode.")}
    chosen: dict[str, list[Any]] = {}
    for key, value in choice.items():
        g = groups.get(key)
        if g is None:
            continue
        mode = modes.get(g.role or "", g.kind if g.shape == "site" else None)
        if g.shape != "free" and mode != g.kind:
            continue
        elements = g.option(value).elements
        if elements:
            chosen.setdefault(g.kind, []).extend(elements)
    return Allocation.from_elements(chosen)
