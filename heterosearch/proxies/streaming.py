"""The streaming scoring passes: per-site sketches from hooks, no parameter gradient formed.

The model runs as a *frozen* model: no parameter requires grad; the input embeddings' output
does, so the backward pass reaches every site's output (as in LoRA training of a frozen base).
Per site, a forward hook keeps a reference to the input x (the tensor itself, no copy) and
puts a tensor hook on the output; when the output gradient delta arrives, ``SiteSketch.add``
folds (x, delta) into Y and Z and both are released. So the memory on top of a frozen
forward+backward is the sites' inputs that autograd would not have kept (a frozen linear does
not save its input) plus O((d_in + d_out)(k + l) + s^2) per site. The same hook also feeds
the sketches of sums and stacks of several sites' G that banks need (``group_sketch.py``), about
one more per-site sketch per bank member, structure and membership.

Gradient checkpointing (HF ``supports_gradient_checkpointing``) uses reentrant checkpoints: the
first forward of a layer runs without grad, so the hooks do nothing; the recompute in backward
runs with grad and feeds them once. HF only checkpoints layers in training mode, so the
checkpointed layer modules themselves are put in training mode while every submodule (dropout,
attention) stays in eval mode; the scores do not change (tests/test_streaming.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from heterosearch.errors import UserError
from heterosearch.models.sites import Site
from heterosearch.progress import track
from heterosearch.proxies.group_sketch import GroupMaps, GroupSketch, MemberGroup
from heterosearch.proxies.passes import checkpointed, frozen, micro_batches
from heterosearch.proxies.sketch import SiteSketch, SiteSynflow, TestMaps


def _first_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    if args:
        return args[0]
    for name in ("input", "x", "hidden_states"):
        if name in kwargs:
            return kwargs[name]
    raise ValueError(f"cannot find the input among the keyword arguments {sorted(kwargs)}")


def _hook_sites(model: nn.Module, sites: Sequence[Site], add: Callable[[Site, torch.Tensor, torch.Tensor], None]) -> list[Any]:
    """Forward hooks that call ``add(site, x, delta)`` once the output gradient of the site arrives."""

    def on_forward(site: Site, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        if not (torch.is_grad_enabled() and torch.is_tensor(output) and output.requires_grad):
            return  # e.g. the no-grad first forward of a checkpointed layer
        # The hook stays attached to the graph node until the whole graph is freed, so it holds x
        # in a cell it empties when it runs: x is released as soon as the site is sketched.
        cell = [_first_input(args, kwargs).detach()]

        def on_grad(delta: torch.Tensor) -> None:
            add(site, cell.pop(), delta.detach())

        output.register_hook(on_grad)

    return [model.get_submodule(s.name).register_forward_hook(functools.partial(on_forward, s), with_kwargs=True)
            for s in sites]


def sketch_pass(
    model: nn.Module, sites: Sequence[Site], batches: Sequence[dict[str, torch.Tensor]], r_max: int,
    widths: tuple[int, int, int], seed: int, options: Any, groups: Sequence[GroupSketch] = (),
) -> tuple[dict[str, SiteSketch], list[float]]:
    """Per-site sketches of G summed over ``batches``, and each batch's loss; the model is not changed.

    ``groups``: sketches of sums / stacks of member sites' G (``group_sketch.py``), filled in place
    by the same hooks: each member's (x, delta) is added to its site's sketch and to every group
    it belongs to before both are released.
    """
    from heterosearch.train.device import autocast

    maps = TestMaps(r_max, widths, seed)
    sketches = {s.key: SiteSketch.zeros(s, maps) for s in sites}
    member_of: dict[str, list[tuple[GroupSketch, int]]] = {}
    for g in groups:
        for i, key in enumerate(g.group.keys):
            member_of.setdefault(key, []).append((g, i))

    def add(site: Site, x: torch.Tensor, delta: torch.Tensor) -> None:
        sketches[site.key].add(x, delta)
        for g, i in member_of.get(site.key, ()):
            g.add(i, x, delta)

    losses: list[float] = []
    device = next(model.parameters()).device
    handles = _hook_sites(model, sites, add)
    try:
        with frozen(model), checkpointed(model, options.checkpointing):
            for batch in track(batches, "scoring: sketches", total=len(batches)):
                total = 0.0
                for part, weight in micro_batches(batch, options.micro_batch):
                    with autocast(device, options.precision):
                        loss = model(**part).loss
                    if loss is None:
                        raise UserError("scoring needs batches with labels (the model returned no loss)")
                    (loss.float() * weight).backward()
                    total += float(loss.detach()) * weight
                losses.append(total)
    finally:
        for h in handles:
            h.remove()
    return sketches, losses


def synflow_pass(model: nn.Module, sites: Sequence[Site], r_max: int, seed: int, seq_len: int = 16) -> dict[str, SiteSynflow]:
    """synflow's |B|^T|G| and |G||A|^T per site on the float64 |W| twin (``state._abs_float64_twin``).

    As ``state.synflow_gradients`` (R = sum of logits, all-ones input embeddings) but without
    any parameter gradient: only one site's G of this 16-token pass exists at a time.
    """
    from heterosearch.proxies.state import _abs_float64_twin

    twin = _abs_float64_twin(model)
    out = {s.key: SiteSynflow.zeros(s, r_max, seed) for s in sites}
    for p in twin.parameters():
        p.requires_grad_(False)
    handles = _hook_sites(twin, sites, lambda site, x, delta: out[site.key].add(x, delta))
    try:
        embed_dim = twin.get_input_embeddings().embedding_dim
        ones = torch.ones(1, seq_len, embed_dim, dtype=torch.float64, requires_grad=True)
        mask = torch.ones(1, seq_len, dtype=torch.long)
        twin(inputs_embeds=ones, attention_mask=mask).logits.sum().backward()
    finally:
        for h in handles:
            h.remove()
    del twin
    return out


STREAMING_STATE = (
    "frozen base model (eval mode, no dropout), no parameter gradient formed; per site float32 sketches "
    "Y = G [A^T | Gaussian] and Z = [B | Gaussian]^T G of G = dL/dW0 accumulated from per-token inputs and output "
    "gradients; dL/dA = s B^T G and dL/dB = s G A^T exact from them (same seeded virtual adapter as the exact path); "
    "and a core sketch Phi^T G Xi; top singular values of G from the three sketches (Tropp et al. 2019); synflow from |G| of its one pass, "
    "formed one site at a time"
)


def streaming_states(
    model: nn.Module, sites: Sequence[Site], batches: Sequence[dict[str, torch.Tensor]], sources: set[str],
    r_max: int, seed: int, options: Any, workers: Any, timings: dict[str, float], keep: dict[str, Any] | None = None,
    groups: Sequence[MemberGroup] = (),
) -> tuple[dict[str, dict[str, Any]], list[float], dict[str, Any]]:
    """({source: {site key: state()}}, batch losses, meta) for the streaming path.

    A state is a callable that builds the site's ``SiteState`` when a proxy asks for it: the
    virtual adapter and the float64 copies of B^T G and G A^T exist for one site at a time,
    so what stays in memory between proxies is the float32 sketches and k singular values per
    site. ``workers(n)`` (``scoring._site_workers``) gives the pool for the per-site
    reconstructions (one QR, two least squares and an SVD of k x l each), opened after the
    pass, which keeps every torch thread; each core sketch is dropped once its values exist.
    ``keep``, when given, receives ``{"sigma": {site key: singular value estimates}}`` (what
    MoS pools read instead of G, ``adapters/mos/scoring.py``) and, for ``groups`` (sums and stacks
    of members' G that banks need, ``group_sketch.py``; sketched in the same pass, at widths
    ``sketch_widths(max group rank, oversample)``), ``{"groups": {group: singular value estimates}}``.
    """
    import time

    from heterosearch.proxies.base import SiteState
    from heterosearch.proxies.settings import sketch_widths
    from heterosearch.proxies.state import virtual_adapter

    widths = sketch_widths(r_max, options.oversample)
    group_widths = sketch_widths(max((g.rank for g in groups), default=1), options.oversample)
    groups = groups if keep is not None and "data" in sources else ()  # nowhere to put their values otherwise
    states: dict[str, dict[str, Any]] = {}
    losses: list[float] = []
    if "data" in sources:
        t0 = time.perf_counter()
        group_maps = GroupMaps(group_widths, seed)
        by_key = {s.key: s for s in sites}
        group_sketches = [GroupSketch.zeros(g, [by_key[k] for k in g.keys], group_maps) for g in groups]
        sketches, losses = sketch_pass(model, sites, batches, r_max, widths, seed, options, group_sketches)
        timings["data_pass"] = time.perf_counter() - t0

        def data_state(s: Site) -> Callable[[], Any]:
            sk = sketches.pop(s.key)
            sigma = sk.singular_values()
            if keep is not None:
                keep.setdefault("sigma", {})[s.key] = sigma
            sk.S = sk.S.new_zeros(0, 0)  # the core is only needed for sigma

            def state() -> Any:
                BtG, GAt = sk.lora_grads()  # noqa: N806
                return SiteState(None, *virtual_adapter(s, r_max, seed), 1.0, BtG=BtG, GAt=GAt, sigma=sigma)

            return state

        t0 = time.perf_counter()
        maps = next(iter(sketches.values())).maps if sketches else None
        with workers(len(sites)) as pool:
            states["data"] = dict(zip((s.key for s in sites), pool.map(data_state, sites)))
            if keep is not None and group_sketches:
                keep["groups"] = dict(zip(groups, pool.map(GroupSketch.singular_values, group_sketches)))
        del group_sketches
        group_maps.release()
        if maps is not None:
            maps.release()  # the states read only Y[:, :r_max] and Z[:r_max] from here on
        timings["sketch_reconstruction"] = time.perf_counter() - t0
    if "synflow" in sources:
        t0 = time.perf_counter()
        syn = synflow_pass(model, sites, r_max, seed)

        def synflow_state(s: Site, st: SiteSynflow) -> Callable[[], Any]:
            return lambda: SiteState(None, *virtual_adapter(s, r_max, seed), 1.0, BtG=st.dA, GAt=st.dB)

        states["synflow"] = {s.key: synflow_state(s, syn.pop(s.key)) for s in sites}
        timings["synflow_pass"] = time.perf_counter() - t0
    k, l, core = widths  # noqa: E741
    meta = {"method": "streaming", "sketch_k": k, "sketch_l": l, "sketch_core": core, "micro_batch": options.micro_batch,
            "checkpointing": options.checkpointing, "precision": options.precision}
    if groups:
        gk, gl, gcore = group_widths
        meta["groups"] = {"count": len(groups), "sketch_k": gk, "sketch_l": gl, "sketch_core": gcore}
    return states, losses, meta
