"""Model loading and site discovery (module names -> layer, role, shape)."""

from heterosearch.models.loading import DEFAULT_MODEL, load_model, resolve_model
from heterosearch.models.sites import ROLES, Site, discover_sites, num_layers, site_sort_key, sites_by_key

__all__ = [
    "DEFAULT_MODEL",
    "ROLES",
    "Site",
    "discover_sites",
    "load_model",
    "num_layers",
    "resolve_model",
    "site_sort_key",
    "sites_by_key",
]
