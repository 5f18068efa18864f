"""run = sites -> score -> search -> export -> verify -> results, in that order.

Each stage reads and writes files in the run folder, so the CLI's stage commands
(``score``, ``search``, ``export``, ``train``) and ``run`` share one code path, and a
resumed run skips what is already on disk.
"""

from __future__ import annotations

import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from heterosearch import __version__, recipe
from heterosearch.errors import UserError
from heterosearch.export.files import write_json
from heterosearch.export.schema import read_run_file
from heterosearch.progress import say
from heterosearch.stages import INPUTS_KEY, check_current, input_hashes
from heterosearch.space import SearchSpace, format_params, load_space, lora_params
from heterosearch.space.allocation import Allocation, largest_uniform_rank, uniform_allocation

CONFIG_FILE = "config.json"
SCORES_FILE = "scores.json"
SEARCH_FILE = "search.json"
ALLOCATION_FILE = "allocation.json"
VERIFY_FILE = "verify.json"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
STUDY_FILE = "study.journal"


@dataclass
class RunConfig:
    """Everything that determines a run; recorded resolved in ``config.json``."""

    budget: int | None = None  # None only for the score stage, which does not need one
    task: str = "mrpc"
    model: str | None = None
    space: str = "lora"
    proxy: str = "spectral"
    trials: int = 300
    train_epochs: float = recipe.EPOCHS
    max_train_steps: int | None = None
    seed: int = 0
    data_dir: str | None = None
    out: str | None = None
    score_batches: int = 8
    batch_size: int = recipe.BATCH_SIZE
    max_length: int = recipe.MAX_LENGTH
    lr: float = recipe.LR
    warmup: float = recipe.WARMUP  # fraction of training steps with a linear warm-up, then linear decay to 0
    val_fraction: float = 0.1  # of the training file, carved off for every choice the tool makes
    split_seed: int = 0  # the validation split's seed (the same for every training seed)
    proxies: tuple[str, ...] = ("grad_norm", "snip", "synflow", "spectral")
    storage: str | None = None  # study storage: None = RUN/study.journal; a postgresql:// URL lets workers join

    def __post_init__(self) -> None:
        from heterosearch.proxies import PROXIES
        from heterosearch.tasks import TASKS

        TASKS.get(self.task)  # unknown task -> UserError with a suggestion
        PROXIES.get(self.proxy)
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
        if not (math.isfinite(self.warmup) and 0.0 <= self.warmup < 1.0):
            raise UserError(f"--warmup must be a fraction of the training steps in [0, 1), got {self.warmup}")
        if not (math.isfinite(self.val_fraction) and 0.0 < self.val_fraction < 1.0):
            raise UserError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("seed", "split_seed"):
            if not 0 <= getattr(self, name) < 2**32:  # what numpy and torch generators accept
                raise UserError(f"--{name.replace('_', '-')} must be an integer in [0, 2**32), got {getattr(self, name)}")
        if self.max_train_steps is not None and self.max_train_steps < 1:
            raise UserError(f"--max-train-steps must be >= 1, got {self.max_train_steps}")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise UserError(f"--data-dir {self.data_dir!r} is not a folder (expected the GLUE TSV layout: DIR/MRPC/train.tsv)")

    def train_config(self, epochs: float | None = None, max_steps: int | None = None, seed: int | None = None) -> Any:
        """The training recipe of this run (``TrainConfig``): the same for every method it trains."""
        from heterosearch.train import TrainConfig

        if epochs is not None and not (math.isfinite(epochs) and 0 < epochs <= 1000):
            raise UserError(f"--train-epochs must be a finite number in (0, 1000], got {epochs}")
        if max_steps is not None and max_steps < 1:
            raise UserError(f"--max-train-steps must be >= 1, got {max_steps}")
        return TrainConfig(
            epochs=self.train_epochs if epochs is None else epochs,
            max_steps=self.max_train_steps if max_steps is None else max_steps,
            batch_size=self.batch_size,
            lr=self.lr,
            warmup=self.warmup,
            max_length=self.max_length,
            seed=self.seed if seed is None else seed,
        )

    def default_out(self) -> Path:
        budget = "scores" if self.budget is None else str(self.budget)
        return Path("runs") / f"{self.task}-{Path(self.space).stem}-{budget}-{self.proxy}-s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["proxies"] = list(self.proxies)
        return d


_DEFAULTS = {"warmup": 0.06, "val_fraction": 0.1, "split_seed": 0}  # settings older run folders did not record


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"heterosearch": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "optuna", "datasets", "numpy", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "missing"
    return out


@dataclass
class Run:
    """A run folder plus the lazily loaded model, data and sites it needs."""

    cfg: RunConfig
    out: Path
    timings: dict[str, float] = field(default_factory=dict)

    # -- the folder -------------------------------------------------------------------
    @classmethod
    def open(cls, cfg: RunConfig, resume: bool = False, overwrite: bool = False) -> Run:
        """Create or reopen the run folder; refuse to mix two different runs in one folder."""
        from heterosearch import run_folder

        out = Path(cfg.out) if cfg.out else cfg.default_out()
        cfg.out = str(out)
        if resume and overwrite:
            raise UserError("--resume and --overwrite exclude each other: --resume continues the run in --out, --overwrite replaces it")
        if out.exists() and not out.is_dir():
            raise UserError(f"output path {out} exists and is not a folder")
        ours = out.is_dir() and run_folder.is_ours(out)
        if ours:
            run_folder.lock(out)  # before anything is read, replaced or resumed: one writer per folder
        if ours and (out / CONFIG_FILE).is_file() and not overwrite:
            if not resume:
                raise UserError(f"output folder {out} holds an earlier run; pass --resume to continue it or --overwrite to replace it")
            old = read_run_file(out / CONFIG_FILE, CONFIG_FILE)["config"]
            diff = [k for k, v in cfg.to_dict().items() if k not in ("trials", "out") and old.get(k, _DEFAULTS.get(k)) != v]
            if diff:
                raise UserError(f"cannot resume {out}: it was made with other settings ({', '.join(diff)}); use --overwrite or another --out")
        elif out.is_dir() and any(out.iterdir()) and not ours:
            raise UserError(f"output folder {out} is not empty and is not a heterosearch run; nothing was changed: pick another --out")
        if ours and overwrite:
            foreign = run_folder.foreign_entries(out)
            if foreign:  # refuse before any work, and long before anything is deleted
                raise UserError(f"--overwrite refuses {out}: it holds files heterosearch did not write ({foreign[0]}"
                                f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}); nothing was deleted: "
                                "move them away or pick another --out")
        run = cls(cfg=cfg, out=out)
        run.check_budget()  # bad input is answered before anything is created or replaced
        _ = run.data  # so are missing data and malformed rows
        if cfg.storage is not None:  # fail now, not after minutes of scoring
            from heterosearch.search.study import check_storage

            check_storage(cfg.storage)
        if ours and overwrite:
            run_folder.clear(out)
            if cfg.storage is not None:  # a shared storage outlives the folder: drop the old study too
                from heterosearch.search.study import default_study_name, delete_study

                delete_study(cfg.storage, default_study_name(out, cfg.storage))
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
        run_folder.mark(out)
        run_folder.lock(out)
        run.save_config()
        return run

    @classmethod
    def reopen(cls, run_dir: Path, **overrides: Any) -> Run:
        """A stage command on an existing run folder; ``overrides`` (not None) replace settings."""
        run_dir = Path(run_dir)
        if not (run_dir / CONFIG_FILE).is_file():
            raise UserError(f"{run_dir} is not a heterosearch run folder (no {CONFIG_FILE}); start one with `heterosearch score` or `run`")
        stored = read_run_file(run_dir / CONFIG_FILE, CONFIG_FILE)["config"]
        stored.update({k: v for k, v in overrides.items() if v is not None})
        stored["proxies"] = tuple(stored.get("proxies", ()))
        stored["out"] = str(run_dir)
        run = cls(cfg=RunConfig(**stored), out=run_dir)
        run.check_budget()
        from heterosearch import run_folder

        run_folder.lock(run_dir)
        return run  # the caller saves config.json once its stage has succeeded (a failed command changes nothing)

    def save_config(self) -> None:
        write_json(
            self.out / CONFIG_FILE,
            {"config": self.cfg.to_dict(), "space": self.space.to_dict(), "argv": sys.argv, "versions": versions(), "seed": self.cfg.seed},
        )

    def require_budget(self) -> int:
        if self.cfg.budget is None:
            raise UserError("this step needs a budget: pass --budget (e.g. 0.5M)")
        return self.cfg.budget

    def path(self, name: str) -> Path:
        return self.out / name

    # -- what the run is about (loaded once, on first use) ------------------------------
    @cached_property
    def space(self) -> SearchSpace:
        space = load_space(self.cfg.space)
        if "lora" not in space.kinds:
            raise UserError(f"space {space.name!r} has no 'lora' section: every space adapts sites with LoRA at least")
        return space

    @cached_property
    def spec(self) -> Any:
        from heterosearch.tasks import TASKS

        return TASKS.get(self.cfg.task)

    @cached_property
    def model_path(self) -> str:
        from heterosearch.models import resolve_model

        return resolve_model(self.cfg.model)

    def new_model(self) -> Any:
        """A fresh base model with a classifier head initialised from the run's seed."""
        from heterosearch.models import load_model

        model, _ = load_model(self.model_path, self.spec.num_labels, self.cfg.seed)
        return model

    @cached_property
    def tokenizer(self) -> Any:
        from heterosearch.models import load_model

        model, tok = load_model(self.model_path, self.spec.num_labels, self.cfg.seed)
        self.__dict__["_first_model"] = model
        return tok

    @cached_property
    def all_sites(self) -> list[Any]:
        from heterosearch.models import discover_sites

        return discover_sites(self._meta_model())

    def _meta_model(self) -> Any:
        # Site shapes only: build the architecture without weights (a fraction of a second).
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification

        from heterosearch.models.loading import _first_line, _hub_reachable

        local = Path(self.model_path).is_dir()
        try:  # a folder without config.json, an unknown architecture, an unreachable hub: one line, no traceback
            config = AutoConfig.from_pretrained(
                self.model_path, num_labels=self.spec.num_labels, local_files_only=not local and not _hub_reachable()
            )
            with torch.device("meta"):
                return AutoModelForSequenceClassification.from_config(config)
        except Exception as exc:
            raise UserError(
                f"cannot load model {self.cfg.model or self.model_path!r}: {_first_line(exc)} "
                "(pass --model PATH to a Hugging Face model folder with config.json)"
            ) from None

    @cached_property
    def sites(self) -> list[Any]:
        """The sites the space may adapt (its roles), in site order."""
        roles = set(self.space.lora.roles)
        chosen = [s for s in self.all_sites if s.role in roles]
        if not chosen:
            have = sorted({s.role for s in self.all_sites})
            raise UserError(f"space {self.space.name!r} adapts roles {sorted(roles)}, but the model has only {have}")
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
    def site_map(self) -> dict[str, Any]:
        return {s.key: s for s in self.all_sites}

    @cached_property
    def data(self) -> Any:
        from heterosearch.tasks import load_task_data

        return load_task_data(self.spec, self.cfg.data_dir)

    @cached_property
    def carved(self) -> Any:
        """The training file cut into fit and validation parts (``tasks/splits.py``)."""
        from heterosearch.tasks.splits import carve_validation

        return carve_validation(self.data.train, self.cfg.val_fraction, self.cfg.split_seed, not self.spec.is_regression)

    @property
    def splits(self) -> dict[str, Any]:
        """What each split is and where it came from: recorded in every results file."""
        from heterosearch.tasks.splits import SPLIT_ROLES

        return {
            "roles": dict(SPLIT_ROLES),
            "source": self.data.source,
            **self.carved.describe(self.cfg.val_fraction, self.cfg.split_seed, not self.spec.is_regression),
            "test_examples": len(self.data.dev),
            "test_file": self.data.dev.source,
        }

    @cached_property
    def encoded(self) -> dict[str, Any]:
        """``train`` (fit), ``val`` (selection) and ``test`` (the GLUE dev file: report only)."""
        from heterosearch.tasks.batching import encode

        # Never longer than the model's position table (longer inputs would index past it):
        # truncate there, as a tokenizer's model_max_length would.
        limit = getattr(self._meta_model().config, "max_position_embeddings", None)
        length = min(self.cfg.max_length, limit) if isinstance(limit, int) and limit > 0 else self.cfg.max_length
        regression = self.spec.num_labels == 1
        parts = {"train": self.carved.train, "val": self.carved.val, "test": self.data.dev}
        return {name: encode(self.tokenizer, p.texts, p.labels, regression, length) for name, p in parts.items()}

    # -- budget -------------------------------------------------------------------------
    def baseline_roles(self) -> tuple[str, ...]:
        return self.space.baseline.roles

    def check_budget(self) -> None:
        if self.cfg.budget is None:
            return
        full = sum(s.d_in * s.d_out for s in self.sites)
        if self.cfg.budget > full:
            raise UserError(
                f"budget {format_params(self.cfg.budget)} is above the cost of fine-tuning every weight the space "
                f"{self.space.name!r} adapts on this model ({format_params(full)} parameters); pass --budget {full} or less"
            )
        lora = self.space.lora
        r_min = min(r for r in lora.ranks if r > 0)
        cheapest = min(lora_params(s.d_in, s.d_out, r_min) for s in self.sites)
        if self.cfg.budget < cheapest:
            raise UserError(
                f"budget {format_params(self.cfg.budget)} is below the cheapest allocation of space "
                f"{self.space.name!r} on this model ({format_params(cheapest)} parameters: one site at rank {r_min}); "
                f"pass --budget {cheapest} or more"
            )
        base = [s for s in self.sites if s.role in self.baseline_roles()]
        if not base:
            raise UserError(
                f"space {self.space.name!r} compares against uniform LoRA on {','.join(self.baseline_roles())}, but it adapts "
                f"only {','.join(self.space.lora.roles)}: add those roles to the space, or set its baseline roles to some it adapts"
            )
        base_min = sum(lora_params(s.d_in, s.d_out, 1) for s in base)
        if self.cfg.budget < base_min:
            raise UserError(
                f"budget {format_params(self.cfg.budget)} is below the cheapest baseline "
                f"(uniform LoRA r=1 on {','.join(self.baseline_roles())}: {format_params(base_min)} parameters); "
                f"pass --budget {base_min} or more"
            )

    def baseline_allocation(self) -> tuple[Allocation, str]:
        """Uniform LoRA on the baseline roles at the largest integer rank within the budget."""
        roles = self.baseline_roles()
        rank = largest_uniform_rank(self.sites, roles, self.cfg.budget)
        return uniform_allocation(self.sites, roles, rank), f"uniform LoRA r={rank} on {','.join(roles)}"


# -- stages ----------------------------------------------------------------------------
def stage_score(run: Run) -> Any:
    """Score every (site, rank) candidate with every proxy; cached in scores.json."""
    from heterosearch.proxies import Scores, score_candidates
    from heterosearch.tasks.batching import collate, train_batches

    path = run.path(SCORES_FILE)
    other_kinds = sorted(set(run.space.kinds) - {"lora"})
    if path.is_file():
        scores = Scores.load(path)
        have_kinds = all(k in scores.kinds.get("spectral", {}) or k in scores.undefined.get("spectral", {}) for k in other_kinds)
        if set(run.cfg.proxies) <= set(scores.curves) and (have_kinds or "spectral" not in run.cfg.proxies):
            say(f"[dim]scores: reusing {path}[/dim]")
            return scores
    t0 = time.perf_counter()
    enc = run.encoded["train"]
    idx = train_batches(enc, run.cfg.batch_size, run.cfg.seed, epoch=0)[: run.cfg.score_batches]
    batches = [collate(run.tokenizer, enc, i) for i in idx]
    model = run.__dict__.pop("_first_model", None) or run.new_model()
    grads: dict[str, Any] = {}
    scores = score_candidates(
        model, run.sites, batches, run.cfg.proxies, max(run.space.lora.ranks), run.space.lora.scaling, run.cfg.seed,
        keep_grads=grads,
    )
    if other_kinds:
        from heterosearch.proxies.kinds import score_kinds

        scores.kinds, scores.undefined = score_kinds(model, run.sites, batches, run.space, grads, run.cfg.proxies, run.cfg.seed)
    del grads
    scores.save(path)
    run.timings["score"] = time.perf_counter() - t0
    say(f"scores: {len(run.sites)} sites x {len(run.space.lora.ranks) - 1} ranks x {len(run.cfg.proxies)} proxies "
        f"from {len(batches)} batches in {run.timings['score']:.1f}s")
    return scores


def stage_search(run: Run, scores: Any) -> tuple[Allocation, dict[str, Any]]:
    """Optuna study + exact optimum of the same objective; the better one is the winner."""
    from heterosearch.search import run_search

    from heterosearch.search.build import build_problem, decode
    from heterosearch.search.study import PARAM_PREFIX, default_study_name

    t0 = time.perf_counter()
    problem = build_problem(run.space, run.sites, scores, run.cfg.proxy, run.require_budget())
    roles = run.baseline_roles()
    enq_rank = largest_uniform_rank(run.sites, roles, run.cfg.budget, run.space.lora.ranks)
    enq_lora = uniform_allocation(run.sites, roles, enq_rank).lora if enq_rank else {}
    enqueue = problem.baseline_choice({PARAM_PREFIX + k: r for k, r in enq_lora.items()}) if enq_rank else None
    result = run_search(problem, run.cfg.trials, run.cfg.seed, run.path(STUDY_FILE), enqueue=enqueue,
                        storage=run.cfg.storage, study_name=default_study_name(run.out, run.cfg.storage))
    use_exact = result.exact_objective >= result.best_objective
    winner = decode(result.exact_choice if use_exact else result.best_choice, run.space, run.sites)
    summary = {
        "proxy": run.cfg.proxy,
        "objective": "sum of the chosen options' proxy scores (per-site LoRA ranks, shortcuts, one bank or MoS pool "
        "per role), divided by the best single option's score",
        "exact": result.exact,
        "best_objective": result.best_objective,
        "best_params": result.best_params,
        "exact_objective": result.exact_objective,
        "exact_params": result.exact_params,
        "ratio": result.ratio,
        "trials": result.trials,
        "feasible_trials": result.feasible_trials,
        "repaired_trials": sum(bool(h.get("repaired")) for h in result.history),
        "seconds": result.seconds,
        "exact_seconds": result.exact_seconds,
        "exact_frontier": [[int(b), v] for b, v in result.exact_frontier],  # optimum at every budget up to this one
        "winner_source": "exact" if use_exact else "optuna",
        "optuna_allocation": decode(result.best_choice, run.space, run.sites).to_dict() if result.best_choice else {},
        "enqueued_baseline": {"roles": list(roles), "rank": enq_rank},
        "study": STUDY_FILE if run.cfg.storage is None else result.storage,
        "study_name": result.study_name,
        "winner": winner.to_dict(),
        "history": result.history,
    }
    summary[INPUTS_KEY] = input_hashes(run.out, "search")  # the scores it was searched on (stages.py)
    write_json(run.path(SEARCH_FILE), summary)
    run.timings["search"] = time.perf_counter() - t0
    say(f"search: {result.trials} trials in {result.seconds:.1f}s, best feasible objective {result.best_objective:.4f} "
        f"= {100 * result.ratio:.1f}% of the exact optimum {result.exact_objective:.4f}")
    return winner, summary


def write_peft_native(run: Run, winner: Allocation) -> Path | None:
    """RUN/adapter/: the trained LoRA-only winner as a folder plain PEFT loads (export/peft_native.py)."""
    from heterosearch.export.loader import load_adapters
    from heterosearch.export.peft_native import ADAPTER_DIR, public_model_id, save_peft_adapter

    if not winner.lora or winner.elements:
        return None  # banks, pools, shortcuts: heterosearch.load_adapters (no PEFT form)
    model = load_adapters(run.new_model(), run.out)
    return save_peft_adapter(model, winner, run.site_map, run.space.lora.scaling, run.path(ADAPTER_DIR),
                             base_model_id=public_model_id(run.cfg.model), task_type="SEQ_CLS")


def stage_export(run: Run, winner: Allocation) -> dict[str, Any]:
    """allocation.json (ours) + adapter_config.json (PEFT), checked by loading it with PEFT."""
    from heterosearch.export import check_peft_roundtrip, lora_config, save_lora_config, write_allocation

    sites = run.site_map
    head = sum(p.numel() for n, p in run._meta_model().named_parameters() if n.split(".")[0] in ("classifier", "pre_classifier", "score"))
    data = write_allocation(
        run.path(ALLOCATION_FILE),
        winner,
        sites,
        run.space.lora.scaling,
        model=run.cfg.model or "all-MiniLM-L6-v2",
        task=run.cfg.task,
        space={"name": run.space.name, "version": run.space.version},
        budget=run.cfg.budget,
        head_params=head,
        proxy=run.cfg.proxy,
        seed=run.cfg.seed,
        versions=versions(),
        **{INPUTS_KEY: input_hashes(run.out, "export")},  # the search.json it was exported from
    )
    # The LoRA part exports to PEFT; banks, pools and shortcuts are heterosearch's own
    # (allocation.json + heterosearch.load_adapters). PEFT reloads from base_model_name_or_path:
    # give it a path it can load (the packaged copy).
    peft_part = Allocation(lora=winner.lora)
    if peft_part.lora:
        config = lora_config(peft_part, sites, run.space.lora.scaling, base_model=run.model_path, task_type="SEQ_CLS")
        save_lora_config(config, run.out)
        ranks = {sites[k].name: r for k, r in peft_part.lora.items()}
        check_peft_roundtrip(run._meta_model, run.out, peft_part.params(sites), ranks)
    data["peft_params"] = peft_part.params(sites)
    return data


def stage_verify(run: Run, winner: Allocation) -> dict[str, Any]:
    """Short-train the winner and the uniform baseline with the same seed, data order and schedule."""
    from heterosearch.train import train_allocation

    path = run.path(VERIFY_FILE)
    done: dict[str, Any] = read_run_file(path, VERIFY_FILE) if path.is_file() else {}
    cfg = run.cfg.train_config()
    evals = {k: v for k, v in run.encoded.items() if k != "train"}
    baseline, baseline_name = run.baseline_allocation()
    for label, alloc, name in (("winner", winner, "searched allocation"), ("baseline", baseline, baseline_name)):
        if label in done and done[label].get("allocation") == alloc.to_dict():
            continue
        t0 = time.perf_counter()
        res = train_allocation(
            run.new_model, run.tokenizer, run.all_sites, alloc, run.space.lora.scaling,
            run.encoded["train"], evals, run.spec, cfg, label=label, checkpoint=run.path("checkpoints") / f"{label}.pt",
            save_dir=run.out if label == "winner" else None,
        )
        expected = alloc.params(run.site_map)
        if res.params != expected:
            raise AssertionError(f"{label}: instantiated {res.params} adapter parameters, budget formula says {expected}")
        entry = {
            "name": name,
            **res.metrics.get("test", {}),  # the report split at the top level; every split under "splits"
            **res.summary(),
            "resumed_from_step": res.resumed_from,
            "allocation": alloc.to_dict(),
        }
        done[label] = entry
        if label == "winner":
            write_peft_native(run, alloc)
        write_json(path, done)  # after each model, so a resumed run skips it
        run.timings[f"train_{label}"] = time.perf_counter() - t0
    done["train_config"] = cfg.to_dict()
    done["split_roles"] = run.splits
    done["both_trivial"] = all(done[k].get("trivial", {}).get("test", False) for k in ("winner", "baseline"))
    write_json(path, done)
    return done


def write_results(run: Run, winner: Allocation, search: dict[str, Any], verify: dict[str, Any] | None, scores: Any) -> dict[str, Any]:
    from heterosearch.report.render import render_run_report

    results = {
        "heterosearch_version": __version__,
        "versions": versions(),
        "argv": sys.argv,
        "task": run.cfg.task,
        "model": run.cfg.model or "all-MiniLM-L6-v2",
        "space": {"name": run.space.name, "version": run.space.version},
        "budget": run.cfg.budget,
        "params": winner.params(run.site_map),
        "head_params": verify["winner"]["head_params"] if verify else None,
        "proxy": run.cfg.proxy,
        "seed": run.cfg.seed,
        "allocation": winner.to_dict(),
        "sites": scores.sites,
        "search": {k: v for k, v in search.items() if k != "history"},
        "scoring": scores.meta,
        "splits": run.splits,
        "verify": verify,
        "timings": run.timings,
    }
    write_json(run.path(RESULTS_FILE), results)
    render_run_report(run.out)
    return results


def run_all(cfg: RunConfig, resume: bool = False, overwrite: bool = False, verify: bool = True) -> dict[str, Any]:
    from heterosearch import run_folder

    t0 = time.perf_counter()
    out = Path(cfg.out or cfg.default_out())
    held_before = run_folder.holds(out)
    try:
        run = Run.open(cfg, resume=resume, overwrite=overwrite)
        say(f"run folder: {run.out}  (budget {format_params(cfg.budget)}, task {cfg.task}, proxy {cfg.proxy}, seed {cfg.seed})")
        scores = stage_score(run)
        winner, search = stage_search(run, scores)
        stage_export(run, winner)
        verified = stage_verify(run, winner) if verify else None
        run.timings["total"] = time.perf_counter() - t0
        return write_results(run, winner, search, verified, scores)
    finally:
        if not held_before:
            run_folder.unlock(out)


def check_exported(run: Run, winner: Allocation) -> None:
    """Training reads search.json's winner and writes next to allocation.json: they must agree.

    After ``search DIR --budget B2`` the old allocation.json (and its PEFT config) describe
    another budget; training then would report one allocation and ship another.
    """
    from heterosearch.export.allocation_file import read_allocation

    path = run.path(ALLOCATION_FILE)
    if not path.is_file():
        raise UserError(f"{run.out} has no {ALLOCATION_FILE}: run `heterosearch export {run.out}` first")
    exported, data = read_allocation(path)
    check_current(run.out, "train", {ALLOCATION_FILE: data})
    if exported.to_dict() != winner.to_dict() or data.get("budget") != run.cfg.budget:
        raise UserError(
            f"{path} (budget {data.get('budget')}) is older than search.json (budget {run.cfg.budget}): "
            f"run `heterosearch export {run.out}` first, then train"
        )


def check_searched(run: Run, search: dict[str, Any]) -> None:
    """Export reads search.json: it must come from the scores in the folder now (stages.py)."""
    check_current(run.out, "export", {SEARCH_FILE: search})


def load_winner(run: Run) -> tuple[Allocation, dict[str, Any]]:
    """The winner recorded by the search stage."""
    search = read_run_file(run.path(SEARCH_FILE), SEARCH_FILE) if run.path(SEARCH_FILE).is_file() else None
    if search is None:
        raise UserError(f"{run.out} has no {SEARCH_FILE}: run `heterosearch search {run.out} --budget B` first")
    return Allocation.from_dict(search["winner"]), search


def load_results(run_dir: Path) -> dict[str, Any]:
    return read_run_file(Path(run_dir) / RESULTS_FILE, RESULTS_FILE)
