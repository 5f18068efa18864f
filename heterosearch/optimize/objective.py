"""The one objective every process evaluates (``run``, ``search`` and ``heterosearch worker``),
and the problem it is built from, stored in the study so a worker needs no model (``proxy``)
or rebuilds the run's model from the stored settings (``lookahead``, ``optimize/lookahead.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

PARAM_PREFIX = "rank."
PROBLEM_ATTR = "heterosearch.problem"  # study user attr: the Problem as plain lists
CHOICE_ATTR = "choice"  # trial user attr of journals before enqueue-and-tell: the repaired choice that was evaluated
OBJECTIVE_ATTR = "heterosearch.objective"  # study user attr: {"name": proxy|lookahead, ...} (what workers evaluate)
SOURCE_ATTR = "source"  # trial user attr: "sampler", "baseline", "warm:<name>", each maybe + " (repaired)"
SAMPLER_SOURCE = "sampler"
REPAIRED_ATTR = "repaired"  # trial user attr of a PRUNED over-budget point whose repair was enqueued
REPAIRED_FROM_ATTR = "repaired_from"  # trial user attr: the number of the over-budget trial it repairs
PROXY_VALUE_ATTR = "proxy_objective"  # trial user attr under a non-additive objective: the additive proxy value
PRUNED_BY_ATTR = "pruned_by"  # trial user attr: "pruner" on a trial the study's pruner stopped (objective train)
#: What a search maximises: the additive proxy sum (its exact optimum is the knapsack's), or the
#: drop of validation loss after a few steps of the whole allocation (``optimize/lookahead.py``),
#: or the validation value of a short training pruned by successive halving (``optimize/train_objective.py``).
OBJECTIVES: tuple[str, ...] = ("proxy", "lookahead", "train")


def check_objective(name: Any) -> str:
    """``name`` if it is a known objective, else a one-line ``UserError`` (CLI exit 2)."""
    from heterosearch.errors import UserError
    from heterosearch.registry import unknown_name_message

    if name not in OBJECTIVES:
        raise UserError(unknown_name_message("objective", str(name), list(OBJECTIVES)))
    return str(name)


def problem_from_dict(data: dict[str, Any]) -> Any:
    """The ``search.problem.Problem`` stored in a study."""
    from heterosearch.optimize.problem import Problem

    return Problem.from_dict(data)


def load_problem(study: Any) -> Any:
    """The problem stored in the study (None if it was not made by heterosearch)."""
    stored = study.user_attrs.get(PROBLEM_ATTR)
    return problem_from_dict(stored) if stored is not None else None


def make_objective(problem: Any, evaluate: Callable[[dict[str, Any]], float] | None = None) -> Callable[[Any], float]:
    """The one objective of ``run``/``search`` and of ``heterosearch worker``.

    ``problem`` is a ``search.problem.Problem``; ``evaluate`` (choice -> value) is a
    non-additive objective (``lookahead``), None for the additive proxy objective. An
    ``evaluate`` with ``takes_trial`` (``train``) is called as ``evaluate(choice, trial)``: it
    reports intermediate values and may end the trial PRUNED (its pruner's decision).

    Every COMPLETE trial's ``params`` are the allocation it evaluated, within the budget, so
    ``study.best_params`` and optuna-dashboard show what was scored. Define-by-run cannot
    repair before suggesting (the sampler draws one parameter at a time), so an over-budget
    point is handled by enqueue-and-tell: its repaired choice (``Problem.repair``) is
    enqueued as a new trial (user attrs ``source`` = its source + " (repaired)",
    ``repaired_from`` = this trial's number) and this trial ends PRUNED with
    ``repaired`` = True. The sampler then learns twice: the over-budget point it asked for
    was pruned (TPE ranks a pruned trial without intermediate values below every complete
    one, so it moves away from over-budget regions), and the repaired point carries its true
    value. The enqueued trial is counted by ``claims.claim`` like any waiting trial, so exact
    trial counts still hold with several processes.
    """
    import optuna

    p = problem

    def objective(trial: Any) -> float:
        source = trial.user_attrs.get(SOURCE_ATTR)
        if source is None:
            source = SAMPLER_SOURCE
            trial.set_user_attr(SOURCE_ATTR, source)
        asked = p.suggest(trial)
        choice = p.repair(asked)
        if choice != asked:
            trial.study.enqueue_trial(choice, user_attrs={SOURCE_ATTR: f"{source} (repaired)", REPAIRED_FROM_ATTR: trial.number})
            trial.set_user_attr(REPAIRED_ATTR, True)
            raise optuna.TrialPruned(f"trial {trial.number} is over budget: its repaired allocation is enqueued")
        additive, cost = p.evaluate(choice)
        trial.set_constraint("budget", cost - p.budget)  # always <= 0 now; kept for dashboards and old readers
        trial.set_user_attr("params", cost)
        if evaluate is None:
            return additive
        trial.set_user_attr(PROXY_VALUE_ATTR, additive)
        value = float(evaluate(choice, trial) if getattr(evaluate, "takes_trial", False) else evaluate(choice))
        if not math.isfinite(value):  # Optuna fails a trial that returns NaN: recorded, never ranked
            trial.set_user_attr("error", f"non-finite objective {value}")
            return math.nan
        return value

    return objective


def trial_choice(trial: Any) -> dict[str, Any]:
    """What a finished trial evaluated: its parameters (a journal written before enqueue-and-tell: its ``choice``)."""
    return dict(trial.user_attrs.get(CHOICE_ATTR) or trial.params)


def lora_part(choice: dict[str, Any]) -> dict[str, int]:
    """Site -> rank of the ``rank.<site>`` parameters of a choice (rank 0 left out)."""
    return {k[len(PARAM_PREFIX):]: int(v) for k, v in choice.items() if k.startswith(PARAM_PREFIX) and int(v) > 0}
