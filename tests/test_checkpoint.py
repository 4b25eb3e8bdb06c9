from __future__ import annotations

import json
import os
import pickle
import struct

import pytest
import torch
from safetensors.torch import save as save_safetensors

from afm.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from afm.errors import CheckpointError
from afm.models import ModelConfig, build_model
from tests.conftest import random_dataset


def trained_like(name="afm"):
    data = random_dataset()
    config = ModelConfig(model=name, num_features=data.schema.num_features, num_fields=data.schema.num_fields,
                         embedding_dim=6, attention_dim=4)
    model = build_model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval(), data


def checkpoint_of(model, data, **changes) -> Checkpoint:
    fields = dict(train_config={"task": "regression", "best_epoch": 3},
                  history=[{"epoch": 0, "valid_rmse": 1.0, "train_rmse": float("nan")}], schema=data.schema,
                  dataset={"name": data.name, "fingerprint": data.fingerprint, "label_range": list(data.label_range)})
    return Checkpoint(model, model.config, **{**fields, **changes})


def save(path, model, data):
    return save_checkpoint(path, checkpoint_of(model, data))


@pytest.mark.parametrize("name", ["fm", "fwfm", "afm"])
def test_round_trip_gives_identical_predictions(tmp_path, name):
    model, data = trained_like(name)
    path = save(tmp_path / "m.safetensors", model, data)
    loaded = load_checkpoint(path)
    ids, values = torch.from_numpy(data.test.feature_ids), torch.from_numpy(data.test.feature_values)
    assert torch.equal(loaded.model(ids, values), model(ids, values))
    assert loaded.model_config == model.config
    assert loaded.schema == data.schema
    assert loaded.best_epoch == 3
    assert loaded.history[0]["train_rmse"] is None  # NaN is stored as null
    assert loaded.check_fits(data) == []


def test_loads_from_bytes_like_an_upload(tmp_path):
    model, data = trained_like()
    path = save(tmp_path / "m.safetensors", model, data)
    loaded = load_checkpoint(path.read_bytes(), name="upload.safetensors")
    assert torch.equal(loaded.model.embedding.weight, model.embedding.weight)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    model, data = trained_like()
    path = save(tmp_path / "m.safetensors", model, data)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(CheckpointError, match="disk full"):
        save(path, model, data)
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_wrong_data_is_refused_with_a_reason(tmp_path):
    model, data = trained_like()
    loaded = load_checkpoint(save(tmp_path / "m.safetensors", model, data))
    other = random_dataset(field_sizes=(5, 4, 3))
    with pytest.raises(CheckpointError, match="expects 4 fields"):
        loaded.check_fits(other)
    bigger = random_dataset(field_sizes=(5, 4, 3, 60))
    with pytest.raises(CheckpointError, match="feature id"):
        loaded.check_fits(bigger)
    similar = random_dataset(seed=9)
    assert "not on this exact data" in loaded.check_fits(similar)[0]


def header_and_body(data: bytes):
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]), data[8 + length:]


def rebuild(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def test_hostile_and_damaged_files_are_refused(tmp_path):
    model, data = trained_like()
    good = checkpoint_of(model, data, train_config={}, history=[], dataset={"name": "x", "fingerprint": "y"}).to_bytes()
    header, body = header_and_body(good)

    cases = {
        "empty": b"",
        "garbage": b"\x00" * 4 + os.urandom(100),
        "huge header length": struct.pack("<Q", 2**62) + b"{}",
        "pickle": pickle.dumps({"a": 1}),
        "truncated": good[: len(good) // 2],
        "torch pickle": b"PK\x03\x04" + b"\x00" * 100,
        "plain safetensors": save_safetensors({"x": torch.zeros(3)}),
    }
    meta = dict(header["__metadata__"])
    for label, change in {
        "other format": {"format": "something-else"},
        "future version": {"format_version": "99"},
        "bad json": {"model_config": "{not json"},
        "unknown config key": {"model_config": json.dumps({**model.config.to_dict(), "evil": 1})},
        "huge table": {"model_config": json.dumps({**model.config.to_dict(), "num_features": 10**9,
                                                   "embedding_dim": 4096})},
        "history not a list": {"history": json.dumps({"a": 1})},
    }.items():
        cases[label] = rebuild({**header, "__metadata__": {**meta, **change}}, body)
    wrong_shape = json.loads(json.dumps(header))
    wrong_shape["embedding.weight"]["shape"] = [99, 6]
    cases["wrong shape"] = rebuild(wrong_shape, body)
    nan_model = build_model(model.config)
    with torch.no_grad():
        nan_model.bias.fill_(float("nan"))
    cases["nan weights"] = checkpoint_of(nan_model, data, train_config={}, history=[], dataset={}).to_bytes()

    for label, blob in cases.items():
        path = tmp_path / f"{label}.safetensors"
        path.write_bytes(blob)
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        assert str(path) in str(info.value), label


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "none.safetensors")
