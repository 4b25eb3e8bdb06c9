"""Scoring, explaining and sharing a model: `predict`, `report`, and `import` of models trained
with torchfm or DeepCTR-Torch."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from afm.cli.arguments import Parser, non_negative_int, positive_int, seed, sizes
from afm.errors import ConfigError


def add_commands(commands) -> dict:
    """`predict`, `report` and `import`."""
    predict = commands.add_parser("predict", help="score (and explain) every row of a CSV or libfm file")
    predict.add_argument("--checkpoint", required=True)
    predict.add_argument("--data", required=True, metavar="FILE",
                         help="a .csv file (the label column may be absent) or a libfm file (labels optional)")
    predict.add_argument("--out", required=True, metavar="OUT.csv", help="the scored rows, in the input's order")
    predict.add_argument("--explain", type=non_negative_int, default=0, metavar="N",
                         help="also each row's N pair terms largest in size (pair, contribution, attention)")
    predict.add_argument("--explain-by", choices=("contribution", "shapley"), default="contribution",
                         help="rank each row's pairs by |contribution| (default) or by |Shapley interaction index| "
                              "(exact, absent fields; adds shapley_r)")
    predict.add_argument("--label", default=None, help="label column of a CSV (default: the model's)")
    predict.add_argument("--chunk-rows", type=positive_int, default=None,
                         help="rows read, scored and written at a time (default 50,000)")
    predict.add_argument("--allow-unseen", action="store_true",
                         help="score a file even when a column holds no value seen in training (every cell of "
                              "it unknown); otherwise an error")
    predict.add_argument("--drop-inputs", action="store_true",
                         help="leave out a CSV's own columns (by default each scored row keeps them, before the "
                              "scores)")
    predict.add_argument("--device", default="auto", help="auto, cpu or cuda")
    predict.add_argument("--quiet", action="store_true", help="no progress on stderr")

    report = commands.add_parser("report", help="write a checkpoint's report: one HTML file that opens offline")
    report.add_argument("--checkpoint", required=True)
    report.add_argument("--data", default=None,
                        help="rows to analyse (as for train); default: the checkpoint's own dataset when found")
    report.add_argument("--data-dir", default=None, help="where registry datasets live")
    report.add_argument("--label", default=None, help="label column of a CSV (default: the model's)")
    report.add_argument("--split-seed", type=seed, default=0, help="seed of the 70/20/10 split for unsplit data")
    report.add_argument("--split", choices=("train", "valid", "test", "all"), default="test",
                        help="which rows the attention analysis uses")
    report.add_argument("--coupling", action="store_true", help="add the gradient coupling summary")
    report.add_argument("--out", required=True, metavar="REPORT.html")

    importer = commands.add_parser("import", help="turn an AFM or FM trained with torchfm or DeepCTR-Torch into a "
                                                  "checkpoint")
    libraries = importer.add_subparsers(dest="library", required=True, parser_class=Parser)
    torchfm = libraries.add_parser("torchfm", help="torchfm 0.7.0 AttentionalFactorizationMachineModel or "
                                                   "FactorizationMachineModel")
    torchfm.add_argument("--weights", required=True, help="its state_dict: .safetensors, or .pt read as weights only")
    torchfm.add_argument("--field-dims", required=True, type=sizes, metavar="D1,D2,...",
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
    return {"predict": command_predict, "report": command_report, "import": command_import}


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
    from afm.cli.arguments import read_checkpoint
    from afm.files import check_not_an_input
    from afm.predict import predict_file, unseen_warnings
    from afm.training_plan import resolve_device

    check_not_an_input(args.out, {"the checkpoint": args.checkpoint})
    checkpoint = read_checkpoint(args.checkpoint, device=resolve_device(args.device))
    chunking = {"chunk_rows": args.chunk_rows} if args.chunk_rows else {}
    summary = predict_file(checkpoint, args.data, args.out, explain=args.explain, label=args.label, **chunking,
                           progress=None if args.quiet else _PredictProgress(), explain_by=args.explain_by,
                           allow_unseen=args.allow_unseen, keep_inputs=not args.drop_inputs)
    for line in unseen_warnings(summary["unseen_cells"], summary["rows"]):  # said even with --quiet
        print(f"afm predict: warning: {line}", file=sys.stderr)
    if not args.quiet:
        print(f"afm predict: {summary['rows']:,} rows scored into {args.out}", file=sys.stderr)
    return {"checkpoint": str(args.checkpoint), **summary}


def command_report(args) -> dict:
    from afm.cli.arguments import read_checkpoint
    from afm.files import check_not_an_input
    from afm.report import report_dataset, write_report

    check_not_an_input(args.out, {"the checkpoint": args.checkpoint, "the data": args.data})
    checkpoint = read_checkpoint(args.checkpoint)
    dataset, note = report_dataset(checkpoint, args.data, data_dir=args.data_dir, label=args.label,
                                   seed=args.split_seed)
    if dataset is not None:
        check_not_an_input(args.out, {"the data": dataset.location})
    if note:
        print(f"afm report: {note}", file=sys.stderr)
    return {"checkpoint": str(args.checkpoint),
            **write_report(args.out, checkpoint, dataset, split=args.split, coupling=args.coupling)}


def command_import(args) -> dict:
    from afm.checkpoint import save_checkpoint
    from afm.files import check_not_an_input, check_writable_target
    from afm.importers import import_deepctr, import_torchfm
    from afm.importers.weights import parse_names

    out = Path(args.out)
    check_writable_target(out, lambda problem: ConfigError(f"--out {out}: {problem}"))
    check_not_an_input(out, {"the weights": args.weights, "the features table": args.features})
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


