"""A class's Attention pages: the analyses of one model on one split are computed once for the
server (Streamlit's caches, keyed by the model's content), not once per session; the answer and
the heatmap come before the checks of attention and the reference."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from afm.app import cache
from afm.app.jobs import Run, weights_key
from afm.recipe import preset
from tests.conftest import random_dataset

ROOT = Path(__file__).resolve().parent.parent


def test_a_trained_run_is_keyed_by_its_weights():
    from afm.fitting import fit_recipe

    data = random_dataset(num_rows=300)
    recipe = preset("quick", "fm").replace(epochs=1, embedding_dim=4)
    first = fit_recipe(recipe, data, seed_process=False).checkpoint
    again = fit_recipe(recipe, data, seed_process=False).checkpoint
    a, b = (Run.from_checkpoint(c, "FM", "trained", fresh=True) for c in (first, again))
    assert a.key == b.key == weights_key(first)  # the same weights: the same analyses
    with torch.no_grad():
        next(again.model.parameters()).view(-1)[0] += 1e-6
    assert weights_key(again) != a.key  # one weight moved: its own analyses


@pytest.mark.slow
def test_two_sessions_with_the_same_trained_model_compute_its_analyses_once(monkeypatch):
    import afm.scheduler as scheduler_module
    from afm.scheduler import ServerPolicy, TrainingScheduler

    # One thread per job: a training's weights do not depend on what else runs, so two sessions
    # that train the same recipe hold bit-identical models.
    monkeypatch.setattr(scheduler_module, "_default", TrainingScheduler(ServerPolicy(slots=1, cores=1)))
    calls: Counter = Counter()
    for name in ("decompose_split", "explain_pairs", "check_attention", "erasure_of"):
        original = getattr(cache, name)
        monkeypatch.setattr(cache, name, lambda *a, _f=original, _n=name, **k: calls.update([_n]) or _f(*a, **k))
    st.cache_resource.clear()
    st.cache_data.clear()
    keys, seen = [], []
    for _ in range(2):  # two students, one after the other
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
        at.number_input(key="recipe_epochs_quick_afm").set_value(2)
        at.get("form_submit_button")[0].click().run()
        job = at.session_state["job"]
        assert job.join(timeout=180) and job.status == "done", job.error
        at.run()
        at.run()
        keys.append(at.session_state["runs"][at.session_state["active_run"]].key)
        at.switch_page("pages/attention.py").run()
        assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
        assert len(at.get("plotly_chart")) >= 4
        answer = at.markdown[[m.value.startswith("- On ") for m in at.markdown].index(True)].value
        assert "computing…" not in answer  # the second pass completed the answer
        seen.append(dict(calls))
    assert keys[0] == keys[1]
    assert all(seen[0].get(name) for name in ("decompose_split", "explain_pairs", "check_attention", "erasure_of"))
    assert seen[1] == seen[0]  # the second session computed nothing again
