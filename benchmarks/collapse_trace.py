"""Trace one verify training step by step: loss, gradient norm and the classifier's input.

    python benchmarks/collapse_trace.py RUN_DIR --method uniform_all --seed 0 --steps 200 [--clip 1.0] [--lr 5e-4]

Rebuilds the (method, seed) training of ``RUN_DIR/verify_seeds.json`` as ``heterosearch verify``
runs it (same model, head start, allocation, scale, batches, AdamW and schedule over the full
recipe length) and prints, every 5 steps, the batch loss, the gradient norm (before clipping),
the mean norm of the classifier's input and its standard deviation across the batch (a
representation collapse shows as both falling together). ``--clip`` clips the gradient norm
(0 = off, the recipe); ``--lr`` replaces the recipe's peak rate. Made to find where STS-B 0.5M trainings stop learning
(reports/README.md, `stsb-frontier/`; outputs in reports/stsb-collapse/).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--method", default="uniform_all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--clip", type=float, default=0.0)
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    args = ap.parse_args()

    from heterosearch.adapters import apply_allocation
    from heterosearch.pipeline.folder import Run, stored_config
    from heterosearch.space.allocation import Allocation
    from heterosearch.tasks.batching import collate
    from heterosearch.train.loop import batch_stream, make_optimizer

    run = Run(cfg=stored_config(args.run), out=args.run)
    entry = json.loads((args.run / "verify_seeds.json").read_text())["runs"][f"{args.method}/{args.seed}"]
    alloc = Allocation.from_dict(entry["allocation"])
    cfg = replace(run.train_config(), seed=args.seed, **({"lr": args.lr} if args.lr else {}))
    torch.manual_seed(args.seed)
    model = run.new_model(args.seed)
    apply_allocation(model, run.sites, alloc, run.space.lora.scaling, seed=args.seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    steps = cfg.steps_for(len(run.encoded["train"]))
    opt, schedule = make_optimizer(trainable, cfg, steps)
    model.train()
    stream = batch_stream(run.encoded["train"], cfg)
    seen: dict[str, torch.Tensor] = {}
    model.get_submodule("classifier").register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0].detach()))
    print(f"{args.run} {args.method} seed {args.seed}: {entry['params']:,} adapter params, {steps} recipe steps, "
          f"clip {args.clip or 'off'}, peak lr {cfg.lr:g}")
    t0 = time.time()
    for step in range(min(args.steps, steps)):
        batch = collate(run.tokenizer, run.encoded["train"], next(stream))
        loss = model(**batch).loss
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(trainable, args.clip if args.clip > 0 else float("inf")))
        opt.step()
        schedule.step()
        opt.zero_grad(set_to_none=True)
        x = seen["x"]
        if step % 5 == 0 or step == args.steps - 1:
            print(f"step {step:3d} loss {loss.item():7.3f} grad_norm {norm:9.3f} head-input |x| "
                  f"{x.norm(dim=-1).mean().item():7.3f} spread across batch {x.std(dim=0).mean().item():.4f} "
                  f"lr {schedule.get_last_lr()[0]:.2e} t {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
