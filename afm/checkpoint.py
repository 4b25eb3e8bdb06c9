"""Checkpoints: safetensors weights plus JSON metadata: the settings asked for (model and
training configs), the outcome (best epoch, why it stopped, where it ran), the history, the
schema and what is known of the training data.

safetensors is plain data: raw tensor bytes behind a JSON header, so loading one can never run
code, unlike a pickle. Only regular files are read, and every field is validated before
anything is allocated: the schema must describe exactly the model's features, and the tensor
shapes in the header are compared with a model built from the config (on the `meta` device when
it would be large), so a small hostile file cannot make us allocate a huge table. Saves are
atomic (`afm.files.write_atomic`), so an interrupted save never leaves a half-written checkpoint.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from afm.data import SPLITS, Dataset, FieldSchema, TabularEncoder
from afm.errors import AFMError, CheckpointError, ConfigError
from afm.files import read_regular_file, write_atomic
from afm.finite_json import finite
from afm.inference import split_outputs
from afm.metrics import evaluate_predictions
from afm.models import ModelConfig, PairwiseModel, build_model
from afm.recipe import Recipe
from afm.train import TASKS, TrainResult
from afm.training_plan import resolve_device

FORMAT = "afm-checkpoint"
FORMAT_VERSION = 2  # 2: outcome and trained_on apart from the settings; 1 is still read
MAX_CHECKPOINT_BYTES = 8 * 1024**3
MAX_HEADER_BYTES = 64 * 1024**2
SMALL_MODEL_WEIGHTS = 50_000_000  # below this, build the model itself to check shapes (200 MB)


@dataclass(frozen=True)
class TrainedOn:
    """What a checkpoint records of its training data (the rows themselves never travel with it)."""

    name: str | None = None
    location: str | None = None  # where the rows were read from: a path, or "uploaded file NAME"
    fingerprint: str | None = None  # content hash of every split (Dataset.fingerprint)
    label_range: tuple[float, float] | None = None  # training labels' range; RMSE clips predictions to it
    rows: dict[str, int] = field(default_factory=dict)  # rows per split

    @classmethod
    def of(cls, dataset: Dataset) -> TrainedOn:
        return cls(dataset.name, dataset.location, dataset.fingerprint, dataset.label_range,
                   {name: len(split) for name, split in dataset.splits.items()})

    def to_json(self) -> dict:
        return {"name": self.name, "location": self.location, "fingerprint": self.fingerprint,
                "label_range": list(self.label_range) if self.label_range else None, "rows": dict(self.rows)}

    @classmethod
    def from_json(cls, obj: dict, label: str) -> TrainedOn:
        """Checked field by field: a reader relies on these types. Version 1 called location "source"."""
        name, location, fingerprint = obj.get("name"), obj.get("location", obj.get("source")), obj.get("fingerprint")
        if not all(v is None or isinstance(v, str) for v in (name, location, fingerprint)):
            raise CheckpointError(label, "trained_on name, location and fingerprint must be text")
        label_range = obj.get("label_range")
        if label_range is not None and not (
                isinstance(label_range, list) and len(label_range) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                        for v in label_range) and label_range[0] <= label_range[1]):
            raise CheckpointError(label, "trained_on label_range must be [low, high] with finite numbers, low <= high")
        rows = obj.get("rows") or {}
        if not isinstance(rows, dict) or not all(type(v) is int and v >= 0 for v in rows.values()):
            raise CheckpointError(label, "trained_on rows must map split names to row counts")
        return cls(name, location, fingerprint, tuple(float(v) for v in label_range) if label_range else None,
                   {str(k): v for k, v in rows.items()})


@dataclass(frozen=True)
class Outcome:
    """How the training went, as opposed to the settings it was asked for (train_config)."""

    best_epoch: int | None = None  # the epoch whose weights were saved; None: imported or made by hand
    stop_reason: str | None = None  # a StopReason value
    device: str | None = None  # where it trained, e.g. "cpu" or "cuda:0"
    world_size: int = 1  # processes that trained it together (torchrun)

    @classmethod
    def of(cls, result: TrainResult) -> Outcome:
        return cls(result.best_epoch, str(result.stop_reason), result.device, result.world_size)

    def to_json(self) -> dict:
        return {"best_epoch": self.best_epoch, "stop_reason": self.stop_reason, "device": self.device,
                "world_size": self.world_size}

    @classmethod
    def from_json(cls, obj: dict, label: str) -> Outcome:
        best, reason, device, world = (obj.get("best_epoch"), obj.get("stop_reason"), obj.get("device"),
                                       obj.get("world_size", 1))
        if best is not None and not (type(best) is int and best >= 0):
            raise CheckpointError(label, "outcome best_epoch must be an integer >= 0")
        if not all(v is None or isinstance(v, str) for v in (reason, device)):
            raise CheckpointError(label, "outcome stop_reason and device must be text")
        if not (type(world) is int and world >= 1):
            raise CheckpointError(label, "outcome world_size must be an integer >= 1")
        return cls(best, reason, device, world)


# Version 1 kept the outcome inside train_config, under these names.
_V1_OUTCOME_KEYS = {"best_epoch": "best_epoch", "stop_reason": "stop_reason", "device_used": "device",
                    "world_size": "world_size"}
_V1_STOP_REASONS = {"stop_requested": "stopped", "interrupted": "stopped"}


@dataclass
class Checkpoint:
    """A trained model with everything needed to rebuild, score and explain it."""

    model: PairwiseModel
    model_config: ModelConfig
    train_config: dict  # the settings: TrainConfig's fields, init_from, match_fm, preset (imports: their source)
    history: list[dict]  # one record per epoch; epoch 0 is the model before training (empty: imported)
    schema: FieldSchema
    trained_on: TrainedOn = field(default_factory=TrainedOn)
    outcome: Outcome = field(default_factory=Outcome)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    unchecked: bool = False  # loaded from a file saved without a checksum of its weights (before version 2)

    @classmethod
    def from_training(cls, result: TrainResult, dataset: Dataset, recipe: Recipe) -> Checkpoint:
        """The one place a training result becomes a checkpoint (`afm.fitting.fit_recipe`): the
        recipe is saved whole, its model settings in model_config, the rest in train_config."""
        return cls(result.model, result.model.config, {**result.config.to_dict(), **recipe.settings()},
                   result.history, dataset.schema, TrainedOn.of(dataset), Outcome.of(result))

    @property
    def recipe(self) -> Recipe:
        """The recipe this model was trained with, read from any checkpoint format (settings an
        older format did not record take their defaults; an imported model's are its importer's)."""
        return Recipe.from_checkpoint(self.model_config, self.train_config)

    @property
    def best_epoch(self) -> int | None:
        return self.outcome.best_epoch

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
        return self.trained_on.label_range

    def copy(self) -> Checkpoint:
        """An independent copy: a shared (cached) checkpoint is never mutated through it."""
        return copy.deepcopy(self)

    def check_fits(self, dataset: Dataset) -> list[str]:
        """Raise if the model cannot score this data; return warnings if it is merely other data."""
        config, trained_on = self.model_config, self.trained_on.name
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
        if self.trained_on.fingerprint != dataset.fingerprint:
            return [f"this checkpoint was trained on {trained_on!r} (fingerprint {self.trained_on.fingerprint}), "
                    f"not on this exact data ({dataset.fingerprint})"]
        return []

    def evaluate(self, dataset: Dataset, split: str = "test", device: str | torch.device = "cpu") -> dict:
        """The model's metrics on `split` ("all": every row) of data read with its schema: the one way
        a checkpoint is scored (`afm evaluate`, the report). A chunk of rows at a time, so memory-mapped
        data larger than memory is scored too; RMSE clips to the training labels' range."""
        if self.task == "binary" and not dataset.is_binary:
            raise ConfigError("this is a binary-task model and the data's labels are not two classes")
        dataset.check_rows(split)  # an empty choice of rows is an error, not a score of nothing
        names = SPLITS if split == "all" else (split,)
        predictions = np.concatenate([split_outputs(self.model, dataset.splits[n], torch.device(device))
                                      for n in names])
        labels = np.concatenate([dataset.splits[n].labels for n in names])
        metrics = evaluate_predictions(predictions, labels, self.task, self.label_range or dataset.label_range)
        return {**metrics, "rows": len(labels)}

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
            "trained_on": json.dumps(finite(self.trained_on.to_json()), allow_nan=False),
            "outcome": json.dumps(self.outcome.to_json()),
            "tensors_sha256": tensor_checksum(tensors),
        }
        return save_safetensors(tensors, metadata=metadata)


def history_frame(history: list[dict]) -> pd.DataFrame:
    """One line per epoch of a history, its numbers only: the records the trackers nest inside an
    epoch (coupling measures, the attention replay's weights) stay in the checkpoint."""
    table = pd.DataFrame(history)
    nested = [c for c in table.columns if table[c].map(lambda v: isinstance(v, (dict, list))).any()]
    return table.drop(columns=nested)


def tensor_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, shape and float32 bytes in name order: a flipped bit in
    the weights (which parse as other finite numbers) is found on loading."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> Path:
    """Write atomically: a reader sees the old file or the complete new one, never a part."""
    return write_atomic(path, checkpoint.to_bytes(), lambda problem: CheckpointError(path, problem))


def load_checkpoint(source: str | os.PathLike | bytes, device: str | torch.device = "cpu",
                    name: str | None = None) -> Checkpoint:
    """Load from a path or from bytes (an upload). Raises CheckpointError with the reason."""
    device = device if isinstance(device, torch.device) else resolve_device(device)
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
    version = metadata.get("format_version")
    if version not in ("1", str(FORMAT_VERSION)):
        raise CheckpointError(label, f"checkpoint format version {str(version)[:20]!r} is not supported (this "
                              f"version reads 1 to {FORMAT_VERSION})")
    records = ("model_config", "train_config", "history", "schema") + (
        ("dataset",) if version == "1" else ("trained_on", "outcome"))
    fields = {key: _json_field(metadata, key, label) for key in records}
    if version == "1":
        _upgrade_v1(fields)
    try:
        config = ModelConfig.from_dict(fields["model_config"])
        schema = FieldSchema.from_json(fields["schema"], label, num_features=config.num_features)
        TabularEncoder.of(schema, label)
    except (AFMError, TypeError) as exc:
        raise CheckpointError(label, f"invalid metadata: {getattr(exc, 'problem', exc)}") from None
    if schema.num_fields != config.num_fields:
        raise CheckpointError(label, "schema and model config disagree on the number of fields")
    _check_records(fields, label)
    trained_on, outcome = TrainedOn.from_json(fields["trained_on"], label), Outcome.from_json(fields["outcome"], label)
    model = _load_weights(data, header, config, metadata.get("tensors_sha256"), label)
    model.to(device).eval()
    return Checkpoint(model, config, fields["train_config"], fields["history"], schema, trained_on, outcome,
                      str(metadata.get("created", ""))[:40], unchecked="tensors_sha256" not in metadata)


def _load_weights(data: bytes, header: dict, config: ModelConfig, checksum: object, label: str) -> PairwiseModel:
    """The model with the file's weights, once their names, shapes, types, values and checksum are right."""
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
    if checksum is not None and checksum != tensor_checksum(tensors):
        raise CheckpointError(label, "the tensor data does not match its checksum: the file was damaged or "
                              "edited after it was saved")
    for tensor_name, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise CheckpointError(label, f"tensor {tensor_name} holds NaN or infinite values")
    model = model or build_model(config)
    model.load_state_dict(tensors)
    return model


def _upgrade_v1(fields: dict) -> None:
    """A version-1 checkpoint's records as version 2 has them: its outcome moved out of train_config
    (old stop reasons named as today's), its `dataset` record as `trained_on`."""
    settings = fields["train_config"]
    if isinstance(settings, dict):
        fields["outcome"] = {new: settings.pop(old) for old, new in _V1_OUTCOME_KEYS.items() if old in settings}
        reason = fields["outcome"].get("stop_reason")
        fields["outcome"]["stop_reason"] = _V1_STOP_REASONS.get(reason, reason) if isinstance(reason, str) else reason
    else:
        fields["outcome"] = {}
    fields["trained_on"] = fields.pop("dataset")


def _check_records(fields: dict, label: str) -> None:
    """The JSON parts a reader relies on have the types and values it expects."""
    history, train_config = fields["history"], fields["train_config"]
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise CheckpointError(label, "history must be a list of records")
    if not all(type(r.get("epoch")) is int and r["epoch"] >= 0 for r in history):
        raise CheckpointError(label, "every history record needs an integer epoch >= 0")
    for record in history:
        wrong = next((key for key, value in record.items() if not _is_measurement(value)), None)
        if wrong is not None:
            raise CheckpointError(label, f"history epoch {record['epoch']}: {str(wrong)[:40]!r} must be a number "
                                  "(or null, or the coupling record)")
    if not all(isinstance(fields[key], dict) for key in ("train_config", "trained_on", "outcome")):
        raise CheckpointError(label, "train_config, trained_on and outcome must be objects")
    if train_config.get("task", "regression") not in TASKS:
        raise CheckpointError(label, f"train_config task must be one of {TASKS}")


def _is_measurement(value: object, depth: int = 0) -> bool:
    """What a history record holds: numbers and nulls, and records and lists of them nested at most
    three deep (the coupling tracker's matrices)."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return True
    if depth >= 3:
        return False
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
    return items is not None and all(_is_measurement(v, depth + 1) for v in items)


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
