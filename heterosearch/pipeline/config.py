"""A run's settings: ``RunConfig`` (recorded resolved in ``config.json``) and the library versions beside them."""

from __future__ import annotations

import math
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from heterosearch import recipe
from heterosearch.errors import UserError
from heterosearch.version import __version__


@dataclass
class RunConfig:
    """Everything that determines a run; recorded resolved in ``config.json``."""

    budget: int | None = None  # None only for the score stage, which does not need one
    task: str = "mrpc"
    model: str | None = None
    space: str = "lora"
    proxy: str = "spectral"
    objective: str = "proxy"  # what the search maximises (optimize.objective.OBJECTIVES)
    # objective "train": steps of a fully trained trial (optimize/train_objective.py); None = its default (18)
    train_steps: int | None = None
    # objective "train": the step of its first successive-halving rung; None = a third of train_steps, 0 = no pruning
    rung_steps: int | None = None
    # objective "train": validation examples per evaluation; None = 128 with a rung, all without; 0 = all
    val_examples: int | None = None
    # objective "train": trainings per trial at seed, seed + 1, ...; the value is their mean, and the winner
    # must beat the warm:uniform_all trial by more than the seed noise; None = 1
    trial_seeds: int | None = None
    trials: int = 300  # the CLI's default: default_trials(objective)
    train_epochs: float | None = None  # None = the task's (tasks.default_epochs: recipe.EPOCHS, RTE 10); recorded resolved
    max_train_steps: int | None = None
    seed: int = 0
    data_dir: str | None = None
    out: str | None = None
    score_batches: int = 8
    batch_size: int = recipe.BATCH_SIZE
    max_length: int = recipe.MAX_LENGTH
    lr: float = recipe.LR  # the base rate: LoRA methods train at lr * recipe.lr_factor (falls at high rank)
    lr_scaling: str = "rank"  # "rank": recipe.lr_factor; "none": every budget at lr
    warmup: float = recipe.WARMUP  # fraction of training steps with a linear warm-up, then linear decay to 0
    lora_dropout: float = 0.0  # dropout on LoRA's input x in training (PEFT's lora_dropout); 0 = none
    val_fraction: float = 0.1  # of the training file, carved off for every choice the tool makes
    split_seed: int = 0  # the validation split's seed (the same for every training seed)
    proxies: tuple[str, ...] = ("grad_norm", "snip", "synflow", "spectral")
    storage: str | None = None  # study storage: None = RUN/study.journal; a postgresql:// URL lets workers join
    device: str = "auto"  # where models train and evaluate (train/device.py)
    precision: str = "fp32"  # fp32 | bf16 | fp16 autocast for training and evaluation
    # A user's data (--task FILE | hub name; tasks/resolve.py): None = the usual column names, the inferred problem.
    text_columns: str | None = None  # "a" or "a,b"
    label_column: str | None = None
    problem: str | None = None  # classification | regression
    scoring: str = "auto"  # exact | streaming | auto (proxies/settings.py): streaming sketches for large models
    score_micro_batch: int | None = None  # examples per scoring forward/backward (gradient accumulation)
    score_checkpointing: bool = False  # gradient checkpointing while scoring (HF models that support it)

    def __post_init__(self) -> None:
        from heterosearch.proxies.base import PROXIES  # the package's __init__ registers every proxy first
        from heterosearch.tasks import check_task, default_epochs

        # unknown GLUE task -> UserError with a suggestion; a data file that is not there -> one line
        check_task(self.task, self.data_dir, self.text_columns, self.label_column, self.problem)
        if self.train_epochs is None:
            self.train_epochs = default_epochs(self.task)
        PROXIES.get(self.proxy)
        from heterosearch.optimize.objective import check_objective

        check_objective(self.objective)
        for p in self.proxies:
            PROXIES.get(p)
        if self.proxy not in self.proxies:
            self.proxies = (*self.proxies, self.proxy)
        for name in ("trials", "score_batches", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name, low, high in (("train_epochs", 0.0, 1000.0), ("lr", 0.0, 10.0)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low < value <= high):
                raise UserError(f"--{name.replace('_', '-')} must be a finite number in ({low:g}, {high:g}], got {value}")
        if self.lr_scaling not in recipe.LR_SCALINGS:
            raise UserError(f"--lr-scaling must be one of {', '.join(recipe.LR_SCALINGS)}, got {self.lr_scaling!r}")
        if not (math.isfinite(self.warmup) and 0.0 <= self.warmup < 1.0):
            raise UserError(f"--warmup must be a fraction of the training steps in [0, 1), got {self.warmup}")
        if not (isinstance(self.lora_dropout, (int, float)) and math.isfinite(self.lora_dropout) and 0.0 <= self.lora_dropout < 1.0):
            raise UserError(f"--lora-dropout must be a probability in [0, 1), got {self.lora_dropout}")
        if not (math.isfinite(self.val_fraction) and 0.0 < self.val_fraction < 1.0):
            raise UserError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("seed", "split_seed"):
            if not 0 <= getattr(self, name) < 2**32:  # what numpy and torch generators accept
                raise UserError(f"--{name.replace('_', '-')} must be an integer in [0, 2**32), got {getattr(self, name)}")
        if self.train_steps is not None and not 1 <= self.train_steps <= 1_000_000:
            raise UserError(f"train_steps (the train objective's steps per trial) must be in [1, 1000000], got {self.train_steps}")
        if self.rung_steps is not None:
            top = self.train_steps or recipe.TRAIN_OBJECTIVE_STEPS
            if not 0 <= self.rung_steps <= top:
                raise UserError(f"--rung-steps must be in [0, {top}] (the train objective's steps per trial; 0 = no pruning), "
                                f"got {self.rung_steps}")
        if self.val_examples is not None and not 0 <= self.val_examples <= 10**7:
            raise UserError(f"--val-examples must be in [0, 10000000] (0 = the whole validation split), got {self.val_examples}")
        if self.trial_seeds is not None:
            if not 1 <= self.trial_seeds <= 100:
                raise UserError(f"--trial-seeds must be in [1, 100], got {self.trial_seeds}")
            if self.objective != "train":
                raise UserError(f"--trial-seeds applies to --objective train (this run's objective is {self.objective})")
        if self.max_train_steps is not None and self.max_train_steps < 1:
            raise UserError(f"--max-train-steps must be >= 1, got {self.max_train_steps}")
        from heterosearch.train.device import check_precision, resolve_device

        check_precision(self.precision, resolve_device(self.device))  # before any work: one line if unusable
        self.scoring_options()  # validates --scoring and --score-micro-batch
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise UserError(f"--data-dir {self.data_dir!r} is not a folder (expected the GLUE TSV layout: DIR/MRPC/train.tsv)")

    def train_lr(self, rank_one_params: int) -> float:
        """The rate every LoRA method of this run trains at: the base ``lr`` times ``recipe.lr_factor``
        (``rank_one_params``: adapter parameters of rank 1 on every site of the space)."""
        return self.lr * recipe.lr_factor(self.budget, rank_one_params, self.lr_scaling)

    def train_config(self, *, rank_one_params: int, epochs: float | None = None, max_steps: int | None = None,
                     seed: int | None = None) -> Any:
        """The training recipe of this run (``TrainConfig``): the same for every LoRA method it trains.

        ``rank_one_params`` (the model's: call ``RunInputs.train_config``) sets the rate for the
        budget's rank (``recipe.lr_factor``); it is required so that no caller trains at the base
        rate by leaving it out."""
        from heterosearch.train.config import TrainConfig

        if epochs is not None and not (math.isfinite(epochs) and 0 < epochs <= 1000):
            raise UserError(f"--train-epochs must be a finite number in (0, 1000], got {epochs}")
        if max_steps is not None and max_steps < 1:
            raise UserError(f"--max-train-steps must be >= 1, got {max_steps}")
        return TrainConfig(
            epochs=self.train_epochs if epochs is None else epochs,
            max_steps=self.max_train_steps if max_steps is None else max_steps,
            batch_size=self.batch_size,
            lr=self.train_lr(rank_one_params),
            warmup=self.warmup,
            max_length=self.max_length,
            lora_dropout=self.lora_dropout,
            seed=self.seed if seed is None else seed,
            precision=self.precision,
            device=str(resolve_device_name(self.device)),
        )

    def scoring_options(self) -> Any:
        """The score stage's ``ScoringOptions``; the streaming pass runs in the training precision."""
        from heterosearch.proxies.settings import ScoringOptions

        return ScoringOptions(method=self.scoring, micro_batch=self.score_micro_batch,
                              checkpointing=self.score_checkpointing, precision=self.precision)

    def default_out(self) -> Path:
        budget = "scores" if self.budget is None else str(self.budget)
        from heterosearch.tasks import task_slug

        objective = "" if self.objective == "proxy" else f"-{self.objective}"
        return Path("runs") / f"{task_slug(self.task)}-{Path(self.space).stem}-{budget}-{self.proxy}{objective}-s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["proxies"] = list(self.proxies)
        return d


def resolve_device_name(spec: str) -> str:
    from heterosearch.train.device import resolve_device

    return str(resolve_device(spec))


_DEFAULTS = {"objective": "proxy", "train_steps": None, "rung_steps": None, "val_examples": None, "trial_seeds": None, "warmup": 0.06, "lora_dropout": 0.0, "val_fraction": 0.1, "split_seed": 0, "device": "auto",
             "precision": "fp32", "scoring": "auto", "score_checkpointing": False,
             "lr_scaling": "none"}  # settings older run folders did not record (before 2026-12-07 every budget trained at lr)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"heterosearch": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "optuna", "datasets", "numpy", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "missing"
    return out


#: Optuna trials when the user gives none: a proxy or lookahead trial costs well under a second
#: to a few seconds; a train-objective trial up to about a minute on MiniLM with 2 CPUs
#: (optimize/train_objective.py), so 12 of them keep a default-sized run near its 10 minutes' order.
DEFAULT_TRIALS = {"proxy": 300, "lookahead": 300, "train": 12}


def default_trials(objective: str) -> int:
    return DEFAULT_TRIALS.get(objective, DEFAULT_TRIALS["proxy"])
