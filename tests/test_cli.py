"""The command line: fast help, one-line errors with exit code 2, `ls` and `validate`.

Fast tests: nothing here loads model weights. The one case that needs site shapes (a budget
below the cheapest allocation) builds the architecture on the meta device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from heterosearch.cli import app
from heterosearch.space import available_spaces

REPO = Path(__file__).resolve().parents[1]
SHIPPED_SPACES = sorted((REPO / "heterosearch" / "search_spaces").glob("*.yaml"))
PROXY_NAMES = ("grad_norm", "snip", "synflow", "spectral")
TASK_NAMES = ("mrpc", "rte", "stsb", "sst2", "cola")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"HETEROSEARCH_QUIET": "1"})


def _env() -> dict[str, str]:
    return {**os.environ, "HETEROSEARCH_QUIET": "1"}


def assert_one_line_error(result, *must_contain: str) -> str:
    """Exit code 2, exactly one non-empty stderr line starting with `error:`, no traceback."""
    everything = result.output + result.stderr
    assert "Traceback" not in everything, everything
    assert result.exit_code == 2, (result.exit_code, everything, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("error:"), line
    assert len(line) > len("error: ") + 5, line
    for text in must_contain:
        assert text in line, (text, line)
    return line


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("module", ["heterosearch.cli", "heterosearch"])
def test_help_is_fast_as_a_subprocess(module: str) -> None:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, env=_env(), timeout=60)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for command in ("run", "score", "search", "export", "train", "ls", "validate"):
        assert command in proc.stdout
    assert seconds < 3.0, f"--help took {seconds:.2f}s"


def test_importing_the_cli_does_not_import_torch() -> None:
    code = "import sys, heterosearch.cli; print(sorted(m for m in ('torch', 'transformers', 'peft', 'optuna') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("command", ["run", "score", "search", "export", "train", "ls", "validate"])
def test_every_command_has_help(runner: CliRunner, command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


# ---------------------------------------------------------------- bad input -> one line, exit 2


@pytest.mark.parametrize("budget", ["abc", "0", "-1", "1.5", "0.5Q"])
def test_bad_budget(runner: CliRunner, tmp_path: Path, budget: str) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "--budget", budget, "--task", "mrpc", "--out", str(out)])
    assert_one_line_error(result, "budget", repr(budget))
    assert not out.exists()


def test_bad_budget_with_equals_sign(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--budget=-1", "--out", str(tmp_path / "out")])
    assert_one_line_error(result, "budget")


def test_missing_budget(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--task", "mrpc", "--out", str(tmp_path / "out")])
    assert_one_line_error(result, "--budget")


def test_bad_budget_in_the_search_stage(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["search", str(tmp_path), "--budget", "abc"])
    assert_one_line_error(result, "budget")


def test_unknown_task_suggests_the_closest(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--budget", "0.5M", "--task", "mrcp", "--out", str(tmp_path / "out")])
    assert_one_line_error(result, "'mrcp'", "did you mean 'mrpc'")


def test_unknown_proxy(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--budget", "0.5M", "--proxy", "snipp", "--out", str(tmp_path / "out")])
    line = assert_one_line_error(result, "proxy", "'snipp'", "did you mean 'snip'")
    for name in PROXY_NAMES:
        assert name in line


def test_unknown_space(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "--budget", "0.5M", "--space", "lorra", "--out", str(out)])
    assert_one_line_error(result, "search space", "'lorra'", "did you mean 'lora'")
    assert not (out / "config.json").exists()


def test_space_file_that_does_not_exist(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--budget", "0.5M", "--space", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "out")])
    assert_one_line_error(result, "nope.yaml", "does not exist")


def test_missing_data_dir(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-glue"
    result = runner.invoke(app, ["run", "--budget", "0.5M", "--data-dir", str(missing), "--out", str(tmp_path / "out")])
    assert_one_line_error(result, "--data-dir", str(missing))


def test_budget_below_the_cheapest_allocation(runner: CliRunner, tmp_path: Path) -> None:
    # Needs site shapes: builds MiniLM on the meta device (no weights are loaded).
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "--budget", "100", "--task", "mrpc", "--out", str(out)])
    line = assert_one_line_error(result, "budget 100", "cheapest")
    assert "768" in line  # one q/k/v/o site of MiniLM at rank 1: 1 * (384 + 384)
    # A refused run leaves nothing that would block the corrected command.
    assert not (out / "config.json").exists()


def test_model_path_that_does_not_exist(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    result = runner.invoke(app, ["run", "--budget", "0.5M", "--model", str(missing), "--out", str(tmp_path / "out")])
    assert_one_line_error(result, "model", str(missing), "does not exist")


def test_output_folder_with_an_earlier_run(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "earlier"
    out.mkdir()
    earlier = {"config": {"budget": 500000, "task": "mrpc", "seed": 0}, "seed": 0}
    (out / "config.json").write_text(json.dumps(earlier))
    (out / ".heterosearch-run").write_text('{"format_version": 1}')  # what every run folder carries
    result = runner.invoke(app, ["run", "--budget", "0.5M", "--task", "mrpc", "--out", str(out)])
    assert_one_line_error(result, str(out), "--resume", "--overwrite")
    assert json.loads((out / "config.json").read_text()) == earlier  # untouched


def test_output_folder_that_is_not_a_run(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["run", "--budget", "0.5M", "--out", str(out)])
    assert_one_line_error(result, str(out))
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("command", ["search", "export", "train"])
def test_stage_on_a_folder_that_is_not_a_run(runner: CliRunner, tmp_path: Path, command: str) -> None:
    result = runner.invoke(app, [command, str(tmp_path)])
    assert_one_line_error(result, "not a heterosearch run folder")


@pytest.mark.parametrize(
    "text",
    [
        "name: broken\nversion: 1\nkinds: [lora:\n  - a: b\n",  # YAML syntax error
        "name: [broken\n",  # unclosed flow sequence
        "name: x\nversion: 1\nkinds:\n  lora:\n    roles: [q, v]\n    rankz: [0, 8]\n",  # valid YAML, unknown key
    ],
    ids=["syntax", "unclosed", "unknown-key"],
)
def test_validate_broken_yaml(runner: CliRunner, tmp_path: Path, text: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["validate", str(path)])
    assert_one_line_error(result, "broken.yaml")


def test_validate_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert_one_line_error(result, "nope.yaml")


# ---------------------------------------------------------------- ls / validate


def test_ls_lists_spaces_kinds_proxies_and_tasks(runner: CliRunner) -> None:
    result = runner.invoke(app, ["ls"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    sections = ("search spaces:", "adapter kinds:", "proxies:", "tasks:")
    positions = [out.index(s) for s in sections]
    assert positions == sorted(positions)
    spaces, kinds, proxies, tasks = (out[a:b] for a, b in zip(positions, [*positions[1:], len(out)]))
    assert "lora" in spaces.split()
    for kind in ("lora", "shortcut", "bank", "mos"):
        assert kind in kinds.split()
    for name in PROXY_NAMES:
        assert name in proxies.split()
    for name in TASK_NAMES:
        assert name in tasks.split()


def test_shipped_spaces_are_the_packaged_ones() -> None:
    assert SHIPPED_SPACES, "no heterosearch/search_spaces/*.yaml in the repository"
    assert {p.name for p in SHIPPED_SPACES} == {p.name for p in available_spaces().values()}


def test_validate_every_shipped_space(runner: CliRunner) -> None:
    result = runner.invoke(app, ["validate", *map(str, SHIPPED_SPACES)])
    assert result.exit_code == 0, result.output
    ok = [line for line in result.stdout.splitlines() if line.startswith("ok ")]
    assert len(ok) == len(SHIPPED_SPACES)
    for path in SHIPPED_SPACES:
        assert any(path.name in line for line in ok), (path, ok)


class _Captured(Exception):
    pass


def test_trials_default_follows_the_objective_and_train_steps_reaches_the_config(runner: CliRunner,
                                                                                monkeypatch: pytest.MonkeyPatch,
                                                                                tmp_path: Path) -> None:
    """A train-objective trial costs up to a minute, a proxy trial milliseconds: without --trials, 12 and 300."""
    import heterosearch.pipeline as pipeline

    seen: list = []

    def fake_run_all(cfg, **_: object) -> None:
        seen.append(cfg)
        raise _Captured

    monkeypatch.setattr(pipeline, "run_all", fake_run_all)
    for extra, trials, steps in ([[], 300, None], [["--objective", "train"], 12, None],
                                 [["--objective", "train", "--train-steps", "6"], 12, 6],
                                 [["--objective", "train", "--trials", "3"], 3, None]):
        runner.invoke(app, ["run", "--budget", "10k", "--out", str(tmp_path / "r"), *extra])
        assert (seen[-1].trials, seen[-1].train_steps, seen[-1].objective) == (trials, steps, extra[1] if extra else "proxy")


@pytest.mark.parametrize("command", ["train", "verify"])
def test_device_and_precision_reach_train_and_verify(runner: CliRunner, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path, command: str) -> None:
    """--device/--precision on the stage commands that train (None = the run's own setting)."""
    import heterosearch.evidence as evidence
    import heterosearch.pipeline as pipeline

    got: dict = {}

    def capture(*_: object, **kwargs: object) -> None:
        got.update(kwargs.get("recipe", kwargs))
        raise _Captured

    if command == "train":
        monkeypatch.setattr(pipeline.Run, "reopen", classmethod(lambda cls, *a, **k: capture(**k)))
    else:
        monkeypatch.setattr(evidence, "verify_run", capture)
    runner.invoke(app, [command, str(tmp_path), "--device", "cpu", "--precision", "bf16", "--lr", "0.002"])
    assert (got["device"], got["precision"], got["lr"]) == ("cpu", "bf16", 0.002)
    got.clear()
    runner.invoke(app, [command, str(tmp_path)])
    assert "device" not in got and "precision" not in got  # not given: the run's own
