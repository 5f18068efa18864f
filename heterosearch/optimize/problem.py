"""The search problem over a mixed space, its Optuna parameterisation and its exact optimum.

Structure (why): per-site LoRA ranks and shortcut ranks are independent choices, one
categorical parameter each (``rank.L3.v``, ``shortcut.L2.residual_1``). Banks and MoS pools
act on *all* sites of one role, and first-order scores of two adapters on the same site
overlap (both capture the same gradient directions), so adding them would double count.
A role that has such alternatives therefore gets a mode, ``mode.v`` in {lora, bank, mos}:
per-site LoRA ranks, or one bank, or one MoS pool. Parameters of the other modes are not
asked for (conditional, define-by-run), so no trial is spent on an invalid combination.

The objective is additive over choices, so the exact optimum under the budget is a
knapsack: a multiple-choice DP over the independent groups, and per role a value function
over capacity (the best of: a sub-DP over its LoRA sites, the best bank, the best pool) that
is combined by a max-plus convolution. Costs are divided by their gcd; if that leaves more
than ``MAX_CELLS`` capacity units, costs are rounded *up* to a coarser unit, which keeps the
answer feasible but possibly not optimal, and ``exact`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_CELLS = 60_000


@dataclass
class Group:
    """One categorical decision: ``labels[0]`` is "off" (value 0, cost 0)."""

    key: str
    labels: list[Any]
    values: list[float]
    costs: list[int]

    def index(self, label: Any) -> int:
        return self.labels.index(label)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "labels": list(self.labels), "values": [float(v) for v in self.values],
                "costs": [int(c) for c in self.costs]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Group:
        return cls(d["key"], list(d["labels"]), [float(v) for v in d["values"]], [int(c) for c in d["costs"]])


@dataclass
class RoleBlock:
    """A role whose sites are adapted by per-site LoRA, or by one of the alternatives."""

    role: str
    lora: list[Group]
    alternatives: dict[str, Group]  # mode name -> group of its options (labels[0] "off" unused)

    @property
    def mode_key(self) -> str:
        return f"mode.{self.role}"

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "lora": [g.to_dict() for g in self.lora],
                "alternatives": {k: g.to_dict() for k, g in self.alternatives.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoleBlock:
        return cls(d["role"], [Group.from_dict(g) for g in d["lora"]],
                   {k: Group.from_dict(g) for k, g in d["alternatives"].items()})


def _assign(choice: dict[str, Any], changes: dict[str, Any]) -> None:
    """Apply ``changes`` to ``choice`` in place; None removes the key."""
    for k, v in changes.items():
        if v is None:
            choice.pop(k, None)
        else:
            choice[k] = v


@dataclass
class ExactResult:
    value: float
    cost: int
    choice: dict[str, Any]
    exact: bool
    unit: int
    # The optimum at every budget up to this one, from the same DP: (budget, value) at each
    # budget (a multiple of ``unit``) where the optimal value rises; the value holds until the next.
    frontier: list[tuple[int, float]] = field(default_factory=list)
    backtrack: Any = field(default=None, repr=False, compare=False)  # capacity units -> optimal choice
    capacity: int = 0  # the solved budget in units

    def choice_at(self, budget: int) -> dict[str, Any]:
        """The optimal choice at any ``budget`` up to the solved one, from the same DP tables (no re-solve)."""
        if self.backtrack is None or budget < 0:
            raise ValueError(f"no frontier choice at budget {budget}")
        return self.backtrack(min(int(budget) // self.unit, self.capacity))


@dataclass
class Problem:
    budget: int
    groups: list[Group] = field(default_factory=list)
    roles: list[RoleBlock] = field(default_factory=list)

    # -- serialisation (stored in the study so workers need no model) --------------------
    def to_dict(self) -> dict[str, Any]:
        return {"budget": int(self.budget), "groups": [g.to_dict() for g in self.groups],
                "roles": [r.to_dict() for r in self.roles]}

    @classmethod
    def from_arrays(cls, keys: Sequence[str], ranks: Sequence[int], values: Any, costs: Any, budget: int,
                    prefix: str = "rank.") -> Problem:
        """One ``<prefix><key>`` group per row: ``values``/``costs`` are (n_keys, n_ranks), ranks[0] = 0 costs 0.

        The plain per-site LoRA problem (benchmarks, tests, array callers)."""
        import numpy as np

        values = np.asarray(values, dtype=np.float64)
        costs = np.asarray(costs, dtype=np.int64)
        groups = [Group(prefix + k, [int(r) for r in ranks], values[i].tolist(), [int(c) for c in costs[i]])
                  for i, k in enumerate(keys)]
        return cls(budget=int(budget), groups=groups)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        return cls(int(d["budget"]), [Group.from_dict(g) for g in d["groups"]], [RoleBlock.from_dict(r) for r in d["roles"]])

    def same_as(self, other: Problem) -> bool:
        return self.to_dict() == other.to_dict()

    def all_groups(self) -> list[Group]:
        out = list(self.groups)
        for rb in self.roles:
            out += rb.lora + list(rb.alternatives.values())
        return out

    # -- Optuna ----------------------------------------------------------------------------
    def suggest(self, trial: Any) -> dict[str, Any]:
        """Ask ``trial`` for one choice per decision (conditional parameters for role modes)."""
        choice: dict[str, Any] = {}
        for g in self.groups:
            choice[g.key] = trial.suggest_categorical(g.key, g.labels)
        for rb in self.roles:
            mode = trial.suggest_categorical(rb.mode_key, ["lora", *rb.alternatives])
            choice[rb.mode_key] = mode
            if mode == "lora":
                for g in rb.lora:
                    choice[g.key] = trial.suggest_categorical(g.key, g.labels)
            else:
                g = rb.alternatives[mode]
                choice[g.key] = trial.suggest_categorical(g.key, g.labels[1:])
        return choice

    def evaluate(self, choice: dict[str, Any]) -> tuple[float, int]:
        """(objective, exact parameter count) of a choice; missing keys mean "off"."""
        value, cost = 0.0, 0
        for g in self.groups:
            j = g.index(choice.get(g.key, g.labels[0]))
            value += g.values[j]
            cost += g.costs[j]
        for rb in self.roles:
            mode = choice.get(rb.mode_key, "lora")
            active = rb.lora if mode == "lora" else [rb.alternatives[mode]]
            for g in active:
                j = g.index(choice.get(g.key, g.labels[0]))
                value += g.values[j]
                cost += g.costs[j]
        return value, cost

    def repair(self, choice: dict[str, Any]) -> dict[str, Any]:
        """The choice brought under the budget greedily; a feasible choice is returned unchanged.

        Why: at 0.5M on MiniLM most uniformly sampled points are over budget, so constrained
        TPE spends most of its trials learning where the budget is (and on a 12-layer model
        100 trials found no feasible point at all). Repairing an over-budget point makes every
        trial count: repeatedly move one active decision to its next cheaper option (the most
        expensive option that costs less; an alternative mode's cheapest option steps to
        "off", i.e. mode lora with every site off), taking the move that loses the least
        objective per parameter saved; then undo the moves that turned out unnecessary. The
        trial keeps the parameters TPE asked for (so its model of the space stays consistent)
        and records the repaired choice, whose value and cost are the trial's.
        """
        out = dict(choice)
        value, cost = self.evaluate(out)
        undo: list[dict[str, Any]] = []  # per move: the keys it changed, with their previous values
        while cost > self.budget:
            best: tuple[float, Group, int, RoleBlock | None] | None = None
            for g, rb in self._active(out):
                j = g.index(out.get(g.key, g.labels[0]))
                lower = [i for i in range(len(g.costs)) if g.costs[i] < g.costs[j]]
                if rb is not None:  # an alternative's own options start at 1; index 0 means "mode off"
                    lower = [i for i in lower if i > 0] or [0]
                if not lower:
                    continue
                i = max(lower, key=lambda k: (g.costs[k], g.values[k]))
                rate = (g.values[j] - g.values[i]) / (g.costs[j] - g.costs[i])
                if best is None or rate < best[0]:
                    best = (rate, g, i, rb)
            assert best is not None, "over budget with nothing left to lower"
            _, g, i, rb = best
            if rb is not None and i == 0:
                changed = {rb.mode_key: "lora", g.key: None, **{lg.key: lg.labels[0] for lg in rb.lora}}
            else:
                changed = {g.key: g.labels[i]}
            undo.append({k: out.get(k) for k in changed})
            _assign(out, changed)
            value, cost = self.evaluate(out)
        # Greedy steps can overshoot (a late big step makes an early small one unnecessary):
        # undo moves, last first, wherever the undo still fits and gains.
        for old in reversed(undo):
            trial = dict(out)
            _assign(trial, old)
            v, c = self.evaluate(trial)
            if c <= self.budget and v > value:
                out, value = trial, v
        return out

    def _active(self, choice: dict[str, Any]) -> list[tuple[Group, RoleBlock | None]]:
        """The decisions in effect under ``choice``; the role block is given for an alternative mode's group."""
        out: list[tuple[Group, RoleBlock | None]] = [(g, None) for g in self.groups]
        for rb in self.roles:
            mode = choice.get(rb.mode_key, "lora")
            out += [(g, None) for g in rb.lora] if mode == "lora" else [(rb.alternatives[mode], rb)]
        return out

    def baseline_choice(self, lora_ranks: dict[str, int]) -> dict[str, Any]:
        """A choice with the given per-site LoRA ranks (``rank.`` keys) and everything else off."""
        choice: dict[str, Any] = {g.key: lora_ranks.get(g.key, g.labels[0]) for g in self.groups}
        for rb in self.roles:
            choice[rb.mode_key] = "lora"
            for g in rb.lora:
                choice[g.key] = lora_ranks.get(g.key, g.labels[0])
        return choice

    # -- exact optimum ---------------------------------------------------------------------
    def solve(self) -> ExactResult:
        costs = [c for g in self.all_groups() for c in g.costs if c > 0]
        unit = int(np.gcd.reduce(np.array(costs, dtype=np.int64))) if costs else 1
        exact = True
        if self.budget // unit > MAX_CELLS:
            unit = math.ceil(self.budget / MAX_CELLS)
            exact = False
        cap = self.budget // unit

        def w(c: int) -> int:
            return -(-c // unit)  # round up: a rounded solution never exceeds the budget

        def group_step(best: np.ndarray, g: Group) -> tuple[np.ndarray, np.ndarray]:
            new = np.full(cap + 1, -math.inf)
            arg = np.zeros(cap + 1, dtype=np.int32)
            for j, (v, c) in enumerate(zip(g.values, g.costs)):
                k = w(c)
                if k > cap:
                    continue
                cand = np.full(cap + 1, -math.inf)
                cand[k:] = best[: cap + 1 - k] + v
                better = cand > new
                new[better] = cand[better]
                arg[better] = j
            return new, arg

        best = np.zeros(cap + 1)  # best[c]: best value at cost <= c units
        picks: list[tuple[str, Any]] = []
        for g in self.groups:
            best, arg = group_step(best, g)
            picks.append(("group", (g, arg)))
        for rb in self.roles:
            # The role's own value function f[c], c = capacity given to the role.
            sub = np.zeros(cap + 1)
            sub_args = []
            for g in rb.lora:
                sub, arg = group_step(sub, g)
                sub_args.append((g, arg))
            f = sub.copy()
            how_mode = np.zeros(cap + 1, dtype=np.int32)  # 0 = lora, i > 0 = alternative i
            how_opt = np.zeros(cap + 1, dtype=np.int32)
            alts = list(rb.alternatives.items())
            for i, (_mode, g) in enumerate(alts, start=1):
                for j in range(1, len(g.labels)):
                    k = w(g.costs[j])
                    if k > cap:
                        continue
                    better = np.zeros(cap + 1, dtype=bool)
                    better[k:] = g.values[j] > f[k:]
                    f[better] = g.values[j]
                    how_mode[better] = i
                    how_opt[better] = j
            # Max-plus convolution of best with f, over the capacities where f steps up.
            steps = [0] + [c for c in range(1, cap + 1) if f[c] > f[c - 1]]
            new = np.full(cap + 1, -math.inf)
            split = np.zeros(cap + 1, dtype=np.int32)
            for c in steps:
                cand = np.full(cap + 1, -math.inf)
                cand[c:] = best[: cap + 1 - c] + f[c]
                better = cand > new
                new[better] = cand[better]
                split[better] = c
            best = new
            picks.append(("role", (rb, split, sub_args, how_mode, how_opt, alts)))

        def backtrack(c: int) -> dict[str, Any]:
            """The optimal choice at capacity ``c`` units (every budget's optimum comes from the same tables)."""
            choice: dict[str, Any] = {}
            for kind, data in reversed(picks):
                if kind == "group":
                    g, arg = data
                    j = int(arg[c])
                    choice[g.key] = g.labels[j]
                    c -= w(g.costs[j])
                else:
                    rb, split, sub_args, how_mode, how_opt, alts = data
                    c_role = int(split[c])
                    c -= c_role
                    i = int(how_mode[c_role])
                    if i == 0:
                        choice[rb.mode_key] = "lora"
                        cc = c_role
                        for g, arg in reversed(sub_args):
                            j = int(arg[cc])
                            choice[g.key] = g.labels[j]
                            cc -= w(g.costs[j])
                    else:
                        mode, g = alts[i - 1]
                        choice[rb.mode_key] = mode
                        choice[g.key] = g.labels[int(how_opt[c_role])]
            return choice

        c = int(np.argmax(best))
        value = float(best[c])
        choice = backtrack(c)
        v, cost = self.evaluate(choice)
        assert abs(v - value) <= 1e-9 * max(1.0, abs(value)), (v, value)
        rises = [0] + [k for k in range(1, cap + 1) if best[k] > best[k - 1]]
        frontier = [(k * unit, float(best[k])) for k in rises if math.isfinite(best[k])]
        return ExactResult(value=v, cost=cost, choice=choice, exact=exact, unit=unit, frontier=frontier,
                           backtrack=backtrack, capacity=cap)
