"""Hyperparameter search with Optuna: many short trainings through `afm.fitting.fit_recipe`, each
scored on the validation split, the best kept as the tuned model (`afm tune`, the app's *Tune*).

The search space is the Recipe's fields whose metadata says how to search them (afm.recipe; the
parameters are named as the fields; the sampler is Optuna's TPESampler(seed=seed)):
- optimizer: Adagrad (the paper's) or Adam (BARS'); lr: log-uniform in [0.0005, 0.5], which holds
  both optimizers' rates (Adam's near 1e-3, Adagrad's presets 0.015-0.2; the multivariate TPE
  models the two together);
- embedding_dim (k) and, for AFM, attention_dim (t): each from {8, 16, 32, 64, 128, 256},
  unless `k` is given, which fixes both (e.g. the paper's k = t = 256);
- dropout_pooled (on the pooled pair vector): uniform in [0, 0.7]; for AFM also
  dropout_attention (on the attention weights a_ij): uniform in [0, 0.5];
- l2_attention (AFM: L2 on attention's W, lamda_attention): log-uniform in [0.0001, 100];
- l2_embedding (every model: L2 on the embeddings and first-order weights a batch touches, the
  regularizer BARS trains every FM-family model with): log-uniform in [0.001, 100];
- batch_size: from {128, 256, 512, 1024, 4096};
- pretrain (AFM only): whether to start from an FM, the authors' recipe: an FM with the same k,
  lr, batch size and pooled dropout (afm.recipe.pretraining) is trained first and the AFM starts
  from its embeddings and biases (p = 1 as the authors). Pretrained FMs are reused within a study.

The first trial is exactly a preset's recipe (`start`; "auto": the one `afm train --preset auto`
trains: quick on the bundled samples, the paper's on Frappe and ml-tag, elsewhere the recipe sized
to the data, afm.sizing; Optuna is told it clipped into the space, an L2 of 0 as 0.0001), so a
study starts from the known recipe (warm start) and can only improve on it.
Every trial trains for at most `epochs` epochs with early stopping after `patience`. After each
epoch its validation metric (RMSE, or AUC for the binary task) is reported to the trial; Optuna's
SuccessiveHalvingPruner (rungs at 1, 3, 9, ... epochs) prunes a trial whose value at a rung is
not among the best third of the trials that reached it (the best one alone while fewer than six
have), so most trials cost an epoch or three and the search sees many more settings in its minutes
(Hyperband's brackets each kept their own first trial: none pruned, docs/benchmarks.md); a pruned
trial stops through fit's `should_stop`. No trial starts once `trials` have run or `minutes` are
spent; the one running then is stopped there (its best epoch counts, as for any stopped training).
The best trial's model is kept as it was trained (not retrained): its checkpoint records its
recipe (preset "tuned") and, under train_config["tuned"], the trial's parameters and the
`afm train` command that rebuilds it.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.trial import TrialState, create_trial

from afm.checkpoint import Checkpoint
from afm.data import Dataset
from afm.errors import AFMError, CheckpointError, ConfigError
from afm.files import write_atomic
from afm.finite_json import finite
from afm.fitting import Fitted, fit_recipe
from afm.metrics import SELECTION_METRIC
from afm.recipe import AFM_ONLY, PRESETS, Recipe, preset, pretraining
from afm.sizing import AUTO, auto_recipe
from afm.train import Callback, StopReason
from afm.training_plan import preflight, resolve_device

SEARCHED = {spec.name: spec.metadata["search"] for spec in fields(Recipe) if spec.metadata["search"]}
SIZES = SEARCHED["embedding_dim"][1]
BATCH_SIZES = SEARCHED["batch_size"][1]
LR_RANGE = SEARCHED["lr"][1:3]
PRUNER_MIN_EPOCHS, PRUNER_REDUCTION = 1, 3  # successive halving: the first rung's epochs; 1/3 of a rung goes on
STUDY_FORMAT, STUDY_VERSION = "afm-study", 1
TUNED_PRESET = "tuned"


def study_path(out: str | Path) -> Path:
    """Where a study is saved: beside its checkpoint, `<out>.study.json`."""
    return Path(f"{out}.study.json")


@dataclass(frozen=True)
class TuneProgress:
    """What a progress callback is told: at each trial's start ("trial_start"), at the start of its
    FM pretraining ("pretrain_start") and at its end ("trial_end", with its `record`)."""

    event: str
    trial: int  # 1-based: the trial running or just finished
    trials: int  # the budget's count
    best_value: float | None
    best_trial: int | None  # Optuna's (0-based) number of the best trial so far
    seconds_left: float  # at most this much of the budget is left
    elapsed: float
    params: dict
    record: dict | None = None


@dataclass
class Tuned:
    checkpoint: Checkpoint  # the best trial's model, as trained; preset "tuned", its params recorded
    summary: dict  # the study as saved (`<out>.study.json`): every trial, the best, the budget
    best_params: dict  # the best trial's parameters, fixed ones (k, t) included
    history: list[dict]  # one record per trial, in order
    study: optuna.Study  # for Optuna's figures
    stop_reason: str  # "completed" (trials or minutes spent) or "stopped" (asked to stop)


def searched(model: str, fixed: set[str] | frozenset = frozenset()) -> dict[str, tuple]:
    """The Recipe fields a study of `model` searches, with how (afm.recipe metadata): those that
    apply to the model and are not `fixed`."""
    return {name: how for name, how in SEARCHED.items() if name not in fixed
            and (model == "afm" or (name not in AFM_ONLY and name != "attention_dim"))}


def suggest(trial: optuna.Trial, model: str, fixed: set[str] | frozenset = frozenset()) -> dict:
    """One trial's settings, by Recipe field name (the module docstring's search space)."""
    params = {}
    for name, how in searched(model, fixed).items():
        if how[0] == "float":
            params[name] = trial.suggest_float(name, how[1], how[2], log=how[3])
        else:
            params[name] = trial.suggest_categorical(name, how[1])
    return params


def start_params(start: str | Recipe, base: Recipe, fixed: set[str] | frozenset = frozenset()) -> tuple[dict, dict]:
    """A preset's values (`start`: its name, or a Recipe such as the sized one) as the study's first
    trial: (the point of the search space Optuna is given, clipped into its ranges; the values
    trained, exactly the preset's). Sizes go to the nearest choice; AFM pretrains for the paper's
    two-step presets (paper, fast), as the authors do, and as a pretraining recipe says (the sized
    AFM also starts as its FM, p = P: `match_fm` goes with the values trained)."""
    values = preset(start, base.model) if isinstance(start, str) else start
    exact = {}
    for field_name, how in searched(base.model, fixed).items():
        value = getattr(values, field_name)
        if field_name == "pretrain":
            value = value or start == "paper"
        elif how[0] == "categorical" and not isinstance(value, (bool, str)):
            value = min(how[1], key=lambda choice, value=value: abs(math.log(choice / value)))
        exact[field_name] = value
    point = {key: min(max(value, SEARCHED[key][1]), SEARCHED[key][2]) if SEARCHED[key][0] == "float" else value
             for key, value in exact.items()}
    if values.match_fm and exact.get("pretrain"):
        exact["match_fm"] = True
    return point, exact


def start_for(dataset: Dataset, model: str, task: str) -> str | Recipe:
    """The first trial of `start="auto"`: the recipe `--preset auto` trains (afm.sizing): quick on
    the bundled samples, paper on Frappe and ml-tag (by name), else the recipe sized to the data."""
    chosen, _ = auto_recipe(dataset, model, task)
    return chosen.preset if chosen.preset in PRESETS else chosen


def base_recipe(model: str = "afm", task: str = "regression", seed: int = 0, device: str = "auto",
                k: int | None = None, epochs: int = 40, patience: int = 5) -> tuple[Recipe, frozenset]:
    """What a study does not search (the defaults for `model`, with these settings) and the fields
    it fixes: a given `k` fixes the embedding size and, for AFM, the attention size t = k."""
    if k is not None and not (isinstance(k, int) and not isinstance(k, bool) and k >= 1):
        raise ConfigError(f"k must be a positive integer, not {k!r}")
    sizes = {"embedding_dim": k, "attention_dim": k} if k is not None else {}
    recipe = preset(None, model, task=task, seed=seed, device=device, epochs=epochs, patience=patience,
                    preset=TUNED_PRESET, **sizes)
    return recipe, frozenset(sizes)


def trial_recipe(params: dict, base: Recipe) -> Recipe:
    """One trial's recipe: the base with the trial's settings."""
    return base.replace(**params)


class _Trial:
    """One trial's training: reports each epoch's validation metric, prunes, and stops when asked."""

    def __init__(self, trial: optuna.Trial, metric: str, should_stop: Callable[[], bool]):
        self.trial, self.key, self.outside_stop = trial, f"valid_{metric}", should_stop
        self.pruned_at: int | None = None
        self.reporting = False  # True while the trial's own model trains (not its FM pretraining)

    def on_batch_end(self, epoch: int, batch: int, num_batches: int) -> None:
        pass

    def on_epoch_end(self, record: dict) -> None:
        value = record.get(self.key)
        if not self.reporting or record["epoch"] == 0 or value is None or not math.isfinite(value):
            return
        self.trial.report(value, record["epoch"])
        if self.pruned_at is None and self.trial.should_prune():
            self.pruned_at = record["epoch"]

    def should_stop(self) -> bool:
        return self.pruned_at is not None or self.outside_stop()


@dataclass
class _Budget:
    trials: int
    seconds: float
    started: float

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def spent(self) -> bool:
        return self.elapsed() >= self.seconds

    def seconds_left(self, finished: list[dict]) -> float:
        """The time budget left, or less when the trials left at the pace so far need less."""
        left = max(0.0, self.seconds - self.elapsed())
        if finished:
            pace = sum(r["seconds"] for r in finished) / len(finished)
            left = min(left, pace * max(0, self.trials - len(finished)))
        return left


def tune(dataset: Dataset, model: str = "afm", trials: int = 20, minutes: float = 10.0, seed: int = 0,
         task: str = "regression", device: str = "auto", k: int | None = None, epochs: int = 40, patience: int = 5,
         callbacks: Sequence[Callback] = (), progress: Callable[[TuneProgress], None] | None = None,
         should_stop: Callable[[], bool] | None = None, study_file: str | Path | None = None,
         seed_process: bool = True, data_spec: str | None = None, start: str | None = "auto") -> Tuned:
    """Search `model`'s hyperparameters on `dataset`'s validation split (see the module docstring).

    `callbacks` go to every training (live epochs); `progress` hears of every trial; `should_stop`
    ends the study after the current batch (the trial running counts with its best epoch);
    `study_file`: the study is written there (atomically) after every trial. `seed_process` as in
    `fit` (a shared server passes False); `data_spec`: what `--data` the recorded commands name
    (default: the dataset's name); `start`: the preset tried first ("auto": quick on the bundled
    samples, else paper; None: the sampler's choice from the first trial on)."""
    base, fixed = base_recipe(model, task, seed, device, k, epochs, patience)
    if not (isinstance(trials, int) and trials >= 1) or not (minutes > 0 and math.isfinite(minutes)):
        raise ConfigError("trials must be >= 1 and minutes > 0")
    if start is not None and start != AUTO and start not in PRESETS:
        raise ConfigError(f"start must be auto, one of {sorted(PRESETS)} or none, not {start!r}")
    check_study(dataset, base, fixed)
    metric, lower_is_better = SELECTION_METRIC[task]
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # progress is ours; Optuna's lines would repeat it
    study = optuna.create_study(
        direction="minimize" if lower_is_better else "maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=_startup(trials), multivariate=True),
        pruner=pruner())
    search = _Search(dataset, base, fixed, metric, lower_is_better, list(callbacks), should_stop or (lambda: False),
                     seed_process, _Budget(trials, minutes * 60.0, time.monotonic()), progress)
    if start == AUTO:
        start = start_for(dataset, model, task)
    if start is not None:
        point, search.start_exact = start_params(start, base, fixed)
        study.enqueue_trial(point)
    search.start = start if start is None or isinstance(start, str) else start.preset
    while len(search.records) < trials and not search.budget.spent() and not search.outside_stop():
        search.run_trial(study)
        if study_file is not None:
            save_study(study_file, search.summary(study, minutes))
    return search.result(study, minutes, data_spec or dataset.name)


def check_study(dataset: Dataset, base: Recipe, fixed: frozenset = frozenset()) -> None:
    """What would fail every trial, raised before the first: the task, the labels, the splits, the
    device, the memory of the smallest trial (a larger one that does not fit fails on its own)."""
    smallest = {name: (how[1] if how[0] == "float" else min(how[1]))
                for name, how in searched(base.model, fixed).items()}
    smallest.update({key: 0.0 for key in ("dropout_pooled", "dropout_attention", "l2_attention") if key in smallest})
    recipe = trial_recipe(smallest, base)
    preflight(recipe.model_config(dataset.schema), recipe.train_config(), dataset)
    resolve_device(base.device)


def pruner(text: bool = False) -> optuna.pruners.BasePruner | str:
    """Successive halving over epochs (module docstring): rungs at 1, 3, 9, ... epochs."""
    settings = {"min_resource": PRUNER_MIN_EPOCHS, "reduction_factor": PRUNER_REDUCTION}
    if text:  # as the study record says it
        return f"SuccessiveHalvingPruner({', '.join(f'{key}={value}' for key, value in settings.items())})"
    return optuna.pruners.SuccessiveHalvingPruner(**settings)


def _startup(trials: int) -> int:
    """TPE's random trials before it models the results: a quarter of the budget, 3 to 10."""
    return min(10, max(3, trials // 4))


class _Search:
    """A study's state between trials: the records, the best model so far, the pretrained FMs."""

    def __init__(self, dataset, base, fixed, metric, lower_is_better, callbacks, outside_stop, seed_process,
                 budget, progress):
        self.dataset, self.base, self.fixed, self.metric = dataset, base, fixed, metric
        self.lower_is_better, self.callbacks, self.outside_stop = lower_is_better, callbacks, outside_stop
        self.seed_process, self.budget, self.progress = seed_process, budget, progress
        self.records: list[dict] = []
        self.best: tuple[float, Fitted, dict] | None = None  # (value, fitted, record)
        self.pretrained: dict[Recipe, Fitted] = {}
        self.stopped = False
        self.start: str | None = None  # the preset of the first trial
        self.start_exact: dict = {}  # its values as trained (an L2 of 0 lies below the log range Optuna sees)

    def _stop_now(self) -> bool:
        if self.outside_stop():
            self.stopped = True
        return self.stopped or self.budget.spent()

    def _tell(self, event: str, params: dict, record: dict | None = None) -> None:
        if self.progress is None:
            return
        best = self.best
        self.progress(TuneProgress(event, len(self.records) + (event != "trial_end"), self.budget.trials,
                                   best[0] if best else None, best[2]["number"] if best else None,
                                   self.budget.seconds_left(self.records), self.budget.elapsed(), params, record))

    def run_trial(self, study: optuna.Study) -> None:
        trial = study.ask()
        params = {**suggest(trial, self.base.model, self.fixed),
                  **{name: getattr(self.base, name) for name in sorted(self.fixed)}}
        if trial.number == 0:
            params.update(self.start_exact)
        self._tell("trial_start", params)
        started = time.monotonic()
        watcher = _Trial(trial, self.metric, self._stop_now)
        record = {"number": trial.number, "params": params}
        try:
            fitted = self._train(params, watcher)
        except AFMError as exc:  # e.g. a size that does not fit in memory: the next trial tries another
            study.tell(trial, state=TrialState.FAIL)
            record.update(state="FAIL", value=None, note=str(exc), seconds=round(time.monotonic() - started, 3),
                          intermediate_values={})
            self.records.append(record)
            self._tell("trial_end", params, record)
            return
        record.update(self._outcome(study, trial, fitted, watcher))
        record["seconds"] = round(time.monotonic() - started, 3)
        self.records.append(record)
        if record["state"] == "COMPLETE" and self._better(record["value"]):
            self.best = (record["value"], fitted, record)
        self._tell("trial_end", params, record)

    def _train(self, params: dict, watcher: _Trial) -> Fitted:
        recipe = trial_recipe(params, self.base)
        start = None
        if recipe.pretrain:
            self._tell("pretrain_start", params)
            start = self._pretrained(recipe, watcher)
        watcher.reporting = True
        return fit_recipe(recipe, self.dataset, init_from=start.checkpoint.model if start else None,
                          callbacks=[*self.callbacks, watcher], should_stop=watcher.should_stop,
                          seed_process=self.seed_process)

    def _pretrained(self, recipe: Recipe, watcher: _Trial) -> Fitted:
        """The FM of the authors' recipe for this trial (afm.recipe.pretraining), trained once a study."""
        fm = pretraining(recipe)
        if fm not in self.pretrained:
            self.pretrained[fm] = fit_recipe(fm, self.dataset, callbacks=self.callbacks,
                                             should_stop=watcher.should_stop, seed_process=self.seed_process)
        return self.pretrained[fm]

    def _outcome(self, study: optuna.Study, trial: optuna.Trial, fitted: Fitted, watcher: _Trial) -> dict:
        """Tell Optuna how the trial ended; its record's state, value and details."""
        result = fitted.result
        value = result.best.get(f"valid_{self.metric}")
        details = {"intermediate_values": {str(r["epoch"]): r[f"valid_{self.metric}"] for r in result.history
                                           if r["epoch"] > 0 and r.get(f"valid_{self.metric}") is not None},
                   "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                   "stop_reason": str(result.stop_reason)}
        if watcher.pruned_at is not None:
            study.tell(trial, state=TrialState.PRUNED)
            return {**details, "state": "PRUNED", "value": value, "note": f"pruned after epoch {watcher.pruned_at}"}
        untrained = result.best_epoch == 0 and not fitted.checkpoint.recipe.pretrain  # from an FM: epoch 0 is it
        if value is None or not math.isfinite(value) or untrained:
            study.tell(trial, state=TrialState.FAIL)
            return {**details, "state": "FAIL", "value": None,
                    "note": result.problem or "no epoch did better than the start"}
        study.tell(trial, value)
        note = result.problem if result.stop_reason is StopReason.DIVERGED else None
        if result.stop_reason is StopReason.STOPPED:
            note = "stopped when asked" if self.stopped else "stopped when the time budget ran out"
        return {**details, "state": "COMPLETE", "value": value, "note": note}

    def _better(self, value: float) -> bool:
        return self.best is None or (value < self.best[0] if self.lower_is_better else value > self.best[0])

    def summary(self, study: optuna.Study, minutes: float) -> dict:
        best = self.best[2] if self.best else None
        base = self.base
        return finite({
            "format": STUDY_FORMAT, "version": STUDY_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "model": base.model, "task": base.task, "metric": f"valid_{self.metric}",
            "direction": "minimize" if self.lower_is_better else "maximize", "seed": base.seed, "start": self.start,
            "budget": {"trials": self.budget.trials, "minutes": minutes, "epochs": base.epochs,
                       "patience": base.patience},
            "fixed": {name: getattr(base, name) for name in sorted(self.fixed)},
            "sampler": f"TPESampler(seed={base.seed}, n_startup_trials={_startup(self.budget.trials)}, "
                       "multivariate=True)",
            "pruner": pruner(text=True),
            "dataset": {"name": self.dataset.name, "fingerprint": self.dataset.fingerprint,
                        "rows": {name: len(split) for name, split in self.dataset.splits.items()}},
            "distributions": _distributions(study),
            "seconds": round(self.budget.elapsed(), 3), "stopped": self.stopped,
            "best": {key: best[key] for key in ("number", "value", "params")} if best else None,
            "trials": self.records})

    def result(self, study: optuna.Study, minutes: float, data_spec: str) -> Tuned:
        if self.best is None:
            problems = sorted({r.get("note") or r["state"] for r in self.records})
            raise ConfigError(f"no trial of {len(self.records)} trained a model ({'; '.join(problems)[:300]}); "
                              "give the study more minutes, or fix k lower")
        value, fitted, record = self.best
        checkpoint = fitted.checkpoint
        summary = self.summary(study, minutes)
        checkpoint.train_config["tuned"] = {
            "trial": record["number"], "value": value, "metric": f"valid_{self.metric}", "params": record["params"],
            "trials_run": len(self.records), "sampler": summary["sampler"], "pruner": summary["pruner"],
            "commands": [checkpoint.recipe.command(data_spec, f"{self.base.model}.safetensors")]}
        return Tuned(checkpoint, summary, dict(record["params"]), self.records, study,
                     "stopped" if self.stopped else "completed")


def _distributions(study: optuna.Study) -> dict:
    found = {}
    for trial in study.trials:
        for name, distribution in trial.distributions.items():
            found.setdefault(name, json.loads(distribution_to_json(distribution)))
    return found


def save_study(path: str | Path, summary: dict) -> Path:
    """Write a study record atomically (a reader sees the old file or the new one)."""
    data = json.dumps(summary, indent=1, allow_nan=False).encode()
    return write_atomic(path, data, lambda problem: CheckpointError(path, problem))


def _inside(distribution, value):
    """A value as its distribution holds it: the first trial's exact preset values (an L2 of 0)
    are clipped into the range, as Optuna was told them."""
    if isinstance(distribution, optuna.distributions.FloatDistribution):
        return min(max(value, distribution.low), distribution.high)
    return value


def study_from_summary(summary: dict) -> optuna.Study:
    """An Optuna study rebuilt from a saved record (for its figures): every trial with its state,
    value, parameters and intermediate values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna warns about studies made by hand
        study = optuna.create_study(direction=summary["direction"])
        distributions = {name: json_to_distribution(json.dumps(spec))
                         for name, spec in summary["distributions"].items()}
        for record in summary["trials"]:
            state = TrialState[record["state"]]
            searched = {n: _inside(distributions[n], v) for n, v in record["params"].items() if n in distributions}
            study.add_trial(create_trial(
                state=state, value=record["value"] if state is TrialState.COMPLETE else None, params=searched,
                distributions={n: distributions[n] for n in searched},
                intermediate_values={int(step): v for step, v in record.get("intermediate_values", {}).items()}))
    return study

