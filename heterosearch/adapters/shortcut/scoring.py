"""Gradients of virtual zero shortcuts, for the proxies: one forward + backward per batch.

A candidate connection adds ``S src`` at its add point (``S = s B A``, zero at init). The
gradient of the loss with respect to S at S = 0 is ``G = sum_tokens g src^T`` (d x d), with g
the gradient at the add point, so one pass scores every candidate: the sources are captured
with pre-hooks, and a zero leaf tensor added at each add point yields g. Padded tokens
(``attention_mask == 0``) are excluded from the sum. Then dL/dB = s G A^T and dL/dA = s B^T G
for any (A, B); at B = 0 the proxies are gradient-only (there is no W to multiply).

The model is left bit-identical: parameters, requires_grad flags, ``.grad`` (gradients are
taken with ``torch.autograd.grad`` on the zero leaves only) and train/eval mode.

Streaming scoring (``proxies/settings.py``) never forms the d x d G: the same (g, src) pairs
feed one ``SiteSketch`` per candidate instead (``proxies/sketch.py``: Y = G [A^T | Gaussian],
Z = [B | Gaussian]^T G and the core, with the candidate's own virtual adapter A, B), so a
candidate costs (d k + l d + s^2) floats instead of d^2 float64, and the proxies read the exact
B^T G and G A^T and the estimated top singular values from it, as for a LoRA site.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from heterosearch.adapters.shortcut.blocks import find_blocks
from heterosearch.adapters.shortcut.config import WIRING, ShortcutElement, candidate_key, candidates, hidden_size
from heterosearch.adapters.shortcut.layer import first_input, replace_first_input

UNDEFINED = {"synflow": "synflow's data-free pass has no shortcut maps to differentiate"}

SCORING_STATE = (
    "virtual zero shortcut S = 0 at every candidate; G = dL/dS = sum over non-padded tokens of g src^T, "
    "summed over the scoring batches (eval mode, no dropout)"
)


def _slots(items: Iterable[ShortcutElement | tuple[int, str]], n_layers: int) -> list[tuple[int, str]]:
    slots = []
    for item in items:
        e = item if isinstance(item, ShortcutElement) else ShortcutElement(int(item[0]), str(item[1]), 1)
        if e.layer >= n_layers:
            raise ValueError(f"{e.key}: the model has {n_layers} layers")
        slots.append(e.slot)
    return list(dict.fromkeys(slots))


def shortcut_gradients(
    model: nn.Module,
    sites: Sequence[Any],
    elements_or_candidates: Iterable[ShortcutElement | tuple[int, str]],
    batches: Iterable[dict[str, torch.Tensor]],
    maps: Any = None,
) -> dict[str, Any]:
    """G (d x d, float64) per candidate key (``"L3.residual_1"``), summed over ``batches``; with
    ``maps`` (``proxies.sketch.TestMaps``) a ``SiteSketch`` of that G per candidate key instead.

    Each batch is passed as ``model(**batch)`` and must make the model return ``.loss``.
    """
    plan, blocks = find_blocks(model, sites)
    d = hidden_size(sites)
    slots = _slots(elements_or_candidates, len(blocks))
    wiring = {(layer, c): (WIRING[c][0], layer + WIRING[c][1], WIRING[c][2]) for layer, c in slots}
    sources = {(src, i) for src, i, _ in wiring.values()}
    points = {(point, layer) for (layer, _), (_, _, point) in wiring.items()}
    if maps is None:
        grads: dict[str, Any] = {candidate_key(layer, c): torch.zeros(d, d, dtype=torch.float64) for layer, c in slots}
    else:
        from heterosearch.proxies.sketch import SiteSketch

        grads = {candidate_key(layer, c): SiteSketch.zeros(_virtual_site(candidate_key(layer, c), d), maps)
                 for layer, c in slots}

    captured: dict[tuple[str, int], torch.Tensor] = {}
    zeros: dict[tuple[str, int], torch.Tensor] = {}

    def capture(key: tuple[str, int], module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        captured[key] = first_input(args, kwargs).detach()

    def add_zero(key: tuple[str, int], t: torch.Tensor) -> torch.Tensor:
        z = torch.zeros_like(t, requires_grad=True)
        zeros[key] = z
        return t + z

    def add_input(key: tuple[str, int], module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return replace_first_input(args, kwargs, add_zero(key, first_input(args, kwargs)))

    def add_output(key: tuple[str, int], module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> Any:
        return add_zero(key, output)

    handles = []
    for layer, prefix in enumerate(blocks):
        if ("x", layer) in sources:
            block = model.get_submodule(prefix)
            handles.append(block.register_forward_pre_hook(functools.partial(capture, ("x", layer)), with_kwargs=True))
        if ("h", layer) in sources:
            module = model.get_submodule(f"{prefix}.{plan.h_source}")
            handles.append(module.register_forward_pre_hook(functools.partial(capture, ("h", layer)), with_kwargs=True))
        for point, rel in (("attn", plan.attn_add), ("ffn", plan.ffn_add)):
            if (point, layer) not in points:
                continue
            module = model.get_submodule(f"{prefix}.{rel}")
            if plan.mode == "input":
                hook = functools.partial(add_input, (point, layer))
                handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(functools.partial(add_output, (point, layer))))

    modes = [(m, m.training) for m in model.modules()]  # restore each submodule's own mode
    model.eval()
    try:
        for batch in batches:
            captured.clear()
            zeros.clear()
            with torch.enable_grad():
                loss = model(**batch).loss
                if loss is None:
                    raise ValueError("shortcut_gradients needs batches with labels (the model returned no loss)")
                keys = sorted(zeros)
                gs = torch.autograd.grad(loss, [zeros[k] for k in keys], allow_unused=True)
            g_at = {k: (torch.zeros_like(zeros[k]) if g is None else g) for k, g in zip(keys, gs)}
            mask = batch.get("attention_mask")
            keep = None if mask is None else mask.reshape(-1).bool()
            for (layer, c), (src, i, point) in wiring.items():
                g = g_at[(point, layer)].reshape(-1, d)
                h = captured[(src, i)].reshape(-1, d)
                if keep is not None:
                    if keep.numel() != g.shape[0]:
                        raise ValueError(f"attention_mask has {keep.numel()} tokens, the hidden states {g.shape[0]}")
                    g, h = g[keep], h[keep]
                if maps is None:
                    grads[candidate_key(layer, c)] += g.double().t() @ h.double()
                else:  # G = sum_t g_t src_t^T: src is the input side, g the output gradient
                    grads[candidate_key(layer, c)].add(h, g)
    finally:
        for handle in handles:
            handle.remove()
        captured.clear()
        zeros.clear()
        for m, flag in modes:
            m.train(flag)
    return grads


def _virtual_site(key: str, d: int) -> Any:
    """What ``virtual_adapter`` and ``SiteSketch`` read of a site: a shortcut is a (d, d) map."""
    return type("V", (), {"key": key, "d_in": d, "d_out": d})()


def score(model: nn.Module, sites: Sequence[Any], batches: Sequence[dict[str, torch.Tensor]], section: Any,
          grads: Any, proxies: Sequence[str], seed: int, scale: Any = None) -> dict[str, Any]:
    """{proxy: {candidate key: curve}}: every data proxy on G_s, as for a LoRA site (proxies/kinds.py says why).

    The curve of a candidate is the proxy's per-site curve with the same seeded virtual adapter
    (rank max(ranks)) a LoRA site of shape (d, d) would get, at s(r) of the run's scale rule
    ``scale`` (as ``proxies.scoring.score_candidates`` does for LoRA sites: the curve at s = 1
    times s(r) ** the proxy's ``scale_degree``, the terms' own scale, ``layer.py``); None: s = 2.
    The LoRA pass ran streamed when ``grads`` has no ``"data"``: then each candidate is
    sketched too (``grads["oversample"]``, the run's oversampling), never forming its G.
    """
    from heterosearch.adapters.shortcut.layer import SCALING
    from heterosearch.proxies import PROXIES
    from heterosearch.proxies.base import SiteState
    from heterosearch.proxies.state import virtual_adapter
    from heterosearch.space.scale import kind_scaling

    if all(p in UNDEFINED for p in proxies):
        return {}  # no pass (and no d x d gradients) for proxies that cannot score shortcuts
    n_layers = max(s.layer for s in sites) + 1
    cands = [(layer, c) for layer, c in candidates(n_layers) if c in section.types]  # as options.groups
    d = hidden_size(sites)
    r_max = max(section.ranks)
    streaming = "data" not in grads
    maps = None
    if streaming:
        from heterosearch.proxies.settings import ScoringOptions, sketch_widths
        from heterosearch.proxies.sketch import TestMaps

        maps = TestMaps(r_max, sketch_widths(r_max, grads.get("oversample", ScoringOptions().oversample)), seed)
    G = shortcut_gradients(model, sites, cands, batches, maps)  # noqa: N806
    # s(r) for r = 0..r_max; rank 0 scores 0 whatever its factor.
    s_of_r = torch.tensor([1.0] + [kind_scaling(scale, r, SCALING) for r in range(1, r_max + 1)], dtype=torch.float64)
    out: dict[str, Any] = {}
    sigmas: dict[str, torch.Tensor] = {}  # streaming: each candidate's singular values, estimated once
    for p in proxies:
        if p in UNDEFINED:
            continue
        proxy = PROXIES.get(p)()
        curves = {}
        for key, g in G.items():
            A, B = virtual_adapter(_virtual_site(key, d), r_max, seed)  # noqa: N806
            if streaming:
                if key not in sigmas:  # setdefault would evaluate the reconstruction for every proxy
                    sigmas[key] = g.singular_values()
                BtG, GAt = g.lora_grads()  # noqa: N806
                state = SiteState(None, A, B, 1.0, BtG=BtG, GAt=GAt, sigma=sigmas[key])
            else:
                state = SiteState(g, A, B, 1.0)
            curve = proxy.curve(state).double() * s_of_r ** proxy.scale_degree
            curves[key] = [float(v) for v in curve]
        out[p] = curves
    return out
