"""`afm pairs`: which field pairs matter, every view in one table (afm.analysis.pairs).

One line per field pair (the columns of afm.analysis.pairs.PAIR_COLUMNS), most important by mean
|Shapley interaction index| first, from exact Shapley values of a seeded sample of rows of one
split. The table goes to `--out` atomically; the JSON summary line says how many rows were
explained and how, how long it took, the strongest gate, for an AFM whether it uses its
attention per row (the baselines verdict), the erasure areas of each measure (`erasure`: of the
prediction's change, `erasure_metric`: of the task's metric; 0 = random order), the effects of
three fields (`effects`, also the CSV's `part_of_effect`) and the share of the prediction's
variance no pair carries (`non_pairwise_share`).
"""

from __future__ import annotations

import sys
import time

from afm.cli.arguments import data_arguments, load_data, number, positive_int, seed

COALITIONS = ("absent", "background")  # afm.analysis.shapley.SEMANTICS (not imported: parsing stays torch-free)
DEFAULT_ROWS = 256  # afm.analysis.pairs.DEFAULT_ROWS
DEFAULT_BACKGROUND = 16  # afm.analysis.pairs.DEFAULT_BACKGROUND


def add_commands(commands) -> dict:
    pairs = commands.add_parser("pairs", help="which field pairs matter: attention, contribution, exact Shapley "
                                              "interactions and gates, one CSV line per pair")
    pairs.add_argument("--checkpoint", required=True)
    data_arguments(pairs)
    pairs.add_argument("--split", choices=("train", "valid", "test", "all"), default="test",
                       help="which rows to explain (all: every row of the data)")
    pairs.add_argument("--rows", type=positive_int, default=DEFAULT_ROWS,
                       help=f"rows of the split explained, a seeded sample (default {DEFAULT_ROWS}; all when fewer)")
    pairs.add_argument("--coalitions", choices=COALITIONS, default="absent",
                       help="what a field outside a coalition is: absent from the row (default), or taken from "
                            "background rows of the training split")
    pairs.add_argument("--background", type=positive_int, default=None, metavar="B",
                       help=f"background rows under --coalitions background (default {DEFAULT_BACKGROUND})")
    pairs.add_argument("--seed", type=seed, default=0, help="seed of the rows and background drawn")
    pairs.add_argument("--seeds", type=number(int, lambda v: 2 <= v <= 20, "a whole number in 2..20"), default=None,
                       metavar="N",
                       help="also retrain the checkpoint's recipe on this data with N - 1 other seeds and say how "
                            "alike the N rankings are (JSON `stability`; CSV <measure>_rank_min/_rank_max); 2..20")
    pairs.add_argument("--device", default="auto", help="auto, cpu or cuda")
    pairs.add_argument("--out", required=True, metavar="PAIRS.csv", help="the table, one line per field pair")
    return {"pairs": command_pairs}


def command_pairs(args) -> dict:
    from afm.analysis.pairs import check_attention, erasure_of, explain_pairs
    from afm.cli.arguments import read_checkpoint
    from afm.errors import ConfigError
    from afm.files import check_not_an_input, write_atomic
    from afm.training_plan import resolve_device

    check_not_an_input(args.out, {"the checkpoint": args.checkpoint, "the data": args.data})
    if args.background is not None and args.coalitions != "background":
        print("afm pairs: note: --background is used only with --coalitions background; ignored", file=sys.stderr)
    started = time.perf_counter()
    device = resolve_device(args.device)
    checkpoint = read_checkpoint(args.checkpoint, device=device)
    dataset = load_data(args, schema=checkpoint.schema)  # encoded exactly as the model's training data
    check_not_an_input(args.out, {"the data": dataset.location})
    warnings = checkpoint.check_fits(dataset)
    rows = dataset.rows(args.split)  # an empty choice of rows is an error that says how the rows were split
    if checkpoint.task == "binary" and not dataset.is_binary:
        raise ConfigError("this is a binary-task model and the data's labels are not two classes")
    explanation = explain_pairs(checkpoint.model, rows, dataset.schema, dataset.train, rows=args.rows,
                                coalitions=args.coalitions, background=args.background or DEFAULT_BACKGROUND,
                                seed=args.seed, split_name=args.split)
    checks = None  # one pair (two fields): no order of pairs to compare
    if checkpoint.model_config.num_pairs >= 2:
        checks = check_attention(checkpoint.model, explanation, rows, dataset.train, checkpoint.task,
                                 checkpoint.label_range or dataset.label_range)
    erasure = erasure_of(checkpoint.model, explanation, rows, checkpoint.task, seed=args.seed) if checks else None
    table, stability = explanation.table, None
    if args.seeds is not None:
        stability = seeds_compared(checkpoint, dataset, explanation, rows, args)
        table = table.merge(stability.rank_ranges(), on="pair", how="left")
    table = table.to_csv(index=False, lineterminator="\n")
    write_atomic(args.out, table.encode("utf-8"), lambda problem: ConfigError(f"{args.out}: {problem}"))
    for warning in warnings:  # after the work: an error is the one line printed
        print(f"afm: warning: {warning}", file=sys.stderr)
    print(f"afm pairs: {len(explanation.table)} pairs of {len(explanation.rows):,} rows into {args.out}; "
          f"{explanation.describe()}", file=sys.stderr)
    return {"checkpoint": str(args.checkpoint), "model": checkpoint.model_config.model, "task": checkpoint.task,
            "dataset": dataset.name, "split": args.split, "rows": len(explanation.rows),
            "pairs": len(explanation.table), "coalitions": explanation.coalitions,
            "background": explanation.background, "seed": args.seed, "out": str(args.out),
            "shapley_seconds": round(explanation.seconds, 3), "seconds": round(time.perf_counter() - started, 3),
            "strongest_pair": explanation.table["pair"].iloc[0], "strongest_gate": explanation.gate_sentence(),
            "agreement": checks.agreement_sentence(checkpoint.model_config.model) if checks else None,
            "verdict": checks.baselines.verdict() if checks and checks.baselines is not None else None,
            "device": str(device), **beyond_pairs(explanation, erasure),
            **({"stability": stability.summary(), "stability_verdicts": stability.verdicts(),
                "stability_seeds": stability.seeds} if stability is not None else {})}


def seeds_compared(checkpoint, dataset, explanation, rows, args):
    """The checkpoint and `--seeds - 1` retrainings of its recipe, each explained on the same rows
    as the checkpoint was, their rankings compared (afm.analysis.stability)."""
    from afm.analysis.stability import compare_seeds
    from afm.fitting import refit_seeds

    print(f"afm pairs: training {args.seeds - 1} more model(s) with the recipe of {args.checkpoint} and other "
          "seeds", file=sys.stderr)
    models = refit_seeds(checkpoint, dataset, args.seeds)
    return compare_seeds(models, rows, dataset, rows=args.rows, coalitions=args.coalitions,
                         background=args.background or DEFAULT_BACKGROUND, seed=args.seed, split_name=args.split,
                         first=explanation.table)


def beyond_pairs(explanation, erasure) -> dict:
    """The JSON keys `erasure`, `erasure_metric` (measure -> normalised area; {} with one pair, no
    order to compare), `effects` (one object per effect of three fields) and `non_pairwise_share`."""
    from afm.analysis.higher_order import describe_effect

    def rounded(areas: dict | None) -> dict:
        return {name: round(value, 4) for name, value in (areas or {}).items()}

    effects = [{"effect": line["effect"], "fields": line["fields"], "pairs": line["pairs"],
                "strength": round(line["strength"], 4), "gated_pair": line["gated_pair"], "gate": line["gate"],
                "gate_strength": round(line["gate_strength"], 4), "description": describe_effect(line)}
               for _, line in explanation.effects.iterrows()]
    return {"erasure": rounded(erasure.area if erasure else None),
            "erasure_metric": rounded(erasure.metric_area if erasure else None), "effects": effects,
            "non_pairwise_share": round(explanation.non_pairwise_share, 6)}
