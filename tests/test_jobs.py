"""Trainings as jobs in the run's storage: verify spread over worker processes, dead workers' jobs retried.

The verify test runs on the tiny random BERT of ``test_verify.py`` (2 training steps per model):
one ``verify`` in a single process, and the same ``verify`` on a copy of the run folder with two
``heterosearch worker RUN --jobs`` processes sharing the run's journal file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from heterosearch.errors import UserError
from heterosearch.evidence.jobs import Inputs, open_queue, run_jobs
from heterosearch.optimize.jobqueue import ATTEMPT, BEAT, ERROR, KEY, WORKER, JobQueue
from tests.test_distributed import pg_url  # noqa: F401  (the PostgreSQL fixture)

REPO = Path(__file__).resolve().parent.parent
METHODS = "winner,uniform_all,random"
# Recorded per training and not a result: wall time differs between any two runs.
TIMING = ("seconds", "tokens_per_second")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import torch

    from heterosearch.pipeline import RunConfig, run_all
    from tests.test_verify import BUDGET, _tiny_world

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("jobs")
    model_dir, glue = _tiny_world(root)
    run_all(RunConfig(budget=BUDGET, task="mrpc", model=str(model_dir), data_dir=str(glue), out=str(root / "run"),
                      trials=8, max_train_steps=2, score_batches=2, batch_size=8))
    yield root
    torch.set_num_threads(threads)


def _results(state: dict[str, Any]) -> dict[str, Any]:
    runs = {k: {f: v for f, v in e.items() if f not in TIMING} for k, e in state["runs"].items()}
    return {"runs": runs, "summary": state["summary"], "methods": state["methods"]}


def _job_trials(folder: Path) -> list[Any]:
    return open_queue(folder).trials()


def test_verify_over_two_workers_equals_one_process(tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import heterosearch.evidence.jobs as jobs
    from heterosearch import run_folder
    from heterosearch.evidence import verify_run

    solo, shared = tiny_run / "solo", tiny_run / "shared"
    shutil.copytree(tiny_run / "run", solo)
    shutil.copytree(tiny_run / "run", shared)
    for lock in (solo, shared):
        (lock / run_folder.LOCK).unlink(missing_ok=True)
    one = verify_run(solo, seeds=2, methods=METHODS)

    queue = open_queue(shared)  # what `verify` opens; made first so the workers join before it submits
    env = {**os.environ, "HETEROSEARCH_QUIET": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([sys.executable, "-m", "heterosearch", "worker", str(shared), "--jobs", "--wait", "60"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while len(queue.workers()) < 2:
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers), [w.communicate() for w in workers]
            time.sleep(0.2)
        # The workers load the model and data when they see the first job; on a busy machine the
        # coordinator could train all five before. It waits for a worker's first job (timing only).
        execute = jobs.execute

        def patient(spec: dict[str, Any], inputs: Any) -> dict[str, Any]:
            limit = time.monotonic() + 60
            while (time.monotonic() < limit and all(w.poll() is None for w in workers)
                   and not any(t.user_attrs.get(WORKER, {}).get("pid", os.getpid()) != os.getpid() for t in queue.trials())):
                time.sleep(0.05)
            return execute(spec, inputs)

        monkeypatch.setattr(jobs, "execute", patient)
        many = verify_run(shared, seeds=2, methods=METHODS)
        outs = [w.communicate(timeout=60) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    assert all(w.returncode == 0 for w in workers), outs

    assert _results(many) == _results(one)  # same seeds -> the same numbers, wherever each model trained
    assert list(many["runs"]) == list(one["runs"])
    assert json.loads((shared / "verify_seeds.json").read_text())["runs"].keys() == many["runs"].keys()
    trials = _job_trials(shared)
    keys = Counter(t.user_attrs[KEY].rsplit(":", 1)[1] for t in trials)
    trained = {k for k, e in many["runs"].items() if e["source"] == "trained"}
    assert len(trained) == 5 and "winner/0" not in trained  # winner/0 comes from the run's own verify.json
    assert keys == Counter({k: 1 for k in trained})  # every training ran exactly once ...
    assert {t.state.name for t in trials} == {"COMPLETE"}  # ... and finished
    pids = Counter(t.user_attrs[WORKER]["pid"] for t in trials)
    ran = sum(int(out.split("ran ")[1].split()[0]) for out, _ in outs)
    assert ran == sum(n for pid, n in pids.items() if pid != os.getpid())  # what the workers say they ran
    assert len(pids) >= 2, pids  # the coordinator and at least one worker took jobs


def _queue(tmp_path: Path, heartbeat: int = 1) -> JobQueue:
    return JobQueue(tmp_path / "study.journal", "test.jobs", heartbeat=heartbeat)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_job_of_a_dead_worker_is_retried_once(tmp_path: Path) -> None:
    """A job claimed by a process that died (same machine: its pid; another machine: a silent heartbeat) runs again."""
    _dead_worker_retried(_queue(tmp_path))


def test_job_queue_on_postgres_retries_a_dead_workers_job_once(pg_url: str) -> None:  # noqa: F811 (fixture)
    """The same claims, retries and results in PostgreSQL, the storage workers on other machines share."""
    import uuid

    # Only the dead-pid case: on an RDB a silent remote worker is found by Optuna's own heartbeat
    # table (fail_stale_trials), which a test cannot age without waiting for it.
    _dead_worker_retried(JobQueue(pg_url, f"test.jobs.{uuid.uuid4().hex[:8]}", heartbeat=1), silent_remote=False)


def _dead_worker_retried(queue: JobQueue, silent_remote: bool = True) -> None:
    jobs = {"a": {"x": 1}, "b": {"x": 2}, "c": {"x": 3}}
    queue.submit(jobs)
    dead, silent = queue.claim(lambda k, s: k == "a"), queue.claim(lambda k, s: k == "b")
    assert dead is not None and silent is not None and queue.claim(lambda k, s: k in "ab") is None
    from heterosearch.optimize.claims import _HOST

    queue.backend.set_trial_user_attr(dead.trial_id, WORKER, {"host": _HOST, "pid": _dead_pid()})
    if silent_remote:
        queue.backend.set_trial_user_attr(silent.trial_id, WORKER, {"host": "elsewhere", "pid": 1})
        queue.backend.set_trial_user_attr(silent.trial_id, BEAT, time.time() - 60)  # 60 s > 3 x 1 s heartbeat
    else:  # a second dead local worker
        queue.backend.set_trial_user_attr(silent.trial_id, WORKER, {"host": _HOST, "pid": _dead_pid()})

    ran: list[str] = []
    got: dict[str, Any] = {}

    def executor(spec: dict[str, Any], inputs: Any) -> dict[str, Any]:
        ran.append(json.dumps(spec))
        return {"double": 2 * spec["x"]}

    run_jobs(queue, jobs, lambda k, r, s: got.update({k: r}), Inputs(), poll=0.05, executor=executor)
    assert got == {"a": {"double": 2}, "b": {"double": 4}, "c": {"double": 6}}
    assert sorted(ran) == sorted(json.dumps(s) for s in jobs.values())  # each job's code ran once here
    by_key = queue.by_key()
    for key in ("a", "b"):
        states = [(t.state.name, t.user_attrs[ATTEMPT]) for t in by_key[key]]
        assert states == [("FAIL", 1), ("COMPLETE", 2)], (key, states)
    assert [t.state.name for t in by_key["c"]] == ["COMPLETE"]
    # Submitting the same jobs again finds their results and trains nothing.
    run_jobs(queue, jobs, lambda k, r, s: None, Inputs(), poll=0.05, executor=executor)
    assert len(ran) == 3 and len(queue.trials()) == 5


def test_a_job_that_raises_is_reported_not_retried(tmp_path: Path) -> None:
    queue = _queue(tmp_path)

    def broken(spec: dict[str, Any], inputs: Any) -> dict[str, Any]:
        raise ValueError("no such site")

    with pytest.raises(ValueError, match="no such site"):  # raised here: the coordinator's own job
        run_jobs(queue, {"a": {"x": 1}}, lambda *a: None, Inputs(), poll=0.05, executor=broken)
    (t,) = queue.trials()
    assert t.state.name == "FAIL" and t.user_attrs[ERROR] == "ValueError: no such site"
    # A job whose code failed on a worker ends the waiting coordinator with one line (and is not retried).
    import threading

    worker = JobQueue(tmp_path / "study.journal", "test.jobs", heartbeat=1)  # another handle, as another process has

    def work_once() -> None:
        while (job := worker.claim()) is None:
            time.sleep(0.01)
        with pytest.raises(ValueError):
            worker.run(job, lambda spec: broken(spec, None))

    thread = threading.Thread(target=work_once)
    thread.start()
    queue.claim = lambda accept=None: None  # type: ignore[method-assign]  # the coordinator leaves the job to the worker
    with pytest.raises(UserError, match="training job b failed: ValueError: no such site"):
        run_jobs(queue, {"b": {"x": 2}}, lambda *a: None, Inputs(), poll=0.05, executor=broken)
    thread.join()
    assert [t.state.name for t in queue.by_key()["b"]] == ["FAIL"]


def test_worker_without_a_queue_is_one_line(tmp_path: Path) -> None:
    from heterosearch.evidence.jobs import work

    with pytest.raises(UserError, match="no job queue"):
        work(str(tmp_path / "study.journal"), wait=0.0)
    queue = _queue(tmp_path)
    queue.set_closed(True)
    assert work(str(tmp_path / "study.journal"), wait=0.0).ran == 0  # a finished queue: nothing to do
    from typer.testing import CliRunner

    from heterosearch.cli import app

    for args, says in ((["worker", "--jobs"], "pass a run folder or --storage"),
                       (["worker", str(tmp_path / "nowhere"), "--jobs"], "is not a folder")):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2 and says in res.output and "Traceback" not in res.output, res.output
    res = CliRunner().invoke(app, ["worker", str(tmp_path), "--jobs"])  # the folder's study.journal holds the queue
    assert res.exit_code == 0 and "ran 0 training jobs" in res.output and "test.jobs" in res.output, res.output
