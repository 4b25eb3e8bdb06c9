"""Cost of each coupling/attention measure on one batch (issue target: 1,024 rows, F = 10,
k = 64 within 2 s on a 2-core CPU).

    python bench/analysis_cost.py [--rows 1024 --fields 10 --k 64 --repeats 3 --threads 2]

Prints one JSON line per (model, measure) with the best of `repeats` wall times.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from afm.analysis.attention import decompose_split, summarize_pairs
from afm.analysis.coupling import (
    autograd_embedding_gradient,
    coupling_summary,
    embedding_gradient_parts,
    hessian_coupling,
    information_abundance,
    seed_formula_error,
)
from afm.data import FieldSchema, Split
from afm.models import ModelConfig, build_model


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--fields", type=int, default=10)
    parser.add_argument("--features", type=int, default=5382)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probes", type=int, default=4, help="Hutchinson probes per field for AFM")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ids = torch.randint(0, args.features, (args.rows, args.fields))
    values = torch.ones(args.rows, args.fields)
    targets = torch.randn(args.rows)
    split = Split(ids.numpy(), values.numpy(), targets.numpy())
    schema = FieldSchema(tuple(f"f{i}" for i in range(args.fields)), tuple([0] * args.features))
    for name in ("fm", "fwfm", "afm"):
        model = build_model(ModelConfig(model=name, num_features=args.features, num_fields=args.fields,
                                        embedding_dim=args.k, attention_dim=args.k)).eval()
        with torch.no_grad():
            model.embedding.weight.normal_(0, 0.1)
        measures = {
            "attention summary": lambda m=model: summarize_pairs(decompose_split(m, split), schema),
            "gradient parts (closed form)": lambda m=model: embedding_gradient_parts(m, ids, values, targets),
            "autograd gradient (reference)": lambda m=model: autograd_embedding_gradient(m, ids, values, targets),
            "share + tug-of-war": lambda m=model: coupling_summary(m, ids, values, targets),
            "hessian blocks": lambda m=model: hessian_coupling(m, ids, values, targets, probes=args.probes),
            "information abundance": lambda m=model: information_abundance(m),
        }
        if name == "afm":
            measures["seed formula error"] = lambda m=model: seed_formula_error(m, ids, values, targets)
        for measure, function in measures.items():
            seconds = best_time(function, args.repeats)
            print(json.dumps({"model": name, "measure": measure, "seconds": round(seconds, 4), "rows": args.rows,
                              "fields": args.fields, "k": args.k, "threads": args.threads,
                              "probes": args.probes if measure == "hessian blocks" and name == "afm" else None,
                              "torch": torch.__version__, "machine": platform.processor() or platform.machine()}),
                  flush=True)


if __name__ == "__main__":
    main()
