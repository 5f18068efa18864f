"""The validated pick: the searched winner only where it beats uniform LoRA on all sites by more than seed noise.

Why (measured, ``reports/README.md``): on every committed frontier the search's winner and uniform LoRA on
all sites (``uniform_all``, what many users already run) differ by less than the seed noise of a 3-epoch
training, and a winner chosen on one seed's validation value is a toss: the MRPC 83k finalists ended within
0.009 validation loss of each other and the pick lost 2.1 [-3.7, -0.6] test points to uniform_all
(``reports/finalists/mrpc-83k``). So after the multi-seed verification (``evidence/seeds.py``), which trains
both at the same seeds, data order and schedule, heterosearch recommends the winner only when the evidence on
the *validation* split says it is better, and otherwise keeps the reference.

Rule: over the seeds both methods have, the paired differences d_s = winner_s - reference_s of the task's
main metric on the validation split (signed so that positive = the winner is better; a loss is negated).
Pick the winner iff n >= 2 and the one-sided 95 % Student-t lower bound
mean(d) - t_{0.95, n-1} * sd(d) / sqrt(n) is above 0; else keep the reference. With 3 seeds that asks
for a mean gain above 2.92 standard errors. The test split is read only after the pick, for the pick.

Caveat: the pick and its test figure come from the same trainings (other examples, same seeds). Where the
winner is picked, a seed that is lucky on both splits can make its test margin look larger than it is; where
the reference is kept, the pick's margin over the reference is exactly 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REFERENCE = "uniform_all"
CANDIDATE = "winner"
RULE = ("the winner if its paired gain over uniform_all on the validation split has a one-sided 95 % t lower "
        "bound above 0 (n >= 2 seeds); else uniform_all")


def _units(metric: str) -> tuple[float, int, str]:
    """(scale, digits, unit) a difference of ``metric`` is shown in: points for a fraction, a loss in its own units."""
    from heterosearch.tasks._metrics import LOWER_IS_BETTER

    return (1, 3, "") if metric in LOWER_IS_BETTER else (100, 1, " points")


def _values(summary: Mapping[str, Any], split: str, metric: str, method: str) -> dict[str, float]:
    block = ((summary.get(split) or {}).get(metric) or {}).get("methods", {}).get(method) or {}
    return {str(s): float(v) for s, v in (block.get("values") or {}).items() if v is not None}


def select(summary: Mapping[str, Any], metric: str, reference: str = REFERENCE,
           candidate: str = CANDIDATE) -> dict[str, Any] | None:
    """The validated pick from a verification summary (``statistics.summarize``), or None if either method
    has no validation values (the reference was not verified, or no validation split).

    Returns ``selected`` (``candidate`` or ``reference``), ``why``, the validation evidence (``val``: seeds,
    gains, mean gain, lower bound) and, for the pick, its test values against the reference's (``test``:
    the differences pick - reference per seed, their mean, and the pick's mean)."""
    from heterosearch.evidence.statistics import paired_interval
    from heterosearch.optimize.tie_rule import lower_bound
    from heterosearch.tasks._metrics import LOWER_IS_BETTER

    a, b = _values(summary, "val", metric, candidate), _values(summary, "val", metric, reference)
    seeds = sorted(set(a) & set(b), key=lambda s: (len(s), s))
    if not seeds:
        return None
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    gains = [sign * (a[s] - b[s]) for s in seeds]
    bound = lower_bound(gains)
    mean = sum(gains) / len(gains)
    picked = bound is not None and bound > 0
    k, digits, unit = _units(metric)
    if bound is None:
        why = f"{len(seeds)} seed: no estimate of the seed noise, so the reference is kept"
    elif picked:
        why = (f"validation gain {k * mean:+.{digits}f}{unit} over {len(seeds)} seeds, one-sided 95 % lower bound "
               f"{k * bound:+.{digits}f} > 0")
    elif mean > 0:
        why = (f"validation gain {k * mean:+.{digits}f}{unit} over {len(seeds)} seeds is within the seed noise "
               f"(one-sided 95 % lower bound {k * bound:+.{digits}f} <= 0)")
    else:
        why = f"validation gain {k * mean:+.{digits}f}{unit} over {len(seeds)} seeds: the winner is not better"
    selected = candidate if picked else reference
    out: dict[str, Any] = {
        "rule": RULE, "reference": reference, "candidate": candidate, "selected": selected, "metric": metric,
        "why": why, "val": {"seeds": seeds, "gains": gains, "mean_gain": mean, "lower_bound": bound},
    }
    t_pick, t_ref = _values(summary, "test", metric, selected), _values(summary, "test", metric, reference)
    both = [s for s in seeds if s in t_pick and s in t_ref]
    if both:
        diffs = [t_pick[s] - t_ref[s] for s in both]
        out["test"] = {"seeds": both, "diffs": diffs, "mean_diff": sum(diffs) / len(diffs),
                       "ci95": paired_interval(diffs) if len(diffs) >= 2 else None,
                       "mean": sum(t_pick[s] for s in both) / len(both)}
    return out


def describe_selection(sel: Mapping[str, Any]) -> str:
    """One line: what was picked and why, and the pick's test margin over the reference (points, or loss units)."""
    k, digits, _ = _units(sel["metric"])
    line = f"validated pick: {sel['selected']} ({sel['why']})"
    t = sel.get("test")
    if t and sel["selected"] != sel["reference"]:
        ci = t.get("ci95")
        line += (f"; test {sel['metric']} {sel['selected']} - {sel['reference']} {k * t['mean_diff']:+.{digits}f}"
                 + (f" [{k * ci[0]:+.{digits}f}, {k * ci[1]:+.{digits}f}]" if ci else "") + f" (n={len(t['diffs'])})")
    return line
