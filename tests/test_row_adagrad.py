"""RowAdagrad is torch's Adagrad: the same parameters after every step, whether the embedding
gradients come dense or as sparse rows (repeated ids, untouched rows, several lookups a step)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from afm.data import load_dataset
from afm.models import ModelConfig, build_model
from afm.row_adagrad import RowAdagrad
from afm.train import batch_objective, make_optimizer
from afm.training_plan import TrainConfig, wants_sparse_gradients


def _twin_tables(rows: int, k: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(rows, k, generator=generator)
    dense = torch.nn.Embedding(rows, k, _weight=start.clone())
    sparse = torch.nn.Embedding(rows, k, _weight=start.clone(), sparse=True)
    return dense, sparse, generator


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 40), k=st.integers(1, 9), steps=st.integers(1, 6), seed=st.integers(0, 2**16),
       lookups=st.integers(1, 3), lr=st.floats(1e-3, 1.0))
def test_sparse_rows_step_as_torch_adagrad_dense(rows, k, steps, seed, lookups, lr):
    dense, sparse, generator = _twin_tables(rows, k, seed)
    reference = torch.optim.Adagrad(dense.parameters(), lr=lr, initial_accumulator_value=1e-8)
    ours = RowAdagrad(sparse.parameters(), lr=lr, initial_accumulator_value=1e-8)
    for _ in range(steps):
        # Several lookups a step, ids repeated: the sparse gradient comes uncoalesced.
        batches = [torch.randint(0, rows, (int(torch.randint(1, 8, (1,), generator=generator)),), generator=generator)
                   for _ in range(lookups)]
        weights = torch.randn(k, generator=generator)
        for table, optimizer in ((dense, reference), (sparse, ours)):
            optimizer.zero_grad(set_to_none=True)
            sum((table(ids) @ weights).square().sum() for ids in batches).backward()
            optimizer.step()
        torch.testing.assert_close(sparse.weight, dense.weight, rtol=1e-5, atol=1e-6)  # float sums in another order
    torch.testing.assert_close(ours.state[sparse.weight]["sum"], reference.state[dense.weight]["sum"],
                               rtol=1e-5, atol=1e-9)


def test_untouched_rows_and_their_accumulators_stay_as_they_were():
    table = torch.nn.Embedding(10, 3, sparse=True)
    before = table.weight.detach().clone()
    optimizer = RowAdagrad(table.parameters(), lr=0.5, initial_accumulator_value=0.1)
    table(torch.tensor([2, 2, 7])).sum().backward()
    optimizer.step()
    untouched = [i for i in range(10) if i not in (2, 7)]
    assert torch.equal(table.weight[untouched], before[untouched])
    assert torch.equal(optimizer.state[table.weight]["sum"][untouched], torch.full((8, 3), 0.1))
    assert not torch.equal(table.weight[[2, 7]], before[[2, 7]])


def test_dense_gradients_match_torch_bit_for_bit():
    generator = torch.Generator().manual_seed(3)
    start = torch.randn(6, 4, generator=generator)
    ours_weight, torch_weight = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    ours = RowAdagrad([ours_weight], lr=0.05, initial_accumulator_value=1e-8)
    reference = torch.optim.Adagrad([torch_weight], lr=0.05, initial_accumulator_value=1e-8)
    for _ in range(5):
        target = torch.randn(6, 4, generator=generator)
        for weight, optimizer in ((ours_weight, ours), (torch_weight, reference)):
            optimizer.zero_grad()
            (weight - target).square().sum().backward()
            optimizer.step()
    assert torch.equal(ours_weight, torch_weight)


@pytest.mark.parametrize("model_name", ["fm", "fwfm", "afm"])
def test_a_training_step_with_sparse_embeddings_equals_the_dense_one(model_name):
    """The trainer's own objective and optimizer on the sample, dense against sparse embedding gradients
    (and L2 on the touched rows, which looks the embeddings up a second time)."""
    data = load_dataset("sample")
    ids = torch.as_tensor(data.train.feature_ids[:64]).long()
    values = torch.ones(ids.shape)
    targets = torch.as_tensor(data.train.labels[:64]).float()
    config = ModelConfig(model=model_name, num_features=data.schema.num_features, num_fields=data.schema.num_fields,
                         embedding_dim=8, attention_dim=8, dropout_pooled=0.0)
    train_config = TrainConfig(lr=0.05, l2_embedding=0.01, l2_attention=0.5)
    models = []
    for sparse in (False, True):
        model = build_model(config, seed=1)
        model.embedding.sparse = model.linear.sparse = sparse
        optimizer = make_optimizer(model, train_config)
        for _ in range(3):
            loss = batch_objective(model, model(ids, values, one_hot=True), targets, train_config, ids=ids)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        models.append(model)
    for (name, dense_weight), sparse_weight in zip(models[0].named_parameters(), models[1].parameters()):
        # Float sums in another order, which Adagrad's first steps (about lr * sign(g)) magnify to ~1e-6;
        # a wrong row or accumulator would be off by about lr = 0.05.
        torch.testing.assert_close(sparse_weight, dense_weight, rtol=1e-4, atol=1e-5, msg=name)


def test_auto_takes_sparse_gradients_where_a_batch_touches_at_most_half_the_table():
    frappe_like = ModelConfig(model="afm", num_features=5382, num_fields=10, embedding_dim=8, attention_dim=8)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    adagrad = TrainConfig()
    assert wants_sparse_gradients(frappe_like, adagrad, cpu, 128)  # 1,280 of 5,382 rows at most
    assert not wants_sparse_gradients(frappe_like, adagrad, cpu, 1024)  # up to 10,240 rows: the whole table
    assert not wants_sparse_gradients(frappe_like, adagrad, cuda, 128)  # not measured on CUDA
    assert not wants_sparse_gradients(frappe_like, TrainConfig(optimizer="adam"), cpu, 128)
    assert not wants_sparse_gradients(frappe_like, TrainConfig(sparse_embeddings="off"), cpu, 128)
    wide = ModelConfig(model="afm", num_features=20_000, num_fields=10, embedding_dim=8, attention_dim=8)
    assert wants_sparse_gradients(wide, adagrad, cuda, 4096) and wants_sparse_gradients(wide, adagrad, cpu, 4096)
