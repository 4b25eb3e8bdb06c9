"""`afm train`: the options (the paper's Frappe recipe by default), progress on stderr, a first
Ctrl-C or SIGTERM that saves the best epoch, and the summary line; under torchrun one process
of a training over several."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

from afm.cli.arguments import (
    data_arguments,
    dropouts,
    load_data,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed,
)
from afm.errors import ConfigError


def add_commands(commands) -> dict:
    train = commands.add_parser("train", help="train FM, FwFM or AFM and save a checkpoint")
    data_arguments(train)
    train.add_argument("--model", choices=("fm", "fwfm", "afm"), default="afm")
    train.add_argument("--init-from", default=None, metavar="CKPT",
                       help="start from this checkpoint's embeddings and biases (FM pretraining)")
    train.add_argument("--match-fm", action="store_true",
                       help="with --init-from, start AFM's projection at p = P (pairs) so the AFM starts as "
                            "the FM with uniform attention (default: p = 1, as the authors)")
    train.add_argument("--task", choices=("regression", "binary"), default="regression")
    train.add_argument("--k", type=positive_int, default=256, help="embedding size (paper: 256)")
    train.add_argument("--t", type=positive_int, default=256, help="attention size (paper: 256)")
    train.add_argument("--epochs", type=non_negative_int, default=20)
    train.add_argument("--batch-size", type=positive_int, default=128)
    train.add_argument("--lr", type=positive_float, default=None, help="default: 0.05 FM/FwFM, 0.015 AFM")
    train.add_argument("--optimizer", choices=("adagrad", "adam"), default="adagrad")
    train.add_argument("--l2-attention", type=non_negative_float, default=None,
                       help="L2 on AFM's attention W, the authors' lamda_attention (default 16)")
    train.add_argument("--dropout", type=dropouts, default=None, metavar="A,B",
                       help="dropout on attention weights and on the pooled vector; 1 - the authors' keep "
                            "(default AFM 0,0.2 = keep [1.0, 0.8]; FM 0.5); one number sets the pooled one")
    train.add_argument("--patience", type=positive_int, default=5,
                       help="early stop after this many epochs without a better validation score")
    train.add_argument("--device", default="auto", help="auto, cpu or cuda")
    train.add_argument("--seed", type=seed, default=0)
    train.add_argument("--deterministic", action="store_true", help="bit-reproducible (slower) kernels")
    train.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                       help="torch.compile the training step (auto: for runs of 1M+ samples on CUDA; never on the "
                            "CPU, where whole epochs were no faster compiled)")
    train.add_argument("--distinct-pairs", choices=("auto", "on", "off"), default="auto",
                       help="FwFM/AFM on one-hot rows: compute each distinct feature pair of a batch once (same "
                            "results; auto: where it is faster, for large k and t or batches) or never (off)")
    train.add_argument("--stream", choices=("auto", "on", "off"), default="auto",
                       help="stream batches from the data in shuffled blocks instead of moving every row to the "
                            "device (auto: for memory-mapped arrays, see `afm encode`)")
    train.add_argument("--out", required=True, metavar="CKPT", help="checkpoint path (.safetensors)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch progress on stderr")

    return {"train": command_train}


def _model_defaults(model: str) -> dict:
    """Defaults of the options not given: the paper's Frappe recipe for that model."""
    from afm.presets import preset

    values = preset("paper", model)
    return {"lr": values["lr"], "dropout": (values["dropout_attention"], values["dropout_pooled"]),
            "l2_attention": values["l2_attention"]}


class _ProgressLog:
    """Per-epoch lines (and a batch counter on a terminal) on stderr."""

    def __init__(self, task: str, header: str, stream=None):
        self.stream = stream or sys.stderr
        self.metric = "rmse" if task == "regression" else "auc"
        self.header = header  # said once the trainer's checks have passed, with the path it takes
        self.interactive = self.stream.isatty()
        self.last_draw = 0.0

    def on_train_start(self, path: dict) -> None:
        taken = [name.replace("_", " ") for name in ("distinct_pairs", "sparse_gradients", "compiled")
                 if path.get(name)]
        self.stream.write(f"{self.header}" + (f"; {', '.join(taken)}" if taken else "") + "\n")
        self.stream.flush()

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
    """Within the block, a first Ctrl-C or SIGTERM (what `timeout`, schedulers and containers
    send) asks training to stop after the current batch, so that the best epoch is saved; a
    second one interrupts at once."""

    SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict = {}

    def is_set(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum, frame):
        if self.signal_name is not None:
            raise KeyboardInterrupt
        self.signal_name = self.SIGNALS.get(signum, str(signum))
        print(f"\nafm train: {self.signal_name}: stopping after this batch to save the best epoch (again to "
              "abandon)", file=sys.stderr)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc_info):
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        return False


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
    from afm.checkpoint import save_checkpoint
    from afm.cli.arguments import read_checkpoint
    from afm.files import check_not_an_input, check_writable_target
    from afm.fit import fit
    from afm.models import ModelConfig
    from afm.train import StopReason, TrainConfig

    defaults = _model_defaults(args.model)
    dropout_attention, dropout_pooled = args.dropout or defaults["dropout"]
    if args.model != "afm" and dropout_attention:
        raise ConfigError(f"--dropout A,B: attention dropout A applies to AFM only, not {args.model}")
    if args.match_fm and (args.model != "afm" or not args.init_from):
        raise ConfigError("--match-fm needs --model afm and --init-from an FM checkpoint")
    out = Path(args.out)
    check_writable_target(out, lambda problem: ConfigError(f"--out {out}: {problem}"))
    check_not_an_input(out, {"the data": args.data, "the checkpoint trained from": args.init_from})
    train_config = TrainConfig(
        task=args.task, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr if args.lr is not None else defaults["lr"], optimizer=args.optimizer,
        l2_attention=args.l2_attention if args.l2_attention is not None else defaults["l2_attention"],
        patience=args.patience, seed=args.seed, device=args.device, deterministic=args.deterministic,
        compile=args.compile, distinct_pairs=args.distinct_pairs, stream=args.stream)
    # An AFM started from an FM must see the data exactly as that FM did (its CSV encoding).
    pretrained = read_checkpoint(args.init_from) if args.init_from else None
    dataset = load_data(args, schema=pretrained.schema if pretrained else None)
    check_not_an_input(out, {"the data": dataset.location})  # a registry name's folder, found now
    main = group is None or group.is_main
    config = ModelConfig(model=args.model, num_features=dataset.schema.num_features,
                         num_fields=dataset.schema.num_fields, embedding_dim=args.k, attention_dim=args.t,
                         dropout_attention=dropout_attention, dropout_pooled=dropout_pooled)
    for warning in pretrained.check_fits(dataset) if pretrained is not None else ():
        print(f"afm: warning: {warning}", file=sys.stderr)
    quiet = args.quiet or not main
    processes = f", {group.world_size} processes ({group.backend})" if group is not None else ""
    header = (f"afm: {args.model} on {dataset.name} ({len(dataset.train):,} train rows, "
              f"{dataset.schema.num_fields} fields, {dataset.schema.num_features:,} features), "
              f"k={args.k}" + (f", t={args.t}" if args.model == "afm" else "") + processes)
    with _FirstInterruptStops() as interrupt:
        fitted = fit(config, train_config, dataset, init_from=pretrained.model if pretrained else None,
                     init_from_name=str(args.init_from) if args.init_from else None, match_fm=args.match_fm,
                     callbacks=[] if quiet else [_ProgressLog(args.task, header)], should_stop=interrupt.is_set,
                     group=group)
    result = fitted.result
    if result.stop_reason.partial and result.best_epoch == 0:
        if result.stop_reason is StopReason.DIVERGED:
            raise ConfigError(f"{result.problem}. Nothing was written: no epoch did better than the start")
        raise KeyboardInterrupt
    if not main:
        return None  # the first process writes the checkpoint; every process holds the same model
    save_checkpoint(out, fitted.checkpoint)
    if result.stop_reason.partial:
        why = result.problem or f"stopped ({interrupt.signal_name})"
        print(f"afm train: {why}; the best epoch so far ({result.best_epoch}) was saved to {out}", file=sys.stderr)
    elif result.untrained:  # saved, but never presented as a trained model
        print(f"afm train: warning: {result.problem}", file=sys.stderr)
    summary = {"model": args.model, "task": args.task, "dataset": dataset.name,
               "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
               "stop_reason": str(result.stop_reason), "untrained": result.untrained}
    summary.update({key: value for key, value in result.best.items() if key.startswith(("valid_", "test_"))})
    summary.update({"seconds": round(result.seconds, 3), "samples_per_second": round(result.samples_per_second, 1),
                    "device": result.device, "compiled": result.compiled, "world_size": result.world_size,
                    "streamed": result.streamed, "distinct_pairs": result.distinct_pairs, "checkpoint": str(out)})
    return summary


