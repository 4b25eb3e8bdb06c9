"""Exact Shapley values and pair interactions of FM, FwFM and AFM rows, from all 2^F coalitions.

A pair's term a_ij p^T(e_i ⊙ e_j) is not what the pair is worth to the prediction: under AFM every
other pair's attention depends on it through the softmax. Game theory answers "worth" with the
value v(S) of every coalition S of a row's fields; this module computes that table exactly and
from it, per row, the Shapley value of every field and two interaction values of every pair.
What is explained is the model's raw output: the regression score, or the logit for a binary task
(never the probability), so attributions add up on the scale the model adds its terms on.

What v(S) is, "coalitions" (every result and summary carries the name):
  absent      the fields outside S are not in the row, as in a model over the fields of S given
              the row restricted to them: v(S) = w0 + sum_{f in S} w_f x_f + sum_{p ⊆ S} w_p(S) p^T e_p
              with w_p(S) = 1 (FM), r_p (FwFM), or for AFM the softmax of the attention scores over
              the pairs inside S only (no pair inside S: no interaction). v(∅) = w0.
  background  interventional: the fields outside S take their (id, value) from each of B background
              rows (of the training split, `background_rows`), and v(S) is the mean over them.
Coalition c is a bit mask: bit f set = field f in S; tables are (R, C) with C = 2^F.

The pieces v(S) is built from do not depend on S: per row, each field's first-order term and each
pair's score and value, one for each of its ends' sources (absent: 1 combination; background: both
ends from the row or from the background row, 4). They are computed once (each distinct one-hot
pair once, as the models' inference path does), and every coalition is then a 0/1 matrix product:
no model pass per coalition. The pieces come in the model's precision; tables, transforms and
results are float64 (a float32 model's v(N) matches its own output to float32 rounding).

From the Möbius transform m of v (v(S) = sum_{T ⊆ S} m(T)), in shapiq's names (shapiq.ExactComputer):
  "SV"    field_shapley     phi_i  = sum_{T ∋ i} m(T) / |T|;         v(∅) + sum_i phi_i = v(N)
  "SII"   pair_interaction  I_ij   = sum_{T ⊇ ij} m(T) / (|T| - 1)   (Grabisch-Roubens 1999); not efficient
  "STII"  main_terms, pair_terms: Shapley-Taylor of order 2 (Sundararajan et al. 2020): main m({i}) =
          v({i}) - v(∅), pair sum_{T ⊇ ij} m(T) / C(|T|, 2); v(∅) + mains + pairs = v(N), the prediction.
Other reductions of the same tables (afm.analysis.higher_order) use `coalition_tables`,
`mobius_transform` and `superset_sums`, or `pair_shapley(on_mobius=...)`; `pair_subset_values` removes
single pairs the way "absent" removes a field's (afm.analysis.erasure).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from afm.data import FieldSchema, Split
from afm.errors import ConfigError, DataError
from afm.limits import PAIR_SLOT_BUDGET, rows_within
from afm.models import AFM, FM, FwFM, PairwiseModel

MAX_FIELDS = 16  # 2^16 = 65,536 coalitions a row: exact above that costs more than a sampling estimate
SEMANTICS = ("absent", "background")
TABLE_BUDGET = 8_000_000  # float64 entries of one (rows x background rows, coalitions) table block: 64 MB
COALITION_CHUNK = 4096  # coalitions whose 0/1 pair matrix is built at once
UNDERFLOW = 1e-200  # a softmax sum below this (after the row's shift) is recomputed with the coalition's own max


@dataclass
class PairShapley:
    """Exact attributions of R rows (float64, CPU). v(N) = prediction, v(∅) = empty."""

    coalitions: str  # "absent" | "background": what v(S) means (module docstring)
    background_rows: int  # B (0 for "absent")
    prediction: torch.Tensor  # (R,)    v(N), the model's output (a logit for binary tasks)
    empty: torch.Tensor  # (R,)    v(∅): w0 (absent), the mean background output (background)
    field_shapley: torch.Tensor  # (R, F) Shapley value of each field
    pair_interaction: torch.Tensor  # (R, P) Shapley interaction index (SII) of each pair
    main_terms: torch.Tensor  # (R, F) Shapley-Taylor order-2 main terms v({i}) - v(∅)
    pair_terms: torch.Tensor  # (R, P) Shapley-Taylor order-2 pair terms

    def efficiency_residual(self) -> torch.Tensor:
        """(R,) the larger of |v(∅) + sum phi - v(N)| and |v(∅) + mains + pairs - v(N)|: 0 up to
        rounding; a check that a row's importances add up to its prediction."""
        shapley = (self.empty + self.field_shapley.sum(1) - self.prediction).abs()  # (R,)
        taylor = (self.empty + self.main_terms.sum(1) + self.pair_terms.sum(1) - self.prediction).abs()  # (R,)
        return torch.maximum(shapley, taylor)


def background_rows(split: Split, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, F), values (B, F)): `count` rows of `split` drawn without replacement (all of them
    if it has fewer), in row order, so a memory-mapped split is read forward once. Seeded: the same
    background, hence the same `background` values, on every run."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigError(f"the background needs at least one row, got {count!r}")
    if len(split) == 0:
        raise DataError("background split", "it has no rows to draw a background from")
    rows = np.sort(np.random.default_rng(seed).choice(len(split), min(count, len(split)), replace=False))
    return (torch.from_numpy(np.array(split.feature_ids[rows], dtype=np.int64)),
            torch.from_numpy(np.array(split.feature_values[rows], dtype=np.float32)))


def _rows(model: PairwiseModel, ids, values, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, values) as (R, F) tensors on the model's device, or a DataError that says what is wrong."""
    ids, values = torch.as_tensor(ids), torch.as_tensor(values)
    fields = model.config.num_fields
    if ids.ndim != 2 or ids.shape != values.shape or ids.shape[1] != fields or ids.shape[0] == 0:
        raise DataError(what, f"expected (rows, {fields}) ids and values with at least one row, got "
                              f"{tuple(ids.shape)} and {tuple(values.shape)}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise DataError(what, f"feature ids must be integers, got {ids.dtype}")
    if int(ids.min()) < 0 or int(ids.max()) >= model.config.num_features:
        raise DataError(what, f"feature ids must be in 0..{model.config.num_features - 1}, got "
                              f"{int(ids.min())}..{int(ids.max())}")
    weight = model.embedding.weight
    values = values.to(weight.device, weight.dtype)
    if not bool(torch.isfinite(values).all()):
        raise DataError(what, "feature values must be finite")
    return ids.to(weight.device, torch.int64), values


def _check(model: PairwiseModel, coalitions: str, background) -> None:
    if not isinstance(model, (FM, FwFM, AFM)):
        raise ConfigError(f"exact Shapley values are defined here for FM, FwFM and AFM, not {type(model).__name__}")
    fields = model.config.num_fields
    if fields > MAX_FIELDS:
        raise ConfigError(f"exact Shapley values evaluate all 2^F coalitions of a row: {fields} fields make "
                          f"{2 ** fields:,}, more than the {2 ** MAX_FIELDS:,} of the {MAX_FIELDS}-field limit; "
                          "explain a model over fewer fields")
    if coalitions not in SEMANTICS:
        raise ConfigError(f"coalitions must be one of {SEMANTICS}, got {coalitions!r}")
    if (coalitions == "background") != (background is not None):
        raise ConfigError("coalitions='background' needs background rows (ids, values), e.g. from "
                          "`background_rows`; coalitions='absent' takes none")


def _pair_parts(model: PairwiseModel, left_ids, left_values, right_ids, right_values):
    """(scores, values), each shaped like the broadcast inputs (..., P): AFM's attention score and
    p^T(e_l ⊙ e_r) of the pairs whose ends are features (left, right); for FM and FwFM, scores is
    None and values carry the fixed weight, w_p p^T(e_l ⊙ e_r). One-hot pairs: each distinct pair once."""
    left_ids, left_values, right_ids, right_values = torch.broadcast_tensors(
        left_ids, left_values, right_ids, right_values)  # (..., P) each
    shape, table = left_ids.shape, model.embedding.weight  # (num_features, k)
    if bool((left_values == 1).all()) and bool((right_values == 1).all()):
        n = model.config.num_features
        distinct, inverse = torch.unique(left_ids.flatten() * n + right_ids.flatten(), return_inverse=True)  # (U,)
        products = table.index_select(0, distinct // n) * table.index_select(0, distinct % n)  # (U, k)
    else:
        left = table.index_select(0, left_ids.flatten()) * left_values.reshape(-1, 1)  # (M, k)
        products = left * table.index_select(0, right_ids.flatten()) * right_values.reshape(-1, 1)  # (M, k)
        inverse = torch.arange(products.shape[0], device=products.device)  # (M,)
    pairs = model.config.num_pairs
    weights, projection = model.pair_weights_and_projection(products.new_zeros(1, pairs, products.shape[1]))
    values = (products @ projection)[inverse].view(shape)  # (..., P)
    if isinstance(model, AFM):
        return model.attention_scores(products)[inverse].view(shape), values  # (..., P) each
    return None, values * weights[0]  # (..., P): r_p or 1 per pair


@dataclass
class _Parts:
    """What every coalition's v(S) is made of, for N rows (N = R, or R x B row-background pairs)."""

    bias: float
    first_in: torch.Tensor  # (N, F)      w_f x_f of the row's own fields
    first_out: torch.Tensor | None  # (N, F)  of the background row's (None: absent fields add nothing)
    scores: torch.Tensor | None  # (N, K P)  AFM's scores per combination k of the ends' sources
    values: torch.Tensor  # (N, K P)     pair values (AFM) or terms (FM, FwFM)
    combos: int  # K: 1 (absent), 4 (background: k = 2 [i from background] + [j from background])


def _parts(model: PairwiseModel, ids, values, background) -> _Parts:
    """The S-independent pieces of R rows (alone, or against each of B background rows)."""
    left, right = model.pair_index  # (P,) each
    first = model.first_order(ids, values).double()  # (R, F)
    bias = float(model.bias.detach())
    if background is None:
        scores, terms = _pair_parts(model, ids[:, left], values[:, left], ids[:, right], values[:, right])  # (R, P)
        return _Parts(bias, first, None, None if scores is None else scores.double(), terms.double(), 1)
    bg_ids, bg_values = background  # (B, F) each
    rows, count = ids.shape[0], bg_ids.shape[0]
    row = (ids[:, None], values[:, None])  # (R, 1, F) each
    back = (bg_ids[None], bg_values[None])  # (1, B, F) each
    parts = [_pair_parts(model, i[..., left], x[..., left], j[..., right], y[..., right])  # (R|1, B|1, P)
             for (i, x), (j, y) in ((row, row), (row, back), (back, row), (back, back))]

    def stacked(index: int) -> torch.Tensor:
        return torch.stack([p[index].expand(rows, count, -1) for p in parts], 2).reshape(rows * count, -1).double()

    first_out = model.first_order(bg_ids, bg_values).double()  # (B, F)
    return _Parts(bias, first.repeat_interleave(count, 0), first_out.repeat(rows, 1),  # (R B, F) each
                  None if parts[0][0] is None else stacked(0), stacked(1), 4)  # (R B, 4 P)


def _coalition_masks(fields: int, combos: int, start: int, stop: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(members (c, F), pair columns (c, K P)) as 0/1 float64 for coalitions start..stop-1: which fields
    are in, and which combination of its ends' sources each pair takes (absent: whether both are in)."""
    codes = torch.arange(start, stop, device=device)  # (c,)
    inside = (codes[:, None] >> torch.arange(fields, device=device)) & 1 == 1  # (c, F)
    left, right = torch.triu_indices(fields, fields, offset=1, device=device)  # (P,) each, the models' order
    if combos == 1:
        return inside.double(), (inside[:, left] & inside[:, right]).double()  # (c, F), (c, P)
    combo = 2 * (~inside[:, left]).long() + (~inside[:, right]).long()  # (c, P) in 0..3
    columns = torch.nn.functional.one_hot(combo, 4).transpose(1, 2).reshape(len(codes), -1)  # (c, 4 P)
    return inside.double(), columns.double()


def _attention_pool(parts: _Parts, columns: torch.Tensor) -> torch.Tensor:
    """(N, c) sum_p softmax_S(score)_p value_p of AFM over each coalition's pairs, as two matrix
    products: exp(score - the row's largest) summed with and without the values. `columns` is
    (c, K P), shared by the rows, or (N, c, K P), each row's own. A coalition whose scores all lie
    so far below the row's largest that the sum underflows is recomputed exactly."""
    shift = parts.scores.amax(1, keepdim=True)  # (N, 1)
    weights = torch.exp(parts.scores - shift)  # (N, K P) in (0, 1]
    if columns.ndim == 2:
        total, weighted = weights @ columns.T, (weights * parts.values) @ columns.T  # (N, c) each
    else:
        total = torch.einsum("nq,ncq->nc", weights, columns)  # (N, c)
        weighted = torch.einsum("nq,ncq->nc", weights * parts.values, columns)  # (N, c)
    # A coalition without pairs has 0 / 0: clamped, it pools 0.
    pooled = weighted / total.clamp_min(torch.finfo(total.dtype).tiny)  # (N, c)
    low = (total < UNDERFLOW) & (columns.sum(-1) > 0)  # (N, c)
    if bool(low.any()):
        row, coalition = low.nonzero(as_tuple=True)  # (L,) each
        kept = columns[coalition] if columns.ndim == 2 else columns[row, coalition]  # (L, K P)
        scores = parts.scores[row].masked_fill(kept == 0, float("-inf"))  # (L, K P)
        pooled[row, coalition] = (torch.softmax(scores, 1) * parts.values[row]).sum(1)  # (L,)
    return pooled


def _table(parts: _Parts, fields: int) -> torch.Tensor:
    """(N, C) float64 v(S) of every coalition, COALITION_CHUNK coalitions at a time."""
    count = 1 << fields
    table = torch.empty(parts.first_in.shape[0], count, dtype=torch.float64, device=parts.values.device)  # (N, C)
    for start in range(0, count, COALITION_CHUNK):
        stop = min(start + COALITION_CHUNK, count)
        inside, columns = _coalition_masks(fields, parts.combos, start, stop, table.device)  # (c, F), (c, K P)
        block = parts.bias + parts.first_in @ inside.T  # (N, c)
        if parts.first_out is not None:
            block += parts.first_out @ (1 - inside).T
        block += parts.values @ columns.T if parts.scores is None else _attention_pool(parts, columns)
        table[:, start:stop] = block
    return table


def _pseudo_rows(model: PairwiseModel, batch_rows: int | None) -> int:
    """Rows (absent) or row-background pairs (background) per block: as many as keep a block's
    (N, 2^F) table and its pair products within budget, or `batch_rows`."""
    if batch_rows is not None:
        if not isinstance(batch_rows, int) or isinstance(batch_rows, bool) or batch_rows < 1:
            raise ConfigError(f"batch_rows must be a positive integer, got {batch_rows!r}")
        return batch_rows
    config = model.config
    width = config.embedding_dim + (config.attention_dim if isinstance(model, AFM) else 0)
    return min(rows_within(1 << config.num_fields, cap=1 << 16, budget=TABLE_BUDGET),
               rows_within(4 * config.num_pairs * width, cap=1 << 16, budget=PAIR_SLOT_BUDGET))


def _inputs(model, ids, values, coalitions, background):
    """Checked (ids, values) of the rows and of the background (None for absent), on the model's device."""
    _check(model, coalitions, background)
    rows = _rows(model, ids, values, "rows to explain")
    if background is None:
        return rows, None
    if not isinstance(background, (tuple, list)) or len(background) != 2:
        raise ConfigError("background must be a pair (ids, values) of (B, F) arrays, e.g. from `background_rows`")
    return rows, _rows(model, *background, "background rows")


def _tables(model, ids, values, coalitions, background, batch_rows):
    """Yields (r, C) float64 tables over batches of rows, as the model computes in eval mode (no dropout)."""
    (ids, values), background = _inputs(model, ids, values, coalitions, background)
    block, fields = _pseudo_rows(model, batch_rows), model.config.num_fields
    count = 1 if background is None else background[0].shape[0]
    step = max(1, block // count)  # rows a batch
    with torch.no_grad():
        for start in range(0, ids.shape[0], step):
            chunk = slice(start, start + step)
            if background is None:
                yield _table(_parts(model, ids[chunk], values[chunk], None), fields)
                continue
            # Background rows in groups, so one row against many of them still fits the budget.
            group, total = max(1, block // len(ids[chunk])), 0
            for first in range(0, count, group):
                part = (background[0][first:first + group], background[1][first:first + group])
                table = _table(_parts(model, ids[chunk], values[chunk], part), fields)  # (r b, C)
                total = total + table.view(-1, part[0].shape[0], 1 << fields).sum(1)  # (r, C)
            yield total / count


def coalition_values(model: PairwiseModel, ids, values, coalitions: str = "absent", background=None,
                     batch_rows: int | None = None) -> torch.Tensor:
    """(R, C) float64 on the CPU: v(S) of every row and coalition, column c = the fields of c's set
    bits. `background`: (ids, values) of B rows, for coalitions="background"; `batch_rows`: rows
    (absent) or row-background pairs (background) a block, by default what keeps a block near 64 MB."""
    return torch.cat([table.cpu() for table in _tables(model, ids, values, coalitions, background, batch_rows)])


def coalition_tables(model: PairwiseModel, ids, values, coalitions: str = "absent", background=None,
                     batch_rows: int | None = None):
    """The rows of `coalition_values` a batch at a time: yields (r, C) float64 tables (on the model's
    device) of consecutive rows, so a reduction over rows never holds all R x 2^F values at once."""
    yield from _tables(model, ids, values, coalitions, background, batch_rows)


KEPT_BUDGET = 4_000_000  # float64 entries of one (rows, subsets, pairs) block of `pair_subset_values`: 32 MB


def pair_subset_values(model: PairwiseModel, ids, values, keep) -> torch.Tensor:
    """(R, M) float64 on the CPU: each row's output with only the pairs keep[r, m] ((R, M, P),
    bool, pair_index order) in it and every first-order term. A pair left out is absent as under
    coalitions="absent": out of the sum and, for AFM, out of the softmax (the kept pairs' attention
    renormalised over them alone). All pairs kept: the prediction; none: w0 + first order."""
    if not isinstance(model, (FM, FwFM, AFM)):
        raise ConfigError(f"pair subsets are defined here for FM, FwFM and AFM, not {type(model).__name__}")
    ids, values = _rows(model, ids, values, "rows to erase pairs of")
    keep = torch.as_tensor(keep)
    expected = (ids.shape[0], model.config.num_pairs)
    if keep.ndim != 3 or (keep.shape[0], keep.shape[2]) != expected or keep.dtype != torch.bool:
        raise ConfigError(f"keep must be a boolean (rows, subsets, pairs) = ({expected[0]}, M, {expected[1]}) "
                          f"mask, got {keep.dtype} {tuple(keep.shape)}")
    step = max(1, KEPT_BUDGET // max(1, keep.shape[1] * keep.shape[2]))
    out = []
    with torch.no_grad():
        for start in range(0, ids.shape[0], step):
            chunk = slice(start, start + step)
            parts = _parts(model, ids[chunk], values[chunk], None)
            columns = keep[chunk].to(parts.values.device, torch.float64)  # (r, M, P)
            base = parts.bias + parts.first_in.sum(1, keepdim=True)  # (r, 1)
            if parts.scores is None:
                out.append((base + torch.einsum("rp,rmp->rm", parts.values, columns)).cpu())  # (r, M)
            else:
                out.append((base + _attention_pool(parts, columns)).cpu())  # (r, M)
    return torch.cat(out)


def mobius_transform(table: torch.Tensor, fields: int) -> torch.Tensor:
    """m with v(S) = sum_{T ⊆ S} m(T), in place over each bit in turn: (R, C) -> (R, C)."""
    for f in range(fields):
        view = table.view(table.shape[0], -1, 2, 1 << f)  # (R, C / 2^(f+1), 2, 2^f): bit f of c on dim 2
        view[:, :, 1] -= view[:, :, 0]
    return table


def superset_sums(table: torch.Tensor, fields: int) -> torch.Tensor:
    """s(S) = sum_{T ⊇ S} table(T), in place: (R, C) -> (R, C)."""
    for f in range(fields):
        view = table.view(table.shape[0], -1, 2, 1 << f)  # (R, C / 2^(f+1), 2, 2^f)
        view[:, :, 0] += view[:, :, 1]
    return table


def _indices(table: torch.Tensor, fields: int, on_mobius=None) -> dict[str, torch.Tensor]:
    """Shapley values, SII and Shapley-Taylor terms of a (R, C) float64 table (module docstring);
    `on_mobius` is called with its Möbius transform (R, C) on the way."""
    codes = torch.arange(1 << fields, device=table.device)  # (C,)
    size = ((codes[:, None] >> torch.arange(fields, device=table.device)) & 1).sum(1).double()  # (C,) |T|
    singles = 1 << torch.arange(fields, device=table.device)  # (F,) the coalition {i}
    left, right = torch.triu_indices(fields, fields, offset=1, device=table.device)  # (P,)
    doubles = singles[left] | singles[right]  # (P,) the coalition {i, j}
    empty, full = table[:, 0].clone(), table[:, -1].clone()  # (R,)
    moebius = mobius_transform(table, fields)  # (R, C)
    if on_mobius is not None:
        on_mobius(moebius)
    pairs = size >= 2  # (C,)

    def lifted(weight: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        return superset_sums(moebius * weight, fields)[:, at]  # (R, |at|)

    return {"prediction": full, "empty": empty, "main_terms": moebius[:, singles],  # (R, F)
            "field_shapley": lifted(torch.where(size > 0, 1 / size.clamp_min(1), 0.0), singles),  # (R, F)
            "pair_interaction": lifted(torch.where(pairs, 1 / (size - 1).clamp_min(1), 0.0), doubles),  # (R, P)
            "pair_terms": lifted(torch.where(pairs, 2 / (size * (size - 1)).clamp_min(1), 0.0), doubles)}  # (R, P)


def pair_shapley(model: PairwiseModel, ids, values, coalitions: str = "absent", background=None,
                 batch_rows: int | None = None, on_mobius=None) -> PairShapley:
    """Exact Shapley values of every field and SII and Shapley-Taylor values of every pair, for
    each of R rows (ids and values (R, F)) of an FM, FwFM or AFM over at most MAX_FIELDS fields.
    Explains the raw output (a logit for binary tasks). `background`: (ids, values) of B rows
    (`background_rows`), for coalitions="background"; `batch_rows` as in `coalition_values`.
    `on_mobius`: called with the (r, C) Möbius transform of each batch of rows, in order, to read
    (not change) what else the same tables give (afm.analysis.higher_order), with no second pass."""
    parts: dict[str, list[torch.Tensor]] = {}
    for table in _tables(model, ids, values, coalitions, background, batch_rows):
        for name, tensor in _indices(table, model.config.num_fields, on_mobius).items():
            parts.setdefault(name, []).append(tensor.cpu())
    count = 0 if background is None else int(torch.as_tensor(background[0]).shape[0])
    return PairShapley(coalitions, count, **{name: torch.cat(tensors) for name, tensors in parts.items()})


def _selected(result: PairShapley, rows) -> torch.Tensor:
    """The indices of a boolean mask (R,), of indices, or of all rows (None)."""
    total = result.prediction.shape[0]
    if rows is None:
        return torch.arange(total)
    rows = np.asarray(rows)
    if rows.dtype == bool and rows.shape != (total,):
        raise DataError("row mask", f"has {rows.shape[0]:,} entries for {total:,} explained rows")
    index = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
    if len(index) == 0:
        raise DataError("row selection", "selects no rows to summarise")
    if index.min() < 0 or index.max() >= total:
        raise DataError("row selection", f"indices must be in 0..{total - 1}")
    return torch.as_tensor(index)


def pair_summary(result: PairShapley, schema: FieldSchema, rows=None) -> pd.DataFrame:
    """Per field pair ("brand x hour", pair_index order) over all rows or `rows` (mask or indices):
    mean and mean |.| of the interaction index (SII) and of the Shapley-Taylor pair term, the latter
    being the pair's share of the prediction. The coalitions column says which v(S) they come from."""
    index = _selected(result, rows)
    sii, taylor = result.pair_interaction[index], result.pair_terms[index]  # (n, P) each
    return pd.DataFrame({"pair": schema.pair_names(), "coalitions": result.coalitions,
                         "sii_mean": sii.mean(0).numpy(), "sii_abs_mean": sii.abs().mean(0).numpy(),
                         "taylor_mean": taylor.mean(0).numpy(), "taylor_abs_mean": taylor.abs().mean(0).numpy(),
                         "rows": len(index)})


def field_summary(result: PairShapley, schema: FieldSchema, rows=None) -> pd.DataFrame:
    """Per field over all rows or `rows`: mean and mean |.| of its Shapley value and of its
    Shapley-Taylor main term v({i}) - v(∅) (what the field does alone)."""
    index = _selected(result, rows)
    shapley, main = result.field_shapley[index], result.main_terms[index]  # (n, F) each
    return pd.DataFrame({"field": list(schema.field_names), "coalitions": result.coalitions,
                         "shapley_mean": shapley.mean(0).numpy(), "shapley_abs_mean": shapley.abs().mean(0).numpy(),
                         "main_mean": main.mean(0).numpy(), "main_abs_mean": main.abs().mean(0).numpy(),
                         "rows": len(index)})


def pair_summary_by_value(result: PairShapley, schema: FieldSchema, masks: dict[str, np.ndarray]) -> pd.DataFrame:
    """`pair_summary` for each group of rows, e.g. the masks of `attention.rows_by_value` (one per
    value of a field, over the explained rows): one block of P rows per value, in the masks' order."""
    if not masks:
        raise DataError("row masks", "no groups of rows to summarise")
    frames = [pair_summary(result, schema, mask) for mask in masks.values()]
    for name, frame in zip(masks, frames):
        frame.insert(0, "value", name)
    return pd.concat(frames, ignore_index=True)
