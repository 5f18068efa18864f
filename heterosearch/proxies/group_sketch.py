"""Linear sketches of a sum or a stack of several sites' G = dL/dW0, for updates shared across sites (banks).

A bank's ``spectral`` value (``adapters/bank/scoring.py``) needs the top singular values of one
of three matrices built from its members' gradients G_1..G_L (each d_out x d_in, one width):

- ``sum``  H = sum_i G_i                     (d_out x d_in)     share_ab, tl5, tl6;
- ``rows`` H = [G_1; G_2; ...; G_L]          (L d_out x d_in)   share_a: H^T H = sum_i G_i^T G_i;
- ``cols`` H = [G_1, G_2, ..., G_L]          (d_out x L d_in)   share_b: H H^T = sum_i G_i G_i^T.

H is linear in the members' per-token terms delta_t x_t^T, so the three sketches of Tropp et
al. (2019, SISC, section 2.5; ``sketch.core_singular_values``) of H,

    Y = H Omega (m x k),   Z = Psi^T H (l x n),   S = Phi^T H Xi (s x s),

are accumulated by the same hooks as the per-site sketches (``streaming.sketch_pass``), from
member i's x (T x d_in) and delta (T x d_out), with test matrices chosen so that H is what is
sketched:

- sum: one Omega (d_in x k), Psi (d_out x l), Phi (d_out x s), Xi (d_in x s) for all members,
  so Y += delta^T (x Omega) sums G_i Omega over i; likewise Z and S.
- rows: H's column side (d_in) is shared, so Omega and Xi are shared; its row side is the
  stack, so Psi = [Psi_1; ...; Psi_L] (L d_out x l) and Phi = [Phi_1; ...] are independent per
  member: Y's row block i (d_out x k) += delta^T (x Omega), Z += (delta Psi_i)^T x,
  S += (delta Phi_i)^T (x Xi).
- cols: the transpose: Psi, Phi shared; Omega_i, Xi_i per member; Y += delta^T (x Omega_i),
  Z's column block i (l x d_in) += (delta Psi)^T x, S += (delta Phi)^T (x Xi_i).

The per-site test matrices cannot be reused: their Omega = [A^T | Gaussian] starts with each
site's own virtual adapter A, which differs between members, and has only p Gaussian columns.
So groups get purely Gaussian matrices of their own (``GroupMaps``), wide enough for the
largest bank rank r: (k, l, s) = ``settings.sketch_widths(r, p)``.

Memory per group (float32): sum O((d_in + d_out)(k + l) + s^2), as one site; rows
L d_out k + l d_in + s^2 (the stacked Y cannot be summed: Y^T Y = sum_i Y_i^T Y_i is
quadratic in G_i, so each member's block is kept until the pass ends), cols d_out k + L l d_in
+ s^2; i.e. O((d_in + d_out)(k + l)) per member, about one per-site sketch. The per-member test
matrices (rows: L d_out (l + s), cols: L d_in (k + s)) are drawn once per pass per width and
member position and shared by every group of that width, as ``sketch.TestMaps`` shares its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from heterosearch.models.sites import Site
from heterosearch.proxies.sketch import _generator, core_singular_values

STRUCTURES = ("sum", "rows", "cols")


@dataclass(frozen=True)
class MemberGroup:
    """What to sketch: ``structure`` (one of STRUCTURES) of the G of sites ``keys`` (in that order),
    resolving its top ``rank`` singular values."""

    keys: tuple[str, ...]
    structure: str
    rank: int

    def __post_init__(self) -> None:
        if self.structure not in STRUCTURES:
            raise ValueError(f"MemberGroup.structure must be one of {', '.join(STRUCTURES)}; got {self.structure!r}")


class GroupMaps:
    """Gaussian test matrices of the groups of one pass, float32: Omega (d, k), Psi (d, l), Phi and Xi (d, s).

    ``member`` None gives the matrix shared by all members of a width; ``member`` i an independent
    one for the i-th member of a stack (the same for every group of that width: independence is
    needed within a group only). Drawn once, on first use.
    """

    def __init__(self, widths: tuple[int, int, int], seed: int) -> None:
        self.k, self.l, self.s = widths
        self.seed = seed
        self._cache: dict[tuple[str, int, int | None], torch.Tensor] = {}

    def gaussian(self, salt: str, d: int, member: int | None = None) -> torch.Tensor:
        key = (salt, d, member)
        if key not in self._cache:
            cols = {"omega": self.k, "psi": self.l, "phi": self.s, "xi": self.s}[salt]
            self._cache[key] = torch.randn(d, cols, generator=_generator(self.seed, f"group:{salt}:{d}:{member}"))
        return self._cache[key]

    def release(self) -> None:
        self._cache.clear()


@dataclass
class GroupSketch:
    """Y (m, k), Z (l, n) and the core S (s, s) of one group's H, float32 (module docstring)."""

    group: MemberGroup
    d_in: int
    d_out: int
    maps: GroupMaps
    Y: torch.Tensor
    Z: torch.Tensor
    S: torch.Tensor

    @classmethod
    def zeros(cls, group: MemberGroup, members: Sequence[Site], maps: GroupMaps) -> GroupSketch:
        shapes = {(s.d_in, s.d_out) for s in members}
        if len(shapes) != 1 or [s.key for s in members] != list(group.keys):
            raise ValueError(f"a group needs its member sites in order and of one width; got {sorted(shapes)}")
        (d_in, d_out), n = shapes.pop(), len(members)
        m = n * d_out if group.structure == "rows" else d_out
        cols = n * d_in if group.structure == "cols" else d_in
        return cls(group, d_in, d_out, maps, torch.zeros(m, maps.k), torch.zeros(maps.l, cols),
                   torch.zeros(maps.s, maps.s))

    def add(self, i: int, x: torch.Tensor, delta: torch.Tensor) -> None:
        """Add member i's sum_t delta_t x_t^T of one micro-batch: x (..., d_in), delta (..., d_out)."""
        rows, cols = self.group.structure == "rows", self.group.structure == "cols"
        m = self.maps
        x2 = x.reshape(-1, self.d_in).float()
        g2 = delta.reshape(-1, self.d_out).float()
        y = self.Y[i * self.d_out:(i + 1) * self.d_out] if rows else self.Y
        z = self.Z[:, i * self.d_in:(i + 1) * self.d_in] if cols else self.Z
        y.addmm_(g2.t(), x2 @ m.gaussian("omega", self.d_in, i if cols else None))  # (d_out, T) @ (T, k)
        z.addmm_((g2 @ m.gaussian("psi", self.d_out, i if rows else None)).t(), x2)  # (l, T) @ (T, d_in)
        self.S.addmm_((g2 @ m.gaussian("phi", self.d_out, i if rows else None)).t(),
                      x2 @ m.gaussian("xi", self.d_in, i if cols else None))  # (s, T) @ (T, s)

    def singular_values(self) -> torch.Tensor:
        """Estimates of H's top min(k, l) singular values, float64, descending (exact if rank H <= min(k, l))."""
        n = len(self.group.keys)
        rows, cols = self.group.structure == "rows", self.group.structure == "cols"
        phi = [self.maps.gaussian("phi", self.d_out, i if rows else None) for i in range(n if rows else 1)]
        xi = [self.maps.gaussian("xi", self.d_in, i if cols else None) for i in range(n if cols else 1)]
        # the stacked Phi (L d_out, s) / Xi (L d_in, s) exist only here, transiently
        return core_singular_values(self.Y.double(), self.Z.double(), self.S.double(), torch.cat(phi).double(),
                                    torch.cat(xi).double())
