"""End to end on the packaged all-MiniLM-L6-v2 and a small slice of MRPC (96 train, 48 dev rows).

One `heterosearch run` per module (the expensive part); the other tests read its run folder,
rerun the stage commands into a second folder, resume it, and start a new seed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from heterosearch.cli import app

pytestmark = pytest.mark.slow

MRPC = Path(__file__).resolve().parents[1] / "heterosearch" / "tasks" / "data" / "mrpc"
TRAIN_ROWS, DEV_ROWS = 96, 48
BUDGET = 500_000
TRIALS = 20
RUN_ARGS = ["--budget", "0.5M", "--task", "mrpc", "--max-train-steps", "3", "--trials", str(TRIALS), "--score-batches", "2"]


def _head(src: Path, dst: Path, rows: int) -> None:
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    dst.write_text("".join(lines[: rows + 1]), encoding="utf-8")  # header + rows


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def invoke(args: list[str]) -> Any:
    result = CliRunner(env={"HETEROSEARCH_QUIET": "1"}).invoke(app, args)
    assert "Traceback" not in result.output + result.stderr, result.output + result.stderr
    return result


def run_ok(args: list[str]) -> Any:
    result = invoke(args)
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
    return result


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("glue")
    (root / "MRPC").mkdir()
    _head(MRPC / "train.tsv", root / "MRPC" / "train.tsv", TRAIN_ROWS)
    _head(MRPC / "dev.tsv", root / "MRPC" / "dev.tsv", DEV_ROWS)
    return root


@pytest.fixture(scope="module")
def run_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "main"
    run_ok(["run", *RUN_ARGS, "--data-dir", str(data_dir), "--out", str(out)])
    return out


@pytest.fixture(scope="module")
def results(run_dir: Path) -> dict[str, Any]:
    return _read(run_dir / "results.json")


def test_run_writes_every_file(run_dir: Path) -> None:
    for name in ("config.json", "scores.json", "study.journal", "search.json", "allocation.json",
                 "adapter_config.json", "verify.json", "results.json", "report.md"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "report.md").read_text(encoding="utf-8").strip()


def test_results_schema(run_dir: Path, results: dict[str, Any]) -> None:
    assert results["budget"] == BUDGET and type(results["budget"]) is int
    params = results["params"]
    assert isinstance(params, int) and 0 < params <= BUDGET
    allocation_file = _read(run_dir / "allocation.json")
    assert params == allocation_file["params"]
    assert results["allocation"] == allocation_file["allocation"]
    assert results["proxy"] == "spectral"
    assert results["seed"] == 0
    lora = results["allocation"]["lora"]
    assert lora and all(isinstance(r, int) and r >= 0 for r in lora.values())

    search = results["search"]
    assert search["trials"] == TRIALS
    for key in ("best_objective", "exact_objective"):
        assert isinstance(search[key], float) and search[key] > 0
    assert search["best_objective"] <= search["exact_objective"] + 1e-9

    verify = results["verify"]
    for label in ("winner", "baseline"):
        entry = verify[label]
        for key in ("accuracy", "f1"):
            assert 0.0 <= entry[key] <= 1.0, (label, key, entry[key])
        assert 0 < entry["params"] <= BUDGET
        assert entry["steps"] == 3
    assert verify["winner"]["params"] == params
    assert verify["baseline"]["params"] == 497_664  # uniform r=54 on q,v (README)


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # peft -> transformers 5
def test_adapter_config_loads_with_peft(run_dir: Path, results: dict[str, Any]) -> None:
    from peft import PeftConfig, get_peft_model

    from heterosearch.models import load_model

    config = PeftConfig.from_pretrained(str(run_dir))
    model, _ = load_model(None, 2, 0)
    peft_model = get_peft_model(model, config)
    lora = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    assert lora == results["params"]
    trainable_lora = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n and p.requires_grad)
    assert trainable_lora == results["params"]


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_adapter_folder_is_peft_native(run_dir: Path, results: dict[str, Any]) -> None:
    """RUN/adapter/ (LoRA-only winner): plain PEFT loads it and computes heterosearch's logits."""
    import torch
    from peft import PeftModel

    from heterosearch import load_adapters
    from heterosearch.export.peft_native import PACKAGED_PUBLIC_ID
    from heterosearch.models import load_model

    saved = _read(run_dir / "adapter" / "adapter_config.json")
    assert saved["base_model_name_or_path"] == PACKAGED_PUBLIC_ID  # never a local path
    assert not any(t.startswith("bert.") for t in saved["target_modules"])  # relative: matches AutoModel too
    ours = load_adapters(load_model(None, 2, 0)[0], run_dir)
    theirs = PeftModel.from_pretrained(load_model(None, 2, 0)[0], run_dir / "adapter")
    batch = {"input_ids": torch.tensor([[101, 2023, 2003, 1037, 3231, 102]]), "attention_mask": torch.ones(1, 6, dtype=torch.long)}
    ours.eval(), theirs.eval()
    with torch.no_grad():
        torch.testing.assert_close(theirs(**batch).logits, ours(**batch).logits, atol=1e-5, rtol=0)


def test_stage_commands_reproduce_the_winner(run_dir: Path, data_dir: Path, results: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "staged"
    run_ok(["score", "--task", "mrpc", "--data-dir", str(data_dir), "--score-batches", "2", "--out", str(out)])
    assert (out / "scores.json").is_file()
    run_ok(["search", str(out), "--budget", "0.5M", "--trials", str(TRIALS)])
    search = _read(out / "search.json")
    assert search["trials"] == TRIALS
    run_ok(["export", str(out)])
    staged = _read(out / "allocation.json")
    assert staged["allocation"] == results["allocation"]
    assert staged["params"] == results["params"]
    assert search["exact_objective"] == pytest.approx(results["search"]["exact_objective"])
    assert _read(out / "adapter_config.json") == _read(run_dir / "adapter_config.json")


def test_resume_with_other_settings_is_refused(run_dir: Path, data_dir: Path) -> None:
    before = (run_dir / "config.json").read_text(encoding="utf-8")
    result = invoke(["run", *RUN_ARGS, "--seed", "1", "--data-dir", str(data_dir), "--out", str(run_dir), "--resume"])
    assert result.exit_code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "seed" in lines[0], lines
    assert (run_dir / "config.json").read_text(encoding="utf-8") == before


def test_resume_adds_no_trials_and_keeps_finished_work(run_dir: Path, data_dir: Path, results: dict[str, Any]) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    verify_before = _read(run_dir / "verify.json")
    run_ok(["run", *RUN_ARGS, "--data-dir", str(data_dir), "--out", str(run_dir), "--resume"])
    again = _read(run_dir / "results.json")
    assert again["search"]["trials"] == TRIALS
    assert again["allocation"] == results["allocation"]
    study = optuna.load_study(study_name="heterosearch", storage=JournalStorage(JournalFileBackend(str(run_dir / "study.journal"))))
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == TRIALS  # (PRUNED: over-budget points, repaired)
    # The trained models are reused, not trained again.
    verify_after = _read(run_dir / "verify.json")
    for label in ("winner", "baseline"):
        assert verify_after[label]["seconds"] == verify_before[label]["seconds"]
        assert verify_after[label]["accuracy"] == verify_before[label]["accuracy"]


def test_another_seed_into_a_new_folder_is_allowed(run_dir: Path, data_dir: Path) -> None:
    out = run_dir.parent / "seed1"
    try:
        run_ok(["run", *RUN_ARGS, "--seed", "1", "--data-dir", str(data_dir), "--out", str(out)])
        again = _read(out / "results.json")
        assert again["seed"] == 1
        assert again["search"]["trials"] == TRIALS
        assert 0 < again["params"] <= BUDGET
    finally:
        shutil.rmtree(out, ignore_errors=True)
