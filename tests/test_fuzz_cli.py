"""Property-based fuzzing of the command line's numeric options (issue "never run out of memory on
a bad number"): any value, of any type, for any numeric option of any command either reaches the
command's work with every number finite and in range, or is answered with exit code 2 and one
``error:`` line. Nothing is written to the working folder either way.

The work itself (run_all, verify_run, ...) is replaced by a stub that records its arguments and
stops, so one example costs milliseconds and the suite checks only the boundary.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from heterosearch.cli import app


class Reached(Exception):
    """The stub's signal: the command got past its boundary checks."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__("reached")
        self.args_ = args
        self.kwargs = kwargs


def _stub(*args: Any, **kwargs: Any) -> Any:
    raise Reached(args, kwargs)


# (command prefix, numeric options). RUN is a folder that need not exist: the stubs stop first.
COMMANDS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "run": (["run"], ("--budget", "--trials", "--train-epochs", "--max-train-steps", "--seed", "--score-batches",
                      "--lr", "--warmup", "--batch-size", "--max-length", "--val-fraction", "--split-seed")),
    "score": (["score"], ("--seed", "--score-batches")),
    "search": (["search", "RUN"], ("--budget", "--trials")),
    "train": (["train", "RUN"], ("--train-epochs", "--max-train-steps")),
    "verify": (["verify", "RUN"], ("--seeds", "--train-epochs", "--max-train-steps")),
    "rank-report": (["rank-report"], ("--budget", "--samples", "--steps", "--train-epochs", "--seeds",
                                      "--score-batches", "--seed")),
    "frontier": (["frontier"], ("--budgets", "--seeds", "--trials", "--train-epochs", "--max-train-steps", "--seed")),
    "worker": (["worker", "--storage", "x.journal"], ("--trials", "--seed", "--wait", "--heartbeat")),
}
# Always given for these commands (a required option), unless the fuzzer picks it.
REQUIRED = {"run": {"--budget": "2k"}, "rank-report": {"--budget": "2k"}, "frontier": {"--budgets": "2k"}}

ODD = ["", "-0", "0x1F", "1_000", " 7", "1e999", "-1e999", "nan", "-inf", "abc", "--", "0.5", "3", "1,2", "2,-1",
       "4" * 40, "1e12", "-1", "0", "2k", "0.5M", "1e-320", "\x00", "١٢"]
VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(ODD),
    st.text(max_size=6),
)


@st.composite
def invocations(draw: Any) -> tuple[str, list[str]]:
    name = draw(st.sampled_from(sorted(COMMANDS)))
    prefix, options = COMMANDS[name]
    chosen = draw(st.lists(st.sampled_from(options), min_size=1, max_size=3, unique=True))
    given_values = {**REQUIRED.get(name, {}), **{opt: draw(VALUES) for opt in chosen}}
    args = list(prefix)
    for opt, value in given_values.items():
        args += [opt, value] if not value.startswith("-") else [f"{opt}={value}"]
    return name, args


def numbers(obj: Any, name: str = "") -> list[tuple[str, float]]:
    """Every (field name, number) in a stub's arguments (dataclasses, dicts, lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [n for f in dataclasses.fields(obj) for n in numbers(getattr(obj, f.name), f.name)]
    if isinstance(obj, dict):
        return [n for k, v in obj.items() for n in numbers(v, str(k))]
    if isinstance(obj, (list, tuple)):
        return [n for v in obj for n in numbers(v, name)]
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return [(name, obj)]
    return []


def assert_in_range(reached: Reached) -> None:
    for name, value in numbers(list(reached.args_)) + numbers(reached.kwargs):
        if "budget" in name:  # checked against the model's size once it is loaded (test_bad_inputs)
            continue
        assert math.isfinite(value), (name, value)
        assert value >= 0, (name, value)
        if "seed" in name and isinstance(value, int):
            assert value < 2**32, (name, value)  # numpy and torch generators take any 32-bit seed
            continue
        assert value <= 10**9, (name, value)  # every count and rate has an upper bound at the boundary


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    import heterosearch.evidence as verify
    import heterosearch.evidence.frontier as frontier
    import heterosearch.optimize.worker as worker
    import heterosearch.pipeline as pipeline

    monkeypatch.setattr(pipeline, "run_all", _stub)
    monkeypatch.setattr(pipeline.Run, "open", staticmethod(_stub))
    monkeypatch.setattr(pipeline.Run, "reopen", staticmethod(_stub))
    monkeypatch.setattr(verify, "verify_run", _stub)
    monkeypatch.setattr(verify, "rank_report", _stub)
    monkeypatch.setattr(frontier, "frontier", _stub)
    monkeypatch.setattr(worker, "run_worker", _stub)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HETEROSEARCH_QUIET", "1")
    return tmp_path


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=invocations())
def test_numeric_options_reach_the_work_in_range_or_get_one_line(stubbed: Path, case: tuple[str, list[str]]) -> None:
    _, args = case
    result = CliRunner().invoke(app, args)
    if isinstance(result.exception, Reached):
        assert_in_range(result.exception)
    else:
        everything = result.output + (result.stderr or "")
        assert "Traceback" not in everything, everything
        assert result.exit_code == 2, (args, result.exit_code, everything, result.exception)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, lines)
        assert len(lines[0]) <= 800, args  # never an unbounded value in a message
    assert os.listdir(stubbed) == [], args  # nothing written, whatever the outcome


@pytest.mark.parametrize("args, fragment", [
    (["run", "--budget", "2k", "--seed", "abc"], "Invalid value for '--seed'"),
    (["run", "--budget", "2k", "--seed=-1"], "--seed must be an integer in [0, 4,294,967,295]"),
    (["run", "--budget", "2k", "--train-epochs", "nan"], "--train-epochs must be a finite number"),
    (["run", "--budget", "2k", "--batch-size", "100000"], "--batch-size must be an integer in [1, 4,096]"),
    (["verify", "RUN", "--seeds", "0"], "--seeds must be an integer in [1, 1,000]"),
    (["frontier", "--budgets", "2k", "--seeds", "5,x"], "--seeds takes a count"),
    (["worker", "--storage", "x.journal", "--heartbeat", "0"], "--heartbeat must be an integer in [1, 86,400]"),
    (["run", "--bogus"], "No such option: --bogus"),
    (["nosuch"], "No such command 'nosuch'"),
])
def test_usage_errors_are_one_line(stubbed: Path, args: list[str], fragment: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_valid_values_reach_the_work(stubbed: Path, name: str) -> None:
    """The property above is not vacuous: in-range values get past every command's boundary."""
    prefix, options = COMMANDS[name]
    good = {"--budget": "2k", "--budgets": "2k,4k", "--seeds": "0,1" if name == "rank-report" else "3",
            "--train-epochs": "1.5", "--lr": "0.001", "--warmup": "0.1", "--val-fraction": "0.2", "--wait": "0",
            "--steps": "0", "--samples": "8"}
    args = list(prefix)
    for opt in options:
        args += [opt, good.get(opt, "7")]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, Reached), (args, result.output, result.stderr, result.exception)
    assert_in_range(result.exception)
