"""Adagrad that updates only the embedding rows a batch touched: the same updates as torch's dense
Adagrad, for the price of the rows instead of the table.

Why: with a dense gradient, every step of Adagrad reads and writes the whole embedding table, its
accumulator and its gradient (zeroed first), though a batch of 128 one-hot rows of Frappe touches
at most 1,280 of its 5,382 rows. A row no batch touched has a zero gradient, so dense Adagrad
leaves both it and its accumulator exactly as they were: updating only the touched rows is the
same optimizer, not an approximation (tests/test_row_adagrad.py holds it against
torch.optim.Adagrad step by step).

torch.optim.Adagrad takes sparse gradients too, but builds several sparse tensors a step
(coalesce, sparse_mask, two _make_sparse): on Frappe it ran slower than the dense update it
replaces. Here a sparse gradient (an nn.Embedding with `sparse=True`) is summed per row once
(`coalesce`) and the rest is three gathers and scatters of the touched rows:

    s_i += g_i²          θ_i -= lr · g_i / (√s_i + ε)        for each touched row i

Dense gradients (the attention network, FwFM's r, the bias) take torch's own arithmetic in the
same order, so a run with dense gradients matches torch.optim.Adagrad bit for bit.
"""

from __future__ import annotations

import torch


class RowAdagrad(torch.optim.Optimizer):
    """Adagrad (no learning-rate decay, no weight decay: the paper's) with a row-sparse step for
    sparse gradients. `initial_accumulator_value` is TF's 1e-8 in the paper's recipe."""

    def __init__(self, params, lr: float = 0.01, initial_accumulator_value: float = 0.0, eps: float = 1e-10):
        if not lr > 0 or initial_accumulator_value < 0 or eps < 0:
            raise ValueError(f"lr must be > 0, the accumulator's start and eps >= 0; got {lr}, "
                             f"{initial_accumulator_value}, {eps}")
        super().__init__(params, {"lr": lr, "initial_accumulator_value": initial_accumulator_value, "eps": eps})
        for group in self.param_groups:
            for param in group["params"]:
                self.state[param]["sum"] = torch.full_like(param, group["initial_accumulator_value"],
                                                           memory_format=torch.preserve_format)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, eps = group["lr"], group["eps"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                accumulator = self.state[param]["sum"]
                if param.grad.is_sparse:
                    _row_step(param, param.grad, accumulator, lr, eps)
                else:
                    grad = param.grad
                    accumulator.addcmul_(grad, grad, value=1)
                    param.addcdiv_(grad, accumulator.sqrt().add_(eps), value=-lr)
        return loss


def _row_step(param: torch.Tensor, grad: torch.Tensor, accumulator: torch.Tensor, lr: float, eps: float) -> None:
    """The Adagrad step of the rows a sparse gradient names; other rows have a zero gradient and stay."""
    grad = grad.coalesce()  # each touched row once, its gradients summed
    rows = grad.indices()[0]  # (R,) distinct row ids
    values = grad.values()  # (R, k)
    sums = accumulator.index_select(0, rows).addcmul_(values, values, value=1)  # (R, k)
    accumulator.index_copy_(0, rows, sums)
    # Out of place: when the gradient came coalesced, `values` is the gradient itself.
    param.index_add_(0, rows, values / sums.sqrt_().add_(eps), alpha=-lr)  # rows are distinct: no overlap
