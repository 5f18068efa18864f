#!/usr/bin/env python
"""The training-recipe sweep: one recipe for every method, chosen on the validation split.

    python benchmarks/recipe_sweep.py --task mrpc --budget 83k --out reports/recipe-sweep

Trains the two uniform baselines (LoRA on q,v and on every site, at the largest uniform
rank within the budget) under every (lr, epochs) pair of the grid, for each seed, and
evaluates **only the validation split** carved from train (``tasks/splits.py``); the test
split (GLUE dev) is never looked at, so the recipe cannot leak the report data. Warm-up
(6 %, linear, then linear decay to 0), batch 32, max length 128 and alpha = 2r are held
fixed: with alpha / r constant the learning rate is the knob that moves every method, and
the grid stays affordable on 2 CPU cores.

The chosen recipe maximises the validation main metric averaged over both baselines and
seeds (ties: the shorter recipe). ``sweep.json`` is written after every training, and a
rerun skips what is done, so the command resumes.
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
    ap.add_argument("--task", default="mrpc")
    ap.add_argument("--budget", default="83k")
    ap.add_argument("--lrs", default="5e-4,1e-3,2e-3,4e-3")
    ap.add_argument("--epochs", default="2")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--methods", default="uniform_qv,uniform_all")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--lora-dropout", type=float, default=0.0, help="dropout on LoRA's input (PEFT's lora_dropout)")
    ap.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    ap.add_argument("--scale", default="rs:2.8284",  # the recipe's (recipe.py); ratio:2 made sweep-mrpc.json
                    help="LoRA scale rule: 'ratio:K' (alpha = K r, s = K at every rank) or 'rs:C' "
                         "(rank-stabilised, alpha = C sqrt(r), s = C / sqrt(r))")
    ap.add_argument("--out", default="reports/recipe-sweep")
    args = ap.parse_args()

    from heterosearch.evidence.adalora import train_adalora
    from heterosearch.evidence.baselines import plan_baselines
    from heterosearch.evidence.jobs import model_factory
    from heterosearch.pipeline import Run, RunConfig, versions
    from heterosearch.space.budget import parse_budget
    from heterosearch.train import TrainConfig, train_allocation

    budget = parse_budget(args.budget)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rule, _, const = args.scale.partition(":")
    if rule not in ("ratio", "rs") or not const:
        ap.error("--scale must be ratio:K or rs:C")
    const_f = float(const)
    tag = "" if args.scale == "ratio:2" else f"/{args.scale}"
    # Regression heads start at the mean training label since 2026-12-06 (models/head.py);
    # trainings before that have no "/head:mean" in their key.

    from heterosearch.space.scale import LoraScale

    scale = LoraScale("ratio" if rule == "ratio" else "rslora", const_f)

    path = out / f"sweep-{args.task}.json"
    state = json.loads(path.read_text()) if path.is_file() else {}
    runs = state.setdefault("runs", {})
    cfg = RunConfig(budget=budget, task=args.task, data_dir=args.data_dir, out=str(out))
    run = Run(cfg=cfg, out=out)
    methods = args.methods.split(",")
    plans = plan_baselines(run.sites, run.baseline_roles(), run.space.lora.ranks, budget,
                           run.baseline_allocation()[0], None, methods=methods, target=budget)
    state.update({
        "task": args.task, "budget": budget, "metric": run.spec.main_metric, "splits": run.splits,
        "fixed": {"warmup": 0.06, "schedule": "linear warm-up then linear decay to 0", "batch_size": cfg.batch_size,
                  "max_length": cfg.max_length, "scale": args.scale, "optimizer": "AdamW, weight decay 0"},
        "versions": versions(), "argv": sys.argv, "load_average_start": os.getloadavg()[0],
        "plans": {m: {"name": p.name, "params": p.params} for m, p in plans.items()},
    })
    if run.spec.num_labels == 1 and not run.spec.is_lm:
        tag += "/head:mean"
    # Regularisation outside the recipe (weight decay 0, no dropout) is part of the key, so the
    # recipe's own trainings keep their keys and a rerun resumes them.
    reg = (f"/drop{args.lora_dropout:g}" if args.lora_dropout else "") + (f"/wd{args.weight_decay:g}" if args.weight_decay else "")
    evals = {"val": run.encoded["val"]}
    for epochs in [float(e) for e in args.epochs.split(",")]:
        for lr in [float(x) for x in args.lrs.split(",")]:
            for seed in [int(s) for s in args.seeds.split(",")]:
                for m in methods:
                    key = f"{m}/lr{lr:g}/ep{epochs:g}/s{seed}{tag}{reg}"
                    if key in runs:
                        continue
                    tc = TrainConfig(epochs=epochs, lr=lr, seed=seed, batch_size=cfg.batch_size, max_length=cfg.max_length,
                                     lora_dropout=args.lora_dropout, weight_decay=args.weight_decay)
                    t0 = time.perf_counter()
                    if m == "adalora":  # its own method: SVD-form adapters and a rank schedule (evidence/adalora.py)
                        res = train_adalora(model_factory(run, seed), run.tokenizer, run.sites,
                                            plans[m].details["target_r"], plans[m].details["init_r"], scale,
                                            run.encoded["train"], evals, run.spec, tc, label=key)
                    else:
                        res = train_allocation(model_factory(run, seed), run.tokenizer, run.all_sites,
                                               plans[m].allocation, scale, run.encoded["train"], evals, run.spec, tc,
                                               label=key)
                    runs[key] = {"method": m, "budget": budget, "scale": args.scale, "head": "mean" if "head:mean" in tag else "fresh", "lr": lr, "epochs": epochs, "seed": seed,
                                 "lora_dropout": args.lora_dropout, "weight_decay": args.weight_decay, "val": res.metrics["val"],
                                 "val_loss": res.eval_loss["val"], "train_loss": res.train_loss, "steps": res.steps,
                                 "seconds": res.seconds, "wall": time.perf_counter() - t0, "load_average": os.getloadavg()[0]}
                    path.write_text(json.dumps(state, indent=1))
                    print(f"{key}: val {run.spec.main_metric} {runs[key]['val'][run.spec.main_metric]:.4f} "
                          f"loss {runs[key]['val_loss']:.4f} ({res.seconds:.0f}s)", flush=True)
    # the choice: mean validation metric over methods and seeds, per (lr, epochs)
    table: dict[str, list[float]] = {}
    for r in runs.values():
        head = f"/head:{r['head']}" if "head" in r else ""
        reg = (f"/drop{r['lora_dropout']:g}" if r.get("lora_dropout") else "") + (f"/wd{r['weight_decay']:g}" if r.get("weight_decay") else "")
        table.setdefault(f"lr{r['lr']:g}/ep{r['epochs']:g}{head}{reg}", []).append(r["val"][run.spec.main_metric])
    means = {k: sum(v) / len(v) for k, v in table.items()}
    best = max(means, key=lambda k: (round(means[k], 6), -float(k.split("/ep")[1].split("/")[0])))
    state["mean_val_metric"] = means
    state["chosen"] = best
    path.write_text(json.dumps(state, indent=1))
    print(json.dumps({"mean_val_metric": means, "chosen": best}, indent=1))


if __name__ == "__main__":
    main()
