"""synflow (Tanaka et al. 2020), data-free.

The synflow pass (``state.synflow_gradients``) runs a float64 copy of the model with every
weight replaced by |W| on an all-ones input embedding and takes R = sum of the logits; G
here is dR/dW0. The virtual adapter is likewise taken in absolute value. Scores grow
multiplicatively with depth, so expect them to span orders of magnitude.
"""

from __future__ import annotations

import torch

from heterosearch.proxies.base import PROXIES, Proxy, SiteState
from heterosearch.proxies.snip import saliency_curve


@PROXIES.register("synflow")
class Synflow(Proxy):
    name = "synflow"
    source = "synflow"
    summary = "data-free: sum |A * dR/dA| + |B * dR/dB| on |W|, all-ones input, float64"

    def curve(self, state: SiteState) -> torch.Tensor:
        if state.G is None:  # streaming: BtG / GAt already hold |B|^T |G| and |G| |A|^T (sketch.SiteSynflow)
            return saliency_curve(SiteState(None, state.A.abs(), state.B.abs(), state.scaling, state.BtG, state.GAt))
        return saliency_curve(SiteState(state.G.abs(), state.A.abs(), state.B.abs(), state.scaling))
