"""Real-data check: small models learn Frappe. Skipped with a reason when the data is absent."""

from __future__ import annotations

import pytest

from afm.data import load_dataset
from afm.models import ModelConfig, build_model
from afm.train import TrainConfig, seed_everything, train_model
from tests.conftest import requires_frappe

pytestmark = [requires_frappe, pytest.mark.frappe, pytest.mark.slow]


def small(name, data):
    seed_everything(0)
    return build_model(ModelConfig(model=name, num_features=data.schema.num_features,
                                   num_fields=data.schema.num_fields, embedding_dim=32, attention_dim=32))


@pytest.fixture(scope="module")
def frappe_and_fm():
    data = load_dataset("frappe")
    result = train_model(small("fm", data), data, TrainConfig(epochs=2, batch_size=512, lr=0.1))
    return data, result


def test_fm_learns_frappe_in_two_epochs(frappe_and_fm):
    _, result = frappe_and_fm
    assert result.history[0]["valid_rmse"] > 0.9  # untrained: about the labels' spread
    assert result.best["valid_rmse"] < 0.45 and result.best["test_rmse"] < 0.45, result.history


def test_afm_from_fm_pretraining_learns_frappe(frappe_and_fm):
    data, fm = frappe_and_fm
    afm = small("afm", data)
    afm.init_from(fm.model)  # the authors' recipe: AFM starts from FM's embeddings
    result = train_model(afm, data, TrainConfig(epochs=1, batch_size=512, lr=0.1, l2_attention=0.0))
    assert result.best["valid_rmse"] < 0.45 and result.best["test_rmse"] < 0.45, result.history
