"""How well does each proxy rank allocations? Correlate proxy scores with short-trained accuracy.

``rank_report`` samples N allocations at a fixed budget (random per-site ranks from the
space, repaired to within ``tol`` of the budget), scores each with every proxy as the sum
of its sites' curve values at the chosen ranks (one ``scores.json``, computed once: init-time
scores are additive, methods.md section 6), short-trains each for two seeds (``steps``
optimizer steps: a cheaper fidelity than the verification run) and reports, following
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
reuses finished candidates).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from heterosearch.errors import UserError
from heterosearch.export.files import write_json
from heterosearch.export.schema import read_run_file
from heterosearch.progress import say
from heterosearch.space.allocation import Allocation
from heterosearch.verify.baselines import random_allocation

RANK_REPORT_FILE = "rank_report.json"
FORMAT_VERSION = 1
TOP_FRACTION = 0.25
NOISY_BELOW = 0.5  # reliability under which the CLI and the report warn that seed noise dominates


# -- statistics (pure functions) ------------------------------------------------------------
def top_k(n: int, fraction: float = TOP_FRACTION) -> int:
    return max(1, int(round(fraction * n)))


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)  # average ranks for ties, along the last axis


def spearman(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Spearman rho along the last axis (vectorised: Pearson correlation of average ranks)."""
    rx, ry = _ranks(np.moveaxis(np.asarray(x, float), axis, -1)), _ranks(np.moveaxis(np.asarray(y, float), axis, -1))
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (rx * ry).sum(-1) / np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))
    return float(out) if np.ndim(out) == 0 else out


def kendall_tau_b(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Kendall tau-b along the last axis (vectorised over pairs: O(n^2) memory per row)."""
    x = np.moveaxis(np.asarray(x, float), axis, -1)
    y = np.moveaxis(np.asarray(y, float), axis, -1)
    sx = np.sign(x[..., :, None] - x[..., None, :])
    sy = np.sign(y[..., :, None] - y[..., None, :])
    # Over all ordered pairs every unordered pair counts twice, which cancels in the ratio.
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (sx * sy).sum((-2, -1)) / np.sqrt((sx * sx).sum((-2, -1)) * (sy * sy).sum((-2, -1)))
    return float(out) if np.ndim(out) == 0 else out


def top_k_precision(score: np.ndarray, acc: np.ndarray, k: int, axis: int = -1) -> np.ndarray | float:
    """Share of the k best-scored items that are among the k most accurate, along the last axis.

    "Among the k most accurate" = accuracy >= the k-th highest accuracy, so items tied with
    the k-th count as hits (validation accuracies on a few hundred examples tie often); ties in the
    score itself are broken by position (a stable sort).
    """
    s = np.moveaxis(np.asarray(score, float), axis, -1)
    a = np.moveaxis(np.asarray(acc, float), axis, -1)
    top = np.argsort(-s, axis=-1, kind="stable")[..., :k]
    threshold = np.sort(a, axis=-1)[..., -k]
    hits = (np.take_along_axis(a, top, axis=-1) >= threshold[..., None]).sum(-1)
    out = hits / k
    return float(out) if np.ndim(out) == 0 else out


def bootstrap_ci(
    x: np.ndarray,
    y: np.ndarray,
    statistic: Callable[..., Any],
    n_resamples: int = 9999,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Paired bootstrap CI of a vectorised ``statistic(x, y, axis)``: BCa, or percentile where BCa is undefined."""
    from scipy import stats

    n = len(x)
    if n < 3:
        return {"low": None, "high": None, "method": f"none (n = {n} < 3)"}
    batch = max(1, 4_000_000 // (n * n))  # bounds the pairwise matrices of tau-b
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = stats.bootstrap(
                    (np.asarray(x, float), np.asarray(y, float)), statistic, paired=True, vectorized=True, batch=batch,
                    n_resamples=n_resamples, confidence_level=confidence, method=method, rng=np.random.default_rng(seed),
                )
            except (ValueError, ZeroDivisionError, FloatingPointError):
                continue
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return {"low": low, "high": high, "method": method}
    return {"low": None, "high": None, "method": "undefined (degenerate resamples)"}


def _value(v: float) -> float | None:
    return v if math.isfinite(v) else None


def ranking_stats(score: Sequence[float], acc: Sequence[float], k: int | None = None, n_resamples: int = 9999, seed: int = 0) -> dict[str, Any]:
    """Spearman rho, Kendall tau-b and top-k precision of ``score`` against ``acc``, with bootstrap CIs."""
    x = np.asarray(score, dtype=np.float64)
    y = np.asarray(acc, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("score and acc must be 1-D and of the same length")
    k = k or top_k(len(x))
    out: dict[str, Any] = {"n": len(x), "k": k}
    for name, fn in (
        ("spearman", spearman),
        ("kendall", kendall_tau_b),
        ("top_k_precision", lambda a, b, axis=-1: top_k_precision(a, b, k, axis=axis)),
    ):
        out[name] = {"value": _value(float(fn(x, y))), **bootstrap_ci(x, y, fn, n_resamples=n_resamples, seed=seed)}
    return out


# -- the report -----------------------------------------------------------------------------
def proxy_sum(curves: dict[str, list[float]], allocation: Allocation) -> float:
    """A proxy's score of an allocation: the sum of its sites' curve values at the chosen ranks."""
    return float(sum(curves[k][r] for k, r in allocation.lora.items()))


def sample_allocations(sites: Sequence[Any], rank_choices: Sequence[int], budget: int, n: int, seed: int, tol: float = 0.02) -> list[Allocation]:
    """``n`` distinct random allocations within ``tol`` of ``budget`` (seeded)."""
    rng = np.random.default_rng([seed, 0x5A3B])
    out: list[Allocation] = []
    seen: set[tuple[tuple[str, int], ...]] = set()
    attempts = 0
    while len(out) < n and attempts < 50 * n:
        attempts += 1
        alloc = random_allocation(sites, rank_choices, budget, rng, tol=tol)
        key = tuple(sorted(alloc.lora.items()))
        if key not in seen:
            seen.add(key)
            out.append(alloc)
    return out


def sample_structural(sites: Sequence[Any], r_max: int, budget: int, n: int, seed: int, tol: float = 0.02) -> list[Allocation]:
    """``n`` allocations that differ in *structure*, each near-uniform on its own sites, within ``tol`` of ``budget``.

    Random per-site ranks all spread a budget over most sites and differ mostly in noise-level
    rank changes; structures differ in what training can reach. Each draw picks a non-empty set
    of roles and a block of layers (all, lower half, upper half, or a random contiguous block),
    then gives its sites the largest uniform rank that fits, raising sites one rank step in
    order until within ``tol`` (``uniform_baseline(mixed=True)``). Draws needing a rank above
    ``r_max`` (too few sites for the budget) or under ``tol`` are rejected; duplicates too.
    """
    from heterosearch.verify.baselines import uniform_baseline

    rng = np.random.default_rng([seed, 0x57C7])
    roles = sorted({s.role for s in sites}, key=[s.role for s in sites].index)
    layers = sorted({s.layer for s in sites})
    half = len(layers) // 2
    out: list[Allocation] = []
    seen: set[tuple[tuple[str, int], ...]] = set()
    attempts = 0
    while len(out) < n and attempts < 200 * n:
        attempts += 1
        chosen_roles = [r for r in roles if rng.random() < 0.5] or [roles[int(rng.integers(len(roles)))]]
        block = int(rng.integers(4))
        if block == 0 or len(layers) < 2:
            keep = layers
        elif block == 1:
            keep = layers[:half]
        elif block == 2:
            keep = layers[half:]
        else:
            lo = int(rng.integers(len(layers)))
            hi = int(rng.integers(lo, len(layers))) + 1
            keep = layers[lo:hi]
        members = [s for s in sites if s.role in chosen_roles and s.layer in keep]
        try:
            plan = uniform_baseline(members, chosen_roles, budget, "structural", budget, mixed=True)
        except UserError:
            continue
        ranks = plan.allocation.lora.values()
        if max(ranks) > r_max or abs(plan.params - budget) > tol * budget:
            continue
        key = tuple(sorted(plan.allocation.lora.items()))
        if key not in seen:
            seen.add(key)
            out.append(plan.allocation)
    return out


DESIGNS = ("random", "structural")


def default_out(task: str, space: str, budget: int, samples: int, steps: int | None) -> Path:
    return Path("runs") / f"rank-{task}-{Path(space).stem}-{budget}-n{samples}-k{steps or 'full'}"


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
) -> dict[str, Any]:
    """Sample, score, short-train and correlate; returns (and writes) ``OUT/rank_report.json``."""
    from dataclasses import replace

    from heterosearch.pipeline.config import RunConfig, versions
    from heterosearch.pipeline.folder import Run
    from heterosearch.pipeline.stages import stage_score
    from heterosearch.proxies import PROXIES
    from heterosearch.train import train_allocation
    from heterosearch.verify.seeds import model_factory

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
                    score_batches=score_batches, max_train_steps=steps,
                    **({"train_epochs": train_epochs} if train_epochs is not None else {}))
    run = Run.open(cfg, resume=True)
    scores = stage_score(run)
    run.drop_spare_model()  # every sample trains from a fresh model
    proxies = list(scores.curves)
    signs = {p: 1.0 if PROXIES.get(p).higher_is_better else -1.0 for p in proxies}
    train_cfg = cfg.train_config(max_steps=steps, seed=seeds[0])
    steps_used = train_cfg.steps_for(len(run.encoded["train"]))
    metric = run.spec.main_metric
    evals = {"val": run.encoded["val"]}  # a calibration is a choice: it uses the validation split

    path = run.path(RANK_REPORT_FILE)
    old = read_run_file(path, RANK_REPORT_FILE) if path.is_file() else {}
    same_setup = old.get("train_config") == _cfg_dict(train_cfg) and old.get("seeds") == seeds
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
        "split": "val",
        "splits": run.splits,
        "proxies_scored": proxies,
        "signs": {p: "+" if s > 0 else "-" for p, s in signs.items()},
        "scoring": scores.meta,
        "train_config": _cfg_dict(train_cfg),
        "candidates": candidates,
        "versions": versions(),
    }
    timings: dict[str, float] = {"score": run.timings.get("score", 0.0)}

    def train(alloc: Allocation, s: int, label: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        res = train_allocation(model_factory(run, s), run.tokenizer, run.all_sites, alloc, run.space.lora.scaling,
                               run.encoded["train"], evals, run.spec, replace(train_cfg, seed=s), label=label)
        return {"metrics": res.metrics["val"], "eval_loss": res.eval_loss.get("val"), "steps": res.steps, "train_loss": res.train_loss,
                "seconds": time.perf_counter() - t0}

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
        for s in seeds:
            if str(s) not in entry["runs"]:
                entry["runs"][str(s)] = train(alloc, s, f"sample {i + 1}/{len(allocs)} s{s}")
                write_json(path, report)
        _targets(entry, seeds, metric)
        say(f"rank-report: sample {i + 1}/{len(allocs)} ({entry['params']:,} params): "
            f"{metric} {', '.join(f'{100 * v:.1f}' for v in entry['acc'].values())}")
    timings["train_samples"] = sum(r["seconds"] for c in candidates for r in c["runs"].values())

    if include_uniform:
        uni_alloc, uni_name = run.baseline_allocation()
        uniform = uniform_old if uniform_old and uniform_old.get("allocation") == uni_alloc.to_dict() else {
            "name": uni_name, "allocation": uni_alloc.to_dict(), "params": uni_alloc.params(site_map), "runs": {},
        }
        for s in seeds:
            if str(s) not in uniform["runs"]:
                uniform["runs"][str(s)] = train(uni_alloc, s, f"uniform s{s}")
        _targets(uniform, seeds, metric)
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


def _targets(entry: dict[str, Any], seeds: Sequence[int], metric: str) -> None:
    """Per-seed training outcomes of a trained entry: ``acc`` (the task metric) and, when recorded,
    ``neg_loss`` (minus the validation loss, so higher is better for both), each with its seed mean."""
    runs = [entry["runs"][str(s)] for s in seeds]
    entry["acc"] = {str(s): r["metrics"][metric] for s, r in zip(seeds, runs)}
    entry["mean"] = float(np.mean(list(entry["acc"].values())))
    if all(r.get("eval_loss") is not None for r in runs):
        entry["neg_loss"] = {str(s): -float(r["eval_loss"]) for s, r in zip(seeds, runs)}
        entry["neg_loss_mean"] = float(np.mean(list(entry["neg_loss"].values())))


def ranking_report(
    candidates: Sequence[dict[str, Any]],
    proxies: Sequence[str],
    signs: dict[str, float],
    seeds: Sequence[int],
    n_resamples: int = 9999,
    seed: int = 0,
    target: str = "acc",
) -> dict[str, Any]:
    """The statistics section of rank_report.json from finished candidates.

    ``target``: ``acc`` (the task metric, per seed in ``c["acc"]``, mean in ``c["mean"]``) or
    ``neg_loss`` (minus the validation loss, in ``c["neg_loss"]`` / ``c["neg_loss_mean"]``).
    """
    mean_key = "mean" if target == "acc" else f"{target}_mean"
    acc = np.array([c[mean_key] for c in candidates])
    n = len(acc)
    k = top_k(n)
    stats_by_proxy = {
        p: {"sign": "+" if signs[p] > 0 else "-",
            **ranking_stats(signs[p] * np.array([c["scores"][p] for c in candidates]), acc, k, n_resamples, seed)}
        for p in proxies
    }
    per_seed = np.array([[c[target][str(s)] for s in seeds] for c in candidates])  # (n, seeds)
    a0, a1 = per_seed[:, 0], per_seed[:, 1]
    random_score = np.random.default_rng([seed, 0xB45E]).random(n)
    return {
        "k": k,
        "reliability": reliability(per_seed),
        "proxies": stats_by_proxy,
        "noise_ceiling": {
            "what": f"the same statistics between the {'accuracies' if target == 'acc' else 'validation losses'} of seed {seeds[0]} and seed {seeds[1]}",
            **ranking_stats(a0, a1, k, n_resamples, seed),
        },
        "baselines": {
            "params": {"what": "the parameter count as the score", **ranking_stats(np.array([c["params"] for c in candidates], float), acc, k, n_resamples, seed)},
            "random": {"what": "a uniform random score (one seeded draw)", **ranking_stats(random_score, acc, k, n_resamples, seed)},
            "random_expected": {"spearman": 0.0, "kendall": 0.0, "top_k_precision": k / n},
        },
    }


def reliability(per_seed: np.ndarray) -> dict[str, Any]:
    """How much of the spread of the seed-mean target is the allocations, not the seeds.

    ``per_seed``: (n allocations, m seeds). One-way random-effects decomposition: the seed
    variance ``s2 = mean_i var_j(x_ij)`` (ddof 1) is the noise of a single training; the mean
    over m seeds carries ``s2 / m`` of it; the observed variance of the means ``v`` (ddof 1)
    is between-allocation variance plus that noise. ``R = 1 - (s2 / m) / v`` (clipped at 0) is
    the reliability of the seed mean (ICC(1, m), Spearman-Brown); no score can correlate
    (Pearson) with the measured target above ``sqrt(R)`` in expectation, so ``R`` near 0 says
    the fidelity (training steps, seeds) cannot rank these allocations at all.
    """
    x = np.asarray(per_seed, float)
    n, m = x.shape
    if n < 3 or m < 2:
        raise ValueError(f"reliability needs >= 3 allocations and >= 2 seeds, got {x.shape}")
    seed_var = float(x.var(axis=1, ddof=1).mean())
    between = float(x.mean(axis=1).var(ddof=1))
    r = 0.0 if between <= 0 else max(0.0, 1.0 - seed_var / m / between)
    return {"reliability": r, "max_correlation": math.sqrt(r), "sd_of_seed_means": math.sqrt(between),
            "seed_sd": math.sqrt(seed_var), "seeds": m,
            "what": "1 - (seed variance / seeds) / variance of the seed means across allocations, clipped at 0"}


def _akey(allocation: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(allocation.get("lora", {}).items()))


def _cfg_dict(cfg: Any) -> dict[str, Any]:
    d = cfg.to_dict()
    d.pop("seed", None)
    return d
