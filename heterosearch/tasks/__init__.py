"""Task layer: GLUE specs, a user's own data (``--task FILE``, ``lm:FILE``), splits, and metrics.

Kept free of torch/datasets at import time (``datasets`` is imported only when falling
back to the hub, numpy/scipy only when scoring) so the CLI stays fast to start.
"""

from __future__ import annotations

from heterosearch.tasks._loading import Split, TaskData, load_task_data
from heterosearch.tasks._metrics import compute_metrics
from heterosearch.tasks._spec import TASKS, TaskSpec
from heterosearch.tasks.resolve import check_task, default_epochs, load_task, task_kind, task_slug

__all__ = ["TASKS", "TaskSpec", "Split", "TaskData", "load_task_data", "compute_metrics", "check_task", "default_epochs", "load_task",
           "task_kind", "task_slug"]
