"""GLUE metrics from numpy/scipy, returned as plain floats ready for JSON reports.

Written out instead of pulling in scikit-learn/evaluate: four formulas do not justify a
dependency, and the search evaluates thousands of candidates where degenerate outputs
(a model predicting one class, a constant regressor) are common and must score 0.0
quietly instead of warning or returning NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from heterosearch.registry import Registry
from heterosearch.tasks._spec import TaskSpec

if TYPE_CHECKING:
    import numpy as np

MetricFn = Callable[["np.ndarray", "np.ndarray"], float]
METRICS: Registry[MetricFn] = Registry("metric")


def compute_metrics(spec: TaskSpec, predictions: Sequence[Any] | Any, labels: Sequence[Any] | Any) -> dict[str, float]:
    """Every metric in ``spec.metrics`` for ``predictions`` against ``labels``.

    Classification predictions are class ids (not logits), regression predictions floats.
    Fractions are in [0, 1], correlations in [-1, 1].
    """
    import numpy as np

    if labels is None:
        raise ValueError(f"task {spec.name!r}: cannot score a split without labels")
    preds = np.asarray(predictions)
    gold = np.asarray(labels)
    if preds.ndim != 1 or gold.ndim != 1:
        raise ValueError(f"predictions and labels must be 1-D (got shapes {preds.shape} and {gold.shape})")
    if len(preds) != len(gold):
        raise ValueError(f"{len(preds)} predictions for {len(gold)} labels")
    if len(preds) == 0:
        raise ValueError("cannot compute metrics on zero examples")
    if spec.is_regression:
        preds, gold = preds.astype(np.float64), gold.astype(np.float64)
    else:
        preds, gold = _as_class_ids(preds, "predictions"), _as_class_ids(gold, "labels")
    return {name: float(METRICS.get(name)(preds, gold)) for name in spec.metrics}


def _as_class_ids(values: np.ndarray, what: str) -> np.ndarray:
    import numpy as np

    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise ValueError(f"classification {what} must be integer class ids, not scores/logits")
    elif values.dtype.kind not in "iub":
        raise ValueError(f"classification {what} must be integer class ids (got dtype {values.dtype})")
    return values.astype(np.int64)


@METRICS.register("accuracy")
def accuracy(preds: np.ndarray, gold: np.ndarray) -> float:
    return float((preds == gold).mean())


@METRICS.register("f1")
def f1_binary(preds: np.ndarray, gold: np.ndarray) -> float:
    """F1 of the positive class 1 (GLUE's MRPC convention); 0.0 when it is undefined."""
    tp = int(((preds == 1) & (gold == 1)).sum())
    fp = int(((preds == 1) & (gold != 1)).sum())
    fn = int(((preds != 1) & (gold == 1)).sum())
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 0.0


@METRICS.register("matthews")
def matthews(preds: np.ndarray, gold: np.ndarray) -> float:
    """Multi-class Matthews correlation (Gorodkin's R_K, = sklearn); 0.0 if undefined."""
    import numpy as np

    classes, inverse = np.unique(np.concatenate([gold, preds]), return_inverse=True)
    k, n = len(classes), len(gold)
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (inverse[:n], inverse[n:]), 1.0)
    t = confusion.sum(axis=1)  # true counts per class
    p = confusion.sum(axis=0)  # predicted counts per class
    c, s = np.trace(confusion), float(n)
    denom = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float(np.clip((c * s - t @ p) / denom, -1.0, 1.0)) if denom > 0 else 0.0


def _degenerate(preds: np.ndarray, gold: np.ndarray) -> bool:
    """A correlation is undefined for < 2 points or a constant vector (scipy would warn, NaN)."""
    import numpy as np

    return len(preds) < 2 or bool(np.ptp(preds) == 0) or bool(np.ptp(gold) == 0)


@METRICS.register("pearson")
def pearson(preds: np.ndarray, gold: np.ndarray) -> float:
    import numpy as np
    from scipy import stats

    if _degenerate(preds, gold):
        return 0.0
    return float(np.clip(stats.pearsonr(preds, gold)[0], -1.0, 1.0))


@METRICS.register("spearman")
def spearman(preds: np.ndarray, gold: np.ndarray) -> float:
    import numpy as np
    from scipy import stats

    if _degenerate(preds, gold):
        return 0.0
    return float(np.clip(stats.spearmanr(preds, gold)[0], -1.0, 1.0))


#: Metrics where smaller is better (a language model's loss and perplexity); every other metric: larger.
LOWER_IS_BETTER = frozenset({"loss", "perplexity"})
#: Metrics shown in reports, in this order; the first five are fractions or correlations, shown x 100.
REPORTED = ("accuracy", "f1", "matthews", "pearson", "spearman", "loss", "perplexity")


def format_metric(name: str, value: Any) -> str:
    """A metric for a table: fractions and correlations as points (x 100), a loss or perplexity as is."""
    if not isinstance(value, (int, float)):
        return "-"
    if name in LOWER_IS_BETTER:
        return f"{value:.3f}" if name == "loss" else f"{value:.2f}"
    return f"{100 * value:.1f}"


def compare(metric: str, split: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Which of two trained models (``a`` = the winner, ``b`` = the baseline) is better on ``split``'s ``metric``.

    The direction is the metric's (``LOWER_IS_BETTER``), so a lower loss is a win; the
    difference is kept as a - b with its sign, and named.
    """
    va = a.get("splits", {}).get(split, {}).get(metric)
    vb = b.get("splits", {}).get(split, {}).get(metric)
    lower = metric in LOWER_IS_BETTER
    out: dict[str, Any] = {"metric": metric, "split": split, "lower_is_better": lower, "winner": va, "baseline": vb}
    if va is None or vb is None:
        return {**out, "winner_minus_baseline": None, "better": None}
    better = "tie" if va == vb else ("winner" if (va < vb) == lower else "baseline")
    return {**out, "winner_minus_baseline": va - vb, "better": better}


def comparison_line(c: Mapping[str, Any]) -> str:
    """One sentence for a ``compare`` result, e.g. "test loss: winner 2.310 vs baseline 2.402 (lower is better): the winner is better"."""
    m = c["metric"]
    head = (f"{c['split']} {m}: winner {format_metric(m, c['winner'])} vs baseline {format_metric(m, c['baseline'])} "
            f"({'lower' if c['lower_is_better'] else 'higher'} is better)")
    verdict = {"winner": "the winner is better", "baseline": "the baseline is better", "tie": "a tie"}.get(c.get("better"), "no comparison")
    return f"{head}: {verdict}"
