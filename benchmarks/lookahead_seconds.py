"""Seconds per ``lookahead`` trial on a scored run folder (default: MiniLM, MRPC), wall and CPU.

    heterosearch score --task mrpc --out /tmp/h6-measure
    nice -n 5 env OMP_NUM_THREADS=1 python benchmarks/lookahead_seconds.py /tmp/h6-measure --budget 0.5M

Times the warm starts a lookahead search begins with (the knapsack pick, uniform q,v, uniform
all sites), each trained once; prints one JSON line per trial and the load average. CPU
seconds are the number to plan with on a loaded machine (wall = CPU x load factor).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--budget", default="0.5M")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--val-batches", type=int, default=None)
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()

    from dataclasses import replace

    from heterosearch.optimize import lookahead
    from heterosearch.optimize.build import build_problem
    from heterosearch.optimize.shortlist import shortlist
    from heterosearch.optimize.warm import warm_starts
    from heterosearch.pipeline import Run
    from heterosearch.proxies import Scores
    from heterosearch.space.budget import parse_budget

    run = Run.reopen(args.run_dir, budget=parse_budget(args.budget))
    scores = Scores.load(run.path("scores.json"))
    problem = build_problem(run.space, run.sites, scores, run.cfg.proxy, run.require_budget())
    picks = shortlist(problem)
    warm = warm_starts(problem, picks[0].choice, picks, run.sites, run.baseline_roles(), run.space.lora.roles,
                       run.space.lora.ranks)
    cfg = lookahead.run_config(run.cfg)
    changes = {k: v for k, v in (("steps", args.steps), ("val_batches", args.val_batches)) if v is not None}
    cfg = replace(cfg, **changes)
    t0 = time.perf_counter()
    evaluate = lookahead.for_run(run, cfg)
    print(json.dumps({"setup_wall_s": round(time.perf_counter() - t0, 1), "config": cfg.to_dict(),
                      "threads": os.environ.get("OMP_NUM_THREADS"), "loadavg": os.getloadavg()}), flush=True)
    # One trial's phases, step by step (printed as they finish: on a loaded machine a trial takes minutes).
    import torch

    from heterosearch.adapters import apply_allocation

    c0 = time.process_time()
    model = evaluate._fresh_head_model()
    apply_allocation(model, evaluate.sites, evaluate.to_allocation(warm[0][1]), evaluate.scaling, seed=cfg.seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    model.eval()
    print(json.dumps({"phase": "copy+apply", "cpu_s": round(time.process_time() - c0, 2)}), flush=True)
    for step in range(cfg.steps):
        c0 = time.process_time()
        batch = evaluate.fit[step % len(evaluate.fit)]
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        print(json.dumps({"phase": f"step {step}", "tokens": int(batch["attention_mask"].numel()),
                          "cpu_s": round(time.process_time() - c0, 2), "loadavg": os.getloadavg()}), flush=True)
    c0 = time.process_time()
    evaluate._val_loss(model)
    print(json.dumps({"phase": f"val loss ({len(evaluate.val)} batches)", "cpu_s": round(time.process_time() - c0, 2)}),
          flush=True)
    for name, choice in warm[: args.trials]:
        value = evaluate(choice)
        print(json.dumps({"trial": name, "value": value, "params": problem.evaluate(choice)[1],
                          "wall_s": round(evaluate.seconds[-1], 2), "cpu_s": round(evaluate.cpu_seconds[-1], 2),
                          "loadavg": os.getloadavg()}), flush=True)


if __name__ == "__main__":
    main()
