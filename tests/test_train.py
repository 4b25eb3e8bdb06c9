from __future__ import annotations

import numpy as np
import pytest
import torch

from afm.data import Dataset, load_dataset
from afm.errors import ConfigError, DataError
from afm.fitting import fit_recipe
from afm.metrics import auc, log_loss, rmse
from afm.models import ModelConfig, build_model
from afm.recipe import Recipe
from afm.train import DeviceSplit, StopReason, TrainConfig, seed_everything, train_model
from afm.training_plan import preflight
from tests.conftest import random_dataset


def build(dataset, name="afm", k=8, t=8, seed=0, **kwargs):
    seed_everything(seed)
    config = ModelConfig(model=name, num_features=dataset.schema.num_features, num_fields=dataset.schema.num_fields,
                         embedding_dim=k, attention_dim=t, **kwargs)
    return build_model(config)


class Recorder:
    def __init__(self):
        self.batches, self.epochs = 0, []

    def on_batch_end(self, epoch, batch, num_batches):
        self.batches += 1

    def on_epoch_end(self, record):
        self.epochs.append(record["epoch"])


@pytest.mark.parametrize("name", ["fm", "fwfm", "afm"])
def test_training_on_the_sample_lowers_validation_rmse(name):
    data = load_dataset("sample")
    model = build(data, name, k=16, t=16)
    result = train_model(model, data, TrainConfig(epochs=4, lr=0.2, batch_size=256, l2_attention=0.0))
    first, best = result.history[0]["valid_rmse"], result.best["valid_rmse"]
    assert best < 0.8 * first, (first, best)
    assert result.best_epoch >= 1 and result.stop_reason == "completed"
    assert set(result.history[1]) >= {"epoch", "train_loss", "train_rmse", "valid_rmse", "valid_rmse_unclipped",
                                      "test_rmse", "seconds", "samples_per_second"}


def test_best_epoch_weights_are_restored(tiny_dataset):
    model = build(tiny_dataset)
    result = train_model(model, tiny_dataset, TrainConfig(epochs=6, lr=0.3, batch_size=32, patience=10))
    from afm.inference import evaluate_split
    metrics = evaluate_split(result.model, DeviceSplit(tiny_dataset.valid, torch.device("cpu"), "regression"),
                             "regression", tiny_dataset.label_range)
    assert metrics["rmse"] == pytest.approx(result.best["valid_rmse"], rel=1e-6)


def test_early_stopping_and_callbacks(tiny_dataset):
    recorder = Recorder()
    model = build(tiny_dataset)
    # A large learning rate overfits the tiny set fast; patience 1 stops at the first worse epoch.
    result = train_model(model, tiny_dataset, TrainConfig(epochs=50, lr=1.0, batch_size=16, patience=1),
                         callbacks=[recorder])
    assert result.stop_reason == "early_stopping"
    assert result.epochs_run == result.best_epoch + 1 < 50
    assert recorder.epochs == list(range(0, result.epochs_run + 1))
    assert recorder.batches == result.epochs_run * int(np.ceil(len(tiny_dataset.train) / 16))


def test_binary_early_stopping_follows_validation_auc_not_logloss_or_rmse(monkeypatch):
    data = random_dataset(num_rows=300)
    for split in data.splits.values():
        split.labels[:] = (split.labels > np.median(split.labels)).astype(np.float32)
    # Scripted validation scores: log loss and RMSE are best at epoch 1, AUC at epoch 3.
    aucs = [0.5, 0.60, 0.70, 0.72, 0.71, 0.71, 0.71, 0.71, 0.71]
    losses = [0.70, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75]
    calls = []

    def scripted(model, split, task, label_range, batch_size):
        epoch = len(calls) // 2  # valid, then test, per evaluation
        calls.append(epoch)
        return {"auc": aucs[epoch], "logloss": losses[epoch], "rmse": losses[epoch] / 2}

    monkeypatch.setattr("afm.train.evaluate_split", scripted)
    result = train_model(build(data, name="fm"), data, TrainConfig(task="binary", epochs=8, lr=0.01, batch_size=64,
                                                                   patience=2))
    assert result.best_epoch == 3 and result.best["valid_auc"] == 0.72
    assert result.stop_reason == "early_stopping" and result.epochs_run == 5  # 2 epochs without a better AUC


def test_stop_request_keeps_the_best_full_epoch(tiny_dataset):
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > 40  # during the third epoch (18 batches an epoch)

    model = build(tiny_dataset)
    result = train_model(model, tiny_dataset, TrainConfig(epochs=10, lr=0.1, batch_size=16), should_stop=should_stop)
    assert result.stop_reason is StopReason.STOPPED
    assert result.epochs_run == 2


def test_same_seed_same_result(tiny_dataset):
    runs = []
    for _ in range(2):
        model = build(tiny_dataset, seed=5, dropout_pooled=0.3)
        runs.append(train_model(model, tiny_dataset, TrainConfig(epochs=2, lr=0.1, batch_size=32, seed=5)))
    assert runs[0].history[-1]["valid_rmse"] == runs[1].history[-1]["valid_rmse"]
    for a, b in zip(runs[0].model.parameters(), runs[1].model.parameters()):
        assert torch.equal(a, b)


def test_divergence_is_reported_with_the_best_model(tiny_dataset):
    # Labels of 1e25 make the float32 squared loss overflow at once (two values: one would be refused).
    tiny_dataset.train.labels[:] = 1e25
    tiny_dataset.train.labels[::2] = 2e25
    model = build(tiny_dataset, name="fm", k=8)
    result = train_model(model, tiny_dataset, TrainConfig(epochs=3, lr=0.1, batch_size=8))
    assert result.stop_reason is StopReason.DIVERGED and "learning rate" in result.problem
    assert result.best_epoch == 0  # nothing better than the start


def test_l2_attention_shrinks_attention_weights(tiny_dataset):
    norms = []
    for l2 in (0.0, 50.0):
        model = build(tiny_dataset, seed=1)
        train_model(model, tiny_dataset, TrainConfig(epochs=3, lr=0.1, batch_size=32, l2_attention=l2))
        norms.append(model.attention.weight.norm().item())
    assert norms[1] < 0.5 * norms[0]


def test_binary_task_reports_auc_and_logloss():
    data = random_dataset(num_rows=600)
    for split in data.splits.values():
        split.labels[:] = np.where(split.labels > np.median(split.labels), 1.0, -1.0)
    model = build(data, name="fm")
    result = train_model(model, data, TrainConfig(task="binary", epochs=5, lr=0.1, batch_size=32))
    best = result.best
    assert best["valid_auc"] > 0.75 and best["valid_logloss"] < result.history[0]["valid_logloss"]
    assert result.history[1]["train_rmse"] is None


def test_binary_task_refuses_real_valued_labels(tiny_dataset):
    with pytest.raises(ConfigError, match="binary"):
        train_model(build(tiny_dataset), tiny_dataset, TrainConfig(task="binary", epochs=1))


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(lr=-1.0), dict(optimizer="sgd"), dict(task="rank"),
                                 dict(device="tpu"), dict(patience=0), dict(distinct_pairs="yes")])
def test_train_config_validation(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_metrics_against_brute_force():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=60).round(1)  # ties on purpose
    targets = (rng.uniform(size=60) < 0.4).astype(float)
    pos, neg = scores[targets == 1], scores[targets == 0]
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p in pos for n in neg]
    assert auc(scores, targets) == pytest.approx(np.mean(pairs))
    probs = 1 / (1 + np.exp(-scores))
    expected = -np.mean(targets * np.log(probs) + (1 - targets) * np.log(1 - probs))
    assert log_loss(scores, targets) == pytest.approx(expected)
    assert log_loss(np.array([1000.0, -1000.0]), np.array([1.0, 0.0])) == pytest.approx(0.0)
    assert rmse(np.array([2.0, -3.0]), np.array([1.0, -1.0]), clip=(-1, 1)) == 0.0


@pytest.mark.parametrize("task, value, message", [
    ("regression", 3.0, "every training label is 3.0: there is nothing to learn"),
    ("binary", 1.0, "only one class (1) in the training labels"),
    ("binary", -1.0, "only one class (-1) in the training labels")])
def test_labels_all_one_value_are_refused_before_training(tiny_dataset, task, value, message):
    """Any model fits constant labels exactly: the untrained model was saved with valid_rmse 0.0."""
    for split in tiny_dataset.splits.values():
        split.labels[:] = value
    with pytest.raises(DataError) as info:
        fit_recipe(Recipe.of(model="fm", embedding_dim=4, task=task, epochs=2), tiny_dataset)
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DataError, match="nothing to learn"):
        preflight(build(tiny_dataset).config, TrainConfig(task=task), tiny_dataset)  # the app's check when queued


def test_labels_that_vary_in_one_row_only_are_trained(tiny_dataset):
    tiny_dataset.train.labels[:] = 3.0
    tiny_dataset.train.labels[0] = 4.0
    assert train_model(build(tiny_dataset, name="fm"), tiny_dataset, TrainConfig(epochs=1)).epochs_run == 1


def test_a_training_that_never_beats_epoch_0_says_its_model_is_untrained(tiny_dataset):
    """Validation labels opposite to the training ones: every epoch makes validation worse."""
    tiny_dataset.valid.labels[:] = -tiny_dataset.valid.labels
    result = train_model(build(tiny_dataset, name="fm"), tiny_dataset,
                         TrainConfig(epochs=3, lr=0.3, batch_size=16, patience=10))
    assert result.best_epoch == 0 and result.epochs_run == 3 and result.stop_reason is StopReason.COMPLETED
    assert result.untrained and "no epoch did better than the starting model" in result.problem
    assert "3 epochs" in result.problem and "learning rate" in result.problem
    trained = train_model(build(tiny_dataset, name="fm"), random_dataset(), TrainConfig(epochs=2, lr=0.1))
    assert not trained.untrained and trained.problem is None
    asked_for_none = train_model(build(tiny_dataset, name="fm"), tiny_dataset, TrainConfig(epochs=0))
    assert not asked_for_none.untrained and asked_for_none.problem is None


def test_an_afm_that_never_beats_the_fm_it_started_as_is_that_fm_not_an_untrained_model(tiny_dataset):
    """A two-step recipe's AFM starts as its trained FM (p = P): when no epoch beats that start, the
    model kept is the FM's own, said as trained; without match_fm (p = 1, its pair sum divided by P)
    an epoch 0 that no epoch beats is still an untrained model."""
    fm = fit_recipe(Recipe.of(model="fm", embedding_dim=4, epochs=3, lr=0.1, batch_size=16), tiny_dataset)
    tiny_dataset.valid.labels[:] = -tiny_dataset.valid.labels  # every epoch now makes validation worse
    base = Recipe.of(model="afm", embedding_dim=4, attention_dim=4, epochs=3, lr=0.3, batch_size=16, patience=10)
    started = fit_recipe(base.replace(init_from="the FM", match_fm=True), tiny_dataset, init_from=fm.checkpoint.model)
    assert started.result.best_epoch == 0 and started.result.epochs_run == 3
    assert not started.result.untrained and started.result.problem is None
    plain = fit_recipe(base.replace(init_from="the FM"), tiny_dataset, init_from=fm.checkpoint.model)
    assert plain.result.best_epoch == 0 and plain.result.untrained


def test_empty_validation_split_is_refused(tiny_dataset):
    empty = tiny_dataset.valid.take(np.array([], dtype=np.int64))
    data = Dataset("x", tiny_dataset.schema, {"train": tiny_dataset.train, "valid": empty, "test": tiny_dataset.test},
                   "memory")
    with pytest.raises(ConfigError, match="must not be empty"):
        train_model(build(data), data, TrainConfig(epochs=1))


@pytest.mark.parametrize("real_valued", [False, True])  # the one-hot (distinct-pair) and the plain path
@pytest.mark.parametrize("name", ["fm", "afm"])
def test_sparse_embedding_gradients_give_the_same_training(name, real_valued):
    """The fast path (sparse Adagrad on the embedding tables) computes the same updates."""
    dataset = random_dataset(real_valued=real_valued)
    results = []
    for sparse in (False, True):
        model = build(dataset, name=name, seed=3).double()
        for split in dataset.splits.values():
            split.feature_values = split.feature_values.astype(np.float64)
        result = train_model(model, dataset, TrainConfig(epochs=2, lr=0.1, batch_size=16, seed=3,
                                                          sparse_embeddings="on" if sparse else "off",
                                                          l2_attention=1.0, distinct_pairs="on"))
        results.append(result)
    assert not results[1].model.embedding.sparse  # switched back after training
    assert results[1].distinct_pairs == (not real_valued and name != "fm")  # FM: O(F k) needs no pair table
    for a, b in zip(results[0].model.parameters(), results[1].model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_compile_policy():
    """"auto" compiles on CUDA for long runs only; never on the CPU, where whole epochs were no
    faster compiled (docs/benchmarks.md, bench/epochs.py)."""
    from afm.training_plan import should_compile

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for batch in (128, 1024, 4096):
        assert not should_compile(TrainConfig(batch_size=batch, epochs=100), cpu, 200_000)
    assert should_compile(TrainConfig(batch_size=128, epochs=10), cuda, 200_000)
    assert not should_compile(TrainConfig(batch_size=4096, epochs=2), cuda, 200_000)  # too short to pay back
    assert should_compile(TrainConfig(compile="on", epochs=1), cpu, 10)
    assert not should_compile(TrainConfig(compile="off", batch_size=4096, epochs=100), cuda, 10**6)


@pytest.mark.slow
@pytest.mark.parametrize("real_valued", [False, True])  # compiled through the one-hot path, and the plain one
def test_compiled_training_computes_the_same_function(real_valued):
    """The compiled step is the default for big batches: it must train the same model as the eager
    plain path."""
    dataset = random_dataset(real_valued=real_valued)
    results = []
    for mode in ("off", "on"):
        # No dropout: compiled graphs draw their random masks differently from eager mode. float64:
        # Adagrad's first steps are ±lr whatever the gradient's size, so float32 rounding would grow.
        model = build(dataset, name="afm", seed=4, dropout_pooled=0.0).double()
        for split in dataset.splits.values():
            split.feature_values = split.feature_values.astype(np.float64)
        results.append(train_model(model, dataset, TrainConfig(epochs=2, lr=0.05, batch_size=64, seed=4,
                                                                compile=mode,
                                                                distinct_pairs="off" if mode == "off" else "on")))
    assert results[1].compiled and not results[0].compiled
    assert results[1].distinct_pairs == (not real_valued) and not results[0].distinct_pairs
    for a, b in zip(results[0].model.parameters(), results[1].model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    assert results[0].best["valid_rmse"] == pytest.approx(results[1].best["valid_rmse"], rel=1e-9)


@pytest.mark.parametrize("name,dropout", [("fwfm", 0.5), ("afm", 0.0), ("afm", 0.3)])
def test_distinct_pair_training_trains_the_same_model_as_the_plain_path(name, dropout):
    """The default on one-hot rows (each distinct feature pair of a batch once) against the plain
    (B, P, k) path: float64, four epochs of Adagrad with the attention L2 and dropout on (both paths
    draw the same masks), the same weights and validation curve to 1e-6."""
    results = []
    for path in ("off", "on"):
        dataset = random_dataset(field_sizes=(3, 4, 2, 5, 3))  # small fields: most pairs repeat in a batch
        model = build(dataset, name=name, seed=6, dropout_pooled=dropout,
                      dropout_attention=dropout if name == "afm" else 0.0).double()
        for split in dataset.splits.values():
            split.feature_values = split.feature_values.astype(np.float64)
        results.append(train_model(model, dataset, TrainConfig(epochs=4, lr=0.1, batch_size=32, seed=6,
                                                                l2_attention=1.0, patience=10,
                                                                distinct_pairs=path)))
    plain, shared = results
    assert shared.distinct_pairs and not plain.distinct_pairs
    for (key, a), b in zip(plain.model.state_dict().items(), shared.model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=key)
    assert plain.best_epoch == shared.best_epoch and plain.best_epoch > 0
    for a, b in zip(plain.history, shared.history):
        assert b["valid_rmse"] == pytest.approx(a["valid_rmse"], abs=1e-6)


def test_real_valued_rows_train_through_the_plain_path():
    data = random_dataset(real_valued=True)
    result = train_model(build(data), data, TrainConfig(epochs=1, lr=0.1, batch_size=64, distinct_pairs="on"))
    assert not result.distinct_pairs
    ones = random_dataset()
    result = train_model(build(ones), ones, TrainConfig(epochs=1, lr=0.1, batch_size=64, distinct_pairs="on"))
    assert result.distinct_pairs


def test_distinct_pairs_are_shared_where_they_pay():
    """"auto": where measured faster (docs/benchmarks.md): large k x t, or large batches."""
    from afm.models import MODEL_CLASSES
    from afm.training_plan import uses_distinct_pairs

    def pays(name, k, batch):
        return MODEL_CLASSES[name].distinct_pairs_pay(ModelConfig(model=name, num_features=10, num_fields=3,
                                                                  embedding_dim=k, attention_dim=k), batch)

    assert pays("afm", 64, 128) and pays("afm", 32, 128) and pays("afm", 16, 1024) and not pays("afm", 16, 128)
    assert pays("fwfm", 64, 128) and pays("fwfm", 16, 1024) and not pays("fwfm", 32, 128)
    assert not pays("fm", 256, 4096)
    data = random_dataset()
    train = data.train
    small, large = build(data, k=8, t=8), build(data, k=32, t=32)
    assert uses_distinct_pairs(large, TrainConfig(), train, 128)
    assert not uses_distinct_pairs(small, TrainConfig(), train, 128)
    assert uses_distinct_pairs(small, TrainConfig(), train, 1024)  # per-process batch size decides
    assert uses_distinct_pairs(small, TrainConfig(distinct_pairs="on"), train, 128)
    assert not uses_distinct_pairs(large, TrainConfig(distinct_pairs="off"), train, 128)
    assert not uses_distinct_pairs(build(data, "fm"), TrainConfig(distinct_pairs="on"), train, 128)


def test_presets_build_valid_configs():
    from afm.data import FieldSchema
    from afm.recipe import PRESETS

    schema = FieldSchema(("a", "b", "c"), [0] * 4 + [1] * 3 + [2] * 3)
    for name, models in PRESETS.items():
        assert set(models) == {"fm", "fwfm", "afm"}, name
        for model, recipe in models.items():
            assert recipe.model == model and recipe.preset == name
            assert recipe.model_config(schema).model == model and recipe.train_config().epochs == recipe.epochs


def test_l2_embedding_regularizes_the_rows_a_batch_touches_once():
    """The objective's embedding term against a brute-force sum over the distinct features of the
    batch (a feature in many rows counts once), and its gradient lands on those rows only."""
    from afm.train import batch_objective, data_loss

    torch.manual_seed(0)
    model = build_model(ModelConfig(model="fwfm", num_features=30, num_fields=3, embedding_dim=4), seed=0)
    with torch.no_grad():
        model.linear.weight.normal_()
    ids = torch.tensor([[0, 10, 20], [0, 11, 20], [1, 11, 25]])  # (B, F): 0, 11 and 20 repeat
    values, targets = torch.ones(3, 3), torch.tensor([1.0, 0.0, 2.0])
    predictions = model(ids, values)
    config = TrainConfig(l2_embedding=0.3)
    touched = sorted({int(i) for i in ids.flatten()})
    brute = sum(float(model.embedding.weight[i].square().sum() + model.linear.weight[i].square().sum())
                for i in touched)
    loss = batch_objective(model, predictions, targets, config, ids=ids)
    expected = float(data_loss(predictions, targets, "regression")) + 0.5 * 0.3 * brute
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    model.zero_grad()
    batch_objective(model, model(ids, values), targets, TrainConfig(l2_embedding=5.0), ids=ids).backward()
    untouched = [i for i in range(30) if i not in touched]
    assert model.embedding.weight.grad[untouched].abs().sum() == 0  # features the batch does not hold: no pull
    assert model.embedding.weight.grad[touched].abs().sum(1).min() > 0
    assert float(batch_objective(model, predictions, targets, TrainConfig(), ids=ids)) == pytest.approx(
        float(data_loss(predictions, targets, "regression")))  # 0: off, the paper's objective
