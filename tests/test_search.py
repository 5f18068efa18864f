"""The exact multiple-choice knapsack and the resumable Optuna study."""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from heterosearch.optimize import PARAM_PREFIX, Problem, run_search
from heterosearch.optimize.objective import trial_choice
from heterosearch.optimize.storage import open_storage


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HETEROSEARCH_QUIET", "1")


@pytest.fixture
def journal_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder for study journals, on tmpfs when there is one: the journal fsyncs every append."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="hs-test-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- exact solve


def solve(values: np.ndarray, costs: np.ndarray, budget: int) -> Any:
    """``Problem.solve`` on an array problem, with the choice as one option index per row."""
    from types import SimpleNamespace

    values = np.asarray(values, dtype=np.float64)
    n_sites, n_choices = values.shape
    keys = [f"g{i}" for i in range(n_sites)]
    result = Problem.from_arrays(keys, list(range(n_choices)), values, costs, budget, prefix="").solve()
    return SimpleNamespace(value=result.value, cost=result.cost, choice=[int(result.choice[k]) for k in keys])


def brute_force(values: np.ndarray, costs: np.ndarray, budget: int) -> float:
    n_sites, n_choices = values.shape
    best = -math.inf
    for choice in itertools.product(range(n_choices), repeat=n_sites):
        if sum(int(costs[i, c]) for i, c in enumerate(choice)) <= budget:
            best = max(best, sum(float(values[i, c]) for i, c in enumerate(choice)))
    return best


def random_problem(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    n_sites = int(rng.integers(1, 6))
    n_choices = int(rng.integers(2, 5))
    unit = int(rng.choice([1, 3, 7, 384]))
    costs = rng.integers(1, 25, size=(n_sites, n_choices)) * unit
    costs[:, 0] = 0  # choice 0 = off, free
    if rng.random() < 0.5:  # real objective: non-negative, 0 when off
        values = rng.random((n_sites, n_choices))
        values[:, 0] = 0.0
    else:  # anything goes, negative values and a non-zero "off" value included
        values = rng.normal(size=(n_sites, n_choices))
    budget = int(rng.integers(0, int(costs.max(axis=1).sum()) + 2))
    return values, costs, budget


def test_solve_equals_brute_force_on_random_problems() -> None:
    rng = np.random.default_rng(1234)
    binding = 0
    for _ in range(200):
        values, costs, budget = random_problem(rng)
        result = solve(values, costs, budget)
        n_sites, n_choices = values.shape
        assert len(result.choice) == n_sites and all(0 <= c < n_choices for c in result.choice)
        chosen_cost = sum(int(costs[i, c]) for i, c in enumerate(result.choice))
        chosen_value = sum(float(values[i, c]) for i, c in enumerate(result.choice))
        assert result.cost == chosen_cost <= budget
        assert result.value == pytest.approx(chosen_value, abs=1e-9)
        assert result.value == pytest.approx(brute_force(values, costs, budget), abs=1e-9)
        binding += result.choice != [int(np.argmax(values[i])) for i in range(n_sites)]
    assert binding > 50  # the budget actually constrained many of the problems


def test_solve_edge_cases() -> None:
    values = np.array([[0.0, 1.0, 3.0], [0.0, 2.25, 2.5]])
    costs = np.array([[0, 10, 20], [0, 10, 20]])
    assert solve(values, costs, 0).choice == [0, 0]
    assert solve(values, costs, 9).choice == [0, 0]
    r = solve(values, costs, 20)
    assert (r.choice, r.value, r.cost) == ([1, 1], 3.25, 20)  # 1 + 2.25 beats 3 + 0
    r = solve(values, costs, 30)
    assert (r.choice, r.value, r.cost) == ([2, 1], 5.25, 30)
    r = solve(values, costs, 10**6)
    assert (r.choice, r.value, r.cost) == ([2, 2], 5.5, 40)
    # Too many capacity units for an exact DP: costs are rounded up to a coarser unit, so the
    # answer stays feasible (and here is still the optimum), and Problem.solve says it is not exact.
    r = solve(values, costs // 10, 10**9)
    assert (r.choice, r.cost) == ([2, 2], 4)
    from heterosearch.optimize.problem import Group, Problem

    coarse = Problem(10**9, [Group("g", [0, 1], [0.0, 1.0], [0, 1])]).solve()
    assert not coarse.exact and coarse.cost <= 10**9


# ---------------------------------------------------------------- Optuna study

LAYERS = 4
ROLE_DIMS = {"q": 64, "v": 64, "ffn_in": 96}  # d_in + d_out
RANKS = [0, 1, 2, 4, 8]
KEYS = [f"L{layer}.{role}" for layer in range(LAYERS) for role in ROLE_DIMS]
BASELINE = {k: 4 for k in KEYS if k.endswith((".q", ".v"))}


def ranked(ranks: dict[str, int]) -> dict[str, int]:
    """Site -> rank as the problem's choice (every site, ``rank.`` keys)."""
    return {PARAM_PREFIX + k: ranks.get(k, 0) for k in KEYS}


def plain(choice: dict[str, Any]) -> dict[str, int]:
    return {k[len(PARAM_PREFIX):]: int(r) for k, r in choice.items()}


def synthetic_problem() -> Problem:
    rng = np.random.default_rng(7)
    costs = np.array([[r * ROLE_DIMS[k.split(".")[1]] for r in RANKS] for k in KEYS], dtype=np.int64)
    weights = rng.random(len(KEYS)) + 0.1
    values = np.array([[w * math.log1p(r) for r in RANKS] for w in weights])
    budget = sum(costs[i, RANKS.index(4)] for i, k in enumerate(KEYS) if k in BASELINE)  # uniform q,v r=4
    return Problem.from_arrays(KEYS, RANKS, values, costs, int(budget))


def load_trials(path: Path) -> list[Any]:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="heterosearch", storage=JournalStorage(JournalFileBackend(str(path))))
    return study.trials


def test_problem_evaluate() -> None:
    p = synthetic_problem()
    assert len(p.groups) == 12 and p.budget == 8 * 4 * 64 == 2048
    assert p.evaluate({}) == (0.0, 0)
    value, cost = p.evaluate(ranked(BASELINE))
    assert cost == 2048
    assert value == pytest.approx(sum(p.groups[KEYS.index(k)].values[RANKS.index(4)] for k in BASELINE))
    assert p.evaluate(ranked({"L0.ffn_in": 8})) == (pytest.approx(p.groups[2].values[4]), 8 * 96)


def test_run_search_records_resumes_and_is_seeded(journal_dir: Path) -> None:
    import optuna

    problem = synthetic_problem()
    journal = journal_dir / "study.journal"
    result = run_search(problem, n_trials=40, seed=0, storage_path=journal, enqueue=ranked(BASELINE))
    everything = load_trials(journal)
    trials = [t for t in everything if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == result.trials == 40
    assert [t.number for t in everything] == list(range(len(everything)))

    names = {PARAM_PREFIX + k for k in KEYS}
    for t in trials:  # a complete trial's params are what it evaluated, within the budget
        assert set(t.params) == names
        assert all(re.fullmatch(r"rank\.L\d+\.(q|v|ffn_in)", n) for n in t.params)
        evaluated = {n[len(PARAM_PREFIX):]: r for n, r in t.params.items()}
        value, cost = problem.evaluate(ranked(evaluated))
        assert t.user_attrs["params"] == cost <= problem.budget
        assert t.value == pytest.approx(value)
        assert t.constraints == {"budget": cost - problem.budget}
    # Over-budget points asked by the sampler end PRUNED; their repair is the trial that says it repairs them.
    over = [t for t in everything if t.user_attrs.get("repaired")]
    assert all(t.state == optuna.trial.TrialState.PRUNED and problem.evaluate(t.params)[1] > problem.budget for t in over)
    repairs = {t.user_attrs["repaired_from"]: t for t in everything if "repaired_from" in t.user_attrs}
    assert sorted(repairs) == [t.number for t in over]
    for t in over:
        fixed = repairs[t.number]
        assert fixed.number > t.number and fixed.params == problem.repair(t.params)
        assert all(fixed.params[k] <= t.params[k] for k in names)  # repair only lowers ranks
        assert fixed.user_attrs["source"] == "sampler (repaired)"
    assert "rank.L3.v" in trials[0].params

    baseline = trials[0]
    assert baseline.user_attrs["source"] == "baseline"
    assert baseline.params == {PARAM_PREFIX + k: BASELINE.get(k, 0) for k in KEYS}
    assert baseline.user_attrs["params"] == problem.budget  # exactly on budget: feasible
    assert [t.user_attrs.get("source") for t in trials].count("baseline") == 1

    feasible = [t for t in trials if t.user_attrs["params"] <= problem.budget]
    assert result.feasible_trials == len(feasible) == 40
    repaired = sum("repaired_from" in t.user_attrs for t in trials)
    assert 0 < repaired < 40  # the budget bites: some sampled points were over it and repaired
    assert sum(h["repaired"] for h in result.history) == repaired
    assert result.best_params <= problem.budget
    assert result.best_objective == max(t.value for t in feasible)
    assert result.best_objective >= baseline.value
    assert problem.evaluate(ranked(result.best_allocation)) == (pytest.approx(result.best_objective), result.best_params)
    assert all(r > 0 for r in result.best_allocation.values())
    assert result.exact_params <= problem.budget
    assert problem.evaluate(ranked(result.exact_allocation)) == (pytest.approx(result.exact_objective), result.exact_params)
    assert result.exact_objective >= result.best_objective - 1e-12
    assert 0 < result.ratio <= 1 + 1e-9
    assert [h["number"] for h in result.history] == [t.number for t in trials]
    assert sum(h["feasible"] for h in result.history) == len(feasible)
    study = optuna.load_study(study_name="heterosearch", storage=open_storage(journal))
    assert study.best_params == trial_choice(study.best_trial)  # what was scored
    assert problem.evaluate(study.best_params)[1] <= problem.budget

    # Resume: 10 more trials, earlier ones kept as they were, the baseline not enqueued again.
    resumed = run_search(problem, n_trials=50, seed=0, storage_path=journal, enqueue=ranked(BASELINE))
    again_all = load_trials(journal)
    again = [t for t in again_all if t.state == optuna.trial.TrialState.COMPLETE]
    assert resumed.trials == len(again) == 50
    for old, new in zip(everything, again_all[: len(everything)], strict=True):
        assert (old.params, old.value, old.user_attrs) == (new.params, new.value, new.user_attrs)
    assert [t.user_attrs.get("source") for t in again].count("baseline") == 1

    def asked(ts: list[Any]) -> set[Any]:  # the points the sampler itself proposed
        return {tuple(sorted(t.params.items())) for t in ts if t.user_attrs.get("source") == "sampler"}

    assert not asked(again_all[len(everything):]) & asked(everything)  # the resumed sampler does not replay old points
    assert resumed.best_objective >= result.best_objective
    # Asking for fewer trials than exist runs none.
    assert run_search(problem, n_trials=30, seed=0, storage_path=journal).trials == 50

    # Same seed, fresh journal: the same study; another seed: another one.
    twin = run_search(problem, n_trials=40, seed=0, storage_path=journal_dir / "twin.journal", enqueue=ranked(BASELINE))
    assert twin.best_objective == result.best_objective
    assert twin.history == result.history
    other = run_search(problem, n_trials=40, seed=1, storage_path=journal_dir / "other.journal", enqueue=ranked(BASELINE))
    assert [h["value"] for h in other.history] != [h["value"] for h in result.history]


def test_run_search_at_budget_zero_repairs_to_everything_off(journal_dir: Path) -> None:
    problem = synthetic_problem()
    problem.budget = 0  # only "everything off" fits, which random sampling does not hit in 3 trials
    result = run_search(problem, n_trials=3, seed=0, storage_path=journal_dir / "s.journal")
    assert result.trials == result.feasible_trials == 3
    assert all(h["repaired"] and h["params"] == 0 for h in result.history)
    assert (result.best_objective, result.best_params, result.best_allocation) == (0.0, 0, {})
    assert (result.exact_objective, result.exact_params, result.exact_allocation) == (0.0, 0, {})
    assert result.ratio == 1.0


def test_other_problem_on_the_same_journal_starts_over(journal_dir: Path) -> None:
    from heterosearch.optimize.study import PROBLEM_ATTR, create_study

    journal = journal_dir / "s.journal"
    problem = synthetic_problem()
    assert run_search(problem, n_trials=4, seed=0, storage_path=journal).trials == 4
    study = create_study(journal, "heterosearch", 0)
    assert Problem.from_dict(study.user_attrs[PROBLEM_ATTR]).same_as(problem)
    assert run_search(problem, n_trials=6, seed=0, storage_path=journal).trials == 6  # same problem: resumed

    smaller = synthetic_problem()
    smaller.budget = 1000
    result = run_search(smaller, n_trials=3, seed=0, storage_path=journal)
    assert result.trials == 3  # the six trials of the other budget are gone
    assert sum(t.state.name == "COMPLETE" for t in load_trials(journal)) == 3  # (plus pruned over-budget points)
    assert create_study(journal, "heterosearch", 0).user_attrs[PROBLEM_ATTR]["budget"] == 1000
    assert result.exact_params <= 1000


def random_mixed_problem(rng: np.random.Generator) -> Any:
    """Independent groups plus two roles with LoRA sites and bank/MoS-like alternatives."""
    from heterosearch.optimize.problem import Group, Problem, RoleBlock

    def group(key: str, n: int, off: Any = 0, labels: list[Any] | None = None) -> Group:
        labels = labels or [off, *range(1, n)]
        costs = [0, *sorted(int(c) for c in rng.integers(1, 60, n - 1))]
        return Group(key, labels, [0.0, *rng.uniform(-0.1, 1.0, n - 1).tolist()], costs)

    roles = [
        RoleBlock(role, [group(f"rank.L{i}.{role}", 4) for i in range(3)],
                  {"bank": group(f"bank.{role}", 3, labels=["off", "share_a:2", "share_ab:4"]),
                   "mos": group(f"mos.{role}", 2, labels=["off", "mos:4"])})
        for role in ("v", "o")
    ]
    groups = [group(f"shortcut.L{i}", 3) for i in range(2)]
    return Problem(budget=int(rng.integers(0, 200)), groups=groups, roles=roles)


def random_choice(problem: Any, rng: np.random.Generator) -> dict[str, Any]:
    choice: dict[str, Any] = {g.key: g.labels[rng.integers(len(g.labels))] for g in problem.groups}
    for rb in problem.roles:
        mode = ["lora", *rb.alternatives][rng.integers(1 + len(rb.alternatives))]
        choice[rb.mode_key] = mode
        if mode == "lora":
            choice.update({g.key: g.labels[rng.integers(len(g.labels))] for g in rb.lora})
        else:
            g = rb.alternatives[mode]
            choice[g.key] = g.labels[1 + rng.integers(len(g.labels) - 1)]
    return choice


def test_repair_fits_the_budget_and_leaves_feasible_choices_alone() -> None:
    rng = np.random.default_rng(0)
    repaired = 0
    for _ in range(300):
        problem = random_mixed_problem(rng)
        choice = random_choice(problem, rng)
        value, cost = problem.evaluate(choice)
        out = problem.repair(choice)
        v2, c2 = problem.evaluate(out)
        assert c2 <= problem.budget
        if cost <= problem.budget:
            assert out == choice
        else:
            repaired += 1
            assert c2 < cost
            # Every decision still in effect is at most as expensive as before.
            for g, _ in problem._active(out):
                before = choice.get(g.key, g.labels[0])
                assert g.costs[g.index(out.get(g.key, g.labels[0]))] <= g.costs[g.index(before)]
            assert v2 <= problem.solve().value + 1e-9
    assert repaired > 50


def test_repair_takes_the_cheapest_loss_per_parameter_first() -> None:
    from heterosearch.optimize.problem import Group, Problem, RoleBlock

    # a: each step down saves 10 parameters and loses 1.0 (0.1 per parameter);
    # b: 2 -> 1 loses 0.2 (0.02 per parameter), 1 -> 0 loses 0.9 (0.09): b goes first, twice.
    a = Group("rank.a", [0, 1, 2], [0.0, 1.0, 2.0], [0, 10, 20])
    b = Group("rank.b", [0, 1, 2], [0.0, 0.9, 1.1], [0, 10, 20])
    p = Problem(budget=30, groups=[a, b])
    assert p.repair({"rank.a": 2, "rank.b": 2}) == {"rank.a": 2, "rank.b": 1}
    p.budget = 10
    assert p.repair({"rank.a": 2, "rank.b": 2}) == {"rank.a": 1, "rank.b": 0}
    # An alternative mode at its cheapest option steps to "off": mode lora with every site off.
    bank = Group("bank.v", ["off", "share_ab:4"], [0.0, 5.0], [0, 40])
    role = RoleBlock("v", [Group("rank.L0.v", [0, 8], [0.0, 1.0], [0, 16])], {"bank": bank})
    p = Problem(budget=20, groups=[a], roles=[role])
    out = p.repair({"rank.a": 1, "mode.v": "bank", "bank.v": "share_ab:4"})
    assert out == {"rank.a": 1, "mode.v": "lora", "rank.L0.v": 0}
    assert p.evaluate(out) == (1.0, 10)


def test_exact_solve_returns_the_frontier_of_every_smaller_budget() -> None:
    rng = np.random.default_rng(99)
    for _ in range(30):
        values, costs, budget = random_problem(rng)
        values = np.abs(values)
        values[:, 0] = 0.0
        n_sites, n_choices = values.shape
        keys = [f"g{i}" for i in range(n_sites)]
        res = Problem.from_arrays(keys, list(range(n_choices)), values, costs, budget, prefix="").solve()
        assert res.frontier[0] == (0, 0.0) and res.frontier[-1][1] == pytest.approx(res.value)
        xs = [b for b, _ in res.frontier]
        ys = [v for _, v in res.frontier]
        assert xs == sorted(xs) and ys == sorted(ys) and all(b <= budget for b in xs)
        for b, v in res.frontier:  # each point is the exact optimum at its own budget
            assert v == pytest.approx(brute_force(values, costs, b), abs=1e-9)
            assert brute_force(values, costs, b - 1) < v - 1e-12 if b > 0 else True
