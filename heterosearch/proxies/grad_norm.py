"""grad_norm (Abdelfattah et al. 2021; HeteroLoRA): ||dL/dA||_F + ||dL/dB||_F per site."""

from __future__ import annotations

import torch

from heterosearch.proxies.base import PROXIES, Proxy, SiteState, lora_grads, with_rank_zero


@PROXIES.register("grad_norm")
class GradNorm(Proxy):
    name = "grad_norm"
    summary = "||dL/dA|| + ||dL/dB|| of the site's adapter (per site, then summed)"

    def curve(self, state: SiteState) -> torch.Tensor:
        dA, dB = lora_grads(state)
        a = with_rank_zero((dA**2).sum(dim=1)).sqrt()  # rank component j = row j of dA
        b = with_rank_zero((dB**2).sum(dim=0)).sqrt()  # ... = column j of dB
        return a + b
