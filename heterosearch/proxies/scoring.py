"""Score every candidate (site, rank) with every requested proxy from shared passes.

One data pass (forward + backward of the base model per batch, all sites at once) feeds
every data proxy; one synflow pass feeds synflow. The result is a ``Scores`` object that
is saved as ``scores.json`` in the run folder and read back by the search.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heterosearch.errors import UserError


class ProxyError(UserError):
    """A proxy gave non-finite or degenerate (all-equal) scores: never ranked silently."""


@dataclass
class Scores:
    """curves[proxy][site_key] = score at rank 0..r_max (floats)."""

    sites: list[dict[str, Any]]
    r_max: int
    curves: dict[str, dict[str, list[float]]]
    meta: dict[str, Any] = field(default_factory=dict)
    # Non-LoRA kinds (proxies/kinds.py): kinds[proxy][kind] = curves (shortcut) or option values
    # (bank, mos: role -> label -> value); undefined[proxy][kind] = why that proxy cannot score it.
    kinds: dict[str, dict[str, Any]] = field(default_factory=dict)
    undefined: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def site_keys(self) -> list[str]:
        return [s["key"] for s in self.sites]

    def table(self, proxy: str, ranks: Sequence[int], keys: Sequence[str] | None = None) -> np.ndarray:
        """(n_sites, n_ranks) raw scores for the given rank choices."""
        if proxy not in self.curves:
            raise UserError(f"proxy {proxy!r} was not scored in this run (scored: {', '.join(sorted(self.curves))})")
        if max(ranks) > self.r_max:
            raise UserError(f"rank {max(ranks)} exceeds the scored maximum rank {self.r_max}")
        keys = list(keys) if keys is not None else self.site_keys
        curves = self.curves[proxy]
        missing = [k for k in keys if k not in curves]
        if missing:  # a scores.json from another model, or edited: one line instead of a KeyError
            raise UserError(f"scores.json has no {proxy!r} curve for site {missing[0]!r} of this model: "
                            "delete it and rerun `heterosearch score`")
        return np.array([[curves[k][r] for r in ranks] for k in keys], dtype=np.float64)

    def save(self, path: Path) -> None:
        from heterosearch.export.files import write_json

        write_json(path, {"sites": self.sites, "r_max": self.r_max, "curves": self.curves, "meta": self.meta,
                          "kinds": self.kinds, "undefined": self.undefined})

    @classmethod
    def load(cls, path: Path) -> Scores:
        if not path.is_file():
            raise UserError(f"no scores at {path}: run `heterosearch score` first")
        from heterosearch.export.schema import read_run_file

        data = read_run_file(path, "scores.json")
        return cls(sites=data["sites"], r_max=data["r_max"], curves=data["curves"], meta=data.get("meta", {}),
                   kinds=data.get("kinds", {}), undefined=data.get("undefined", {}))


def check_scores(proxy: str, curves: dict[str, list[float]]) -> None:
    """Refuse non-finite scores and rankings that cannot rank (every site scored the same)."""
    bad = [k for k, c in curves.items() if not all(math.isfinite(v) for v in c)]
    if bad:
        raise ProxyError(f"proxy {proxy!r} gave non-finite scores for {len(bad)} site(s), e.g. {bad[0]}; try another proxy")
    first = np.array([c[1] for c in curves.values()])
    if len(first) > 1 and (np.all(first == 0) or np.ptp(first) == 0):
        raise ProxyError(f"proxy {proxy!r} is degenerate here: every site scores {first[0]:g} at rank 1")


@contextmanager
def _site_workers(n_sites: int) -> Iterator[Any]:
    """A pool of one worker per torch thread, each running single-threaded torch ops.

    torch's intra-op thread count is restored on exit. Results do not depend on the number
    of workers: every site is computed by one call, in full, on one thread.
    """
    import torch

    threads = torch.get_num_threads()
    workers = max(1, min(threads, n_sites))
    if workers == 1:
        yield _Serial()
        return
    torch.set_num_threads(1)
    try:
        # Each worker sets its own OpenMP/MKL thread count too: a new thread starts with the
        # process default, and LAPACK calls (svdvals) would otherwise open a team per worker.
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="heterosearch-curves",
                                initializer=torch.set_num_threads, initargs=(1,)) as pool:
            yield pool
    finally:
        torch.set_num_threads(threads)


class _Serial:
    """The pool interface, in the calling thread."""

    @staticmethod
    def map(fn: Any, items: Any) -> Iterator[Any]:
        return map(fn, items)


def score_candidates(
    model: Any,
    sites: Sequence[Any],
    batches: Sequence[dict[str, Any]],
    proxies: Sequence[str],
    r_max: int,
    scaling: Any,
    seed: int,
    keep_grads: dict[str, Any] | None = None,
    options: Any = None,
    groups: Sequence[Any] = (),
) -> Scores:
    """Run the shared passes and compute every proxy's curves; the model is not changed.

    ``scaling``: the LoRA scale rule (``space/scale.py``) or one number for every rank.
    ``keep_grads``, when given, receives the per-site G of each pass (``"data"``,
    ``"synflow"``), so the scorers of other adapter kinds reuse them without another pass
    (the streaming path never forms G: it fills ``"sigma"``, each site's top singular values,
    and ``"groups"``, the top singular values of each of ``groups``: ``group_sketch.MemberGroup``
    sums and stacks of several sites' G that banks need; the exact path ignores ``groups``, its
    ``"data"`` holds every G).
    ``options``: ``settings.ScoringOptions`` or a method name; None = ``auto``, which is the
    exact path unless G would exceed ``settings.AUTO_EXACT_BYTES``.
    """
    import torch

    from heterosearch.proxies.base import PROXIES, SiteState
    from heterosearch.proxies.settings import as_options
    from heterosearch.proxies.state import SCORING_STATE, data_gradients, synflow_gradients, virtual_adapter
    from heterosearch.space.scale import as_scale

    opts = as_options(options)
    if opts.resolve(sites) == "streaming":
        return _score_streaming(model, sites, batches, proxies, r_max, scaling, seed, opts, keep_grads, groups)

    scale = as_scale(scaling)
    # s(r) for r = 0..r_max, shape (r_max + 1,); rank 0 scores 0 whatever its factor.
    s_of_r = torch.tensor([1.0] + [scale.at(r) for r in range(1, r_max + 1)], dtype=torch.float64)

    kinds = {p: PROXIES.get(p)() for p in proxies}
    timings: dict[str, float] = {}
    grads: dict[str, dict[str, torch.Tensor]] = {}
    losses: list[float] = []
    if any(k.source == "data" for k in kinds.values()):
        t0 = time.perf_counter()
        grads["data"], losses = data_gradients(model, sites, batches, total=len(batches),
                                               micro_batch=opts.micro_batch, checkpointing=opts.checkpointing)
        timings["data_pass"] = time.perf_counter() - t0
    if any(k.source == "synflow" for k in kinds.values()):
        t0 = time.perf_counter()
        grads["synflow"] = synflow_gradients(model, sites)
        timings["synflow_pass"] = time.perf_counter() - t0

    if keep_grads is not None:
        keep_grads.update(grads)
    curves: dict[str, dict[str, list[float]]] = {}
    # The curves are many small, independent per-site problems (an SVD or two small matmuls
    # each): one single-threaded site per worker uses every core without OpenMP barriers
    # inside tiny kernels, which cost more than the kernels (and stall badly on a busy machine).
    with _site_workers(len(sites)) as pool:
        t0 = time.perf_counter()
        adapters = dict(zip((s.key for s in sites), pool.map(lambda s: virtual_adapter(s, r_max, seed), sites)))
        timings["virtual_adapters"] = time.perf_counter() - t0
        for name, proxy in kinds.items():
            t0 = time.perf_counter()
            G = grads[proxy.source]

            def curve(s: Any, proxy: Any = proxy, G: dict[str, torch.Tensor] = G) -> list[float]:
                A, B = adapters[s.key]
                c = proxy.curve(SiteState(G[s.key], A, B, 1.0))
                return (c.double() * s_of_r ** proxy.scale_degree).tolist()

            per_site = dict(zip((s.key for s in sites), pool.map(curve, sites)))
            check_scores(name, per_site)
            curves[name] = per_site
            timings[f"{name}_curves"] = time.perf_counter() - t0

    meta = _meta(SCORING_STATE, batches, losses, seed, scale, timings, kinds)
    meta["scoring"] = {"method": "exact", "micro_batch": opts.micro_batch, "checkpointing": opts.checkpointing}
    return Scores(sites=_site_rows(sites), r_max=r_max, curves=curves, meta=meta)


def _site_rows(sites: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"key": s.key, "name": s.name, "layer": s.layer, "role": s.role, "d_in": s.d_in, "d_out": s.d_out}
            for s in sites]


def _meta(state: str, batches: Sequence[Any], losses: list[float], seed: int, scale: Any, timings: dict[str, float],
          kinds: dict[str, Any]) -> dict[str, Any]:
    return {
        "scoring_state": state,
        "batches": len(batches),
        "examples": int(sum(len(b["input_ids"]) for b in batches)),
        "mean_loss": float(np.mean(losses)) if losses else None,
        "seed": seed,
        "scale": scale.to_dict(),
        "seconds": timings,
        "proxies": {n: {"summary": k.summary, "source": k.source} for n, k in kinds.items()},
    }


def _score_streaming(model: Any, sites: Sequence[Any], batches: Sequence[dict[str, Any]], proxies: Sequence[str],
                     r_max: int, scaling: Any, seed: int, opts: Any, keep: dict[str, Any] | None = None,
                     groups: Sequence[Any] = ()) -> Scores:
    """``score_candidates`` on the streaming path (settings.py): curves from per-site sketches."""
    import torch

    from heterosearch.proxies.base import PROXIES
    from heterosearch.proxies.streaming import STREAMING_STATE, streaming_states
    from heterosearch.space.scale import as_scale

    scale = as_scale(scaling)
    s_of_r = torch.tensor([1.0] + [scale.at(r) for r in range(1, r_max + 1)], dtype=torch.float64)
    kinds = {p: PROXIES.get(p)() for p in proxies}
    timings: dict[str, float] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    states, losses, info = streaming_states(model, sites, batches, {k.source for k in kinds.values()}, r_max,
                                            seed, opts, _site_workers, timings, keep, groups)
    with _site_workers(len(sites)) as pool:
        for name, proxy in kinds.items():
            t0 = time.perf_counter()
            by_key = states[proxy.source]

            def curve(s: Any, proxy: Any = proxy, by_key: dict[str, Any] = by_key) -> list[float]:
                return (proxy.curve(by_key[s.key]()).double() * s_of_r ** proxy.scale_degree).tolist()

            per_site = dict(zip((s.key for s in sites), pool.map(curve, sites)))
            check_scores(name, per_site)
            curves[name] = per_site
            timings[f"{name}_curves"] = time.perf_counter() - t0
    meta = _meta(STREAMING_STATE, batches, losses, seed, scale, timings, kinds)
    meta["scoring"] = info
    return Scores(sites=_site_rows(sites), r_max=r_max, curves=curves, meta=meta)
