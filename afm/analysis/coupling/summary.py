"""Measures 1 and 3 of docs/gradient_coupling.md: each partner's share of a field's gradient and
the tug-of-war between partners; and how many directions the embedding table uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from afm.analysis.coupling.gradients import embedding_gradient_parts
from afm.finite_json import finite
from afm.models import AFM, PairwiseModel


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


def information_abundance(model: PairwiseModel) -> float:
    """||σ(E)||₁ / ||σ(E)||_∞ of the embedding table: how many directions the embeddings use
    (1 = all on one line, up to k = spread evenly)."""
    singular_values = torch.linalg.svdvals(model.embedding.weight.detach().double().cpu())
    return float(singular_values.sum() / singular_values.max().clamp_min(1e-300))
