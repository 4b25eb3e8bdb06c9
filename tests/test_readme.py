"""The README's Python example and command list stay true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from afm.cli import build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.slow
def test_python_example_runs():
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert tuple(namespace["terms"].pair_weights.shape) == (1500, 45)


def test_every_documented_command_exists():
    documented = set(re.findall(r"python -m afm (\w+)", README))
    available = set(build_parser()._subparsers._group_actions[0].choices)
    assert documented and documented <= available, documented - available


def test_the_two_commands_are_the_scripts_ci_runs():
    assert "./scripts/run-app.sh" in README and "./scripts/test.sh" in README
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "./scripts/test.sh" in ci
