"""The README's Python example and command list stay true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from afm.cli import build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.slow
def test_python_examples_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example saves a checkpoint where it runs
    front, estimators, layers = re.findall(r"```python\n(.*?)```", README, re.S)[:3]
    namespace: dict = {}
    exec(compile(front, "README.md", "exec"), namespace)
    assert namespace["model"].recipe.preset == "quick" and namespace["clicks"].task == "binary"
    assert list(namespace["ex"].pairs.columns[:2]) == ["pair", "attention_mean"]
    probability = namespace["probability"]
    assert probability.shape == (2000,) and ((probability > 0) & (probability < 1)).all()
    assert (namespace["again"].predict(namespace["frame"]) == probability).all()
    assert namespace["again"].recipe.command("clicks.csv").startswith("python -m afm train --data clicks.csv")
    exec(compile(estimators, "README.md", "exec"), namespace)  # follows the front door's frame
    assert len(namespace["scores"]) == 3 and (namespace["scores"] > 0.5).all()
    assert list(namespace["classifier"].classes_) == ["no", "yes"]
    namespace = {}
    exec(compile(layers, "README.md", "exec"), namespace)
    assert tuple(namespace["terms"].pair_weights.shape) == (1500, 45)


def test_every_documented_command_exists():
    documented = set(re.findall(r"python -m afm (\w+)", README))
    available = set(build_parser()._subparsers._group_actions[0].choices)
    assert documented and documented <= available, documented - available


def test_the_two_commands_are_the_scripts_ci_runs():
    assert "./scripts/run-app.sh" in README and "./scripts/test.sh" in README
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "./scripts/test.sh" in ci
