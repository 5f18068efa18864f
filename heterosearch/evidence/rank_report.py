"""How well does each proxy rank allocations? Correlate proxy scores with short-trained accuracy.

``rank_report`` samples N allocations at a fixed budget (random per-site ranks from the
space, repaired to within ``tol`` of the budget), scores each with every proxy as the sum
of its sites' curve values at the chosen ranks (one ``scores.json``, computed once: init-time
scores are additive, methods.md section 6), short-trains each for two seeds (``steps``
optimizer steps: a cheaper fidelity than the run's ``train`` stage) and reports, following
NASLib's conventions (methods.md section 6):

- Spearman rho and Kendall tau-b of each proxy against the mean accuracy over seeds, and
  the precision of each proxy's top-k (k = 25 % of the samples), each with a paired
  bootstrap 95 % confidence interval (BCa; percentile where BCa is undefined);
- the sign of each proxy fixed in advance (higher score = better; no abs on rho);
- the noise ceiling: the same statistics between the two training seeds' accuracies, and the
  reliability of the seed mean (``reliability``): the share of its variance across allocations
  that is not seed noise; near 0 means this fidelity cannot rank the sampled allocations;
- the same statistics against minus the validation loss (``by_val_loss``): a short training often
  leaves every allocation at MRPC's majority class, where accuracy ties but the loss ranks;
- baselines: the parameter count as a score, a random score (and its expectation), and
  uniform LoRA on q,v at the same budget trained at the same fidelity.

Results go to ``OUT/rank_report.json``, written after every trained candidate (a rerun
reuses finished candidates). This module is the command; the statistics are in
``verify/ranking.py``, the sampling designs in ``verify/sampling.py``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from heterosearch.errors import UserError
from heterosearch.evidence.ranking import ranking_report
from heterosearch.evidence.sampling import DESIGNS, proxy_sum, sample_allocations, sample_structural
from heterosearch.export.files import write_json
from heterosearch.export.schema import read_run_file
from heterosearch.progress import say
from heterosearch.space.allocation import Allocation
from heterosearch.tasks._metrics import format_metric

RANK_REPORT_FILE = "rank_report.json"
FORMAT_VERSION = 1


def default_out(task: str, space: str, budget: int, samples: int, steps: int | None) -> Path:
    from heterosearch.tasks import task_slug

    return Path("runs") / f"rank-{task_slug(task)}-{Path(space).stem}-{budget}-n{samples}-k{steps or 'full'}"


def rank_report(
    task: str = "mrpc",
    space: str = "lora",
    samples: int = 20,
    budget: int = 500_000,
    steps: int | None = 30,
    seeds: Sequence[int] = (0, 1),
    out: str | Path | None = None,
    model: str | None = None,
    data_dir: str | None = None,
    score_batches: int = 8,
    seed: int = 0,
    tol: float = 0.02,
    n_resamples: int = 9999,
    include_uniform: bool = True,
    design: str = "random",
    train_epochs: float | None = None,
    recipe: dict[str, Any] | None = None,
    task_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Sample, score, short-train and correlate; returns (and writes) ``OUT/rank_report.json``."""
    from dataclasses import replace

    from heterosearch.evidence.jobs import Inputs, open_queue, run_jobs, sample_spec
    from heterosearch.pipeline.config import RunConfig, versions
    from heterosearch.pipeline.folder import Run
    from heterosearch.pipeline.stages import stage_score
    from heterosearch.proxies import PROXIES

    if samples < 4:
        raise UserError(f"--samples must be >= 4 (rank statistics of fewer points mean nothing), got {samples}")
    if steps is not None and steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")
    if design not in DESIGNS:
        raise UserError(f"unknown --design {design!r} (known: {', '.join(DESIGNS)})")
    seeds = [int(s) for s in seeds]
    if len(seeds) != 2 or seeds[0] == seeds[1]:
        raise UserError(f"rank-report trains every sample with exactly two different seeds (the noise ceiling), got {seeds}")
    t_start = time.perf_counter()
    out = Path(out) if out else default_out(task, space, budget, samples, steps)
    cfg = RunConfig(budget=budget, task=task, model=model, space=space, seed=seed, data_dir=data_dir, out=str(out),
                    score_batches=score_batches, max_train_steps=steps, **(task_options or {}),
                    **({"train_epochs": train_epochs} if train_epochs is not None else {}), **(recipe or {}))
    run = Run.open(cfg, resume=True)
    scores = stage_score(run)
    run.drop_spare_model()  # every sample trains from a fresh model
    proxies = list(scores.curves)
    signs = {p: 1.0 if PROXIES.get(p).higher_is_better else -1.0 for p in proxies}
    train_cfg = run.train_config(max_steps=steps, seed=seeds[0])
    steps_used = train_cfg.steps_for(len(run.encoded["train"]))
    metric = run.spec.main_metric
    # Rank statistics read "higher is better": a loss (lm: tasks) is ranked by minus its value.
    sign = 1.0 if run.spec.higher_is_better else -1.0

    path = run.path(RANK_REPORT_FILE)
    old = read_run_file(path, RANK_REPORT_FILE) if path.is_file() else {}
    same_setup = old.get("train_config") == train_cfg.without_seed() and old.get("seeds") == seeds
    done = {_akey(c["allocation"]): c for c in old.get("candidates", []) if same_setup}
    uniform_old = old.get("uniform") if same_setup else None

    if design == "structural":
        allocs = sample_structural(run.sites, scores.r_max, budget, samples, seed, tol=tol)
        if len(allocs) < min(samples, 4):
            raise UserError(f"only {len(allocs)} distinct structures fit budget {budget:,} within {100 * tol:.0f} %: "
                            "use a larger budget or --design random")
    else:
        allocs = sample_allocations(run.sites, run.space.lora.ranks, budget, samples, seed, tol=tol)
    site_map = run.site_map
    candidates: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "status": "partial",
        "out": str(run.out),
        "task": task,
        "model": cfg.model or "all-MiniLM-L6-v2",
        "space": {"name": run.space.name, "version": run.space.version},
        "budget": budget,
        "tolerance": tol,
        "samples": samples,
        "steps": steps_used,
        "train_epochs": train_cfg.epochs,
        "seeds": seeds,
        "sample_seed": seed,
        "design": design,
        "metric": metric,
        "metric_sign": "+" if sign > 0 else "-",  # "-": a loss; candidates' "acc" and "mean" hold minus it
        "split": "val",
        "splits": run.splits,
        "proxies_scored": proxies,
        "signs": {p: "+" if s > 0 else "-" for p, s in signs.items()},
        "scoring": scores.meta,
        "train_config": train_cfg.without_seed(),
        "candidates": candidates,
        "versions": versions(),
    }
    timings: dict[str, float] = {"score": run.timings.get("score", 0.0)}

    # Every (sample, seed) training is a job (evidence/jobs.py): `heterosearch worker OUT --jobs` takes some.
    specs: dict[str, dict[str, Any]] = {}
    owner: dict[str, tuple[dict[str, Any], int]] = {}

    def need(entry: dict[str, Any], alloc: Allocation, key: str, label: str) -> None:
        for s in seeds:
            if str(s) not in entry["runs"]:
                specs[f"{key}/s{s}"] = sample_spec(run, alloc, replace(train_cfg, seed=s), f"{label} s{s}")
                owner[f"{key}/s{s}"] = (entry, s)

    for i, alloc in enumerate(allocs):
        prev = done.get(_akey(alloc.to_dict()), {})
        entry = {
            "id": i,
            "allocation": alloc.to_dict(),
            "params": alloc.params(site_map),
            "scores": {p: proxy_sum(scores.curves[p], alloc) for p in proxies},
            "runs": dict(prev.get("runs", {})),
        }
        candidates.append(entry)
        need(entry, alloc, f"sample{i}", f"sample {i + 1}/{len(allocs)}")
    if include_uniform:
        uni_alloc, uni_name = run.baseline_allocation()
        uniform = uniform_old if uniform_old and uniform_old.get("allocation") == uni_alloc.to_dict() else {
            "name": uni_name, "allocation": uni_alloc.to_dict(), "params": uni_alloc.params(site_map), "runs": {},
        }
        need(uniform, uni_alloc, "uniform", "uniform")

    def record(key: str, result: dict[str, Any], seconds: float) -> None:
        entry, s = owner[key.rsplit(":", 1)[1]]
        entry["runs"][str(s)] = result
        entry["runs"] = {str(x): entry["runs"][str(x)] for x in seeds if str(x) in entry["runs"]}  # seed order
        write_json(path, report)

    if specs:
        queue = open_queue(run.out)
        inputs = Inputs()
        inputs.add(run)
        try:
            run_jobs(queue, {f"{run.out.resolve()}:{k}": v for k, v in specs.items()}, record, inputs)
        finally:
            queue.set_closed(True)
    for i, entry in enumerate(candidates):
        _targets(entry, seeds, metric, sign)
        say(f"rank-report: sample {i + 1}/{len(allocs)} ({entry['params']:,} params): "
            f"{metric} {', '.join(format_metric(metric, sign * v) for v in entry['acc'].values())}")
    timings["train_samples"] = sum(r["seconds"] for c in candidates for r in c["runs"].values())

    if include_uniform:
        _targets(uniform, seeds, metric, sign)
        uniform["scores"] = {p: proxy_sum(scores.curves[p], uni_alloc) for p in proxies}
        means = np.array([c["mean"] for c in candidates])
        uniform["fraction_of_samples_above"] = float((means > uniform["mean"]).mean())
        report["uniform"] = uniform
        write_json(path, report)

    t0 = time.perf_counter()
    report.update(ranking_report(candidates, proxies, signs, seeds, n_resamples=n_resamples, seed=seed))
    if all("neg_loss" in c for c in candidates):
        report["by_val_loss"] = ranking_report(candidates, proxies, signs, seeds, n_resamples=n_resamples, seed=seed,
                                               target="neg_loss")
    timings["statistics"] = time.perf_counter() - t0
    timings["last_invocation"] = time.perf_counter() - t_start
    report["timings"] = timings
    report["status"] = "complete"
    write_json(path, report)
    return report


def _targets(entry: dict[str, Any], seeds: Sequence[int], metric: str, sign: float = 1.0) -> None:
    """Per-seed training outcomes of a trained entry: ``acc`` (the task metric times ``sign``: minus a
    loss) and, when recorded, ``neg_loss`` (minus the validation loss, so higher is better for both),
    each with its seed mean."""
    runs = [entry["runs"][str(s)] for s in seeds]
    entry["acc"] = {str(s): sign * r["metrics"][metric] for s, r in zip(seeds, runs)}
    entry["mean"] = float(np.mean(list(entry["acc"].values())))
    if all(r.get("eval_loss") is not None for r in runs):
        entry["neg_loss"] = {str(s): -float(r["eval_loss"]) for s, r in zip(seeds, runs)}
        entry["neg_loss_mean"] = float(np.mean(list(entry["neg_loss"].values())))


def _akey(allocation: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(allocation.get("lora", {}).items()))

