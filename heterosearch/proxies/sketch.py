"""Per-site linear sketches of G = dL/dW0 = sum_t delta_t x_t^T, and what the proxies read from them.

G (d_out x d_in) is never formed. From each token's input x_t (d_in) and output gradient
delta_t (d_out) a hook adds

    Y += delta x_t^T Omega      (d_out x k)    Omega = [A^T | Gaussian]   (d_in x k)
    Z += Psi^T delta_t x_t^T    (l x d_in)     Psi   = [B   | Gaussian]   (d_out x l)

and a core sketch S += Phi^T delta_t x_t^T Xi (s x s, Gaussian Phi, Xi) in float32, for a whole
micro-batch at once (thin matmuls). A (r_max x d_in) and B
(d_out x r_max) are the site's seeded virtual adapter (``state.virtual_adapter``), so
Y[:, :r_max] = G A^T and Z[:r_max] = B^T G: the LoRA gradients dL/dB / s and dL/dA / s, exactly.

Top singular values: the single-pass three-sketch method of Tropp, Yurtsever, Udell & Cevher
(2019, SISC, section 2.5; ``core_singular_values``): G ~ Q C P^T with Q, P the orthonormalised
Y, Z^T and C from the core sketch, so sigma_j(G) ~ sigma_j(C). The error is governed by G's
tail energy beyond rank ~k; tests/test_streaming.py bounds it on tiny random models.

Omega and Psi are regenerated from a per-site seed whenever they are needed instead of being
kept: they would double the per-site memory, and drawing them costs (d_in + d_out)(k + l)
random numbers per micro-batch, well under the hook's own matmuls.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch

from heterosearch.models.sites import Site


def _generator(site: Site, seed: int, salt: str) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(f"{salt}:{site.key}".encode())) % (2**63))


def core_matrices(site: Site, s: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Phi (d_out, s), Xi (d_in, s)), float32 Gaussian: the core sketch's test matrices."""
    g = _generator(site, seed, "core")
    return torch.randn(site.d_out, s, generator=g), torch.randn(site.d_in, s, generator=g)


def test_matrices(site: Site, r_max: int, k: int, l: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: E741
    """(Omega (d_in, k), Psi (d_out, l)), float32; the first r_max columns are A^T and B.

    The Gaussian columns are scaled like the uniform ones (variance 1/(3 d)); only the spans
    matter for the range finder, but equal scales keep the least-squares core well balanced.
    """
    from heterosearch.proxies.state import virtual_adapter

    A, B = virtual_adapter(site, r_max, seed)  # noqa: N806  float64, (r_max, d_in), (d_out, r_max)
    g = _generator(site, seed, "sketch")
    extra_in = torch.randn(site.d_in, k - r_max, generator=g) / (3 * site.d_in) ** 0.5
    extra_out = torch.randn(site.d_out, l - r_max, generator=g) / (3 * site.d_out) ** 0.5
    return torch.cat([A.t().float(), extra_in], dim=1), torch.cat([B.float(), extra_out], dim=1)


@dataclass
class SiteSketch:
    """Y (d_out, k), Z (l, d_in) and the core S (s, s) of one site, float32, summed over micro-batches."""

    site: Site
    r_max: int
    seed: int
    Y: torch.Tensor
    Z: torch.Tensor
    S: torch.Tensor

    @classmethod
    def zeros(cls, site: Site, r_max: int, widths: tuple[int, int, int], seed: int) -> SiteSketch:
        k, l, s = widths  # noqa: E741
        return cls(site, r_max, seed, torch.zeros(site.d_out, k), torch.zeros(l, site.d_in), torch.zeros(s, s))

    def add(self, x: torch.Tensor, delta: torch.Tensor) -> None:
        """Add sum_t delta_t x_t^T of one micro-batch: x (..., d_in), delta (..., d_out), any float dtype."""
        x2 = x.reshape(-1, self.site.d_in).float()
        g2 = delta.reshape(-1, self.site.d_out).float()
        omega, psi = test_matrices(self.site, self.r_max, self.Y.shape[1], self.Z.shape[0], self.seed)
        self.Y.addmm_(g2.t(), x2 @ omega)  # (d_out, T) @ (T, k)
        self.Z.addmm_((g2 @ psi).t(), x2)  # (l, T) @ (T, d_in)
        phi, xi = core_matrices(self.site, self.S.shape[0], self.seed)
        self.S.addmm_((g2 @ phi).t(), x2 @ xi)  # (s, T) @ (T, s): Phi^T G Xi

    def lora_grads(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B^T G (r_max, d_in), G A^T (d_out, r_max)) in float64: dL/dA and dL/dB at s = 1."""
        return self.Z[: self.r_max].double(), self.Y[:, : self.r_max].double()

    def singular_values(self) -> torch.Tensor:
        """Estimates of the top min(k, l, d_out, d_in) singular values of G, float64, descending."""
        phi, xi = core_matrices(self.site, self.S.shape[0], self.seed)
        return core_singular_values(self.Y.double(), self.Z.double(), self.S.double(), phi.double(), xi.double())


def core_singular_values(Y: torch.Tensor, Z: torch.Tensor, S: torch.Tensor, phi: torch.Tensor,  # noqa: N803
                         xi: torch.Tensor) -> torch.Tensor:
    """sigma(C) with G ~ Q C P^T (Tropp, Yurtsever, Udell & Cevher 2019, "Streaming low-rank matrix
    approximation with an application to scientific simulation", SISC, section 2.5), descending.

    Q = orth(Y) (m x k) spans G's range estimate, P = orth(Z^T) (n x l) its co-range estimate;
    the core sketch S = Phi^T G Xi (s x s, s >= 2 l) gives C = (Phi^T Q)^+ S ((Xi^T P)^+)^T, an
    estimate of Q^T G P. Using both ranges and a separate core is what makes one pass about as
    accurate as the two-pass randomised SVD (their Thm 5.1); without the core (Tropp et al.
    2017, X = (Psi^T Q)^+ Z) the tail of G leaks into the top values (we measured 50 %
    errors on tiny random models at k = r + 8). If rank G <= min(k, l) the values are exact.

    Q and P are never formed: with Q = Y M (``_orthonormaliser``), Phi^T Q = (Phi^T Y) M and
    Xi^T P = (Z Xi)^T N are thin BLAS-3 products, several times faster than a Householder QR of
    the tall Y and Z^T, which dominated the reconstruction time.
    """
    phi_q = (phi.t() @ Y) @ _orthonormaliser(Y)  # (s, q) = Phi^T Q
    xi_p = (Z @ xi).t() @ _orthonormaliser(Z.t())  # (s, p) = Xi^T P
    left = torch.linalg.lstsq(phi_q, S).solution  # (q, s) = (Phi^T Q)^+ S
    core = torch.linalg.lstsq(xi_p, left.t()).solution.t()  # (q, p) = left ((Xi^T P)^+)^T
    return torch.linalg.svdvals(core)


def _orthonormaliser(Y: torch.Tensor) -> torch.Tensor:  # noqa: N803
    """M (k, q) such that Y M has orthonormal columns spanning range(Y), from the k x k Gram matrix.

    Y^T Y = V diag(lam) V^T, M = V diag(lam^-1/2) over the eigenvalues above 1e-12 lam_max:
    directions of Y below 1e-6 of its largest singular value are dropped (float64; rank-
    deficient Y, e.g. G of rank < k, is handled, which a Cholesky QR would not be).
    """
    lam, V = torch.linalg.eigh(Y.t() @ Y)  # noqa: N806
    keep = lam > lam.max().clamp_min(torch.finfo(lam.dtype).tiny) * 1e-12
    return V[:, keep] / lam[keep].sqrt()


@dataclass
class SiteSynflow:
    """|B|^T |G| (r_max, d_in) and |G| |A|^T (d_out, r_max), float64, of the synflow pass.

    synflow takes |G|, which is not linear in the per-token terms, so the hook forms this site's
    G of the synflow pass transiently (one site at a time; 16 tokens) and keeps only these two.
    """

    site: Site
    r_max: int
    seed: int
    dA: torch.Tensor  # noqa: N815
    dB: torch.Tensor  # noqa: N815

    @classmethod
    def zeros(cls, site: Site, r_max: int, seed: int) -> SiteSynflow:
        return cls(site, r_max, seed, torch.zeros(r_max, site.d_in, dtype=torch.float64),
                   torch.zeros(site.d_out, r_max, dtype=torch.float64))

    def add(self, x: torch.Tensor, delta: torch.Tensor) -> None:
        from heterosearch.proxies.state import virtual_adapter

        G = delta.reshape(-1, self.site.d_out).double().t() @ x.reshape(-1, self.site.d_in).double()  # noqa: N806
        A, B = virtual_adapter(self.site, self.r_max, self.seed)  # noqa: N806
        G.abs_()
        self.dA += B.abs().t() @ G
        self.dB += G @ A.abs().t()
