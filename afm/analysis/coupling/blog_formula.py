"""The blog post's eq. (11) for AFM's embedding gradient, implemented literally, and its error
against autograd: it keeps only the diagonal a(1 - a) of the softmax Jacobian."""

from __future__ import annotations

import copy

import numpy as np
import torch

from afm.analysis.coupling.gradients import (
    GradientParts,
    autograd_embedding_gradient,
    loss_derivatives,
    predict_from_embeddings,
    relative_error,
)
from afm.models import AFM


def seed_formula_gradient(model: AFM, feature_ids, feature_values, targets, task: str = "regression"):
    """The blog post's eq. (11), literally: ∂L/∂v_i = ℓ' p x_i ⊙ Σ_j (a_ij(1 - a_ij) φ(i, v_j) ⊙
    (v_i ⊙ v_j) x_j + a_ij v_j x_j), φ(i, v_j) = ∂a'_ij/∂v_i = x_i x_j (v_j ⊙ u_ij). (B, F, k)"""
    assert isinstance(model, AFM), "the blog post's formula is about AFM"
    with torch.no_grad():
        embeddings = model.embedding(feature_ids)  # (B, F, k)
        x = feature_values  # (B, F)
        embedded = embeddings * x.unsqueeze(-1)  # (B, F, k)
        predictions = predict_from_embeddings(model, embeddings, feature_ids, feature_values)
        first_derivative, _ = loss_derivatives(predictions, targets, task)  # (B,)
        products = model.pair_products(embedded)  # (B, P, k)
        pre_activation, attention = model.attention_network(products)  # (B, P, t), (B, P)
        attention = attention.unsqueeze(-1)  # (B, P, 1)
        score_gradient = (model.attention_h * (pre_activation > 0)) @ model.attention.weight  # (B, P, k)
        left, right = model.pair_index
        v_i, v_j = embeddings[:, left], embeddings[:, right]  # (B, P, k)
        x_i, x_j = x[:, left].unsqueeze(-1), x[:, right].unsqueeze(-1)  # (B, P, 1)
        both = v_i * v_j  # (B, P, k)
        softmax_diagonal = attention * (1 - attention)  # (B, P, 1)
        phi_to_left = x_i * x_j * v_j * score_gradient  # ∂a'_q/∂v_i
        phi_to_right = x_i * x_j * v_i * score_gradient  # ∂a'_q/∂v_j
        to_left = x_i * (softmax_diagonal * phi_to_left * both * x_j + attention * v_j * x_j)  # (B, P, k)
        to_right = x_j * (softmax_diagonal * phi_to_right * both * x_i + attention * v_i * x_i)
        scale = first_derivative.view(-1, 1, 1) * model.projection  # (B, 1, k)  ℓ' p
        return GradientParts(to_left * scale, to_right * scale, model.pair_index, model.config.num_fields).gradient()


def seed_formula_error(model: AFM, feature_ids, feature_values, targets, task="regression") -> float:
    """||blog post eq. (11) - autograd|| / ||autograd|| over a batch (the "seed formula": the
    argument this project started from)."""
    reference = autograd_embedding_gradient(model, feature_ids, feature_values, targets, task)
    return relative_error(seed_formula_gradient(model, feature_ids, feature_values, targets, task), reference)


def seed_formula_error_by_scale(model: AFM, feature_ids, feature_values, targets, scales, task="regression"):
    """The blog formula's relative error when every embedding is multiplied by each scale:
    the softmax terms it drops grow with |v|², so it is right only for tiny embeddings."""
    errors = []
    for scale in scales:
        scaled = copy.deepcopy(model)
        with torch.no_grad():
            scaled.embedding.weight.mul_(float(scale))
        errors.append(seed_formula_error(scaled, feature_ids, feature_values, targets, task))
    return np.array(errors)
