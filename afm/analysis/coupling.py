"""Gradient coupling of FM, FwFM and AFM embeddings: closed forms checked against autograd,
and the measures the app shows. The derivation is in docs/gradient_coupling.md.

For one row, pair q = (i, j) with e_q = (v_i ⊙ v_j) x_i x_j, the gradient of the loss L with
respect to embedding v_i is a sum over partners j of  ℓ' x_i x_j (v_j ⊙ c_q), where

    FM    c_q = 1                                        (eq. 7 of the blog post)
    FwFM  c_q = r_q 1
    AFM   c_q = a_q p + a_q (s_q - s̄) u_q,   s_q = pᵀe_q,  s̄ = Σ_m a_m s_m,
          u_q = Wᵀ(h ⊙ 1[W e_q + b > 0])                 (full softmax Jacobian)

The pair (i, j) sends ℓ' x_i x_j (v_j ⊙ c_q) to v_i and ℓ' x_i x_j (v_i ⊙ c_q) to v_j; these
parts sum exactly to the gradient. The blog post's eq. (11) keeps only the diagonal a(1 - a) of the
softmax Jacobian and multiplies by p elementwise where s_q enters as a scalar;
`seed_formula_gradient` implements it literally so its error can be measured.

All functions run with dropout off (they use the eval-mode function the model computes).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from afm.finite_json import finite
from afm.models import AFM, FwFM, PairwiseModel

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
    if task == "binary":
        loss = torch.nn.functional.binary_cross_entropy_with_logits(predictions, targets, reduction="sum")
    else:
        loss = 0.5 * (predictions - targets).square().sum()
    return torch.autograd.grad(loss, embeddings)[0]


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
    if isinstance(model, AFM):
        products = model.pair_products(embedded)  # (B, P, k)  e_q
        pre_activation = model.attention(products)  # (B, P, t)  W e_q + b
        attention = torch.softmax(torch.relu(pre_activation) @ model.attention_h, dim=1)  # (B, P)  a_q
        pair_values = products @ model.projection  # (B, P)  s_q
        mean_value = (attention * pair_values).sum(1, keepdim=True)  # (B, 1)  s̄
        score_gradient = (model.attention_h * (pre_activation > 0)) @ model.attention.weight  # (B, P, k)  u_q
        return attention.unsqueeze(-1) * (model.projection + (pair_values - mean_value).unsqueeze(-1)
                                          * score_gradient)  # (B, P, k)
    weights = model.field_pair_weights if isinstance(model, FwFM) else embedded.new_ones(pairs)  # (P,)
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
        pre_activation = model.attention(products)  # (B, P, t)
        attention = torch.softmax(torch.relu(pre_activation) @ model.attention_h, dim=1).unsqueeze(-1)  # (B, P, 1)
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


def relative_error(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    return float((estimate - reference).norm() / reference.norm().clamp_min(1e-300))


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


# --------------------------------------------------------------------------- measures


@dataclass
class CouplingSummary:
    """Measures 1 and 3 of docs/gradient_coupling.md over a batch of rows, (F, F) or (F,)."""

    share: np.ndarray  # (F, F) C[f, g]: mean ||part of ∂L/∂v_f from pair (f, g)||, rows sum to 1
    cosine: np.ndarray  # (F, F) mean cosine between partner g's part and the total ∂L/∂v_f
    cancellation: np.ndarray  # (F,) mean of 1 - ||Σ_g G_fg|| / Σ_g ||G_fg||: partners pulling apart
    # (F,) the same index if the partners' pulls (with their actual sizes) pointed in independent
    # random directions of R^k (for k large, orthogonal): 1 - sqrt(Σ_g ||G_fg||²) / Σ_g ||G_fg||.
    # With 9 equal pulls it is 1 - 1/3 = 0.667. Below it, partners pull more *together* than chance.
    cancellation_baseline: np.ndarray
    rows: int

    def to_json(self) -> dict:
        return finite({"share": self.share, "cosine": self.cosine, "cancellation": self.cancellation,
                       "cancellation_baseline": self.cancellation_baseline, "rows": self.rows})


def coupling_summary(model: PairwiseModel, feature_ids, feature_values, targets, task="regression",
                     chunk: int = 256) -> CouplingSummary:
    """Contribution shares and the tug-of-war, in chunks of rows so that the (chunk, F, F, k)
    tensor of per-partner parts stays small whatever the batch."""
    fields = model.config.num_fields
    share_sum = torch.zeros(fields, fields, dtype=torch.float64)
    cosine_sum = torch.zeros(fields, fields, dtype=torch.float64)
    cosine_count = torch.zeros(fields, fields, dtype=torch.float64)
    cancel_sum = torch.zeros(fields, dtype=torch.float64)
    baseline_sum = torch.zeros(fields, dtype=torch.float64)
    cancel_count = torch.zeros(fields, dtype=torch.float64)
    rows = feature_ids.shape[0]
    for start in range(0, rows, chunk):
        stop = start + chunk
        parts = embedding_gradient_parts(model, feature_ids[start:stop], feature_values[start:stop],
                                         targets[start:stop], task).by_partner()  # (b, F, F, k)
        norms = parts.norm(dim=-1).double()  # (b, F, F)
        share_sum += norms.sum(0).cpu()
        total = parts.sum(2)  # (b, F, k)  ∂L/∂v_f
        total_norm = total.norm(dim=-1).double()  # (b, F)
        dot = (parts * total.unsqueeze(2)).sum(-1).double()  # (b, F, F)
        denominator = norms * total_norm.unsqueeze(2)
        valid = denominator > 0
        cosine_sum += torch.where(valid, dot / denominator.clamp_min(1e-300), 0.0).sum(0).cpu()
        cosine_count += valid.sum(0).cpu()
        pulled = norms.sum(2)  # (b, F)  Σ_g ||G_fg||
        has_pull = pulled > 0
        cancel_sum += torch.where(has_pull, 1 - total_norm / pulled.clamp_min(1e-300), 0.0).sum(0).cpu()
        independent = norms.square().sum(2).sqrt()  # (b, F)  ||Σ_g G_fg|| if the pulls were orthogonal
        baseline_sum += torch.where(has_pull, 1 - independent / pulled.clamp_min(1e-300), 0.0).sum(0).cpu()
        cancel_count += has_pull.sum(0).cpu()
    share = share_sum / rows
    share = share / share.sum(1, keepdim=True).clamp_min(1e-300)
    cosine = torch.where(cosine_count > 0, cosine_sum / cosine_count.clamp_min(1), float("nan"))
    cosine.fill_diagonal_(float("nan"))
    share.fill_diagonal_(float("nan"))
    cancellation = torch.where(cancel_count > 0, cancel_sum / cancel_count.clamp_min(1), float("nan"))
    baseline = torch.where(cancel_count > 0, baseline_sum / cancel_count.clamp_min(1), float("nan"))
    return CouplingSummary(share.numpy(), cosine.numpy(), cancellation.numpy(), baseline.numpy(), rows)


def relu_active_fraction(model: AFM, feature_ids, feature_values) -> float:
    """The share of the attention network's ReLU units that are on (W e_q + b > 0) over these
    rows' pairs: u_q = Wᵀ(h ⊙ 1[...]) is zero only when all of a pair's units are off."""
    assert isinstance(model, AFM), "only AFM has an attention network"
    with torch.no_grad():
        products = model.pair_products(model.embed(feature_ids.long(), feature_values))  # (B, P, k)
        return float((model.attention(products) > 0).double().mean())


@dataclass
class HessianCoupling:
    """Measure 2: cross-field blocks of the per-row Hessian ∂²L/∂v_f∂v_g, as root mean square
    over rows of their Frobenius norms, (F, F) each."""

    model_part: np.ndarray  # ℓ' ∂²ŷ/∂v_f∂v_g: coupling the model builds in
    curvature_part: np.ndarray  # ℓ'' ∇_f ŷ ∇_g ŷᵀ: coupling any model gets from the loss
    total: np.ndarray  # the whole block
    relative_stderr: np.ndarray  # standard error of the estimated model part / the estimate (0 if exact)
    method: str  # "closed form", "exact HVP" or "Hutchinson, N probes"
    rows: int


def hessian_coupling(model: PairwiseModel, feature_ids, feature_values, targets, task="regression",
                     probes: int | str = 8, seed: int = 0, chunk: int = 256) -> HessianCoupling:
    """Closed form for FM and FwFM (∂²ŷ/∂v_f∂v_g = r_fg x_f x_g I). For AFM, Hessian-vector
    products: with a probe z on block g only, (Hz)_f = H_fg z, and E||H_fg z||² = ||H_fg||²_F
    for Rademacher z (Hutchinson). `probes="exact"` uses the k basis vectors instead.

    The loss block is ℓ' A_fg + ℓ'' g_f g_gᵀ (A = ∂²ŷ/∂v_f∂v_g, g = ∇ŷ), so
    ||block||² = ℓ'²||A||² + 2ℓ'ℓ'' g_fᵀ A g_g + ℓ''²||g_f||²||g_g||²; the middle term is one exact
    HVP per field (probe g_g on block g)."""
    batch, fields, k = feature_ids.shape[0], model.config.num_fields, model.config.embedding_dim
    if _closed_form(model):
        embeddings = _leaf_embeddings(model, feature_ids)  # (B, F, k)
        predictions = predict_from_embeddings(model, embeddings, feature_ids, feature_values)  # (B,)
        first, second = (d.detach().double() for d in loss_derivatives(predictions.detach(), targets, task))
        gradient = torch.autograd.grad(predictions.sum(), embeddings)[0].double()  # (B, F, k)  g_f = ∇_f ŷ
        x = feature_values.double()
        block = _pair_weight_matrix(model).double() * x.unsqueeze(2) * x.unsqueeze(1)  # (B, F, F): A_fg = block I
        model_sq = (first.view(-1, 1, 1) * block).square() * k  # (B, F, F)
        dot = (gradient.unsqueeze(2) * gradient.unsqueeze(1)).sum(-1)  # (B, F, F)  g_f · g_g
        cross = first.view(-1, 1, 1) * second.view(-1, 1, 1) * block * dot  # ℓ'ℓ'' g_fᵀ A_fg g_g
        grad_norm = gradient.norm(dim=-1)  # (B, F)
        stderr, method = np.zeros((fields, fields)), "closed form"
    else:
        exact = probes == "exact"
        count = k if exact else int(probes)
        assert count >= 1, "need at least one probe"
        generator = torch.Generator().manual_seed(seed)
        pieces = [_afm_hessian_rows(model, feature_ids[i:i + chunk], feature_values[i:i + chunk],
                                    targets[i:i + chunk], task, count, exact, generator)
                  for i in range(0, batch, chunk)]
        first, second, grad_norm, sample_sum, sample_sq_sum, cross = (torch.cat(p) for p in zip(*pieces))
        weight = first.square().view(-1, 1, 1)  # ℓ'²
        mean = sample_sum if exact else sample_sum / count  # (B, F, F) per-row ||A_fg||²_F (estimate)
        if exact:
            stderr, method = np.zeros((fields, fields)), "exact HVP"
        else:
            # Each row's estimate has variance var(sample) / count; the batch mean has the sum / B².
            row_variance = (sample_sq_sum / count - mean.square()).clamp_min(0) * weight.square() / count
            stderr_of_mean = row_variance.sum(0).sqrt() / batch
            # Relative standard error of sqrt(mean), by the delta method.
            stderr = (0.5 * stderr_of_mean / (weight * mean).mean(0).clamp_min(1e-300)).numpy()
            method = f"Hutchinson, {count} probes"
        model_sq = weight * mean
    curvature = second.view(-1, 1, 1) * grad_norm.unsqueeze(2) * grad_norm.unsqueeze(1)  # (B, F, F)
    total_sq = (model_sq + 2 * cross + curvature.square()).clamp_min(0)
    return HessianCoupling(
        model_part=model_sq.mean(0).sqrt().numpy(), curvature_part=curvature.square().mean(0).sqrt().numpy(),
        total=total_sq.mean(0).sqrt().numpy(), relative_stderr=np.asarray(stderr), method=method, rows=batch)


def _afm_hessian_rows(model, feature_ids, feature_values, targets, task, count, exact, generator):
    """HVPs for a chunk of rows. The `count` probes and the cross-term probe ride along as
    replicas of the rows (rows are independent, so their Hessians are separate blocks): one
    double-backward per field instead of one per probe."""
    rows, fields, k = feature_ids.shape[0], model.config.num_fields, model.config.embedding_dim
    replicas = count + 1
    base = model.embedding(feature_ids).detach()  # (b, F, k)
    embeddings = base.repeat(replicas, 1, 1).requires_grad_(True)  # (R b, F, k)
    ids, values = feature_ids.repeat(replicas, 1), feature_values.repeat(replicas, 1)
    predictions = predict_from_embeddings(model, embeddings, ids, values)  # (R b,)
    gradient = torch.autograd.grad(predictions.sum(), embeddings, create_graph=True)[0]  # (R b, F, k)
    first, second = (d.detach().double()[:rows] for d in loss_derivatives(predictions.detach(), targets.repeat(
        replicas), task))  # (b,)
    g = gradient.detach()[:rows].double()  # (b, F, k)  ∇ŷ of the original rows
    sample_sum = torch.zeros(rows, fields, fields, dtype=torch.float64)
    sample_sq_sum = torch.zeros_like(sample_sum)
    cross = torch.zeros_like(sample_sum)
    for field in range(fields):
        probe = torch.zeros_like(embeddings).view(replicas, rows, fields, k)
        if exact:
            probe[:count, :, field] = torch.eye(k, dtype=probe.dtype).unsqueeze(1)  # basis vector n in replica n
        else:
            signs = torch.randint(0, 2, (count, rows, k), generator=generator) * 2 - 1
            probe[:count, :, field] = signs.to(probe.dtype)
        probe[count, :, field] = gradient.detach()[:rows, field]  # g_g on block g: the cross term
        column = torch.autograd.grad(gradient, embeddings, probe.view_as(embeddings), retain_graph=True)[0]
        column = column.view(replicas, rows, fields, k).double()  # H_·g z for every replica
        samples = column[:count].square().sum(-1)  # (count, b, F)  ||H_fg z||²
        sample_sum[:, :, field] = samples.sum(0)
        sample_sq_sum[:, :, field] = samples.square().sum(0)
        cross[:, :, field] = first.view(-1, 1) * second.view(-1, 1) * (column[count] * g).sum(-1)
    return first, second, g.norm(dim=-1), sample_sum, sample_sq_sum, cross


def _closed_form(model: PairwiseModel) -> bool:
    return not isinstance(model, AFM)


def _pair_weight_matrix(model: PairwiseModel) -> torch.Tensor:
    fields = model.config.num_fields
    weights = model.field_pair_weights.detach() if isinstance(model, FwFM) else torch.ones(model.config.num_pairs)
    matrix = torch.zeros(fields, fields, dtype=weights.dtype)
    left, right = model.pair_index.cpu()
    matrix[left, right] = weights.cpu()
    matrix[right, left] = weights.cpu()
    return matrix


def information_abundance(model: PairwiseModel) -> float:
    """||σ(E)||₁ / ||σ(E)||_∞ of the embedding table: how many directions the embeddings use
    (1 = all on one line, up to k = spread evenly)."""
    singular_values = torch.linalg.svdvals(model.embedding.weight.detach().double().cpu())
    return float(singular_values.sum() / singular_values.max().clamp_min(1e-300))


class CouplingTracker:
    """Training callback: measures coupling on a fixed probe batch at chosen epochs and stores
    the result in that epoch's history record (so checkpoints carry it to the app)."""

    def __init__(self, model: PairwiseModel, feature_ids, feature_values, targets, task: str = "regression",
                 epochs: set[int] | None = None, hessian_probes: int = 0):
        self.model = model
        self.batch = (feature_ids, feature_values, targets)
        self.task = task
        self.epochs = epochs  # None: every epoch
        self.hessian_probes = hessian_probes  # 0: skip the (costlier) Hessian blocks

    def on_batch_end(self, epoch: int, batch: int, num_batches: int) -> None:
        pass

    def on_epoch_end(self, record: dict) -> None:
        if self.epochs is not None and record["epoch"] not in self.epochs:
            return
        device = next(self.model.parameters()).device
        ids, values, targets = (t.to(device) for t in self.batch)
        summary = coupling_summary(self.model, ids, values, targets, self.task)
        measures = {**summary.to_json(), "cancellation_mean": float(np.nanmean(summary.cancellation)),
                    "cancellation_baseline_mean": float(np.nanmean(summary.cancellation_baseline)),
                    "information_abundance": information_abundance(self.model)}
        if isinstance(self.model, AFM):
            measures["seed_formula_error"] = seed_formula_error(self.model, ids, values, targets, self.task)
        if self.hessian_probes:
            hessian = hessian_coupling(self.model, ids, values, targets, self.task, probes=self.hessian_probes)
            measures["hessian_model_part"] = finite(hessian.model_part)
            measures["hessian_curvature_part"] = finite(hessian.curvature_part)
        record["coupling"] = measures
