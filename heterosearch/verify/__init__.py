"""Evidence: multi-seed verification against strong baselines, and proxy-ranking reports.

- ``baselines``: each baseline's allocation at the winner's budget (uniform q,v, uniform on
  all sites, random draws from the space, HeteroLoRA's static rule, AdaLoRA's plan);
- ``adalora``: AdaLoRA from PEFT trained with the same batches, schedule and seed;
- ``seeds``: ``verify_run`` (RUN/verify_seeds.json) and its statistics;
- ``rank_report``: ``rank_report`` (OUT/rank_report.json): proxy scores vs trained accuracy.
"""

from heterosearch.verify.baselines import METHODS, Planned, plan_baselines, random_allocation
from heterosearch.verify.rank_report import rank_report, ranking_stats
from heterosearch.verify.seeds import VERIFY_SEEDS_FILE, describe, paired_comparison, summarize, verify_run

__all__ = [
    "METHODS",
    "VERIFY_SEEDS_FILE",
    "Planned",
    "describe",
    "paired_comparison",
    "plan_baselines",
    "random_allocation",
    "rank_report",
    "ranking_stats",
    "summarize",
    "verify_run",
]
