"""The one way to train a model from a `Recipe`: seed, build, start from a pretrained model (given,
or trained first when the recipe says `pretrain`), train (`train_model` makes the checks and picks
the path), and make the checkpoint. The command line, the app's jobs, the tuner, the front door
(`afm.fit`), the bundled samples and the benchmarks all call `fit_recipe`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from afm.analysis.attention_replay import PairWeightRecorder
from afm.checkpoint import Checkpoint, load_checkpoint
from afm.data import Dataset
from afm.distributed import ProcessGroup
from afm.errors import ConfigError
from afm.models import PairwiseModel, build_model
from afm.recipe import Recipe, pretraining
from afm.train import Callback, StopReason, TrainResult, seed_everything, train_model


@dataclass
class Fitted:
    checkpoint: Checkpoint  # the best epoch's model with its recipe, history and data description
    result: TrainResult  # how the training went: stop reason, path, pace
    pretrained: Fitted | None = None  # the FM trained first for a `pretrain` recipe


def fit_recipe(recipe: Recipe, dataset: Dataset, *, init_from: PairwiseModel | None = None,
               callbacks: Sequence[Callback] = (), trackers: Sequence[Callable[[PairwiseModel], Callback]] = (),
               should_stop: Callable[[], bool] | None = None, group: ProcessGroup | None = None,
               seed_process: bool = True) -> Fitted:
    """Train `recipe`'s model on `dataset`.

    `init_from`: a trained FM (or FwFM/AFM) whose embeddings and biases the model starts from
    (the authors' pretraining), recorded as the recipe's `init_from` name; without it, a `pretrain`
    recipe first trains `pretraining(recipe)` (with the same callbacks and stop) and starts from
    that. `trackers` make callbacks that need the model (the coupling tracker); the pair-weight
    recorder (attention replay) is always one. The initial weights
    come from the seed alone (build_model's own generator); `seed_process` also seeds the process's
    random state, which draws dropout masks and batch orders of streamed data: under torchrun by
    rank, so each process draws its own. A shared server (the app's jobs) passes False: its process
    state belongs to everyone.
    """
    pretrained = None
    if recipe.pretrain and init_from is None:
        pretrained = fit_recipe(pretraining(recipe), dataset, callbacks=callbacks, should_stop=should_stop,
                                group=group, seed_process=seed_process)
        init_from = pretrained.checkpoint.model
    if seed_process:
        seed_everything(recipe.seed + (group.rank if group is not None else 0), recipe.deterministic)
    model = build_model(recipe.model_config(dataset.schema), seed=recipe.seed)
    if init_from is not None:
        model.init_from(init_from, match_fm=recipe.match_fm)
    # Every AFM and FwFM records its mean pair weights per epoch (attention replay), whoever trains it.
    replay = PairWeightRecorder.for_dataset(dataset)
    # First, so that callbacks that copy a record (the app's live job) see the weights in it.
    made = [make(model) for make in (*([replay] if replay else []), *trackers)]
    everything = [*(callback for callback in made if callback is not None), *callbacks]
    result = train_model(model, dataset, recipe.train_config(), callbacks=everything, should_stop=should_stop,
                         group=group)
    if init_from is not None and recipe.match_fm and result.best_epoch == 0:
        # Started as the trained FM (p = P): no epoch beat it, and the model kept is that start.
        result.started_trained = True
        result.problem = result.problem if result.stop_reason == StopReason.DIVERGED else None
    return Fitted(Checkpoint.from_training(result, dataset, recipe), result, pretrained)


def refit_seeds(checkpoint: Checkpoint, dataset: Dataset, count: int, *, init_from: PairwiseModel | None = None,
                callbacks: Sequence[Callback] = (), should_stop: Callable[[], bool] | None = None,
                seed_process: bool = True) -> list[tuple[int, PairwiseModel]]:
    """`count` models of one recipe that differ only in the seed: the checkpoint's own, then its
    recipe retrained on `dataset` with the next `count - 1` seeds (for `afm.analysis.stability`).
    A recipe that started from an FM (`init_from`) starts from it again: `init_from` when given
    (the app's session run of that name), else the checkpoint file the recipe names."""
    if not isinstance(count, int) or isinstance(count, bool) or not 2 <= count <= 20:
        raise ConfigError(f"seeds to compare must be a whole number in 2..20, got {count!r}")
    recipe, start = checkpoint.recipe, init_from
    if start is None and recipe.init_from:
        if not Path(recipe.init_from).is_file():
            raise ConfigError(f"this model started from {recipe.init_from}, which is not here: its recipe cannot be "
                              "retrained with other seeds without it")
        start = load_checkpoint(recipe.init_from).model
    models = [(recipe.seed, checkpoint.model)]
    for step in range(1, count):
        seed = (recipe.seed + step) % 2**32
        fitted = fit_recipe(recipe.replace(seed=seed), dataset, init_from=start, callbacks=callbacks,
                            should_stop=should_stop, seed_process=seed_process)
        models.append((seed, fitted.checkpoint.model))
    return models
