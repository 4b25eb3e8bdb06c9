"""The one way to train a model: seed, build, start from a pretrained model when asked, train
(`train_model` makes the checks and picks the path), and make the checkpoint. The command line,
the app's jobs, the bundled samples and the benchmarks all call `fit`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from afm.checkpoint import Checkpoint
from afm.data import Dataset
from afm.distributed import ProcessGroup
from afm.models import ModelConfig, PairwiseModel, build_model
from afm.train import Callback, TrainConfig, TrainResult, seed_everything, train_model


@dataclass
class Fitted:
    checkpoint: Checkpoint  # the best epoch's model with its configs, history and data description
    result: TrainResult  # how the training went: stop reason, path, pace


def fit(model_config: ModelConfig, train_config: TrainConfig, dataset: Dataset, *,
        init_from: PairwiseModel | None = None, init_from_name: str | None = None, match_fm: bool = False,
        callbacks: Sequence[Callback] = (), trackers: Sequence[Callable[[PairwiseModel], Callback]] = (),
        should_stop: Callable[[], bool] | None = None, group: ProcessGroup | None = None,
        preset: str | None = None, seed_process: bool = True) -> Fitted:
    """Train a new `model_config` model on `dataset` with `train_config`.

    `init_from`: a trained FM (or FwFM/AFM) whose embeddings and biases the model starts from
    (the authors' pretraining), named `init_from_name` in the checkpoint; `match_fm`: an AFM's
    projection starts at p = P so that it starts as that FM. `trackers` make callbacks that need
    the model (the coupling tracker). The initial weights come from the seed alone (build_model's
    own generator); `seed_process` also seeds the process's random state, which draws dropout
    masks and batch orders of streamed data: under torchrun by rank, so each process draws its
    own. A shared server (the app's jobs) passes False: its process state belongs to everyone.
    """
    if seed_process:
        seed_everything(train_config.seed + (group.rank if group is not None else 0), train_config.deterministic)
    model = build_model(model_config, seed=train_config.seed)
    if init_from is not None:
        model.init_from(init_from, match_fm=match_fm)
    everything = [*callbacks, *(make(model) for make in trackers)]
    result = train_model(model, dataset, train_config, callbacks=everything, should_stop=should_stop, group=group)
    settings = {"init_from": init_from_name if init_from is not None else None,
                "match_fm": match_fm and init_from is not None}
    if preset is not None:
        settings["preset"] = preset
    return Fitted(Checkpoint.from_training(result, dataset, **settings), result)
