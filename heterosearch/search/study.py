"""The Optuna study: one readable categorical parameter per site, the budget as a constraint.

Optuna is the engine; heterosearch supplies the objective (sum of normalised proxy scores
of the chosen (site, rank) candidates), the constraint (parameters - budget <= 0 via
``trial.set_constraint``), readable parameter names (``rank.L3.v``) and user attributes
(the exact parameter count). The study lives in a journal file in the run folder, so a run
can be inspected with Optuna's tools and resumed: finished trials are kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heterosearch.progress import track
from heterosearch.search.exact import solve

PARAM_PREFIX = "rank."


@dataclass
class SearchProblem:
    """values/costs: (n_sites, n_ranks); ranks[0] must be 0 (site off, cost 0)."""

    keys: list[str]
    ranks: list[int]
    values: np.ndarray
    costs: np.ndarray
    budget: int

    def evaluate(self, ranks_by_key: dict[str, int]) -> tuple[float, int]:
        idx = {r: j for j, r in enumerate(self.ranks)}
        value = 0.0
        cost = 0
        for i, key in enumerate(self.keys):
            j = idx[ranks_by_key.get(key, 0)]
            value += float(self.values[i, j])
            cost += int(self.costs[i, j])
        return value, cost


@dataclass
class SearchResult:
    best_objective: float
    best_params: int
    best_allocation: dict[str, int]
    exact_objective: float
    exact_params: int
    exact_allocation: dict[str, int]
    trials: int
    feasible_trials: int
    seconds: float
    exact_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.best_objective / self.exact_objective if self.exact_objective > 0 else 1.0


def create_study(storage_path: Path, study_name: str, seed: int) -> Any:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(storage_path)))
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=20)
    return optuna.create_study(
        study_name=study_name, storage=storage, sampler=sampler, direction="maximize", load_if_exists=True
    )


def run_search(
    problem: SearchProblem,
    n_trials: int,
    seed: int,
    storage_path: Path,
    study_name: str = "heterosearch",
    enqueue: dict[str, int] | None = None,
) -> SearchResult:
    """Run (or resume) the study up to ``n_trials`` finished trials, then solve exactly too."""
    import optuna

    study = create_study(storage_path, study_name, seed)
    if enqueue is not None and not study.trials:
        study.enqueue_trial({PARAM_PREFIX + k: enqueue.get(k, 0) for k in problem.keys}, user_attrs={"source": "baseline"})
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    remaining = max(0, n_trials - len(done))

    t0 = time.perf_counter()
    for _ in track(range(remaining), "search: trials", total=remaining):
        trial = study.ask()
        choice = {k: trial.suggest_categorical(PARAM_PREFIX + k, problem.ranks) for k in problem.keys}
        value, cost = problem.evaluate(choice)
        trial.set_constraint("budget", cost - problem.budget)
        trial.set_user_attr("params", cost)
        study.tell(trial, value)
    seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    exact = solve(problem.values, problem.costs, problem.budget)
    exact_seconds = time.perf_counter() - t0
    exact_alloc = {k: problem.ranks[j] for k, j in zip(problem.keys, exact.choice) if problem.ranks[j] > 0}

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    feasible = [t for t in complete if t.user_attrs.get("params", problem.budget + 1) <= problem.budget]
    history = [
        {"number": t.number, "value": t.value, "params": t.user_attrs.get("params"), "feasible": t in feasible}
        for t in complete
    ]
    if feasible:
        best = max(feasible, key=lambda t: t.value)
        best_alloc = {k: int(best.params[PARAM_PREFIX + k]) for k in problem.keys if best.params[PARAM_PREFIX + k] > 0}
        best_value, best_params = float(best.value), int(best.user_attrs["params"])
    else:
        best_alloc, best_value, best_params = {}, 0.0, 0
    return SearchResult(
        best_objective=best_value,
        best_params=best_params,
        best_allocation=best_alloc,
        exact_objective=exact.value,
        exact_params=exact.cost,
        exact_allocation=exact_alloc,
        trials=len(complete),
        feasible_trials=len(feasible),
        seconds=seconds,
        exact_seconds=exact_seconds,
        history=history,
    )
