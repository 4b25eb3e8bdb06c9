"""Command line: `python -m afm train|evaluate|history|download|sample|info|synthesize|convert|encode|
predict|report|import|pairs|tune`. Each command's options sit beside it: afm.cli.train, afm.cli.data,
afm.cli.explain, afm.cli.pairs and afm.cli.tune; afm.cli.arguments holds what they share.

Contract (the app, the benchmarks and outside scripts rely on it): progress goes to stderr, the
last stdout line is one JSON object, and bad arguments or data exit with code 2 and one clear
line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

from afm.cli import data, explain, pairs, train, tune
from afm.cli.arguments import EXIT_INTERRUPTED, EXIT_PARTIAL, EXIT_USAGE, Parser
from afm.cores import use_command_line_threads
from afm.errors import AFMError, is_out_of_memory
from afm.finite_json import finite
from afm.numerics import full_speed_floats

PARTIAL_STOPS = ("diverged", "stopped")  # afm.train.StopReason's partial ones: exit 3


def build_parser() -> Parser:
    parser = Parser(prog="afm", description="Attentional Factorization Machines: train, evaluate, inspect.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in (train, data, explain, pairs, tune):
        # Each command runs as `args.run(args)` -> its summary (None: a torchrun process but the first).
        for name, run in module.add_commands(commands).items():
            commands.choices[name].set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None, own_process: bool = False) -> int:
    """Run one command; `own_process`: this process is the command's own (the `afm` script, `python
    -m afm`), so its torch threads are set to the cores it may use (afm.cores), said by train and tune."""
    args = build_parser().parse_args(argv)
    args.threads_note = use_command_line_threads() if own_process else None
    try:
        with full_speed_floats():  # the whole command: no subnormal arithmetic (afm.numerics)
            summary = args.run(args)
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
    sys.exit(main(own_process=True))
