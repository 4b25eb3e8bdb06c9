"""torchfm 0.7.0 (github.com/rixwew/pytorch-fm): AttentionalFactorizationMachineModel and
FactorizationMachineModel.

torchfm keeps one embedding table for all fields and adds each field's offset to the per-field
ids it is given: its feature i of field f is our feature id offset_f + i (offsets: the running
sum of `field_dims`). Its models end in a sigmoid, so they are binary-task models here: our raw
score is torchfm's logit and our probability its output.

Parameter map (AFM):  ours                 torchfm
                      embedding v          embedding.embedding.weight   (N, k)
                      linear w             linear.fc.weight             (N, 1)
                      bias w0              linear.bias + afm.fc.bias
                      attention W, b       afm.attention.weight (t, k), afm.attention.bias (t,)
                      h                    afm.projection.weight[0]     (t,)
                      p                    afm.fc.weight[0]             (k,)
afm.projection.bias adds the same number to every pair's score before the softmax over pairs,
which cancels it, so it is dropped. k and t come from the weights' shapes. torchfm applies its
dropouts at inference too (F.dropout without `training`); outputs agree for dropouts of 0.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from afm.checkpoint import Checkpoint
from afm.errors import ConfigError
from afm.importers.weights import StateReader, check_shape, imported_checkpoint, imported_schema, read_state_dict

LIBRARY = "torchfm 0.7.0"


def import_torchfm(weights: str | os.PathLike, field_dims: Sequence[int], field_names: Sequence[str] | None = None,
                   features: str | os.PathLike | None = None) -> Checkpoint:
    """A checkpoint of the torchfm AFM (or FM) whose state_dict is in `weights`."""
    label = str(weights)
    if len(field_dims) < 2 or any(d <= 0 for d in field_dims):
        raise ConfigError(f"--field-dims needs at least two positive sizes, got {list(field_dims)[:12]}")
    reader = StateReader(read_state_dict(weights), label)
    embedding = reader.take("embedding.embedding.weight", 2)  # (N, k)
    num_features, k = embedding.shape
    if num_features != sum(field_dims):
        raise ConfigError(f"{label}: the embedding table has {num_features:,} rows but --field-dims add up to "
                          f"{sum(field_dims):,}; give the field_dims the model was built with")
    linear = reader.take("linear.fc.weight", 2)  # (N, 1)
    check_shape(label, "linear.fc.weight", linear, (num_features, 1))
    bias = reader.take("linear.bias", 1)  # (1,)
    check_shape(label, "linear.bias", bias, (1,))
    ours = {"embedding.weight": embedding, "linear.weight": linear}
    if reader.has("afm.attention.weight"):
        model_name, library = "afm", f"{LIBRARY} AttentionalFactorizationMachineModel"
        attention = reader.take("afm.attention.weight", 2)  # (t, k)
        t = attention.shape[0]
        check_shape(label, "afm.attention.weight", attention, (t, k))
        attention_bias = reader.take("afm.attention.bias", 1)  # (t,)
        check_shape(label, "afm.attention.bias", attention_bias, (t,))
        h = reader.take("afm.projection.weight", 2)  # (1, t)
        check_shape(label, "afm.projection.weight", h, (1, t))
        reader.take("afm.projection.bias", 1)  # cancelled by the softmax over pairs
        p = reader.take("afm.fc.weight", 2)  # (1, k)
        check_shape(label, "afm.fc.weight", p, (1, k))
        output_bias = reader.take("afm.fc.bias", 1)  # (1,)
        check_shape(label, "afm.fc.bias", output_bias, (1,))
        ours.update({"bias": (bias + output_bias)[0], "attention.weight": attention, "attention.bias": attention_bias,
                     "attention_h": h[0], "projection": p[0]})
    else:
        model_name, library, t = "fm", f"{LIBRARY} FactorizationMachineModel", k
        ours["bias"] = bias[0]
    reader.finish(library)
    schema = imported_schema(field_dims, field_names, features)
    return imported_checkpoint(model_name, ours, schema, k, t, "binary", library, weights)
