#!/usr/bin/env python
"""Scoring memory and time against a frozen forward+backward, on random Llama-style models.

    nice -n 5 env OMP_NUM_THREADS=1 python benchmarks/scoring_scale.py [--quick] [--batch 4] [--grid 256x4,2048x4]

For each model (widths 256-4096 at 4 layers, depths 4-16 at width 256; LlamaConfig, random
init, intermediate = 2.6875 x width as Llama-2, 64-dim heads, vocab 1000) a fresh subprocess
runs, on one batch of --batch x 64 tokens (default 4 x 64; score_batches = 1):

  reference   one frozen forward+backward: no parameter requires grad, the embeddings' output
              does, so backward crosses every layer (what LoRA training of a frozen base costs)
  streaming   score_candidates(..., ["spectral"], options="streaming") (default lora space, r_max 64)
  reference   again (the time reference is the mean of the two, so drift cancels)
  exact       score_candidates(..., options="exact"), the float64 G path, when it fits

Time: wall clock and this thread's CPU time (torch runs in the calling thread at one thread);
on a loaded machine the CPU-time ratio is the steadier one.

Memory: the subprocess runs with MALLOC_MMAP_THRESHOLD_=65536, so every tensor over 64 KB is
its own mmap and goes back to the OS when freed; a thread samples /proc/self/statm every
0.5 ms. A phase's peak is the largest resident set seen during it ("total", model weights
included) and that minus the resident set just before it ("added"). Sampling can miss a spike
shorter than 0.5 ms; the phases here last seconds. Both ratios are reported; total is what
decides whether a model fits, added is the honest measure of the scoring machinery itself.
Writes reports/scoring_scale.{json,md,png}.

Why --batch matters: the sketches are O((d_in + d_out)(k + l)) per site whatever the batch,
while the reference's activations grow with its tokens T, so the added-memory ratio falls like
1/T towards the floor set by the sites' inputs the hooks keep until backward (about 0.4 of a
frozen Llama layer's activations; measured: about 0.25 of them). Peak memory at the largest
width is about 4 GB at 256 tokens, 5 GB at 1024 (4096 x 4: 3.3 GB of float32 weights); with
--exact-max-width 2048 the exact path adds 12 bytes per adapted weight at 2048 x 4 (1.9 GB).
The whole default grid takes about 4 minutes on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGE = os.sysconf("SC_PAGE_SIZE")
# Ordered so that a run cut short still has both series: results are written after every model.
GRID = [(256, 4), (512, 4), (256, 8), (1024, 4), (256, 16), (2048, 4), (4096, 4)]
QUICK = [(256, 2), (512, 2)]
SEQ = 64


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class Peak:
    """Peak resident set during a ``with`` block, sampled every 0.5 ms by a thread."""

    def __enter__(self) -> Peak:
        self.before = _rss()
        self.peak = self.before
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.t0 = time.perf_counter()
        self.c0 = time.thread_time()  # this thread's CPU time: torch runs here (one thread), the sampler does not
        return self

    def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, _rss())
            time.sleep(0.0005)

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu = time.thread_time() - self.c0
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, _rss())

    def row(self) -> dict[str, float]:
        return {"seconds": self.seconds, "cpu_seconds": self.cpu, "total_mb": self.peak / 2**20, "added_mb": (self.peak - self.before) / 2**20,
                "before_mb": self.before / 2**20}


def llama(width: int, layers: int) -> Any:
    import torch
    import transformers as tf

    inter = int(round(2.6875 * width / 64)) * 64
    cfg = tf.LlamaConfig(hidden_size=width, num_hidden_layers=layers, num_attention_heads=width // 64,
                         num_key_value_heads=width // 64, intermediate_size=inter, vocab_size=1000, num_labels=2,
                         max_position_embeddings=SEQ, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    return tf.AutoModelForSequenceClassification.from_config(cfg, dtype=torch.float32).eval()


def measure(width: int, layers: int, exact_max_width: int, batch_size: int) -> dict[str, Any]:
    """One model, all phases, in this (fresh) process; prints a JSON line after each phase."""
    import torch

    from heterosearch.models import discover_sites
    from heterosearch.optimize.build import build_problem
    from heterosearch.proxies import score_candidates
    from heterosearch.proxies.settings import ScoringOptions, exact_bytes, sketch_widths
    from heterosearch.proxies.streaming import frozen
    from heterosearch.space import load_space

    space = load_space("lora")
    model = llama(width, layers)
    sites = [s for s in discover_sites(model) if s.role in set(space.lora.roles)]
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(3, 1000, (batch_size, SEQ), generator=g),
             "attention_mask": torch.ones(batch_size, SEQ, dtype=torch.long), "labels": torch.arange(batch_size) % 2}
    r_max = max(space.lora.ranks)

    def reference() -> None:
        with frozen(model):
            model(**batch).loss.backward()

    def score(method: str) -> Any:
        return score_candidates(model, sites, [batch], ["spectral"], r_max, space.lora.scaling, 0,
                                options=ScoringOptions(method))

    reference()  # warm-up: first-call allocations and kernels
    out: dict[str, Any] = {"width": width, "layers": layers, "params": sum(p.numel() for p in model.parameters()),
                           "sites": len(sites), "site_weights": sum(s.d_in * s.d_out for s in sites),
                           "tokens": batch_size * SEQ}
    with Peak() as p:
        reference()
    ref = [p.row()]
    with Peak() as p:
        stream = score("streaming")
    out["streaming"] = p.row() | {"data_pass": stream.meta["seconds"]["data_pass"]}
    with Peak() as p:
        reference()
    ref.append(p.row())
    out["reference"] = {k: sum(r[k] for r in ref) / 2 for k in ref[0]}
    out["reference"]["total_mb"] = max(r["total_mb"] for r in ref)
    out["reference"]["added_mb"] = max(r["added_mb"] for r in ref)
    k, l, s = sketch_widths(r_max, ScoringOptions().oversample)  # noqa: E741
    out["sketch_state_mb"] = (sum(4 * (x.d_out * k + l * x.d_in + s * s) for x in sites)
                              + maps_bytes({w for x in sites for w in (x.d_in, x.d_out)}, k, l, s, r_max)) / 2**20
    out["exact_state_mb"] = (exact_bytes(sites) + 4 * sum(x.d_in * x.d_out for x in sites)) / 2**20
    print(json.dumps(out), flush=True)
    # The exact path's svdvals are cubic in width (a 2048 x 5504 site alone is ~90 GFLOP):
    # above exact_max_width it would dominate the benchmark's runtime, so it is not run.
    if width <= exact_max_width:
        with Peak() as p:
            exact = score("exact")
        out["exact"] = p.row() | {"data_pass": exact.meta["seconds"]["data_pass"]}
        budget = sum(x.d_in + x.d_out for x in sites) * 8  # uniform rank 8 on every site of the space
        truth = build_problem(space, sites, exact, "spectral", budget)
        best = truth.solve()
        chosen = build_problem(space, sites, stream, "spectral", budget).solve()
        value, _ = truth.evaluate(chosen.choice)
        same = sum(best.choice.get(key) == chosen.choice.get(key) for key in best.choice)
        out["agreement"] = {"objective_ratio": value / best.value, "same_rank_sites": same, "groups": len(best.choice),
                            "budget": budget}
        errs = []
        for key, curve in exact.curves["spectral"].items():
            errs.append(abs(stream.curves["spectral"][key][8] / curve[8] - 1))
        out["agreement"]["max_rel_err_rank8"] = max(errs)
    return out


def site_bytes(d_in: int, d_out: int, k: int, l: int, s: int) -> tuple[int, int]:  # noqa: E741
    """(streaming state, exact state) bytes of one site: float32 Y, Z, S vs float64 G + float32 .grad."""
    return 4 * (d_out * k + l * d_in + s * s), 12 * d_in * d_out


def maps_bytes(widths: set[int], k: int, l: int, s: int, r_max: int) -> int:  # noqa: E741
    """The Gaussian test matrices shared by the sites of each width (``sketch.TestMaps``), float32."""
    return sum(4 * d * (k + l - 2 * r_max + 2 * s) for d in widths)


def extrapolate(k: int, l: int, s: int) -> dict[str, dict[str, float]]:  # noqa: E741
    """Scoring state for Llama-2-7B / 70B (lora space roles q, k, v, o, ffn_in, ffn_out)."""
    shapes = {"Llama-2-7B": (32, 4096, 4096, 11008), "Llama-2-70B": (80, 8192, 1024, 28672)}
    out = {}
    for name, (layers, d, kv, inter) in shapes.items():
        per_layer = [(d, d), (d, kv), (d, kv), (d, d), (d, inter), (inter, d)]
        st = ex = 0
        for d_in, d_out in per_layer:
            a, b = site_bytes(d_in, d_out, k, l, s)
            st, ex = st + a, ex + b
        st_all = layers * st + maps_bytes({d, kv, inter}, k, l, s, 64)
        out[name] = {"streaming_gb": st_all / 2**30, "exact_gb": layers * ex / 2**30,
                     "weights_bf16_gb": layers * sum(i * o for i, o in per_layer) * 2 / 2**30}
    return out


def child(width: int, layers: int, exact_max_width: int, batch_size: int) -> None:
    import torch

    torch.set_num_threads(1)
    print(json.dumps(measure(width, layers, exact_max_width, batch_size)), flush=True)


def grid(text: str) -> list[tuple[int, int]]:
    """'256x4,2048x4' -> [(256, 4), (2048, 4)]; widths must be multiples of 64 (64-dim heads)."""
    try:
        pairs = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--grid takes WIDTHxLAYERS,... (e.g. 256x4,512x4), got {text!r}") from None
    if not pairs or any(len(p) != 2 or p[0] % 64 or p[0] <= 0 or p[1] <= 0 for p in pairs):
        raise argparse.ArgumentTypeError(f"--grid takes WIDTHxLAYERS,... with widths a multiple of 64, got {text!r}")
    return [(p[0], p[1]) for p in pairs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="two small models (a smoke test of this script)")
    ap.add_argument("--exact-max-width", type=int, default=512, help="run the exact path up to this width")
    ap.add_argument("--grid", type=grid, help="models to run instead of the default grid, e.g. 256x4,512x4")
    ap.add_argument("--batch", type=int, default=4, help="examples of 64 tokens in the scoring batch (default 4)")
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="reports")
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.exact_max_width, args.batch)
        return
    t0 = time.time()
    load_start = os.getloadavg()
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", HETEROSEARCH_QUIET="1", OMP_NUM_THREADS="1")
    rows: list[dict[str, Any]] = []
    from heterosearch.proxies.settings import ScoringOptions, sketch_widths

    k, l, s = sketch_widths(64, ScoringOptions().oversample)  # noqa: E741
    out = ROOT / args.out
    out.mkdir(exist_ok=True)
    if args.batch < 1:
        raise SystemExit("--batch must be >= 1")
    for width, layers in args.grid or (QUICK if args.quick else GRID):
        proc = subprocess.run([sys.executable, __file__, "--child", str(width), str(layers),
                               "--exact-max-width", str(args.exact_max_width), "--batch", str(args.batch)],
                              env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"width {width} x {layers} layers failed")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{width} x {layers}: memory total {r['streaming']['total_mb'] / r['reference']['total_mb']:.2f}x, "
              f"added {r['streaming']['added_mb'] / max(r['reference']['added_mb'], 1e-9):.2f}x, "
              f"time {r['streaming']['seconds'] / r['reference']['seconds']:.2f}x "
              f"(cpu {r['streaming']['cpu_seconds'] / r['reference']['cpu_seconds']:.2f}x)", flush=True)
        result = {"rows": rows, "extrapolation": extrapolate(k, l, s), "sketch": {"k": k, "l": l, "s": s},
                  "load_start": load_start, "load_end": os.getloadavg(), "minutes": (time.time() - t0) / 60,
                  "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
        (out / "scoring_scale.json").write_text(json.dumps(result, indent=1) + "\n")
        plot(rows, out / "scoring_scale.png")
        (out / "scoring_scale.md").write_text(markdown(result))
    print(f"wrote {out}/scoring_scale.{{json,md,png}} in {(time.time() - t0) / 60:.1f} min")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    series = [("width (4 layers)", [r for r in rows if r["layers"] == 4], "width"),
              ("layers (width 256)", [r for r in rows if r["width"] == 256], "layers")]
    for ax, (label, rs, key) in zip(axes, series):
        rs = sorted(rs, key=lambda r: r[key])
        if not rs:
            continue
        xs = [r[key] for r in rs]
        ax.plot(xs, [r["streaming"]["total_mb"] / r["reference"]["total_mb"] for r in rs], "o-", label="memory, total")
        ax.plot(xs, [r["streaming"]["added_mb"] / max(r["reference"]["added_mb"], 1e-9) for r in rs], "D-",
                label="memory, added")
        ax.plot(xs, [r["streaming"]["seconds"] / r["reference"]["seconds"] for r in rs], "s-", label="time (wall)")
        ax.plot(xs, [r["streaming"]["cpu_seconds"] / r["reference"]["cpu_seconds"] for r in rs], "^-", label="time (CPU)")
        ex = [(r[key], r["exact"]["total_mb"] / r["reference"]["total_mb"]) for r in rs if "exact" in r]
        if ex:
            ax.plot(*zip(*ex), "x--", label="memory, total, exact path")
        ax.axhline(1.3, color="grey", lw=0.8, ls=":")
        ax.axhline(1.5, color="grey", lw=0.8, ls="--")
        ax.set_xlabel(label)
        ax.set_ylabel("streaming scoring / frozen fwd+bwd")
        if key == "width":
            ax.set_xscale("log", base=2)
        ax.legend(fontsize=8)
    fig.suptitle(f"Scoring cost relative to a frozen forward+backward (random Llama, {rows[0]['tokens']} tokens)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(res: dict[str, Any]) -> str:
    lines = ["| width x layers | tokens | params | sites | streaming mem total / ref | added / ref added | time / ref | CPU time / ref "
             "| exact mem total / ref | exact time / ref | alloc. objective (stream / exact opt.) | same rank |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        st, ref = r["streaming"], r["reference"]
        ex = r.get("exact")
        ag = r.get("agreement")
        lines.append(
            f"| {r['width']} x {r['layers']} | {r['tokens']} | {r['params'] / 1e6:.0f}M | {r['sites']} | "
            f"**{st['total_mb'] / ref['total_mb']:.2f}** ({st['total_mb']:.0f} / {ref['total_mb']:.0f} MB) | "
            f"{st['added_mb'] / max(ref['added_mb'], 1e-9):.2f} ({st['added_mb']:.0f} / {ref['added_mb']:.0f} MB) | "
            f"**{st['seconds'] / ref['seconds']:.2f}** ({st['seconds']:.1f} / {ref['seconds']:.1f} s) | "
            f"**{st['cpu_seconds'] / ref['cpu_seconds']:.2f}** | "
            + (f"{ex['total_mb'] / ref['total_mb']:.2f} | {ex['seconds'] / ref['seconds']:.2f} | " if ex else "- | - | ")
            + (f"{ag['objective_ratio']:.4f} | {ag['same_rank_sites']}/{ag['groups']} |" if ag else "- | - |"))
    ext = res["extrapolation"]
    lines += ["", "| model | streaming state GB | exact state GB (float64 G + float32 grad) | weights (bf16) GB |",
              "|---|---|---|---|"]
    for name, e in ext.items():
        lines.append(f"| {name} | {e['streaming_gb']:.2f} | {e['exact_gb']:.0f} | {e['weights_bf16_gb']:.0f} |")
    lines += ["", f"Load average at start {res['load_start']}, at end {res['load_end']}; `uptime`: {res['uptime']}. "
              f"Runtime {res['minutes']:.1f} min.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
