"""Is attention an explanation here? Three measured checks of an AFM's attention a_ij, since a
high a_ij reads like "the model looked at this pair" whether or not that holds for this model:

1. `rank_agreement`: per row, do attention, |contribution a_ij s_ij| and |Shapley interaction|
   order the P pairs alike (Kendall tau-b, top-k overlap)? Per row, to draw as distributions.
2. `attention_baselines`: the same AFM with every a_ij = 1/P, and with each pair's mean attention
   as a fixed weight (an FwFM). If the fixed weights do as well, per-row attention is not used.
3. `adversarial_attention`: ŷ is linear in the weights given the pair values s (ŷ = c + Σ a_p s_p),
   so the attention farthest (total variation) from the learned one that keeps ŷ within ε is
   found exactly per row. A large distance: the weights alone do not pin down the prediction.
R rows, P = F(F-1)/2 field pairs in `pair_index` order, Q = P(P-1)/2 pairs of pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from afm.analysis.attention import decompose_split
from afm.data import FieldSchema, Split
from afm.errors import ConfigError, DataError
from afm.metrics import evaluate_predictions
from afm.models import AFM, PredictionTerms

TASKS = ("regression", "binary")
CHUNK_SLOTS = 1_000_000  # rows x Q compared at once: 8 MB per float64 temporary
VERDICT_METRIC = {"regression": "rmse", "binary": "logloss"}  # lower is better for both


def _matrix(name: str, array, shape: tuple[int, int] | None = None) -> np.ndarray:
    """`array` as finite float64 (R, P) with P >= 2, or a ConfigError that names it."""
    matrix = np.asarray(array, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] < 2:
        raise ConfigError(f"{name} must be (rows, pairs) with at least 2 pairs, got shape {matrix.shape}")
    if shape is not None and matrix.shape != shape:
        raise ConfigError(f"{name} has shape {matrix.shape}, expected {shape}")
    if not np.isfinite(matrix).all():
        raise ConfigError(f"{name} holds NaN or infinite values")
    return matrix


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between row r of x and row r of y, for every row, (R,).

    tau_b = (C - D) / sqrt((Q - T_x)(Q - T_y)) over the Q pairs of positions, with C concordant,
    D discordant and T_x, T_y the pairs tied in x, in y (scipy's default variant). NaN where a row
    is constant in x or y: no order to compare. O(P²) per row, vectorised over rows."""
    x = _matrix("x", x)
    y = _matrix("y", y, x.shape)
    left, right = np.triu_indices(x.shape[1], k=1)  # (Q,) each
    step = max(1, CHUNK_SLOTS // len(left))
    tau = np.empty(x.shape[0])  # (R,)
    for start in range(0, x.shape[0], step):
        rows = slice(start, start + step)
        sign_x = np.sign(x[rows, left] - x[rows, right])  # (r, Q)
        sign_y = np.sign(y[rows, left] - y[rows, right])  # (r, Q)
        score = (sign_x * sign_y).sum(1)  # (r,) C - D
        untied = np.count_nonzero(sign_x, axis=1).astype(np.float64) * np.count_nonzero(sign_y, axis=1)  # (r,)
        with np.errstate(invalid="ignore", divide="ignore"):
            tau[rows] = np.where(untied > 0, score / np.sqrt(untied), np.nan)
    return tau


def top_overlap(x: np.ndarray, y: np.ndarray, top: int = 3) -> np.ndarray:
    """|top_k(x_r) ∩ top_k(y_r)| / k per row, (R,), k = min(top, P): the share of the k largest
    pairs the two views have in common. Ties at the cut go to the earlier pair (stable sort)."""
    x = _matrix("x", x)
    y = _matrix("y", y, x.shape)
    if not (isinstance(top, int) and top >= 1):
        raise ConfigError(f"top must be a positive integer, got {top!r}")
    k = min(top, x.shape[1])
    masks = [np.argsort(np.argsort(-v, axis=1, kind="stable"), axis=1) < k for v in (x, y)]  # (R, P): rank < k
    return (masks[0] & masks[1]).sum(1) / k  # (R,)


@dataclass
class RankAgreement:
    """Per-row agreement of each pair of views on the order of the P pairs."""

    views: list[str]
    top: int  # k of the top-k overlap
    pairs: int  # P
    tau: dict[tuple[str, str], np.ndarray]  # (first, second) -> (R,) Kendall tau-b per row
    overlap: dict[tuple[str, str], np.ndarray]  # (first, second) -> (R,) top-k share in common

    @property
    def chance_overlap(self) -> float:
        """Expected top-k overlap of two unrelated orders: k/P."""
        return min(self.top, self.pairs) / self.pairs

    def frame(self) -> pd.DataFrame:
        """One line per row and comparison (columns comparison, row, tau, overlap): for histograms."""
        parts = [pd.DataFrame({"comparison": f"{a} vs {b}", "row": np.arange(len(tau)), "tau": tau,
                               "overlap": self.overlap[(a, b)]}) for (a, b), tau in self.tau.items()]
        return pd.concat(parts, ignore_index=True)

    def summary(self) -> pd.DataFrame:
        """One line per comparison: quartiles of tau, mean overlap, and the overlap chance gives."""
        return self.frame().groupby("comparison", sort=False).agg(
            rows=("tau", "size"), tau_q25=("tau", lambda v: v.quantile(0.25)), tau_median=("tau", "median"),
            tau_q75=("tau", lambda v: v.quantile(0.75)), overlap_mean=("overlap", "mean"),
        ).assign(overlap_chance=self.chance_overlap).reset_index()

    def meaning(self, first: str | None = None, second: str | None = None) -> str:
        """One sentence on one comparison (default: the first view against the last)."""
        a, b = first or self.views[0], second or self.views[-1]
        if (a, b) not in self.tau:
            raise ConfigError(f"no comparison {a!r} vs {b!r}; views are {self.views}")
        median, share = pd.Series(self.tau[(a, b)]).median(), float(self.overlap[(a, b)].mean())  # NaN rows skipped
        facts = (f"{a} and {b} order the pairs with median Kendall tau {median:.2f} and share "
                 f"{share:.0%} of their top {min(self.top, self.pairs)} (chance: {self.chance_overlap:.0%})")
        if median >= 0.6:
            return facts + f": here a high {a} does mark the pairs that rank high by {b}."
        if median >= 0.3:
            return facts + f": read a high {a} only as a hint, and check {b} before trusting it."
        return facts + f": a high {a} says little about {b} here; do not read it as the reason."


def rank_agreement(views: dict[str, np.ndarray], top: int = 3) -> RankAgreement:
    """Per-row Kendall tau-b and top-`top` overlap for every pair of views, each (R, P) holding the
    quantity to rank (`attention_views` builds attention, |contribution|, |Shapley interaction|).
    A tau near 1: the views order that row's pairs alike; near 0, unrelated; negative, reversed."""
    if not isinstance(views, dict) or len(views) < 2:
        raise ConfigError("rank agreement needs at least two views (name -> (rows, pairs) array)")
    names = list(views)
    shape = _matrix(f"view {names[0]!r}", views[names[0]]).shape
    arrays = {name: _matrix(f"view {name!r}", views[name], shape) for name in names}
    comparisons = [(a, b) for n, a in enumerate(names) for b in names[n + 1:]]
    return RankAgreement(names, top, shape[1],
                         {(a, b): kendall_tau_b(arrays[a], arrays[b]) for a, b in comparisons},
                         {(a, b): top_overlap(arrays[a], arrays[b], top) for a, b in comparisons})


def attention_views(terms: PredictionTerms, shapley: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The views `rank_agreement` compares: attention a_ij, |a_ij s_ij|, and |Shapley interaction|
    when given ((R, P), e.g. from afm.analysis.shapley)."""
    views = {"attention": terms.pair_weights.double().numpy(),  # (R, P)
             "|contribution|": terms.pair_terms.double().abs().numpy()}  # (R, P)
    if shapley is not None:
        views["|Shapley interaction|"] = np.abs(_matrix("shapley", shapley, views["attention"].shape))  # (R, P)
    return views


@dataclass
class AttentionBaselines:
    """The model's metrics with per-row, uniform and frozen attention, on the same rows."""

    task: str
    metric: str  # what the verdict compares: clipped "rmse" (regression) or "logloss" (binary)
    per_row: dict[str, float]  # the AFM as it is
    uniform: dict[str, float]  # every a_ij = 1/P
    frozen: dict[str, float]  # a_ij = the pair's mean attention over the reference rows (an FwFM)
    frozen_weights: np.ndarray  # (P,) those means
    pair_names: list[str]
    rows: int
    tolerance: float  # relative: "as well" means within this fraction of the per-row metric
    split_name: str = ""  # which rows were scored ("test", "valid", ...): every verdict says so

    def frame(self) -> pd.DataFrame:
        """One line per variant, one column per metric."""
        names = ["per-row attention", "uniform attention 1/P", "frozen mean attention (FwFM)"]
        return pd.DataFrame([{"attention": n, **m} for n, m in zip(names, (self.per_row, self.uniform, self.frozen))])

    @property
    def rows_label(self) -> str:
        """The rows every number here comes from, as a sentence says it: "the 1,500 test rows"."""
        return f"the {self.rows:,} {self.split_name + ' ' if self.split_name else ''}rows"

    def verdict(self) -> str:
        """One sentence: does this AFM use its attention per row? It names the rows it was scored on,
        so that two verdicts on different rows are not read as one contradicting the other."""
        m, where = self.metric, f"On {self.rows_label}, this AFM"
        learned, uniform, frozen = self.per_row[m], self.uniform[m], self.frozen[m]
        bar = learned + self.tolerance * abs(learned)  # "as well": within the tolerance of per-row
        if uniform <= bar:
            return (f"{where} does not use its attention: with every weight 1/P its {m} is {uniform:.4f} against "
                    f"{learned:.4f}, so the attention weights carry nothing its predictions need.")
        if frozen <= bar:
            return (f"{where} does not use per-row attention: a fixed weight per pair (an FwFM) does as well "
                    f"({m} {frozen:.4f} against {learned:.4f}), so read its attention as one weight per pair.")
        rise = (frozen - learned) / abs(learned) if learned else float("inf")
        return (f"{where} uses per-row attention: fixing each pair's weight at its mean raises {m} from "
                f"{learned:.4f} to {frozen:.4f} ({rise:+.1%}; uniform 1/P: {uniform:.4f}).")


def attention_baselines(model: AFM, split: Split, reference_split: Split, schema: FieldSchema | None = None,
                        task: str = "regression", label_range: tuple[float, float] | None = None,
                        tolerance: float = 0.01, batch_size: int | None = None,
                        split_name: str = "") -> AttentionBaselines:
    """Per-row, uniform (1/P) and frozen (mean over `reference_split`, the training rows) attention
    of one AFM, scored on `split` by `evaluate_predictions` (regression RMSE clipped to
    `label_range`, by default the reference labels' range as `Dataset.label_range`; binary AUC,
    log loss). All three from one decomposition, ŷ = bias + Σ first_order + Σ_p weight_p s_p, only
    the weights changed. `verdict()`: if frozen does as well, the per-row weights are not used."""
    if not isinstance(model, AFM):
        raise ConfigError(f"attention baselines need an AFM; a {type(model).__name__} has one fixed weight per pair")
    if task not in TASKS or not (np.isfinite(tolerance) and tolerance >= 0):
        raise ConfigError(f"task must be one of {TASKS} and tolerance >= 0, got {task!r} and {tolerance!r}")
    for name, rows in (("split", split), ("reference_split", reference_split)):
        if len(rows) == 0 or rows.num_fields != model.config.num_fields:
            raise DataError(name, f"no rows to score, or not {model.config.num_fields} fields as the model has")
    if label_range is None:
        label_range = (float(reference_split.labels.min()), float(reference_split.labels.max()))
    terms = decompose_split(model, split, batch_size)
    chunks = [np.arange(start, min(start + 65_536, len(reference_split)))  # bounded memory on big training sets
              for start in range(0, len(reference_split), 65_536)]
    frozen_weights = sum(decompose_split(model, reference_split, batch_size, rows).pair_weights.double().sum(0)
                         for rows in chunks) / len(reference_split)  # (P,)
    base = terms.bias.double() + terms.first_order.double().sum(1)  # (R,)
    values = terms.pair_values.double()  # (R, P)
    variants = {"per_row": terms.prediction.double(), "uniform": base + values.mean(1),  # (R,) each
                "frozen": base + values @ frozen_weights}
    try:
        scores = {name: evaluate_predictions(pred.numpy(), split.labels, task, label_range)
                  for name, pred in variants.items()}
    except ValueError as exc:  # binary task on labels that are not two classes
        raise DataError("split", str(exc)) from None
    names = schema.pair_names() if schema is not None else [f"pair {p}" for p in range(model.config.num_pairs)]
    return AttentionBaselines(task, VERDICT_METRIC[task], scores["per_row"], scores["uniform"], scores["frozen"],
                              frozen_weights.numpy(), names, len(split), float(tolerance), split_name)


@dataclass
class AdversarialAttention:
    """Per row, the attention a' farthest from the learned a (in total variation) whose
    prediction stays within ε of the learned one, all else (the pair values s) fixed."""

    epsilon: float
    max_tv: np.ndarray  # (R,) TV(a, a') = ½ Σ |a' - a|, in [0, 1]; 1 is disjoint support
    attention: np.ndarray  # (R, P) the a' that attains it (at most two non-zero weights)
    prediction_change: np.ndarray  # (R,) Σ a'_p s_p - Σ a_p s_p, within ±ε

    def summary(self) -> dict[str, float]:
        return {"epsilon": self.epsilon, "rows": len(self.max_tv), "share_over_half": float(np.mean(self.max_tv > 0.5)),
                **dict(zip(("tv_q10", "tv_median", "tv_q90"), np.quantile(self.max_tv, [0.1, 0.5, 0.9]).tolist()))}

    def meaning(self) -> str:
        """One sentence on what the distances say."""
        median = float(np.median(self.max_tv))
        facts = (f"Attention as different as TV {median:.2f} (median over {len(self.max_tv):,} rows; 1 means no "
                 f"weight in common) gives the same prediction within ε = {self.epsilon:g}")
        if median >= 0.5:
            return facts + ": the weights alone do not pin down why the model predicts what it does."
        return facts + ": here only attention close to the learned one keeps the prediction, so it is pinned down."


def _best_vertices(a: np.ndarray, s: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """(max TV (r,), a' (r, P)) over the vertices of simplex ∩ slab for a chunk of rows. Every
    candidate is a' = λ e_p + (1 - λ) e_q: the simplex vertices (p = q, λ = 1) and the points where
    a slab face Σ a'_p s_p = target ± ε crosses an edge [e_p, e_q]."""
    rows, pairs = a.shape
    target, total = (a * s).sum(1, keepdims=True), a.sum(1, keepdims=True)  # (r, 1) each; total is 1 ± rounding
    slack = epsilon + 1e-12 * (1.0 + np.abs(s).max(1, keepdims=True))  # (r, 1) rounding allowance
    left, right = np.triu_indices(pairs, k=1)  # (Q,) each
    sp, sq, ap, aq = s[:, left], s[:, right], a[:, left], a[:, right]  # (r, Q) each
    usable = np.abs(sp - sq) > 1e-15 * (1.0 + np.abs(sp) + np.abs(sq))  # (r, Q) a flat edge crosses no face
    gains = [np.where(np.abs(s - target) <= slack, 0.5 * (total - a + np.abs(1.0 - a)), -np.inf)]  # (r, P)
    weights = [np.ones((rows, pairs))]  # (r, P)
    for face in (target - epsilon, target + epsilon):  # (r, 1) each
        lam = (face - sq) / np.where(usable, sp - sq, 1.0)  # (r, Q) weight on e_p
        ok = usable & (lam >= -1e-12) & (lam <= 1 + 1e-12)  # (r, Q)
        lam = np.clip(lam, 0.0, 1.0)
        gains.append(np.where(ok, 0.5 * (total - ap - aq + np.abs(lam - ap) + np.abs(1.0 - lam - aq)), -np.inf))
        weights.append(lam)
    gain, lam = np.concatenate(gains, axis=1), np.concatenate(weights, axis=1)  # (r, P + 2Q) each
    pick = gain.argmax(1)  # (r,)
    first = np.concatenate([np.arange(pairs), left, left])[pick]  # (r,) p
    second = np.concatenate([np.arange(pairs), right, right])[pick]  # (r,) q
    chosen, everyone = lam[np.arange(rows), pick], np.arange(rows)  # (r,) λ, row numbers
    attention = np.zeros((rows, pairs))  # (r, P)
    np.add.at(attention, (everyone, first), chosen)
    np.add.at(attention, (everyone, second), 1.0 - chosen)
    return gain[everyone, pick], attention


def adversarial_attention(attention: np.ndarray, pair_values: np.ndarray, epsilon: float) -> AdversarialAttention:
    """For each row, the a' in the simplex with |Σ a'_p s_p - Σ a_p s_p| <= ε that maximises
    TV(a, a') = ½ Σ |a'_p - a_p|; `attention` a and `pair_values` s are (R, P), ε in the units of
    the raw output (the label, or the logit for the binary task; a tenth of the RMSE is a fair ε).
    TV is convex, so its maximum over the polytope simplex ∩ slab lies at a vertex: a simplex
    vertex e_p inside the slab, or where a slab face crosses an edge [e_p, e_q] (the faces are
    parallel: no vertex lies on both). All are checked, O(P²) per row: exact, no LP solver."""
    a = _matrix("attention", attention)
    s = _matrix("pair_values", pair_values, a.shape)
    if not (isinstance(epsilon, (int, float)) and np.isfinite(epsilon) and epsilon >= 0):
        raise ConfigError(f"epsilon must be a non-negative number, got {epsilon!r}")
    if (a < -1e-9).any() or not np.allclose(a.sum(1), 1.0, atol=1e-4):
        raise ConfigError("attention must be non-negative and sum to 1 in every row (an AFM's a_ij)")
    step = max(1, CHUNK_SLOTS // (a.shape[1] * (a.shape[1] - 1) // 2))
    tv, best = np.empty(a.shape[0]), np.empty(a.shape)  # (R,), (R, P)
    for start in range(0, a.shape[0], step):
        rows = slice(start, start + step)
        tv[rows], best[rows] = _best_vertices(a[rows], s[rows], float(epsilon))
    change = ((best - a) * s).sum(1)  # (R,)
    return AdversarialAttention(float(epsilon), np.clip(tv, 0.0, 1.0), best, change)


def adversarial_attention_of(terms: PredictionTerms, epsilon: float) -> AdversarialAttention:
    """`adversarial_attention` of an AFM's decomposed rows (`decompose_split`)."""
    return adversarial_attention(terms.pair_weights.double().numpy(), terms.pair_values.double().numpy(), epsilon)
