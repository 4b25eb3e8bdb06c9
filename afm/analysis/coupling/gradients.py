"""Embedding gradients split into each pair's part, by closed form (`pair_factors`), beside the
autograd reference they are tested against. The formulas are in the package docstring."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from afm.models import PairwiseModel
from afm.train import data_loss

TASK_LOSS = ("regression", "binary")


def loss_derivatives(predictions: torch.Tensor, targets: torch.Tensor, task: str):
    """ℓ' and ℓ'' per row for the per-row loss (½(ŷ - y)² or binary cross-entropy on the logit)."""
    assert task in TASK_LOSS, f"task must be one of {TASK_LOSS}"
    if task == "binary":
        probability = torch.sigmoid(predictions)
        return probability - targets, probability * (1 - probability)
    return predictions - targets, torch.ones_like(predictions)


def _leaf_embeddings(model: PairwiseModel, feature_ids: torch.Tensor) -> torch.Tensor:
    return model.embedding(feature_ids).detach().requires_grad_(True)  # (B, F, k) v per row


def predict_from_embeddings(model: PairwiseModel, embeddings: torch.Tensor, feature_ids: torch.Tensor,
                            feature_values: torch.Tensor) -> torch.Tensor:
    """ŷ as a function of the rows' embedding vectors v (B, F, k), dropout off: lets autograd
    differentiate with respect to each row's own copy of v."""
    embedded = embeddings * feature_values.unsqueeze(-1)  # (B, F, k)
    linear = model.first_order(feature_ids, feature_values).sum(1)  # (B,)
    was_training = model.training
    model.eval()
    try:
        return model.bias + linear + model.interaction(embedded)  # (B,)
    finally:
        model.train(was_training)


def autograd_embedding_gradient(model, feature_ids, feature_values, targets, task="regression") -> torch.Tensor:
    """Reference: ∂L/∂v for every row and field by autograd, (B, F, k)."""
    embeddings = _leaf_embeddings(model, feature_ids)
    predictions = predict_from_embeddings(model, embeddings, feature_ids, feature_values)
    return torch.autograd.grad(data_loss(predictions, targets, task), embeddings)[0]


@dataclass
class GradientParts:
    """Each pair's share of the embedding gradients, for a batch of rows."""

    to_left: torch.Tensor  # (B, P, k) the part pair (i, j) sends to v_i: ℓ' x_i x_j (v_j ⊙ c_q)
    to_right: torch.Tensor  # (B, P, k) the part it sends to v_j:        ℓ' x_i x_j (v_i ⊙ c_q)
    pair_index: torch.Tensor  # (2, P)
    num_fields: int

    def by_partner(self) -> torch.Tensor:
        """(B, F, F, k): [b, f, g] is what partner g contributes to ∂L/∂v_f (zero on the diagonal)."""
        batch, _, k = self.to_left.shape
        full = self.to_left.new_zeros(batch, self.num_fields, self.num_fields, k)
        left, right = self.pair_index
        full[:, left, right] = self.to_left
        full[:, right, left] = self.to_right
        return full

    def gradient(self) -> torch.Tensor:
        """(B, F, k): the sum of the parts, ∂L/∂v_f."""
        batch, _, k = self.to_left.shape
        total = self.to_left.new_zeros(batch, self.num_fields, k)
        left, right = self.pair_index
        total.index_add_(1, left, self.to_left)
        total.index_add_(1, right, self.to_right)
        return total


def pair_factors(model: PairwiseModel, embedded: torch.Tensor) -> torch.Tensor:
    """c_q for every row and pair, (B, P, k) (see the module docstring)."""
    batch = embedded.shape[0]
    k, pairs = model.config.embedding_dim, model.config.num_pairs
    weights = model.fixed_pair_weights()  # (P,), None for AFM's per-row attention
    if weights is None:
        products = model.pair_products(embedded)  # (B, P, k)  e_q
        pre_activation, attention = model.attention_network(products)  # (B, P, t) W e_q + b, (B, P) a_q
        pair_values = products @ model.projection  # (B, P)  s_q
        mean_value = (attention * pair_values).sum(1, keepdim=True)  # (B, 1)  s̄
        score_gradient = (model.attention_h * (pre_activation > 0)) @ model.attention.weight  # (B, P, k)  u_q
        return attention.unsqueeze(-1) * (model.projection + (pair_values - mean_value).unsqueeze(-1)
                                          * score_gradient)  # (B, P, k)
    return weights.view(1, pairs, 1).expand(batch, pairs, k)  # (B, P, k)


def embedding_gradient_parts(model: PairwiseModel, feature_ids, feature_values, targets,
                             task: str = "regression") -> GradientParts:
    with torch.no_grad():
        embeddings = model.embedding(feature_ids)  # (B, F, k)
        embedded = embeddings * feature_values.unsqueeze(-1)  # (B, F, k)
        predictions = predict_from_embeddings(model, embeddings, feature_ids, feature_values)  # (B,)
        first_derivative, _ = loss_derivatives(predictions, targets, task)  # (B,)
        left, right = model.pair_index
        scale = first_derivative.unsqueeze(1) * feature_values[:, left] * feature_values[:, right]  # (B, P)
        factors = pair_factors(model, embedded) * scale.unsqueeze(-1)  # (B, P, k)
        return GradientParts(embeddings[:, right] * factors, embeddings[:, left] * factors, model.pair_index,
                             model.config.num_fields)


def relative_error(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    return float((estimate - reference).norm() / reference.norm().clamp_min(1e-300))
