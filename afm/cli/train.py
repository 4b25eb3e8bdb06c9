"""`afm train`: a flag for every setting of afm.recipe.Recipe (by default `--preset auto`: sized to
the data, the paper's recipe on Frappe and ml-tag, afm.sizing; the choice and why on stderr),
progress on stderr, a first Ctrl-C or SIGTERM that saves the best epoch, and the summary
line; under torchrun one process of a training over several."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

from afm.cli.arguments import data_arguments, load_data, recipe_arguments, recipe_from, reference_argument
from afm.errors import ConfigError


def add_commands(commands) -> dict:
    train = commands.add_parser("train", help="train FM, FwFM or AFM and save a checkpoint")
    data_arguments(train)
    recipe_arguments(train)
    train.add_argument("--out", required=True, metavar="CKPT", help="checkpoint path (.safetensors)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch progress on stderr")
    reference_argument(train)

    return {"train": command_train}


class _ProgressLog:
    """Per-epoch lines (and a batch counter on a terminal) on stderr."""

    def __init__(self, task: str, header: str, stream=None):
        self.stream = stream or sys.stderr
        self.metric = "rmse" if task == "regression" else "auc"
        self.header = header  # said once the trainer's checks have passed, with the path it takes
        self.interactive = self.stream.isatty()
        self.last_draw = 0.0

    def on_train_start(self, path: dict) -> None:
        taken = [name.replace("_", " ") for name in ("distinct_pairs", "sparse_gradients", "compiled",
                                                     "bfloat16_attention") if path.get(name)]
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

    recipe = recipe_from(args)
    group = start(recipe.device) if launched_by_torchrun() else None
    try:
        summary = _train(args, recipe, group)
        if group is not None:
            group.barrier()  # all done (the first process has saved) before any leaves the group
        return summary
    finally:
        stop(group)


def _train(args, recipe, group) -> dict | None:
    from afm.checkpoint import save_checkpoint
    from afm.cli.arguments import auto_from, read_checkpoint
    from afm.files import check_not_an_input, check_writable_target
    from afm.fitting import fit_recipe
    from afm.train import StopReason

    out = Path(args.out)
    check_writable_target(out, lambda problem: ConfigError(f"--out {out}: {problem}"))
    check_not_an_input(out, {"the data": args.data, "the checkpoint trained from": recipe.init_from})
    # An AFM started from an FM must see the data exactly as that FM did (its CSV encoding).
    pretrained = read_checkpoint(recipe.init_from) if recipe.init_from else None
    dataset = load_data(args, schema=pretrained.schema if pretrained else None)
    check_not_an_input(out, {"the data": dataset.location})  # a registry name's folder, found now
    main = group is None or group.is_main
    recipe, why = auto_from(args, dataset)  # said with the header, once the trainer's checks have passed
    for warning in pretrained.check_fits(dataset) if pretrained is not None else ():
        print(f"afm: warning: {warning}", file=sys.stderr)
    quiet = args.quiet or not main
    processes = f", {group.world_size} processes ({group.backend})" if group is not None else ""
    said = f"afm train: preset auto: {why}\n" if why else ""  # the choice first, then the run's own line
    header = (f"{said}afm: {recipe.model} on {dataset.name} ({len(dataset.train):,} train rows, "
              f"{dataset.schema.num_fields} fields, {dataset.schema.num_features:,} features), "
              f"k={recipe.embedding_dim}" + (f", t={recipe.attention_dim}" if recipe.model == "afm" else "")
              + (", FM pretraining first" if recipe.pretrain else "") + processes
              + (f"; {args.threads_note}" if getattr(args, "threads_note", None) else ""))
    with _FirstInterruptStops() as interrupt:
        fitted = fit_recipe(recipe, dataset, init_from=pretrained.model if pretrained else None,
                            callbacks=[] if quiet else [_ProgressLog(recipe.task, header)],
                            should_stop=interrupt.is_set, group=group)
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
    summary = {"model": recipe.model, "task": recipe.task, "dataset": dataset.name, "preset": recipe.preset,
               "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
               "stop_reason": str(result.stop_reason), "untrained": result.untrained}
    summary.update({key: value for key, value in result.best.items() if key.startswith(("valid_", "test_"))})
    if args.reference and not result.untrained:  # the score a model worth explaining should reach, same rows
        from afm.analysis.reference import reference_keys

        summary.update(reference_keys(dataset, recipe.task))
    summary.update({"seconds": round(result.seconds, 3), "samples_per_second": round(result.samples_per_second, 1),
                    "device": result.device, "compiled": result.compiled, "world_size": result.world_size,
                    "streamed": result.streamed, "distinct_pairs": result.distinct_pairs, "checkpoint": str(out)})
    return summary


