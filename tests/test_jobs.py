"""Background training jobs, as the app drives them."""

from __future__ import annotations

import pytest

from afm.checkpoint import load_checkpoint
from afm.errors import ConfigError
from afm.jobs import FollowUp, Run, TrainingJob, histories_frame, runs_table
from afm.models import ModelConfig
from afm.train import TrainConfig
from tests.conftest import random_dataset


def config_for(dataset, name="afm"):
    return ModelConfig(model=name, num_features=dataset.schema.num_features, num_fields=dataset.schema.num_fields,
                       embedding_dim=4, attention_dim=4)


def test_job_trains_in_the_background_and_yields_a_run(tmp_path):
    data = random_dataset()
    job = TrainingJob("tiny", data, config_for(data), TrainConfig(epochs=3, lr=0.1, batch_size=32)).start()
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


def test_stop_request_keeps_the_best_epoch():
    data = random_dataset(num_rows=3000)
    job = TrainingJob("stop", data, config_for(data), TrainConfig(epochs=200, lr=0.1, batch_size=8))
    original = job.on_epoch_end

    def stop_after_first_epoch(record):
        original(record)
        if record["epoch"] == 1:
            job.request_stop()

    job.on_epoch_end = stop_after_first_epoch
    job.start().join(timeout=120)
    assert job.status == "stopped"
    assert job.run is not None and job.run.train_config["stop_reason"] == "stop_requested"
    assert max(r["epoch"] for r in job.run.history) == 1


def test_divergence_fails_with_advice_and_keeps_the_best_model():
    data = random_dataset()
    data.train.labels[:] = 1e25
    job = TrainingJob("nan", data, config_for(data, "fm"), TrainConfig(epochs=2, lr=0.1, batch_size=32)).start()
    job.join(timeout=60)
    assert job.status == "failed" and "learning rate" in job.error and "best epoch so far" in job.error
    assert job.run is not None and job.run.best_epoch == 0


def test_a_job_that_cannot_run_here_fails_at_once_with_a_message():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    data = random_dataset()
    with pytest.raises(ConfigError, match="CUDA"):
        TrainingJob("gpu", data, config_for(data), TrainConfig(epochs=1, device="cuda:7")).start()


def test_a_follow_up_starts_from_the_finished_run_and_not_after_a_stop():
    """A two-step preset: the AFM starts from the FM's run once the FM is done; a stopped FM ends it."""
    data = random_dataset()
    follow_up = FollowUp("afm after fm", config_for(data), TrainConfig(epochs=1, lr=0.1, batch_size=32))
    first = TrainingJob("fm", data, config_for(data, "fm"), TrainConfig(epochs=2, lr=0.1, batch_size=32)).start()
    first.join(timeout=60)
    second = follow_up.start_after(first)
    assert second is not None and second.init_from is first.run.model and second.init_from_name == "fm"
    second.join(timeout=60)
    assert second.status == "done" and second.run.train_config.get("init_from") == "fm"

    stopped = TrainingJob("fm", data, config_for(data, "fm"), TrainConfig(epochs=2, lr=0.1, batch_size=32))
    stopped.request_stop()
    stopped.start().join(timeout=60)
    assert stopped.status == "stopped" and follow_up.start_after(stopped) is None


def test_the_job_tells_the_page_which_training_path_was_chosen():
    """The page says "compiling" while a compiled run's first step compiles: it learns the path
    from `on_train_start`, before the first batch."""
    data = random_dataset()
    job = TrainingJob("path", data, config_for(data), TrainConfig(epochs=1, lr=0.1, batch_size=32,
                                                                  compile="off", distinct_pairs="on"))
    assert job.snapshot()["path"] == {}
    job.start().join(timeout=60)
    assert job.snapshot()["path"] == {"compiled": False, "distinct_pairs": True, "sparse_gradients": False}
