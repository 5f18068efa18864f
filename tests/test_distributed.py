"""Several processes on one study: exact trial counts, dead workers' trials retried, shared problem.

The PostgreSQL tests need a server: ``HETEROSEARCH_TEST_PG_URL`` (``.ci/run`` starts one and
sets it), or else this module starts its own from Debian's ``postgresql`` binaries in a temp
folder. Without either they skip, unless ``HETEROSEARCH_REQUIRE_PG=1`` (CI), where they fail.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from heterosearch.errors import UserError
from heterosearch.optimize.problem import Problem
from heterosearch.optimize.study import (
    PROBLEM_ATTR,
    TRIALS_ATTR,
    WORKER_ATTR,
    iter_trials,
    open_storage,
    prepare_study,
    run_search,
    trial_choice,
)
from heterosearch.optimize.worker import run_worker

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HETEROSEARCH_QUIET": "1", "PYTHONPATH": str(REPO)}


def small_problem(seed: int = 0, sites: int = 8) -> Problem:
    rng = np.random.default_rng(seed)
    keys = [f"L{i // 2}.{'qv'[i % 2]}" for i in range(sites)]
    ranks = [0, 1, 2, 4, 8]
    values = np.sort(rng.random((sites, len(ranks))), axis=1)
    values[:, 0] = 0.0
    costs = np.array([[r * 64 for r in ranks] for _ in keys], dtype=np.int64)
    return Problem.from_arrays(keys, ranks, values, costs, sites * 2 * 64)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HETEROSEARCH_QUIET", "1")


def states(study: Any) -> Counter:
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


# -- no server needed ----------------------------------------------------------------------
def test_problem_round_trips_through_the_study(tmp_path: Path) -> None:
    import json

    problem = small_problem()
    again = Problem.from_dict(json.loads(json.dumps(problem.to_dict())))
    assert again.same_as(problem) and again.evaluate({"rank.L0.q": 4}) == problem.evaluate({"rank.L0.q": 4})
    assert not again.same_as(small_problem(seed=1))

    study = prepare_study(problem, 12, seed=0, storage=tmp_path / "s.journal")
    assert Problem.from_dict(study.user_attrs[PROBLEM_ATTR]).same_as(problem)
    assert study.user_attrs[TRIALS_ATTR] == 12


def test_worker_joins_a_journal_study_and_counts_exactly(tmp_path: Path) -> None:
    """Three workers (threads, each with its own storage handle) never overshoot the trial count."""
    journal = tmp_path / "study.journal"
    problem = small_problem()
    first = run_search(problem, 5, seed=0, storage_path=journal)
    assert first.trials == 5

    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            run_worker(journal, study_name="heterosearch", n_trials=30, seed=seed)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    study = open_study(journal)
    count = states(study)
    assert count["COMPLETE"] == 30, count
    # PRUNED: a surplus trial given up before it sampled, or an over-budget point whose repair was enqueued
    assert set(count) <= {"COMPLETE", "PRUNED"}, count
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "PRUNED":
            surplus = t.user_attrs.get("surplus") and not t.params
            over = t.user_attrs.get("repaired") and problem.evaluate(t.params)[1] > problem.budget
            assert surplus or over, t.user_attrs
        if t.state.name == "COMPLETE":
            assert problem.evaluate(t.params)[1] <= problem.budget  # params are what was evaluated
    # The objective is the run's: every complete trial's value is the problem's value of its ranks.
    for t in study.get_trials(deepcopy=False, states=None):
        if t.state.name == "COMPLETE":
            assert t.value == pytest.approx(problem.evaluate(trial_choice(t))[0])  # repaired if it was over budget
    # Asking again for fewer trials than exist runs none.
    assert run_worker(journal, n_trials=20).ran == 0


def open_study(storage: Any, name: str = "heterosearch") -> Any:
    import optuna

    return optuna.load_study(study_name=name, storage=open_storage(storage))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_trial_of_a_dead_process_is_failed_and_retried_on_a_journal(tmp_path: Path) -> None:
    """A run killed mid-trial leaves a RUNNING trial; the next process fails it and reruns its parameters."""
    from optuna.distributions import CategoricalDistribution

    journal = tmp_path / "study.journal"
    problem = small_problem()
    study = prepare_study(problem, 6, seed=0, storage=journal)
    dist = CategoricalDistribution(problem.groups[0].labels)
    orphan = study.ask({g.key: dist for g in problem.groups})
    from heterosearch.optimize.claims import _HOST

    orphan.set_user_attr(WORKER_ATTR, {"host": _HOST, "pid": dead_pid()})
    orphan_params = dict(orphan.params)

    for _ in iter_trials(study, problem, 6, poll=0.05):
        pass
    trials = study.get_trials(deepcopy=False)
    assert trials[orphan.number].state.name == "FAIL"
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retried) == 1 and retried[0].params == orphan_params
    if problem.evaluate(orphan_params)[1] <= problem.budget:
        assert retried[0].state.name == "COMPLETE"
    else:  # over budget: the retry is pruned and its repair evaluated as the next trial
        assert retried[0].state.name == "PRUNED" and retried[0].user_attrs["repaired"]
        fixed = [t for t in trials if t.user_attrs.get("repaired_from") == retried[0].number]
        assert len(fixed) == 1 and fixed[0].state.name == "COMPLETE" and fixed[0].params == problem.repair(orphan_params)
    assert states(study)["COMPLETE"] == 6


def test_storage_errors_are_one_line_user_errors(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError) as info:
        open_storage(f"postgresql://u:secret@127.0.0.1:{port}/db")
    msg = str(info.value)
    assert "\n" not in msg and "secret" not in msg and "cannot open study storage" in msg
    with pytest.raises(UserError, match="no study"):
        run_worker(tmp_path / "empty.journal", study_name="x")
    prepare_study(small_problem(), 3, 0, tmp_path / "one.journal", study_name="alpha")
    with pytest.raises(UserError, match="did you mean 'alpha'"):
        run_worker(tmp_path / "one.journal", study_name="alpah")


# -- PostgreSQL --------------------------------------------------------------------------------
def _pg_bindir() -> Path | None:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(d) / "pg_ctl").exists() and (Path(d) / "initdb").exists():
            return Path(d)
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found and (Path(found).resolve().parent / "initdb").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unavailable(reason: str) -> None:
    if os.environ.get("HETEROSEARCH_REQUIRE_PG"):
        pytest.fail(f"PostgreSQL required (HETEROSEARCH_REQUIRE_PG) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def pg_url() -> Any:
    """A PostgreSQL URL: $HETEROSEARCH_TEST_PG_URL, or a throwaway server on a free local port."""
    url = os.environ.get("HETEROSEARCH_TEST_PG_URL")
    if url:
        yield url
        return
    bindir = _pg_bindir()
    if bindir is None:
        _unavailable("no PostgreSQL: set HETEROSEARCH_TEST_PG_URL or install Debian's postgresql")
    prefix: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' user to run the server")
        runuser = shutil.which("runuser")
        if runuser is None:
            _unavailable("running as root without runuser")
        prefix = [runuser, "-u", "postgres", "--"]
    tmp = Path(tempfile.mkdtemp(prefix="hs-pg-"))
    if prefix:
        shutil.chown(tmp, user="postgres")
    port = _free_port()
    data, log = tmp / "data", tmp / "server.log"
    started = False
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
        opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"],
                       check=True, capture_output=True, timeout=120)
        started = True
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE heterosearch_test")
        conn.close()
        yield f"postgresql://postgres@127.0.0.1:{port}/heterosearch_test"
    except subprocess.CalledProcessError as exc:
        _unavailable(f"could not start PostgreSQL: {exc.stderr.decode(errors='replace')[-300:]}")
    finally:
        if started:
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.postgres
def test_postgres_storage_has_heartbeat_and_retry(pg_url: str) -> None:
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    storage = open_storage(pg_url, heartbeat=2)
    assert isinstance(storage, RDBStorage)
    assert storage.heartbeat_interval == 2 and storage.grace_period == 6
    assert isinstance(storage.heartbeat_stale_trial_callback, RetryHeartbeatStaleTrialCallback)


def _start_worker(pg_url: str, name: str, log: Path, doomed: bool = False) -> subprocess.Popen:
    args = ["worker", "--storage", pg_url, "--study", name, "--heartbeat", "1"]
    if doomed:
        # A worker "on another machine" (other host identity, so only the heartbeat can tell it
        # died) whose objective hangs: it holds one RUNNING trial until it is killed.
        code = (
            "import sys, time\n"
            "import heterosearch.optimize.claims as s\n"
            "s._HOST = 'another-machine'\n"
            "import heterosearch.optimize.problem as p\n"
            "p.Problem.evaluate = lambda self, choice: time.sleep(3600)\n"
            "from heterosearch.cli import main\n"
            f"sys.argv = ['heterosearch', *{args!r}]\n"
            "main()\n"
        )
        cmd = [sys.executable, "-c", code]
    else:
        cmd = [sys.executable, "-m", "heterosearch", *args]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=ENV, cwd=REPO)


@pytest.mark.postgres
def test_three_workers_share_one_study_and_a_killed_workers_trial_is_retried(pg_url: str, tmp_path: Path) -> None:
    n = 24
    name = f"t-{uuid.uuid4().hex[:8]}"
    problem = small_problem()
    prepare_study(problem, n, seed=0, storage=pg_url, study_name=name)
    study = open_study(pg_url, name)

    doomed = _start_worker(pg_url, name, tmp_path / "doomed.log", doomed=True)
    try:
        deadline = time.monotonic() + 120
        victim = None
        while victim is None:
            assert doomed.poll() is None, (tmp_path / "doomed.log").read_text()
            assert time.monotonic() < deadline, "the doomed worker never started a trial"
            for t in study.get_trials(deepcopy=True):
                if t.state.name == "RUNNING" and len(t.params) == len(problem.groups):
                    victim = t
            time.sleep(0.2)
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()

    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [_start_worker(pg_url, name, log) for log in logs]
    for w, log in zip(workers, logs):
        try:
            assert w.wait(timeout=300) == 0, log.read_text()
        finally:
            if w.poll() is None:
                w.kill()
                w.wait()

    trials = open_study(pg_url, name).get_trials(deepcopy=False)
    count = Counter(t.state.name for t in trials)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == n, count  # exactly the trials asked for
    assert set(count) <= {"COMPLETE", "FAIL", "PRUNED"}, count
    assert len({t.number for t in trials}) == len(trials)
    # The killed worker's trial failed (heartbeat) and its parameters ran once more, to completion.
    assert trials[victim.number].state.name == "FAIL"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].params == victim.params
    if problem.evaluate(victim.params)[1] <= problem.budget:
        assert retries[0].state.name == "COMPLETE"
    else:  # over budget: the retry is pruned and its repair evaluated as another trial
        assert retries[0].state.name == "PRUNED" and retries[0].user_attrs["repaired"]
        fixed = [t for t in trials if t.user_attrs.get("repaired_from") == retries[0].number]
        assert len(fixed) == 1 and fixed[0].state.name == "COMPLETE" and fixed[0].params == problem.repair(victim.params)
    assert [t.number for t in trials if t.state.name == "FAIL"] == [victim.number]
    # The work was shared, and every value is the stored problem's.
    assert len({t.user_attrs[WORKER_ATTR]["pid"] for t in complete}) >= 2
    for t in complete:
        assert t.value == pytest.approx(problem.evaluate(trial_choice(t))[0])  # repaired if it was over budget
    for log in logs:
        assert f"{n}/{n} finished trials" in log.read_text()


@pytest.mark.postgres
def test_search_on_postgres_is_joined_by_a_worker(pg_url: str, tmp_path: Path) -> None:
    """`search RUN --storage URL` stores the problem in the study; a worker adds trials without a model."""
    import json

    from typer.testing import CliRunner

    from heterosearch.cli import app
    from tests.tiny_run import make_glue_dir, make_tiny_model

    model, data = make_tiny_model(tmp_path / "model"), make_glue_dir(tmp_path / "data")
    out = tmp_path / f"run-{uuid.uuid4().hex[:8]}"
    env = {"HETEROSEARCH_QUIET": "1"}
    scored = CliRunner().invoke(app, ["score", "--model", str(model), "--data-dir", str(data), "--out", str(out)], env=env)
    assert scored.exit_code == 0, scored.output
    search = ["search", str(out), "--budget", "2k", "--trials", "12", "--storage", pg_url]
    result = CliRunner().invoke(app, search, env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "search.json").read_text())
    assert summary["trials"] == 12 and summary["study_name"] == out.name
    assert not (out / "study.journal").exists()

    res = run_worker(pg_url, study_name=out.name, n_trials=20, seed=5)
    assert res.complete == 20 and res.ran >= 8  # ran: also the over-budget points it pruned (their repairs count)

    def complete_and_repaired() -> Counter:
        study = open_study(pg_url, out.name)
        assert all(t.user_attrs.get("repaired") for t in study.get_trials(deepcopy=False) if t.state.name == "PRUNED")
        return Counter(t.state.name for t in study.get_trials(deepcopy=False) if t.state.name != "PRUNED")

    assert complete_and_repaired() == Counter({"COMPLETE": 20})

    # Searching again with the larger count finds the work done: no trial is added.
    again = CliRunner().invoke(app, [*search[:5], "20", *search[6:]], env=env)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "search.json").read_text())["trials"] == 20
    assert complete_and_repaired() == Counter({"COMPLETE": 20})
