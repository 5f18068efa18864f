"""Which process runs which trial: exact trial counts under any interleaving of processes,
and failing (then retrying) the trials of processes that died.

A study is done when it has ``n_trials`` COMPLETE trials. Several processes never overshoot
that number: before it evaluates, a trial checks that the COMPLETE trials plus the unfinished
ones created before it leave room for it, and otherwise ends PRUNED with the user attribute
``surplus`` (``claim``). Trials of dead processes are failed (heartbeat on RDB storages; a
dead pid on this machine or a long silence on journal files) and retried with the same
parameters up to ``MAX_RETRY`` times.
"""

from __future__ import annotations

import datetime
import os
import socket
import warnings
from pathlib import Path
from typing import Any

from heterosearch.optimize.storage import MAX_RETRY

WORKER_ATTR = "worker"  # trial user attr: which process runs it (host identity + pid)
SURPLUS_ATTR = "surplus"  # trial user attr on a trial that was not needed (PRUNED)
# A trial is pure arithmetic (well under a second): one RUNNING this long has lost its process.
STALE_AFTER_SECONDS = 120


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


def counts(study: Any, number: int | None = None) -> tuple[int, int, int]:
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


def claim(study: Any, trial: Any, n_trials: int) -> None:
    """Prune the trial (before it suggests anything, so samplers ignore it) unless this trial is among the first ``n_trials`` to count.

    Exact under any interleaving: a trial proceeds only if COMPLETE trials plus the
    RUNNING/WAITING trials numbered before it are fewer than ``n_trials``. Of any
    ``n_trials + 1`` trials that all proceed, the highest-numbered one would have seen the
    other ``n_trials`` (created before it, so each was counted as complete or unfinished).
    """
    trial.set_user_attr(WORKER_ATTR, {"host": _HOST, "pid": os.getpid()})
    complete, running, waiting = counts(study, trial.number)
    if complete + running + waiting >= n_trials:
        trial.set_user_attr(SURPLUS_ATTR, True)
        import optuna

        raise optuna.TrialPruned(f"trial {trial.number} not needed: {complete} complete, {running + waiting} before it unfinished")


def fail_dead_trials(study: Any) -> None:
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
