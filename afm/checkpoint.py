"""Checkpoints: safetensors weights plus JSON metadata (configs, history, schema, data fingerprint).

safetensors is plain data: raw tensor bytes behind a JSON header, so loading one can never run
code, unlike a pickle. Every field is validated before anything is allocated: the tensor shapes
in the header are compared with a model built from the config (on the `meta` device when it
would be large), so a hostile header cannot make us allocate a huge table. Saves are atomic (temp file, fsync, rename),
so an interrupted save never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from afm.data import Dataset, FieldSchema
from afm.errors import AFMError, CheckpointError
from afm.jsonsafe import finite
from afm.models import ModelConfig, PairwiseModel, build_model

FORMAT = "afm-checkpoint"
FORMAT_VERSION = 1
MAX_CHECKPOINT_BYTES = 8 * 1024**3
MAX_HEADER_BYTES = 64 * 1024**2
SMALL_MODEL_WEIGHTS = 50_000_000  # below this, build the model itself to check shapes (200 MB)


@dataclass
class Checkpoint:
    model: PairwiseModel
    model_config: ModelConfig
    train_config: dict
    history: list[dict]
    schema: FieldSchema
    dataset: dict  # name, fingerprint, label_range, source
    created: str

    @property
    def best_epoch(self) -> int | None:
        return self.train_config.get("best_epoch")

    def check_fits(self, dataset: Dataset) -> list[str]:
        """Raise if the model cannot score this data; return warnings if it is merely other data."""
        config = self.model_config
        if dataset.schema.num_fields != config.num_fields:
            raise CheckpointError(self.dataset.get("name", "checkpoint"),
                                  f"the model expects {config.num_fields} fields, the data {dataset.name!r} has "
                                  f"{dataset.schema.num_fields}; it was trained on {self.dataset.get('name')!r}")
        largest = max(int(s.feature_ids.max()) for s in dataset.splits.values() if len(s))
        if largest >= config.num_features:
            raise CheckpointError(self.dataset.get("name", "checkpoint"),
                                  f"the data has feature id {largest}, the model knows {config.num_features} "
                                  f"features; it was trained on {self.dataset.get('name')!r}")
        if self.dataset.get("fingerprint") != dataset.fingerprint:
            return [f"this checkpoint was trained on {self.dataset.get('name')!r} "
                    f"(fingerprint {self.dataset.get('fingerprint')}), not on this exact data "
                    f"({dataset.fingerprint})"]
        return []


def checkpoint_bytes(model: PairwiseModel, *, train_config: dict, history: list[dict], schema: FieldSchema,
                     dataset: dict) -> bytes:
    tensors = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_config": json.dumps(model.config.to_dict()),
        "train_config": json.dumps(finite(train_config), allow_nan=False),
        "history": json.dumps(finite(history), allow_nan=False),
        "schema": json.dumps(schema.to_json()),
        "dataset": json.dumps(finite(dataset), allow_nan=False),
    }
    return save_safetensors(tensors, metadata=metadata)


def save_checkpoint(path: str | os.PathLike, model: PairwiseModel, *, train_config: dict, history: list[dict],
                    schema: FieldSchema, dataset: dict) -> Path:
    """Write atomically: a reader sees the old file or the complete new one, never a part."""
    path = Path(path)
    data = checkpoint_bytes(model, train_config=train_config, history=history, schema=schema, dataset=dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it owner-only; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(source: str | os.PathLike | bytes, device: str | torch.device = "cpu",
                    name: str | None = None) -> Checkpoint:
    """Load from a path or from bytes (an upload). Raises CheckpointError with the reason."""
    if isinstance(source, (bytes, bytearray)):
        label = name or "uploaded checkpoint"
        data = bytes(source)
    else:
        label = str(source)
        try:
            size = os.path.getsize(source)
            if size > MAX_CHECKPOINT_BYTES:
                raise CheckpointError(label, f"file is {size} bytes, more than any checkpoint of ours")
            data = Path(source).read_bytes()
        except OSError as exc:
            raise CheckpointError(label, f"cannot read file ({exc.strerror or exc})") from None
    header = _read_header(data, label)
    metadata = header.pop("__metadata__", None)
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(label, "not an AFM checkpoint (no afm-checkpoint metadata)")
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(label, f"checkpoint format version {metadata.get('format_version')!r} is not "
                              f"supported (this version reads {FORMAT_VERSION})")
    fields = {key: _json_field(metadata, key, label)
              for key in ("model_config", "train_config", "history", "schema", "dataset")}
    try:
        config = ModelConfig.from_dict(fields["model_config"])
        schema = FieldSchema.from_json(fields["schema"], label)
    except (AFMError, TypeError) as exc:
        raise CheckpointError(label, f"invalid metadata: {exc}") from None
    if schema.num_fields != config.num_fields:
        raise CheckpointError(label, "schema and model config disagree on the number of fields")
    if not isinstance(fields["history"], list) or not all(isinstance(r, dict) for r in fields["history"]):
        raise CheckpointError(label, "history must be a list of records")
    if not isinstance(fields["train_config"], dict) or not isinstance(fields["dataset"], dict):
        raise CheckpointError(label, "train_config and dataset must be objects")
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
                              f"(missing {missing}, unexpected {extra}, wrong shape {wrong})")
    if any(v.get("dtype") != "F32" for v in header.values() if isinstance(v, dict)):
        raise CheckpointError(label, "tensors must be float32")
    try:
        tensors = load_safetensors(data)
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(label, f"damaged tensor data ({exc})") from None
    for tensor_name, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise CheckpointError(label, f"tensor {tensor_name} holds NaN or infinite values")
    model = model or build_model(config)
    model.load_state_dict(tensors)
    model.to(device).eval()
    return Checkpoint(model, config, fields["train_config"], fields["history"], schema, fields["dataset"],
                      str(metadata.get("created", "")))


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
        raise CheckpointError(label, f"metadata field {key!r} is not valid JSON") from None
