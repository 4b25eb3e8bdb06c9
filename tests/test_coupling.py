"""Closed-form gradients and coupling measures against autograd, in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from afm.analysis.coupling import (
    autograd_embedding_gradient,
    coupling_summary,
    embedding_gradient_parts,
    hessian_coupling,
    information_abundance,
    predict_from_embeddings,
    relative_error,
    seed_formula_error_by_scale,
    seed_formula_gradient,
)
from afm.models import ModelConfig, build_model

FIELDS, FEATURES, K, T = 4, 20, 5, 3


def model_and_batch(name, rows=6, scale=0.7, seed=0, dropout=0.3):
    torch.manual_seed(seed)
    # Dropout is set on purpose: every analysis must use the dropout-free function.
    config = ModelConfig(model=name, num_features=FEATURES, num_fields=FIELDS, embedding_dim=K, attention_dim=T,
                         dropout_attention=dropout if name == "afm" else 0.0, dropout_pooled=dropout)
    model = build_model(config).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, scale)
    model.train()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, FEATURES, (rows, FIELDS), generator=g)
    values = torch.rand(rows, FIELDS, generator=g, dtype=torch.float64) * 1.5 + 0.25  # real-valued x
    targets = torch.randn(rows, generator=g, dtype=torch.float64)
    return model, ids, values, targets


@pytest.mark.parametrize("task", ["regression", "binary"])
@pytest.mark.parametrize("name", ["fm", "fwfm", "afm"])
def test_closed_form_gradient_matches_autograd(name, task):
    for seed in range(3):
        model, ids, values, targets = model_and_batch(name, seed=seed)
        if task == "binary":
            targets = (targets > 0).double()
        reference = autograd_embedding_gradient(model, ids, values, targets, task)
        parts = embedding_gradient_parts(model, ids, values, targets, task)
        assert relative_error(parts.gradient(), reference) < 1e-9
        # The per-partner parts sum exactly to the gradient.
        torch.testing.assert_close(parts.by_partner().sum(2), parts.gradient(), rtol=0, atol=1e-12)


def test_fm_gradient_is_eq_7():
    """∂L/∂v_i = ℓ' x_i (s - x_i v_i), s = Σ_j x_j v_j: depends only on the other embeddings."""
    model, ids, values, targets = model_and_batch("fm")
    v = model.embedding(ids).detach()
    s = (v * values.unsqueeze(-1)).sum(1, keepdim=True)
    predictions = predict_from_embeddings(model, v, ids, values).detach()
    expected = (predictions - targets).view(-1, 1, 1) * values.unsqueeze(-1) * (s - values.unsqueeze(-1) * v)
    torch.testing.assert_close(autograd_embedding_gradient(model, ids, values, targets), expected)


def test_seed_formula_is_wrong_for_afm_and_right_only_for_tiny_embeddings():
    model, ids, values, targets = model_and_batch("afm", rows=32, scale=1.0)
    with torch.no_grad():
        model.attention.bias.abs_()  # active ReLU units even for tiny embeddings: the terms exist
    reference = autograd_embedding_gradient(model, ids, values, targets)
    assert relative_error(seed_formula_gradient(model, ids, values, targets), reference) > 0.05
    errors = seed_formula_error_by_scale(model, ids, values, targets, scales=[1e-3, 1e-1, 1.0])
    assert 0 < errors[0] < 1e-4 < errors[2]
    assert errors[0] < errors[1] < errors[2]


def exact_block_norms(model, ids, values, targets, task="regression"):
    """||∂²L/∂v_f∂v_g||_F for each row from the full autograd Hessian; RMS over rows, (F, F)."""
    squares = []
    for r in range(ids.shape[0]):
        def loss(flat, r=r):
            v = flat.view(1, FIELDS, K)
            y = predict_from_embeddings(model, v, ids[r:r + 1], values[r:r + 1])
            if task == "binary":
                return torch.nn.functional.binary_cross_entropy_with_logits(y, targets[r:r + 1], reduction="sum")
            return 0.5 * (y - targets[r]).square().sum()
        v0 = model.embedding(ids[r:r + 1]).detach().reshape(-1)
        hessian = torch.autograd.functional.hessian(loss, v0).view(FIELDS, K, FIELDS, K)
        squares.append(hessian.square().sum((1, 3)))
    return torch.stack(squares).mean(0).sqrt().numpy()


@pytest.mark.parametrize("name", ["fm", "fwfm", "afm"])
def test_hessian_blocks_match_the_full_autograd_hessian(name):
    model, ids, values, targets = model_and_batch(name, rows=4)
    probes = "exact" if name == "afm" else 8
    result = hessian_coupling(model, ids, values, targets, probes=probes)
    np.testing.assert_allclose(result.total, exact_block_norms(model, ids, values, targets), rtol=1e-8, atol=1e-10)


def test_hessian_parts_for_fm_are_the_closed_forms():
    model, ids, values, targets = model_and_batch("fm", rows=5)
    result = hessian_coupling(model, ids, values, targets)
    predictions = predict_from_embeddings(model, model.embedding(ids).detach(), ids, values).detach()
    first = (predictions - targets).abs()
    x = values
    expected = np.sqrt(((first.view(-1, 1, 1) * x.unsqueeze(2) * x.unsqueeze(1)) ** 2 * K).mean(0).numpy())
    off = ~np.eye(FIELDS, dtype=bool)
    np.testing.assert_allclose(result.model_part[off], expected[off], rtol=1e-10)
    assert result.method == "closed form"


def test_hutchinson_estimate_is_close_and_states_its_error():
    model, ids, values, targets = model_and_batch("afm", rows=64)
    exact = hessian_coupling(model, ids, values, targets, probes="exact")
    estimate = hessian_coupling(model, ids, values, targets, probes=16)
    off = ~np.eye(FIELDS, dtype=bool)
    relative = np.abs(estimate.model_part - exact.model_part)[off] / exact.model_part[off]
    # Within four stated standard errors (and the stated errors are small, not vacuous).
    assert np.all(relative <= 4 * estimate.relative_stderr[off] + 1e-12)
    assert estimate.relative_stderr[off].max() < 0.2
    assert "Hutchinson" in estimate.method


def test_coupling_summary_shares_cosines_and_cancellation():
    model, ids, values, targets = model_and_batch("afm", rows=40)
    summary = coupling_summary(model, ids, values, targets, chunk=7)  # uneven chunks on purpose
    off = ~np.eye(FIELDS, dtype=bool)
    np.testing.assert_allclose(np.nansum(summary.share, axis=1), 1.0)
    assert np.all(summary.share[off] > 0) and np.all(np.isnan(np.diag(summary.share)))
    assert np.all(np.abs(summary.cosine[off]) <= 1 + 1e-12)
    assert np.all((summary.cancellation >= -1e-12) & (summary.cancellation <= 1))
    # Brute force for row 0 / field 0 from the explicit parts.
    parts = embedding_gradient_parts(model, ids, values, targets).by_partner()
    norms = parts.norm(dim=-1)
    expected_share = norms.sum(0)[0, 1:] / norms.sum(0)[0].sum()
    np.testing.assert_allclose(summary.share[0, 1:], expected_share.numpy(), rtol=1e-10)
    cancel = (1 - parts.sum(2).norm(dim=-1) / norms.sum(2)).mean(0)
    np.testing.assert_allclose(summary.cancellation, cancel.numpy(), rtol=1e-10)


def test_single_partner_has_no_cancellation():
    """With two fields each embedding has one partner: its part is the whole gradient."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="fm", num_features=6, num_fields=2, embedding_dim=4)).double()
    ids = torch.tensor([[0, 3], [1, 4], [2, 5]])
    values = torch.ones(3, 2, dtype=torch.float64)
    summary = coupling_summary(model, ids, values, torch.ones(3, dtype=torch.float64))
    np.testing.assert_allclose(summary.cancellation, 0.0, atol=1e-12)
    np.testing.assert_allclose(summary.cosine[0, 1], 1.0)


def test_information_abundance_counts_directions():
    model, *_ = model_and_batch("fm")
    with torch.no_grad():
        model.embedding.weight.zero_()
        model.embedding.weight[:, 0] = 1.0  # rank one
    assert information_abundance(model) == pytest.approx(1.0)
    with torch.no_grad():
        model.embedding.weight.zero_()
        model.embedding.weight[:K] = torch.eye(K, dtype=torch.float64)  # K equal directions
    assert information_abundance(model) == pytest.approx(K)


def test_tracker_records_coupling_into_the_history(tmp_path):
    from afm.analysis.coupling import CouplingTracker
    from afm.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from afm.data import load_dataset
    from afm.recipe import Recipe
    from afm.train import TrainConfig, train_model

    data = load_dataset("sample")
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="afm", num_features=data.schema.num_features,
                                    num_fields=data.schema.num_fields, embedding_dim=8, attention_dim=8))
    probe = [torch.from_numpy(a[:128]) for a in (data.valid.feature_ids, data.valid.feature_values,
                                                  data.valid.labels)]
    tracker = CouplingTracker(model, *probe, epochs={0, 2}, hessian_probes=2)
    result = train_model(model, data, TrainConfig(epochs=2, lr=0.2, batch_size=512), callbacks=[tracker])
    tracked = [r["epoch"] for r in result.history if "coupling" in r]
    assert tracked == [0, 2]
    measures = result.history[2]["coupling"]
    assert len(measures["share"]) == 10 and len(measures["cancellation"]) == 10
    assert 0 < measures["seed_formula_error"] and 1 <= measures["information_abundance"] <= 8
    assert len(measures["hessian_model_part"]) == 10
    recipe = Recipe(model="afm", embedding_dim=8, attention_dim=8, epochs=2, lr=0.2, batch_size=512)
    path = save_checkpoint(tmp_path / "m.safetensors", Checkpoint.from_training(result, data, recipe))
    assert load_checkpoint(path).history[2]["coupling"]["share"] == measures["share"]


# --------------------------------------------------------------------------- claims the docs make


def rescaled(model, c: float):
    """v -> c v, with the weights that read e_i ⊙ e_j divided by c² (AFM: p and W; FwFM: r):
    the same function of the inputs, other parameters."""
    import copy

    other = copy.deepcopy(model)
    with torch.no_grad():
        other.embedding.weight.mul_(c)
        if name_of(model) == "afm":
            other.projection.div_(c * c)
            other.attention.weight.div_(c * c)
        else:
            other.field_pair_weights.div_(c * c)
    return other


def name_of(model) -> str:
    return model.config.model


@pytest.mark.parametrize("name", ["fwfm", "afm"])
def test_hessian_blocks_are_not_invariant_to_reparameterisation_but_their_ratio_is(name):
    """v -> c v with p, W (or r) -> / c² leaves every prediction unchanged and divides both
    Hessian parts by c²: absolute block sizes cannot be compared across models; the ratio of the
    model part to the curvature part can."""
    model, ids, values, targets = model_and_batch(name, rows=16, scale=0.5)
    model.eval()
    c = 3.0
    other = rescaled(model, c).eval()
    torch.testing.assert_close(other(ids, values), model(ids, values), rtol=1e-10, atol=1e-10)
    probes = "exact"
    base = hessian_coupling(model, ids, values, targets, probes=probes)
    moved = hessian_coupling(other, ids, values, targets, probes=probes)
    off = ~np.eye(FIELDS, dtype=bool)
    np.testing.assert_allclose(moved.model_part[off], base.model_part[off] / c**2, rtol=1e-8)
    np.testing.assert_allclose(moved.curvature_part[off], base.curvature_part[off] / c**2, rtol=1e-8)
    np.testing.assert_allclose((moved.model_part / moved.curvature_part)[off],
                               (base.model_part / base.curvature_part)[off], rtol=1e-8)


def test_cancellation_baseline_is_what_random_directions_give():
    """Partners pulling in independent random directions: the cancellation index equals its
    baseline; nine equal pulls give 1 - 1/3. FM's index does not involve the loss at all."""
    from afm.analysis.coupling import CouplingSummary  # noqa: F401 - the field under test

    config = ModelConfig(model="fm", num_features=1000, num_fields=10, embedding_dim=4096, attention_dim=4)
    model = build_model(config, seed=0).double().eval()  # random N(0, 0.01) embeddings in 4096 dimensions
    g = torch.Generator().manual_seed(0)
    ids = torch.arange(10).repeat(64, 1) + 10 * torch.randint(0, 100, (64, 10), generator=g)  # (64, 10)
    values = torch.ones(64, 10, dtype=torch.float64)
    summary = coupling_summary(model, ids, values, torch.randn(64, generator=g, dtype=torch.float64))
    np.testing.assert_allclose(summary.cancellation, summary.cancellation_baseline, atol=0.02)
    np.testing.assert_allclose(summary.cancellation_baseline, 1 - 1 / 3, atol=0.02)
    other_targets = coupling_summary(model, ids, values, torch.randn(64, generator=g, dtype=torch.float64) * 50)
    np.testing.assert_allclose(other_targets.cancellation, summary.cancellation, rtol=1e-12)


def test_the_seed_formula_is_close_at_initialisation_because_embeddings_are_small_not_because_relus_are_off():
    """A default AFM has about half its attention ReLUs on; the seed's eq. (11) is nearly right
    at N(0, 0.01) embeddings and far off once they are 100 times larger."""
    from afm.analysis.coupling import relu_active_fraction, seed_formula_error

    config = ModelConfig(model="afm", num_features=200, num_fields=8, embedding_dim=16, attention_dim=16)
    model = build_model(config, seed=0).double().eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.arange(8).repeat(128, 1) * 25 + torch.randint(0, 25, (128, 8), generator=g)
    values = torch.ones(128, 8, dtype=torch.float64)
    targets = torch.randn(128, generator=g, dtype=torch.float64)
    assert 0.3 < relu_active_fraction(model, ids, values) < 0.7
    assert seed_formula_error(model, ids, values, targets) < 0.01
    grown = rescaled(model, 1.0)
    with torch.no_grad():
        grown.embedding.weight.mul_(100)
    assert 0.3 < relu_active_fraction(grown, ids, values) < 0.7
    assert seed_formula_error(grown, ids, values, targets) > 0.3
