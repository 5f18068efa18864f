"""Search: the problem (groups of options under a budget, exact optimum), the Optuna study over it.

- ``problem``: ``Problem`` (options, costs, values; ``solve`` = exact multiple-choice knapsack);
- ``build``: a space + scores -> ``Problem``; a chosen option set -> ``Allocation``;
- ``objective``: the one objective every process evaluates; ``claims``: trial counting and liveness;
- ``storage``: journal file or PostgreSQL; ``study``: the loop; ``worker``: ``heterosearch worker``;
- ``jobqueue``: a queue of jobs (the evidence commands' trainings) as one more study in the same storage.
"""

from heterosearch.optimize.objective import PARAM_PREFIX
from heterosearch.optimize.problem import Problem
from heterosearch.optimize.study import SearchResult, run_search

__all__ = ["PARAM_PREFIX", "Problem", "SearchResult", "run_search"]
