from __future__ import annotations

import pytest
import torch

from afm.errors import ConfigError
from afm.models import AFM, FM, ModelConfig, build_model


def make(model="afm", num_features=30, num_fields=5, k=6, t=4, **kwargs):
    config = ModelConfig(model=model, num_features=num_features, num_fields=num_fields, embedding_dim=k,
                         attention_dim=t, **kwargs)
    return build_model(config).double()


def batch(num_rows=7, num_features=30, num_fields=5, real_valued=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, num_features, (num_rows, num_fields), generator=g)
    values = torch.rand(num_rows, num_fields, generator=g, dtype=torch.float64) + 0.5 if real_valued \
        else torch.ones(num_rows, num_fields, dtype=torch.float64)
    return ids, values


def randomise(model, scale=0.5):
    """Untrained models have tiny embeddings; make every term matter."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, scale)
    return model


@pytest.mark.parametrize("name", ["fm", "fwfm", "afm"])
def test_output_shape_and_finite_gradients(name):
    model = randomise(make(name))
    ids, values = batch()
    out = model(ids, values)
    assert out.shape == (7,)
    out.square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def brute_force_pairwise(model, ids, values):
    """sum_{i<j} <e_i, e_j>, one pair at a time."""
    e = model.embedding(ids) * values.unsqueeze(-1)
    total = torch.zeros(ids.shape[0], dtype=e.dtype)
    for i in range(ids.shape[1]):
        for j in range(i + 1, ids.shape[1]):
            total += (e[:, i] * e[:, j]).sum(-1)
    return total


def test_fm_sum_of_squares_equals_explicit_pairwise_sum():
    model = randomise(make("fm")).eval()
    ids, values = batch()
    embedded = model.embed(ids, values)
    torch.testing.assert_close(model.interaction(embedded), brute_force_pairwise(model, ids, values))


def test_pair_index_matches_a_loop_over_pairs():
    model = randomise(make("afm")).eval()
    ids, values = batch()
    products = model.pair_products(model.embed(ids, values))  # (B, P, k)
    e = model.embed(ids, values)
    expected = torch.stack([e[:, i] * e[:, j] for i in range(5) for j in range(i + 1, 5)], dim=1)
    torch.testing.assert_close(products, expected)


def test_attention_weights_sum_to_one_over_pairs():
    model = randomise(make("afm")).eval()
    ids, values = batch()
    _, attention = model.forward_with_attention(ids, values)
    assert attention.shape == (7, 10)
    assert (attention >= 0).all()
    torch.testing.assert_close(attention.sum(1), torch.ones(7, dtype=torch.float64))


def test_afm_matches_a_loop_implementation_of_eq_1_to_5():
    model = randomise(make("afm")).eval()
    ids, values = batch()
    e = model.embed(ids, values)
    W, b, h, p = model.attention.weight, model.attention.bias, model.attention_h, model.projection
    expected = []
    for r in range(ids.shape[0]):
        scores, products = [], []
        for i in range(5):
            for j in range(i + 1, 5):
                prod = e[r, i] * e[r, j]
                scores.append(h @ torch.relu(W @ prod + b))
                products.append(prod)
        a = torch.softmax(torch.stack(scores), 0)
        pooled = sum(a_ij * prod for a_ij, prod in zip(a, products))
        linear = (model.linear(ids[r]).squeeze(-1) * values[r]).sum()
        expected.append(model.bias + linear + p @ pooled)
    torch.testing.assert_close(model(ids, values), torch.stack(expected))


def test_afm_with_uniform_attention_is_fm_scaled_by_one_over_p():
    """With h = 0 every a_ij = 1/P, and with p = 1 AFM's interaction is FM's divided by P."""
    afm, fm = randomise(make("afm")).eval(), make("fm").eval()
    fm.init_from(afm)
    with torch.no_grad():
        afm.attention_h.zero_()
        afm.projection.fill_(1.0)
    ids, values = batch()
    embedded = afm.embed(ids, values)
    torch.testing.assert_close(afm.interaction(embedded), fm.interaction(embedded) / 10)
    # ... and p scales it: p = c * 1 gives c times that.
    with torch.no_grad():
        afm.projection.fill_(3.0)
    torch.testing.assert_close(afm.interaction(embedded), 3 * fm.interaction(embedded) / 10)


def test_fwfm_with_unit_weights_equals_fm():
    fwfm, fm = randomise(make("fwfm")).eval(), make("fm").eval()
    with torch.no_grad():
        fwfm.field_pair_weights.fill_(1.0)
    fm.init_from(fwfm)
    ids, values = batch()
    torch.testing.assert_close(fwfm(ids, values), fm(ids, values))


@pytest.mark.parametrize("name", ["fm", "fwfm", "afm"])
def test_decomposition_sums_to_the_prediction(name):
    model = randomise(make(name, dropout_attention=0.3 if name == "afm" else 0.0, dropout_pooled=0.4))
    model.eval()
    ids, values = batch()
    terms = model.decompose(ids, values)
    torch.testing.assert_close(terms.prediction, model(ids, values))
    torch.testing.assert_close(terms.bias + terms.first_order.sum(1) + terms.pair_terms.sum(1), terms.prediction)
    torch.testing.assert_close(terms.pair_terms, terms.pair_weights * terms.pair_values)
    # decompose ignores dropout even when the model is left in training mode.
    model.train()
    torch.testing.assert_close(model.decompose(ids, values).prediction, terms.prediction)


def test_dropout_only_in_training():
    model = randomise(make("afm", dropout_attention=0.5, dropout_pooled=0.5))
    ids, values = batch()
    model.eval()
    assert torch.equal(model(ids, values), model(ids, values))
    model.train()
    torch.manual_seed(1)
    first = model(ids, values)
    torch.manual_seed(2)
    assert not torch.equal(first, model(ids, values))


def test_softmax_is_stable_for_huge_scores():
    model = randomise(make("afm").float()).eval()
    with torch.no_grad():
        model.attention_h.fill_(1e4)  # scores in the thousands: a hand-made exp would overflow
    ids, values = batch()
    _, attention = model.forward_with_attention(ids, values.float())
    assert torch.isfinite(attention).all()
    torch.testing.assert_close(attention.sum(1), torch.ones(7))


def test_authors_initialisation():
    model = AFM(ModelConfig(model="afm", num_features=2000, num_fields=4, embedding_dim=64, attention_dim=32))
    assert abs(model.embedding.weight.std().item() - 0.01) < 0.001
    assert model.linear.weight.abs().max() == 0 and model.bias.item() == 0
    assert torch.equal(model.projection.detach(), torch.ones(64))
    glorot = (2 / (64 + 32)) ** 0.5
    assert abs(model.attention.weight.std().item() - glorot) < 0.1 * glorot


def test_init_from_copies_embeddings_and_checks_shapes():
    fm = randomise(FM(ModelConfig(model="fm", num_features=30, num_fields=5, embedding_dim=6)))
    afm = AFM(ModelConfig(model="afm", num_features=30, num_fields=5, embedding_dim=6, attention_dim=4))
    afm.init_from(fm)
    assert torch.equal(afm.embedding.weight, fm.embedding.weight) and torch.equal(afm.bias, fm.bias)
    other = AFM(ModelConfig(model="afm", num_features=30, num_fields=5, embedding_dim=8, attention_dim=4))
    with pytest.raises(ConfigError, match="cannot initialise"):
        other.init_from(fm)


@pytest.mark.parametrize("bad", [dict(model="nfm"), dict(num_fields=1), dict(embedding_dim=0),
                                 dict(dropout_pooled=1.0), dict(num_features=-3)])
def test_config_validation(bad):
    args = dict(model="afm", num_features=30, num_fields=5) | bad
    with pytest.raises(ConfigError):
        ModelConfig(**args)


def test_config_round_trip():
    config = ModelConfig(model="fwfm", num_features=30, num_fields=5, embedding_dim=6, dropout_pooled=0.0)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown"):
        ModelConfig.from_dict(config.to_dict() | {"exec": "rm -rf /"})


def test_match_fm_starts_afm_as_the_fm_with_uniform_attention():
    fm = randomise(make("fm")).eval()
    afm = make("afm").eval()
    afm.init_from(fm, match_fm=True)
    with torch.no_grad():
        afm.attention_h.zero_()  # exactly uniform attention
    ids, values = batch()
    torch.testing.assert_close(afm(ids, values), fm(ids, values))


@pytest.mark.parametrize("name", ["fm", "fwfm", "afm"])
def test_distinct_pair_decomposition_equals_the_general_path(name):
    model = randomise(make(name, num_features=12)).eval()
    ids, _ = batch(num_rows=50, num_features=12)  # many repeated feature pairs
    ones = torch.ones(ids.shape, dtype=torch.float64)
    embedded = model.embed(ids, ones)
    fast = model.pair_weights_and_values(ids, ones, embedded)
    products = model.pair_products(embedded)  # (B, P, k): every pair slot on its own
    weights, projection = model.pair_weights_and_projection(products)
    for a, b in zip(fast, (weights, products @ projection)):
        torch.testing.assert_close(a, b)
    terms = model.decompose(ids, ones)
    torch.testing.assert_close(terms.prediction, model(ids, ones))


@pytest.mark.parametrize("name", ["fm", "fwfm", "afm"])
def test_inference_equals_eval_forward_and_keeps_the_mode(name):
    model = randomise(make(name, dropout_pooled=0.5))
    ids, values = batch(num_features=30)
    for x in (values, torch.ones_like(values)):  # real-valued and one-hot rows
        model.eval()
        expected = model(ids, x)
        model.train()
        torch.testing.assert_close(model.inference(ids, x), expected)
        assert model.training


def forward_and_gradients(model, ids, values, one_hot, seed):
    """Prediction and every parameter's gradient of sum(prediction²), dropout masks drawn from `seed`."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    prediction = model(ids, values, one_hot=one_hot)
    prediction.square().sum().backward()
    return prediction.detach(), {name: p.grad.to_dense() for name, p in model.named_parameters()}


@pytest.mark.parametrize("name,dropout_attention,dropout_pooled", [
    ("fm", 0.0, 0.0), ("fm", 0.0, 0.5), ("fwfm", 0.0, 0.0), ("fwfm", 0.0, 0.5),
    ("afm", 0.0, 0.0), ("afm", 0.0, 0.2), ("afm", 0.4, 0.0), ("afm", 0.3, 0.5)])
@pytest.mark.parametrize("num_features", [8, 500])  # pairs shared by many rows; nearly every pair distinct
def test_one_hot_path_computes_the_same_function_and_gradients(name, dropout_attention, dropout_pooled,
                                                               num_features):
    """The distinct-pair path (training's default on one-hot rows) against the plain (B, P, k) one,
    in float64, with dropout: both draw the same masks in the same order, so they agree to 1e-10."""
    model = randomise(make(name, num_features=num_features, dropout_attention=dropout_attention,
                           dropout_pooled=dropout_pooled))
    ids, values = batch(num_rows=64, num_features=num_features, real_valued=False)
    for mode in ("train", "eval"):
        model.train(mode == "train")
        plain, plain_grads = forward_and_gradients(model, ids, values, one_hot=False, seed=5)
        shared, shared_grads = forward_and_gradients(model, ids.int(), values, one_hot=True, seed=5)
        torch.testing.assert_close(shared, plain, rtol=0, atol=1e-10)
        for key, grad in plain_grads.items():
            torch.testing.assert_close(shared_grads[key], grad, rtol=0, atol=1e-10, msg=f"{mode}: {key}")


def test_one_hot_path_shares_pairs_across_rows():
    """Rows that repeat a pair read one table row: U distinct pairs, not B x P."""
    model = make("afm", num_features=8)
    ids, _ = batch(num_rows=64, num_features=8)
    products, slot = model.distinct_pair_products(ids)  # (U, k), (B, P)
    left, right = model.pair_index
    keys = {(int(a), int(b)) for a, b in zip(ids[:, left].flatten(), ids[:, right].flatten())}
    assert products.shape == (len(keys), 6) and slot.shape == (64, 10) and len(keys) < 64 * 10
    e = model.embedding(ids)  # (B, F, k)
    torch.testing.assert_close(products[slot], e[:, left] * e[:, right])


@pytest.mark.parametrize("name", ["fwfm", "afm"])
def test_one_hot_path_with_sparse_embedding_gradients(name):
    """Sparse-row embedding gradients (the trainer's choice for big tables) through the shared pairs."""
    model = randomise(make(name, num_features=40, dropout_pooled=0.0))
    ids, values = batch(num_rows=32, num_features=40, real_valued=False)
    _, dense = forward_and_gradients(model, ids, values, one_hot=True, seed=0)
    model.embedding.sparse = model.linear.sparse = True
    _, sparse = forward_and_gradients(model, ids, values, one_hot=True, seed=0)
    assert model.embedding.weight.grad.is_sparse
    for key, grad in dense.items():
        torch.testing.assert_close(sparse[key], grad, rtol=0, atol=1e-12)


def test_building_a_model_leaves_the_global_rng_alone():
    """Weights come from the model's own seeded generator; dropout masks come from the global RNG,
    so building (or loading) a model must not move it."""
    torch.manual_seed(3)
    expected = torch.rand(4)
    for name in ("fm", "fwfm", "afm"):
        torch.manual_seed(3)
        build_model(ModelConfig(model=name, num_features=20, num_fields=4, embedding_dim=8, attention_dim=8), seed=0)
        assert torch.equal(torch.rand(4), expected), name


def test_loading_a_small_checkpoint_does_not_import_the_compiler_stack():
    """The app's first page loads six bundled checkpoints: building AFM's Linear on the `meta`
    device imported sympy through torch.fx (0.45 s of the first page)."""
    import subprocess
    import sys

    code = ("import sys; from afm.samples.checkpoints import sample_checkpoint_path; "
            "from afm.checkpoint import load_checkpoint; load_checkpoint(sample_checkpoint_path('afm')); "
            "print('sympy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
