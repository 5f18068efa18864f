"""The Optuna study: one readable categorical parameter per site, the budget as a constraint.

Optuna is the engine; heterosearch supplies the objective (sum of normalised proxy scores
of the chosen (site, rank) candidates), the constraint (parameters - budget <= 0 via
``trial.set_constraint``), readable parameter names (``rank.L3.v``) and user attributes
(the exact parameter count).

Storage: by default a journal file in the run folder (one machine, any number of
processes); with ``storage="postgresql://..."`` Optuna's RDB storage, so workers on other
machines can join (``heterosearch worker``). Either way the search problem itself (site
keys, ranks, normalised proxy scores, costs, budget) is stored in the study's user
attributes, so a worker rebuilds the objective without a model and proxy scores are
computed once per study. Finished trials are kept: a killed run resumes where it stopped.

The winner is the best feasible COMPLETE trial, except under the tie rule (``tie_rule``): when
trials record a value per seed (``--trial-seeds`` >= 2), the ``warm:uniform_all`` trial stays the
winner unless the best beats it seed by seed by more than the noise.

Storage plumbing is in ``storage.py``, the objective in ``objective.py``, trial claiming and
liveness in ``claims.py``; this module creates studies and runs the loop every process runs.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heterosearch.errors import UserError
from heterosearch.logs import quieter
from heterosearch.optimize.claims import WORKER_ATTR, claim, counts, fail_dead_trials
from heterosearch.optimize.objective import (
    CHOICE_ATTR,
    OBJECTIVE_ATTR,
    PARAM_PREFIX,
    PROBLEM_ATTR,
    PROXY_VALUE_ATTR,
    PRUNED_BY_ATTR,
    REPAIRED_FROM_ATTR,
    SAMPLER_SOURCE,
    SOURCE_ATTR,
    load_problem,
    lora_part,
    make_objective,
    trial_choice,
)
from heterosearch.optimize.storage import (
    HEARTBEAT_INTERVAL,
    STUDY_NAME,
    check_storage,
    default_study_name,
    delete_study,
    describe,
    open_storage,
)
from heterosearch.optimize.tie_rule import tie_rule
from heterosearch.progress import say, track

__all__ = [  # the names other modules use from here (storage and objective names are re-exported for them)
    "CHOICE_ATTR", "HEARTBEAT_INTERVAL", "PARAM_PREFIX", "PROBLEM_ATTR", "STUDY_NAME", "TRIALS_ATTR", "WORKER_ATTR",
    "SearchResult", "check_storage", "create_study", "default_study_name", "delete_study", "describe", "iter_trials",
    "load_problem", "make_sampler", "open_storage", "prepare_study", "run_search", "trial_choice",
]

WINNER_ATTR = "heterosearch.winner_trial"  # study user attr: set when the tie rule picked another trial than best_trial
TRIALS_ATTR = "heterosearch.n_trials"  # study user attr: how many COMPLETE trials were asked for
POLL_SECONDS = 0.5  # how often a process waits for other processes' last trials
IN_MEMORY = ":memory:"  # storage of a study nobody else joins (the Python API): no file written
PROXY_SPEC: dict[str, Any] = {"name": "proxy"}


@dataclass
class SearchResult:
    best_objective: float
    best_params: int
    best_allocation: dict[str, int]  # the LoRA part of best_choice: site -> rank
    exact_objective: float
    exact_params: int
    exact_allocation: dict[str, int]
    trials: int
    feasible_trials: int
    seconds: float
    exact_seconds: float
    exact_frontier: list[tuple[int, float]] = field(default_factory=list)  # the optimum at every smaller budget
    history: list[dict[str, Any]] = field(default_factory=list)
    storage: str = ""  # the journal path or the URL without its password
    study_name: str = STUDY_NAME
    best_choice: dict[str, Any] = field(default_factory=dict)  # Optuna parameters of the best feasible trial
    exact_choice: dict[str, Any] = field(default_factory=dict)  # the same parameters at the exact optimum
    exact: bool = True  # False if the DP had to round costs up to a coarser unit (still feasible)
    best_number: int | None = None  # the winning trial
    best_source: str = ""  # its ``source``: "sampler" (Optuna's own point, maybe repaired), "baseline", "warm:<name>"
    exact_trial_value: float | None = None  # the objective at the knapsack's pick, if it ran as a (warm-start) trial
    pruned_trials: int = 0  # trials the study's pruner stopped (objective train; budget and surplus prunes not counted)
    tie_rule: dict[str, Any] | None = None  # the best trial against warm:uniform_all seed by seed (tie_rule())

    @property
    def ratio(self) -> float:
        return self.best_objective / self.exact_objective if self.exact_objective > 0 else 1.0


def make_sampler(seed: int | None) -> Any:
    """Multivariate TPE; constant liar so parallel workers do not all sample the same point."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=20, constant_liar=True)


def create_study(storage_path: Path | str, study_name: str, seed: int | None) -> Any:
    """Create or load ``study_name`` in ``storage_path`` (a journal path or a storage URL)."""
    import optuna

    backend = None if str(storage_path) == IN_MEMORY else open_storage(storage_path)
    with quieter("optuna"):  # "A new study created ..." is ours to say or not; the caller's optuna logging is untouched
        return optuna.create_study(
            study_name=study_name, storage=backend, sampler=make_sampler(seed),
            direction="maximize", load_if_exists=True,
        )


def prepare_study(
    problem: Any,
    n_trials: int,
    seed: int,
    storage: str | Path,
    study_name: str = STUDY_NAME,
    enqueue: dict[str, Any] | None = None,
    replace_other: bool = False,
    warm_starts: list[tuple[str, dict[str, Any]]] | None = None,
    objective_spec: dict[str, Any] | None = None,
) -> Any:
    """Create (or reopen) the study and store the problem, so ``heterosearch worker`` can join it.

    A study that holds another problem is replaced when ``replace_other`` (the journal in a
    run folder after ``search`` with another budget or proxy); otherwise (a shared storage)
    it is an error. ``warm_starts``: (name, choice) pairs enqueued first in a new study
    (``source`` = ``warm:<name>``); ``objective_spec``: what the trials evaluate (stored, so a
    study of another objective is another search).
    """
    import optuna

    spec = dict(objective_spec or PROXY_SPEC)
    study = create_study(storage, study_name, seed)
    stored = load_problem(study)
    if stored is not None and (not stored.same_as(problem) or study.user_attrs.get(OBJECTIVE_ATTR, PROXY_SPEC) != spec):
        if not replace_other:
            raise UserError(
                f"study {study_name!r} in {describe(storage)} belongs to another search (other scores, sites, budget or "
                "objective); "
                f"use another --out, or delete it: optuna delete-study --study-name {study_name} --storage {describe(storage)}"
            )
        say(f"[dim]search: budget, scores or objective changed, starting a new study in {storage}[/dim]")
        optuna.delete_study(study_name=study_name, storage=study._storage)
        study = create_study(storage, study_name, seed)
        stored = None
    if study.trials:
        # Resumed: reseed so the sampler does not replay the first run's random start-up points.
        study.sampler = make_sampler(seed + len(study.trials))
    if stored is None:
        study.set_user_attr(PROBLEM_ATTR, problem.to_dict())
        if spec != PROXY_SPEC:  # a proxy study stays as it always was (workers default to proxy)
            study.set_user_attr(OBJECTIVE_ATTR, spec)
    if study.user_attrs.get(TRIALS_ATTR) != n_trials:
        study.set_user_attr(TRIALS_ATTR, int(n_trials))
    if not study.trials:
        if enqueue is not None:
            study.enqueue_trial(dict(enqueue), user_attrs={SOURCE_ATTR: "baseline"})
        for name, choice in warm_starts or []:
            study.enqueue_trial(dict(choice), user_attrs={SOURCE_ATTR: f"warm:{name}"})
    return study


def iter_trials(
    study: Any, problem: Any, n_trials: int, poll: float = POLL_SECONDS, stop: Callable[[], bool] | None = None,
    evaluate: Callable[[dict[str, Any]], float] | None = None,
) -> Iterator[int]:
    """Run trials until the study has ``n_trials`` COMPLETE ones; yield after each trial of this process.

    Other processes may run trials of the same study at the same time; this process then
    waits (polling) for their last trials instead of starting surplus ones.
    """
    import optuna

    objective = make_objective(problem, evaluate)

    def guarded(trial: Any) -> float:
        claim(study, trial, n_trials)
        return objective(trial)

    while stop is None or not stop():
        fail_dead_trials(study)
        complete, running, waiting = counts(study)
        if complete >= n_trials:
            return
        if not waiting and complete + running >= n_trials:
            time.sleep(poll)  # the last trials run elsewhere; if one dies, its retry appears as WAITING
            continue
        with warnings.catch_warnings(), quieter("optuna"):  # no INFO line per trial; our progress bar counts them
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # One trial per call: the loop re-counts between trials; heartbeats need optimize().
            study.optimize(guarded, n_trials=1, gc_after_trial=False)
        yield complete


def run_search(
    problem: Any,
    n_trials: int,
    seed: int,
    storage_path: Path | None,
    study_name: str = STUDY_NAME,
    enqueue: dict[str, int] | None = None,
    storage: str | None = None,
    warm_starts: list[tuple[str, dict[str, Any]]] | None = None,
    evaluate: Callable[[dict[str, Any]], float] | None = None,
    objective_spec: dict[str, Any] | None = None,
    pruner: Any = None,
) -> SearchResult:
    """Run (or resume, or join) the study up to ``n_trials`` finished trials, then solve exactly too.

    ``storage`` (a URL, or a journal path, or ``IN_MEMORY``) overrides the journal at
    ``storage_path``. ``evaluate``: a non-additive objective (choice -> value) described by
    ``objective_spec``; None = the additive proxy objective. ``pruner``: the study's Optuna
    pruner in this process (a pruner is not stored: every process that joins sets its own).
    """
    import optuna

    where = storage if storage is not None else storage_path
    if where is None:
        raise ValueError("run_search needs storage_path or storage")
    # Only the run folder's own journal may be replaced; a shared storage may hold other runs' studies.
    study = prepare_study(problem, n_trials, seed, where, study_name, enqueue, replace_other=storage is None,
                          warm_starts=warm_starts, objective_spec=objective_spec)
    if pruner is not None:
        study.pruner = pruner
    if storage is not None and str(storage) != IN_MEMORY:
        say(f"search: study {study_name!r} on {describe(where)}; more workers can join with\n"
            f"  heterosearch worker --storage '{describe(where)}' --study '{study_name}'")
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    remaining = max(0, n_trials - complete)

    t0 = time.perf_counter()
    for _ in track(iter_trials(study, problem, n_trials, evaluate=evaluate), "search: trials", total=remaining):
        pass
    seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    exact = problem.solve()
    exact_seconds = time.perf_counter() - t0

    complete_trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED and t.user_attrs.get(PRUNED_BY_ATTR) == "pruner" for t in study.trials)
    feasible = [t for t in complete_trials if t.user_attrs.get("params", problem.budget + 1) <= problem.budget]
    feasible_numbers = {t.number for t in feasible}
    history = [
        {"number": t.number, "value": t.value, "params": t.user_attrs.get("params"), "feasible": t.number in feasible_numbers,
         "repaired": CHOICE_ATTR in t.user_attrs or REPAIRED_FROM_ATTR in t.user_attrs,
         "source": t.user_attrs.get(SOURCE_ATTR, SAMPLER_SOURCE),
         **({"proxy_objective": t.user_attrs[PROXY_VALUE_ATTR]} if PROXY_VALUE_ATTR in t.user_attrs else {})}
        for t in complete_trials
    ]
    best_number, best_source = None, ""
    tie = None
    if feasible:
        best = max(feasible, key=lambda t: (t.value, -t.number))  # ties: the earliest trial
        best, tie = tie_rule(best, feasible)
        if tie is not None:  # Optuna's own best_trial is the highest mean; say which trial heterosearch chose
            study.set_user_attr(WINNER_ATTR, best.number)
        best_choice = trial_choice(best)
        best_value, best_params = float(best.value), int(best.user_attrs["params"])
        best_number, best_source = best.number, str(best.user_attrs.get(SOURCE_ATTR, SAMPLER_SOURCE))
    else:
        best_choice, best_value, best_params = {}, 0.0, 0
    at_exact = [t for t in feasible if _same_active(problem, trial_choice(t), exact.choice)]
    exact_trial_value = float(at_exact[0].value) if at_exact else None
    return SearchResult(
        best_objective=best_value,
        best_params=best_params,
        best_allocation=lora_part(best_choice),
        exact_objective=exact.value,
        exact_params=exact.cost,
        exact_allocation=lora_part(exact.choice),
        best_choice=best_choice,
        exact_choice=exact.choice,
        exact=exact.exact,
        best_number=best_number,
        best_source=best_source,
        exact_trial_value=exact_trial_value,
        pruned_trials=pruned,
        tie_rule=tie,
        trials=len(complete_trials),
        feasible_trials=len(feasible),
        seconds=seconds,
        exact_seconds=exact_seconds,
        exact_frontier=exact.frontier,
        history=history,
        storage=describe(where),
        study_name=study_name,
    )


def _same_active(problem: Any, a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two choices that stand for the same allocation (inactive decisions ignored)."""
    from heterosearch.optimize.shortlist import active_decisions

    return active_decisions(problem, a) == active_decisions(problem, b)
