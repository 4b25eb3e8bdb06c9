"""The coupling measures of docs/gradient_coupling.md for trained checkpoints, as markdown tables.

    python bench/coupling_report.py --data frappe fm=runs/frappe/fm256.safetensors \
        fwfm=runs/frappe/fwfm256.safetensors afm=runs/frappe/afm256.safetensors [--rows 1024]

Measures on the first `--rows` rows of a seeded permutation of the validation split.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from afm.analysis.attention import decompose_split, permutation_pair_importance, summarize_pairs
from afm.analysis.coupling import (
    coupling_summary,
    hessian_coupling,
    information_abundance,
    seed_formula_error,
    seed_formula_error_by_scale,
)
from afm.checkpoint import load_checkpoint
from afm.data import load_dataset
from afm.inference import outputs


def off_diagonal(matrix: np.ndarray) -> np.ndarray:
    return matrix[~np.eye(len(matrix), dtype=bool)]


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def rank_correlation(a, b) -> float:
    """Spearman's rho (DataFrame.corr computes it without SciPy)."""
    return float(pd.DataFrame({"a": a, "b": b}).corr(method="spearman").iloc[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="frappe")
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--hessian-rows", type=int, default=256)
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("checkpoints", nargs="+", help="model=path")
    args = parser.parse_args()
    data = load_dataset(args.data)
    rows = np.random.default_rng(0).permutation(len(data.valid))[:args.rows]
    ids, values, targets = (torch.from_numpy(a[rows]) for a in
                            (data.valid.feature_ids, data.valid.feature_values, data.valid.labels))
    names = data.schema.field_names
    models = {}
    for item in args.checkpoints:
        label, path = item.split("=", 1)
        models[label] = load_checkpoint(path).model.eval()
    share_rows, hessian_rows, tug_rows, timing = [], [], [], []
    for label, model in models.items():
        start = time.perf_counter()
        summary = coupling_summary(model, ids, values, targets)
        share_seconds = time.perf_counter() - start
        share = summary.share
        top_share = np.nanmax(share, axis=1)  # how concentrated each embedding's pulls are
        entropy = -np.nansum(share * np.log(np.where(share > 0, share, 1)), axis=1) / np.log(len(names) - 1)
        share_rows.append([label, float(np.mean(top_share)), float(np.mean(entropy)), information_abundance(model)])
        subset = slice(0, args.hessian_rows) if model.config.model == "afm" else slice(None)
        start = time.perf_counter()
        hessian = hessian_coupling(model, ids[subset], values[subset], targets[subset], probes=args.probes)
        hessian_seconds = time.perf_counter() - start
        model_part = float(off_diagonal(hessian.model_part).mean())
        curvature_part = float(off_diagonal(hessian.curvature_part).mean())
        hessian_rows.append([label, model_part, curvature_part, model_part / curvature_part,
                             float(off_diagonal(hessian.total).mean()),
                             f"{hessian.method} on {hessian.rows} rows"
                             + (f", rel. s.e. ≤ {np.nanmax(off_diagonal(hessian.relative_stderr)):.1%}"
                                if hessian.method.startswith("Hutch") else "")])
        per_field = ", ".join(f"{n} {c:.2f}" for n, c in zip(names, summary.cancellation))
        tug_rows.append([label, float(np.nanmean(summary.cancellation)),
                         float(np.nanmean(summary.cancellation_baseline)),
                         float(np.nanmean(off_diagonal(summary.cosine))), per_field])
        timing.append([label, share_seconds, hessian_seconds])
    print("### Pair-contribution shares\n")
    print(table(["model", "mean largest share", "share entropy (1 = even)", "information abundance"], share_rows))
    print("\n### Cross-field Hessian blocks (mean over off-diagonal field pairs)\n")
    print(table(["model", "model-coupling part", "loss-curvature part", "ratio (scale-free)", "total", "method"],
                hessian_rows))
    print("\n### Tug-of-war\n")
    print(table(["model", "mean cancellation", "chance (random directions)", "mean cosine(partner, total)",
                 "cancellation per field"], tug_rows))
    if "afm" in models:
        afm = models["afm"]
        scales = [0.01, 0.1, 0.3, 1.0, 3.0]
        errors = seed_formula_error_by_scale(afm, ids[:256], values[:256], targets[:256], scales)
        print("\n### The blog post's eq. (11) against autograd (trained AFM, embeddings rescaled)\n")
        print(table(["embedding scale"] + [str(s) for s in scales], [["relative error"] + [float(e) for e in errors]]))
        print(f"\nAs trained: {seed_formula_error(afm, ids, values, targets):.4f}")
        summary = summarize_pairs(decompose_split(afm, data.valid, rows=rows), data.schema)
        importance = permutation_pair_importance(
            lambda i, v: outputs(afm, torch.from_numpy(i), torch.from_numpy(v)), data.valid.take(rows),
            data.schema.num_fields, repeats=2)
        order = np.argsort(-importance)[:5]
        print(f"\nAFM's top pairs by mean |contribution|: {summary.ranking()[:5]}; by permutation interaction "
              f"importance: {[data.schema.pair_names()[i] for i in order]}; Spearman over all pairs "
              f"{rank_correlation(importance, summary.contribution_abs_mean):.3f}")
    print("\n### Seconds per measure on these rows\n")
    print(table(["model", "shares + tug-of-war", "Hessian blocks"], timing))


if __name__ == "__main__":
    main()
