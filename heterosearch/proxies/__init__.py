"""Zero-cost proxies: one module per proxy, a registry, and the shared scoring pass."""

from heterosearch.proxies import grad_norm, snip, spectral, synflow  # noqa: F401  (registration)
from heterosearch.proxies.base import PROXIES, Proxy, SiteState
from heterosearch.proxies.scoring import ProxyError, Scores, check_scores, score_candidates

DEFAULT_PROXY = "spectral"

__all__ = ["DEFAULT_PROXY", "PROXIES", "Proxy", "ProxyError", "Scores", "SiteState", "check_scores", "score_candidates"]
