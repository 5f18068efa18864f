"""Resume after a crash: training checkpoints, and `run` killed with SIGKILL then run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from heterosearch.optimize.study import open_storage
from tests.tiny_run import make_glue_dir, make_tiny_model

REPO = Path(__file__).resolve().parent.parent
# One torch thread per process: on a shared 2-core machine more threads only contend.
ENV = {**os.environ, "HETEROSEARCH_QUIET": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return make_tiny_model(root / "model"), make_glue_dir(root / "data")


# -- the training checkpoint (in-process) ------------------------------------------------------
class Crash(Exception):
    pass


def test_training_resumed_from_a_checkpoint_equals_one_uninterrupted_run(
    tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    import heterosearch.train.loop as loop
    from heterosearch.pipeline import Run, RunConfig
    from heterosearch.train import TrainConfig, train_allocation

    monkeypatch.setenv("HETEROSEARCH_QUIET", "1")
    model_dir, data_dir = tiny
    run = Run.open(RunConfig(budget=2000, model=str(model_dir), data_dir=str(data_dir), out=str(tmp_path / "run")))
    alloc, _ = run.baseline_allocation()
    cfg = TrainConfig(epochs=10, max_steps=12, batch_size=16, checkpoint_every=5)
    evals = {k: v for k, v in run.encoded.items() if k != "train"}
    built: list[Any] = []

    def factory() -> Any:
        built.append(run.new_model())
        return built[-1]

    def train(checkpoint: Path | None) -> Any:
        return train_allocation(factory, run.tokenizer, run.all_sites, alloc, run.space.lora.scaling,
                                run.encoded["train"], evals, run.spec, cfg, label="winner", checkpoint=checkpoint)

    def trained_state() -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in built[-1].named_parameters() if p.requires_grad}

    reference = train(None)
    expected = trained_state()
    assert reference.resumed_from == 0

    ckpt = tmp_path / "run" / "checkpoints" / "winner.pt"
    real_collate, calls = loop.collate, [0]

    def crashing_collate(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 8:  # during step 8: the last checkpoint is the one after step 5
            raise Crash
        return real_collate(*args, **kwargs)

    monkeypatch.setattr(loop, "collate", crashing_collate)
    with pytest.raises(Crash):
        train(ckpt)
    monkeypatch.setattr(loop, "collate", real_collate)
    assert ckpt.is_file() and torch.load(ckpt, weights_only=True)["step"] == 5

    resumed = train(ckpt)
    assert resumed.resumed_from == 5 and resumed.steps == 12
    for name, tensor in trained_state().items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=0, msg=name)
    assert resumed.train_loss == pytest.approx(reference.train_loss, abs=0, rel=1e-12)
    assert resumed.metrics == reference.metrics
    assert not ckpt.exists() and not ckpt.parent.exists()  # removed once the model is done

    # A checkpoint of other settings is not resumed from (the run starts over).
    other = TrainConfig(epochs=10, max_steps=12, batch_size=16, checkpoint_every=5, lr=cfg.lr * 2)
    monkeypatch.setattr(loop, "collate", crashing_collate)
    calls[0] = 0
    with pytest.raises(Crash):
        train_allocation(factory, run.tokenizer, run.all_sites, alloc, run.space.lora.scaling,
                         run.encoded["train"], evals, run.spec, other, label="winner", checkpoint=ckpt)
    monkeypatch.setattr(loop, "collate", real_collate)
    assert train(ckpt).resumed_from == 0


# -- SIGKILL during search and during verification -----------------------------------------------
TRIALS = 40


def _complete_trials(journal: Path) -> list[Any]:
    import optuna

    if not journal.is_file():
        return []
    try:
        study = optuna.load_study(study_name="heterosearch", storage=open_storage(journal))
    except KeyError:  # the study is not created yet
        return []
    return study.get_trials(deepcopy=True, states=(optuna.trial.TrialState.COMPLETE,))


def _kill_when(proc: subprocess.Popen, ready: Any, what: str, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"run ended (exit {proc.returncode}) before {what}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _all_json_complete(out: Path) -> None:
    """A crash never leaves a half-written file under a real name: every JSON file parses."""
    for path in out.glob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))


def test_run_killed_during_search_and_verification_resumes(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    import optuna

    model_dir, data_dir = tiny
    out = tmp_path / "run"
    journal = out / "study.journal"
    cmd = [sys.executable, "-m", "heterosearch", "run", "--budget", "2k", "--model", str(model_dir),
           "--data-dir", str(data_dir), "--trials", str(TRIALS), "--train-epochs", "50", "--max-train-steps", "60",
           "--out", str(out)]
    log = tmp_path / "run.log"

    # 1. Killed during the search, once some trials are finished.
    first = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=ENV, cwd=tmp_path)
    _kill_when(first, lambda: len(_complete_trials(journal)) >= 8, "8 finished trials", log)
    before = {t.number: (t.params, t.value) for t in _complete_trials(journal)}
    assert 8 <= len(before) < TRIALS
    _all_json_complete(out)

    # The same command without --resume refuses to touch the folder.
    from typer.testing import CliRunner

    from heterosearch.cli import app

    refused = CliRunner().invoke(app, cmd[3:], env={"HETEROSEARCH_QUIET": "1"})
    assert refused.exit_code == 2 and "--resume" in refused.output, refused.output

    # 2. Resumed, then killed during verification, once a training checkpoint exists.
    second = subprocess.Popen([*cmd, "--resume"], stdout=log.open("w"), stderr=subprocess.STDOUT, env=ENV, cwd=tmp_path)
    _kill_when(second, lambda: any((out / "checkpoints").glob("*.pt")), "a training checkpoint", log)
    killed_labels = [p.stem for p in (out / "checkpoints").glob("*.pt")]
    assert killed_labels
    _all_json_complete(out)
    searched = json.loads((out / "search.json").read_text())["seconds"]

    trials = optuna.load_study(study_name="heterosearch", storage=open_storage(journal)).get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == TRIALS  # the search finished before verification started
    for number, (params, value) in before.items():  # finished trials were kept as they were
        assert (trials[number].params, trials[number].value) == (params, value)
    assert len({t.number for t in trials}) == len(trials)
    # A trial killed mid-flight is FAIL and its parameters were retried once; nothing else failed.
    # (PRUNED: an over-budget point whose repaired allocation ran as the next trial.)
    for t in trials:
        assert t.state.name in ("COMPLETE", "FAIL", "PRUNED"), t
        if t.state.name == "PRUNED":
            assert t.user_attrs.get("repaired") and any(r.user_attrs.get("repaired_from") == t.number for r in trials)
        if t.state.name == "FAIL":
            assert sum(r.system_attrs.get("failed_trial") == t.number for r in trials if r.state.name != "FAIL") == 1

    # 3. Resumed again: verification continues from its checkpoint, and the run completes.
    third = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=600)
    assert third.returncode == 0, third.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["search"]["trials"] == TRIALS
    search = json.loads((out / "search.json").read_text())
    # The third invocation found every trial done: its own seconds are added to the study's, not put in their place.
    assert search["seconds"] == pytest.approx(searched + search["last_invocation_seconds"])
    assert search["last_invocation_seconds"] < searched
    verify = json.loads((out / "verify.json").read_text())
    for label in killed_labels:
        assert verify[label]["resumed_from_step"] >= 25, verify[label]
        assert verify[label]["steps"] == 60
    assert not (out / "checkpoints").exists()
    again = Counter(t.state.name for t in optuna.load_study(study_name="heterosearch", storage=open_storage(journal)).trials)
    assert again["COMPLETE"] == TRIALS  # no trial was added or duplicated by the resumes
