"""What a run is about, loaded once on first use: space, task, model, tokenizer, sites and data.

``RunInputs`` knows only the run's settings (``RunConfig``), never its folder: the stages
and the evidence commands read the same model, sites and encoded splits through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from heterosearch.errors import UserError
from heterosearch.pipeline.budget import baseline_allocation, check_budget
from heterosearch.pipeline.config import RunConfig
from heterosearch.space import SearchSpace, load_space
from heterosearch.space.allocation import Allocation


@dataclass
class RunInputs:
    """The lazily loaded space, task, model, tokenizer, sites and data of one run's settings."""

    cfg: RunConfig
    # Loading the tokenizer loads a model alongside it; scoring takes that one (``take_model``)
    # rather than loading a second copy.
    _spare_model: Any = field(default=None, init=False, repr=False, compare=False)

    @cached_property
    def space(self) -> SearchSpace:
        space = load_space(self.cfg.space)
        if "lora" not in space.kinds:
            raise UserError(f"space {space.name!r} has no 'lora' section: every space adapts sites with LoRA at least")
        return space

    @cached_property
    def spec(self) -> Any:
        """The task's spec: a GLUE one by name, else the one built from the user's data (tasks/resolve.py)."""
        from heterosearch.tasks import TASKS, task_kind

        return TASKS.get(self.cfg.task) if task_kind(self.cfg.task) == "glue" else self.data.spec

    @property
    def peft_task_type(self) -> str:
        """PEFT's task type: the model class PEFT wraps (a causal LM for lm: tasks, a classifier otherwise)."""
        return "CAUSAL_LM" if self.spec.is_lm else "SEQ_CLS"

    @cached_property
    def model_path(self) -> str:
        from heterosearch.models import resolve_model

        return resolve_model(self.cfg.model)

    def new_model(self, seed: int | None = None) -> Any:
        """A fresh base model with a head initialised from ``seed`` (default: the run's; lm tasks: its LM head).

        A regression head's bias starts at the mean training label (``models/head.py``).
        """
        from heterosearch.models import load_model

        model, _ = load_model(self.model_path, self.spec.num_labels, self.cfg.seed if seed is None else seed,
                              causal_lm=self.spec.is_lm)
        self._start_head(model)
        return model

    def _start_head(self, model: Any) -> None:
        if self.spec.num_labels == 1 and not self.spec.is_lm:
            from heterosearch.models.head import start_at_label_mean

            start_at_label_mean(model, [float(x) for x in self.held_out.train.labels])

    @cached_property
    def tokenizer(self) -> Any:
        from heterosearch.models import load_model

        model, tok = load_model(self.model_path, self.spec.num_labels, self.cfg.seed, causal_lm=self.spec.is_lm)
        self._start_head(model)
        self._spare_model = model
        return tok

    def take_model(self) -> Any:
        """The model loaded alongside the tokenizer if nobody took it yet, else a fresh one (same seed, same weights)."""
        model, self._spare_model = self._spare_model, None
        return model if model is not None else self.new_model()

    def drop_spare_model(self) -> None:
        """Free the model loaded alongside the tokenizer (callers that build their own models)."""
        self._spare_model = None

    @cached_property
    def all_sites(self) -> list[Any]:
        from heterosearch.models import discover_sites

        return discover_sites(self._meta_model(), self.space.site_roles, f"search space {self.space.source}: roles")

    def _meta_model(self) -> Any:
        # Site shapes only: build the architecture without weights (a fraction of a second).
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

        from heterosearch.models.loading import _first_line, _hub_reachable

        local = Path(self.model_path).is_dir()
        spec = self.spec  # reads a user's data: its errors are its own, not the model's
        try:  # a folder without config.json, an unknown architecture, an unreachable hub: one line, no traceback
            extra = {} if spec.is_lm else {"num_labels": spec.num_labels}
            config = AutoConfig.from_pretrained(self.model_path, local_files_only=not local and not _hub_reachable(), **extra)
            auto = AutoModelForCausalLM if spec.is_lm else AutoModelForSequenceClassification
            with torch.device("meta"):
                return auto.from_config(config)
        except Exception as exc:
            raise UserError(
                f"cannot load model {self.cfg.model or self.model_path!r}: {_first_line(exc)} "
                "(pass --model PATH to a Hugging Face model folder with config.json)"
            ) from None

    @cached_property
    def sites(self) -> list[Any]:
        """The sites the space may adapt (its roles), in site order."""
        from heterosearch.models.roles import fused_notes, resolve_roles
        from heterosearch.progress import say

        # Every role the space names must match a site (or a fused one: q, k, v -> qkv); never an empty set.
        for path, named in self._named_roles():
            resolve_roles(named, self.all_sites, f"search space {self.space.source}: {path}")
        roles = set(resolve_roles(self.space.lora.roles, self.all_sites, "kinds.lora.roles"))
        chosen = [s for s in self.all_sites if s.role in roles]
        for note in fused_notes([r for _, named in self._named_roles() for r in named], self.all_sites):
            say(f"[dim]note: {note}[/dim]")
        # Checked before anything is allocated: scoring builds (rank x width) tensors per site.
        widest = max(max(s.d_in, s.d_out) for s in chosen)
        too_big = [r for r in self.space.lora.ranks if r > widest]
        if too_big:
            raise UserError(
                f"space {self.space.name!r} asks for LoRA rank {too_big[0]}, above the widest site of this model "
                f"({widest}; a rank-r update of a d_out x d_in matrix has rank <= min(d_in, d_out)): remove ranks above {widest}"
            )
        return chosen

    @property
    def rank_one_params(self) -> int:
        """Adapter parameters of uniform LoRA at rank 1 on every site the space adapts (sum of d_in + d_out)."""
        return sum(s.d_in + s.d_out for s in self.sites)

    def train_config(self, epochs: float | None = None, max_steps: int | None = None, seed: int | None = None) -> Any:
        """``RunConfig.train_config`` with the rate for this budget's rank on this model (``recipe.lr_factor``)."""
        return self.cfg.train_config(epochs=epochs, max_steps=max_steps, seed=seed, rank_one_params=self.rank_one_params)

    def _named_roles(self) -> list[tuple[str, tuple[str, ...]]]:
        """(field, roles) for every kind section with roles, and the baseline."""
        named = [(f"kinds.{k}.roles", tuple(sec.roles)) for k, sec in self.space.kinds.items() if hasattr(sec, "roles")]
        return [*named, ("baseline.roles", tuple(self.space.baseline.roles))]

    @property
    def site_map(self) -> dict[str, Any]:
        return {s.key: s for s in self.all_sites}

    @cached_property
    def data(self) -> Any:
        from heterosearch.tasks import load_task

        c = self.cfg
        return load_task(c.task, c.data_dir, c.text_columns, c.label_column, c.problem)

    @cached_property
    def held_out(self) -> Any:
        """The files cut into train (fit), val (selection) and test (report) (``tasks/splits.py``)."""
        from heterosearch.tasks.splits import held_out

        return held_out(self.data, self.cfg.val_fraction, self.cfg.split_seed, self.spec.is_classification)

    @property
    def splits(self) -> dict[str, Any]:
        """What each split is and where it came from: recorded in every results file."""
        info = dict(self.held_out.info)
        return {
            "roles": info.pop("roles"),
            "source": self.data.source,
            **info,
            "test_examples": len(self.held_out.test),
            "test_file": self.held_out.test.source,
            "report_split": "test",
        }

    @cached_property
    def encoded(self) -> dict[str, Any]:
        """``train`` (fit), ``val`` (selection) and ``test`` (report only: the GLUE dev file, a user's test file, or carved)."""
        from heterosearch.tasks.batching import encode

        # Never longer than the model's position table (longer inputs would index past it):
        # truncate there, as a tokenizer's model_max_length would.
        limit = getattr(self._meta_model().config, "max_position_embeddings", None)
        length = min(self.cfg.max_length, limit) if isinstance(limit, int) and limit > 0 else self.cfg.max_length
        regression = self.spec.num_labels == 1
        parts = {"train": self.held_out.train, "val": self.held_out.val, "test": self.held_out.test}
        if self.spec.is_lm:
            from heterosearch.tasks.lm import encode_lm

            return {name: encode_lm(self.tokenizer, p.texts, length) for name, p in parts.items()}
        return {name: encode(self.tokenizer, p.texts, p.labels, regression, length) for name, p in parts.items()}

    # -- the budget rules (pipeline/budget.py) on these sites ---------------------------------
    def baseline_roles(self) -> tuple[str, ...]:
        """The site roles of the baseline (q, v -> qkv on a fused model); one the space does not adapt is an error."""
        from heterosearch.models.roles import resolve_roles

        return resolve_roles(self.space.baseline.roles, self.sites, f"search space {self.space.source}: baseline.roles",
                             among="the sites the space adapts")

    def check_budget(self) -> None:
        if self.cfg.budget is not None:
            check_budget(self.sites, self.space, self.cfg.budget)

    def baseline_allocation(self) -> tuple[Allocation, str]:
        """Uniform LoRA on the baseline roles at the largest integer rank within the budget."""
        return baseline_allocation(self.sites, self.baseline_roles(), self.cfg.budget)
