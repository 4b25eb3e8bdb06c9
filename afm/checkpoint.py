"""Checkpoints: safetensors weights plus JSON metadata (configs, history, schema, data fingerprint).

safetensors is plain data: raw tensor bytes behind a JSON header, so loading one can never run
code, unlike a pickle. Only regular files are read, and every field is validated before
anything is allocated: the schema must describe exactly the model's features, and the tensor
shapes in the header are compared with a model built from the config (on the `meta` device when
it would be large), so a small hostile file cannot make us allocate a huge table. Saves are
atomic (`afm.files.write_atomic`), so an interrupted save never leaves a half-written checkpoint.
"""

from __future__ import annotations

import copy
import json
import math
import os
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from afm.data import Dataset, FieldSchema, TabularEncoder
from afm.errors import AFMError, CheckpointError
from afm.files import read_regular_file, write_atomic
from afm.jsonsafe import finite
from afm.models import ModelConfig, PairwiseModel, build_model
from afm.train import TASKS, TrainResult

FORMAT = "afm-checkpoint"
FORMAT_VERSION = 1
MAX_CHECKPOINT_BYTES = 8 * 1024**3
MAX_HEADER_BYTES = 64 * 1024**2
SMALL_MODEL_WEIGHTS = 50_000_000  # below this, build the model itself to check shapes (200 MB)


@dataclass
class Checkpoint:
    """A trained model with everything needed to rebuild, score and explain it."""

    model: PairwiseModel
    model_config: ModelConfig
    train_config: dict  # TrainConfig's fields plus best_epoch, stop_reason, device_used, init_from, ...
    history: list[dict]  # one record per epoch; epoch 0 is the model before training (empty: imported)
    schema: FieldSchema
    dataset: dict  # name, source, fingerprint, label_range, rows
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @classmethod
    def from_training(cls, result: TrainResult, dataset: Dataset, **extra) -> Checkpoint:
        """The one place a training result becomes a checkpoint (CLI, app jobs, bundled models)."""
        train_config = {**result.config.to_dict(), "best_epoch": result.best_epoch, "stop_reason": result.stop_reason,
                        "device_used": result.device, **extra}
        return cls(result.model, result.model.config, train_config, result.history, dataset.schema, dataset.info())

    @property
    def best_epoch(self) -> int | None:
        return self.train_config.get("best_epoch")

    @property
    def best(self) -> dict:
        """The history record of the best epoch (the last one when none is marked, {} when empty)."""
        best = self.best_epoch
        return next((r for r in self.history if r.get("epoch") == best), self.history[-1] if self.history else {})

    @property
    def task(self) -> str:
        return self.train_config.get("task", "regression")

    @property
    def label_range(self) -> tuple[float, float] | None:
        value = self.dataset.get("label_range")
        return (float(value[0]), float(value[1])) if value else None

    def copy(self) -> Checkpoint:
        """An independent copy: a shared (cached) checkpoint is never mutated through it."""
        return copy.deepcopy(self)

    def check_fits(self, dataset: Dataset) -> list[str]:
        """Raise if the model cannot score this data; return warnings if it is merely other data."""
        config, trained_on = self.model_config, self.dataset.get("name")
        if dataset.schema.num_fields != config.num_fields:
            raise CheckpointError(trained_on or "checkpoint",
                                  f"the model expects {config.num_fields} fields, the data {dataset.name!r} has "
                                  f"{dataset.schema.num_fields}; it was trained on {trained_on!r}")
        if dataset.schema.field_names != self.schema.field_names:
            raise CheckpointError(trained_on or "checkpoint",
                                  f"the model's fields are {list(self.schema.field_names)[:10]}, the data's "
                                  f"{list(dataset.schema.field_names)[:10]}; it was trained on {trained_on!r}")
        shared = min(dataset.schema.num_features, config.num_features)
        if not np.array_equal(dataset.schema.feature_field[:shared], self.schema.feature_field[:shared]):
            raise CheckpointError(trained_on or "checkpoint",
                                  f"the same feature ids belong to other fields in {dataset.name!r} than in the "
                                  f"model's training data {trained_on!r}")
        largest = max((int(s.feature_ids.max()) for s in dataset.splits.values() if len(s)), default=-1)
        if largest >= config.num_features:
            raise CheckpointError(trained_on or "checkpoint",
                                  f"the data has feature id {largest}, the model knows {config.num_features} "
                                  f"features; it was trained on {trained_on!r}")
        if self.schema.csv_encoding != dataset.schema.csv_encoding:
            raise CheckpointError(trained_on or "checkpoint",
                                  "the data was encoded differently from the model's training data; load it "
                                  "with the model's schema (afm.data.load_dataset(..., schema=checkpoint.schema))")
        if self.dataset.get("fingerprint") != dataset.fingerprint:
            return [f"this checkpoint was trained on {trained_on!r} (fingerprint {self.dataset.get('fingerprint')}), "
                    f"not on this exact data ({dataset.fingerprint})"]
        return []

    def to_bytes(self) -> bytes:
        tensors = {name: t.detach().to("cpu", torch.float32).contiguous()
                   for name, t in self.model.state_dict().items()}
        metadata = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "created": self.created,
            "model_config": json.dumps(self.model_config.to_dict()),
            "train_config": json.dumps(finite(self.train_config), allow_nan=False),
            "history": json.dumps(finite(self.history), allow_nan=False),
            "schema": json.dumps(finite(self.schema.to_json()), allow_nan=False),
            "dataset": json.dumps(finite(self.dataset), allow_nan=False),
        }
        return save_safetensors(tensors, metadata=metadata)


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> Path:
    """Write atomically: a reader sees the old file or the complete new one, never a part."""
    return write_atomic(path, checkpoint.to_bytes(), lambda problem: CheckpointError(path, problem))


def load_checkpoint(source: str | os.PathLike | bytes, device: str | torch.device = "cpu",
                    name: str | None = None) -> Checkpoint:
    """Load from a path or from bytes (an upload). Raises CheckpointError with the reason."""
    if isinstance(source, (bytes, bytearray)):
        label = name or "uploaded checkpoint"
        data = bytes(source)
        if len(data) > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(label, f"{len(data):,} bytes, more than any checkpoint of ours")
    else:
        label = name or str(source)
        data = read_regular_file(source, MAX_CHECKPOINT_BYTES, lambda problem: CheckpointError(label, problem))
    header = _read_header(data, label)
    metadata = header.pop("__metadata__", None)
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(label, "not an AFM checkpoint (no afm-checkpoint metadata)")
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(label, f"checkpoint format version {str(metadata.get('format_version'))[:20]!r} is "
                              f"not supported (this version reads {FORMAT_VERSION})")
    fields = {key: _json_field(metadata, key, label)
              for key in ("model_config", "train_config", "history", "schema", "dataset")}
    try:
        config = ModelConfig.from_dict(fields["model_config"])
        schema = FieldSchema.from_json(fields["schema"], label, num_features=config.num_features)
        TabularEncoder.of(schema, label)
    except (AFMError, TypeError) as exc:
        raise CheckpointError(label, f"invalid metadata: {getattr(exc, 'problem', exc)}") from None
    if schema.num_fields != config.num_fields:
        raise CheckpointError(label, "schema and model config disagree on the number of fields")
    _check_records(fields, label)
    # Compare the declared tensors with what the config needs before allocating anything big: a
    # small file must not make us build a model of billions of weights. Small models are simply
    # built (the meta device's first use costs a second of imports).
    if config.num_features * (config.embedding_dim + 1) <= SMALL_MODEL_WEIGHTS:
        model = build_model(config)
        expected = {n: tuple(t.shape) for n, t in model.state_dict().items()}
    else:
        model = None
        with torch.device("meta"):
            expected = {n: tuple(t.shape) for n, t in build_model(config).state_dict().items()}
    declared = {n: tuple(v.get("shape", ())) for n, v in header.items() if isinstance(v, dict)}
    if declared != expected:
        missing, extra = sorted(set(expected) - set(declared)), sorted(set(declared) - set(expected))
        wrong = sorted(n for n in set(expected) & set(declared) if expected[n] != declared[n])
        raise CheckpointError(label, f"tensors do not match a {config.model} model "
                              f"(missing {missing[:5]}, unexpected {extra[:5]}, wrong shape {wrong[:5]})")
    if any(v.get("dtype") != "F32" for v in header.values() if isinstance(v, dict)):
        raise CheckpointError(label, "tensors must be float32")
    try:
        tensors = load_safetensors(data)
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(label, f"damaged tensor data ({str(exc)[:200]})") from None
    for tensor_name, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise CheckpointError(label, f"tensor {tensor_name} holds NaN or infinite values")
    model = model or build_model(config)
    model.load_state_dict(tensors)
    model.to(device).eval()
    return Checkpoint(model, config, fields["train_config"], fields["history"], schema, fields["dataset"],
                      str(metadata.get("created", ""))[:40])


def _check_records(fields: dict, label: str) -> None:
    """The JSON parts a reader relies on have the types and values it expects."""
    history, train_config, dataset = fields["history"], fields["train_config"], fields["dataset"]
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise CheckpointError(label, "history must be a list of records")
    if not all(type(r.get("epoch")) is int and r["epoch"] >= 0 for r in history):
        raise CheckpointError(label, "every history record needs an integer epoch >= 0")
    if not isinstance(train_config, dict) or not isinstance(dataset, dict):
        raise CheckpointError(label, "train_config and dataset must be objects")
    if train_config.get("task", "regression") not in TASKS:
        raise CheckpointError(label, f"train_config task must be one of {TASKS}")
    best = train_config.get("best_epoch")
    if best is not None and type(best) is not int:
        raise CheckpointError(label, "train_config best_epoch must be an integer")
    label_range = dataset.get("label_range")
    if label_range is not None and not (
            isinstance(label_range, list) and len(label_range) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in label_range)
            and label_range[0] <= label_range[1]):
        raise CheckpointError(label, "dataset label_range must be [low, high] with finite numbers, low <= high")


def _read_header(data: bytes, label: str) -> dict:
    if len(data) < 8:
        raise CheckpointError(label, "file is too short to be a checkpoint")
    (length,) = struct.unpack("<Q", data[:8])
    if length > min(MAX_HEADER_BYTES, len(data) - 8):
        raise CheckpointError(label, "not a safetensors file (header length out of range)")
    try:
        header = json.loads(data[8:8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(label, "not a safetensors file (header is not JSON)") from None
    except RecursionError:
        raise CheckpointError(label, "not a safetensors file (header nested too deeply)") from None
    if not isinstance(header, dict):
        raise CheckpointError(label, "not a safetensors file (header is not an object)")
    return header


def _json_field(metadata: dict, key: str, label: str):
    raw = metadata.get(key)
    if not isinstance(raw, str):
        raise CheckpointError(label, f"metadata field {key!r} is missing")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise CheckpointError(label, f"metadata field {key!r} is not valid JSON (or nested too deeply)") from None
