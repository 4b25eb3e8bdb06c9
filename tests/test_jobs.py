"""Background training jobs, as the app drives them."""

from __future__ import annotations

import pytest

from afm.app.jobs import FollowUp, Run, TrainingJob, histories_frame, runs_table
from afm.checkpoint import load_checkpoint
from afm.errors import ConfigError
from afm.recipe import Recipe
from tests.conftest import random_dataset


def recipe_for(name="afm", **settings):
    """A tiny recipe: k = t = 4, pooled dropout 0.2, no L2 on attention, with `settings`."""
    return Recipe.of(model=name, embedding_dim=4, attention_dim=4, dropout_pooled=0.2, l2_attention=0.0,
                     **settings)


def test_job_trains_in_the_background_and_yields_a_run(tmp_path):
    data = random_dataset()
    job = TrainingJob("tiny", data, recipe_for("afm", epochs=3, lr=0.1, batch_size=32)).start()
    job.join(timeout=60)
    assert job.status == "done" and job.error is None
    run = job.run
    assert [r["epoch"] for r in run.history] == [0, 1, 2, 3]
    assert [r["epoch"] for r in job.snapshot()["history"]] == [0, 1, 2, 3]
    assert job.snapshot()["progress"][0] == 3
    # Its checkpoint bytes load back into the same function.
    path = tmp_path / "run.safetensors"
    path.write_bytes(run.to_bytes())
    again = Run.from_checkpoint(load_checkpoint(path), "again", "loaded")
    assert again.best_epoch == run.best_epoch and again.model is not run.model
    table = runs_table({"tiny": run, "again": again})
    assert list(table["run"]) == ["tiny", "again"] and table["valid_rmse"].iloc[0] == table["valid_rmse"].iloc[1]
    assert len(histories_frame({"tiny": run})) == 4
    assert table["seconds"].iloc[0] == round(table["seconds"].iloc[0], 1)  # read as seconds, not 0.07312845


def test_stop_request_keeps_the_best_epoch():
    data = random_dataset(num_rows=3000)
    job = TrainingJob("stop", data, recipe_for("afm", epochs=200, lr=0.1, batch_size=8))
    original = job.on_epoch_end

    def stop_after_first_epoch(record):
        original(record)
        if record["epoch"] == 1:
            job.request_stop()

    job.on_epoch_end = stop_after_first_epoch
    job.start().join(timeout=120)
    assert job.status == "stopped"
    assert job.run is not None and job.run.outcome.stop_reason == "stopped"
    assert max(r["epoch"] for r in job.run.history) == 1


def test_divergence_fails_with_advice_and_keeps_the_best_model():
    data = random_dataset()
    data.train.labels[:] = 1e25
    data.train.labels[::2] = 2e25  # two values: constant labels are refused before training
    job = TrainingJob("nan", data, recipe_for("fm", epochs=2, lr=0.1, batch_size=32)).start()
    job.join(timeout=60)
    assert job.status == "failed" and "learning rate" in job.error and "best epoch so far" in job.error
    assert job.run is not None and job.run.best_epoch == 0


def test_a_job_that_cannot_run_here_fails_at_once_with_a_message():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    data = random_dataset()
    with pytest.raises(ConfigError, match="CUDA"):
        TrainingJob("gpu", data, recipe_for("afm", epochs=1, device="cuda:7")).start()


def test_a_follow_up_starts_from_the_finished_run_and_not_after_a_stop():
    """A two-step preset: the AFM starts from the FM's run once the FM is done; a stopped FM ends it."""
    data = random_dataset()
    follow_up = FollowUp("afm after fm", recipe_for("afm", epochs=1, lr=0.1, batch_size=32))
    first = TrainingJob("fm", data, recipe_for("fm", epochs=2, lr=0.1, batch_size=32)).start()
    first.join(timeout=60)
    second = follow_up.start_after(first)
    assert second is not None and second.init_from is first.run.model and second.init_from_name == "fm"
    second.join(timeout=60)
    assert second.status == "done" and second.run.train_config.get("init_from") == "fm"

    stopped = TrainingJob("fm", data, recipe_for("fm", epochs=2, lr=0.1, batch_size=32))
    stopped.request_stop()
    stopped.start().join(timeout=60)
    assert stopped.status == "stopped" and follow_up.start_after(stopped) is None


def test_the_job_tells_the_page_which_training_path_was_chosen():
    """The page says "compiling" while a compiled run's first step compiles: it learns the path
    from `on_train_start`, before the first batch."""
    data = random_dataset()
    job = TrainingJob("path", data, recipe_for("afm", epochs=1, lr=0.1, batch_size=32,
                                                                  compile="off", distinct_pairs="on"))
    assert job.snapshot()["path"] == {}
    job.start().join(timeout=60)
    assert job.snapshot()["path"] == {"compiled": False, "distinct_pairs": True, "sparse_gradients": False,
                                      "bfloat16_attention": False}


def test_time_left_follows_the_pace_so_far():
    from afm.app.jobs import time_left

    # Epoch 1 of 4, batch 10 of 40 after 5 s: 0.5 s a batch, no finished epoch to go by.
    epoch_left, run_left = time_left(1, 10, 40, 4, 5.0, [{"epoch": 0, "eval_seconds": 2.0}])
    assert epoch_left == pytest.approx(15.0)
    assert run_left == pytest.approx(15.0 + 2.0 + 3 * (20.0 + 2.0))
    # Epoch 3 of 4 early on: the latest finished epoch (8 s for 40 batches) sets the pace, not a
    # slow first batch; from half the epoch on, the running epoch's own pace.
    history = [{"epoch": 0, "eval_seconds": 1.0}, {"epoch": 1, "seconds": 30.0, "eval_seconds": 1.0},
               {"epoch": 2, "seconds": 8.0, "eval_seconds": 1.0}]
    assert time_left(3, 2, 40, 4, 3.0, history) == pytest.approx((38 * 0.2, 38 * 0.2 + 1.0 + 9.0))
    assert time_left(3, 20, 40, 4, 20.0, history)[0] == pytest.approx(20.0)
    assert time_left(4, 40, 40, 4, 8.0, history) == (0.0, 1.0)  # the last batch: its evaluation is left


def test_a_running_job_says_how_long_it_has_left():
    data = random_dataset(num_rows=4000)
    seen = []

    class Watch:
        def __init__(self, job):
            self.job = job

        def on_batch_end(self, epoch, batch, num_batches):
            if batch == num_batches // 2:
                seen.append(self.job.snapshot()["time_left"])

        def on_epoch_end(self, record):
            pass

    job = TrainingJob("left", data, recipe_for("afm", epochs=2, lr=0.1, batch_size=32))
    job.extra_callbacks.append(lambda model: Watch(job))
    assert job.snapshot()["time_left"] is None  # queued: nothing known yet
    job.start().join(timeout=120)
    assert job.status == "done" and len(seen) == 2
    (epoch1, run1), (epoch2, run2) = seen
    assert 0 < epoch1 < run1 and 0 < epoch2 <= run2 < run1  # the second epoch's run estimate is its own


def test_the_estimate_counts_each_epochs_time_after_its_training():
    """#27: 'at most N s' was 0.6 times the Quick preset's time: the coupling tracker runs after
    every epoch, outside its training seconds and its evaluation. The job measures each epoch's tail
    (evaluation, trackers, best weights kept) and time_left adds the latest to every epoch to come."""
    import time

    from afm.app.jobs import time_left

    history = [{"epoch": 0, "eval_seconds": 1.0, "tail_seconds": 3.0},
               {"epoch": 1, "seconds": 8.0, "eval_seconds": 1.0, "tail_seconds": 4.0}]
    # Epoch 2 of 4, batch 10 of 40 after 2 s: the rest of it, then its tail and two whole epochs.
    assert time_left(2, 10, 40, 4, 2.0, history) == pytest.approx((30 * 0.2, 30 * 0.2 + 4.0 + 2 * (8.0 + 4.0)))
    # The epochs to come go at the mean of the finished ones (the first, compiling, left out): one
    # fast or slow epoch on a busy machine no longer swings the figure.
    history += [{"epoch": 2, "seconds": 6.0, "eval_seconds": 1.0, "tail_seconds": 2.0},
                {"epoch": 3, "seconds": 10.0, "eval_seconds": 1.0, "tail_seconds": 4.0}]
    tail = (4.0 + 2.0 + 4.0) / 3  # every finished epoch's tail: the first's is not slowed by compiling
    assert time_left(4, 10, 40, 6, 2.0, history) == pytest.approx((30 * 0.2, 30 * 0.2 + tail + 2 * (8.0 + tail)))
    # Without a measured tail, the evaluation time (as a history from before #27 has it).
    assert time_left(2, 40, 40, 4, 8.0, [{"epoch": 1, "seconds": 8.0, "eval_seconds": 1.0}]) == (0.0, 1.0 + 2 * 9.0)

    class SlowTracker:  # like the coupling tracker: 0.2 s after each epoch's evaluation
        def on_batch_end(self, epoch, batch, num_batches):
            pass

        def on_epoch_end(self, record):
            time.sleep(0.2)

    job = TrainingJob("tail", random_dataset(num_rows=600), recipe_for("afm", epochs=2, lr=0.1, batch_size=64))
    job.extra_callbacks.append(lambda model: SlowTracker())
    job.start().join(timeout=120)
    assert job.status == "done"
    tails = [r["tail_seconds"] for r in job.snapshot()["history"]]
    evaluations = [r["eval_seconds"] for r in job.snapshot()["history"]]
    assert len(tails) == 3 and all(t >= 0.2 + e for t, e in zip(tails, evaluations)), (tails, evaluations)
    assert all(t < 0.2 + e + 1.0 for t, e in zip(tails, evaluations)), (tails, evaluations)  # not the training


def test_durations_read_as_a_person_says_them():
    from afm.humanize import duration

    assert [duration(s) for s in (0.4, 45, 190, 1500, 7500)] == ["0 s", "45 s", "3 min 10 s", "25 min", "2 h 5 min"]


def test_a_job_in_which_no_epoch_beats_epoch_0_finishes_as_untrained_with_the_advice():
    """Validation labels opposite to the training ones: each epoch makes validation worse. The
    page (afm.app.training) shows `error` as a warning instead of 'best epoch N'."""
    data = random_dataset()
    data.valid.labels[:] = -data.valid.labels
    job = TrainingJob("worse", data, recipe_for("fm", epochs=3, lr=0.3, batch_size=16)).start()
    job.join(timeout=60)
    assert job.status == "done" and job.run is not None and job.run.best_epoch == 0
    assert "no epoch did better than the starting model" in job.error
    assert job.snapshot()["error"] == job.error
