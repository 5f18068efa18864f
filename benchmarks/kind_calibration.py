"""Measure the per-kind calibration factors of the ``full`` space on all-MiniLM-L6-v2 / MRPC.

Reuses a run folder's ``scores.json`` (spectral values do not depend on the LoRA scale rule, so
reports/mrpc-full-0.5M's serve) and trains each picked option alone (proxies/calibration.py):
training batches = the scoring batches (MRPC train carved as the run does, seed 0, first 8),
validation batches from the carved validation split.

    nice -n 5 env OMP_NUM_THREADS=1 python benchmarks/kind_calibration.py reports/mrpc-full-0.5M \
        [--steps 8] [--per-kind 2] [--val-batches 4] [--batch-size 32] [--max-length 128] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from heterosearch.models import discover_sites
from heterosearch.models.loading import load_model
from heterosearch.proxies import Scores
from heterosearch.proxies.calibration import calibrate, first_batches
from heterosearch.space.calibration import CalibrationSpec
from heterosearch.space.config import load_space
from heterosearch.tasks import TASKS, load_task_data
from heterosearch.tasks.batching import collate, encode, train_batches
from heterosearch.tasks.splits import DEFAULT_VAL_FRACTION, carve_validation


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--per-kind", type=int, default=2)
    ap.add_argument("--val-batches", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    scores = Scores.load(args.run / "scores.json")
    space = load_space("full")
    spec = TASKS.get("mrpc")
    data = load_task_data(spec)
    carved = carve_validation(data.train, DEFAULT_VAL_FRACTION, 0, True)
    model, tok = load_model(None, 2, seed=0)
    sites = discover_sites(model)
    train = encode(tok, carved.train.texts, carved.train.labels, False, args.max_length)
    val = encode(tok, carved.val.texts, carved.val.labels, False, args.max_length)
    batches = [collate(tok, train, i) for i in train_batches(train, args.batch_size, 0, epoch=0)[:8]]
    cal = CalibrationSpec(steps=args.steps, per_kind=args.per_kind, val_batches=args.val_batches)
    record = calibrate(model, sites, space, scores, "spectral", batches, first_batches(tok, val, args.batch_size, cal.val_batches),
                       cal, seed=0)
    for p in record["points"]:
        print(f"{p['kind']:9s} {p['group']:26s} {p['option']:18s} score {p['score']:.4g}  signal {p['signal']:+.4f}  "
              f"signal/score {p['signal'] / p['score']:.3g}")
    print("factors (LoRA = 1):", {k: round(v, 4) for k, v in record["factors"].items()},
          "uncalibrated:", record["uncalibrated"], f"{record['seconds']:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    sys.exit(main())
