"""SNIP (Lee et al. 2019): sum |A * dL/dA| + sum |B * dL/dB|.

With B = 0 this is identically 0 (methods.md, "The B = 0 fact"); the scoring state's
non-zero virtual B makes it informative.
"""

from __future__ import annotations

import torch

from heterosearch.proxies.base import PROXIES, Proxy, SiteState, lora_grads, with_rank_zero


def saliency_curve(state: SiteState) -> torch.Tensor:
    dA, dB = lora_grads(state)
    a = (state.A * dA).abs().sum(dim=1)
    b = (state.B * dB).abs().sum(dim=0)
    return with_rank_zero(a + b)


@PROXIES.register("snip")
class Snip(Proxy):
    name = "snip"
    summary = "sum |A * dL/dA| + |B * dL/dB| in the scoring state (non-zero virtual B)"

    def curve(self, state: SiteState) -> torch.Tensor:
        return saliency_curve(state)
