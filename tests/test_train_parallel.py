"""The run's train stage on a CPU: winner and baseline side by side in forked processes.

Each child gets threads // 2 threads, so with 2 threads each trains on one thread: the same
arithmetic as a sequential run on one thread, so verify.json's numbers must be identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import torch_threads
from tests.tiny_run import make_glue_dir, make_tiny_model


def _run(tmp: Path, model_dir: Path, glue: Path, name: str, threads: int, jobs: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    from heterosearch.pipeline import RunConfig, run_all

    monkeypatch.setenv("HETEROSEARCH_TRAIN_JOBS", jobs)
    cfg = RunConfig(budget=2000, task="mrpc", model=str(model_dir), data_dir=str(glue), out=str(tmp / name),
                    trials=4, max_train_steps=6, score_batches=1, batch_size=8)
    with torch_threads(threads):
        run_all(cfg)
    return json.loads((tmp / name / "verify.json").read_text())


def test_side_by_side_training_equals_one_after_the_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = make_tiny_model(tmp_path / "model")
    glue = make_glue_dir(tmp_path / "glue", n_train=48, n_dev=16)
    one = _run(tmp_path, model_dir, glue, "sequential", 1, "1", monkeypatch)
    two = _run(tmp_path, model_dir, glue, "parallel", 2, "2", monkeypatch)
    assert one["train_processes"] == 1 and two["train_processes"] == 2
    for label in ("winner", "baseline"):
        assert two[label]["allocation"] == one[label]["allocation"]
        assert two[label]["params"] == one[label]["params"] > 0
        assert two[label]["steps"] == one[label]["steps"] == 6
        assert two[label]["splits"] == one[label]["splits"]  # bit-identical metrics on every split
        assert two[label]["train_loss"] == one[label]["train_loss"]
    assert not (tmp_path / "parallel" / "checkpoints").exists()  # each child removed its checkpoint
    assert (tmp_path / "parallel" / "adapter_config.json").is_file()


def test_a_user_error_in_a_child_is_one_user_error() -> None:
    from heterosearch.errors import UserError
    from heterosearch.train.parallel import Job, run_jobs

    def bad(on_step):
        raise UserError("no such thing")

    def good(on_step):
        on_step(1)
        return 7

    with pytest.raises(UserError, match="no such thing"):
        run_jobs([Job("a", 1, good), Job("b", 1, bad)], parallel=2)
    assert run_jobs([Job("a", 1, good), Job("b", 1, lambda s: 8)], parallel=2) == {"a": 7, "b": 8}


def test_bad_jobs_setting_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from heterosearch.errors import UserError
    from heterosearch.train.parallel import plan_jobs

    monkeypatch.setenv("HETEROSEARCH_TRAIN_JOBS", "two")
    with pytest.raises(UserError):
        plan_jobs("cpu", 2)
    monkeypatch.setenv("HETEROSEARCH_TRAIN_JOBS", "1")
    assert plan_jobs("cpu", 2) == 1
    monkeypatch.delenv("HETEROSEARCH_TRAIN_JOBS")
    with torch_threads(2):
        assert plan_jobs("cpu", 2) == 2 and plan_jobs("cuda:0", 2) == 1 and plan_jobs("cpu", 1) == 1
