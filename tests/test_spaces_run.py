"""`heterosearch run` end to end on every shipped space, on a tiny saved BERT (seconds each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from heterosearch.space import available_spaces
from tests.tiny_run import make_glue_dir, make_tiny_model

BUDGET = 20_000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return make_tiny_model(root / "model", num_layers=4), make_glue_dir(root / "glue", n_train=64, n_dev=32)


@pytest.mark.parametrize("space", sorted(available_spaces()))
def test_run_every_space(space: str, tiny: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = tiny
    out = tmp_path / "run"
    env = {**os.environ, "HETEROSEARCH_QUIET": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "heterosearch", "run", "--budget", str(BUDGET), "--task", "mrpc", "--space", space,
           "--model", str(model), "--data-dir", str(data), "--max-train-steps", "2", "--trials", "30",
           "--score-batches", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    allocation = json.loads((out / "allocation.json").read_text())
    assert results["params"] == allocation["params"] <= BUDGET
    assert sum(e["params"] for e in allocation["elements"]) == allocation["params"]
    assert all(e["kind"] in {"lora", "shortcut", "bank", "mos"} for e in allocation["elements"])
    # The exact optimum is never beaten by Optuna on the same objective.
    assert results["search"]["exact_objective"] >= results["search"]["best_objective"] - 1e-9
    assert results["verify"]["winner"]["params"] == results["params"]

    # The exported allocation rebuilds on a fresh base model with exactly the counted parameters.
    import heterosearch
    from heterosearch.adapters import count_adapter_params
    from heterosearch.models import load_model

    fresh, _ = load_model(str(model), 2, 0)
    heterosearch.load_adapters(fresh, out)
    assert count_adapter_params(fresh) == results["params"]
    if space == "full":
        kinds = {e["kind"] for e in allocation["elements"]}
        assert len(kinds) >= 2, kinds  # the mixed space really mixes kinds on this model
