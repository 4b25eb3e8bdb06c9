"""Which view of a trained model recovers the planted pairs of data nobody designed by hand
(issue #18, item 6). For each seed, `afm.samples.random_planted` draws the data (5-8 fields of
random cardinality, an always-on pair and a pair gated by one value of a third field); FM, FwFM
and AFM are trained with the Quick preset (k = t = 16, Adagrad lr 0.2, batch 128, up to 40
epochs, early stopping on validation); `explain_pairs` runs on the whole test split (coalitions
"absent") and permutation importance on the same rows.

    python bench/pair_recovery.py [--seeds 0,1,2,3,4] [--rows 12000] [--threads 1]

Per model and view: the top-2 hit rate (share of the 2 planted pairs among the view's 2 largest
pairs, mean over seeds) and in how many seeds each planted pair is in the top 2; and whether the
gate table names the planted (pair, gate) with the planted value first: from the labels
(`strongest_gate`, model-free) and from the model (the line of largest SII spread). Prints one
JSON line per (seed, model), then the Markdown table and how it was made.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import torch

from afm.analysis.attention import permutation_pair_importance
from afm.analysis.pairs import explain_pairs
from afm.fitting import fit_recipe
from afm.inference import outputs
from afm.recipe import preset
from afm.samples.random_planted import Truth, planted_dataset

MODELS = ("fm", "fwfm", "afm")
# view -> column of the pair table ranked by (None: permutation importance); attention ranks by |a|.
VIEWS = {"attention": "attention_mean", "|contribution|": "contribution_abs_mean", "permutation": None,
         "|SII|": "shapley_abs_mean", "|Shapley-Taylor|": "taylor_abs_mean"}
TOP = 2


def top_pairs(scores: pd.Series, names: list[str], top: int = TOP) -> list[str] | None:
    """The `top` pairs of largest score (None when every score is the same: no ranking, FM's attention)."""
    values = scores.to_numpy(dtype=np.float64)
    if np.ptp(values) <= 1e-9 * max(np.abs(values).max(), 1e-12):
        return None
    return [names[i] for i in np.argsort(-values, kind="stable")[:top]]


def gate_found(pair: str, gate: str, value_ids: list[int], truth: Truth) -> bool:
    return pair == truth.gated and gate == truth.gate and bool(value_ids) and value_ids[0] == truth.gate_value_id


def same_fields(pair: str, gate: str, truth: Truth) -> bool:
    """The planted three fields in some role: i x j gated by g is one three-way term, and a model
    may carry it as i x g gated by j as well."""
    return {*pair.split(" x "), gate} == {*truth.gated.split(" x "), truth.gate}


def model_gate_value(explanation, split, pair: int, gate: int) -> int:
    """The gate's value (feature id) where the model's mean |SII| of the pair is largest."""
    column = np.asarray(split.feature_ids[explanation.rows, gate])  # (R,)
    sii = explanation.shapley.pair_interaction[:, pair].abs().numpy()  # (R,)
    values = np.unique(column)
    return int(values[np.argmax([sii[column == v].mean() for v in values])])


def one_model(name: str, data, truth: Truth, seed: int, repeats: int) -> dict:
    """Train one model on one seed's data and score every view against the truth."""
    started = time.perf_counter()
    fitted = fit_recipe(preset("quick", name, device="cpu", seed=seed), data)
    model = fitted.checkpoint.model.eval()
    trained = time.perf_counter() - started
    explanation = explain_pairs(model, data.test, data.schema, data.train, rows=len(data.test))
    table = explanation.table.set_index("pair")
    names = data.schema.pair_names()
    table = table.loc[names]  # pair_index order
    importance = permutation_pair_importance(
        lambda i, v: outputs(model, torch.from_numpy(i), torch.from_numpy(v)), data.test, data.schema.num_fields,
        repeats=repeats, seed=seed)
    record = {"seed": seed, "model": name, "fields": data.schema.num_fields, "planted": list(truth.pairs),
              "gate": f"{truth.gate}={truth.gate_value}", "best_epoch": fitted.result.best_epoch,
              "test_rmse": round(float(fitted.checkpoint.best["test_rmse"]), 4), "train_s": round(trained, 1)}
    for view, column in VIEWS.items():
        scores = pd.Series(importance) if column is None else table[column]
        record[view] = top_pairs(scores.abs() if view == "attention" else scores, names)
    choice = explanation.strongest_gate
    record["data_gate"] = [choice.pair, choice.gate, list(choice.values)] if choice else None
    record["data_gate_found"] = bool(choice) and gate_found(choice.pair, choice.gate, list(choice.values.values()),
                                                            truth)
    by_model = explanation.gates.dropna(subset=["model_strength"])
    line = by_model.sort_values("model_strength", ascending=False, kind="stable").iloc[0]
    value = model_gate_value(explanation, data.test, int(line["p"]), int(line["g"]))
    record["model_gate"] = [line["pair"], line["gate"], data.schema.value_name(value),
                            float(round(line["model_strength"], 4))]
    record["model_gate_found"] = gate_found(line["pair"], line["gate"], [value], truth)
    record["model_gate_fields"] = same_fields(line["pair"], line["gate"], truth)
    record["seconds_explain"] = round(explanation.seconds, 2)
    return record


def view_rows(records: list[dict]) -> list[list[str]]:
    """One line per (model, view): hit rate, seeds with the always-on pair and the gated pair in the top 2."""
    rows, seeds = [], len({r["seed"] for r in records})
    for name in MODELS:
        mine = [r for r in records if r["model"] == name]
        for view in VIEWS:
            tops = [r[view] for r in mine]
            if all(t is None for t in tops):
                rows.append([name.upper(), view, "no ranking (one weight for all pairs)", "", ""])
                continue
            on = sum(r["planted"][0] in (t or []) for r, t in zip(mine, tops))
            gated = sum(r["planted"][1] in (t or []) for r, t in zip(mine, tops))
            rows.append([name.upper(), view, f"{(on + gated) / (2 * seeds):.2f}", f"{on}/{seeds}", f"{gated}/{seeds}"])
    return rows


def gate_rows(records: list[dict]) -> list[list[str]]:
    """Whether the gate table's first line is the planted (pair, gate) with the planted value first."""
    seeds = len({r["seed"] for r in records})
    first = [r for r in records if r["model"] == MODELS[0]]
    rows = [["labels (`strongest_gate`, model-free)", f"{sum(r['data_gate_found'] for r in first)}/{seeds}", "",
             "; ".join(f"{r['seed']}: {r['data_gate'][0]} by {r['data_gate'][1]}" for r in first)]]
    for name in MODELS:
        mine = [r for r in records if r["model"] == name]
        found, fields = sum(r["model_gate_found"] for r in mine), sum(r["model_gate_fields"] for r in mine)
        rows.append([f"{name.upper()} (largest spread of mean |SII|)", f"{found}/{seeds}", f"{fields}/{seeds}",
                     "; ".join(f"{r['seed']}: {r['model_gate'][0]} by {r['model_gate'][1]} "
                               f"({r['model_gate'][3]:.3f})" for r in mine)])
    return rows


def seed_rows(records: list[dict], truths: dict[int, Truth]) -> list[list[str]]:
    rows = []
    for seed, truth in truths.items():
        rmse = {r["model"]: r["test_rmse"] for r in records if r["seed"] == seed}
        on = truth.always_on
        rows.append([str(seed), str(list(truth.cardinalities)), f"{on} ({truth.strengths[on]:.2f})",
                     f"{truth.gated} ({truth.strengths[truth.gated]:.2f}) where {truth.gate} = {truth.gate_value}",
                     " / ".join(f"{rmse[m]:.3f}" for m in MODELS)])
    return rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    def cell(text) -> str:
        return str(text).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows])


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor() or platform.machine())
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    load = open("/proc/loadavg").read().split()[:3]
    return f"{cores} cores of {model}, load average {' '.join(load)} at the end, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--rows", type=int, default=12_000, help="rows of each seed's data (70/20/10 split)")
    parser.add_argument("--repeats", type=int, default=3, help="permutation repeats")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: small models on a shared 2-core machine train fastest so)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started, records, truths = time.perf_counter(), [], {}
    for seed in (int(s) for s in args.seeds.split(",")):
        data, truth = planted_dataset(seed, rows=args.rows)
        truths[seed] = truth
        print("#", truth.describe(), flush=True)
        for name in MODELS:
            records.append(one_model(name, data, truth, seed, args.repeats))
            print(json.dumps(records[-1]), flush=True)
    print("\n" + markdown(["seed", "cardinalities", "always-on pair (s)", "gated pair (s)",
                            "test RMSE FM / FwFM / AFM"], seed_rows(records, truths)))
    print("\n" + markdown(["model", "view", f"top-{TOP} hit rate", f"always-on pair in top {TOP}",
                            f"gated pair in top {TOP}"], view_rows(records)))
    print("\n" + markdown(["gate table from", "planted (pair, gate, value) first", "planted three fields, any roles",
                            "first line per seed (spread)"],
                           gate_rows(records)))
    print(f"\nCommand: `python bench/pair_recovery.py --seeds {args.seeds} --rows {args.rows} --repeats "
          f"{args.repeats} --threads {args.threads}`; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}; "
          f"{time.perf_counter() - started:.0f} s in all.")


if __name__ == "__main__":
    main()
