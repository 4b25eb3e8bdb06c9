"""`afm tune`: an Optuna study of FM, FwFM or AFM hyperparameters on the validation split
(afm.tune), progress on stderr (trial i/N, best so far, time left), the best trial's checkpoint
and the study beside it (`<out>.study.json`), and the summary line."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from afm.cli.arguments import data_arguments, load_data, positive_float, positive_int, reference_argument, seed
from afm.cli.train import _FirstInterruptStops
from afm.errors import ConfigError


def add_commands(commands) -> dict:
    tune = commands.add_parser("tune", help="search hyperparameters with Optuna; save the best model and the study")
    data_arguments(tune)
    tune.add_argument("--model", choices=("fm", "fwfm", "afm"), default="afm")
    tune.add_argument("--trials", type=positive_int, default=20, help="at most this many trials (default 20)")
    tune.add_argument("--minutes", type=positive_float, default=10.0,
                      help="time budget: no trial starts after it, the running one stops there (default 10)")
    tune.add_argument("--k", type=positive_int, default=None,
                      help="fix the embedding size k (and AFM's attention size t = k) instead of searching it")
    tune.add_argument("--epochs", type=positive_int, default=40, help="at most this many epochs per trial")
    tune.add_argument("--patience", type=positive_int, default=5,
                      help="a trial stops after this many epochs without a better validation score")
    tune.add_argument("--task", choices=("regression", "binary"), default="regression")
    tune.add_argument("--device", default="auto", help="auto, cpu or cuda")
    tune.add_argument("--seed", type=seed, default=0, help="seeds the sampler and every trial's training")
    tune.add_argument("--start", choices=("auto", "quick", "paper", "fast", "none"), default="auto",
                      help="the preset tried first, so the study starts from a known recipe (auto: the one "
                           "`afm train --preset auto` trains: quick on the bundled samples, paper on Frappe and "
                           "ml-tag, else sized to the data; none: the sampler chooses every trial)")
    tune.add_argument("--out", required=True, metavar="CKPT",
                      help="the best trial's checkpoint (.safetensors); the study goes to CKPT.study.json")
    tune.add_argument("--quiet", action="store_true", help="no per-trial progress on stderr")
    reference_argument(tune)
    return {"tune": command_tune}


class _StopsTheStudy(_FirstInterruptStops):
    def _handle(self, signum, frame):
        if self.signal_name is not None:
            raise KeyboardInterrupt
        self.signal_name = self.SIGNALS.get(signum, str(signum))
        print(f"\nafm tune: {self.signal_name}: stopping the study after this batch to save the best trial (again "
              "to abandon)", file=sys.stderr)


class _TrialLog:
    """One line per trial on stderr: its outcome, the best so far and the time left."""

    def __init__(self, metric: str, stream=None):
        self.metric, self.stream = metric, stream or sys.stderr

    def __call__(self, progress) -> None:
        from afm.humanize import duration

        if progress.event != "trial_end":
            return
        record = progress.record
        value = f"{self.metric}={record['value']:.4f}" if record.get("value") is not None else "no value"
        epoch = f", best epoch {record['best_epoch']}" if record.get("best_epoch") else ""
        note = f", {record['note']}" if record.get("note") else ""
        best = (f"best {progress.best_value:.4f} (trial {progress.best_trial})" if progress.best_value is not None
                else "no best yet")
        params = " ".join(f"{key}={_short(value)}" for key, value in record["params"].items())
        self.stream.write(f"trial {progress.trial}/{progress.trials} {record['state'].lower()}: {value} "
                          f"[{record['seconds']:.1f} s{epoch}{note}] {params} | {best} | at most "
                          f"{duration(progress.seconds_left)} left\n")
        self.stream.flush()


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _data_spec(args) -> str:
    """`--data ...` as given, for the recorded commands that rebuild the recipe."""
    parts = [args.data] + (["--data-dir", args.data_dir] if args.data_dir else []) + (
        ["--label", args.label] if args.label else []) + (
        ["--split-seed", str(args.split_seed)] if args.split_seed else [])
    return " ".join(shlex.quote(p) for p in parts)


def command_tune(args) -> dict:
    from afm.checkpoint import save_checkpoint
    from afm.files import check_not_an_input, check_writable_target
    from afm.tune import save_study, study_path, tune

    out = Path(args.out)
    study_file = study_path(out)
    inputs = {"--data": args.data, "--data-dir": args.data_dir}
    for target in (out, study_file):
        check_not_an_input(target, inputs)
        check_writable_target(target, lambda problem, target=target: ConfigError(f"--out {target}: {problem}"))
    dataset = load_data(args)
    metric = "valid_rmse" if args.task == "regression" else "valid_auc"
    if not args.quiet:
        fixed = f", k = t = {args.k}" if args.k and args.model == "afm" else f", k = {args.k}" if args.k else ""
        print(f"afm tune: {args.model} on {dataset.name} ({len(dataset.train):,} train rows){fixed}: at most "
              f"{args.trials} trials in {args.minutes:g} min, seed {args.seed}, {metric} on the validation rows"
              + (f"; {args.threads_note}" if getattr(args, "threads_note", None) else ""), file=sys.stderr)
    with _StopsTheStudy() as interrupt:
        tuned = tune(dataset, args.model, args.trials, args.minutes, seed=args.seed, task=args.task,
                     device=args.device, k=args.k, epochs=args.epochs, patience=args.patience,
                     progress=None if args.quiet else _TrialLog(metric), should_stop=interrupt.is_set,
                     study_file=study_file, data_spec=_data_spec(args),
                     start=None if args.start == "none" else args.start)
    save_checkpoint(out, tuned.checkpoint)
    save_study(study_file, {**tuned.summary, "checkpoint": str(out)})
    states = [r["state"] for r in tuned.history]
    best = tuned.checkpoint.best
    summary = {"model": args.model, "task": args.task, "dataset": dataset.name, "trials_run": len(states),
               "complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"), "failed": states.count("FAIL"),
               "best_trial": tuned.summary["best"]["number"], "best_epoch": tuned.checkpoint.best_epoch,
               **{key: value for key, value in best.items() if key.startswith(("valid_", "test_"))},
               "best_params": tuned.best_params, "seconds": tuned.summary["seconds"],
               "stop_reason": tuned.stop_reason, "checkpoint": str(out), "study": str(study_file)}
    if args.reference:  # the score a model worth explaining should reach, on the same test rows
        from afm.analysis.reference import reference_keys

        summary.update(reference_keys(dataset, args.task))
    if tuned.stop_reason == "stopped":
        print(f"afm tune: stopped ({interrupt.signal_name}); the best trial so far was saved to {out}", file=sys.stderr)
    return summary
