"""Every file heterosearch reads back from a run folder, corrupted at random, is answered cleanly.

One small real run folder (``run`` + ``verify``), a rank report and a frontier are built once
on the tiny BERT. Then, per file type, hypothesis corrupts one copy of the file: truncated
bytes, a field (anywhere in the JSON tree) replaced by a value of another type, a huge
integer or the ``NaN``/``Infinity`` literals Python's json writes, a deleted field, invalid
UTF-8. The cheap consumers of that file (``read_run_file``, ``heterosearch report``,
``load_adapters``, ``Run.reopen``, ...) must either succeed or raise ``UserError`` with one
line; any other exception fails. Nothing outside the scratch copy may change.

Speed (about a minute on 2 busy cores): one scratch copy is reset between examples by restoring
only the files that changed; the click command is built from the typer app once; the report's
figures are built but not rasterised (``_save`` closes the figure instead of writing a PNG,
``tight_layout`` is skipped), so the JSON is still read, indexed and handed to matplotlib as in
a real report. ``test_the_pristine_files_pass_and_the_real_report_renders`` draws the real PNGs.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.main import get_command

from heterosearch import run_folder
from heterosearch.cli import app
from heterosearch.errors import UserError
from heterosearch.export.schema import KINDS, read_run_file
from tests.tiny_run import make_glue_dir, make_tiny_model

#: Examples per file type; raise it (HETEROSEARCH_FUZZ_EXAMPLES=3000) for a deeper search before a release.
N_EXAMPLES = int(os.environ.get("HETEROSEARCH_FUZZ_EXAMPLES", "200"))
EXAMPLES = settings(max_examples=N_EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ENV = {"HETEROSEARCH_QUIET": "1", "HF_HUB_OFFLINE": "1"}
BUDGET = 2000


#: typer's CliRunner rebuilds the click command from ``app`` on every call (~30 ms): build it once.
COMMAND = get_command(app)


def invoke(args: list[str]) -> Any:
    """``heterosearch ARGS`` in-process (exit code, output and stderr apart)."""
    return CliRunner().invoke(COMMAND, args, env=ENV)


class World(dict):  # type: ignore[type-arg]
    """The built folders; a short repr, so a failing example's report does not print megabytes of bytes."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} with {len(self)} entries>"


def snapshot(folder: Path, skip: Path | None = None) -> dict[str, bytes]:
    """Every file's bytes under ``folder`` (but not under ``skip``)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and (skip is None or skip not in p.parents)}


def stats(folder: Path, skip: Path | None = None) -> dict[str, tuple[int, int, int]]:
    """(size, mtime, ctime) of every file: any write changes ctime, even one that keeps the bytes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        if skip is not None and Path(dirpath) == skip.parent:
            dirnames[:] = [d for d in dirnames if Path(dirpath) / d != skip]
        for name in filenames:
            st_ = os.stat(Path(dirpath) / name)
            out[os.path.relpath(Path(dirpath) / name, folder)] = (st_.st_size, st_.st_mtime_ns, st_.st_ctime_ns)
    return out


class Scratch:
    """One scratch copy of a pristine folder, reset between examples by restoring only what changed.

    A fresh ``copytree`` per example costs ~10 ms; a reset stats the copy's files, puts back the ones
    a consumer (or the corruption) wrote, and deletes the ones it created.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.source: Path | None = None
        self.clean: dict[str, tuple[int, int, int]] = {}

    def reset(self, source: Path) -> Path:
        """Make the scratch folder an exact copy of ``source`` again; returns it."""
        if source != self.source:
            shutil.rmtree(self.folder, ignore_errors=True)
            shutil.copytree(source, self.folder)
            self.source = source
        else:
            now = stats(self.folder)
            for rel in now.keys() - self.clean.keys():
                (self.folder / rel).unlink()
            for rel, clean in self.clean.items():
                if now.get(rel) != clean:
                    shutil.copy2(source / rel, self.folder / rel)
            for sub in sorted((p for p in self.folder.rglob("*") if p.is_dir()), reverse=True):
                if not (source / sub.relative_to(self.folder)).is_dir():
                    shutil.rmtree(sub)
        self.clean = stats(self.folder)
        return self.folder


# -- the pristine folders (built once) -------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """run (+ verify), the same run without results.json, a rank report and a frontier, all tiny."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls on a shared 2-core machine: one thread is faster
    try:
        root = tmp_path_factory.mktemp("fuzz-files")
        model = make_tiny_model(root / "model")
        data = make_glue_dir(root / "data", n_train=16, n_dev=8)
        common = ["--model", str(model), "--data-dir", str(data)]
        run, rank, front = root / "pristine" / "run", root / "pristine" / "rank", root / "pristine" / "front"
        steps = [
            ["run", "--budget", str(BUDGET), *common, "--trials", "3", "--max-train-steps", "1", "--out", str(run)],
            ["verify", str(run), "--seeds", "1", "--methods", "winner,uniform_qv", "--max-train-steps", "1"],
            ["rank-report", "--budget", str(BUDGET), *common, "--samples", "4", "--steps", "1", "--score-batches", "1",
             "--out", str(rank)],
            ["frontier", "--budgets", str(BUDGET), "--seeds", "1", "--methods", "winner,uniform_qv", *common,
             "--trials", "3", "--max-train-steps", "1", "--out", str(front)],
        ]
        for args in steps:
            result = invoke(args)
            assert result.exit_code == 0, (args[0], result.output, result.exception)
    finally:
        torch.set_num_threads(threads)
        run_folder.release_all()
    # Without results.json the report reads scores.json and search.json's winner; without verify_seeds.json it
    # spends no time on a figure those two files do not feed.
    bare = root / "pristine" / "run-without-results"
    shutil.copytree(run, bare)
    (bare / "results.json").unlink()
    (bare / "verify_seeds.json").unlink()
    for folder in (run, rank, front, bare):
        (folder / run_folder.LOCK).unlink(missing_ok=True)  # a lock file left by the build is not part of the data

    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(model)
    scratch_root = root / "scratch"
    yield World(root=root, model=model, base=base, run=run, rank=rank, front=front, bare=bare,
                scratch_root=scratch_root, scratch=scratch_root / f"b{BUDGET}")


@pytest.fixture
def fast_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build the report's figures but do not rasterise them (the per-example cost is the PNG, not the data)."""
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from heterosearch.report import plots

    plots._plt()  # selects the Agg backend once; later calls would reselect it (force=True) every figure
    monkeypatch.setattr(plots, "_plt", lambda: plt)
    monkeypatch.setattr(plots, "_save", lambda fig, path: (plt.close(fig), Path(path))[1])
    monkeypatch.setattr(Figure, "tight_layout", lambda self, *args, **kwargs: None)


# -- consumers: each takes the scratch run folder --------------------------------------------------
def _one_line(exc: UserError) -> None:
    text = str(exc)
    assert text and len(text.splitlines()) == 1, repr(text)


def _read(kind: str) -> Callable[[dict[str, Any]], Any]:
    def consume(w: dict[str, Any]) -> Any:
        try:
            return read_run_file(w["scratch"] / kind, kind)
        except UserError as exc:
            _one_line(exc)
            assert kind in str(exc), str(exc)  # names the file
            raise

    return consume


def _report(w: dict[str, Any]) -> None:
    result = invoke(["report", str(w["scratch"])])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # the real traceback, for hypothesis to report and shrink
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, lines
        raise UserError(lines[0])
    assert result.exit_code == 0, (result.exit_code, result.output)
    assert (w["scratch"] / "report.md").is_file()


def _reopen(w: dict[str, Any]) -> None:
    from heterosearch.pipeline import Run

    try:
        Run.reopen(w["scratch"])
    finally:
        run_folder.release_all()


def _open_run(w: dict[str, Any]) -> None:
    from heterosearch.evidence.seeds import open_run

    try:
        open_run(w["scratch"])
    finally:
        run_folder.release_all()


@functools.cache
def _sites_of(scores_file: Path) -> tuple[Any, ...]:
    """Site rows of a scores.json as attribute objects (read once)."""
    return tuple(SimpleNamespace(**s) for s in json.loads(scores_file.read_text())["sites"])


def _model_sites(w: dict[str, Any]) -> list[Any]:
    """The tiny model's sites (as the search sees them), from the pristine scores.json."""
    return list(_sites_of(w["run"] / "scores.json"))


def _search_problem(w: dict[str, Any]) -> None:
    """What `search` does with scores.json: the LoRA space's problem over this model's sites."""
    from heterosearch.optimize.build import build_problem
    from heterosearch.proxies import Scores
    from heterosearch.space import load_space

    scores = Scores.load(w["scratch"] / "scores.json")
    build_problem(load_space("lora"), _model_sites(w), scores, "spectral", BUDGET)


def _load_winner(w: dict[str, Any]) -> None:
    """What `export` and `train` do with search.json: the winner, and its parameter count on this model."""
    from heterosearch.pipeline import load_winner

    winner, _ = load_winner(SimpleNamespace(out=w["scratch"], path=lambda name: w["scratch"] / name))
    winner.params({s.key: s for s in _model_sites(w)})


def _verify_json_reuse(w: dict[str, Any]) -> None:
    """What `verify` does with verify.json: reuse the run's own trainings, then summarise them."""
    from heterosearch.evidence.seeds import _from_verify_json
    from heterosearch.evidence.statistics import summarize
    from heterosearch.space.allocation import Allocation

    pristine = json.loads((w["run"] / "verify.json").read_text())
    run = SimpleNamespace(cfg=SimpleNamespace(seed=0), path=lambda name: w["scratch"] / name)
    cfg = SimpleNamespace(to_dict=lambda: pristine["train_config"])
    target = pristine["winner"]["params"]
    for method, label in (("winner", "winner"), ("uniform_qv", "baseline")):
        plan = SimpleNamespace(allocation=Allocation.from_dict(pristine[label]["allocation"]))
        entry = _from_verify_json(run, method, 0, plan, cfg)
        if entry is not None:
            assert isinstance((entry["params"] - target) / target, float)  # the gap verify records
            summarize({f"{method}/0": {"method": method, "seed": 0, **entry}}, [method])


def _load_adapters(w: dict[str, Any]) -> None:
    from heterosearch import load_adapters

    load_adapters(copy.deepcopy(w["base"]), w["scratch"])


def _load_results(w: dict[str, Any]) -> None:
    from heterosearch.pipeline import load_results

    load_results(w["scratch"])


def _summarize_frontier(w: dict[str, Any]) -> None:
    from heterosearch.evidence.frontier import summarize_frontier

    summarize_frontier(w["scratch_root"], [BUDGET])


#: file -> (the pristine folder it is copied from, its consumers)
CONSUMERS: dict[str, tuple[str, list[Callable[[dict[str, Any]], Any]]]] = {
    "config.json": ("run", [_reopen, _open_run]),
    "scores.json": ("bare", [_search_problem, _report]),
    "search.json": ("bare", [_load_winner, _report]),
    "allocation.json": ("run", [_load_adapters]),
    "verify.json": ("run", [_verify_json_reuse]),  # `train` rereads it too, but then trains: not a cheap consumer
    "results.json": ("run", [_load_results, _report]),
    "verify_seeds.json": ("run", [_report, _summarize_frontier]),
    "rank_report.json": ("rank", [_report]),
    "frontier.json": ("front", [_report]),
}


def test_every_kind_has_a_consumer_table_and_the_writers_versions() -> None:
    """Every file kind is fuzzed, and the schema reads the format versions the writers write."""
    import importlib

    from heterosearch.export.schema import SCHEMAS

    def module(name: str) -> Any:  # heterosearch.evidence re-exports functions named like its modules
        return importlib.import_module(f"heterosearch.{name}")

    assert set(CONSUMERS) == set(KINDS)
    allocation_file = module("export.allocation_file")
    assert (SCHEMAS["allocation.json"].format, SCHEMAS["allocation.json"].format_version) == (
        allocation_file.FORMAT, allocation_file.FORMAT_VERSION)
    assert SCHEMAS["verify_seeds.json"].format_version == module("evidence.seeds").FORMAT_VERSION
    assert SCHEMAS["rank_report.json"].format_version == module("evidence.rank_report").FORMAT_VERSION
    assert SCHEMAS["frontier.json"].format_version == module("evidence.frontier").FORMAT_VERSION


def test_the_verification_comparison_the_report_prints_is_checked() -> None:
    """results.json / verify.json "comparison" (found by this file's fuzzing: a string there reached
    comparison_line as a traceback): what compare() writes passes, any other shape is refused."""
    from heterosearch.export.schema.files import COMPARISON
    from heterosearch.export.schema.specs import _Mismatch
    from heterosearch.tasks._metrics import compare

    a, b = {"splits": {"test": {"accuracy": 0.8}}}, {"splits": {"test": {"accuracy": 0.7}}}
    COMPARISON.check(compare("accuracy", "test", a, b), ("verify", "comparison"))
    COMPARISON.check(compare("accuracy", "test", a, {}), ("verify", "comparison"))  # a missing value: None
    for bad in ("0", 0, [], {"metric": "accuracy"}, {**compare("accuracy", "test", a, b), "better": 1}):
        with pytest.raises(_Mismatch):
            COMPARISON.check(bad, ("verify", "comparison"))


# -- corruptions -------------------------------------------------------------------------------------
WRONG_VALUES = st.one_of(
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3),
    st.none(),
    st.dictionaries(st.text(max_size=4), st.dictionaries(st.text(max_size=4), st.integers(-2, 2), max_size=2),
                    max_size=2),
    st.integers(min_value=2**63, max_value=10**40),
    st.integers(min_value=-(10**40), max_value=-(2**63)),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
BAD_UTF8 = [b"\xff", b"\x80", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82"]


def _signature(value: Any) -> str:
    """The JSON type of a value (int and float are one: number)."""
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def _is_map(node: dict[str, Any]) -> bool:
    """Free keys (site keys, seeds, budgets) rather than named fields: 3+ values of one JSON type."""
    return len(node) >= 3 and len({_signature(v) for v in node.values()}) == 1


def shapes(doc: Any) -> dict[tuple[Any, ...], list[tuple[Any, ...]]]:
    """Every path into ``doc``, grouped by shape: list indices and map keys become ``*``.

    Drawing a shape first, then one of its paths, gives every field of the schema its share of the
    examples: scores.json's 3,000 curve values are one shape, not 99 % of the draws.
    """
    out: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}

    def walk(node: Any, path: tuple[Any, ...], shape: tuple[Any, ...]) -> None:
        out.setdefault(shape, []).append(path)
        if isinstance(node, dict):
            free = _is_map(node)
            for k, v in node.items():
                walk(v, (*path, k), (*shape, "*" if free else k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i), (*shape, "*"))

    walk(doc, (), ())
    return out


_SHAPES: dict[bytes, dict[tuple[Any, ...], list[tuple[Any, ...]]]] = {}


def corrupt(data: Any, raw: bytes) -> bytes:
    """One corruption of a pristine file's bytes (field replacements drawn most: they reach the consumers)."""
    kinds = ["replace", "replace", "replace", "delete", "truncate", "utf8"]
    how = data.draw(st.sampled_from(kinds), label="corruption")
    if how == "truncate":
        return raw[: data.draw(st.integers(0, len(raw) - 1), label="cut at")]
    if how == "utf8":
        at = data.draw(st.integers(0, len(raw)), label="at byte")
        return raw[:at] + data.draw(st.sampled_from(BAD_UTF8), label="bytes") + raw[at:]
    if raw not in _SHAPES:
        _SHAPES[raw] = shapes(json.loads(raw))
    by_shape = _SHAPES[raw]
    candidates = sorted((k for k in by_shape if k or how == "replace"), key=str)
    shape = data.draw(st.sampled_from(candidates), label="field shape")
    path = data.draw(st.sampled_from(by_shape[shape]), label="field")
    if not path:
        return json.dumps(data.draw(WRONG_VALUES, label="top-level value")).encode()
    doc = json.loads(raw)  # a fresh copy (faster than deepcopy)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if how == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(WRONG_VALUES, label="value")
    return json.dumps(doc, indent=2).encode()  # allow_nan: NaN and Infinity as Python writes them


# -- the property ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pristine_bytes(world: dict[str, Any]) -> dict[str, bytes]:
    """Every file of the build (model, data, the pristine folders) before any example ran."""
    return World(snapshot(world["root"], skip=world["scratch_root"]))


@pytest.fixture(scope="module")
def scratch(world: dict[str, Any], pristine_bytes: dict[str, bytes]) -> Scratch:
    """The one scratch folder every example works in (made after the pristine bytes are recorded)."""
    return Scratch(world["scratch"])


@pytest.fixture(scope="module")
def pristine_stats(world: dict[str, Any], pristine_bytes: dict[str, bytes]) -> dict[str, tuple[int, int, int]]:
    """size, mtime and ctime of every file outside the scratch folder: checked after each example (cheap)."""
    return World(stats(world["root"], skip=world["scratch_root"]))


@pytest.mark.parametrize("kind", KINDS)
@EXAMPLES
@given(data=st.data())
def test_a_corrupted_file_is_answered_with_one_line(
    world: dict[str, Any], pristine_bytes: dict[str, bytes], pristine_stats: dict[str, tuple[int, int, int]],
    scratch: Scratch, fast_figures: None, kind: str, data: Any,
) -> None:
    """One corruption of one file; every cheap consumer of that file succeeds or raises one UserError line."""
    source, consumers = CONSUMERS[kind]
    folder = world[source]
    bad = corrupt(data, pristine_bytes[str((folder / kind).relative_to(world["root"]))])
    scratch.reset(folder)
    (world["scratch"] / kind).write_bytes(bad)
    for consume in [_read(kind), *consumers]:
        try:
            consume(world)
        except UserError as exc:
            _one_line(exc)
    assert stats(world["root"], skip=world["scratch_root"]) == pristine_stats  # nothing else was written


def test_the_pristine_files_pass_and_the_real_report_renders(world: dict[str, Any], tmp_path: Path) -> None:
    """The schema accepts what heterosearch writes (the fuzz test's baseline), and the real report draws its PNGs."""
    for name in ("run", "rank", "front", "bare"):
        for path in sorted(world[name].rglob("*.json")):
            if path.name in KINDS:
                assert read_run_file(path) is not None
        folder = tmp_path / name
        shutil.copytree(world[name], folder)
        shutil.rmtree(folder / "plots", ignore_errors=True)
        result = invoke(["report", str(folder)])
        assert result.exit_code == 0, (result.output, result.exception)
        assert list((folder / "plots").glob("*.png")), name


#: One hand-made damage per file: (path of the field, the value put there).
DAMAGE: dict[str, tuple[tuple[Any, ...], Any]] = {
    "config.json": (("config", "trials"), "many"),
    "scores.json": (("curves", "spectral", "L0.q", 3), math.nan),
    "search.json": (("winner", "lora"), [1, 2]),
    "allocation.json": (("allocation", "lora", "L0.q"), -1),
    "verify.json": (("winner", "splits", "test"), None),
    "results.json": (("search", "ratio"), math.inf),
    "verify_seeds.json": (("summary", "test", "accuracy", "paired"), "x"),
    "rank_report.json": (("candidates", 0, "runs"), []),
    "frontier.json": (("points", str(BUDGET), "winner", "params", "min"), 1.5),
}


@pytest.mark.parametrize("kind", KINDS)
def test_one_line_names_the_file_the_field_and_the_fix(world: dict[str, Any], tmp_path: Path, kind: str) -> None:
    """Hand-made damage: the line names the file, the field and a command; bad JSON and UTF-8 name the line."""
    source, _ = CONSUMERS[kind]
    broken = json.loads((world[source] / kind).read_text())
    field, value = DAMAGE[kind]
    node = broken
    for key in field[:-1]:
        node = node[key]
    node[field[-1]] = value
    target = tmp_path / kind
    target.write_text(json.dumps(broken))
    with pytest.raises(UserError) as info:
        read_run_file(target, kind)
    line = str(info.value)
    assert len(line.splitlines()) == 1 and kind in line and "`heterosearch " in line, line
    assert all(str(k) in line for k in field), (field, line)
    target.write_bytes(b'{"a":\n 1,\n "b": }')
    with pytest.raises(UserError, match=r"is not valid JSON \(line 3\)"):
        read_run_file(target, kind)
    target.write_bytes(b'{"a":\n "\xff"}')
    with pytest.raises(UserError, match=r"not UTF-8 text \(a bad byte on line 2\)"):
        read_run_file(target, kind)
    with pytest.raises(UserError, match="does not exist"):
        read_run_file(tmp_path / "missing" / kind, kind)


def test_nothing_outside_the_scratch_folder_changed(world: dict[str, Any], pristine_bytes: dict[str, bytes]) -> None:
    """After every example above (this test runs last): the pristine folders, model and data, byte for byte."""
    assert snapshot(world["root"], skip=world["scratch_root"]) == pristine_bytes
