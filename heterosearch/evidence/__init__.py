"""Evidence on top of a finished run: multi-seed verification against strong baselines, proxy rankings, frontiers.

Vocabulary: a run's own ``train`` stage (``pipeline.train_stage.stage_verify``, ``verify.json``)
trains the winner and the uniform baseline once. This package is the evidence commands
that go further; none of them is a stage of ``run``:

- ``verify`` command -> ``seeds.verify_run`` -> ``RUN/verify_seeds.json``: every method over seeds;
- ``rank-report`` command -> ``rank_report.rank_report`` -> ``OUT/rank_report.json``: proxy scores
  vs trained accuracy over sampled allocations;
- ``frontier`` command -> ``frontier.frontier`` -> ``OUT/frontier.json``: the metric against budget.

Their parts: ``baselines`` (each baseline's allocation at the winner's budget: uniform q,v,
uniform on all sites, random draws from the space, HeteroLoRA's static rule, AdaLoRA's plan),
``adalora`` (AdaLoRA from PEFT, trained with the same batches, schedule and seed),
``statistics`` (paired differences, intervals, tests), ``ranking`` (rank statistics and the
noise ceiling), ``sampling`` (rank-report's sampling designs), ``frontier_summary`` (the
frontier's points, read from the budget folders), ``jobs`` (every training of these commands
as a job in the run's study storage, so ``heterosearch worker FOLDER --jobs`` processes share them).
"""

from heterosearch.evidence.baselines import METHODS, Planned, plan_baselines, random_allocation
from heterosearch.evidence.rank_report import rank_report
from heterosearch.evidence.ranking import ranking_stats
from heterosearch.evidence.seeds import VERIFY_SEEDS_FILE, verify_run
from heterosearch.evidence.statistics import describe, paired_comparison, summarize

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
