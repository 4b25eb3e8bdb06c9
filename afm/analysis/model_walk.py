"""One row through the model, eq. (1)-(5) of "AFM: Attentional Factorization Machines" (2020-07-13)
step by step, with the row's own numbers: what the Lesson draws.

    (1) e_i ⊙ e_j for each pair of the row's features (e_i = v_i x_i)
    (2) a'_ij = hᵀ ReLU(W (e_i ⊙ e_j) + b)        AFM's attention score
    (3) a_ij  = softmax over the row's pairs of a'_ij
    (4) pooled = Σ a_ij (e_i ⊙ e_j)                a k-vector
    (5) ŷ = w0 + Σ w_i x_i + pᵀ pooled

FM and FwFM walk the same road with a_ij = 1 or r_fg and p = 1 (no scores, no softmax). Every
number is computed here from the model's own layers, not taken from `decompose`, so the tests can
hold the walk against it: the terms sum to the prediction the model makes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from afm.data import FieldSchema
from afm.models import AFM, PairwiseModel


@dataclass
class ModelWalk:
    """One row's pass, each array in pair_index order (P pairs, F fields, k embedding dims)."""

    field_names: list[str]
    value_names: list[str]  # the row's value of each field ("device=phone")
    pair_names: list[str]
    embeddings: np.ndarray  # (F, k)  e_i = v_i x_i
    products: np.ndarray  # (P, k)   e_i ⊙ e_j, eq. (1)
    scores: np.ndarray | None  # (P,) a'_ij, eq. (2); None for FM and FwFM
    weights: np.ndarray  # (P,)      a_ij, eq. (3) (1 for FM, r_fg for FwFM)
    pooled: np.ndarray  # (k,)       Σ a_ij (e_i ⊙ e_j), eq. (4)
    projection: np.ndarray  # (k,)   p (1 for FM and FwFM)
    bias: float  # w0
    first_order: np.ndarray  # (F,)  w_i x_i

    @property
    def pair_values(self) -> np.ndarray:
        """pᵀ(e_i ⊙ e_j) (P,): what each pair would add with weight 1."""
        return self.products @ self.projection

    @property
    def pair_terms(self) -> np.ndarray:
        """a_ij pᵀ(e_i ⊙ e_j) (P,): each pair's part of the prediction."""
        return self.weights * self.pair_values

    @property
    def interaction(self) -> float:
        return float(self.pooled @ self.projection)  # pᵀ pooled = Σ pair_terms

    @property
    def prediction(self) -> float:
        return float(self.bias + self.first_order.sum() + self.interaction)  # eq. (5)

    def top_pairs(self, count: int = 8) -> np.ndarray:
        """Indices of the `count` pairs with the largest weight, largest first."""
        return np.argsort(-self.weights, kind="stable")[:count]


@torch.no_grad()
def walk_row(model: PairwiseModel, schema: FieldSchema, feature_ids: np.ndarray,
             feature_values: np.ndarray | None = None) -> ModelWalk:
    """The model's pass over one row (ids (F,), values (F,), 1 where None), layer by layer."""
    ids = torch.as_tensor(np.asarray(feature_ids), dtype=torch.long).reshape(1, -1)  # (1, F)
    values = torch.ones(ids.shape, dtype=torch.float32) if feature_values is None else \
        torch.as_tensor(np.asarray(feature_values), dtype=torch.float32).reshape(1, -1)  # (1, F)
    embedded = model.embed(ids, values)  # (1, F, k)
    products = model.pair_products(embedded)[0]  # (P, k)
    if isinstance(model, AFM):
        scores = F.relu(model.attention(products)) @ model.attention_h  # (P,)  eq. (2)
        weights, projection = torch.softmax(scores, dim=0), model.projection  # (P,) eq. (3), (k,)
    else:
        scores = None
        weights, projection = model.pair_weights_and_projection(products.unsqueeze(0))  # (1, P), (k,)
        weights = weights[0]  # (P,)
    pooled = weights @ products  # (k,)  eq. (4)
    first_order = model.first_order(ids, values)[0]  # (F,)
    labels = [schema.value_name(int(i)) for i in ids[0]]
    return ModelWalk(list(schema.field_names), labels, schema.pair_names(), embedded[0].double().numpy(),
                     products.double().numpy(), None if scores is None else scores.double().numpy(),
                     weights.double().numpy(), pooled.double().numpy(), projection.double().numpy(),
                     float(model.bias), first_order.double().numpy())
