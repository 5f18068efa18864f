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

Counting: a study is done when it has ``n_trials`` COMPLETE trials. Several processes never
overshoot that number: before it evaluates, a trial checks that the COMPLETE trials plus the
unfinished ones created before it leave room for it, and otherwise ends PRUNED with the
user attribute ``surplus`` (see ``_claim``). Trials of dead processes are failed (heartbeat
on RDB storages; a dead pid on this machine or a long silence on journal files) and retried
with the same parameters up to ``MAX_RETRY`` times.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heterosearch.errors import UserError
from heterosearch.progress import say, track

PARAM_PREFIX = "rank."
STUDY_NAME = "heterosearch"  # the study in a run folder's journal file
PROBLEM_ATTR = "heterosearch.problem"  # study user attr: the SearchProblem as plain lists
TRIALS_ATTR = "heterosearch.n_trials"  # study user attr: how many COMPLETE trials were asked for
WORKER_ATTR = "worker"  # trial user attr: which process runs it (host identity + pid)
SURPLUS_ATTR = "surplus"  # trial user attr on a trial that was not needed (PRUNED)
CHOICE_ATTR = "choice"  # trial user attr: the repaired choice of an over-budget point (what was evaluated)

HEARTBEAT_INTERVAL = 10  # seconds between heartbeats of a running trial (RDB storages)
MAX_RETRY = 3  # a trial whose process died is retried with the same parameters this often
POLL_SECONDS = 0.5  # how often a process waits for other processes' last trials
# A trial is pure arithmetic (well under a second): one RUNNING this long has lost its process.
STALE_AFTER_SECONDS = 120


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (floats round-trip exactly through JSON)."""
        return {
            "keys": list(self.keys),
            "ranks": [int(r) for r in self.ranks],
            "values": np.asarray(self.values, dtype=np.float64).tolist(),
            "costs": np.asarray(self.costs, dtype=np.int64).tolist(),
            "budget": int(self.budget),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchProblem:
        return cls(
            keys=list(data["keys"]),
            ranks=[int(r) for r in data["ranks"]],
            values=np.asarray(data["values"], dtype=np.float64),
            costs=np.asarray(data["costs"], dtype=np.int64),
            budget=int(data["budget"]),
        )

    def as_problem(self) -> Any:
        """The same problem as a ``search.problem.Problem`` (one ``rank.<site>`` group per site)."""
        from heterosearch.search.problem import Group, Problem

        groups = [
            Group(PARAM_PREFIX + k, [int(r) for r in self.ranks], np.asarray(self.values[i], dtype=np.float64).tolist(),
                  [int(c) for c in self.costs[i]])
            for i, k in enumerate(self.keys)
        ]
        return Problem(budget=int(self.budget), groups=groups)

    def same_as(self, other: SearchProblem) -> bool:
        return (
            self.keys == other.keys
            and list(self.ranks) == list(other.ranks)
            and self.budget == other.budget
            and np.array_equal(self.costs, other.costs)
            and np.asarray(self.values).shape == np.asarray(other.values).shape
            and np.allclose(self.values, other.values, rtol=1e-12, atol=0.0)
        )


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
    history: list[dict[str, Any]] = field(default_factory=list)
    storage: str = ""  # the journal path or the URL without its password
    study_name: str = STUDY_NAME
    best_choice: dict[str, Any] = field(default_factory=dict)  # Optuna parameters of the best feasible trial
    exact_choice: dict[str, Any] = field(default_factory=dict)  # the same parameters at the exact optimum
    exact: bool = True  # False if the DP had to round costs up to a coarser unit (still feasible)

    @property
    def ratio(self) -> float:
        return self.best_objective / self.exact_objective if self.exact_objective > 0 else 1.0


# -- storage -----------------------------------------------------------------------------
def is_url(storage: str | Path | None) -> bool:
    return storage is not None and "://" in str(storage)


def describe(storage: str | Path) -> str:
    """The storage for messages: a path, or the URL with its password hidden."""
    if not is_url(storage):
        return str(storage)
    try:
        from sqlalchemy.engine import make_url

        return make_url(str(storage)).render_as_string(hide_password=True)
    except Exception:
        return str(storage).split("://", 1)[0] + "://..."


def _normalise_url(url: str) -> str:
    """``postgres://`` (what many services hand out) -> ``postgresql://``, with an installed driver.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3; the ``postgres`` extra installs
    psycopg2-binary, so a bare URL gets whichever of the two is importable.
    """
    import importlib.util

    for bare in ("postgres://", "postgresql://"):
        if url.startswith(bare):
            rest = url[len(bare):]
            if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
                return "postgresql+psycopg2://" + rest
            return "postgresql://" + rest
    return url


def open_storage(storage: str | Path, heartbeat: int = HEARTBEAT_INTERVAL, grace: int | None = None) -> Any:
    """A journal file (a path) or Optuna's RDB storage with heartbeats and retries (a URL).

    ``grace`` (default 3 x ``heartbeat``) is how long a running trial may go without a
    heartbeat before another process fails it and enqueues a retry with the same parameters.
    """
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not is_url(storage):
        path = Path(storage)
        if path.exists() and not path.is_file():
            raise UserError(f"study storage {path} is not a file (pass a journal file path or a postgresql:// URL)")
        _repair_journal(path)
        try:
            return JournalStorage(_journal_backend(str(path)))
        except OSError as exc:
            raise UserError(f"cannot open study journal {path}: {exc.strerror or exc}") from None
    url = _normalise_url(str(storage))
    if heartbeat < 1:
        raise UserError(f"--heartbeat must be >= 1 second, got {heartbeat}")
    engine: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        engine["connect_args"] = {"connect_timeout": 10}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=int(heartbeat),
                grace_period=int(grace if grace is not None else 3 * heartbeat),
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
            )
    except ImportError:
        raise UserError(
            f"storage {describe(storage)} needs a database driver: pip install 'heterosearch[postgres]' (psycopg2-binary)"
        ) from None
    except Exception as exc:  # bad URL, server down, wrong password: all are "fix the URL or start the server"
        raise UserError(
            f"cannot open study storage {describe(storage)}: {_first_line(exc)} (check the URL and that the server accepts connections)"
        ) from None


def _journal_backend(path: str) -> Any:
    """Optuna's journal file, appending without an ``os.fsync`` per write.

    Why: a trial writes about 40 lines (one per suggested parameter, attributes, state), and
    Optuna's backend fsyncs each one; on this machine that was most of the search time
    (reports/performance.md, 300 trials without repair: 8.2 s with Optuna's backend vs 3.5 s
    in memory on a quiet machine; 25 s vs 6.5 s without fsync under load). The file
    lock is kept, so several processes still share one journal. A killed process loses
    nothing (every line reaches the kernel before the call returns); a machine crash can
    lose the last lines or tear one, which ``_repair_journal`` drops on reopen, and the
    resumed search re-runs those trials.
    """
    from optuna.storages.journal import JournalFileBackend

    class JournalFile(JournalFileBackend):  # type: ignore[misc]
        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            import json

            try:  # private in Optuna (4.2-5.0): fall back to the fsyncing original if it moves
                from optuna.storages.journal._file import get_lock_file

                lock, file_path = self._lock, self._file_path
            except (ImportError, AttributeError):
                return super().append_logs(logs)
            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            with get_lock_file(lock):
                with open(file_path, "ab") as f:
                    f.write(text.encode("utf-8"))

    return JournalFile(path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:200]


def _repair_journal(path: Path) -> None:
    """Drop a half-written last line (a process killed mid-append): appending after it would corrupt the file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        data = fh.read()
        fh.truncate(data.rfind(b"\n") + 1)


def make_sampler(seed: int | None) -> Any:
    """Multivariate TPE; constant liar so parallel workers do not all sample the same point."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=20, constant_liar=True)


def create_study(storage_path: Path | str, study_name: str, seed: int | None) -> Any:
    """Create or load ``study_name`` in ``storage_path`` (a journal path or a storage URL)."""
    import optuna

    return optuna.create_study(
        study_name=study_name, storage=open_storage(storage_path), sampler=make_sampler(seed),
        direction="maximize", load_if_exists=True,
    )


def delete_study(storage: str | Path, study_name: str) -> bool:
    """Remove ``study_name`` (``run --overwrite`` on a shared storage); False if there was none."""
    import optuna

    try:
        optuna.delete_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        return False
    return True


def prepare_study(
    problem: Any,
    n_trials: int,
    seed: int,
    storage: str | Path,
    study_name: str = STUDY_NAME,
    enqueue: dict[str, Any] | None = None,
    replace_other: bool = False,
) -> Any:
    """Create (or reopen) the study and store the problem, so ``heterosearch worker`` can join it.

    A study that holds another problem is replaced when ``replace_other`` (the journal in a
    run folder after ``search`` with another budget or proxy); otherwise (a shared storage)
    it is an error.
    """
    import optuna

    study = create_study(storage, study_name, seed)
    stored = load_problem(study)
    if stored is not None and not (type(stored) is type(problem) and stored.same_as(problem)):
        if not replace_other:
            raise UserError(
                f"study {study_name!r} in {describe(storage)} belongs to another search (other scores, sites or budget); "
                f"use another --out, or delete it: optuna delete-study --study-name {study_name} --storage {describe(storage)}"
            )
        say(f"[dim]search: budget or scores changed, starting a new study in {storage}[/dim]")
        optuna.delete_study(study_name=study_name, storage=study._storage)
        study = create_study(storage, study_name, seed)
        stored = None
    if study.trials:
        # Resumed: reseed so the sampler does not replay the first run's random start-up points.
        study.sampler = make_sampler(seed + len(study.trials))
    if stored is None:
        study.set_user_attr(PROBLEM_ATTR, problem.to_dict())
    if study.user_attrs.get(TRIALS_ATTR) != n_trials:
        study.set_user_attr(TRIALS_ATTR, int(n_trials))
    if enqueue is not None and not study.trials:
        # SearchProblem: site -> rank; another problem: its own parameter names and values.
        params = {PARAM_PREFIX + k: enqueue.get(k, 0) for k in problem.keys} if isinstance(problem, SearchProblem) else dict(enqueue)
        study.enqueue_trial(params, user_attrs={"source": "baseline"})
    return study


def problem_from_dict(data: dict[str, Any]) -> Any:
    """A stored problem: per-site LoRA ranks (``SearchProblem``) or the mixed-kind ``search.problem.Problem``."""
    if "groups" in data:
        from heterosearch.search.problem import Problem

        return Problem.from_dict(data)
    return SearchProblem.from_dict(data)


def load_problem(study: Any) -> Any:
    """The problem stored in the study (None if it was not made by heterosearch)."""
    stored = study.user_attrs.get(PROBLEM_ATTR)
    return problem_from_dict(stored) if stored is not None else None


# -- the objective, and the loop every process runs ------------------------------------
def make_objective(problem: Any) -> Callable[[Any], float]:
    """The one objective of ``run``/``search`` and of ``heterosearch worker``.

    ``problem`` is a ``SearchProblem`` (one ``rank.<site>`` parameter per site) or a
    ``search.problem.Problem``. An over-budget point is repaired (``Problem.repair``): the
    trial's value and ``params`` are those of the repaired choice, stored as the user
    attribute ``choice``; the budget constraint stays recorded (it is then always met).
    """
    p = problem.as_problem() if isinstance(problem, SearchProblem) else problem

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


def _host_identity() -> str:
    """Same value for processes that share a pid namespace on one machine (pids are comparable)."""
    parts = [socket.gethostname()]
    for probe in ("/proc/sys/kernel/random/boot_id",):
        try:
            parts.append(Path(probe).read_text().strip())
        except OSError:
            pass
    try:
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass
    return ":".join(parts)


_HOST = _host_identity()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child that nobody has reaped yet is a zombie: dead for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _counts(study: Any, number: int | None = None) -> tuple[int, int, int]:
    """(complete, running, waiting) from ONE read of the storage; with ``number``, only unfinished trials before it."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
    complete = running = waiting = 0
    for t in study.get_trials(deepcopy=False, states=states):
        if t.state == TrialState.COMPLETE:
            complete += 1
        elif number is None or t.number < number:
            if t.state == TrialState.RUNNING:
                running += 1
            else:
                waiting += 1
    return complete, running, waiting


def _claim(study: Any, trial: Any, n_trials: int) -> None:
    """Prune the trial (before it suggests anything, so samplers ignore it) unless this trial is among the first ``n_trials`` to count.

    Exact under any interleaving: a trial proceeds only if COMPLETE trials plus the
    RUNNING/WAITING trials numbered before it are fewer than ``n_trials``. Of any
    ``n_trials + 1`` trials that all proceed, the highest-numbered one would have seen the
    other ``n_trials`` (created before it, so each was counted as complete or unfinished).
    """
    trial.set_user_attr(WORKER_ATTR, {"host": _HOST, "pid": os.getpid()})
    complete, running, waiting = _counts(study, trial.number)
    if complete + running + waiting >= n_trials:
        trial.set_user_attr(SURPLUS_ATTR, True)
        import optuna

        raise optuna.TrialPruned(f"trial {trial.number} not needed: {complete} complete, {running + waiting} before it unfinished")


def _fail_dead_trials(study: Any) -> None:
    """Fail (and retry) trials whose process is gone.

    RDB storages: Optuna's heartbeat. Every storage: a RUNNING trial of a dead pid on this
    machine, or one silent for ``STALE_AFTER_SECONDS`` (a journal file has no heartbeat).
    """
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    now = datetime.datetime.now()
    storage = study._storage
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get(WORKER_ATTR) or {}
        if worker.get("host") == _HOST and worker.get("pid") != os.getpid():
            dead = not _pid_alive(int(worker["pid"]))
        else:
            started = t.datetime_start or now
            dead = (now - started).total_seconds() > STALE_AFTER_SECONDS
        if not dead:
            continue
        try:
            failed = storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # another process was faster
            continue
        if failed:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry(study, storage.get_trial(t._trial_id))


def iter_trials(
    study: Any, problem: Any, n_trials: int, poll: float = POLL_SECONDS, stop: Callable[[], bool] | None = None
) -> Iterator[int]:
    """Run trials until the study has ``n_trials`` COMPLETE ones; yield after each trial of this process.

    Other processes may run trials of the same study at the same time; this process then
    waits (polling) for their last trials instead of starting surplus ones.
    """
    import optuna

    objective = make_objective(problem)

    def guarded(trial: Any) -> float:
        _claim(study, trial, n_trials)
        return objective(trial)

    while stop is None or not stop():
        _fail_dead_trials(study)
        complete, running, waiting = _counts(study)
        if complete >= n_trials:
            return
        if not waiting and complete + running >= n_trials:
            time.sleep(poll)  # the last trials run elsewhere; if one dies, its retry appears as WAITING
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # One trial per call: the loop re-counts between trials; heartbeats need optimize().
            study.optimize(guarded, n_trials=1, gc_after_trial=False)
        yield complete


def run_search(
    problem: SearchProblem,
    n_trials: int,
    seed: int,
    storage_path: Path | None,
    study_name: str = STUDY_NAME,
    enqueue: dict[str, int] | None = None,
    storage: str | None = None,
) -> SearchResult:
    """Run (or resume, or join) the study up to ``n_trials`` finished trials, then solve exactly too.

    ``storage`` (a URL, or a journal path) overrides the journal at ``storage_path``.
    """
    import optuna

    where = storage if storage is not None else storage_path
    if where is None:
        raise ValueError("run_search needs storage_path or storage")
    # Only the run folder's own journal may be replaced; a shared storage may hold other runs' studies.
    study = prepare_study(problem, n_trials, seed, where, study_name, enqueue, replace_other=storage is None)
    if storage is not None:
        say(f"search: study {study_name!r} on {describe(where)}; more workers can join with\n"
            f"  heterosearch worker --storage '{describe(where)}' --study '{study_name}'")
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    remaining = max(0, n_trials - complete)

    t0 = time.perf_counter()
    for _ in track(iter_trials(study, problem, n_trials), "search: trials", total=remaining):
        pass
    seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    exact = (problem.as_problem() if isinstance(problem, SearchProblem) else problem).solve()
    exact_seconds = time.perf_counter() - t0

    complete_trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    feasible = [t for t in complete_trials if t.user_attrs.get("params", problem.budget + 1) <= problem.budget]
    feasible_numbers = {t.number for t in feasible}
    history = [
        {"number": t.number, "value": t.value, "params": t.user_attrs.get("params"), "feasible": t.number in feasible_numbers,
         "repaired": CHOICE_ATTR in t.user_attrs}
        for t in complete_trials
    ]
    if feasible:
        best = max(feasible, key=lambda t: t.value)
        best_choice = trial_choice(best)
        best_value, best_params = float(best.value), int(best.user_attrs["params"])
    else:
        best_choice, best_value, best_params = {}, 0.0, 0
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
        trials=len(complete_trials),
        feasible_trials=len(feasible),
        seconds=seconds,
        exact_seconds=exact_seconds,
        history=history,
        storage=describe(where),
        study_name=study_name,
    )


def lora_part(choice: dict[str, Any]) -> dict[str, int]:
    """Site -> rank of the ``rank.<site>`` parameters of a choice (rank 0 left out)."""
    return {k[len(PARAM_PREFIX):]: int(v) for k, v in choice.items() if k.startswith(PARAM_PREFIX) and int(v) > 0}


def default_study_name(run_dir: Path, storage: str | None) -> str:
    """``heterosearch`` in the run folder's journal; the run folder's name on a shared storage."""
    return STUDY_NAME if storage is None else Path(run_dir).resolve().name


def check_storage(storage: str) -> None:
    """Fail early (before minutes of scoring) on a storage that cannot be opened."""
    if is_url(storage):
        open_storage(storage)
        return
    parent = Path(storage).expanduser().resolve().parent
    if not parent.is_dir():
        raise UserError(f"--storage {storage}: folder {parent} does not exist (pass a journal file path or a postgresql:// URL)")
