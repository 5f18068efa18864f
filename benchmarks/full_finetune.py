#!/usr/bin/env python
"""The full fine-tuning ceiling of the base model on a task: what LoRA's recipe could at best reach.

    python benchmarks/full_finetune.py --task rte --data-dir /work/shared/data/glue --lrs 5e-5 --epochs 10

Every weight of the base model and the head trains (no adapters), with the run's optimizer and
schedule (AdamW, weight decay 0, batch 32, max length 128, 6 % linear warm-up then linear decay
to 0; ``train/loop.py`` ``make_optimizer``), and the **validation split** carved from train
(``tasks/splits.py``) is evaluated after every epoch, so one training gives the whole curve.
The test split (GLUE dev) is never looked at: the ceiling serves a choice (is a task's recipe the
problem, or the model?), and choices use the validation split only.

Why: on RTE neither uniform LoRA baseline clearly leaves the majority class under the recipe
(``reports/recipe-sweep/rte-83k``). If full fine-tuning of the same model does not either, the
limit is the model (all-MiniLM-L6-v2 is a sentence-embedding model of 22.7 M parameters), not
the adapters' recipe. ``full-<task>.json`` is written after every epoch; a rerun skips finished
trainings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="rte")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--lrs", default="5e-5")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--out", default="reports/recipe-sweep/full-finetune")
    args = ap.parse_args()

    import torch

    from heterosearch.pipeline import Run, RunConfig, versions
    from heterosearch.tasks.batching import collate
    from heterosearch.train import TrainConfig
    from heterosearch.train.loop import batch_stream, evaluate_split, make_optimizer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"full-{args.task}.json"
    state = json.loads(path.read_text()) if path.is_file() else {}
    runs = state.setdefault("runs", {})
    cfg = RunConfig(task=args.task, data_dir=args.data_dir, out=str(out))
    run = Run(cfg=cfg, out=out)
    train, val = run.encoded["train"], run.encoded["val"]
    state.update({"task": args.task, "metric": run.spec.main_metric, "splits": run.splits, "versions": versions(),
                  "argv": sys.argv, "fixed": {"warmup": 0.06, "schedule": "linear warm-up then linear decay to 0",
                                              "batch_size": cfg.batch_size, "max_length": cfg.max_length,
                                              "optimizer": "AdamW, weight decay 0", "trained": "every weight + head"}})
    for lr in [float(x) for x in args.lrs.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            key = f"full/lr{lr:g}/ep{args.epochs}/s{seed}"
            if runs.get(key, {}).get("complete"):
                continue
            tc = TrainConfig(epochs=args.epochs, lr=lr, seed=seed, batch_size=cfg.batch_size, max_length=cfg.max_length)
            torch.manual_seed(seed)
            model = run.new_model(seed)
            for p in model.parameters():
                p.requires_grad_(True)
            trainable = [p for p in model.parameters() if p.requires_grad]
            steps = tc.steps_for(len(train))
            per_epoch = -(-len(train) // tc.batch_size)
            optimizer, schedule = make_optimizer(trainable, tc, steps)
            stream = batch_stream(train, tc)
            rec = {"lr": lr, "seed": seed, "epochs": args.epochs, "steps": steps,
                   "trained_params": sum(p.numel() for p in trainable), "curve": [], "complete": False}
            runs[key] = rec
            t0 = time.perf_counter()
            losses: list[float] = []
            model.train()
            for step in range(steps):
                batch = collate(run.tokenizer, train, next(stream))
                loss = model(**batch).loss
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                if (step + 1) % per_epoch == 0 or step + 1 == steps:
                    metrics, val_loss, trivial = evaluate_split(model, run.tokenizer, val, run.spec, tc.eval_batch_size)
                    model.train()
                    epoch_losses = losses[-per_epoch:]
                    rec["curve"].append({"epoch": round((step + 1) / per_epoch, 3), "step": step + 1, "val": metrics,
                                         "val_loss": val_loss, "trivial": trivial,
                                         "train_loss": sum(epoch_losses) / len(epoch_losses),
                                         "seconds": time.perf_counter() - t0, "load_average": os.getloadavg()[0]})
                    path.write_text(json.dumps(state, indent=1))
                    print(f"{key} epoch {rec['curve'][-1]['epoch']}: val {run.spec.main_metric} "
                          f"{metrics[run.spec.main_metric]:.4f} loss {val_loss:.4f} "
                          f"train {rec['curve'][-1]['train_loss']:.4f}", flush=True)
            rec["complete"] = True
            rec["best_epoch"] = max(rec["curve"], key=lambda c: c["val"][run.spec.main_metric])["epoch"]
            path.write_text(json.dumps(state, indent=1))


if __name__ == "__main__":
    main()
