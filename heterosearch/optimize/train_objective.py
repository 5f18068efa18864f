"""``train``: multi-fidelity short training of the whole allocation, pruned by successive halving.

Why: the proxy sum cannot see interactions between adapters, and ``lookahead`` sees them only
through a few steps at a constant rate. Here each trial trains its allocation with the run's
recipe (``train/loop.py`` ``train_allocation``: AdamW, warm-up then linear decay, the run's
lr, batch size, max length, LoRA dropout and seed) on the *train* part, and is measured on a
fixed, seeded subset of the *validation split* (selection data; never the test split).

Fidelity (``TrainObjectiveConfig``): a COMPLETE trial trains ``train_steps`` steps (its
schedule spans them, so the rate has decayed to 0 at the end, as in a real training). At the
rungs ``rung_steps * reduction_factor**k`` (below ``train_steps``) the trial reports its
validation value (``trial.report``) and asks ``trial.should_prune()``: Optuna's
``SuccessiveHalvingPruner`` (``min_resource = rung_steps``) lets a trial on only if it is in
the best ``1/reduction_factor`` of the trials that reached that rung, else it ends PRUNED
(user attr ``pruned_by`` = ``"pruner"``, ``pruned_at_step``). The last step is reported too,
never pruned: a trial that trained to the end is always scored.

Default: 18 steps of 32 examples (576 examples, about a sixth of an MRPC epoch), one rung at
6 steps, reduction factor 3, 128 validation examples per rung. On all-MiniLM-L6-v2 (2 CPU
threads) a step of the recipe's batch is 0.75-1.0 s (``reports/mrpc-0.5M/verify.json``) and a
rung's evaluation (128 examples, forward only) about 1-2 s, so a pruned trial costs about 7 s
and a complete one about 20 s (measured at ONE thread on the loaded machine: uniform LoRA q,v at
83k on MRPC, 33 CPU s for a complete trial, 2.5 s per rung evaluation; validation loss 0.673 at
step 6, 0.661 at step 18); in the steady state about three trials start per COMPLETE one
(``--trials`` counts COMPLETE trials), so allow up to a minute per trial of ``--trials``:
``--trials 8`` adds under 10 minutes to a default-sized run. Why this fidelity: it keeps such a
run near the default run's own length, and after the first step every adapter is off its B = 0
start (``optimize/lookahead.py``), so allocations differ. Measured since: on STS-B 18 steps leave
every allocation at the mean predictor's loss, so they cannot rank (``config_for_steps``); 120 steps
separate allocations, but their order did not carry to the 3-epoch training
(``reports/stsb-frontier-train/``). A longer ``train_steps`` costs proportionally more.

Value (maximised, like every heterosearch study): minus the mean validation loss per example
(``metric="loss"``: smooth even when a short training leaves every model at the majority
class), or the task's main metric (``metric="main"``), negated when lower is better.

Several seeds per trial (``seeds``, the CLI's ``--trial-seeds N``): each trial trains its allocation
at the run's seed and the N - 1 next ones and its value is the mean; the first seed alone meets the
rungs. Why: at MRPC 83k four finalists trained once (seed 0) ended within 0.009 validation loss, less
than one seed's noise, and the pick lost 2.1 [-3.7, -0.6] test points to uniform LoRA on all sites
(``reports/finalists/mrpc-83k``). Per-seed values feed the search's tie rule (``optimize/study.py``):
the winner must beat the ``warm:uniform_all`` trial seed by seed by more than the noise.

Deterministic: a trial seeds torch with the run's seed before building its model, the data
order is a pure function of (seed, epoch), and evaluations draw no random numbers, so an
allocation's rung values do not depend on when it was trained or pruned.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from heterosearch.errors import UserError
from heterosearch.optimize.objective import PRUNED_BY_ATTR
from heterosearch.recipe import TRAIN_OBJECTIVE_STEPS

PRUNED_AT_ATTR = "pruned_at_step"
STEPS_ATTR = "trained_steps"  # trial user attr: steps the trial's allocation was trained
METRICS = ("loss", "main")


@dataclass(frozen=True)
class TrainObjectiveConfig:
    """The fidelity of a ``train`` trial (recorded in search.json and in the study)."""

    train_steps: int = TRAIN_OBJECTIVE_STEPS  # 18: steps of a COMPLETE trial (the top fidelity); the lr schedule spans them
    rung_steps: int = 6  # the first rung (the pruner's min_resource); 0 = no rung: every trial trains to the end
    reduction_factor: int = 3  # rungs at rung_steps * factor**k; a trial goes on if in the top 1/factor there
    val_examples: int = 128  # seeded subset of the validation split evaluated at every rung (0 = all of it)
    metric: str = "loss"  # loss (value = -val loss) | main (the task's main metric, direction minded)
    seed: int = 0
    seeds: int = 1  # trainings per trial, at seed, seed + 1, ...; the value is their mean (``trial_seeds``)

    def __post_init__(self) -> None:
        if not 1 <= self.train_steps <= 1_000_000:
            raise UserError(f"train_steps must be in [1, 1000000], got {self.train_steps}")
        if not 0 <= self.rung_steps <= self.train_steps:
            raise UserError(f"rung_steps must be in [0, train_steps={self.train_steps}] (0 = no pruning), "
                            f"got {self.rung_steps}")
        if not 2 <= self.reduction_factor <= 100:
            raise UserError(f"reduction_factor must be in [2, 100], got {self.reduction_factor}")
        if not 0 <= self.val_examples <= 10**7:
            raise UserError(f"val_examples must be >= 0 (0 = the whole validation split), got {self.val_examples}")
        if not 1 <= self.seeds <= 100:
            raise UserError(f"trial seeds must be in [1, 100], got {self.seeds}")
        if self.metric not in METRICS:
            raise UserError(f"train objective metric must be one of {', '.join(METRICS)}, got {self.metric!r}")

    def rungs(self) -> list[int]:
        """The steps at which a trial may be pruned (the pruner's rungs below ``train_steps``; none if ``rung_steps`` is 0)."""
        out, step = [], self.rung_steps
        while 0 < step < self.train_steps:
            out.append(step)
            step *= self.reduction_factor
        return out

    def pruner(self) -> Any:
        """Optuna's successive halving over training steps, with these rungs (set on the study in every process).

        ``rung_steps`` 0: ``NopPruner``, so every trial (warm starts first) is a finalist trained with the
        whole schedule; why: one rung at a third of the recipe pruned uniform LoRA on all sites at STS-B
        83k as a slow starter (-0.783 against -0.753 for the knapsack's pick there) although it ended best
        at 41.5k (``reports/stsb-frontier-finalists-83k/``)."""
        import optuna

        if self.rung_steps == 0:
            return optuna.pruners.NopPruner()
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=self.rung_steps, reduction_factor=self.reduction_factor, min_early_stopping_rate=0)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.seeds == 1:
            del out["seeds"]  # one seed: the spec studies made before trial seeds existed stored, so they resume
        return out

    def seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]


#: ``train(allocation, on_step, seed)``: train ``allocation`` for the config's ``train_steps`` at ``seed`` (data
#: order, adapter init, dropout), calling ``on_step(done, model)`` after every step (it may raise ``optuna.TrialPruned``).
TrainFn = Callable[[Any, Callable[[int, Any], None], int], None]
SEED_VALUES_ATTR = "seed_values"  # trial user attr: {seed: value at the last step} of each of its trainings


class TrainObjective:
    """``(choice, trial) -> value``: train the allocation with rung reports; the last step's value.

    ``train``: see ``TrainFn``; ``validate(model) -> value`` (higher is better, the model is
    put back in training mode after it); ``to_allocation``: choice -> ``Allocation``. Without
    a trial (the knapsack pick scored outside the study) it trains to the end unpruned.
    """

    takes_trial = True  # optimize/objective.py passes the trial, for report/should_prune

    def __init__(self, train: TrainFn, validate: Callable[[Any], float], to_allocation: Callable[[dict[str, Any]], Any],
                 cfg: TrainObjectiveConfig) -> None:
        self.train, self.validate, self.to_allocation, self.cfg = train, validate, to_allocation, cfg
        self.seconds: list[float] = []  # wall seconds per training this process ran (pruned ones included)
        self.cpu_seconds: list[float] = []
        # (allocation, {step: value at that rung}) of every training this process ran, pruned ones included
        self.trained: list[tuple[dict[str, Any], dict[int, float]]] = []
        # allocation -> {step: value}: deterministic, so a repeated point replays its values instead of training
        self._cache: dict[str, dict[int, float]] = {}

    def __call__(self, choice: dict[str, Any], trial: Any = None) -> float:
        """The mean over the config's seeds of the validation value after ``train_steps`` steps.

        Only the first seed's training reports at the rungs (and may be pruned there): the pruner compares
        like with like, and a pruned trial costs one partial training. With several seeds the trial reports
        the mean at the last step and records every seed's value (user attr ``seed_values``), which the
        search's tie rule reads (``optimize/study.py``)."""
        allocation = self.to_allocation(choice)
        key = json.dumps(allocation.to_dict(), sort_keys=True)
        seeds, last = self.cfg.seed_list(), self.cfg.train_steps
        values: dict[int, float] = {}
        for i, seed in enumerate(seeds):
            values[seed] = self._one(allocation, key, seed, trial if i == 0 else None, report_last=len(seeds) == 1)
        mean = sum(values.values()) / len(values)
        if trial is not None:
            trial.set_user_attr(SEED_VALUES_ATTR, {str(s): v for s, v in values.items()})
            if len(seeds) > 1:
                trial.report(mean, last)
                trial.set_user_attr(STEPS_ATTR, last)
        return mean

    def _one(self, allocation: Any, key: str, seed: int, trial: Any, report_last: bool) -> float:
        """One training at ``seed``: rung reports to ``trial`` (None: none), the value at the last step."""
        import optuna

        known = self._cache.setdefault(f"{key}@{seed}", {})
        rungs, last = self.cfg.rungs(), self.cfg.train_steps
        reported: set[int] = set()

        def at_rung(step: int, value: float) -> None:
            known[step] = value
            if trial is None or step in reported or (step == last and not report_last):
                return
            reported.add(step)
            trial.report(value, step)
            trial.set_user_attr(STEPS_ATTR, step)
            if step != last and trial.should_prune():
                trial.set_user_attr(PRUNED_BY_ATTR, "pruner")
                trial.set_user_attr(PRUNED_AT_ATTR, step)
                raise optuna.TrialPruned(f"trial {trial.number} pruned by successive halving at step {step}: {value:.4f}")

        for step in rungs:  # replay what this process already measured for this allocation and seed
            if step not in known:
                break
            at_rung(step, known[step])
        else:
            if last in known:
                at_rung(last, known[last])
                return known[last]

        def on_step(done: int, model: Any) -> None:
            if done in rungs or done == last:
                value = float(self.validate(model))
                model.train()
                at_rung(done, value)

        t0, c0 = time.perf_counter(), time.process_time()
        try:
            self.train(allocation, on_step, seed)
        finally:
            self.seconds.append(time.perf_counter() - t0)
            self.cpu_seconds.append(time.process_time() - c0)
            self.trained.append((allocation.to_dict(), dict(known)))
        return known[last]


def validation_subset(val: Any, n: int, seed: int) -> Any:
    """A seeded subset of ``n`` validation examples (``Encoded``), the same for every trial; ``n = 0``: all of it."""
    import numpy as np

    from heterosearch.tasks.batching import Encoded

    if len(val) == 0:
        raise UserError("the train objective needs a validation split: raise --val-fraction")
    if n == 0 or n >= len(val):
        return val
    idx = sorted(np.random.default_rng(seed).permutation(len(val))[:n].tolist())
    labels = None if val.labels is None else [val.labels[i] for i in idx]
    return Encoded([val.features[i] for i in idx], labels, val.regression, val.lm)


def validator(tokenizer: Any, val: Any, spec: Any, cfg: TrainObjectiveConfig, batch_size: int = 64,
              precision: str = "fp32") -> Callable[[Any], float]:
    """model -> value on the validation subset: minus the mean loss, or the main metric (negated if lower is better)."""
    from heterosearch.train.loop import evaluate_split

    def value(model: Any) -> float:
        metrics, loss, _ = evaluate_split(model, tokenizer, val, spec, batch_size, precision)
        if cfg.metric == "loss":
            return -loss
        main = float(metrics[spec.main_metric])
        return main if spec.higher_is_better else -main

    return value


#: The run settings a train trial depends on (stored in the study: a worker rebuilds the objective from them).
RUN_KEYS = ("task", "model", "space", "seed", "data_dir", "batch_size", "max_length", "lr", "warmup", "lora_dropout",
            "val_fraction", "split_seed", "precision", "text_columns", "label_column", "problem")


def spec_for_run(run_cfg: Any, cfg: TrainObjectiveConfig) -> dict[str, Any]:
    """What a train study evaluates: its fidelity and the run settings (data and recipe) it trains with."""
    settings = run_cfg.to_dict()
    return {"name": "train", "config": cfg.to_dict(), "run": {k: settings[k] for k in RUN_KEYS}}


def config_for_steps(steps: int | None, seed: int, rung_steps: int | None = None,
                     val_examples: int | None = None, seeds: int | None = None) -> TrainObjectiveConfig:
    """The fidelity for ``steps`` steps per COMPLETE trial (None = the default 18): one rung, at
    ``rung_steps``, by default ``ceil(steps / reduction_factor)`` (6 of the default 18); ``rung_steps``
    0: no rung, no pruning (each trial trains to the end: a selection among finalists).

    ``val_examples`` (None = 128 with a rung, the whole validation split without one; 0 = the whole
    split): a finalist is evaluated once, after a whole training, so the full split costs seconds
    against minutes and removes a selection noise that mattered: at STS-B 83k the 128-pair subset
    ranked the knapsack's pick over uniform LoRA on all sites (-0.698 against -0.753) while on the
    full 575-pair split the verification's seed-0 trainings of the two rank them the other way
    (0.682 against 0.647 val loss; ``reports/finalists/``).

    Why one rung and not the default's 6 steps followed by x3 rungs: each extra rung triples the
    trials started per completed one, and a rung at 6 steps measures little: on STS-B at 41.5k
    every trial's validation loss (MSE) was 2.185-2.195 at step 6 and 2.196-2.215 at step 18, the
    mean predictor's level (label variance 2.14 on train), so at that fidelity the objective ranks
    how little an allocation disturbs the start, not how it learns (``reports/README.md``)."""
    default = TrainObjectiveConfig()
    steps = default.train_steps if steps is None else steps
    if rung_steps is None:
        rung_steps = -(-steps // default.reduction_factor)  # ceil: one rung
    if val_examples is None:
        val_examples = default.val_examples if rung_steps > 0 else 0
    return TrainObjectiveConfig(train_steps=steps, rung_steps=rung_steps, val_examples=val_examples, seed=seed,
                                seeds=1 if seeds is None else seeds)


def run_config(run_cfg: Any) -> TrainObjectiveConfig:
    """A run's train-objective settings: ``RunConfig.train_steps``, ``rung_steps``, ``val_examples``, ``trial_seeds``
    (None = the defaults) and its seed."""
    return config_for_steps(run_cfg.train_steps, run_cfg.seed, run_cfg.rung_steps, run_cfg.val_examples,
                            run_cfg.trial_seeds)


def for_run(run: Any, cfg: TrainObjectiveConfig) -> TrainObjective:
    """The train objective of a run (``pipeline.RunInputs``): its model, sites, recipe, train part and validation split."""
    from heterosearch.optimize.build import decode
    from heterosearch.train.loop import train_allocation

    tokenizer, spec, space, sites = run.tokenizer, run.spec, run.space, run.sites
    train, val = run.encoded["train"], validation_subset(run.encoded["val"], cfg.val_examples, cfg.seed)
    # epochs is only an upper bound here: max_steps = train_steps sets the length and the schedule
    recipe = run.train_config(epochs=1000.0, max_steps=cfg.train_steps)
    base = run.take_model()  # every trial trains a deep copy (the run's head init, no reload from disk)

    def train_fn(allocation: Any, on_step: Callable[[int, Any], None], seed: int) -> None:
        built: list[Any] = []

        def factory() -> Any:
            built.append(copy.deepcopy(base))
            return built[-1]

        # the seed sets the data order, adapter init and dropout (train_allocation); the head init is the run's
        train_allocation(factory, tokenizer, run.all_sites, allocation, space.lora.scaling, train, {}, spec,
                         replace(recipe, seed=seed), label="trial", on_step=lambda done: on_step(done, built[-1]))

    return TrainObjective(train_fn, validator(tokenizer, val, spec, cfg, precision=recipe.precision),
                          lambda choice: decode(choice, space, sites), cfg)


def from_spec(spec: dict[str, Any]) -> TrainObjective:
    """Rebuild a study's train objective (``heterosearch worker``): same model, data and recipe needed here."""
    from heterosearch.pipeline.config import RunConfig
    from heterosearch.pipeline.inputs import RunInputs

    return for_run(RunInputs(cfg=RunConfig(**spec["run"])), TrainObjectiveConfig(**spec["config"]))


def for_batches(base: Any, sites: Any, scaling: Any, to_allocation: Callable[[dict[str, Any]], Any],
                fit: list[dict[str, Any]], val: list[dict[str, Any]], cfg: TrainObjectiveConfig, lr: float,
                warmup: float | None = None) -> TrainObjective:
    """The train objective over lists of batch dicts (the Python API, which has no encoded splits).

    The same schedule as ``train_allocation`` (AdamW, ``make_optimizer``: warm-up then linear
    decay over ``train_steps``), cycling through ``fit``; the value is minus the mean loss per
    example on ``val`` (``metric="loss"``: batch dicts carry no task metric). Every trial trains
    a deep copy of ``base`` (not changed) with torch seeded from ``cfg.seed``.
    """
    import torch

    from heterosearch import recipe
    from heterosearch.adapters import apply_allocation
    from heterosearch.train.config import TrainConfig
    from heterosearch.train.loop import make_optimizer

    if not fit or not val:
        raise UserError("the train objective needs at least one training and one validation batch")
    schedule_cfg = TrainConfig(lr=lr, warmup=recipe.WARMUP if warmup is None else warmup, seed=cfg.seed)

    def train_fn(allocation: Any, on_step: Callable[[int, Any], None], seed: int) -> None:
        torch.manual_seed(seed)
        model = copy.deepcopy(base)
        apply_allocation(model, sites, allocation, scaling, seed=seed)
        optimizer, schedule = make_optimizer([p for p in model.parameters() if p.requires_grad], schedule_cfg,
                                             cfg.train_steps)
        model.train()
        # the batch order is a seeded permutation of ``fit`` (seed = cfg.seed keeps the order given)
        order = list(range(len(fit))) if seed == cfg.seed else torch.randperm(len(fit), generator=torch.Generator().manual_seed(seed)).tolist()
        for step in range(cfg.train_steps):
            model(**fit[order[step % len(fit)]]).loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            on_step(step + 1, model)

    def validate(model: Any) -> float:
        model.eval()
        total, n = 0.0, 0
        with torch.inference_mode():
            for batch in val:
                size = int(batch["labels"].shape[0])
                total += float(model(**batch).loss) * size
                n += size
        return -total / n

    return TrainObjective(train_fn, validate, to_allocation, cfg)
