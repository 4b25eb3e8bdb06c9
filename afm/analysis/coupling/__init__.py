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

from afm.analysis.coupling.blog_formula import seed_formula_error, seed_formula_error_by_scale, seed_formula_gradient
from afm.analysis.coupling.gradients import (
    TASK_LOSS,
    GradientParts,
    autograd_embedding_gradient,
    embedding_gradient_parts,
    loss_derivatives,
    pair_factors,
    predict_from_embeddings,
    relative_error,
)
from afm.analysis.coupling.hessian import HessianCoupling, hessian_coupling
from afm.analysis.coupling.summary import (
    CouplingSummary,
    coupling_summary,
    information_abundance,
    relu_active_fraction,
)
from afm.analysis.coupling.tracker import CouplingTracker

__all__ = ["TASK_LOSS", "CouplingSummary", "CouplingTracker", "GradientParts", "HessianCoupling",
           "autograd_embedding_gradient", "coupling_summary", "embedding_gradient_parts", "hessian_coupling",
           "information_abundance", "loss_derivatives", "pair_factors", "predict_from_embeddings",
           "relative_error", "relu_active_fraction", "seed_formula_error", "seed_formula_error_by_scale",
           "seed_formula_gradient"]
