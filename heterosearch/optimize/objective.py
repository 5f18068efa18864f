"""The one objective every process evaluates (``run``, ``search`` and ``heterosearch worker``),
and the problem it is built from, stored in the study so a worker needs no model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PARAM_PREFIX = "rank."
PROBLEM_ATTR = "heterosearch.problem"  # study user attr: the Problem as plain lists
CHOICE_ATTR = "choice"  # trial user attr: the repaired choice of an over-budget point (what was evaluated)


def problem_from_dict(data: dict[str, Any]) -> Any:
    """The ``search.problem.Problem`` stored in a study."""
    from heterosearch.optimize.problem import Problem

    return Problem.from_dict(data)


def load_problem(study: Any) -> Any:
    """The problem stored in the study (None if it was not made by heterosearch)."""
    stored = study.user_attrs.get(PROBLEM_ATTR)
    return problem_from_dict(stored) if stored is not None else None


def make_objective(problem: Any) -> Callable[[Any], float]:
    """The one objective of ``run``/``search`` and of ``heterosearch worker``.

    ``problem`` is a ``search.problem.Problem``. An over-budget point is repaired (``Problem.repair``): the
    trial's value and ``params`` are those of the repaired choice, stored as the user
    attribute ``choice``; the budget constraint stays recorded (it is then always met).
    """
    p = problem

    def objective(trial: Any) -> float:
        asked = p.suggest(trial)
        choice = p.repair(asked)
        if choice != asked:
            trial.set_user_attr(CHOICE_ATTR, choice)
        value, cost = p.evaluate(choice)
        trial.set_constraint("budget", cost - p.budget)
        trial.set_user_attr("params", cost)
        return value

    return objective


def trial_choice(trial: Any) -> dict[str, Any]:
    """What a finished trial evaluated: its repaired choice, or its parameters if none was needed."""
    return dict(trial.user_attrs.get(CHOICE_ATTR) or trial.params)


def lora_part(choice: dict[str, Any]) -> dict[str, int]:
    """Site -> rank of the ``rank.<site>`` parameters of a choice (rank 0 left out)."""
    return {k[len(PARAM_PREFIX):]: int(v) for k, v in choice.items() if k.startswith(PARAM_PREFIX) and int(v) > 0}
