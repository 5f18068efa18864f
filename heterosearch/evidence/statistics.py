"""The statistics of multi-seed evidence: pure functions, tested on hand-checked numbers.

Per method: n, mean, sample standard deviation (``describe``). Per pair of methods, over
the seeds both have: the paired differences, their Student-t interval (``paired_interval``),
the seeds a paired t-test needs to resolve a 1-point difference (``seeds_needed``), a paired
t-test and a Wilcoxon signed-rank test from 3 seeds on (``paired_comparison``). ``summarize``
tables all of it for ``verify_seeds.json`` and ``frontier.json``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MIN_TEST_N = 3

def _clean(x: Any) -> Any:
    """NaN/inf -> None so the JSON stays valid."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def describe(values: Sequence[float]) -> dict[str, Any]:
    """n, mean, sample standard deviation (ddof=1; None for n < 2), min, max."""
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    return {
        "n": n,
        "mean": float(v.mean()) if n else None,
        "std": float(v.std(ddof=1)) if n >= 2 else None,
        "min": float(v.min()) if n else None,
        "max": float(v.max()) if n else None,
    }


#: The difference (in metric points) the "seeds needed" figure is computed for.
RESOLVE_POINTS = 1.0


def paired_interval(diffs: Sequence[float] | np.ndarray, level: float = 0.95) -> list[float] | None:
    """Student-t interval of the mean paired difference: mean ± t_{n-1} * sd / sqrt(n) (None for n < 2)."""
    from scipy import stats

    d = np.asarray(diffs, dtype=np.float64)
    n = len(d)
    if n < 2:
        return None
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return [float(d.mean() - half), float(d.mean() + half)]


def seeds_needed(sd: float, delta: float, alpha: float = 0.05, power: float = 0.8, cap: int = 10_000) -> int | None:
    """Seeds a paired t-test needs to detect a true difference ``delta`` at the paired spread ``sd``.

    Two-sided ``alpha``, ``power`` (80 %): the smallest n with
    n >= ((t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / delta)^2, found
    by bisection. 2 when every seed gave the same difference (sd = 0); None above ``cap``.
    """
    from scipy import stats

    if not math.isfinite(sd) or delta <= 0:
        return None
    if sd == 0:
        return 2

    def enough(n: int) -> bool:  # need(n) falls as n grows, so this predicate is monotone in n
        return n >= ((stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * sd / delta) ** 2

    if not enough(cap):
        return None
    lo, hi = 2, cap
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid + 1, hi)
    return lo


def paired_comparison(a: Mapping[Any, float], b: Mapping[Any, float], higher_is_better: bool = True) -> dict[str, Any]:
    """Paired differences a - b over the seeds both have: mean, std, 95 % interval, wins, tests.

    ``wins`` counts the seeds where ``a`` is better: a > b, or a < b when ``higher_is_better``
    is False (a loss); the differences keep their sign either way.

    ``ci95``: t-interval of the mean difference (n >= 2). ``seeds_for_1pt``: seeds a paired
    t-test needs to resolve a 1-point difference at the observed paired spread (80 % power,
    alpha 0.05). Tests need n >= 3 seeds; below that the p-values are None and ``test`` says
    "n too small".
    """
    seeds = sorted(set(a) & set(b), key=str)
    diffs = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    n = len(diffs)
    out: dict[str, Any] = {
        "seeds": list(seeds),
        "diffs": [float(d) for d in diffs],
        "n": n,
        "mean_diff": float(diffs.mean()) if n else None,
        "std_diff": float(diffs.std(ddof=1)) if n >= 2 else None,
        "wins": int((diffs > 0).sum() if higher_is_better else (diffs < 0).sum()),
        "losses": int((diffs < 0).sum() if higher_is_better else (diffs > 0).sum()),
        "ties": int((diffs == 0).sum()),
        "t_test_p": None,
        "wilcoxon_p": None,
        "ci95": None,
        "seeds_for_1pt": None,
    }
    if n >= 2:
        out["ci95"] = paired_interval(diffs)
        out["seeds_for_1pt"] = seeds_needed(float(diffs.std(ddof=1)), RESOLVE_POINTS / 100.0)
    if n < MIN_TEST_N:
        out["test"] = f"n too small (n = {n}; tests need >= {MIN_TEST_N} seeds)"
        return out
    from scipy import stats

    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if np.all(diffs == diffs[0]):
            notes.append("t-test undefined: every difference is the same")
        else:
            out["t_test_p"] = _clean(float(stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue))
        if np.all(diffs == 0):
            notes.append("Wilcoxon undefined: every difference is zero")
        else:
            try:
                out["wilcoxon_p"] = _clean(float(stats.wilcoxon(diffs).pvalue))
            except ValueError as exc:
                notes.append(f"Wilcoxon: {exc}")
    out["test"] = "paired t-test and Wilcoxon signed-rank (two-sided)" + (f"; {'; '.join(notes)}" if notes else "")
    return out


def summarize(runs: Mapping[str, Mapping[str, Any]], methods: Sequence[str], winner: str = "winner") -> dict[str, Any]:
    """split -> metric -> {"methods": {m: describe + values}, "paired": {m: winner - m}} from ``runs``.

    Wins and losses follow each metric's direction (``tasks._metrics.LOWER_IS_BETTER``: a loss).
    """
    from heterosearch.tasks._metrics import LOWER_IS_BETTER

    table: dict[str, dict[str, dict[str, dict[Any, float]]]] = {}
    for entry in runs.values():
        for split, metrics in entry.get("splits", {}).items():
            for metric, value in metrics.items():
                table.setdefault(split, {}).setdefault(metric, {}).setdefault(entry["method"], {})[entry["seed"]] = value
    out: dict[str, Any] = {}
    for split, by_metric in table.items():
        out[split] = {}
        for metric, by_method in by_metric.items():
            per = {
                m: {**describe(list(by_method[m].values())), "values": {str(s): v for s, v in sorted(by_method[m].items())}}
                for m in methods
                if m in by_method
            }
            paired = {
                m: paired_comparison(by_method[winner], by_method[m], higher_is_better=metric not in LOWER_IS_BETTER)
                for m in methods
                if m != winner and m in by_method and winner in by_method
            }
            out[split][metric] = {"methods": per, "paired": paired}
    return out
