"""Measure the per-kind calibration factors of a space from a run folder's scores, as a search would.

Reuses the folder's ``scores.json`` (spectral values do not depend on the LoRA scale rule) and
takes the training signal the way ``pipeline/stages.py`` does (``proxies/calibration.py``): the
task's training file carved as the run carves it (seed 0), the validation batches from the carved
validation split (never the test split), the model as the run builds it (a regression head starts
at the mean training label).

    nice -n 5 env OMP_NUM_THREADS=1 python benchmarks/kind_calibration.py reports/stsb-full-cal-83k/b83000 \
        --task stsb --data-dir /work/shared/data/glue --signal with_head --steps 60 --val-batches 8 --json reports/calibration/stsb-83k-with-head.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path, help="a run folder holding scores.json of a space with several kinds")
    ap.add_argument("--task", default="mrpc")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--space", default="full")
    ap.add_argument("--signal", default="frozen_head", choices=("frozen_head", "with_head"))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--per-kind", type=int, default=2)
    ap.add_argument("--val-batches", type=int, default=4)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from heterosearch.pipeline import Run, RunConfig
    from heterosearch.proxies import Scores
    from heterosearch.proxies.calibration import calibrate, first_batches
    from heterosearch.space.calibration import CalibrationSpec

    scores = Scores.load(args.run / "scores.json")
    cfg = RunConfig(task=args.task, data_dir=args.data_dir, space=args.space, out=str(args.run))
    run = Run(cfg=cfg, out=Path("/nonexistent-kind-calibration"))  # nothing is written
    cal = CalibrationSpec(steps=args.steps, per_kind=args.per_kind, val_batches=args.val_batches, signal=args.signal)
    enc = run.encoded["train"]
    n_train = cal.steps if cal.signal == "with_head" else cfg.score_batches
    train = first_batches(run.tokenizer, enc, cfg.batch_size, n_train, cfg.seed)
    val = first_batches(run.tokenizer, run.encoded["val"], cfg.batch_size, cal.val_batches)
    record = calibrate(run.new_model(cfg.seed), run.sites, run.space, scores, "spectral", train, val, cal, seed=cfg.seed)
    if "head_alone_decrease" in record:
        print(f"head alone: validation-loss decrease {record['head_alone_decrease']:+.4f}")
    for p in record["points"]:
        print(f"{p['kind']:9s} {p['group']:26s} {p['option']:18s} score {p['score']:.4g}  signal {p['signal']:+.4f}  "
              f"signal/score {p['signal'] / p['score']:.3g}")
    print("factors (LoRA = 1):", {k: round(v, 4) for k, v in record["factors"].items()},
          "uncalibrated:", record["uncalibrated"], f"{record['seconds']:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({**record, "argv": sys.argv}, indent=1))


if __name__ == "__main__":
    main()
