"""How well a score ranks allocations: rank statistics with bootstrap intervals, and the noise ceiling.

Following NASLib's conventions (methods.md section 6): Spearman rho, Kendall tau-b and top-k
precision (k = 25 % of the items), each with a paired bootstrap 95 % interval (BCa, or
percentile where BCa is undefined); the sign of a score fixed in advance (no abs on rho);
the reliability of a seed mean (the ceiling any score's correlation can reach). Pure
functions of numbers: ``rank_report`` (the command) feeds them, the report renders them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

TOP_FRACTION = 0.25
NOISY_BELOW = 0.5  # reliability under which the CLI and the report warn that seed noise dominates


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
