"""What every command shares: argument types whose errors are one line, the data arguments, the
exit statuses of the contract (afm.cli)."""

from __future__ import annotations

import argparse
import math
import sys

from afm.errors import ConfigError

# Exit statuses: 0 done (and, for train, the checkpoint written); 1 a bug of ours; 2 bad input,
# nothing written; 3 training ended early (diverged, Ctrl-C or SIGTERM) and the best epoch so
# far WAS written; 130 interrupted before anything could be written.
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr, exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def dropouts(text: str) -> tuple[float, float]:
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


def number(kind, accept, description: str):
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


# Counts are bounded: a 20-digit --every overflowed numpy's int64 inside the command (exit 1).
MAX_COUNT = 2**31 - 1
positive_int = number(int, lambda v: 0 < v <= MAX_COUNT, f"a positive integer up to {MAX_COUNT:,}")
non_negative_int = number(int, lambda v: 0 <= v <= MAX_COUNT, f"an integer in 0..{MAX_COUNT:,}")
positive_float = number(float, lambda v: v > 0, "a positive number")
non_negative_float = number(float, lambda v: v >= 0, "a number >= 0")
# Seeds in numpy's range: beyond it a seed used to wrap (2**32 trained as 0) or crash.
seed = number(int, lambda v: 0 <= v < 2**32, "a seed in 0..4294967295")


def sizes(text: str) -> list[int]:
    """`--field-dims 957,4082,7`: positive integers."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 5,4,3 (positive integers), got {text!r}") from None
    if len(values) < 2 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected at least two positive sizes like 5,4,3, got {text!r}")
    return values


def data_arguments(sub) -> None:
    sub.add_argument("--data", required=True,
                     help="registry name (sample, frappe, ml-tag), a directory of libfm splits, "
                          "a .libfm file or a .csv file")
    sub.add_argument("--data-dir", default=None,
                     help="where registry datasets live (else $AFM_DATA_DIR, ./data, ../shared/data)")
    sub.add_argument("--label", default=None, help="label column of a CSV (default: label/target/... or last)")
    sub.add_argument("--split-seed", type=seed, default=0, help="seed of the 70/20/10 split for unsplit data")


def load_data(args, schema=None):
    """The `--data` of a command, read (with a model's `schema` when given)."""
    from afm.data import load_dataset

    return load_dataset(args.data, data_dir=args.data_dir, seed=args.split_seed, label=args.label, schema=schema)




def read_checkpoint(path, device="cpu"):
    """`load_checkpoint`, saying on stderr when the file carries no checksum of its weights."""
    from afm.checkpoint import load_checkpoint  # here: argument parsing stays free of torch

    checkpoint = load_checkpoint(path, device=device)
    if checkpoint.unchecked:
        print(f"note: {path} was saved without a checksum (before checkpoint format 2); its weights are "
              "unchecked", file=sys.stderr)
    return checkpoint


def recipe_arguments(sub, preset_default: str | None = "auto") -> None:
    """A flag for every setting of `afm.recipe.Recipe`, from its fields' metadata (type, range,
    choices, help), plus `--preset` (the recipe the flags change) and `--dropout A,B` (both
    dropouts at once, the authors' `keep` order). A flag not given keeps the preset's value."""
    from dataclasses import fields

    from afm.recipe import PRESETS, Recipe, flag_of

    sub.add_argument("--preset", choices=("auto", *PRESETS, "none"), default=preset_default,
                     help=f"the named recipe the other flags change (default {preset_default}: sized to the data, "
                          "k, batch, Adam and L2 on embeddings from its rows and fields, the paper's recipe on "
                          "Frappe and ml-tag, quick on the bundled samples, said on stderr with why; paper: the "
                          "authors' Frappe recipe; none: the paper's values, but a pretrained FM takes this recipe's "
                          "lr, batch size and pooled dropout instead of a preset's)")
    for spec in fields(Recipe):
        if spec.name == "preset":
            continue
        meta, kind = spec.metadata, spec.type
        common = {"dest": spec.name, "default": argparse.SUPPRESS, "help": meta["help"]}
        if kind == "bool":
            sub.add_argument(flag_of(spec), action="store_true", **common)
            continue
        parse = {"int": number(int, lambda v: True, "a whole number"),
                 "float": number(float, lambda v: True, "a number")}.get(kind, str)
        metavar = None if meta["choices"] else flag_of(spec).lstrip("-").replace("-", "_").upper()
        sub.add_argument(flag_of(spec), type=parse, choices=meta["choices"], metavar=metavar, **common)
    sub.add_argument("--dropout", type=dropouts, default=argparse.SUPPRESS, metavar="A,B",
                     help="--dropout-attention A and --dropout-pooled B at once (1 - the authors' keep); one "
                          "number sets the pooled one")


def _given(args) -> tuple[str, dict]:
    """The model and the settings the command line gives (flags the user typed)."""
    from dataclasses import fields

    from afm.recipe import Recipe

    given = {spec.name: getattr(args, spec.name) for spec in fields(Recipe)
             if spec.name != "preset" and hasattr(args, spec.name)}
    if hasattr(args, "dropout"):
        for name, value in zip(("dropout_attention", "dropout_pooled"), args.dropout):
            if name in given and given[name] != value:
                raise ConfigError(f"--dropout and --{name.replace('_', '-')} disagree; give one")
            given[name] = value
    model = given.pop("model", "afm")
    if model != "afm" and "dropout_attention" in given and not given["dropout_attention"]:
        given.pop("dropout_attention")  # `--dropout 0,B` on an FM: nothing set on attention
    return model, given


def recipe_from(args):
    """The Recipe the command line asks for: `--preset` for `--model`, with the flags given. Before
    the data is read, `--preset auto` checks the flags on the paper's recipe (`auto_from` decides)."""
    from afm.recipe import preset

    model, given = _given(args)
    name = {"none": None, "auto": "paper"}.get(args.preset, args.preset)
    return preset(name, model, **given)


def auto_from(args, dataset) -> tuple[object, str | None]:
    """The Recipe for `dataset` and why, when `--preset auto` (afm.sizing.auto_recipe); else
    `recipe_from(args)` and None."""
    if args.preset != "auto":
        return recipe_from(args), None
    from afm.sizing import auto_recipe

    model, given = _given(args)
    return auto_recipe(dataset, model, given.pop("task", "regression"), **given)


def reference_argument(sub) -> None:
    """`--no-reference`: skip the gradient-boosting reference in the summary line (it is fitted on
    the same training rows and scored on the same test rows: seconds on most data)."""
    sub.add_argument("--no-reference", dest="reference", action="store_false",
                     help="leave the gradient-boosting reference (reference_test_*) out of the summary line")
