"""A class on one server: jobs share the cores, wait their turn with an estimate, stop when
asked (queued or running) or when nobody looks at them, and respect the server's caps."""

from __future__ import annotations

import time

import pytest
import torch

from afm.app.jobs import TrainingJob
from afm.models import ModelConfig, build_model
from afm.recipe import Recipe
from afm.scheduler import ServerPolicy, TrainingScheduler
from tests.conftest import random_dataset

DATA = random_dataset(num_rows=4000)
STARTED: list[TrainingJob] = []


@pytest.fixture(autouse=True)
def stop_every_job():
    """No training thread outlives its test."""
    yield
    for started in STARTED:
        started.request_stop()
    for started in STARTED:
        started.join(timeout=60)
    STARTED.clear()


def job(scheduler, name, epochs=50, batch=8, **train):
    recipe = Recipe.of(model="fm", embedding_dim=4, dropout_pooled=0.0, epochs=epochs, batch_size=batch, lr=0.05,
                       **train)
    made = TrainingJob(name, DATA, recipe, scheduler=scheduler)
    STARTED.append(made)
    return made


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_slots_queue_position_estimate_and_stop_in_the_queue():
    scheduler = TrainingScheduler(ServerPolicy(slots=2, cores=2))
    first, second, third, fourth = (job(scheduler, n) for n in "abcd")
    for j in (first, second, third, fourth):
        j.start()
    wait_for(lambda: first.status == second.status == "running")
    assert third.status == fourth.status == "queued"
    assert scheduler.threads_for(first) == 1  # two running jobs share the two cores
    assert scheduler.position(third)[0] == 1 and scheduler.position(fourth)[0] == 2
    wait_for(lambda: first.snapshot()["progress"][1] > 10)  # some batches run: a pace is known
    wait, wait4 = scheduler.position(third)[1], scheduler.position(fourth)[1]
    assert wait is not None and wait4 is not None and 0 < wait <= wait4
    started = time.monotonic()
    fourth.request_stop()  # in the queue: at once, not when a running job ends
    assert fourth.join(timeout=1) and time.monotonic() - started < 1
    assert fourth.status == "stopped" and fourth.run is None and fourth.history == []
    assert scheduler.position(fourth) is None
    first.request_stop()
    wait_for(lambda: third.status == "running")  # the freed slot goes to the next in line
    for j in (second, third):
        j.request_stop()
    for j in (first, second, third):
        assert j.join(timeout=60) and j.status == "stopped" and j.run is not None


def test_a_job_nobody_looks_at_is_stopped_and_keeps_its_best_epoch():
    scheduler = TrainingScheduler(ServerPolicy(slots=1, cores=2, abandon_seconds=0.5), watch_every=0.1)
    watched, forgotten = job(scheduler, "watched", epochs=3, batch=64), job(scheduler, "forgotten")
    forgotten.start()
    assert forgotten.join(timeout=60)  # its page never asked: stopped by the watchdog
    assert forgotten.status == "stopped" and forgotten.stop_cause == "abandoned" and forgotten.run is not None
    watched.start()
    deadline = time.monotonic() + 60
    while not watched.finished and time.monotonic() < deadline:
        watched.snapshot()  # the page polls every second; here faster than the 0.5 s limit
        time.sleep(0.05)
    assert watched.status == "done" and watched.stop_cause is None


def test_a_connected_page_keeps_its_job_and_a_queued_job_left_alone_leaves_as_abandoned():
    """Polls come late from a starved browser: a job whose page is still connected is not stopped; a
    queued job whose page is gone leaves the queue with the cause said (not "you")."""
    scheduler = TrainingScheduler(ServerPolicy(slots=1, cores=1, abandon_seconds=1000), watch_every=1000)
    connected, left = job(scheduler, "connected"), job(scheduler, "left")
    connected.start()
    left.start()
    connected.page_open = lambda: True  # as afm.app.page_watch says of an open tab
    wait_for(lambda: connected.status == "running")
    assert left.status == "queued" and left.page_open is None  # started outside a Streamlit script
    assert scheduler.stop_abandoned(now=time.monotonic() + 5000) == [left]
    assert left.join(timeout=1) and left.status == "stopped" and left.stop_cause == "abandoned" and left.run is None
    assert connected.status == "running" and connected.stop_cause is None
    connected.page_open = lambda: False  # the tab closed
    assert scheduler.stop_abandoned(now=time.monotonic() + 5000) == [connected]
    assert connected.join(timeout=60) and connected.stop_cause == "abandoned"


def test_server_caps_epochs_and_minutes():
    scheduler = TrainingScheduler(ServerPolicy(slots=1, cores=2, max_epochs=2))
    capped = job(scheduler, "capped", epochs=100).start()
    assert capped.train_config.epochs == 2 and any("at most 2 epochs" in n for n in capped.notes)
    timed = TrainingScheduler(ServerPolicy(slots=1, cores=2, max_minutes=1 / 60))
    slow = job(timed, "slow", epochs=500).start()
    assert capped.join(timeout=60) and slow.join(timeout=60)
    assert capped.status == "done" and max(r["epoch"] for r in capped.history) == 2
    assert slow.status == "stopped" and slow.stop_cause == "time budget" and slow.run is not None


def test_building_and_training_never_touch_the_process_random_state():
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    build_model(ModelConfig(model="afm", num_features=50, num_fields=4, embedding_dim=8, attention_dim=8), seed=3)
    scheduler = TrainingScheduler(ServerPolicy(slots=1, cores=2))
    trained = job(scheduler, "seeded", epochs=2, batch=256, seed=7).start()
    assert trained.join(timeout=60) and trained.status == "done"
    assert torch.equal(torch.get_rng_state(), before)
    again = job(scheduler, "seeded again", epochs=2, batch=256, seed=7).start()
    assert again.join(timeout=60)
    for a, b in zip(trained.run.model.parameters(), again.run.model.parameters()):
        assert torch.equal(a, b)  # same seed, same model, whatever else ran


def test_policy_from_the_environment(monkeypatch):
    monkeypatch.setenv("AFM_TRAINING_SLOTS", "3")
    monkeypatch.setenv("AFM_JOB_MAX_MINUTES", "2.5")
    policy = ServerPolicy.from_env()
    assert policy.slots == 3 and policy.max_minutes == 2.5 and policy.max_epochs is None
    monkeypatch.setenv("AFM_TRAINING_SLOTS", "many")
    from afm.errors import ConfigError

    with pytest.raises(ConfigError, match="AFM_TRAINING_SLOTS"):
        ServerPolicy.from_env()


def test_the_queue_expects_the_share_of_epochs_recent_trainings_ran():
    """Early stopping usually ends a training well before its last epoch: the expected wait
    counts the share of their epochs that finished trainings here ran; the at-most wait counts
    every epoch (the 'about 4 minutes for a 2-minute wait' of issue #21)."""
    scheduler = TrainingScheduler(ServerPolicy(slots=1, cores=1))
    assert scheduler.typical_epoch_share() is None
    worse = random_dataset(num_rows=400)
    worse.valid.labels[:] = -worse.valid.labels  # every epoch is worse than the last: early stopping at once
    finished = TrainingJob("early", worse, Recipe.of(model="fm", embedding_dim=4, dropout_pooled=0.2, epochs=40,
                                                     batch_size=16, lr=0.3, patience=2), scheduler=scheduler)
    STARTED.append(finished)
    finished.start().join(timeout=120)
    assert finished.status == "done" and finished.run.outcome.stop_reason == "early_stopping"
    share = scheduler.typical_epoch_share()
    assert share == (len(finished.history) - 1) / 40 and share < 1
    running, waiting = job(scheduler, "running", epochs=200), job(scheduler, "waiting")
    running.start()
    waiting.start()
    wait_for(lambda: running.snapshot()["progress"][1] > 10)
    place, at_most, expected = waiting.snapshot()["queue"]
    assert place == 1 and at_most is not None and expected is not None
    assert expected < at_most
    # The running job's remaining time at its full 200 epochs, and at the share of them.
    whole = running.estimated_seconds()
    assert running.estimated_seconds(expected=True) == pytest.approx(whole * max(share, 1 / 200), rel=0.05)
