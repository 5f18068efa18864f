"""Search: the Optuna study over allocations and the exact optimum of the same objective."""

from heterosearch.search.exact import KnapsackResult, solve
from heterosearch.search.study import PARAM_PREFIX, SearchProblem, SearchResult, run_search

__all__ = ["PARAM_PREFIX", "KnapsackResult", "SearchProblem", "SearchResult", "run_search", "solve"]
