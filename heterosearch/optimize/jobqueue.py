"""A queue of jobs (trainings) in the same storage as the search: one Optuna study per queue.

Why an Optuna study: the run already has a storage that every worker can reach (the run
folder's journal file, or a postgresql:// database), with exactly the primitive a queue
needs. A job is a trial enqueued WAITING with everything needed to run it in its user
attributes (``job.key``, ``job.spec``); taking a job is Optuna's own atomic WAITING ->
RUNNING transition (``set_trial_state_values`` returns False to all but one process on both
storages), so each enqueued job runs once. The result goes into the trial's user attribute
``job.result`` and the trial becomes COMPLETE (its value is the job's wall seconds: Optuna
wants one; nothing optimises it). A queue is a study whose user attributes carry
``heterosearch.jobs``; search workers ignore such studies.

Dead workers: a running job has a heartbeat (Optuna's on RDB storages; on a journal file the
user attribute ``job.heartbeat``, and on the same machine the worker's pid is checked
directly). A job whose heartbeat is stale is failed by whichever process notices first
(FAIL is atomic too) and that process enqueues a fresh copy (``job.attempt`` + 1), up to
``MAX_RETRY`` retries; any worker then takes it. A job whose code raised is failed with
``job.error`` and not retried (it would raise again); the process waiting for it reports it.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heterosearch.optimize.claims import _HOST, _pid_alive
from heterosearch.optimize.storage import HEARTBEAT_INTERVAL, MAX_RETRY, is_url, open_storage

QUEUE_ATTR = "heterosearch.jobs"  # study user attr: format version of a job queue
CLOSED_ATTR = "heterosearch.jobs.closed"  # study user attr: True once the queue's coordinator is done
WORKERS_ATTR = "heterosearch.jobs.worker."  # study user attr prefix: a worker that joined (host:pid -> time)
KEY, SPEC, RESULT, ERROR, ATTEMPT, BEAT, WORKER = (
    "job.key", "job.spec", "job.result", "job.error", "job.attempt", "job.heartbeat", "job.worker",
)
QUEUE_FORMAT = 1
SUFFIX = ".jobs"  # a queue's name: the run's study name + this


def canonical(spec: Any) -> str:
    """The spec as compared: JSON with sorted keys (what the storage round-trips)."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def queue_names(storage: Any) -> list[str]:
    """Names of the job queues in an opened storage."""
    import optuna

    return sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
                  if QUEUE_ATTR in s.user_attrs)


@dataclass
class Claimed:
    """A job this process took: run it, then ``finish``."""

    trial_id: int
    number: int
    key: str
    spec: dict[str, Any]
    attempt: int


class JobQueue:
    """One queue (an Optuna study) in a journal file or an RDB storage."""

    def __init__(self, storage: str | Path, name: str, heartbeat: int = HEARTBEAT_INTERVAL, backend: Any = None) -> None:
        import optuna

        self.where = storage
        self.heartbeat = int(heartbeat)
        self.backend = backend if backend is not None else open_storage(storage, heartbeat=heartbeat)
        self.study = optuna.create_study(study_name=name, storage=self.backend, load_if_exists=True)
        self.name = name
        if QUEUE_ATTR not in self.study.user_attrs:
            self.study.set_user_attr(QUEUE_ATTR, QUEUE_FORMAT)

    # -- reading ------------------------------------------------------------------------
    def trials(self, states: Iterable[Any] | None = None) -> list[Any]:
        return self.study.get_trials(deepcopy=False, states=tuple(states) if states is not None else None)

    def by_key(self) -> dict[str, list[Any]]:
        """Every job trial of the queue, grouped by key, in trial order (one read of the storage)."""
        out: dict[str, list[Any]] = {}
        for t in self.trials():
            if KEY in t.user_attrs:
                out.setdefault(t.user_attrs[KEY], []).append(t)
        return out

    def is_closed(self) -> bool:
        return bool(self.study.user_attrs.get(CLOSED_ATTR, False))

    def set_closed(self, closed: bool) -> None:
        if self.is_closed() != closed:
            self.study.set_user_attr(CLOSED_ATTR, bool(closed))

    def join(self) -> None:
        """Record this worker in the queue (``host:pid`` -> time): the coordinator can tell who joined."""
        self.study.set_user_attr(f"{WORKERS_ATTR}{_HOST.split(':')[0]}:{os.getpid()}", time.time())

    def workers(self) -> list[str]:
        return sorted(k[len(WORKERS_ATTR):] for k in self.study.user_attrs if k.startswith(WORKERS_ATTR))

    # -- submitting ---------------------------------------------------------------------
    def submit(self, jobs: dict[str, dict[str, Any]]) -> None:
        """Enqueue every job (key -> spec) that has no WAITING, RUNNING or COMPLETE trial with this spec.

        A WAITING job under the same key with another spec (the settings changed since) is
        cancelled (failed with ``job.error`` = ``cancelled``) so no worker trains it.
        """
        from optuna.trial import TrialState

        live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
        existing = self.by_key()
        for key, spec in jobs.items():
            want = canonical(spec)
            same = [t for t in existing.get(key, []) if canonical(t.user_attrs.get(SPEC)) == want]
            for t in existing.get(key, []):
                if t.state == TrialState.WAITING and canonical(t.user_attrs.get(SPEC)) != want:
                    self._fail(t, "cancelled: the job was submitted again with other settings")
            if not any(t.state in live for t in same):
                self.enqueue(key, spec, attempt=1)

    def enqueue(self, key: str, spec: dict[str, Any], attempt: int) -> None:
        self.study.enqueue_trial({}, user_attrs={KEY: key, SPEC: spec, ATTEMPT: int(attempt)})

    # -- taking and running -------------------------------------------------------------
    def claim(self, accept: Callable[[str, dict[str, Any]], bool] | None = None) -> Claimed | None:
        """Take the first WAITING job that ``accept(key, spec)`` (default: every job); None if there is none."""
        import optuna
        from optuna.trial import TrialState

        for t in self.trials((TrialState.WAITING,)):
            key, spec = t.user_attrs.get(KEY), t.user_attrs.get(SPEC)
            if key is None or (accept is not None and not accept(key, spec)):
                continue
            try:  # atomic on both storages: exactly one process gets True
                taken = self.backend.set_trial_state_values(t._trial_id, state=TrialState.RUNNING)
            except optuna.exceptions.UpdateFinishedTrialError:  # cancelled meanwhile
                continue
            if taken:
                self.backend.set_trial_user_attr(t._trial_id, WORKER, {"host": _HOST, "pid": os.getpid()})
                return Claimed(t._trial_id, t.number, key, dict(spec), int(t.user_attrs.get(ATTEMPT, 1)))
        return None

    def run(self, job: Claimed, execute: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any] | None:
        """Run ``execute(spec)`` under a heartbeat; store its result (COMPLETE) or its error (FAIL, then re-raise).

        Returns the result, or None if the job was failed meanwhile by another process
        (this process was taken for dead; the retry's result counts).
        """
        import optuna
        from optuna.trial import TrialState

        t0 = time.perf_counter()
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job.trial_id, stop), daemon=True)
        beat.start()
        try:
            result = execute(job.spec)
        except BaseException as exc:
            stop.set()
            beat.join()
            if isinstance(exc, Exception):  # KeyboardInterrupt/SystemExit: no error, so a rerun retries it
                self._set(job.trial_id, ERROR, f"{type(exc).__name__}: {str(exc).strip()[:500]}")
            try:
                self.backend.set_trial_state_values(job.trial_id, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass
            raise
        stop.set()
        beat.join()
        try:
            self.backend.set_trial_user_attr(job.trial_id, RESULT, result)
            self.backend.set_trial_state_values(job.trial_id, state=TrialState.COMPLETE, values=[time.perf_counter() - t0])
        except optuna.exceptions.UpdateFinishedTrialError:
            return None
        return result

    def _beat(self, trial_id: int, stop: threading.Event) -> None:
        from optuna.storages._heartbeat import is_heartbeat_enabled

        rdb = is_heartbeat_enabled(self.backend)
        while True:
            try:
                if rdb:
                    self.backend.record_heartbeat(trial_id)
                else:
                    self.backend.set_trial_user_attr(trial_id, BEAT, time.time())
            except Exception:  # a finished trial or a hiccup of the storage: the next beat tries again
                pass
            if stop.wait(self.heartbeat):
                return

    def _set(self, trial_id: int, name: str, value: Any) -> None:
        import optuna

        try:
            self.backend.set_trial_user_attr(trial_id, name, value)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass

    def _fail(self, t: Any, error: str | None) -> bool:
        import optuna
        from optuna.trial import TrialState

        if error is not None:
            self._set(t._trial_id, ERROR, error)
        try:
            return bool(self.backend.set_trial_state_values(t._trial_id, state=TrialState.FAIL))
        except optuna.exceptions.UpdateFinishedTrialError:  # another process was faster
            return False

    # -- dead workers -------------------------------------------------------------------
    def reap(self) -> int:
        """Fail the RUNNING jobs of dead workers and enqueue each again; returns how many were retried."""
        from optuna.trial import TrialState

        stale = set(self._stale_rdb())
        now_wall, now = time.time(), datetime.datetime.now()
        grace = 3 * self.heartbeat
        retried = 0
        for t in self.trials((TrialState.RUNNING,)):
            if KEY not in t.user_attrs:
                continue
            worker = t.user_attrs.get(WORKER) or {}
            if t._trial_id in stale:
                dead = True
            elif worker.get("host") == _HOST:
                dead = worker.get("pid") != os.getpid() and not _pid_alive(int(worker["pid"]))
            elif is_url(self.where):
                dead = False  # the RDB heartbeat above decides
            else:  # a journal shared with another machine: our own heartbeat attribute
                last = t.user_attrs.get(BEAT)
                silent = now_wall - float(last) if last is not None else (now - (t.datetime_start or now)).total_seconds()
                dead = silent > grace
            if not dead:
                continue
            attempt = int(t.user_attrs.get(ATTEMPT, 1))
            if attempt > MAX_RETRY:  # give up: the process waiting for the job reports it
                self._fail(t, f"its worker died {attempt} times")
            elif self._fail(t, None):  # only the process whose FAIL went through enqueues the retry
                self.enqueue(t.user_attrs[KEY], t.user_attrs[SPEC], attempt + 1)
                retried += 1
        return retried

    def _stale_rdb(self) -> list[int]:
        from optuna.storages._heartbeat import is_heartbeat_enabled

        if not is_heartbeat_enabled(self.backend):
            return []
        try:  # private in Optuna (4.x-5.0); without it the pid check and the journal heartbeat remain
            return list(self.backend._get_stale_trial_ids(self.study._study_id))
        except AttributeError:
            return []

