"""A kind's candidates for the search: option groups whose options carry elements (torch-free).

Each kind's ``options.py`` turns its search-space section into ``OptionGroup``s. An option's
``label`` is what Optuna asks for and the stored problem records (an int or a short string:
Optuna's categorical choices and ``search.json`` need plain JSON values, and keeping them as
they were keeps old studies resumable); its ``elements`` are what choosing it puts in the
allocation. Nothing parses a label: decoding a choice looks the label up in the same groups.

Shapes (``optimize/problem.py`` says why they differ):

- ``site``: one group per site, the per-site decision of a role (LoRA's rank);
- ``free``: an independent decision (a shortcut candidate);
- ``role``: one alternative to all ``site`` groups of a role (one bank, one pool); its first
  option is ``"off"``, and the mode parameter ``mode.<role>`` picks it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from heterosearch.errors import UserError

SHAPES = ("site", "free", "role")


@dataclass(frozen=True)
class Option:
    label: Any  # int or str, as Optuna and search.json see it
    elements: tuple[Any, ...] = ()  # the kind's element dataclasses; () = off


@dataclass(frozen=True)
class OptionGroup:
    key: str  # Optuna parameter name: "rank.L3.v", "shortcut.L3.residual_1", "bank.v"
    kind: str  # the kind whose elements the options carry (also the role's mode name for "role")
    shape: str  # one of SHAPES
    role: str | None  # the site role this group belongs to ("site", "role"); None for "free"
    target: str  # what the kind's scores are keyed by: a site key, a candidate key or a role
    options: tuple[Option, ...]

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"OptionGroup.shape must be one of {', '.join(SHAPES)}; got {self.shape!r}")

    @property
    def labels(self) -> list[Any]:
        return [o.label for o in self.options]

    def option(self, label: Any) -> Option:
        for o in self.options:
            if o.label == label:
                return o
        raise UserError(f"{self.key}: {label!r} is not one of its options ({', '.join(map(str, self.labels))})")


def role_groups(kind: str, roles: Iterable[str], sites: Sequence[Any],
                options_of: Callable[[str, int], Iterable[Option]]) -> list[OptionGroup]:
    """One ``<kind>.<role>`` group per role of ``roles`` that ``sites`` have, in ``roles`` order.

    Its options: ``"off"``, then ``options_of(role, n_layers)`` (the kind's banks or pools of that role).
    """
    n_layers = max(s.layer for s in sites) + 1
    present = {s.role for s in sites}
    return [OptionGroup(f"{kind}.{role}", kind, "role", role, role, (Option("off"), *options_of(role, n_layers)))
            for role in roles if role in present]


def role_values(scores: Any, proxy: str, group: OptionGroup) -> dict[Any, float] | None:
    """A role group's scored alternatives, ``scores.kinds[proxy][kind][role]``, and "off" at 0.

    None when none is scored: the role then gets no alternative of this kind.
    """
    scored = scores.kinds.get(proxy, {}).get(group.kind, {}).get(group.target)
    return {"off": 0.0, **scored} if scored else None
