"""The commands about data and saved models: `evaluate`, `history`, `info`, `download`, `sample`,
and the ml-tag shape made (`synthesize`), converted (`convert`) or written as memory-mapped
arrays (`encode`)."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

from afm.cli.arguments import data_arguments, load_data, positive_float, positive_int, seed
from afm.errors import CheckpointError


def add_commands(commands) -> dict:
    evaluate = commands.add_parser("evaluate", help="score a checkpoint on a split")
    evaluate.add_argument("--checkpoint", required=True)
    data_arguments(evaluate)
    evaluate.add_argument("--split", choices=("train", "valid", "test", "all"), default="test",
                          help="which rows to score (all: every row of the data)")
    evaluate.add_argument("--device", default="auto")

    download = commands.add_parser("download", help="fetch a public dataset (the AFM authors' copies)")
    download.add_argument("dataset", choices=("frappe", "ml-tag"))
    download.add_argument("--dest", required=True, help="directory; files go to DEST/DATASET/")
    download.add_argument("--base-url", default=None, help="mirror to download from instead of the default")
    download.add_argument("--timeout", type=positive_float, default=60.0,
                          help="seconds any one read or connection may wait")
    download.add_argument("--deadline", type=positive_float, default=None, metavar="SECONDS",
                          help="seconds one file may take in all (default: 30 x --timeout)")

    sample = commands.add_parser("sample", help="generate the bundled synthetic samples")
    sample.add_argument("--name", choices=("all", "sample", "sample-fixed"), default="all")
    sample.add_argument("--out", default=None, help="directory; each sample goes to OUT/NAME/ (default: sample_data/)")
    sample.add_argument("--rows", type=positive_int, default=None)
    sample.add_argument("--seed", type=seed, default=None)
    sample.add_argument("--checkpoints", action="store_true",
                        help="also train the bundled FM, FwFM and AFM sample checkpoints")

    info = commands.add_parser("info", help="summarise a dataset")
    data_arguments(info)

    history = commands.add_parser("history", help="print a checkpoint's per-epoch history")
    history.add_argument("--checkpoint", required=True)
    history.add_argument("--format", choices=("csv", "markdown"), default="csv")
    history.add_argument("--every", type=positive_int, default=1,
                         help="only every Nth epoch (the first, best and last are always shown)")
    from afm.samples.mltag_shape import ML_TAG_ROWS

    synthesize = commands.add_parser("synthesize", help="write a synthetic dataset of the paper's ml-tag shape")
    synthesize.add_argument("dataset", choices=("ml-tag",))
    synthesize.add_argument("--rows", type=positive_int, default=ML_TAG_ROWS,
                            help=f"rows over the three splits (default: the paper's {ML_TAG_ROWS:,})")
    synthesize.add_argument("--dest", required=True, help="directory; files go to DEST/ml-tag/")
    synthesize.add_argument("--seed", type=seed, default=2017)

    convert = commands.add_parser("convert", help="turn a MovieLens tags.csv into the paper's ml-tag libfm splits")
    convert.add_argument("dataset", choices=("ml-tag",))
    convert.add_argument("--tags", required=True, help="MovieLens tags.csv (userId,movieId,tag,timestamp)")
    convert.add_argument("--dest", required=True, help="directory; files go to DEST/ml-tag/")
    convert.add_argument("--seed", type=seed, default=0, help="seed of the negative tags and the 70/20/10 split")

    encode = commands.add_parser("encode", help="write a dataset once as memory-mapped arrays (data larger than "
                                                "memory; libfm splits are streamed)")
    data_arguments(encode)
    encode.add_argument("--dest", required=True, help="new directory for the arrays")
    encode.add_argument("--schema-from", default=None, metavar="CKPT",
                        help="encode as this model's training data was (its fields, its CSV encoding)")
    return {"evaluate": command_evaluate, "download": command_download, "sample": command_sample,
            "info": command_info, "history": command_history, "synthesize": command_synthesize,
            "convert": command_convert, "encode": command_encode}


def command_evaluate(args) -> dict:
    from afm.cli.arguments import read_checkpoint
    from afm.training_plan import resolve_device

    device = resolve_device(args.device)
    checkpoint = read_checkpoint(args.checkpoint, device=device)
    dataset = load_data(args, schema=checkpoint.schema)  # encoded exactly as the model's training data
    warnings = checkpoint.check_fits(dataset)
    metrics = checkpoint.evaluate(dataset, args.split, device)
    for warning in warnings:  # after the score: an error is the one line printed
        print(f"afm: warning: {warning}", file=sys.stderr)
    return {"model": checkpoint.model_config.model, "task": checkpoint.task, "dataset": dataset.name,
            "split": args.split, **metrics, "device": str(device)}


def command_download(args) -> dict:
    from afm.download import download_dataset

    directory = download_dataset(args.dataset, args.dest, base_url=args.base_url, timeout=args.timeout,
                                 deadline=args.deadline)
    return {"dataset": args.dataset, "directory": str(directory)}


def command_sample(args) -> dict:
    from afm.paths import sample_dir
    from afm.samples.planted import SAMPLES, write_sample

    names = list(SAMPLES) if args.name == "all" else [args.name]
    summary = {"samples": {}}
    for name in names:
        # A copy: the module's configs stay as they are for the next command in this process.
        given = {"num_rows": args.rows, "seed": args.seed}
        config = dataclasses.replace(SAMPLES[name], **{key: value for key, value in given.items() if value is not None})
        directory = write_sample(Path(args.out or sample_dir()) / name, config)
        made = {"directory": str(directory), "rows": config.num_rows}
        if args.checkpoints:
            from afm.samples.checkpoints import train_sample_checkpoints

            made["checkpoints"] = {m: str(p) for m, p in train_sample_checkpoints(name, directory).items()}
        summary["samples"][name] = made
    return summary


def command_info(args) -> dict:
    return load_data(args).summary()


def command_history(args) -> dict:
    """The table goes to stdout before the JSON summary line."""
    import pandas as pd

    from afm.cli.arguments import read_checkpoint

    checkpoint = read_checkpoint(args.checkpoint)
    if not checkpoint.history:
        raise CheckpointError(args.checkpoint, "has no training history (it was imported or made by hand)")
    table = pd.DataFrame(checkpoint.history)
    columns = [c for c in ("epoch", "train_rmse", "valid_rmse", "test_rmse", "valid_auc", "valid_logloss",
                           "test_auc", "test_logloss", "seconds", "samples_per_second") if c in table]
    table = table[columns]
    keep = (table["epoch"] % args.every == 0) | (table["epoch"] == checkpoint.best_epoch)
    keep.iloc[[0, -1]] = True
    table = table[keep]
    if args.format == "markdown":
        header = "| " + " | ".join(columns) + " |"
        rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
        print("\n".join([header, "|" + "---|" * len(columns), *rows]))
    else:
        print(table.to_csv(index=False), end="")
    return {"checkpoint": str(args.checkpoint), "epochs": int(max(r["epoch"] for r in checkpoint.history)),
            "best_epoch": checkpoint.best_epoch}


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4f}"
    return str(value)


def command_synthesize(args) -> dict:
    from afm.samples.mltag_shape import MlTagConfig, write_ml_tag

    return write_ml_tag(args.dest, MlTagConfig(num_rows=args.rows, seed=args.seed))


def command_convert(args) -> dict:
    from afm.data.movielens import convert_tags

    return convert_tags(args.tags, args.dest, seed=args.seed)


def command_encode(args) -> dict:
    from afm.cli.arguments import read_checkpoint
    from afm.data.registry import encode_dataset

    schema = read_checkpoint(args.schema_from).schema if args.schema_from else None
    dataset = encode_dataset(args.data, args.dest, data_dir=args.data_dir, seed=args.split_seed, label=args.label,
                             schema=schema)
    return {"directory": args.dest, **dataset.summary()}


