"""run = sites -> score -> search -> export -> train -> results, in that order.

This package is the run: one module a part, each importing only the ones above it.

- ``config``: ``RunConfig`` (every setting of a run, recorded in ``config.json``), ``versions``;
- ``files``: the run folder's file names, what each stage reads and writes, the freshness check;
- ``budget``: which budgets a space can meet on a model, and the uniform baseline at a budget;
- ``inputs``: ``RunInputs``, the lazily loaded space, model, tokenizer, sites and data;
- ``folder``: ``Run``, the inputs plus their run folder (open, reopen, record the config);
- ``train_stage``: ``stage_verify`` (the CLI's ``train`` stage, writes ``verify.json``) and
  ``check_exported``;
- ``stages``: ``stage_score``, ``stage_search``, ``stage_export``, ``write_results`` and ``run_all``.

The names are re-exported here: ``from heterosearch.pipeline import Run, run_all`` is the
way in for the CLI, the tests and the benchmarks.
"""

from heterosearch.pipeline.config import _DEFAULTS, RunConfig, versions
from heterosearch.pipeline.files import (
    ALLOCATION_FILE,
    CONFIG_FILE,
    REPORT_FILE,
    RESULTS_FILE,
    SCORES_FILE,
    SEARCH_FILE,
    STUDY_FILE,
    VERIFY_FILE,
)
from heterosearch.pipeline.folder import Run
from heterosearch.pipeline.inputs import RunInputs
from heterosearch.pipeline.stages import (
    check_searched,
    load_results,
    load_winner,
    run_all,
    stage_export,
    stage_score,
    stage_search,
    write_results,
)
from heterosearch.pipeline.train_stage import check_exported, stage_verify

__all__ = [
    "ALLOCATION_FILE",
    "CONFIG_FILE",
    "REPORT_FILE",
    "RESULTS_FILE",
    "SCORES_FILE",
    "SEARCH_FILE",
    "STUDY_FILE",
    "VERIFY_FILE",
    "_DEFAULTS",
    "Run",
    "RunConfig",
    "RunInputs",
    "check_exported",
    "check_searched",
    "load_results",
    "load_winner",
    "run_all",
    "stage_export",
    "stage_score",
    "stage_search",
    "stage_verify",
    "versions",
    "write_results",
]
