"""The package's import graph has no cycles, and every module imports on its own.

Static: every ``import heterosearch...`` in every module, at module level or inside a
function (an import inside a function can hide a cycle until that function runs), is an
edge between modules; the graph must have no cycle, and the edges follow the pipeline's
order of packages (``ORDER``) but for the few written down with their reason (``UPSTREAM``).
Dynamic: each module is imported first, in a fresh interpreter's package state, so a module
that only imports after another one has been loaded fails here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "heterosearch"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module an imported name lives in (``heterosearch.space.SearchSpace`` -> ``heterosearch.space``)."""
    while name not in modules:
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return name


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            edges |= {m for t in targets if t.startswith("heterosearch") and (m := _resolve(t, modules)) and m != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert "heterosearch.report.render" in graph["heterosearch.pipeline.stages"]  # function-level imports count
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# The packages in pipeline order: a module may import its own package and the ones before it.
# (errors, recipe, progress, registry, version, options, run_folder: small shared modules, outside the order.)
ORDER = ("space", "models", "adapters", "tasks", "proxies", "optimize", "export", "train", "pipeline", "evidence",
         "report", "console", "cli_evidence", "cli")
# The imports against that order, each for a reason; a new one is a decision to write down here.
UPSTREAM = {
    # a kind brings its own scoring (adapters/<kind>/scoring.py), built on the proxies' machinery
    ("heterosearch.adapters.shortcut.scoring", "heterosearch.proxies"),
    ("heterosearch.adapters.shortcut.scoring", "heterosearch.proxies.base"),
    ("heterosearch.adapters.shortcut.scoring", "heterosearch.proxies.state"),
    ("heterosearch.adapters.bank.scoring", "heterosearch.proxies.group_sketch"),
    # streaming shortcut scoring sketches each candidate with the per-site sketch and the run's oversampling
    ("heterosearch.adapters.shortcut.scoring", "heterosearch.proxies.sketch"),
    ("heterosearch.adapters.shortcut.scoring", "heterosearch.proxies.settings"),
    # scores.json is written and read like every run file (atomic write, schema check)
    ("heterosearch.proxies.scoring", "heterosearch.export.files"),
    ("heterosearch.proxies.scoring", "heterosearch.export.schema"),
    # config.json's settings are RunConfig's fields: its schema names them
    ("heterosearch.export.schema.files", "heterosearch.pipeline.config"),
    # the train stage ends with report.md (the report reads files, never the pipeline)
    ("heterosearch.pipeline.stages", "heterosearch.report.render"),
    # a worker joining a lookahead study rebuilds the run's model and data from the settings stored in it
    ("heterosearch.optimize.lookahead", "heterosearch.pipeline.config"),
    ("heterosearch.optimize.lookahead", "heterosearch.pipeline.inputs"),
    # the train objective trains each trial with the run's own training loop and evaluation (train/loop.py),
    # and a worker joining a train study rebuilds the run's model, data and recipe from the stored settings
    ("heterosearch.optimize.train_objective", "heterosearch.train.loop"),
    ("heterosearch.optimize.train_objective", "heterosearch.train.config"),
    ("heterosearch.optimize.train_objective", "heterosearch.pipeline.config"),
    ("heterosearch.optimize.train_objective", "heterosearch.pipeline.inputs"),
    # scoring runs in the precision the model trains in: the same autocast rules as training
    ("heterosearch.proxies.streaming", "heterosearch.train.device"),
    # calibration measures the search's own candidates (its option groups) against a short training
    ("heterosearch.proxies.calibration", "heterosearch.optimize.build"),
}


def _package(module: str) -> int | None:
    parts = module.split(".")
    return ORDER.index(parts[1]) if len(parts) > 1 and parts[1] in ORDER else None


def test_imports_follow_the_pipeline_order() -> None:
    graph = import_graph()
    against = {
        (m, dep) for m, deps in graph.items() for dep in deps
        if _package(m) is not None and _package(dep) is not None and _package(dep) > _package(m)
    }
    new = sorted(f"{a} -> {b}" for a, b in against - UPSTREAM)
    assert not new, "imports against the pipeline order: " + ", ".join(new)
    assert UPSTREAM - against == set(), f"gone, drop them from UPSTREAM: {sorted(UPSTREAM - against)}"


# Each module imported with no heterosearch module loaded before it (third-party libraries stay
# loaded: one interpreter for all of them keeps this to seconds).
_ISOLATED = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "heterosearch" or m.startswith("heterosearch.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_on_its_own() -> None:
    names = [m for m in _modules() if not m.endswith("__main__")]
    proc = subprocess.run([sys.executable, "-c", _ISOLATED, *names], capture_output=True, text=True,
                          cwd=PACKAGE.parent, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
