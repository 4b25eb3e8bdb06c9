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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from afm.errors import ConfigError
from afm.limits import MAX_DIM, MAX_FEATURES, MAX_FIELDS, MAX_TABLE_WEIGHTS

MODEL_NAMES = ("fm", "fwfm", "afm")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON `true` is not a count


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model. Saved inside every checkpoint."""

    model: str = "afm"  # "fm" | "fwfm" | "afm"
    num_features: int = 0  # rows of the embedding tables: the largest feature id + 1
    num_fields: int = 0  # F: every row holds one feature per field, P = F(F-1)/2 pairs
    embedding_dim: int = 256  # k; the paper uses 256 on Frappe and MovieLens
    attention_dim: int = 256  # t, width of AFM's attention MLP; paper 256 (AFM only)
    dropout_attention: float = 0.0  # on a_ij: 1 - keep[0]; the Frappe recipe keeps all (AFM only)
    dropout_pooled: float = 0.2  # on the pooled k-vector: 1 - keep[1] (AFM), 1 - keep (FM)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        checks = [
            (self.model in MODEL_NAMES, f"model must be one of {MODEL_NAMES}, got {self.model!r}"),
            (_is_int(self.num_features) and 0 < self.num_features <= MAX_FEATURES,
             f"num_features must be in 1..{MAX_FEATURES:,}, got {self.num_features!r}"),
            (_is_int(self.num_fields) and 2 <= self.num_fields <= MAX_FIELDS,
             f"num_fields must be in 2..{MAX_FIELDS} (pairs need two fields), got {self.num_fields!r}"),
            (_is_int(self.embedding_dim) and 1 <= self.embedding_dim <= MAX_DIM,
             f"embedding_dim must be in 1..{MAX_DIM}, got {self.embedding_dim!r}"),
            (_is_int(self.attention_dim) and 1 <= self.attention_dim <= MAX_DIM,
             f"attention_dim must be in 1..{MAX_DIM}, got {self.attention_dim!r}"),
            (isinstance(self.dropout_attention, float) and 0.0 <= self.dropout_attention < 1.0,
             f"dropout_attention must be in [0, 1), got {self.dropout_attention!r}"),
            (isinstance(self.dropout_pooled, float) and 0.0 <= self.dropout_pooled < 1.0,
             f"dropout_pooled must be in [0, 1), got {self.dropout_pooled!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.num_features * self.embedding_dim > MAX_TABLE_WEIGHTS:
            raise ConfigError(f"an embedding table of {self.num_features:,} x {self.embedding_dim} is more than the "
                              f"{MAX_TABLE_WEIGHTS:,} weights supported; lower k, or remap sparse feature ids to "
                              "0..n-1 (the table has a row for every id up to the largest)")

    @property
    def num_pairs(self) -> int:
        return self.num_fields * (self.num_fields - 1) // 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict) -> ModelConfig:
        if not isinstance(obj, dict):
            raise ConfigError("model config must be an object")
        known = {f.name for f in fields(cls)}
        unknown = set(obj) - known
        if unknown:
            raise ConfigError(f"unknown model config keys {sorted(unknown)}")
        values = dict(obj)
        for key in ("dropout_attention", "dropout_pooled"):  # JSON writes 0.0 as 0
            if type(values.get(key)) is int:
                values[key] = float(values[key])
        return cls(**values)


@dataclass
class PredictionTerms:
    """A prediction split into its additive parts: prediction = bias + sum(first_order) + sum(pair_terms)."""

    prediction: torch.Tensor  # (B,)
    bias: torch.Tensor  # ()       w0
    first_order: torch.Tensor  # (B, F)   w_i x_i per field
    pair_values: torch.Tensor  # (B, P)   p^T (e_i ⊙ e_j), the interaction before weighting
    pair_weights: torch.Tensor  # (B, P)   1 (FM), r_fg (FwFM), a_ij (AFM)
    pair_terms: torch.Tensor  # (B, P)   pair_weights * pair_values, each pair's share of the prediction


class PairwiseModel(nn.Module):
    """Shared parts: embeddings v, first-order weights w, global bias w0, the pair index."""

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

    def forward(self, feature_ids: torch.Tensor, feature_values: torch.Tensor) -> torch.Tensor:
        feature_ids = feature_ids.long()  # int64 from the boundary on: pair keys need the range
        embedded = self.embed(feature_ids, feature_values)  # (B, F, k)
        linear = self.first_order(feature_ids, feature_values).sum(1)  # (B,)
        return self.bias + linear + self.interaction(embedded)  # (B,)

    def interaction(self, embedded: torch.Tensor) -> torch.Tensor:
        """The second-order part of the prediction, (B, F, k) -> (B,)."""
        raise NotImplementedError

    @staticmethod
    def floats_per_row(config: ModelConfig, training: bool, one_hot: bool = False) -> int:
        """Activation floats one row of a model with `config` costs in a forward pass (with what
        backward keeps when `training`): batch sizes are planned from it, before anything is built."""
        raise NotImplementedError

    def pair_weights_and_projection(self, embedded: torch.Tensor):
        """(weight_ij (B, P), p (k,)) without dropout, for `decompose`."""
        raise NotImplementedError

    @torch.no_grad()
    def inference(self, feature_ids: torch.Tensor, feature_values: torch.Tensor) -> torch.Tensor:
        """Predictions for evaluation: no dropout, no autograd graph. (B,)"""
        was_training = self.training
        self.eval()
        try:
            return self(feature_ids, feature_values)
        finally:
            self.train(was_training)

    def pair_weights_and_values(self, feature_ids, feature_values, embedded) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight_ij, p^T(e_i ⊙ e_j)), each (B, P), without dropout."""
        weights, projection = self.pair_weights_and_projection(embedded)  # (B, P), (k,)
        return weights, self.pair_products(embedded) @ projection

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

    def init_from(self, other: PairwiseModel, match_sum: bool = False) -> None:
        """Start from another model's embeddings and biases (the authors' FM pretraining).

        `match_sum` (AFM only): set p = P·1 instead of the authors' p = 1. With near-uniform
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
            if match_sum:
                assert isinstance(self, AFM), "match_sum applies to AFM's projection p"
                self.projection.fill_(float(self.config.num_pairs))


class FM(PairwiseModel):
    """Factorization machine, eq. (6), in Rendle's O(F k) form:
    sum_{i<j} e_i ⊙ e_j = ((sum_i e_i)^2 - sum_i e_i^2) / 2."""

    def interaction(self, embedded: torch.Tensor) -> torch.Tensor:
        square_of_sum = embedded.sum(1).square()  # (B, k)
        sum_of_squares = embedded.square().sum(1)  # (B, k)
        pooled = 0.5 * (square_of_sum - sum_of_squares)  # (B, k)
        return self.pooled_dropout(pooled).sum(1)  # (B,)

    @staticmethod
    def floats_per_row(config: ModelConfig, training: bool, one_hot: bool = False) -> int:
        fields, k = config.num_fields, config.embedding_dim
        return fields * k * (6 if training else 3)  # (B, F, k) embeddings, squares, sums

    def pair_weights_and_projection(self, embedded):
        batch = embedded.shape[0]
        weights = embedded.new_ones(batch, self.config.num_pairs)  # (B, P)
        return weights, embedded.new_ones(self.config.embedding_dim)


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
    def floats_per_row(config: ModelConfig, training: bool, one_hot: bool = False) -> int:
        pairs, k = config.num_pairs, config.embedding_dim
        return pairs * k * (4 if training else 3)  # (B, P, k) left, right and their product

    def pair_weights_and_projection(self, embedded):
        weights = self.field_pair_weights.expand(embedded.shape[0], -1)  # (B, P)
        return weights, embedded.new_ones(self.config.embedding_dim)


class AFM(PairwiseModel):
    """Attentional FM, eq. (1)-(5)."""

    def __init__(self, config: ModelConfig, generator: torch.Generator | None = None):
        super().__init__(config, generator)
        k, t = config.embedding_dim, config.attention_dim
        self.attention = nn.Linear(k, t, device="meta").to_empty(device="cpu")  # W (t, k), b (t,): set below
        self.attention_h = nn.Parameter(torch.empty(t))  # h
        self.projection = nn.Parameter(torch.ones(k))  # p; the authors start it at 1 (= FM's sum)
        self.attention_dropout = nn.Dropout(config.dropout_attention)
        # The authors' initialisation: W and b ~ N(0, sqrt(2 / (t + k))) (Glorot normal), h ~ N(0, 1).
        glorot = math.sqrt(2.0 / (k + t))
        nn.init.normal_(self.attention.weight, 0.0, glorot, generator=generator)
        nn.init.normal_(self.attention.bias, 0.0, glorot, generator=generator)
        nn.init.normal_(self.attention_h, 0.0, 1.0, generator=generator)

    def attention_weights(self, products: torch.Tensor) -> torch.Tensor:
        """a_ij, eq. (2)-(3): (B, P, k) -> (B, P), summing to 1 over pairs."""
        hidden = F.relu(self.attention(products))  # (B, P, t)  ReLU(W e_ij + b)
        scores = hidden @ self.attention_h  # (B, P)  a'_ij
        # torch.softmax subtracts the max first; the authors' hand-made exp overflowed to NaN.
        return torch.softmax(scores, dim=1)  # (B, P)

    def attend(self, embedded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(interaction (B,), a_ij (B, P)): the attention weights come out of the same pass."""
        products = self.pair_products(embedded)  # (B, P, k)
        attention = self.attention_weights(products)  # (B, P)
        pooled = torch.bmm(self.attention_dropout(attention).unsqueeze(1), products).squeeze(1)  # (B, k)
        return self.pooled_dropout(pooled) @ self.projection, attention  # (B,), (B, P)

    def interaction(self, embedded: torch.Tensor) -> torch.Tensor:
        return self.attend(embedded)[0]

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

    def pair_weights_and_projection(self, embedded):
        return self.attention_weights(self.pair_products(embedded)), self.projection

    @torch.no_grad()
    def inference(self, feature_ids: torch.Tensor, feature_values: torch.Tensor) -> torch.Tensor:
        """One-hot rows go through `decompose`, which scores each distinct feature pair once."""
        if bool((feature_values == 1).all()):
            return self.decompose(feature_ids, feature_values).prediction
        return super().inference(feature_ids, feature_values)

    def pair_weights_and_values(self, feature_ids, feature_values, embedded):
        """With one-hot rows (every x = 1) a pair's score a'_ij and value depend only on its two
        feature ids, and pairs repeat across rows (Frappe's test split: 1.3 M pair slots, far
        fewer distinct pairs). Score each distinct pair once, then softmax per row: the same
        numbers as the general path at a fraction of the attention MLP's cost."""
        if not bool((feature_values == 1).all()):
            return super().pair_weights_and_values(feature_ids, feature_values, embedded)
        left, right = self.pair_index
        feature_ids = feature_ids.long()  # int32 keys would wrap past 46,340 features
        keys = feature_ids[:, left] * self.config.num_features + feature_ids[:, right]  # (B, P)
        distinct, slot = torch.unique(keys, return_inverse=True)  # (U,), (B, P)
        table = self.embedding.weight
        products = table[distinct // self.config.num_features] * table[distinct % self.config.num_features]  # (U, k)
        scores = F.relu(self.attention(products)) @ self.attention_h  # (U,)  a'
        values = products @ self.projection  # (U,)  s
        return torch.softmax(scores[slot], dim=1), values[slot]  # (B, P), (B, P)


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
