"""The tie rule: keep a reference unless a challenger beats it seed by seed by more than the seed noise.

Used by the search (``tie_rule``: the best trial against the ``warm:uniform_all`` trial, when trials record
a value per seed, ``--trial-seeds``) and by the verification's validated pick (``evidence/selection.py``),
which imports ``lower_bound`` from here (the search comes first in the pipeline).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from heterosearch.optimize.objective import SOURCE_ATTR


def lower_bound(gains: Sequence[float], confidence: float = 0.95) -> float | None:
    """One-sided Student-t lower bound of the mean: mean - t_{confidence, n-1} * sd / sqrt(n) (None for n < 2).

    The tie rules (``tie_rule`` below, ``evidence/selection.py``) switch away from the reference only
    when this bound on the paired gains is above 0."""
    from scipy import stats

    n = len(gains)
    if n < 2:
        return None
    mean = sum(gains) / n
    sd = math.sqrt(sum((g - mean) ** 2 for g in gains) / (n - 1))
    return float(mean - stats.t.ppf(confidence, n - 1) * sd / math.sqrt(n))


REFERENCE_SOURCE = "warm:uniform_all"


def tie_rule(best: Any, trials: list[Any]) -> tuple[Any, dict[str, Any] | None]:
    """Keep the ``warm:uniform_all`` trial unless ``best`` beats it by more than the seed noise.

    Applies when both trials recorded a value per seed (``seed_values``: the train objective with
    ``--trial-seeds`` >= 2) over at least 2 common seeds: ``best`` stays the winner only if the paired
    gains best - reference have a one-sided 95 % t lower bound above 0 (``lower_bound``),
    else the reference wins. Why: one seed's validation value does not separate near-equal finalists
    (MRPC 83k: four within 0.009 loss; the pick lost 2.1 test points to uniform LoRA on all sites), and
    uniform LoRA on all sites is what a user already has. Returns (winner, the evidence or None)."""
    from heterosearch.optimize.train_objective import SEED_VALUES_ATTR

    refs = [t for t in trials if t.user_attrs.get(SOURCE_ATTR) == REFERENCE_SOURCE]
    if not refs or refs[0].number == best.number:
        return best, None
    ref = refs[0]
    a, b = best.user_attrs.get(SEED_VALUES_ATTR) or {}, ref.user_attrs.get(SEED_VALUES_ATTR) or {}
    seeds = sorted(set(a) & set(b), key=int)
    if len(seeds) < 2:
        return best, None
    gains = [float(a[s]) - float(b[s]) for s in seeds]
    bound = lower_bound(gains)
    kept = bound is None or bound <= 0
    evidence = {"best_trial": best.number, "reference_trial": ref.number, "reference": REFERENCE_SOURCE,
                "seeds": [int(s) for s in seeds], "gains": gains, "mean_gain": sum(gains) / len(gains),
                "lower_bound": bound, "kept_reference": kept}
    return (ref if kept else best), evidence
