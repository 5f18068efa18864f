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

The Gaussian test matrices depend only on the width they act on, so sites of one width share
them (``TestMaps``): per pass they cost (k + l - 2 r_max + 2 s) d floats per distinct width d
instead of being redrawn per site and micro-batch.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch

from heterosearch.models.sites import Site


def _generator(seed: int, salt: str) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(salt.encode())) % (2**63))


class TestMaps:
    """The test matrices of one scoring pass: Omega = [A^T | Gaussian] (d_in, k), Psi = [B | Gaussian]
    (d_out, l) and the core's Phi (d_out, s), Xi (d_in, s), float32.

    Only A and B belong to a site (its seeded virtual adapter, ``state.virtual_adapter``). The
    Gaussian parts depend only on the width they act on and on the seed, so every site of that
    width shares them: a site's estimate has the same distribution as with its own draws (the
    sketched G does not depend on them), the errors of sites are merely correlated. Drawing
    them once per pass instead of per site and micro-batch is what made them cheap: redrawing
    (d_in + d_out)(k + l + 2s) numbers per site per micro-batch took about a third of the
    hooks' time at width 256, and the transient copies were larger than this cache (four
    matrices per distinct width, (k + l - 2 r_max + 2s) d floats in all).
    """

    __test__ = False  # not a pytest class, whatever its name

    def __init__(self, r_max: int, widths: tuple[int, int, int], seed: int) -> None:
        self.r_max, self.seed = r_max, seed
        self.k, self.l, self.s = widths
        self._cache: dict[tuple[str, int], torch.Tensor] = {}

    def gaussian(self, salt: str, d: int) -> torch.Tensor:
        """(d, cols) standard Gaussian of this width, drawn once: cols = k - r_max, l - r_max or s."""
        key = (salt, d)
        if key not in self._cache:
            cols = {"omega": self.k - self.r_max, "psi": self.l - self.r_max, "phi": self.s, "xi": self.s}[salt]
            self._cache[key] = torch.randn(d, cols, generator=_generator(self.seed, f"{salt}:{d}"))
        return self._cache[key]

    def adapter(self, site: Site) -> tuple[torch.Tensor, torch.Tensor]:
        """(A^T (d_in, r_max), B (d_out, r_max)) of the site, float32."""
        from heterosearch.proxies.state import virtual_adapter

        A, B = virtual_adapter(site, self.r_max, self.seed)  # noqa: N806  float64
        return A.t().float(), B.float()

    def release(self) -> None:
        """Drop the cached matrices (they are drawn again, identically, if asked for)."""
        self._cache.clear()


def project(t: torch.Tensor, basis: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
    """t @ [basis | extra / sqrt(3 d)]: the Gaussian columns scaled like the uniform ones of A, B
    (variance 1/(3 d)); only the spans matter for the range finder, but equal scales keep the
    least-squares core well balanced."""
    return torch.cat([t @ basis, (t @ extra).mul_((3 * extra.shape[0]) ** -0.5)], dim=1)


@dataclass
class SiteSketch:
    """Y (d_out, k), Z (l, d_in) and the core S (s, s) of one site, float32, summed over micro-batches."""

    site: Site
    maps: TestMaps
    Y: torch.Tensor
    Z: torch.Tensor
    S: torch.Tensor

    @classmethod
    def zeros(cls, site: Site, maps: TestMaps) -> SiteSketch:
        return cls(site, maps, torch.zeros(site.d_out, maps.k), torch.zeros(maps.l, site.d_in), torch.zeros(maps.s, maps.s))

    def add(self, x: torch.Tensor, delta: torch.Tensor) -> None:
        """Add sum_t delta_t x_t^T of one micro-batch: x (..., d_in), delta (..., d_out), any float dtype."""
        m, d_in, d_out = self.maps, self.site.d_in, self.site.d_out
        x2 = x.reshape(-1, d_in).float()
        g2 = delta.reshape(-1, d_out).float()
        at, b = m.adapter(self.site)
        self.Y.addmm_(g2.t(), project(x2, at, m.gaussian("omega", d_in)))  # (d_out, T) @ (T, k)
        self.Z.addmm_(project(g2, b, m.gaussian("psi", d_out)).t(), x2)  # (l, T) @ (T, d_in)
        self.S.addmm_((g2 @ m.gaussian("phi", d_out)).t(), x2 @ m.gaussian("xi", d_in))  # (s, T) @ (T, s): Phi^T G Xi

    def lora_grads(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B^T G (r_max, d_in), G A^T (d_out, r_max)) in float64: dL/dA and dL/dB at s = 1."""
        r = self.maps.r_max
        return self.Z[:r].double(), self.Y[:, :r].double()

    def singular_values(self) -> torch.Tensor:
        """Estimates of the top min(k, l, d_out, d_in) singular values of G, float64, descending."""
        phi, xi = self.maps.gaussian("phi", self.site.d_out), self.maps.gaussian("xi", self.site.d_in)
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
    # Phi^T Q = U_f R_f and Xi^T P = U_h R_h (thin QR; both are s x q Gaussian-like, so of full
    # column rank): C = R_f^-1 (U_f^T S U_h) R_h^-T, two small triangular solves instead of two
    # least-squares problems with s right-hand sides (gelsy: 0.9 ms each at k = 80, this: 0.6 ms).
    u_f, r_f = torch.linalg.qr(phi_q)
    u_h, r_h = torch.linalg.qr(xi_p)
    left = torch.linalg.solve_triangular(r_f, u_f.t() @ S @ u_h, upper=True)  # (q, p) = R_f^-1 U_f^T S U_h
    core = torch.linalg.solve_triangular(r_h, left.t(), upper=True).t()  # (q, p) = left R_h^-T
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
