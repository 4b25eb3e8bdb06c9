from __future__ import annotations

import json
import os
import pickle
import struct

import pytest
import torch
from safetensors.torch import save as save_safetensors

from afm.checkpoint import Checkpoint, Outcome, TrainedOn, load_checkpoint, save_checkpoint
from afm.cli import main
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
    fields = dict(train_config={"task": "regression"},
                  history=[{"epoch": 0, "valid_rmse": 1.0, "train_rmse": float("nan")}], schema=data.schema,
                  trained_on=TrainedOn(data.name, fingerprint=data.fingerprint, label_range=data.label_range),
                  outcome=Outcome(best_epoch=3, stop_reason="completed", device="cpu"))
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
    good = checkpoint_of(model, data, train_config={}, history=[],
                         trained_on=TrainedOn("x", fingerprint="y")).to_bytes()
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
        "history holds text": {"history": json.dumps([{"epoch": 0, "valid_rmse": "0.3"}])},
        "history nested deep": {"history": json.dumps([{"epoch": 0, "x": [[[[1.0]]]]}])},
        "outcome not an object": {"outcome": json.dumps([1])},
        "best epoch text": {"outcome": json.dumps({"best_epoch": "3"})},
        "trained_on rows negative": {"trained_on": json.dumps({"rows": {"train": -1}})},
        "label range reversed": {"trained_on": json.dumps({"label_range": [2, 1]})},
        "checksum of other weights": {"tensors_sha256": "0" * 64},
    }.items():
        cases[label] = rebuild({**header, "__metadata__": {**meta, **change}}, body)
    wrong_shape = json.loads(json.dumps(header))
    wrong_shape["embedding.weight"]["shape"] = [99, 6]
    cases["wrong shape"] = rebuild(wrong_shape, body)
    nan_model = build_model(model.config)
    with torch.no_grad():
        nan_model.bias.fill_(float("nan"))
    cases["nan weights"] = checkpoint_of(nan_model, data, train_config={}, history=[]).to_bytes()

    for label, blob in cases.items():
        path = tmp_path / f"{label}.safetensors"
        path.write_bytes(blob)
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        assert str(path) in str(info.value), label


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "none.safetensors")


def test_a_flipped_bit_in_the_weights_is_found(tmp_path):
    """A bit flip leaves finite numbers that parse; only the checksum can tell."""
    model, data = trained_like()
    blob = bytearray(checkpoint_of(model, data).to_bytes())
    blob[-3] ^= 0x40  # inside the last tensor's float32 bytes
    path = tmp_path / "flipped.safetensors"
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


def test_settings_and_outcome_are_apart_and_round_trip(tmp_path):
    model, data = trained_like()
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", checkpoint_of(model, data)))
    assert loaded.outcome == Outcome(best_epoch=3, stop_reason="completed", device="cpu", world_size=1)
    assert loaded.trained_on == TrainedOn(data.name, fingerprint=data.fingerprint, label_range=data.label_range)
    assert not set(loaded.train_config) & {"best_epoch", "stop_reason", "device_used", "world_size"}
    assert not loaded.unchecked


def test_a_version_1_file_is_read_with_its_outcome_moved_out_of_the_settings(tmp_path, capsys):
    """Files written before version 2 kept the outcome inside train_config and had no checksum."""
    model, data = trained_like()
    header, body = header_and_body(checkpoint_of(model, data).to_bytes())
    meta = dict(header["__metadata__"])
    for key in ("trained_on", "outcome", "tensors_sha256"):
        meta.pop(key)
    meta.update(format_version="1", train_config=json.dumps(
        {"task": "regression", "lr": 0.1, "best_epoch": 2, "stop_reason": "interrupted", "device_used": "cpu"}),
        dataset=json.dumps({"name": "old", "source": "/data/old", "label_range": [1, 5], "rows": {"train": 7}}))
    path = tmp_path / "v1.safetensors"
    path.write_bytes(rebuild({**header, "__metadata__": meta}, body))
    loaded = load_checkpoint(path)
    assert loaded.train_config == {"task": "regression", "lr": 0.1}
    assert loaded.outcome == Outcome(best_epoch=2, stop_reason="stopped", device="cpu")
    assert loaded.trained_on == TrainedOn("old", "/data/old", None, (1.0, 5.0), {"train": 7})
    assert loaded.unchecked and loaded.best_epoch == 2
    assert main(["history", "--checkpoint", str(path)]) == 0
    assert "was saved without a checksum" in capsys.readouterr().err
