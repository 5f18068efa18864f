"""Proxy scores of every kind beyond the per-site curves, from the same scoring state.

Each kind scores itself (``adapters/<kind>/scoring.py``: ``score`` and its table ``UNDEFINED``);
this module only loops over the kinds of the space. Per-site LoRA's scores are the curves of
``proxies/scoring.py``. For the other shipped kinds, what is defined and why (README "Scores
across kinds"):

- shortcut: a LoRA-adapted shortcut adds s B A h at a point of the residual stream, which is a
  LoRA site with a zero base map. Its gradient G_s = dL/dS (d x d) at a virtual zero map is
  collected for all 4L-1 candidates by one extra forward/backward per scoring batch, and every
  *data* proxy (grad_norm, snip, spectral) is then computed exactly as for a LoRA site, with the
  same seeded virtual adapter. synflow is undefined (its data-free pass has no shortcut maps).
- bank and mos: one update shared by several sites. ``spectral`` is defined: the first-order
  gain of the best update the bank / pool can express (adapters/bank/scoring.py and
  adapters/mos/scoring.py say exactly how). grad_norm, snip and synflow of a shared tensor at
  init are not defined in a way comparable to per-site scores, so they are reported as
  undefined, never as zeros. Streaming scoring estimates both without forming G: pools from
  the members' sketched singular values, banks from sketches of the sums and stacks of their
  members' G taken in the same pass (``proxies/group_sketch.py``).

Normalisation across kinds: ``spectral`` values of every kind are first-order loss decreases
of a gradient-descent step (sum of squared singular values of a loss gradient), in the same
units, and the search divides every value by the best single option's value only to make
objectives readable. They are not what Adam training buys, though: that grows about linearly
with the gradient, the proxy quadratically, so kinds with large gradients by construction
(shortcuts on the residual stream, banks and pools with layer-summed gradients) are overrated
against per-site LoRA. A space's optional ``calibration:`` section rescales each kind's values
by a factor measured with a short training signal (``proxies/calibration.py``) before that
normalisation. grad_norm and snip of shortcuts use the same virtual-adapter convention and the
same s(r) as LoRA sites, so their units match too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def score_kinds(
    model: Any,
    sites: Sequence[Any],
    batches: Sequence[dict[str, Any]],
    space: Any,
    grads: dict[str, dict[str, torch.Tensor]],
    proxies: Sequence[str],
    seed: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    """(values, undefined): values[proxy][kind] holds what the kind's scoring returns (curves per
    shortcut candidate, option values per role for banks and pools); undefined[proxy][kind] the reason.

    Each kind's ``score`` gets the space's LoRA scale rule (``scale=``): every kind's terms use
    it at their own rank (``space.scale.kind_scaling``), so scores that depend on s use it too."""
    from heterosearch.adapters.kinds import ADAPTER_KINDS

    kinds = [ADAPTER_KINDS.get(name) for name in space.kinds]
    values: dict[str, dict[str, Any]] = {p: {} for p in proxies}
    undefined: dict[str, dict[str, str]] = {p: {} for p in proxies}
    for kind in kinds:
        table = kind.module("scoring").UNDEFINED
        for p in proxies:
            if p in table:
                undefined[p][kind.name] = table[p]
    for kind in kinds:
        scored = kind.module("scoring").score(model, sites, batches, space.kinds[kind.name], grads, proxies, seed,
                                              scale=space.lora.scaling)
        for p, v in scored.items():
            values[p][kind.name] = v
    return values, undefined


def score_space(model: Any, sites: Sequence[Any], batches: Sequence[dict[str, Any]], space: Any,
                proxies: Sequence[str], seed: int, options: Any = None) -> Any:
    """Every candidate of ``space``: per-site LoRA curves, then the other kinds from the same passes.

    The one scoring entry point of the ``score`` stage and of ``heterosearch.search`` (api.py).
    ``options``: ``proxies.settings.ScoringOptions`` (None = auto). The streaming path never
    forms G: MoS pools read only each member's singular values, which it estimates; banks read
    the singular values of sums and stacks of members' G, which a kind asks to have sketched in
    the same pass (its scoring module's optional ``sketch_groups(section, sites, proxies)``,
    ``group_sketch.py``); shortcuts sketch each candidate's d x d G in their own pass
    (``adapters/shortcut/scoring.py``).
    """
    from heterosearch.adapters.kinds import ADAPTER_KINDS
    from heterosearch.proxies.scoring import score_candidates
    from heterosearch.proxies.settings import as_options

    opts = as_options(options)
    groups: list[Any] = []
    if opts.resolve(sites) == "streaming":
        for name, section in space.kinds.items():
            sketch_groups = getattr(ADAPTER_KINDS.get(name).module("scoring"), "sketch_groups", None)
            if sketch_groups is not None:
                groups += sketch_groups(section, sites, proxies)
    grads: dict[str, Any] = {}
    scores = score_candidates(model, sites, batches, proxies, max(space.lora.ranks), space.lora.scaling, seed,
                              keep_grads=grads, options=opts, groups=groups)
    if "data" not in grads:  # streamed: kinds that run their own pass (shortcuts) sketch with the same oversampling
        grads["oversample"] = opts.oversample
    if set(space.kinds) - {"lora"}:
        scores.kinds, scores.undefined = score_kinds(model, sites, batches, space, grads, proxies, seed)
    return scores
