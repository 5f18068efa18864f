"""``heterosearch worker``: join a running search from another process or machine.

The study (made by ``heterosearch run/search --storage URL``) carries the whole search
problem in its user attributes, so a worker needs no model, no data and no proxy pass:
it loads the problem, runs the same objective as ``run`` until the study has the requested
number of COMPLETE trials, and exits. A ``lookahead`` or ``train`` study also stores the run
settings its objective depends on: the worker rebuilds model and data from them (same model and
data paths needed on its machine); a ``train`` worker also sets the study's successive-halving
pruner (pruners are not stored), and its rung values join the other processes' in the storage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heterosearch.errors import UserError
from heterosearch.optimize.objective import OBJECTIVE_ATTR
from heterosearch.optimize.study import (
    HEARTBEAT_INTERVAL,
    TRIALS_ATTR,
    describe,
    iter_trials,
    load_problem,
    make_sampler,
    open_storage,
)
from heterosearch.progress import say, track


@dataclass
class WorkerResult:
    study_name: str
    ran: int  # trials this worker ran (including surplus ones it gave up)
    complete: int  # COMPLETE trials in the study when the worker stopped
    target: int  # COMPLETE trials the study was asked for


def _study_names(storage: Any) -> list[str]:
    """The search studies (job queues of verify and friends share the storage: ``optimize/jobqueue.py``)."""
    import optuna

    from heterosearch.optimize.jobqueue import queue_names

    queues = set(queue_names(storage))
    return sorted(n for n in optuna.get_all_study_names(storage=storage) if n not in queues)


def _find_study(storage: Any, where: str, study_name: str | None, wait: float) -> Any:
    """Load the study (waiting up to ``wait`` seconds for it and for its stored problem)."""
    import optuna

    from heterosearch.registry import unknown_name_message

    deadline = time.monotonic() + wait
    while True:
        names = _study_names(storage)
        name = study_name
        if name is None and len(names) == 1:
            name = names[0]
        if name is not None and name in names:
            study = optuna.load_study(study_name=name, storage=storage)
            if load_problem(study) is not None:
                return study
            problem_missing = True
        else:
            problem_missing = False
        if time.monotonic() >= deadline:
            break
        time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
    if problem_missing:
        raise UserError(
            f"study {name!r} in {where} was not made by heterosearch (no search problem stored); "
            "start it with `heterosearch run --storage URL` or `heterosearch search RUN --storage URL`"
        )
    if not names:
        raise UserError(
            f"no study in {where} yet: start the search with `heterosearch run --storage URL ...` first "
            "(or pass --wait SECONDS to wait for it)"
        )
    if study_name is None:
        raise UserError(f"{where} holds several studies; pick one with --study (available: {', '.join(names)})")
    raise UserError(unknown_name_message("study", study_name, names) + f" in {where}; or pass --wait SECONDS to wait for it")


def run_worker(
    storage: str | Path,
    study_name: str | None = None,
    n_trials: int | None = None,
    seed: int | None = None,
    wait: float = 0.0,
    heartbeat: int = HEARTBEAT_INTERVAL,
) -> WorkerResult:
    """Run trials of an existing study until it has ``n_trials`` (default: the study's own target) COMPLETE trials."""
    if n_trials is not None and n_trials < 1:
        raise UserError(f"--trials must be >= 1, got {n_trials}")
    if wait < 0:
        raise UserError(f"--wait must be >= 0 seconds, got {wait}")
    where = describe(storage)
    backend = open_storage(storage, heartbeat=heartbeat)
    study = _find_study(backend, where, study_name, wait)
    # Each worker samples with its own seed (default: fresh entropy), or all would propose the same points.
    study.sampler = make_sampler(seed)
    problem = load_problem(study)
    assert problem is not None
    target = n_trials if n_trials is not None else int(study.user_attrs.get(TRIALS_ATTR, 0))
    if target < 1:
        raise UserError(f"study {study.study_name!r} does not say how many trials it wants: pass --trials N")
    spec = study.user_attrs.get(OBJECTIVE_ATTR) or {"name": "proxy"}
    evaluate = None
    if spec.get("name") == "lookahead":  # rebuild the run's model and data from the stored settings
        from heterosearch.optimize.lookahead import from_spec

        evaluate = from_spec(spec)
    elif spec.get("name") == "train":
        from heterosearch.optimize import train_objective

        evaluate = train_objective.from_spec(spec)
        study.pruner = evaluate.cfg.pruner()
    elif spec.get("name") != "proxy":
        raise UserError(f"study {study.study_name!r} uses objective {spec.get('name')!r}, which this version cannot evaluate")
    say(f"worker: study {study.study_name!r} on {where}: budget {problem.budget:,}, objective {spec['name']}, "
        f"until {target} trials are complete")
    ran = 0
    for _ in track(iter_trials(study, problem, target, evaluate=evaluate), f"worker {study.study_name}", total=None):
        ran += 1
    from optuna.trial import TrialState

    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    return WorkerResult(study_name=study.study_name, ran=ran, complete=complete, target=target)
