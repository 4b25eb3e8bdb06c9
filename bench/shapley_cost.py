"""Cost of the exact Shapley values (afm.analysis.shapley.pair_shapley): rows explained per second
at F fields and k = t, coalitions "absent" and "background" (B background rows), for a random AFM
on one-hot rows, best of `repeats`; then `explain_pairs` (Shapley values, pair table and gate
tables) on 256 rows of Frappe with a random k = t = 256 AFM: the issue's target is 2 s on the
2-core CPU. Real Frappe when it is found (AFM_DATA_DIR or ../shared/data), else random rows of
Frappe's shape (10 fields of its cardinalities, its 202,027 / 57,722 / 28,860 rows).

    python bench/shapley_cost.py [--fields 3,10,16] [--k 64,256] [--background 16] [--threads 2]

Each setting times max(1, work / (2^F B)) rows (B = 1 under "absent"), so every call does about
the same amount of coalition work, after one warm-up call. Prints one JSON line per measurement,
then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime

import numpy as np
import torch

from afm.analysis.gates import data_gates
from afm.analysis.pairs import explain_pairs
from afm.analysis.shapley import pair_shapley
from afm.data import Dataset, FieldSchema, Split, load_dataset
from afm.data.registry import FRAPPE_FIELDS
from afm.errors import DataError
from afm.models import ModelConfig, build_model

CARDINALITY = 50  # values per field of the random rows


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def random_afm(fields: int, features: int, k: int):
    config = ModelConfig(model="afm", num_features=features, num_fields=fields, embedding_dim=k, attention_dim=k)
    model = build_model(config, seed=0).eval()
    with torch.no_grad():
        model.embedding.weight.normal_(0, 0.3)
    return model


def one_hot_rows(rows: int, sizes: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.tensor(np.concatenate(([0], np.cumsum(sizes)[:-1])))
    ids = torch.stack([torch.randint(0, s, (rows,), generator=generator) for s in sizes], 1) + offsets  # (R, F)
    return ids, torch.ones(ids.shape)


def rows_per_second(fields: int, k: int, coalitions: str, background: int, repeats: int, work: int) -> dict:
    """Rows/s of pair_shapley on max(1, work / (2^F B)) rows (B = 1 under "absent"), best of `repeats`."""
    sizes = [CARDINALITY] * fields
    model = random_afm(fields, CARDINALITY * fields, k)
    drawn = tuple(one_hot_rows(background, sizes, seed=1)) if coalitions == "background" else None
    rows = max(1, work // ((1 << fields) * (background if drawn else 1)))
    ids, values = one_hot_rows(rows, sizes)
    with torch.no_grad():
        pair_shapley(model, ids, values, coalitions, drawn)  # warm-up: the first call of a shape pays set-up
        took = best_time(lambda: pair_shapley(model, ids, values, coalitions, drawn), repeats)
    return {"fields": fields, "k": k, "t": k, "coalitions": coalitions,
            "background": background if drawn else 0, "rows": rows, "seconds": round(took, 4),
            "rows_per_s": round(rows / took, 1)}


def frappe_like() -> Dataset:
    """Frappe itself, or random one-hot rows of its shape (10 fields, 5,382 features, its split sizes)."""
    try:
        return load_dataset("frappe")
    except DataError:
        sizes = list(FRAPPE_FIELDS.values())
        schema = FieldSchema(tuple(FRAPPE_FIELDS), np.repeat(np.arange(len(sizes)), sizes).tolist())
        splits = {}
        for seed, (name, count) in enumerate({"train": 202_027, "valid": 57_722, "test": 28_860}.items()):
            ids, values = one_hot_rows(count, sizes, seed)
            splits[name] = Split(ids.numpy(), values.numpy(), np.random.default_rng(seed).normal(size=count)
                                 .astype(np.float32))
        return Dataset("frappe-shaped random rows", schema, splits, "memory")


def explain_cost(rows: int, k: int, background: int, repeats: int) -> list[dict]:
    data = frappe_like()
    model = random_afm(data.schema.num_fields, data.schema.num_features, k)
    out = []
    for coalitions in ("absent", "background"):
        with torch.no_grad():
            took = best_time(lambda c=coalitions: explain_pairs(model, data.test, data.schema, data.train, rows=rows,
                                                                coalitions=c, background=background), repeats)
        out.append({"measure": "explain_pairs", "data": data.name, "train_rows": len(data.train), "rows": rows,
                    "k": k, "t": k, "coalitions": coalitions, "background": background if coalitions != "absent"
                    else 0, "seconds": round(took, 3)})
    took = best_time(lambda: data_gates(data.train, data.schema, min_support=20), repeats)
    out.append({"measure": "data_gates (part of explain_pairs)", "data": data.name, "train_rows": len(data.train),
                "seconds": round(took, 3)})
    return out


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor() or platform.machine())
    return f"{torch.get_num_threads()} threads on {model}, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fields", default="3,10,16")
    parser.add_argument("--k", default="64,256", help="k = t values")
    parser.add_argument("--background", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each setting; the best counts")
    parser.add_argument("--work", type=int, default=1 << 20,
                        help="rows x coalitions x background rows of one timed call (the rows follow from it)")
    parser.add_argument("--explain-rows", type=int, default=256)
    parser.add_argument("--explain-k", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = [open("/proc/loadavg").read().split()[:3]]
    results = []
    for fields in (int(f) for f in args.fields.split(",")):
        for k in (int(k) for k in args.k.split(",")):
            for coalitions in ("absent", "background"):
                results.append(rows_per_second(fields, k, coalitions, args.background, args.repeats, args.work))
                print(json.dumps(results[-1]), flush=True)
    explained = explain_cost(args.explain_rows, args.explain_k, args.background, args.repeats)
    for record in explained:
        print(json.dumps(record), flush=True)
    load.append(open("/proc/loadavg").read().split()[:3])
    print("\n| F | k = t | coalitions (2^F each) | rows/s | rows timed | seconds |\n|---|---|---|---|---|---|")
    for r in results:
        how = "absent" if r["coalitions"] == "absent" else f"background, B = {r['background']}"
        print(f"| {r['fields']} | {r['k']} | {how} ({2 ** r['fields']:,}) | {r['rows_per_s']:,.1f} | {r['rows']:,} | "
              f"{r['seconds']:.3f} |")
    print("\n| measure | rows | coalitions | seconds |\n|---|---|---|---|")
    for r in explained:
        how = r.get("coalitions", "") + (f", B = {r['background']}" if r.get("background") else "")
        print(f"| {r['measure']} ({r['data']}, {r['train_rows']:,} training rows) | {r.get('rows', '')} | {how} | "
              f"{r['seconds']:.3f} |")
    command = (f"python bench/shapley_cost.py --fields {args.fields} --k {args.k} --background {args.background} "
               f"--repeats {args.repeats} --work {args.work} --threads {args.threads}")
    print(f"\nCommand: `{command}`; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}; load average "
          f"(1, 5, 15 min) {' '.join(load[0])} before, {' '.join(load[1])} after.")

if __name__ == "__main__":
    main()
