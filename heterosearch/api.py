"""The Python API: ``heterosearch.optimize`` -> a result that PEFT, Trainer and the CLI's files understand.

    import heterosearch
    result = heterosearch.search(model, train_dataset, budget="83k", tokenizer=tokenizer)
    peft_model = get_peft_model(model, result.lora_config())      # plain PEFT from here on
    result.save("my-allocation")                                  # allocation.json (+ adapter_config.json)

``search`` scores the model's sites with a zero-cost proxy on a few training batches, then
finds the allocation with the best proxy objective under the budget, exactly (the knapsack the
CLI's ``run`` also solves; its Optuna study explores the same objective). It never trains, and
writes nothing unless ``save`` is called. ``train_data`` may be a ``datasets.Dataset`` (already
tokenized: ``input_ids``, optional ``attention_mask`` / ``token_type_ids``, ``label`` or
``labels``), a PyTorch ``DataLoader`` (or any iterable) of batch dicts, or a task name
(``"mrpc"``: the task's training file, tokenized with ``tokenizer``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heterosearch.errors import UserError
from heterosearch.space.allocation import Allocation


@dataclass
class SearchResult:
    """The searched allocation of one model under one budget."""

    allocation: Allocation
    params: int  # exact adapter parameters (shared tensors once)
    budget: int
    proxy: str
    objective: float  # at the winner (proxy: normalised score sum; lookahead: val-loss drop; train: -val loss)
    space: Any  # SearchSpace
    sites: dict[str, Any] = field(repr=False)  # site key -> Site, every adaptable site of the model
    base_model_id: str | None = None
    prefix: str = ""  # the task wrapper's base_model_prefix ("bert"): stripped from PEFT module names
    objective_name: str = "proxy"
    winner_source: str = "exact"  # "exact" (proxy), or the best trial's: "optuna", "warm:exact", "warm:uniform_qv" ...

    def lora_config(self, task_type: str | None = "SEQ_CLS", **overrides: Any) -> Any:
        """A ``peft.LoraConfig`` for ``get_peft_model``: one rank per module, relative module names
        (they match the task model and the bare backbone), the run's scale rule. LoRA-only allocations."""
        from heterosearch.export.peft_native import native_lora_config

        if self.allocation.elements:
            kinds = ", ".join(sorted(self.allocation.elements))
            raise UserError(f"this allocation has {kinds} elements, which PEFT cannot express: use result.apply(model)")
        config = native_lora_config(self.allocation, self.sites, self.space.lora.scaling, self.base_model_id,
                                    self.prefix, None, task_type)
        for k, v in overrides.items():
            setattr(config, k, v)
        return config

    def apply(self, model: Any, seed: int = 0) -> Any:
        """Adapt ``model`` in place with heterosearch's own modules (every kind); only adapters and head train."""
        from heterosearch.adapters import apply_allocation
        from heterosearch.models import discover_sites

        sites = discover_sites(model, self.space.site_roles)
        return apply_allocation(model, sites, self.allocation, self.space.lora.scaling, seed=seed)

    def save(self, directory: str | Path) -> Path:
        """``allocation.json`` (loadable by ``heterosearch.load``), plus ``adapter_config.json`` if LoRA-only."""
        from heterosearch.export.allocation_file import write_allocation
        from heterosearch.export.peft_config import save_lora_config
        from heterosearch.pipeline import versions

        out = Path(directory)
        space = {"name": self.space.name, "version": self.space.version}
        if self.space.site_roles:  # load_adapters finds the sites again with them
            space["roles"] = self.space.site_roles
        write_allocation(out / "allocation.json", self.allocation, self.sites, self.space.lora.scaling,
                         model=self.base_model_id, space=space,
                         budget=self.budget, proxy=self.proxy, versions=versions())
        if self.allocation.lora and not self.allocation.elements:
            save_lora_config(self.lora_config(), out)
        return out


def search(
    model: Any,
    train_data: Any,
    budget: int | str,
    space: str | Path = "lora",
    proxy: str = "spectral",
    objective: str = "proxy",
    tokenizer: Any = None,
    batch_size: int = 32,
    max_length: int = 128,
    score_batches: int = 8,
    seed: int = 0,
    scoring: str = "auto",
    score_micro_batch: int | None = None,
    gradient_checkpointing: bool = False,
    trials: int = 40,
    val_data: Any = None,
    lr: float = 1e-3,
    train_steps: int | None = None,
    rung_steps: int | None = None,
    trial_seeds: int = 1,
) -> SearchResult:
    """Search where ``model``'s LoRA parameters go under ``budget`` (see the module doc).

    ``model``: a Hugging Face model with its task head (e.g. ``AutoModelForSequenceClassification``);
    it is scored, not changed. ``objective``: ``"proxy"`` (the zero-cost objective, solved
    exactly; ``trials`` unused) or ``"lookahead"`` (an in-memory Optuna study of ``trials``
    trials, warm-started with the exact proxy optimum, the uniform baselines and the proxy's
    shortlist; each trial trains a copy of ``model`` for a few steps at ``lr`` and measures the
    drop of loss on ``val_data``, which takes the same forms as ``train_data``; without it,
    the batches after the scoring batches of ``train_data`` are held out), or ``"train"`` (the
    same study, but each trial trains a copy for ``train_steps`` steps, default 18, with the
    recipe's warm-up and decay at ``lr`` on the scoring batches (cycled) and reports minus the
    mean loss on ``val_data`` at successive-halving rungs, ``optimize/train_objective.py``; a
    pruned trial stops early; ``rung_steps``: the rung's step, default a third of ``train_steps``,
    0 = no pruning, every trial a finalist trained to the end; on MiniLM about 1 s per step and 2 s
    per rung on 2 CPU threads; ``trial_seeds``: trainings per trial, each at its own seed and batch
    order, the value their mean; from 2 on, the winner must beat the uniform-all-sites warm start
    seed by seed by more than the noise, else that baseline is returned).
    ``scoring``: ``"exact"``,
    ``"streaming"`` (per-site sketches, for large models) or ``"auto"``; ``score_micro_batch`` /
    ``gradient_checkpointing`` bound the scoring pass's memory (``proxies/settings.py``). Raises ``UserError`` on bad input.
    """
    import math

    from heterosearch.models import discover_sites
    from heterosearch.models.roles import resolve_roles
    from heterosearch.optimize.build import build_problem, decode
    from heterosearch.optimize.objective import check_objective
    from heterosearch.proxies import PROXIES
    from heterosearch.proxies.kinds import score_space
    from heterosearch.proxies.settings import ScoringOptions
    from heterosearch.space import load_space
    from heterosearch.space.budget import parse_budget

    check_objective(objective)
    PROXIES.get(proxy)
    options = ScoringOptions(method=scoring, micro_batch=score_micro_batch, checkpointing=bool(gradient_checkpointing))
    b = parse_budget(str(budget)) if not isinstance(budget, int) else budget
    if not (isinstance(b, int) and b > 0):
        raise UserError(f"budget must be a positive number of adapter parameters, got {budget!r}")
    if not (1 <= score_batches <= 100_000 and 1 <= batch_size <= 4096 and 0 <= seed < 2**32 and 1 <= trials <= 10**6):
        raise UserError("score_batches, batch_size, seed and trials must be in [1, 1e5], [1, 4096], [0, 2**32) and [1, 1e6]")
    the_space = load_space(str(space))
    all_sites = discover_sites(model, the_space.site_roles)
    # q, k, v -> qkv on a fused model; a role with no site is an error (models/roles.py)
    roles = set(resolve_roles(the_space.lora.roles, all_sites, f"search space {the_space.source}: kinds.lora.roles"))
    sites = [s for s in all_sites if s.role in roles]
    if not sites:
        raise UserError(f"space {the_space.name!r} adapts roles {sorted(roles)}, which this model does not have")
    la_cfg: Any = None
    if objective == "lookahead":
        from heterosearch.optimize.lookahead import LookaheadConfig

        la_cfg = LookaheadConfig(lr=lr, seed=seed)
    elif objective == "train":
        from heterosearch.optimize.train_objective import config_for_steps

        la_cfg = config_for_steps(train_steps, seed, rung_steps, seeds=trial_seeds)
    held_out = (getattr(la_cfg, "val_batches", TRAIN_VAL_BATCHES) if la_cfg is not None and val_data is None else 0)
    batches = _batches(train_data, tokenizer, model, batch_size, max_length, score_batches + held_out, seed)
    if held_out and len(batches) <= score_batches:
        raise UserError(f"train_data has {len(batches)} batches: the {objective} objective needs more than score_batches "
                        f"({score_batches}) to hold some out, or pass val_data")
    val_batches = batches[score_batches:] if held_out else None
    batches = batches[:score_batches]
    scores = score_space(model, sites, batches, the_space, [proxy], seed, options)  # the score stage's own function
    problem = build_problem(the_space, sites, scores, proxy, b)
    exact = problem.solve()
    choice, value, source = exact.choice, float(exact.value), "exact"
    if la_cfg is not None:
        choice, value, source = _optuna_search(model, all_sites, sites, the_space, problem, exact, batches, val_batches,
                                               val_data, tokenizer, batch_size, max_length, la_cfg, trials, objective, lr)
    allocation = decode(choice, the_space, sites)
    site_map = {s.key: s for s in all_sites}
    return SearchResult(
        allocation=allocation, params=allocation.params(site_map), budget=b, proxy=proxy,
        objective=value if math.isfinite(value) else 0.0, space=the_space, sites=site_map,
        base_model_id=getattr(model, "name_or_path", None) or None,
        prefix=getattr(model, "base_model_prefix", "") or "", objective_name=objective, winner_source=source,
    )


#: Validation batches the train objective holds out of ``train_data`` when no ``val_data`` is given.
TRAIN_VAL_BATCHES = 2


def _optuna_search(model: Any, all_sites: list[Any], sites: list[Any], space: Any, problem: Any, exact: Any,
                   fit: list[Any], val: list[Any] | None, val_data: Any, tokenizer: Any, batch_size: int,
                   max_length: int, cfg: Any, trials: int, objective: str, lr: float) -> tuple[dict[str, Any], float, str]:
    """An in-memory study of a non-additive objective over ``problem`` (``optimize/lookahead.py``,
    ``optimize/train_objective.py``): (choice, value, winner source)."""
    from heterosearch.optimize.build import decode
    from heterosearch.optimize.lookahead import Lookahead
    from heterosearch.optimize.shortlist import shortlist
    from heterosearch.optimize.study import IN_MEMORY, run_search
    from heterosearch.optimize.train_objective import for_batches
    from heterosearch.optimize.warm import warm_starts

    if val is None:
        val = _batches(val_data, tokenizer, model, batch_size, max_length, getattr(cfg, "val_batches", TRAIN_VAL_BATCHES),
                       cfg.seed)
    to_allocation = lambda c: decode(c, space, sites)  # noqa: E731
    pruner = None
    if objective == "train":
        evaluate: Any = for_batches(model, all_sites, space.lora.scaling, to_allocation, fit, val, cfg, lr)
        pruner = cfg.pruner()
    else:
        evaluate = Lookahead(model, all_sites, space.lora.scaling, to_allocation, fit, val, cfg)
    warm = warm_starts(problem, exact.choice, shortlist(problem, exact=exact), sites, space.baseline.roles,
                       space.lora.roles, space.lora.ranks)
    result = run_search(problem, trials, cfg.seed, None, storage=IN_MEMORY, warm_starts=warm, evaluate=evaluate,
                        objective_spec={"name": objective, "config": cfg.to_dict()}, pruner=pruner)
    source = "optuna" if result.best_source.startswith("sampler") else result.best_source
    return result.best_choice, result.best_objective, source


def verify(run_dir: str | Path, seeds: int | Sequence[int] = 3, methods: str | Sequence[str] | None = None,
           train_epochs: float | None = None, max_train_steps: int | None = None, overwrite: bool = False, *,
           lr: float | None = None, warmup: float | None = None, batch_size: int | None = None,
           max_length: int | None = None, lora_dropout: float | None = None, device: str | None = None,
           precision: str | None = None, lr_scaling: str | None = None) -> dict[str, Any]:
    """Train a run's winner and the baselines at its budget over ``seeds``; paired statistics.

    The ``verify`` command's work (``evidence.seeds.verify_run``): resumable, writes
    ``RUN/verify_seeds.json`` and returns its content (``summary`` holds per-split means, paired
    differences with 95 % intervals and the seeds a 1-point difference needs; ``selection`` the validated
    pick, ``evidence/selection.py``: the winner only if it beats uniform LoRA on all sites on the validation
    split by more than the seed noise, else ``"uniform_all"``; None when that baseline is not among
    ``methods``). ``run_dir`` is a
    folder made by ``heterosearch run`` (the CLI) with a search in it.

    The training settings are the command's flags: ``lr`` (the base rate), ``lr_scaling``
    ("rank": LoRA's rate falls at high rank, ``recipe.lr_factor``; "none"), ``warmup``, ``batch_size``,
    ``max_length``, ``lora_dropout``, ``device`` (auto, cpu, cuda, cuda:N, mps) and ``precision``
    (fp32, bf16, fp16); None keeps the run's own (config.json is not changed). ``overwrite``
    discards earlier seeds, which a changed recipe needs. Bad values raise ``UserError``.
    """
    from heterosearch.evidence import verify_run

    if isinstance(methods, (list, tuple)):
        methods = ",".join(methods)
    recipe = {"lr": lr, "warmup": warmup, "batch_size": batch_size, "max_length": max_length,
              "lora_dropout": lora_dropout, "device": device, "precision": precision, "lr_scaling": lr_scaling}
    # RunConfig checks each value as the CLI's flags are checked (pipeline/config.py): one UserError line.
    return verify_run(run_dir, seeds=seeds, methods=methods, train_epochs=train_epochs, max_train_steps=max_train_steps,
                      overwrite=overwrite, recipe={k: v for k, v in recipe.items() if v is not None})


def merge_and_unload(model: Any) -> Any:
    """Fold LoRA, banks and MoS pools into the base weights: a plain transformers model (shortcuts stay)."""
    from heterosearch.adapters.merge import merge_and_unload as _merge

    return _merge(model)


def load(directory: str | Path, model: Any = None, seed: int = 0) -> Any:
    """Rebuild an adapted model from a run or export folder.

    A PEFT-native folder (``RUN/adapter/``) loads through PEFT; otherwise ``allocation.json`` is
    re-applied to ``model`` (default: the model the folder names) with its trained tensors if present.
    """
    from heterosearch.export.loader import load_adapters

    folder = Path(directory)
    if model is None:
        from heterosearch.export.allocation_file import read_allocation

        alloc_file = folder if folder.is_file() else folder / "allocation.json"
        if not alloc_file.is_file():
            raise UserError(f"{folder}: no allocation.json (pass a run or export folder)")
        _, data = read_allocation(alloc_file)
        from heterosearch.models import load_model

        name = data.get("model")
        lm = str(data.get("task", "")).startswith("lm:")  # an lm: run adapted the checkpoint's own LM head model
        model, _ = load_model(None if name in (None, "all-MiniLM-L6-v2") else name, 2, seed, causal_lm=lm)
    return load_adapters(model, folder, seed=seed)


# ---------------------------------------------------------------- train_data -> scoring batches


def _batches(train_data: Any, tokenizer: Any, model: Any, batch_size: int, max_length: int, n: int,
             seed: int) -> list[dict[str, Any]]:
    """The first ``n`` training batches, as dicts of tensors with labels (what the proxies read)."""
    if isinstance(train_data, str):
        return _task_batches(train_data, tokenizer, batch_size, max_length, n, seed)
    if hasattr(train_data, "column_names") and hasattr(train_data, "select"):  # a datasets.Dataset
        return _dataset_batches(train_data, tokenizer, model, batch_size, n, seed)
    if isinstance(train_data, Iterable):  # a DataLoader, or a list of batch dicts
        out = []
        for batch in train_data:
            if len(out) == n:
                break
            out.append(_check_batch(dict(batch)))
        if not out:
            raise UserError("train_data yielded no batches")
        return out
    raise UserError(f"train_data must be a task name, a datasets.Dataset or an iterable of batches, "
                    f"got {type(train_data).__name__}")


def _check_batch(batch: dict[str, Any]) -> dict[str, Any]:
    import torch

    if "label" in batch and "labels" not in batch:
        batch["labels"] = batch.pop("label")
    missing = [k for k in ("input_ids", "labels") if k not in batch]
    if missing:
        raise UserError(f"a training batch needs {', '.join(missing)} (got keys {sorted(batch)[:8]})")
    return {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(v) for k, v in batch.items()
            if k in ("input_ids", "attention_mask", "token_type_ids", "labels")}


def _dataset_batches(ds: Any, tokenizer: Any, model: Any, batch_size: int, n: int, seed: int) -> list[dict[str, Any]]:
    import numpy as np

    if "input_ids" not in ds.column_names:
        raise UserError("the Dataset has no input_ids column: tokenize it first (dataset.map(tokenizer...))")
    keep = [c for c in ("input_ids", "attention_mask", "token_type_ids", "label", "labels") if c in ds.column_names]
    order = np.random.default_rng(seed).permutation(len(ds))[: n * batch_size]
    pad_id = getattr(tokenizer, "pad_token_id", None)
    if pad_id is None:
        pad_id = getattr(model.config, "pad_token_id", None) or 0
    out = []
    for start in range(0, len(order), batch_size):
        rows = ds.select(order[start:start + batch_size].tolist())
        out.append(_check_batch(_pad({c: rows[c] for c in keep}, pad_id)))
    return out


def _pad(columns: Mapping[str, Sequence[Any]], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(x) for x in columns["input_ids"])
    out: dict[str, Any] = {}
    for c, values in columns.items():
        if c in ("label", "labels"):
            out[c] = torch.as_tensor(values)
            continue
        fill = pad_id if c == "input_ids" else 0
        out[c] = torch.tensor([list(v) + [fill] * (width - len(v)) for v in values])
    if "attention_mask" not in out:
        out["attention_mask"] = torch.tensor([[1] * len(v) + [0] * (width - len(v)) for v in columns["input_ids"]])
    return out


def _task_batches(task: str, tokenizer: Any, batch_size: int, max_length: int, n: int, seed: int) -> list[dict[str, Any]]:
    from heterosearch.tasks import load_task
    from heterosearch.tasks.batching import collate, encode, train_batches
    from heterosearch.tasks.lm import encode_lm

    if tokenizer is None:
        raise UserError(f"train_data={task!r} is a task name: pass tokenizer= to tokenize it")
    data = load_task(task)  # a GLUE name, a data file or folder, a hub dataset, or lm:FILE
    spec = data.spec
    enc = (encode_lm(tokenizer, data.train.texts, max_length) if spec.is_lm
           else encode(tokenizer, data.train.texts, data.train.labels, spec.num_labels == 1, max_length))
    return [collate(tokenizer, enc, i) for i in train_batches(enc, batch_size, seed, epoch=0)[:n]]
