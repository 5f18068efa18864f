"""The scoring state: one shared pass collects G = dL/dW0 for every site at once.

Why this state: at LoRA's standard init (B = 0) every init-time score of a site is a
function of that site's frozen-weight gradient G (methods.md, "The B = 0 fact"), so one
forward/backward of the base model per batch scores all candidates, with no adapter
instantiated. SNIP and synflow are exactly 0 at B = 0; to make them informative we pair
each site with a *scoring-only virtual adapter*: A ~ U(+-1/sqrt(d_in)) (PEFT's Kaiming
init) and B ~ U(+-1/sqrt(d_out)) (non-zero), and take the exact LoRA gradients of the
linearised model at that point, dL/dA = s B^T G and dL/dB = s G A^T. The virtual adapter is
never added to the model, which is left bit-identical (weights, requires_grad, .grad).
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from heterosearch.models.sites import Site
from heterosearch.progress import track

SCORING_STATE = (
    "base-model gradients G = dL/dW0 summed over the scoring batches (eval mode, no dropout); "
    "scoring-only virtual adapter A ~ U(+-1/sqrt(d_in)), B ~ U(+-1/sqrt(d_out)) seeded per site; "
    "adapter gradients of the linearised model dL/dA = s B^T G, dL/dB = s G A^T"
)


def _weight(model: nn.Module, site: Site) -> nn.Parameter:
    return model.get_submodule(site.name).weight  # type: ignore[return-value]


def _as_out_in(grad: torch.Tensor, site: Site) -> torch.Tensor:
    # GPT-2's Conv1D stores W as (d_in, d_out); everything downstream uses (d_out, d_in).
    return grad.t() if site.conv1d else grad


class _OnlySiteGrads:
    """Context: gradients flow only to the site weights; flags, .grad and mode restored after."""

    def __init__(self, model: nn.Module, sites: Sequence[Site]) -> None:
        self.model = model
        self.weights = [_weight(model, s) for s in sites]

    def __enter__(self) -> _OnlySiteGrads:
        self.flags = [(p, p.requires_grad, p.grad) for p in self.model.parameters()]
        self.modes = [(m, m.training) for m in self.model.modules()]  # per module: modes may be mixed
        for p in self.model.parameters():
            p.requires_grad_(False)
            p.grad = None
        for w in self.weights:
            w.requires_grad_(True)
        self.model.eval()
        return self

    def __exit__(self, *exc: object) -> None:
        for p, flag, grad in self.flags:
            p.requires_grad_(flag)
            p.grad = grad
        for module, training in self.modes:
            module.training = training


def data_gradients(
    model: nn.Module, sites: Sequence[Site], batches: Iterable[dict[str, torch.Tensor]], total: int | None = None,
    micro_batch: int | None = None, checkpointing: bool = False,
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """G per site (float64, (d_out, d_in)) summed over batches, and the loss of each batch.

    ``micro_batch`` / ``checkpointing``: as ``streaming.sketch_pass`` (gradient accumulation over
    micro-batches; reentrant checkpoints, which need the embeddings' output to require grad).
    """
    from heterosearch.proxies.passes import checkpointed, input_grads, micro_batches

    grads = {s.key: torch.zeros(s.d_out, s.d_in, dtype=torch.float64) for s in sites}
    losses: list[float] = []
    with _OnlySiteGrads(model, sites) as ctx, checkpointed(model, checkpointing), input_grads(model, checkpointing):
        for batch in track(batches, "scoring: gradients", total=total):
            batch_loss = 0.0
            for part, weight in micro_batches(batch, micro_batch):
                loss = model(**part).loss
                (loss * weight if weight != 1.0 else loss).backward()
                batch_loss += float(loss.detach()) * weight
            losses.append(batch_loss)
            for site, w in zip(sites, ctx.weights):
                # In-place float64 accumulation of the float32 gradient (exact cast, no temporary copy).
                grads[site.key].add_(_as_out_in(w.grad, site))  # type: ignore[arg-type]
                w.grad = None
    return grads, losses


def synflow_gradients(model: nn.Module, sites: Sequence[Site], seq_len: int = 16) -> dict[str, torch.Tensor]:
    """dR/dW0 per site on a float64 |W| copy of the model, all-ones input embeddings, R = sum(logits).

    A copy is needed because every weight is replaced by its absolute value; the caller's
    model is not touched. Dropout is off (eval mode).
    """
    twin = _abs_float64_twin(model)
    embed_dim = twin.get_input_embeddings().embedding_dim
    ones = torch.ones(1, seq_len, embed_dim, dtype=torch.float64)
    mask = torch.ones(1, seq_len, dtype=torch.long)
    with _OnlySiteGrads(twin, sites) as ctx:
        logits = twin(inputs_embeds=ones, attention_mask=mask).logits
        logits.sum().backward()
        # The twin is dropped below, so its gradient tensors are handed out as they are (no copy).
        out = {s.key: _as_out_in(w.grad, s).detach() for s, w in zip(sites, ctx.weights)}  # type: ignore[arg-type]
    del twin
    return out


def _abs_float64_twin(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` with |W| for every parameter, built in one step.

    Each parameter is copied once, straight to float64 and absolute value (no float32 copy
    first). The input-embedding table is left out (an empty table) when nothing else uses
    it, because the synflow pass feeds ``inputs_embeds`` and never reads it; on small
    encoders that table is about half of all weights.
    """
    memo: dict[int, object] = {}
    with torch.no_grad():
        for p in model.parameters():
            memo[id(p)] = nn.Parameter(p.detach().to(torch.float64, copy=True).abs_(), requires_grad=p.requires_grad)
        embeddings = model.get_input_embeddings()
        table = getattr(embeddings, "weight", None)
        uses = sum(q is table for _, q in model.named_parameters(remove_duplicate=False))
        if isinstance(embeddings, nn.Embedding) and table is not None and uses == 1:
            memo[id(table)] = nn.Parameter(table.new_empty(0, table.shape[1], dtype=torch.float64), requires_grad=False)
    twin = copy.deepcopy(model, memo)
    return twin.double().eval()  # floating buffers; the parameters are float64 already


def virtual_adapter(site: Site, r_max: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The scoring-only (A, B) of one site, seeded by (seed, site key) so order does not matter."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(site.key.encode())) % (2**63))
    A = (torch.rand(r_max, site.d_in, generator=g, dtype=torch.float64) * 2 - 1) / site.d_in**0.5
    B = (torch.rand(site.d_out, r_max, generator=g, dtype=torch.float64) * 2 - 1) / site.d_out**0.5
    return A, B
