#!/usr/bin/env python
"""Training tokens/s under fp32 and bf16 autocast, as a ratio measured in one process.

    python benchmarks/precision.py [--steps 20] [--rounds 2] [--budget 0.5M] [--out reports/precision.json]

Trains uniform LoRA on all sites of the packaged MiniLM (the budget's uniform-all baseline) on
MRPC batches, alternating fp32 and bf16 blocks of ``--steps`` steps, ``--rounds`` times, so both
precisions see the same machine load; reports each block's tokens/s and the bf16 / fp32 ratio of
the totals. A ratio, not absolute speed: it holds on a busy machine, absolute numbers do not.
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
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--budget", default="0.5M")
    ap.add_argument("--out", default="reports/precision.json")
    args = ap.parse_args()

    import torch

    from heterosearch.adapters import apply_allocation
    from heterosearch.evidence.baselines import plan_baselines
    from heterosearch.pipeline import Run, RunConfig, versions
    from heterosearch.space.budget import parse_budget
    from heterosearch.tasks.batching import collate
    from heterosearch.train.config import TrainConfig
    from heterosearch.train.device import autocast
    from heterosearch.train.loop import batch_stream, make_optimizer

    budget = parse_budget(args.budget)
    run = Run(cfg=RunConfig(budget=budget, out="/tmp/hs-precision"), out=Path("/tmp/hs-precision"))
    plan = plan_baselines(run.sites, run.baseline_roles(), run.space.lora.ranks, budget, run.baseline_allocation()[0],
                          None, methods=["uniform_all"], target=budget)["uniform_all"]
    model = run.new_model()
    apply_allocation(model, run.all_sites, plan.allocation, run.space.lora.scaling, seed=0)
    cfg = TrainConfig()
    optimizer, schedule = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg, 10**6)
    stream = batch_stream(run.encoded["train"], cfg)
    cpu = torch.device("cpu")
    blocks = []
    model.train()
    for r in range(args.rounds):
        for precision in ("fp32", "bf16"):
            tokens, t0 = 0, time.perf_counter()
            for _ in range(args.steps):
                batch = collate(run.tokenizer, run.encoded["train"], next(stream))
                tokens += int(batch["attention_mask"].sum())
                with autocast(cpu, precision):
                    loss = model(**batch).loss
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - t0
            blocks.append({"round": r, "precision": precision, "tokens": tokens, "seconds": seconds,
                           "tokens_per_second": tokens / seconds, "load_average": os.getloadavg()[0]})
            print(f"round {r} {precision}: {tokens / seconds:,.0f} tokens/s ({seconds:.1f}s)", flush=True)
    rate = {p: sum(b["tokens"] for b in blocks if b["precision"] == p) / sum(b["seconds"] for b in blocks if b["precision"] == p)
            for p in ("fp32", "bf16")}
    doc = {"allocation": plan.name, "params": plan.params, "steps_per_block": args.steps, "rounds": args.rounds,
           "threads": torch.get_num_threads(), "blocks": blocks, "tokens_per_second": rate,
           "bf16_over_fp32": rate["bf16"] / rate["fp32"], "versions": versions(), "argv": sys.argv}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"bf16 / fp32 training tokens/s: {doc['bf16_over_fp32']:.2f}")


if __name__ == "__main__":
    main()
