"""Plots for the run report, drawn from results files only (matplotlib, Agg backend).

- ``proxy_vs_accuracy``: one panel per proxy (and the parameter-count baseline): score
  against short-trained accuracy, the two seeds as a vertical bar, rho/tau in the title;
- ``allocation_heatmap``: layers x roles grid of LoRA ranks (annotated), with any other
  allocation section (shortcuts, shared banks: ``results["allocation"]`` keys other than
  ``"lora"``) drawn as extra columns to the right, or listed under the grid when they have
  no layer;
- ``search_history``: objective per Optuna trial, feasible vs infeasible, the best feasible
  so far, and the exact optimum as a line;
- ``seed_spread``: per method, one dot per seed (lines join a seed across methods) over a box.

Each function takes plain dicts (the parsed JSON) and a path, and returns the path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_LAYER = re.compile(r"^L(\d+)\.(.+)$")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def _fmt(x: Any, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


# -- proxy score vs accuracy ---------------------------------------------------------------
def proxy_vs_accuracy(report: Mapping[str, Any], path: Path, target: str = "acc") -> Path:
    """Scatter of every proxy's score against the trained outcome (rank_report.json).

    ``target``: ``acc`` (validation metric, %) or ``neg_loss`` (drawn as the dev loss, lower = better;
    its statistics are those of ``by_val_loss``).
    """
    import numpy as np

    plt = _plt()
    loss = target == "neg_loss"
    mean_key = "neg_loss_mean" if loss else "mean"
    stats = report.get("by_val_loss") or report.get("by_dev_loss", {}) if loss else report
    cands = [c for c in report["candidates"] if mean_key in c]
    panels: list[tuple[str, list[float], Mapping[str, Any] | None]] = [
        (p, [c["scores"][p] for c in cands], stats.get("proxies", {}).get(p)) for p in report["proxies_scored"]
    ]
    panels.append(("params (baseline)", [c["params"] for c in cands], stats.get("baselines", {}).get("params")))
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    seeds = [str(s) for s in report["seeds"]]
    scale = -1.0 if loss else 100.0  # loss: undo the sign; metric: percent
    per_seed = np.array([[scale * c[target][s] for s in seeds] for c in cands]).reshape(len(cands), len(seeds))
    y = np.array([scale * c[mean_key] for c in cands])
    lo, hi = per_seed.min(axis=1), per_seed.max(axis=1)
    uniform = report.get("uniform")
    for ax, (name, xs, st) in zip(axes.flat, panels):
        x = np.asarray(xs, dtype=float)
        ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="o", ms=4, color="tab:blue", ecolor="tab:blue",
                    elinewidth=0.8, alpha=0.8, label="sample (bar: 2 seeds)")
        if uniform and mean_key in uniform:
            ax.axhline(scale * uniform[mean_key], color="tab:red", ls="--", lw=1, label="uniform q,v")
        if st:
            ax.set_title(f"{name}\nrho {_fmt(st['spearman']['value'])}, tau {_fmt(st['kendall']['value'])}, "
                         f"top-k {_fmt(st['top_k_precision']['value'])}", fontsize=9)
        else:
            ax.set_title(name, fontsize=9)
        if x.size and x.min() > 0 and x.max() / x.min() > 100:
            ax.set_xscale("log")
        ax.set_xlabel("score" if "params" not in name else "adapter parameters", fontsize=8)
        ax.set_ylabel(("val" if "by_val_loss" in report else "dev") + " loss (lower = better)" if loss else f"{'val' if 'by_val_loss' in report else 'dev'} {report['metric']} (%)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{report['task']}: {len(cands)} allocations at budget {report['budget']:,}, "
                 f"{report['steps']} training steps", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# -- allocation heat map --------------------------------------------------------------------
def allocation_heatmap(allocation: Mapping[str, Any], sites: Sequence[Mapping[str, Any]], path: Path, title: str = "") -> Path:
    """Layers x roles grid of LoRA ranks; other sections as extra columns (or a note if layer-less)."""
    import numpy as np

    plt = _plt()
    roles: list[str] = []
    for s in sites:
        if s["role"] not in roles:
            roles.append(s["role"])
    layers = sorted({int(s["layer"]) for s in sites})
    lora = allocation.get("lora", {})
    # Other sections become extra columns: dict sections keyed "L3.residual_1", or element lists
    # (shortcut: layer/ctype/rank; bank: role/layers/rank/variant; mos: role/ranks per layer).
    # Elements spanning several layers (shared banks, MoS pools) are joined by a bar ("shared").
    extra_cols: list[str] = []
    extra: dict[tuple[int, str], Any] = {}
    spans: list[tuple[str, list[int]]] = []
    notes: list[str] = []

    def put(col: str, layer: int, value: Any) -> None:
        if col not in extra_cols:
            extra_cols.append(col)
        extra[(layer, col)] = value

    for section, items in allocation.items():
        if section == "lora":
            continue
        if isinstance(items, Mapping):
            for key, value in items.items():
                m = _LAYER.match(str(key))
                if m and int(m.group(1)) in layers:
                    put(f"{section}:{m.group(2)}", int(m.group(1)), value)
                else:
                    notes.append(f"{section} {key}: {value}")
        elif isinstance(items, list):
            for el in items:
                if not isinstance(el, Mapping):
                    notes.append(f"{section}: {el}")
                    continue
                kind = el.get("ctype") or el.get("role") or el.get("type") or "element"
                col = f"{section}:{kind}" + (f" {el['variant']}" if el.get("variant") else "")
                if isinstance(el.get("ranks"), Mapping):  # MoS: per-layer ranks over one shared pool
                    members = {int(k): v for k, v in el["ranks"].items()}
                elif el.get("layers") is not None:  # bank: one shared tensor over member layers
                    members = {int(layer): el.get("rank", 1) for layer in el["layers"]}
                elif el.get("layer") is not None:
                    members = {int(el["layer"]): el.get("rank", 1)}
                else:
                    notes.append(f"{section}: {dict(el)}")
                    continue
                for layer, value in members.items():
                    if layer in layers:
                        put(col, layer, value)
                if len(members) > 1:
                    spans.append((col, sorted(m for m in members if m in layers)))
        elif items:
            notes.append(f"{section}: {items}")
    cols = roles + ([""] if extra_cols else []) + extra_cols  # "" = a blank gap column
    grid = np.full((len(layers), len(cols)), np.nan)
    for i, layer in enumerate(layers):
        for j, col in enumerate(cols):
            if col in roles:
                grid[i, j] = lora.get(f"L{layer}.{col}", 0)
            elif col:
                v = extra.get((layer, col), 0)
                grid[i, j] = _rank_of(v)
    fig_w = 1.0 + 0.75 * len(cols)
    fig_h = 1.3 + 0.42 * len(layers) + 0.18 * len(notes)
    fig, ax = plt.subplots(figsize=(max(4.5, fig_w), max(2.6, fig_h)))
    masked = np.ma.masked_invalid(grid)
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    vmax = max(1.0, float(np.nanmax(grid)) if np.isfinite(grid).any() else 1.0)
    im = ax.imshow(masked, cmap=cmap, vmin=0, vmax=vmax, aspect="auto")
    for i in range(len(layers)):
        for j, col in enumerate(cols):
            if not col:
                continue
            v = grid[i, j]
            text = "·" if v == 0 else str(int(v))
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if v < 0.6 * vmax else "black")
    ax.set_xticks(range(len(cols)), [c.replace(":", "\n") for c in cols], fontsize=8)
    ax.set_yticks(range(len(layers)), [f"L{layer}" for layer in layers], fontsize=8)
    ax.set_xlabel("role (LoRA site)" + ("  |  other elements" if extra_cols else ""), fontsize=8)
    ax.set_ylabel("layer", fontsize=8)
    if extra_cols:
        ax.axvline(len(roles), color="grey", lw=0.8)
    row = {layer: i for i, layer in enumerate(layers)}
    for col, members in spans:
        if len(members) > 1:
            j = cols.index(col)
            ax.plot([j + 0.38, j + 0.38], [row[members[0]], row[members[-1]]], color="tab:red", lw=2.5, alpha=0.7)
            ax.text(j + 0.45, (row[members[0]] + row[members[-1]]) / 2, "shared", rotation=90, fontsize=6,
                    color="tab:red", va="center")
    fig.colorbar(im, ax=ax, label="rank (0 = off)", fraction=0.05, pad=0.03)
    ax.set_title(title or "allocation: rank per site", fontsize=9)
    if notes:
        fig.text(0.01, 0.0, "\n".join(notes[:12]) + ("\n..." if len(notes) > 12 else ""), fontsize=7, va="top")
    return _save(fig, path)


def _rank_of(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, Mapping):
        for k in ("rank", "r"):
            if isinstance(value.get(k), (int, float)):
                return float(value[k])
        return 1.0
    return 1.0 if value else 0.0


# -- search history -------------------------------------------------------------------------
def search_history(search: Mapping[str, Any], path: Path) -> Path:
    """Objective per trial (feasible vs infeasible), the best feasible so far, the exact optimum."""
    plt = _plt()
    history = search.get("history", [])
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    feas = [(h["number"], h["value"]) for h in history if h.get("feasible") and h.get("value") is not None]
    infeas = [(h["number"], h["value"]) for h in history if not h.get("feasible") and h.get("value") is not None]
    # Repaired trials were sampled over budget and evaluated after the greedy repair (feasible).
    repaired = [(h["number"], h["value"]) for h in history if h.get("feasible") and h.get("repaired") and h.get("value") is not None]
    if infeas:
        ax.scatter(*zip(*infeas), s=8, marker="x", color="0.65", label="infeasible (over budget)")
    if feas:
        fixed = set(repaired)
        as_sampled = [p for p in feas if p not in fixed]
        if as_sampled:
            ax.scatter(*zip(*as_sampled), s=10, color="tab:blue", label="feasible as sampled")
        if repaired:
            ax.scatter(*zip(*repaired), s=8, color="tab:orange", alpha=0.7, label="repaired to fit the budget")
        best, xs, ys = float("-inf"), [], []
        for n, v in sorted(feas):
            best = max(best, v)
            xs.append(n)
            ys.append(best)
        ax.step(xs, ys, where="post", color="tab:blue", lw=1.2, label="best feasible so far")
    if search.get("exact_objective") is not None:
        ax.axhline(search["exact_objective"], color="tab:red", ls="--", lw=1.2,
                   label=f"exact optimum {search['exact_objective']:.3f}")
    ax.set_xlabel("trial", fontsize=9)
    ylabels = {"lookahead": "objective (lookahead: val-loss drop)", "train": "objective (train: minus val loss)"}
    ax.set_ylabel(ylabels.get(search.get("objective_name"), "objective (normalised proxy sum)"), fontsize=9)
    ratio = search.get("ratio")
    ax.set_title(f"search: {search.get('trials', len(history))} trials, best feasible = "
                 f"{'n/a' if ratio is None else f'{100 * ratio:.1f} %'} of the exact optimum", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.tick_params(labelsize=8)
    return _save(fig, path)


# -- seed spread ------------------------------------------------------------------------------
def seed_spread(verify: Mapping[str, Any], path: Path, split: str = "test", metric: str | None = None) -> Path:
    """Per method: a box over seeds, one dot per seed, lines joining the same seed across methods."""
    import numpy as np

    plt = _plt()
    metric = metric or verify["metric"]
    block = verify["summary"][split][metric]["methods"]
    methods = [m for m in verify.get("methods_order", list(block)) if m in block]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(methods) + 1.5), 3.8))
    data = [[100 * v for v in block[m]["values"].values()] for m in methods]
    ax.boxplot(data, positions=range(len(methods)), widths=0.5, showfliers=False,
               medianprops={"color": "0.3"}, boxprops={"color": "0.6"}, whiskerprops={"color": "0.6"}, capprops={"color": "0.6"})
    seeds = sorted({s for m in methods for s in block[m]["values"]}, key=lambda s: int(s) if s.lstrip("-").isdigit() else s)
    colors = plt.get_cmap("tab10")
    for k, s in enumerate(seeds):
        xs = [j for j, m in enumerate(methods) if s in block[m]["values"]]
        ys = [100 * block[methods[j]]["values"][s] for j in xs]
        ax.plot(xs, ys, "-o", color=colors(k % 10), ms=4, lw=0.6, alpha=0.8, label=f"seed {s}")
    means = [np.mean(d) if d else np.nan for d in data]
    ax.scatter(range(len(methods)), means, marker="_", s=400, color="black", zorder=3, label="mean")
    ax.set_xticks(range(len(methods)), methods, fontsize=8, rotation=20)
    ax.set_ylabel(f"{split} {metric} (%)", fontsize=9)
    ax.set_title(f"{verify.get('task', '')}: {metric} over seeds at budget {verify.get('budget', 0):,}", fontsize=9)
    ax.legend(fontsize=7, loc="best", ncol=2)
    ax.tick_params(labelsize=8)
    return _save(fig, path)


# -- accuracy-vs-budget frontier ---------------------------------------------------------------
def frontier_plot(doc: Mapping[str, Any], path: Path, split: str = "test") -> Path:
    """Metric against adapter parameters (log x), one line per method, a band of mean ± std over seeds.

    Each point sits at the method's mean exact parameter count at that budget (random draws
    and AdaLoRA's effective count vary a little around the budget).
    """
    import numpy as np

    plt = _plt()
    metric = doc.get("metric") or "metric"
    points = doc.get("points", {})
    methods = [m for m in doc.get("methods", []) if any(m in p for p in points.values())]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = plt.get_cmap("tab10")
    for k, m in enumerate(methods):
        xs, ys, sd = [], [], []
        for b in sorted(points, key=int):
            p = points[b].get(m)
            if not p or split not in p or p[split].get("mean") is None:
                continue
            xs.append(p["params"]["mean"])
            ys.append(100 * p[split]["mean"])
            sd.append(100 * (p[split].get("std") or 0.0))
        if not xs:
            continue
        xs_a, ys_a, sd_a = np.array(xs), np.array(ys), np.array(sd)
        ax.errorbar(xs_a, ys_a, yerr=sd_a, fmt="-o", color=colors(k % 10), ms=4, lw=1.6 if m == "winner" else 1.0,
                    capsize=3, elinewidth=0.8, label=m)
        ax.fill_between(xs_a, ys_a - sd_a, ys_a + sd_a, color=colors(k % 10), alpha=0.12, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel("adapter parameters (log scale)", fontsize=9)
    ax.set_ylabel(f"{split} {metric} (%), mean ± std over seeds", fontsize=9)
    ax.set_title(f"{doc.get('task', '')}: {split} {metric} against budget ({doc.get('space', '')} space, "
                 f"{doc.get('proxy', '')} proxy)", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3, lw=0.5)
    ax.tick_params(labelsize=8)
    return _save(fig, path)
