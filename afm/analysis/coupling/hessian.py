"""Measure 2 of docs/gradient_coupling.md: cross-field blocks of the per-row loss Hessian, split
into the coupling the model builds in and the curvature any model gets from the loss."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from afm.analysis.coupling.gradients import _leaf_embeddings, loss_derivatives, predict_from_embeddings
from afm.models import PairwiseModel


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
    """FM and FwFM weigh each pair the same in every row, so ∂²ŷ/∂v_f∂v_g = r_fg x_f x_g I."""
    return model.fixed_pair_weights() is not None


def _pair_weight_matrix(model: PairwiseModel) -> torch.Tensor:
    fields = model.config.num_fields
    weights = model.fixed_pair_weights().detach()  # (P,)
    matrix = torch.zeros(fields, fields, dtype=weights.dtype)
    left, right = model.pair_index.cpu()
    matrix[left, right] = weights.cpu()
    matrix[right, left] = weights.cpu()
    return matrix
