"""The accuracy-vs-budget frontier: search at each budget, then train the winner and the baselines.

``frontier(...)`` makes one run folder per budget under ``OUT/`` (``OUT/b41500/`` ...): scoring,
search and export as ``heterosearch run`` does them (``pipeline.stages.run_all`` without its one-seed
training), then ``verify_run`` trains every method for that budget's seeds. Every stage and
every (method, seed) training is kept on disk, so rerunning the same command resumes.

Trainings are ordered so that a partial frontier is already useful: first every budget at up
to ``FIRST_PASS_SEEDS`` seeds, then the extra seeds of the budgets that ask for more.

``OUT/frontier.json`` (format 1): ``task``, ``space``, ``proxy``, ``objective``, ``budgets`` (list), ``seeds``
(budget -> n), ``methods``, ``metric``, ``splits`` (what each split is for), ``points``
(budget -> method -> params, per-split mean/std/values, trivial count) and ``paired``
(budget -> method -> winner - method on the test split: diffs, mean, 95 % interval, seeds
needed for a 1-point difference, t-test p), ``selection`` (budget -> the validated pick of
``selection.py``: the winner only where it beats uniform_all on the validation split by more than
the seed noise), ``reuse_from``, ``status`` (complete/partial), ``argv``,
``versions``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from heterosearch import run_folder
from heterosearch.errors import UserError
from heterosearch.evidence.frontier_summary import FRONTIER_FILE, budget_folder, summarize_frontier
from heterosearch.export.files import write_json
from heterosearch.export.schema import read_run_file
from heterosearch.progress import say

FORMAT_VERSION = 1
FIRST_PASS_SEEDS = 3
DEFAULT_METHODS = ("winner", "uniform_qv", "uniform_all", "random", "adalora")


def seeds_per_budget(budgets: Sequence[int], seeds: Sequence[int]) -> dict[int, int]:
    """``--seeds 5`` (every budget) or ``--seeds 5,3,3`` (one count per budget, in order)."""
    if len(seeds) == 1:
        counts = [seeds[0]] * len(budgets)
    elif len(seeds) == len(budgets):
        counts = list(seeds)
    else:
        raise UserError(f"--seeds takes one count or one per budget ({len(budgets)}), got {len(seeds)}")
    if any(n < 1 for n in counts):
        raise UserError(f"--seeds counts must be >= 1, got {counts}")
    return dict(zip(budgets, counts))


def frontier(
    task: str,
    budgets: Sequence[int],
    seeds: Sequence[int],
    out: str | Path,
    methods: Sequence[str] | str | None = None,
    space: str = "lora",
    proxy: str = "spectral",
    objective: str = "proxy",
    train_steps: int | None = None,
    rung_steps: int | None = None,
    val_examples: int | None = None,
    trial_seeds: int | None = None,
    model: str | None = None,
    data_dir: str | None = None,
    trials: int = 300,
    train_epochs: float | None = None,
    max_train_steps: int | None = None,
    seed: int = 0,
    recipe: dict[str, Any] | None = None,
    task_options: dict[str, Any] | None = None,
    reuse_from: str | Path | None = None,
) -> dict[str, Any]:
    """Search and verify at every budget (resumable); returns and writes ``OUT/frontier.json``.

    ``recipe``: training settings (``lr``, ``batch_size``, ...) recorded in every budget folder's config.json.
    ``objective``: what each budget's search maximises (``proxy``, ``lookahead``, ``train``).
    ``reuse_from``: another frontier folder; each budget takes the finished trainings of
    ``reuse_from/bBUDGET`` that match its plan, seed, recipe, data and model (``evidence/reuse.py``),
    so a new objective is compared with the same baseline runs instead of retraining them.
    """
    from heterosearch.evidence.seeds import parse_methods, verify_run
    from heterosearch.pipeline.config import RunConfig, versions
    from heterosearch.pipeline.stages import run_all

    budgets = sorted({int(b) for b in budgets})
    if not budgets:
        raise UserError("--budgets needs at least one budget, e.g. --budgets 41.5k,83k,0.5M")
    counts = seeds_per_budget(budgets, [int(s) for s in seeds])
    names = parse_methods(methods if methods is not None else list(DEFAULT_METHODS))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    path = out / FRONTIER_FILE
    if path.is_file():
        old = read_run_file(path, FRONTIER_FILE)
        same = {k: old.get(k, "proxy" if k == "objective" else None) for k in ("task", "space", "proxy", "objective", "model", "seed")}
        want = {"task": task, "space": space, "proxy": proxy, "objective": objective, "model": model, "seed": seed}
        if same != want:
            diff = ", ".join(k for k in want if same[k] != want[k])
            raise UserError(f"{out} holds a frontier made with other settings ({diff}); pick another --out")
    elif out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty and holds no {FRONTIER_FILE}; nothing was changed: pick another --out")
    out.mkdir(parents=True, exist_ok=True)
    run_folder.mark(out, kind="frontier")
    t_start = time.perf_counter()
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "task": task,
        "space": space,
        "proxy": proxy,
        "objective": objective,
        "model": model,
        "seed": seed,
        "budgets": budgets,
        "seeds": {str(b): n for b, n in counts.items()},
        "methods": names,
        "reuse_from": str(reuse_from) if reuse_from else None,
        "argv": sys.argv,
        "versions": versions(),
        "status": "partial",
    }
    write_json(path, doc)

    # 1. search at every budget (cheap: seconds each), so a crash in a later budget's training
    #    never leaves a budget without its winner.
    for b in budgets:
        folder = budget_folder(out, b)
        cfg = RunConfig(budget=b, task=task, model=model, space=space, proxy=proxy, objective=objective, trials=trials,
                        train_steps=train_steps, rung_steps=rung_steps,
                        val_examples=val_examples, trial_seeds=trial_seeds, seed=seed,
                        data_dir=data_dir, out=str(folder), **(task_options or {}),
                        **({"train_epochs": train_epochs} if train_epochs is not None else {}),
                        max_train_steps=max_train_steps, **(recipe or {}))
        if not (folder / "search.json").is_file() or not (folder / "allocation.json").is_file():
            say(f"frontier: budget {b:,}: scoring and search")
        run_all(cfg, resume=(folder / "config.json").is_file(), verify=False)

    # 2. train: every budget at up to FIRST_PASS_SEEDS seeds, then the extra seeds.
    #    The trainings are jobs in OUT/study.journal: `heterosearch worker OUT --jobs` processes take them too.
    from heterosearch.evidence.jobs import open_queue

    queue = open_queue(out)
    passes = [{b: min(n, FIRST_PASS_SEEDS) for b, n in counts.items()}, counts]
    try:
        for plan in passes:
            for b in budgets:
                say(f"frontier: budget {b:,}: {plan[b]} seed(s) x {len(names)} methods")
                reuse = [budget_folder(Path(reuse_from), b)] if reuse_from and budget_folder(Path(reuse_from), b).is_dir() else []
                verify_run(budget_folder(out, b), seeds=plan[b], methods=names, train_epochs=train_epochs,
                           max_train_steps=max_train_steps, queue=queue, reuse_from=reuse)
                doc.update(summarize_frontier(out, budgets))
                write_json(path, doc)
    finally:
        queue.set_closed(True)

    doc.update(summarize_frontier(out, budgets))
    doc["status"] = "complete"
    doc["last_invocation_seconds"] = time.perf_counter() - t_start
    write_json(path, doc)
    return doc
