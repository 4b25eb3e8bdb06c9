"""Another library's state_dict, read as plain data, and the parts every importer shares.

A state_dict comes as a safetensors file (raw tensors behind a JSON header: reading it cannot
run code) or as a PyTorch `.pt`/`.pth` file, which is a pickle. A pickle can name any callable
to run while it loads, so `.pt` files are read only with `torch.load(weights_only=True)`, whose
unpickler builds tensors and plain containers and refuses everything else: a file that would
run code (or rebuild a whole model object) is refused with the way to save a loadable one.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from safetensors.torch import load as load_safetensors

from afm.checkpoint import MAX_CHECKPOINT_BYTES, Checkpoint, TrainedOn
from afm.data import FieldSchema
from afm.data.schema import schema_from_tsv
from afm.errors import CheckpointError, ConfigError
from afm.files import read_regular_file
from afm.models import ModelConfig, build_model

NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model")  # {"state_dict": {...}, "epoch": 3, ...}
_UNSAFE_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")
SAVE_ADVICE = ("Save the weights with torch.save(model.state_dict(), PATH) or safetensors.torch.save_file("
               "model.state_dict(), PATH)")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors or `.pt` state_dict, by name, on the CPU ('module.' prefixes of
    DataParallel removed)."""
    label = str(path)
    data = read_regular_file(path, MAX_CHECKPOINT_BYTES, lambda problem: CheckpointError(label, problem))
    if _looks_like_safetensors(data):
        try:
            state = load_safetensors(data)
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise CheckpointError(label, f"damaged safetensors file ({str(exc)[:200]})") from None
    else:
        state = _load_pickle_weights(data, label)
    for key in NESTED_STATE_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not (isinstance(state, Mapping) and state and all(isinstance(k, str) for k in state)):
        raise CheckpointError(label, f"holds no state_dict (a mapping from names to tensors). {SAVE_ADVICE}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(label, f"entries {bad[:5]} are not tensors. {SAVE_ADVICE}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _looks_like_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    (length,) = struct.unpack("<Q", data[:8])
    return length <= len(data) - 8 and data[8:9] == b"{"


def _load_pickle_weights(data: bytes, label: str):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols; the outcome is what counts
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        called = _UNSAFE_GLOBAL.search(str(exc))
        if called:
            raise CheckpointError(label, f"refused: loading this pickle would call {called.group(1)[:80]} (code, or "
                                  f"Python objects that are not tensors); it was not loaded. {SAVE_ADVICE}") from None
        raise CheckpointError(label, "refused: not a file that torch.load(weights_only=True) can read safely (a "
                              f"pickle of more than tensors, or no PyTorch file at all). {SAVE_ADVICE}") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for files that are not its own
        raise CheckpointError(label, f"not a safetensors or PyTorch weights file ({type(exc).__name__})") from None


class StateReader:
    """Takes named tensors out of a state_dict with the shapes a mapping expects; what remains
    at the end is an error (a different model than the importer maps)."""

    def __init__(self, state: dict[str, torch.Tensor], label: str):
        self.state = dict(state)
        self.label = label

    def has(self, name: str) -> bool:
        return name in self.state

    def take(self, name: str, ndim: int) -> torch.Tensor:
        if name not in self.state:
            raise CheckpointError(self.label, f"tensor {name!r} is missing; the file has {sorted(self.state)[:12]}")
        tensor = self.state.pop(name)
        if tensor.ndim != ndim or not tensor.is_floating_point():
            raise CheckpointError(self.label, f"tensor {name!r} has shape {tuple(tensor.shape)} and dtype "
                                  f"{tensor.dtype}; expected {ndim} dimensions of floats")
        tensor = tensor.detach().to(torch.float32)
        if not torch.isfinite(tensor).all():
            raise CheckpointError(self.label, f"tensor {name!r} holds NaN or infinite values")
        return tensor

    def finish(self, model_name: str) -> None:
        if self.state:
            raise CheckpointError(self.label, f"tensors {sorted(self.state)[:8]} are not part of a {model_name}; "
                                  "is this the model the importer expects?")


def check_shape(label: str, name: str, tensor: torch.Tensor, expected: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != expected:
        raise CheckpointError(label, f"tensor {name!r} has shape {tuple(tensor.shape)}, expected {expected}")


def imported_schema(field_dims: Sequence[int], field_names: Sequence[str] | None = None,
                    features: str | os.PathLike | None = None) -> FieldSchema:
    """Fields of contiguous feature ranges (field f: ids offset_f .. offset_f + dims_f - 1), named
    by `field_names`, or with every feature named by a features.tsv (feature, field, value)."""
    dims = np.asarray(field_dims, dtype=np.int64)
    feature_field = np.repeat(np.arange(len(dims), dtype=np.int16), dims)
    names = list(field_names) if field_names else [f"field{f}" for f in range(len(dims))]
    if len(names) != len(dims) or len(set(names)) != len(names):
        raise ConfigError(f"give {len(dims)} distinct field names, one per field; got {names[:12]}")
    if features is None:
        return FieldSchema(tuple(names), feature_field)
    table = schema_from_tsv(features, int(dims.sum()))
    if table.num_features != len(feature_field) or not np.array_equal(table.feature_field, feature_field):
        raise ConfigError(f"{features}: its fields do not cover the weights' {len(dims)} fields of "
                          f"{dims.tolist()[:12]} features in that order")
    if field_names and list(table.field_names) != names:
        raise ConfigError(f"{features} names the fields {list(table.field_names)[:12]}, not {names[:12]}")
    return table


def imported_checkpoint(model_name: str, weights: dict[str, torch.Tensor], schema: FieldSchema,
                        embedding_dim: int, attention_dim: int, task: str, library: str,
                        source: str | os.PathLike) -> Checkpoint:
    """A checkpoint of our model `model_name` holding `weights` (our parameter names), with an
    empty history and a note of where it came from."""
    config = ModelConfig(model=model_name, num_features=schema.num_features, num_fields=schema.num_fields,
                         embedding_dim=embedding_dim, attention_dim=attention_dim, dropout_attention=0.0,
                         dropout_pooled=0.0)
    model = build_model(config, seed=0)
    model.load_state_dict(weights)
    model.eval()
    train_config = {"task": task, "imported_from": library, "weights": str(source)}
    return Checkpoint(model, config, train_config, [], schema,
                      TrainedOn(name=f"imported from {library.split()[0]}", location=str(source)))


def parse_names(text: str | None) -> list[str] | None:
    """'a,b,c' -> ['a', 'b', 'c'] (None stays None)."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise ConfigError(f"empty name in {json.dumps(text)}")
    return names
