"""No path computes on subnormal floats (afm.numerics): the flag is on in every thread that
computes (the command line, the app's training jobs, threads started inside a scope, DDP
processes: tests/test_distributed.py) and, where afm is a library, only while it computes; a
thread whose workers predate it is told; flushing changes no result beyond float32's rounding."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import warnings

import pytest
import torch

import afm.train
from afm.app.jobs import TrainingJob
from afm.models import build_model
from afm.numerics import full_speed_floats, subnormals_flushed, warn_if_workers_keep_subnormals
from afm.recipe import preset
from tests.conftest import random_dataset


def in_thread(target, *args):
    """Run `target` in a fresh thread (its own OpenMP workers); its return value."""
    box = {}

    def run():
        box["value"] = target(*args)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return box["value"]


def test_the_probe_sees_a_thread_that_keeps_subnormals():
    def keeping():
        torch.set_flush_denormal(False)
        return subnormals_flushed()

    def flushing():
        torch.set_flush_denormal(True)
        return subnormals_flushed()

    assert in_thread(keeping) is False
    assert in_thread(flushing) is True


def test_importing_afm_starts_the_workers_flushing_and_leaves_the_importing_thread_as_it_was():
    code = ("import afm.models, torch; from afm.numerics import flushes_here, full_speed_floats, subnormals_flushed\n"
            "r = [flushes_here()]; torch.ones(10**6).mul_(2)\n"  # the caller's own parallel work first
            "with full_speed_floats():\n"
            "    r.append(subnormals_flushed())\n"  # this thread and every worker, with no worker restarted
            "print(r, flushes_here())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[False, True] False"


def test_a_scope_flushes_in_its_thread_and_threads_started_in_it_then_restores():
    code = ("import threading, torch; from afm.numerics import full_speed_floats, subnormals_flushed as f; r = []\n"
            "with full_speed_floats():\n"
            "    r.append(f()); t = threading.Thread(target=lambda: r.append(f())); t.start(); t.join()\n"
            "x = torch.full((1,), 0x00200000, dtype=torch.int32).view(torch.float32)\n"
            "print(r, bool((x * 0.5).any()))")  # after the scope this thread keeps subnormals again
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[True, True] True"


def test_the_command_line_flushes_while_a_command_runs_and_leaves_its_caller_as_it_was(monkeypatch, capsys):
    import afm.cli
    import afm.cli.data
    from afm.numerics import flushes_here

    seen = []
    monkeypatch.setattr(afm.cli.data, "command_info", lambda args: seen.append(subnormals_flushed()) or {})
    before = flushes_here()
    assert afm.cli.main(["info", "--data", "sample"]) == 0
    assert seen == [True] and flushes_here() == before


def test_a_thread_whose_workers_started_before_the_flag_is_warned():
    def late():
        torch.set_flush_denormal(False)
        torch.ones(10**6).mul_(2)  # starts this thread's workers without the flag
        with warnings.catch_warnings(record=True) as caught, full_speed_floats():
            warnings.simplefilter("always")
            ok = warn_if_workers_keep_subnormals()
        return ok, [str(w.message) for w in caught]

    ok, messages = in_thread(late)
    assert not ok and any("several times slower" in m for m in messages), messages


def test_the_apps_training_jobs_flush_in_their_own_thread():
    data = random_dataset(num_rows=300)
    recipe = preset("quick", "afm", epochs=1, device="cpu")
    seen = []

    class Probe:
        def on_batch_end(self, epoch, batch, num_batches):
            if batch == 1:
                seen.append((threading.current_thread().name, subnormals_flushed()))

        def on_epoch_end(self, record):
            pass

    job = TrainingJob("probe", data, recipe, callbacks=[lambda model: Probe()]).start()
    assert job.join(timeout=120) and job.status == "done", job.error
    assert seen == [("afm-training", True)]


@pytest.mark.slow
def test_flushing_changes_the_model_only_below_float32s_smallest_normal(monkeypatch):
    """Five epochs of an AFM with L2 on attention (which drives weights into the subnormal range),
    each in a fresh thread: one keeping subnormals, one flushing. The same model to 1e-6; the
    kept run did meet subnormals, so the comparison means something."""
    monkeypatch.setattr(afm.train, "full_speed_floats", contextlib.nullcontext)  # let the first run keep them
    monkeypatch.setattr(afm.train, "warn_if_workers_keep_subnormals", lambda: False)
    data = random_dataset(num_rows=2000, field_sizes=(20, 15, 10, 25))
    tiny = torch.finfo(torch.float32).tiny

    def train(flush: bool):
        torch.set_flush_denormal(flush)
        recipe = preset("quick", "afm", epochs=5, l2_attention=16.0, device="cpu")
        model_config, train_config = recipe.model_config(data.schema), recipe.train_config()
        model = build_model(model_config, seed=0)
        subnormal_steps = []

        class Count:
            def on_batch_end(self, epoch, batch, num_batches):
                weight = model.attention.weight.detach()
                subnormal_steps.append(int(((weight.abs() < tiny) & (weight != 0)).sum()))

            def on_epoch_end(self, record):
                pass

        result = afm.train.train_model(model, data, train_config, callbacks=[Count()])
        return {k: v.clone() for k, v in model.state_dict().items()}, result.history, sum(subnormal_steps)

    kept, kept_history, kept_subnormals = in_thread(train, False)
    flushed, flushed_history, flushed_subnormals = in_thread(train, True)
    assert kept_subnormals > 0 and flushed_subnormals == 0, (kept_subnormals, flushed_subnormals)
    for name, weight in kept.items():
        torch.testing.assert_close(flushed[name], weight, rtol=0, atol=1e-6, msg=name)
    for a, b in zip(kept_history, flushed_history, strict=True):
        assert a["valid_rmse"] == pytest.approx(b["valid_rmse"], abs=1e-6)
