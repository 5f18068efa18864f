#!/usr/bin/env python
"""Paired differences between two frontiers' trainings, budget by budget, on val and test.

    python benchmarks/compare_frontiers.py reports/stsb-frontier-train reports/stsb-frontier
    python benchmarks/compare_frontiers.py A B --method-a winner --method-b uniform_all

Why: a frontier made with another objective (``--objective train``) reuses the proxy frontier's
baselines, but its own table compares its winner only with those. The proxy frontier's winner is
the knapsack's pick (the exact optimum of the additive proxy), the trial ``warm:exact`` of a
non-additive search, so ``winner`` in A against ``winner`` in B says by how much the new
objective's pick beats the knapsack's pick after the full recipe, on the validation split (the
selection data) and the test split (report only), paired by seed.

Reads only the budget folders' ``verify_seeds.json`` (nothing is trained). A budget or method
missing on either side is skipped with a note. The two sides must have trained with the same
recipe for the comparison to mean anything: the script prints each side's peak rate and stops
skips a budget where they differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _metric_by_seed(verify: dict, method: str, split: str) -> dict[int, float]:
    metric = verify["metric"]
    out = {}
    for entry in verify.get("runs", {}).values():
        value = ((entry.get("splits") or {}).get(split) or {}).get(metric)
        if entry.get("method") == method and isinstance(value, (int, float)):
            out[int(entry["seed"])] = float(value)
    return out


def _allocation(verify: dict, method: str) -> object:
    for entry in verify.get("runs", {}).values():
        if entry.get("method") == method:
            return entry.get("allocation")
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="frontier folder A (e.g. the train-objective frontier)")
    ap.add_argument("b", help="frontier folder B (e.g. the proxy frontier whose winner is the knapsack's pick)")
    ap.add_argument("--method-a", default="winner")
    ap.add_argument("--method-b", default="winner")
    ap.add_argument("--json", action="store_true", help="print the comparisons as JSON")
    args = ap.parse_args()

    from heterosearch.evidence.statistics import paired_comparison
    from heterosearch.pipeline.files import VERIFY_SEEDS_FILE

    a_dir, b_dir = Path(args.a), Path(args.b)
    budgets = sorted({p.name for p in a_dir.glob("b*") if p.is_dir()} & {p.name for p in b_dir.glob("b*") if p.is_dir()},
                     key=lambda n: int(n[1:]) if n[1:].isdigit() else -1)
    out: dict[str, dict] = {}
    for name in budgets:
        pa, pb = a_dir / name / VERIFY_SEEDS_FILE, b_dir / name / VERIFY_SEEDS_FILE
        if not (pa.is_file() and pb.is_file()):
            print(f"{name}: skipped ({VERIFY_SEEDS_FILE} missing on one side)")
            continue
        va, vb = json.loads(pa.read_text()), json.loads(pb.read_text())
        lr_a, lr_b = (va.get("train_config") or {}).get("lr"), (vb.get("train_config") or {}).get("lr")
        if lr_a != lr_b:
            print(f"{name}: skipped (the two folders trained at different rates, {lr_a} vs {lr_b}: not comparable)")
            continue
        same = _allocation(va, args.method_a) == _allocation(vb, args.method_b)
        row: dict[str, dict] = {"same_allocation": same}  # type: ignore[dict-item]
        for split in ("val", "test"):
            row[split] = paired_comparison(_metric_by_seed(va, args.method_a, split), _metric_by_seed(vb, args.method_b, split))
        out[name] = row
        if not args.json:
            for split in ("val", "test"):
                c = row[split]
                if not c["n"]:
                    print(f"{name} {split}: no common seeds")
                    continue
                ci = c["ci95"]
                ci_s = f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "(n < 2)"
                print(f"{name} {split}: {args.method_a}(A) - {args.method_b}(B) = {100 * c['mean_diff']:+.1f} points {ci_s}, "
                      f"n = {c['n']}, wins {c['wins']}/{c['n']}, seeds for 1 pt {c['seeds_for_1pt']}, "
                      f"p {'-' if c['t_test_p'] is None else format(c['t_test_p'], '.3f')}"
                      + ("  (same allocation)" if same else ""))
    if args.json:
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
