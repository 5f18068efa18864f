"""How the scoring pass runs: exact G per site, or streaming sketches (``ScoringOptions``).

- ``exact``: G = dL/dW0 per site in float64 (``state.py``). Memory: 8 bytes per adapted weight
  plus the float32 ``.grad`` autograd fills, i.e. a 7B model needs ~50-80 GB on top of itself.
  The test oracle, and bit-identical to earlier releases.
- ``streaming``: never forms G. Forward/backward hooks accumulate, per site, Y = G Omega
  (d_out x k), Z = Psi^T G (l x d_in) and a core Phi^T G Xi (s x s) in float32 from the per-token inputs x_t and output
  gradients delta_t (G = sum_t delta_t x_t^T); the top singular values come from Tropp et al.'s
  single-pass three-sketch method (``sketch.py``). The first r_max columns of Omega / Psi are the
  virtual adapter's A^T / B, so dL/dA and dL/dB (grad_norm, snip) are exact, not estimated.
  Memory O((d_in + d_out)(k + l) + s^2) per site. Banks' sums and stacks of members' G are
  sketched by the same hooks (``group_sketch.py``), with widths from the largest bank rank.
- ``auto``: streaming when the exact path's float64 G would exceed ``AUTO_EXACT_BYTES``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from heterosearch.errors import UserError

METHODS = ("exact", "streaming", "auto")
PRECISIONS = ("fp32", "bf16", "fp16")
# 1 GiB of float64 G (~134M adapted weights): MiniLM (10.6M) and models up to ~0.5B stay exact.
AUTO_EXACT_BYTES = 2**30


@dataclass(frozen=True)
class ScoringOptions:
    """``method``: exact | streaming | auto. ``micro_batch``: examples per forward/backward (the
    batch gradient is accumulated over micro-batches; None = whole batch). ``checkpointing``:
    gradient checkpointing of the model's layers during scoring (HF models that support it).
    ``precision``: the autocast of the streaming pass (the one the model trains in; the exact
    path always scores in the model's own dtype, as before). ``oversample``: p, so the sketch
    widths are k = r_max + p, l = r_max + 2p and the core s = 2 l."""

    method: str = "auto"
    micro_batch: int | None = None
    checkpointing: bool = False
    precision: str = "fp32"
    oversample: int = 16

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"--scoring must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.micro_batch is not None and not (isinstance(self.micro_batch, int) and self.micro_batch >= 1):
            raise UserError(f"--score-micro-batch must be an integer >= 1, got {self.micro_batch!r}")
        if self.precision not in PRECISIONS:
            raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not (isinstance(self.oversample, int) and 1 <= self.oversample <= 1024):
            raise UserError(f"sketch oversampling must be an integer in [1, 1024], got {self.oversample!r}")

    def resolve(self, sites: Sequence[Any]) -> str:
        """``exact`` or ``streaming`` for these sites."""
        if self.method != "auto":
            return self.method
        return "streaming" if exact_bytes(sites) > AUTO_EXACT_BYTES else "exact"


def exact_bytes(sites: Sequence[Any]) -> int:
    """Bytes of the exact path's float64 G over ``sites`` (without autograd's float32 .grad)."""
    return 8 * sum(s.d_in * s.d_out for s in sites)


def sketch_widths(r_max: int, oversample: int) -> tuple[int, int, int]:
    """(k, l, s): columns of Omega, of Psi and the core size; l > k and s = 2 l as Tropp et al.
    (2019, section 5.4) advise."""
    return r_max + oversample, r_max + 2 * oversample, 2 * (r_max + 2 * oversample)


def as_options(value: Any) -> ScoringOptions:
    """A ``ScoringOptions`` from itself, None (defaults) or a method name."""
    if value is None:
        return ScoringOptions()
    if isinstance(value, ScoringOptions):
        return value
    if isinstance(value, str):
        return ScoringOptions(method=value)
    raise UserError(f"scoring options must be a method name or ScoringOptions, got {type(value).__name__}")
