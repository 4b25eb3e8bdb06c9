"""FM, FwFM and AFM over one shared embedding layer.

Notation (eq. 1-6 of the blog post "AFM: Attentional Factorization Machines", 2020-07-13, which
follows Xiao et al., IJCAI 2017): a row has F fields, field f holds feature i with value x_i
(1 for one-hot features). e_i = v_i x_i is its embedding, k = embedding_dim. The P = F(F-1)/2
field pairs (i < j) are enumerated once by `pair_index` (torch.triu_indices, a buffer), so no
forward pass loops over pairs in Python.

All three models share:   y = w0 + sum_i w_i x_i + sum_{i<j} weight_ij * value_ij
with value_ij = p^T (e_i ⊙ e_j) and
    FM   (eq. 6): weight_ij = 1,     p = 1
    FwFM        : weight_ij = r_fg,  a learned scalar per field pair, p = 1
    AFM  (eq. 5): weight_ij = a_ij = softmax over pairs of h^T ReLU(W (e_i ⊙ e_j) + b), p learned.
Each builds the pooled k-vector sum_ij weight_ij (e_i ⊙ e_j) and drops out on it (the authors'
`keep` on FM and AFM's keep[1]); AFM also drops out on a_ij (keep[0]). Outputs are raw scores:
the regression target, or a logit for the binary task. No sigmoid inside the model.

One-hot rows (every x = 1, `forward(..., one_hot=True)`): a pair's product e_i ⊙ e_j, AFM's score
a'_ij and its value depend only on the two feature ids, and pairs repeat across rows (Frappe: 22 %
of a batch of 4,096 rows' pair slots are distinct). FwFM and AFM then compute each distinct pair
once, as a (U, k) table, and pool each row's P pairs from it without building the (B, P, k)
tensor: the same function and gradients for a fraction of the work, in training as in inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import afm.numerics  # noqa: F401 - starts the workers flushing subnormals (see there)
from afm.errors import ConfigError
from afm.model_config import MODEL_NAMES as MODEL_NAMES  # re-exported: afm.models is where callers look
from afm.model_config import ModelConfig


@dataclass
class PredictionTerms:
    """A prediction split into its additive parts: prediction = bias + sum(first_order) + sum(pair_terms)."""

    prediction: torch.Tensor  # (B,)
    bias: torch.Tensor  # ()       w0
    first_order: torch.Tensor  # (B, F)   w_i x_i per field
    pair_values: torch.Tensor  # (B, P)   p^T (e_i ⊙ e_j), the interaction before weighting
    pair_weights: torch.Tensor  # (B, P)   1 (FM), r_fg (FwFM), a_ij (AFM)
    pair_terms: torch.Tensor  # (B, P)   pair_weights * pair_values, each pair's share of the prediction


def per_slot(values: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """values[slot]: each row's pairs from the distinct pairs', (U,) -> (B, P). By index_select, whose
    backward is an index_add (advanced indexing's index_put with accumulation is several times slower)."""
    return values.index_select(0, slot.flatten()).view(slot.shape)  # (B, P)


class PairwiseModel(nn.Module):
    """Shared parts: embeddings v, first-order weights w, global bias w0, the pair index."""

    computes_distinct_pairs = True  # whether `one_hot_interaction` computes each distinct pair once
    # AFM's attention network's dtype in training steps (afm.train sets it from the recipe's `precision`;
    # None: the weights'); evaluation and every analysis compute in the weights' float32 or float64.
    training_dtype: torch.dtype | None = None

    def __init__(self, config: ModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        # Allocated uninitialised and initialised below from `generator`: building a model never
        # draws from (or depends on) the process-wide random state that other threads use.
        self.embedding = nn.Embedding(config.num_features, config.embedding_dim,
                                      _weight=torch.empty(config.num_features, config.embedding_dim))  # v_i
        self.linear = nn.Embedding(config.num_features, 1, _weight=torch.empty(config.num_features, 1))  # w_i
        self.bias = nn.Parameter(torch.zeros(()))  # w0
        # Row-major i < j pairs, built once. Not saved: the config rebuilds it.
        self.register_buffer("pair_index", torch.triu_indices(config.num_fields, config.num_fields, offset=1),
                             persistent=False)  # (2, P)
        self.pooled_dropout = nn.Dropout(config.dropout_pooled)
        # The authors' initialisation: v ~ N(0, 0.01), w = 0, w0 = 0 (not the blog post's randn biases).
        nn.init.normal_(self.embedding.weight, 0.0, 0.01, generator=generator)
        nn.init.zeros_(self.linear.weight)

    def embed(self, feature_ids: torch.Tensor, feature_values: torch.Tensor) -> torch.Tensor:
        assert feature_ids.shape == feature_values.shape and feature_ids.shape[1] == self.config.num_fields, \
            f"expected (B, {self.config.num_fields}) ids and values, got {tuple(feature_ids.shape)}"
        return self.embedding(feature_ids) * feature_values.unsqueeze(-1)  # (B, F, k)  e_i = v_i x_i

    def first_order(self, feature_ids: torch.Tensor, feature_values: torch.Tensor) -> torch.Tensor:
        return self.linear(feature_ids).squeeze(-1) * feature_values  # (B, F)  w_i x_i

    def pair_products(self, embedded: torch.Tensor) -> torch.Tensor:
        left, right = self.pair_index
        # index_select: its backward (index_add) is much cheaper than advanced indexing's index_put.
        return embedded.index_select(1, left) * embedded.index_select(1, right)  # (B, P, k)  e_i ⊙ e_j

    def forward(self, feature_ids: torch.Tensor, feature_values: torch.Tensor, one_hot: bool = False) -> torch.Tensor:
        """Predictions (B,). `one_hot`: the caller vouches that every value is 1 (checked once per
        dataset, not per batch: a check here would sync a GPU each step), so pairs can be shared."""
        feature_ids = feature_ids.long()  # int64 from the boundary on: pair keys need the range
        linear = self.first_order(feature_ids, feature_values).sum(1)  # (B,)
        if one_hot:
            return self.bias + linear + self.one_hot_interaction(feature_ids)  # (B,)
        embedded = self.embed(feature_ids, feature_values)  # (B, F, k)
        return self.bias + linear + self.interaction(embedded)  # (B,)

    def interaction(self, embedded: torch.Tensor) -> torch.Tensor:
        """The second-order part of the prediction, (B, F, k) -> (B,)."""
        raise NotImplementedError

    def one_hot_interaction(self, feature_ids: torch.Tensor) -> torch.Tensor:
        """`interaction` of rows whose values are all 1, (B, F) ids -> (B,). This default (FM's) is
        the plain path with x = 1; FwFM and AFM compute each distinct pair once instead."""
        return self.interaction(self.embedding(feature_ids))  # (B, F, k) -> (B,)

    def distinct_pair_products(self, feature_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(products (U, k), slot (B, P)): e_i ⊙ e_j of each distinct feature pair of one-hot rows
        once, and where each row's pairs are in it: row b's pair p is products[slot[b, p]]."""
        left, right = self.pair_index
        # The batch's R features once, each row's fields as positions among them: the table's gradient then
        # has R rows (sparse ones for afm.row_adagrad, or one index_add), not 2U, and keys reach only R² - 1.
        features, local = torch.unique(feature_ids, return_inverse=True)  # (R,), (B, F)
        r = features.numel()
        # int32 keys while R² fits (sorting them is 2-3x faster than int64), else int64.
        local = local.to(torch.int32 if r * r <= torch.iinfo(torch.int32).max else torch.int64)  # (B, F)
        distinct, slot = torch.unique(local[:, left] * r + local[:, right], return_inverse=True)  # (U,), (B, P)
        ends = torch.stack((distinct // r, distinct % r)).flatten()  # (2U,) both sides, as positions in `features`
        table = self.embedding(features) if self.embedding.sparse else self.embedding.weight.index_select(0, features)
        # unbind, not rows[0] and rows[1]: each of those zero-fills a whole (2, U, k) gradient.
        first, second = table.index_select(0, ends).view(2, -1, table.shape[-1]).unbind(0)  # (U, k) each
        return first * second, slot  # (U, k), (B, P)

    def pool_distinct(self, products: torch.Tensor, slot: torch.Tensor, weights: torch.Tensor,
                      projection: torch.Tensor) -> torch.Tensor:
        """(pooled-vector dropout of sum_p weights[b, p] products[slot[b, p]]) @ projection, (B,),
        without the (B, P, k) tensor. products (U, k), slot and weights (B, P), projection (k,)."""
        if self.training and self.config.dropout_pooled > 0:
            # A fused gather-weight-sum per row; its backward gives both the (U, k) and the weight gradients.
            pooled = F.embedding_bag(slot, products, per_sample_weights=weights, mode="sum")  # (B, k)
            return self.pooled_dropout(pooled) @ projection  # (B,)
        # No dropout on the pooled vector: project each distinct pair first, then pool scalars.
        return (weights * per_slot(products @ projection, slot)).sum(1)  # (B,)

    @staticmethod
    def floats_per_row(config: ModelConfig, training: bool, one_hot: bool = False) -> int:
        """Activation floats one row of a model with `config` costs in a forward pass (with what
        backward keeps when `training`): batch sizes are planned from it, before anything is built."""
        raise NotImplementedError

    @staticmethod
    def distinct_pairs_pay(config: ModelConfig, batch_size: int) -> bool:
        """Whether training on one-hot rows is faster through `one_hot_interaction` (each distinct
        pair once) than through the plain path. Finding the distinct pairs (a sort of the B x P keys)
        and gathering from them cost about the same per pair slot whatever k is, so it pays where each
        pair's own work is large (large k, t) or pairs repeat more (large batches). Inference always
        pays (no backward, big batches: 4-10x on Frappe)."""
        raise NotImplementedError

    def fixed_pair_weights(self) -> torch.Tensor | None:
        """(P,) each field pair's weight if it is the same in every row (FM 1, FwFM r_fg), else None (AFM)."""
        return None

    def pair_weights_and_projection(self, products: torch.Tensor, slot: torch.Tensor | None = None):
        """(weight_ij (B, P), p (k,)) without dropout, from the pair products: (B, P, k), or the
        distinct pairs' (U, k) with `slot` (B, P) from `distinct_pair_products`."""
        raise NotImplementedError

    @torch.no_grad()
    def inference(self, feature_ids: torch.Tensor, feature_values: torch.Tensor) -> torch.Tensor:
        """Predictions for evaluation: no dropout, no autograd graph; one-hot rows share their pairs. (B,)"""
        was_training = self.training
        self.eval()
        try:
            return self(feature_ids, feature_values, one_hot=bool((feature_values == 1).all()))
        finally:
            self.train(was_training)

    def pair_weights_and_values(self, feature_ids, feature_values, embedded) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight_ij, p^T(e_i ⊙ e_j)), each (B, P), without dropout. One-hot rows: from each
        distinct pair once (Frappe's test split: 141 k distinct pairs in 1.3 M pair slots)."""
        if bool((feature_values == 1).all()):
            products, slot = self.distinct_pair_products(feature_ids.long())  # (U, k), (B, P)
            weights, projection = self.pair_weights_and_projection(products, slot)  # (B, P), (k,)
            return weights, per_slot(products @ projection, slot)  # (B, P) each
        products = self.pair_products(embedded)  # (B, P, k)
        weights, projection = self.pair_weights_and_projection(products)  # (B, P), (k,)
        return weights, products @ projection  # (B, P) each

    @torch.no_grad()
    def decompose(self, feature_ids: torch.Tensor, feature_values: torch.Tensor) -> PredictionTerms:
        """Split predictions into bias, first-order and per-pair terms, in one forward pass.

        Dropout does not apply (it is a training device), so this always works as in eval mode."""
        feature_ids = feature_ids.long()  # (B, F) int64: AFM's pair keys reach num_features²
        embedded = self.embed(feature_ids, feature_values)  # (B, F, k)
        first_order = self.first_order(feature_ids, feature_values)  # (B, F)
        weights, values = self.pair_weights_and_values(feature_ids, feature_values, embedded)  # (B, P) each
        terms = weights * values  # (B, P)
        prediction = self.bias + first_order.sum(1) + terms.sum(1)  # (B,)
        # Detached: views of parameters (FwFM's r, AFM's p) would otherwise still require grad.
        return PredictionTerms(*(t.detach() for t in (prediction, self.bias.clone(), first_order, values, weights,
                                                      terms)))

    def init_from(self, other: PairwiseModel, match_fm: bool = False) -> None:
        """Start from another model's embeddings and biases (the authors' FM pretraining).

        `match_fm` (AFM only): set p = P·1 instead of the authors' p = 1. With near-uniform
        attention (a_ij ≈ 1/P) the AFM then starts as the FM it came from, instead of with its
        pair sum divided by P, so training refines the FM rather than first re-learning its scale."""
        if (other.config.num_features, other.config.embedding_dim) != \
                (self.config.num_features, self.config.embedding_dim):
            raise ConfigError(
                f"cannot initialise from a model with {other.config.num_features} features x "
                f"k={other.config.embedding_dim}; this one has {self.config.num_features} x "
                f"k={self.config.embedding_dim}")
        with torch.no_grad():
            self.embedding.weight.copy_(other.embedding.weight)
            self.linear.weight.copy_(other.linear.weight)
            self.bias.copy_(other.bias)
            if match_fm:
                assert isinstance(self, AFM), "match_fm applies to AFM's projection p"
                self.projection.fill_(float(self.config.num_pairs))


class FM(PairwiseModel):
    """Factorization machine, eq. (6), in Rendle's O(F k) form:
    sum_{i<j} e_i ⊙ e_j = ((sum_i e_i)^2 - sum_i e_i^2) / 2."""

    computes_distinct_pairs = False  # O(F k) per row already: no pair table could be cheaper

    @staticmethod
    def distinct_pairs_pay(config: ModelConfig, batch_size: int) -> bool:
        return False

    def interaction(self, embedded: torch.Tensor) -> torch.Tensor:
        square_of_sum = embedded.sum(1).square()  # (B, k)
        sum_of_squares = embedded.square().sum(1)  # (B, k)
        pooled = 0.5 * (square_of_sum - sum_of_squares)  # (B, k)
        return self.pooled_dropout(pooled).sum(1)  # (B,)

    @staticmethod
    def floats_per_row(config: ModelConfig, training: bool, one_hot: bool = False) -> int:
        fields, k = config.num_fields, config.embedding_dim
        return fields * k * (6 if training else 3)  # (B, F, k) embeddings, squares, sums

    def fixed_pair_weights(self) -> torch.Tensor:
        return self.bias.new_ones(self.config.num_pairs)  # (P,)  every pair counts once

    def pair_weights_and_projection(self, products, slot=None):
        shape = products.shape[:2] if slot is None else slot.shape  # (B, P)
        return products.new_ones(shape), products.new_ones(self.config.embedding_dim)


class FwFM(PairwiseModel):
    """Field-weighted FM: one learned scalar r_fg per field pair scales <e_i, e_j>.
    r starts at 1, so an untrained FwFM equals an FM with the same embeddings."""

    def __init__(self, config: ModelConfig, generator: torch.Generator | None = None):
        super().__init__(config, generator)
        self.field_pair_weights = nn.Parameter(torch.ones(config.num_pairs))  # (P,) r_fg

    def interaction(self, embedded: torch.Tensor) -> torch.Tensor:
        products = self.pair_products(embedded)  # (B, P, k)
        pooled = torch.einsum("p,bpk->bk", self.field_pair_weights, products)  # (B, k)
        return self.pooled_dropout(pooled).sum(1)  # (B,)

    @staticmethod
    def distinct_pairs_pay(config: ModelConfig, batch_size: int) -> bool:
        # Measured on Frappe, 1 CPU thread: k = 256 batch 128 1.45x, k = 64 batch 4,096 5x; k = 64 batch
        # 128 and k = 16 batch 1,024 even; k = 32 batch 128 0.75x.
        return config.embedding_dim >= 64 or batch_size >= 1024

    def one_hot_interaction(self, feature_ids: torch.Tensor) -> torch.Tensor:
        products, slot = self.distinct_pair_products(feature_ids)  # (U, k), (B, P)
        weights, projection = self.pair_weights_and_projection(products, slot)  # (B, P), (k,)
        return self.pool_distinct(products, slot, weights, projection)  # (B,)

    @staticmethod
    def floats_per_row(config: ModelConfig, training: bool, one_hot: bool = False) -> int:
        pairs, k = config.num_pairs, config.embedding_dim
        return pairs * k * (4 if training else 3)  # (B, P, k) left, right and their product

    def fixed_pair_weights(self) -> torch.Tensor:
        return self.field_pair_weights  # (P,)  r_fg

    def pair_weights_and_projection(self, products, slot=None):
        shape = products.shape[:2] if slot is None else slot.shape  # (B, P)
        return self.field_pair_weights.expand(shape), products.new_ones(self.config.embedding_dim)  # r_fg per pair


class AFM(PairwiseModel):
    """Attentional FM, eq. (1)-(5)."""

    def __init__(self, config: ModelConfig, generator: torch.Generator | None = None):
        super().__init__(config, generator)
        k, t = config.embedding_dim, config.attention_dim
        # W (t, k), b (t,): set below. Linear's own init is overwritten; fork_rng keeps it from moving the
        # global RNG (dropout masks). Not the `meta` device: its first use imports sympy (0.45 s per process).
        with torch.random.fork_rng(devices=[]):
            self.attention = nn.Linear(k, t)
        self.attention_h = nn.Parameter(torch.empty(t))  # h
        self.projection = nn.Parameter(torch.ones(k))  # p; the authors start it at 1 (= FM's sum)
        self.attention_dropout = nn.Dropout(config.dropout_attention)
        # The authors' initialisation: W and b ~ N(0, sqrt(2 / (t + k))) (Glorot normal), h ~ N(0, 1).
        glorot = math.sqrt(2.0 / (k + t))
        nn.init.normal_(self.attention.weight, 0.0, glorot, generator=generator)
        nn.init.normal_(self.attention.bias, 0.0, glorot, generator=generator)
        nn.init.normal_(self.attention_h, 0.0, 1.0, generator=generator)

    def attention_scores(self, products: torch.Tensor) -> torch.Tensor:
        """a'_ij = h^T ReLU(W e_ij + b), eq. (2): (..., k) -> (...)."""
        return self.scores_of(self.pre_activation(products))  # (..., t) -> (...)

    def pre_activation(self, products: torch.Tensor) -> torch.Tensor:
        """W e_ij + b, (..., k) -> (..., t): in `training_dtype` while training (bfloat16's matrix
        products run 2x float32's on CPUs with AVX512-BF16 or AMX), else in the weights' dtype."""
        dtype = self.training_dtype if self.training else None
        if dtype is None or dtype == products.dtype:
            return self.attention(products)  # (..., t)
        return F.linear(products.to(dtype), self.attention.weight.to(dtype), self.attention.bias.to(dtype))

    def scores_of(self, pre_activation: torch.Tensor) -> torch.Tensor:
        """h^T ReLU(pre-activation), (..., t) -> (...), back in the weights' dtype for the softmax. In
        bfloat16 a matrix-vector product too: a multiply-and-sum was faster (0.7 against 1.0 ms with its
        backward at (2,400, 256)) but rounded each term to bfloat16, and summed in float32 it was slower."""
        return (F.relu(pre_activation) @ self.attention_h.to(pre_activation.dtype)).to(self.attention_h.dtype)

    def attention_weights(self, products: torch.Tensor) -> torch.Tensor:
        """a_ij, eq. (2)-(3): (B, P, k) -> (B, P), summing to 1 over pairs."""
        return self.attention_network(products)[1]  # (B, P)

    def attention_network(self, products: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(W e_ij + b (B, P, t), a_ij (B, P)): the pre-activation too, which gradient analyses need."""
        pre_activation = self.pre_activation(products)  # (B, P, t)
        # torch.softmax subtracts the max first; the authors' hand-made exp overflowed to NaN.
        return pre_activation, torch.softmax(self.scores_of(pre_activation), dim=1)  # (B, P)

    def attend(self, embedded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(interaction (B,), a_ij (B, P)): the attention weights come out of the same pass."""
        products = self.pair_products(embedded)  # (B, P, k)
        attention = self.attention_weights(products)  # (B, P)
        pooled = torch.bmm(self.attention_dropout(attention).unsqueeze(1), products).squeeze(1)  # (B, k)
        return self.pooled_dropout(pooled) @ self.projection, attention  # (B,), (B, P)

    def interaction(self, embedded: torch.Tensor) -> torch.Tensor:
        return self.attend(embedded)[0]

    @staticmethod
    def distinct_pairs_pay(config: ModelConfig, batch_size: int) -> bool:
        # The attention MLP (k x t a pair) dominates. Measured on Frappe, 1 CPU thread: k = t = 256 batch
        # 128 1.8x, batch 4,096 3x; k = t = 64 batch 128 1.3x, batch 4,096 6x; k = t = 32 batch 128
        # even; k = t = 16 batch 128 0.77x, batch 1,024 1.25x.
        return config.embedding_dim * config.attention_dim >= 32 * 32 or batch_size >= 1024

    def one_hot_interaction(self, feature_ids: torch.Tensor) -> torch.Tensor:
        products, slot = self.distinct_pair_products(feature_ids)  # (U, k), (B, P)
        attention, projection = self.pair_weights_and_projection(products, slot)  # (B, P) a_ij per row, (k,)
        return self.pool_distinct(products, slot, self.attention_dropout(attention), projection)  # (B,)

    def forward_with_attention(self, feature_ids, feature_values) -> tuple[torch.Tensor, torch.Tensor]:
        """Prediction (B,) and a_ij (B, P) from one forward pass (dropout applies in training mode)."""
        feature_ids = feature_ids.long()
        embedded = self.embed(feature_ids, feature_values)  # (B, F, k)
        interaction, attention = self.attend(embedded)  # (B,), (B, P)
        return self.bias + self.first_order(feature_ids, feature_values).sum(1) + interaction, attention

    @staticmethod
    def floats_per_row(config: ModelConfig, training: bool, one_hot: bool = False) -> int:
        pairs, k, t = config.num_pairs, config.embedding_dim, config.attention_dim
        if one_hot and not training:
            return pairs * 6  # distinct-pair path: keys, slots, scores, softmax (B, P); (U, k) is shared
        # (B, P, k) left, right, products (and their gradient); (B, P, t) pre-activation and ReLU.
        return pairs * (4 * k + 3 * t) if training else pairs * (3 * k + 2 * t)

    def pair_weights_and_projection(self, products, slot=None):
        if slot is None:
            return self.attention_weights(products), self.projection  # (B, P), (k,)
        # Each distinct pair's score once, then the softmax over each row's own pairs.
        return torch.softmax(per_slot(self.attention_scores(products), slot), dim=1), self.projection


MODEL_CLASSES = {"fm": FM, "fwfm": FwFM, "afm": AFM}


def parameter_count(config: ModelConfig) -> int:
    """Weights of a model with `config`, known before it is built."""
    shared = config.num_features * (config.embedding_dim + 1) + 1  # v, w, w0
    k, t = config.embedding_dim, config.attention_dim
    extra = {"fm": 0, "fwfm": config.num_pairs, "afm": t * k + 2 * t + k}[config.model]  # r | W, b, h, p
    return shared + extra


def build_model(config: ModelConfig, seed: int | None = None) -> PairwiseModel:
    """A freshly initialised model. With `seed`, its initial weights come from a generator of its
    own, so building one never touches (or depends on) the process-wide random state."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return MODEL_CLASSES[config.model](config, generator)


def regularized_parameters(model: PairwiseModel) -> list[torch.Tensor]:
    """Parameters under the L2 penalty `l2_attention`: AFM's attention W, as the authors do."""
    return [model.attention.weight] if isinstance(model, AFM) else []
