"""Command line: `python -m afm train|evaluate|history|download|sample|info|synthesize|convert|encode`.

Contract (the app, the benchmarks and outside scripts rely on it): progress goes to stderr, the
last stdout line is one JSON object, and bad arguments or data exit with code 2 and one clear
line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from afm.errors import AFMError, CheckpointError, ConfigError, is_out_of_memory
from afm.jsonsafe import finite
from afm.numerics import full_speed_floats

# Exit statuses: 0 done (and, for train, the checkpoint written); 1 a bug of ours; 2 bad input,
# nothing written; 3 training ended early (diverged or Ctrl-C) and the best epoch so far WAS
# written; 130 interrupted before anything could be written.
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130
PARTIAL_STOPS = ("diverged", "interrupted")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr, exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _dropouts(text: str) -> tuple[float, float]:
    """`--dropout B` (pooled only) or `--dropout A,B` (attention weights, pooled vector)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected B or A,B with numbers in [0, 1), got {text!r}") from None
    if len(values) == 1:
        values = [0.0, values[0]]
    if len(values) != 2 or not all(0.0 <= v < 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"expected B or A,B with numbers in [0, 1), got {text!r}")
    return values[0], values[1]


def _number(kind, accept, description: str):
    """An argparse type: parse with `kind`, keep finite values that `accept` allows."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}") from None
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda v: v > 0, "a positive integer")
_non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number(float, lambda v: v > 0, "a positive number")
_non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")


def _model_defaults(model: str) -> dict:
    """Defaults of the options not given: the paper's Frappe recipe for that model."""
    from afm.presets import preset

    values = preset("paper", model)
    return {"lr": values["lr"], "dropout": (values["dropout_attention"], values["dropout_pooled"]),
            "l2_attention": values["l2_attention"]}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="afm", description="Attentional Factorization Machines: train, evaluate, inspect.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def data_arguments(sub):
        sub.add_argument("--data", required=True,
                         help="registry name (sample, frappe, ml-tag), a directory of libfm splits, "
                              "a .libfm file or a .csv file")
        sub.add_argument("--data-dir", default=None,
                         help="where registry datasets live (else $AFM_DATA_DIR, ./data, ../shared/data)")
        sub.add_argument("--label", default=None, help="label column of a CSV (default: label/target/... or last)")
        sub.add_argument("--split-seed", type=int, default=0, help="seed of the 70/20/10 split for unsplit data")

    train = commands.add_parser("train", help="train FM, FwFM or AFM and save a checkpoint")
    data_arguments(train)
    train.add_argument("--model", choices=("fm", "fwfm", "afm"), default="afm")
    train.add_argument("--init-from", default=None, metavar="CKPT",
                       help="start from this checkpoint's embeddings and biases (FM pretraining)")
    train.add_argument("--match-fm", action="store_true",
                       help="with --init-from, start AFM's projection at p = P (pairs) so the AFM starts as "
                            "the FM with uniform attention (default: p = 1, as the authors)")
    train.add_argument("--task", choices=("regression", "binary"), default="regression")
    train.add_argument("--k", type=_positive_int, default=256, help="embedding size (paper: 256)")
    train.add_argument("--t", type=_positive_int, default=256, help="attention size (paper: 256)")
    train.add_argument("--epochs", type=_non_negative_int, default=20)
    train.add_argument("--batch-size", type=_positive_int, default=128)
    train.add_argument("--lr", type=_positive_float, default=None, help="default: 0.05 FM/FwFM, 0.015 AFM")
    train.add_argument("--optimizer", choices=("adagrad", "adam"), default="adagrad")
    train.add_argument("--l2-attention", type=_non_negative_float, default=None,
                       help="L2 on AFM's attention W, the authors' lamda_attention (default 16)")
    train.add_argument("--dropout", type=_dropouts, default=None, metavar="A,B",
                       help="dropout on attention weights and on the pooled vector; 1 - the authors' keep "
                            "(default AFM 0,0.2 = keep [1.0, 0.8]; FM 0.5); one number sets the pooled one")
    train.add_argument("--patience", type=_positive_int, default=5,
                       help="early stop after this many epochs without a better validation score")
    train.add_argument("--device", default="auto", help="auto, cpu or cuda")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--deterministic", action="store_true", help="bit-reproducible (slower) kernels")
    train.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                       help="torch.compile the training step (auto: for runs of 1M+ samples on CUDA, or on the CPU "
                            "for batches >= 1024 or distinct pairs, unless the table takes sparse gradients)")
    train.add_argument("--distinct-pairs", choices=("auto", "on", "off"), default="auto",
                       help="FwFM/AFM on one-hot rows: compute each distinct feature pair of a batch once (same "
                            "results; auto: where it is faster, for large k and t or batches) or never (off)")
    train.add_argument("--stream", choices=("auto", "on", "off"), default="auto",
                       help="stream batches from the data in shuffled blocks instead of moving every row to the "
                            "device (auto: for memory-mapped arrays, see `afm encode`)")
    train.add_argument("--out", required=True, metavar="CKPT", help="checkpoint path (.safetensors)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch progress on stderr")

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
    download.add_argument("--timeout", type=_positive_float, default=60.0, help="seconds per connection attempt")

    sample = commands.add_parser("sample", help="generate the bundled synthetic samples")
    sample.add_argument("--name", choices=("all", "sample", "sample-fixed"), default="all")
    sample.add_argument("--out", default=None, help="directory; each sample goes to OUT/NAME/ (default: sample_data/)")
    sample.add_argument("--rows", type=_positive_int, default=None)
    sample.add_argument("--seed", type=int, default=None)
    sample.add_argument("--checkpoints", action="store_true",
                        help="also train the bundled FM, FwFM and AFM sample checkpoints")

    info = commands.add_parser("info", help="summarise a dataset")
    data_arguments(info)

    history = commands.add_parser("history", help="print a checkpoint's per-epoch history")
    history.add_argument("--checkpoint", required=True)
    history.add_argument("--format", choices=("csv", "markdown"), default="csv")
    history.add_argument("--every", type=_positive_int, default=1,
                         help="only every Nth epoch (the first, best and last are always shown)")
    add_explain_commands(commands)
    add_scale_commands(commands, data_arguments)
    return parser


def add_scale_commands(commands, data_arguments) -> None:
    """The paper's ml-tag shape made or converted here, and data written as memory-mapped arrays."""
    from afm.synthetic_mltag import ML_TAG_ROWS

    synthesize = commands.add_parser("synthesize", help="write a synthetic dataset of the paper's ml-tag shape")
    synthesize.add_argument("dataset", choices=("ml-tag",))
    synthesize.add_argument("--rows", type=_positive_int, default=ML_TAG_ROWS,
                            help=f"rows over the three splits (default: the paper's {ML_TAG_ROWS:,})")
    synthesize.add_argument("--dest", required=True, help="directory; files go to DEST/ml-tag/")
    synthesize.add_argument("--seed", type=int, default=2017)

    convert = commands.add_parser("convert", help="turn a MovieLens tags.csv into the paper's ml-tag libfm splits")
    convert.add_argument("dataset", choices=("ml-tag",))
    convert.add_argument("--tags", required=True, help="MovieLens tags.csv (userId,movieId,tag,timestamp)")
    convert.add_argument("--dest", required=True, help="directory; files go to DEST/ml-tag/")
    convert.add_argument("--seed", type=int, default=0, help="seed of the negative tags and the 70/20/10 split")

    encode = commands.add_parser("encode", help="write a dataset once as memory-mapped arrays (data larger than "
                                                "memory; libfm splits are streamed)")
    data_arguments(encode)
    encode.add_argument("--dest", required=True, help="new directory for the arrays")
    encode.add_argument("--schema-from", default=None, metavar="CKPT",
                        help="encode as this model's training data was (its fields, its CSV encoding)")


# --------------------------------------------------------------------------- commands


class _ProgressLog:
    """Per-epoch lines (and a batch counter on a terminal) on stderr."""

    def __init__(self, task: str, stream=None):
        self.stream = stream or sys.stderr
        self.metric = "rmse" if task == "regression" else "auc"
        self.interactive = self.stream.isatty()
        self.last_draw = 0.0

    def on_batch_end(self, epoch: int, batch: int, num_batches: int) -> None:
        now = time.monotonic()
        if self.interactive and (now - self.last_draw > 0.2 or batch == num_batches):
            self.last_draw = now
            width = 30
            filled = int(width * batch / num_batches)
            self.stream.write(f"\repoch {epoch} [{'#' * filled}{'.' * (width - filled)}] {batch}/{num_batches}")
            self.stream.flush()

    def on_epoch_end(self, record: dict) -> None:
        if record["epoch"] == 0:
            return
        if self.interactive:
            self.stream.write("\r" + " " * 60 + "\r")
        m = self.metric
        train_part = f"train_rmse={record['train_rmse']:.4f} " if record.get("train_rmse") is not None else ""
        self.stream.write(
            f"epoch {record['epoch']} [{record.get('seconds', 0):.1f} s, {record.get('samples_per_second', 0):,.0f}"
            f" samples/s] {train_part}valid_{m}={record[f'valid_{m}']:.4f} "
            f"test_{m}={record.get(f'test_{m}', float('nan')):.4f}\n")
        self.stream.flush()


class _FirstInterruptStops:
    """Within the block, a first Ctrl-C asks training to stop after the current batch (so the
    best epoch can be saved); a second one interrupts at once."""

    def __init__(self):
        self._set = False
        self._previous = None

    def is_set(self) -> bool:
        return self._set

    def _handle(self, signum, frame):
        if self._set:
            raise KeyboardInterrupt
        self._set = True
        print("\nafm train: stopping after this batch to save the best epoch (Ctrl-C again to abandon)",
              file=sys.stderr)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _load_data(args, schema=None):
    from afm.data import load_dataset

    return load_dataset(args.data, data_dir=args.data_dir, seed=args.split_seed, label=args.label, schema=schema)


def command_train(args) -> dict | None:
    """`afm train`; launched by torchrun, one process of a training over several (afm.distributed):
    only the first writes the checkpoint and the summary line (None elsewhere)."""
    from afm.distributed import launched_by_torchrun, start, stop

    group = start(args.device) if launched_by_torchrun() else None
    try:
        summary = _train(args, group)
        if group is not None:
            group.barrier()  # all done (the first process has saved) before any leaves the group
        return summary
    finally:
        stop(group)


def _train(args, group) -> dict | None:
    from afm.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from afm.files import check_writable_target
    from afm.models import ModelConfig, build_model
    from afm.train import (
        TrainConfig,
        TrainingDiverged,
        check_training_memory,
        resolve_device,
        rows_on_device,
        seed_everything,
        train_model,
    )

    defaults = _model_defaults(args.model)
    dropout_attention, dropout_pooled = args.dropout or defaults["dropout"]
    if args.model != "afm" and dropout_attention:
        raise ConfigError(f"--dropout A,B: attention dropout A applies to AFM only, not {args.model}")
    if args.match_fm and (args.model != "afm" or not args.init_from):
        raise ConfigError("--match-fm needs --model afm and --init-from an FM checkpoint")
    if group is not None and args.batch_size % group.world_size:
        raise ConfigError(f"--batch-size {args.batch_size} must divide evenly over the {group.world_size} processes")
    out = Path(args.out)
    check_writable_target(out, lambda problem: ConfigError(f"--out {out}: {problem}"))
    train_config = TrainConfig(
        task=args.task, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr if args.lr is not None else defaults["lr"], optimizer=args.optimizer,
        l2_attention=args.l2_attention if args.l2_attention is not None else defaults["l2_attention"],
        patience=args.patience, seed=args.seed, device=args.device, deterministic=args.deterministic,
        compile=args.compile, distinct_pairs=args.distinct_pairs, stream=args.stream)
    resolve_device(args.device)  # fail on a missing GPU before any work
    # An AFM started from an FM must see the data exactly as that FM did (its CSV encoding).
    pretrained = load_checkpoint(args.init_from) if args.init_from else None
    dataset = _load_data(args, schema=pretrained.schema if pretrained else None)
    main = group is None or group.is_main
    # Dropout masks differ between processes; the initial weights come from build_model's own seed.
    seed_everything(args.seed + (group.rank if group is not None else 0), args.deterministic)
    config = ModelConfig(model=args.model, num_features=dataset.schema.num_features,
                         num_fields=dataset.schema.num_fields, embedding_dim=args.k, attention_dim=args.t,
                         dropout_attention=dropout_attention, dropout_pooled=dropout_pooled)
    check_training_memory(config, train_config, rows_on_device(dataset, train_config, group))
    model = build_model(config, seed=args.seed)
    if pretrained is not None:
        for warning in pretrained.check_fits(dataset):
            print(f"afm: warning: {warning}", file=sys.stderr)
        model.init_from(pretrained.model, match_sum=args.match_fm)
    quiet = args.quiet or not main
    callbacks = [] if quiet else [_ProgressLog(args.task)]
    if not quiet:
        processes = f", {group.world_size} processes ({group.backend})" if group is not None else ""
        print(f"afm: {args.model} on {dataset.name} ({len(dataset.train):,} train rows, "
              f"{dataset.schema.num_fields} fields, {dataset.schema.num_features:,} features), "
              f"k={args.k}" + (f", t={args.t}" if args.model == "afm" else "") + processes, file=sys.stderr)
    diverged = None
    with _FirstInterruptStops() as interrupt:
        try:
            result = train_model(model, dataset, train_config, callbacks=callbacks, should_stop=interrupt.is_set,
                                 group=group)
        except TrainingDiverged as exc:
            result, diverged = exc.result, str(exc)
    stop_reason = "diverged" if diverged else "interrupted" if result.stop_reason == "stop_requested" \
        else result.stop_reason
    if stop_reason in PARTIAL_STOPS and result.best_epoch == 0:
        if diverged:
            raise ConfigError(f"{diverged}. Nothing was written: no epoch did better than the start")
        raise KeyboardInterrupt
    if not main:
        return None  # the first process writes the checkpoint; every process holds the same model
    checkpoint = Checkpoint.from_training(result, dataset, init_from=str(args.init_from) if args.init_from else None,
                                          match_fm=args.match_fm, world_size=result.world_size)
    checkpoint.train_config["stop_reason"] = stop_reason
    save_checkpoint(out, checkpoint)
    if stop_reason in PARTIAL_STOPS:
        why = diverged or "interrupted (Ctrl-C)"
        print(f"afm train: {why}; the best epoch so far ({result.best_epoch}) was saved to {out}", file=sys.stderr)
    best = result.best
    summary = {"model": args.model, "task": args.task, "dataset": dataset.name,
               "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
               "stop_reason": stop_reason}
    summary.update({key: value for key, value in best.items() if key.startswith(("valid_", "test_"))})
    summary.update({"seconds": round(result.seconds, 3), "samples_per_second": round(result.samples_per_second, 1),
                    "device": result.device, "compiled": result.compiled, "world_size": result.world_size,
                    "streamed": result.streamed, "distinct_pairs": result.distinct_pairs, "checkpoint": str(out)})
    return summary


def command_evaluate(args) -> dict:
    import numpy as np

    from afm.checkpoint import load_checkpoint
    from afm.data import SPLITS
    from afm.metrics import evaluate_predictions
    from afm.train import predict_rows, resolve_device

    device = resolve_device(args.device)
    checkpoint = load_checkpoint(args.checkpoint, device=device)
    dataset = _load_data(args, schema=checkpoint.schema)  # encoded exactly as the model's training data
    task = checkpoint.task
    if task == "binary" and not dataset.is_binary:
        raise ConfigError("this is a binary-task model and the data's labels are not two classes")
    for warning in checkpoint.check_fits(dataset):
        print(f"afm: warning: {warning}", file=sys.stderr)
    label_range = checkpoint.label_range or dataset.label_range
    # A chunk of rows at a time: memory-mapped data larger than memory is scored too.
    names = SPLITS if args.split == "all" else (args.split,)
    predictions = np.concatenate([predict_rows(checkpoint.model, dataset.splits[n], device) for n in names])
    labels = np.concatenate([dataset.splits[n].labels for n in names])
    metrics = evaluate_predictions(predictions, labels, task, label_range)
    return {"model": checkpoint.model_config.model, "task": task, "dataset": dataset.name, "split": args.split,
            **metrics, "rows": len(labels), "device": str(device)}


def command_download(args) -> dict:
    from afm.download import download_dataset

    directory = download_dataset(args.dataset, args.dest, base_url=args.base_url, timeout=args.timeout)
    return {"dataset": args.dataset, "directory": str(directory)}


def command_sample(args) -> dict:
    from afm.paths import sample_dir
    from afm.synthetic import SAMPLES, write_sample

    names = list(SAMPLES) if args.name == "all" else [args.name]
    summary = {"samples": {}}
    for name in names:
        config = SAMPLES[name]
        if args.rows is not None:
            config.num_rows = args.rows
        if args.seed is not None:
            config.seed = args.seed
        directory = write_sample(Path(args.out or sample_dir()) / name, config)
        made = {"directory": str(directory), "rows": config.num_rows}
        if args.checkpoints:
            from afm.bundled import train_sample_checkpoints

            made["checkpoints"] = {m: str(p) for m, p in train_sample_checkpoints(name, directory).items()}
        summary["samples"][name] = made
    return summary


def command_info(args) -> dict:
    return _load_data(args).summary()


def command_history(args) -> dict:
    """The table goes to stdout before the JSON summary line."""
    import pandas as pd

    from afm.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(args.checkpoint)
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


# --------------------------------------------------------------------------- predict, report, import


def _sizes(text: str) -> list[int]:
    """`--field-dims 957,4082,7`: positive integers."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 5,4,3 (positive integers), got {text!r}") from None
    if len(values) < 2 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected at least two positive sizes like 5,4,3, got {text!r}")
    return values


def add_explain_commands(commands) -> None:
    """`predict`, `report` and `import`: scoring, explaining and sharing a model, and models
    trained with other libraries."""
    predict = commands.add_parser("predict", help="score (and explain) every row of a CSV or libfm file")
    predict.add_argument("--checkpoint", required=True)
    predict.add_argument("--data", required=True, metavar="FILE",
                         help="a .csv file (the label column may be absent) or a libfm file (labels optional)")
    predict.add_argument("--out", required=True, metavar="OUT.csv", help="the scored rows, in the input's order")
    predict.add_argument("--explain", type=_non_negative_int, default=0, metavar="N",
                         help="also each row's N pair terms largest in size (pair, contribution, attention)")
    predict.add_argument("--label", default=None, help="label column of a CSV (default: the model's)")
    predict.add_argument("--chunk-rows", type=_positive_int, default=None,
                         help="rows read, scored and written at a time (default 50,000)")
    predict.add_argument("--device", default="auto", help="auto, cpu or cuda")
    predict.add_argument("--quiet", action="store_true", help="no progress on stderr")

    report = commands.add_parser("report", help="write a checkpoint's report: one HTML file that opens offline")
    report.add_argument("--checkpoint", required=True)
    report.add_argument("--data", default=None,
                        help="rows to analyse (as for train); default: the checkpoint's own dataset when found")
    report.add_argument("--data-dir", default=None, help="where registry datasets live")
    report.add_argument("--label", default=None, help="label column of a CSV (default: the model's)")
    report.add_argument("--split-seed", type=int, default=0, help="seed of the 70/20/10 split for unsplit data")
    report.add_argument("--split", choices=("train", "valid", "test", "all"), default="test",
                        help="which rows the attention analysis uses")
    report.add_argument("--coupling", action="store_true", help="add the gradient coupling summary")
    report.add_argument("--out", required=True, metavar="REPORT.html")

    importer = commands.add_parser("import", help="turn an AFM or FM trained with torchfm or DeepCTR-Torch into a "
                                                  "checkpoint")
    libraries = importer.add_subparsers(dest="library", required=True, parser_class=_Parser)
    torchfm = libraries.add_parser("torchfm", help="torchfm 0.7.0 AttentionalFactorizationMachineModel or "
                                                   "FactorizationMachineModel")
    torchfm.add_argument("--weights", required=True, help="its state_dict: .safetensors, or .pt read as weights only")
    torchfm.add_argument("--field-dims", required=True, type=_sizes, metavar="D1,D2,...",
                         help="the field_dims the model was built with")
    torchfm.add_argument("--field-names", default=None, metavar="A,B,...", help="names of the fields, in order")
    deepctr = libraries.add_parser("deepctr", help="DeepCTR-Torch 0.3.0 AFM (use_attention=True, or False: an FM)")
    deepctr.add_argument("--weights", required=True, help="its state_dict: .safetensors, or .pt read as weights only")
    deepctr.add_argument("--fields", default=None, metavar="A,B,...",
                         help="the SparseFeat names in the order of your rows' columns (default: the weights' order)")
    deepctr.add_argument("--task", choices=("binary", "regression"), default="binary",
                         help="the task the model was built with (binary: it ends in a sigmoid)")
    for sub in (torchfm, deepctr):
        sub.add_argument("--features", default=None, metavar="TSV",
                         help="a features.tsv (feature, field, value) naming every feature")
        sub.add_argument("--out", required=True, metavar="CKPT", help="checkpoint path (.safetensors)")


class _PredictProgress:
    """'afm predict: 150,000 rows (40%)' on stderr, at most twice a second."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.last = 0.0

    def __call__(self, rows: int, bytes_read: int, total_bytes: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.5:
            return
        self.last = now
        share = f" ({min(bytes_read / total_bytes, 1):.0%} of the file)" if total_bytes and bytes_read else ""
        self.stream.write(f"afm predict: {rows:,} rows{share}\n")
        self.stream.flush()


def command_predict(args) -> dict:
    from afm.checkpoint import load_checkpoint
    from afm.predict import predict_file
    from afm.train import resolve_device

    checkpoint = load_checkpoint(args.checkpoint, device=resolve_device(args.device))
    chunking = {"chunk_rows": args.chunk_rows} if args.chunk_rows else {}
    summary = predict_file(checkpoint, args.data, args.out, explain=args.explain, label=args.label, **chunking,
                           progress=None if args.quiet else _PredictProgress())
    if not args.quiet:
        print(f"afm predict: {summary['rows']:,} rows scored into {args.out}", file=sys.stderr)
    return {"checkpoint": str(args.checkpoint), **summary}


def command_report(args) -> dict:
    from afm.checkpoint import load_checkpoint
    from afm.report import report_dataset, write_report

    checkpoint = load_checkpoint(args.checkpoint)
    dataset, note = report_dataset(checkpoint, args.data, data_dir=args.data_dir, label=args.label,
                                   seed=args.split_seed)
    if note:
        print(f"afm report: {note}", file=sys.stderr)
    return {"checkpoint": str(args.checkpoint),
            **write_report(args.out, checkpoint, dataset, split=args.split, coupling=args.coupling)}


def command_import(args) -> dict:
    from afm.checkpoint import save_checkpoint
    from afm.files import check_writable_target
    from afm.importers import import_deepctr, import_torchfm
    from afm.importers.weights import parse_names

    out = Path(args.out)
    check_writable_target(out, lambda problem: ConfigError(f"--out {out}: {problem}"))
    if args.library == "torchfm":
        checkpoint = import_torchfm(args.weights, args.field_dims, parse_names(args.field_names), args.features)
    else:
        checkpoint = import_deepctr(args.weights, parse_names(args.fields), args.task, args.features)
    save_checkpoint(out, checkpoint)
    config = checkpoint.model_config
    return {"library": args.library, "imported_from": checkpoint.train_config["imported_from"],
            "model": config.model, "task": checkpoint.task, "fields": list(checkpoint.schema.field_names),
            "features": config.num_features, "k": config.embedding_dim,
            **({"t": config.attention_dim} if config.model == "afm" else {}), "checkpoint": str(out)}


def command_synthesize(args) -> dict:
    from afm.synthetic_mltag import MlTagConfig, write_ml_tag

    return write_ml_tag(args.dest, MlTagConfig(num_rows=args.rows, seed=args.seed))


def command_convert(args) -> dict:
    from afm.data.movielens import convert_tags

    return convert_tags(args.tags, args.dest, seed=args.seed)


def command_encode(args) -> dict:
    from afm.checkpoint import load_checkpoint
    from afm.data.registry import encode_dataset

    schema = load_checkpoint(args.schema_from).schema if args.schema_from else None
    dataset = encode_dataset(args.data, args.dest, data_dir=args.data_dir, seed=args.split_seed, label=args.label,
                             schema=schema)
    return {"directory": args.dest, **dataset.summary()}


COMMANDS = {"train": command_train, "evaluate": command_evaluate, "download": command_download,
            "sample": command_sample, "info": command_info, "history": command_history,
            "synthesize": command_synthesize, "convert": command_convert, "encode": command_encode,
            "predict": command_predict, "report": command_report, "import": command_import}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with full_speed_floats():  # the whole command: no subnormal arithmetic (afm.numerics)
            summary = COMMANDS[args.command](args)
        if summary is None:  # a process of a torchrun training other than the first: nothing to say
            return 0
    except AFMError as exc:
        print(f"afm {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"afm {args.command}: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, details on request
        if is_out_of_memory(exc):
            print(f"afm {args.command}: error: out of memory; lower --batch-size, --k or --t (or use the CPU)",
                  file=sys.stderr)
            return EXIT_USAGE
        if os.environ.get("AFM_DEBUG"):
            traceback.print_exc()
        print(f"afm {args.command}: internal error: {type(exc).__name__}: {str(exc)[:300]} "
              "(set AFM_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    try:
        print(json.dumps(finite(summary), allow_nan=False))
        sys.stdout.flush()
    except BrokenPipeError:  # `... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_PARTIAL if summary.get("stop_reason") in PARTIAL_STOPS else 0


def main_exit() -> None:
    """The `afm` console script."""
    sys.exit(main())
