"""DeepCTR-Torch 0.3.0 (github.com/shenweichen/DeepCTR-Torch): `deepctr_torch.models.AFM`, with
attention (use_attention=True) or as an FM (use_attention=False), over sparse features.

DeepCTR-Torch keeps one embedding table per feature column (`SparseFeat(name, vocabulary_size,
embedding_dim)`), looked up with that column's own ids 0 .. vocabulary_size - 1. Here the
columns become fields, in the order given (`fields`, default: the order the weights list them),
and value i of field f is our feature id offset_f + i (offsets: the running sum of the
vocabulary sizes in that order). The order does not change any prediction (the pairs are summed,
the softmax runs over all of them); it only says which column of your rows is which field.

Parameter map:  ours                 DeepCTR-Torch
                embedding v          embedding_dict.NAME.weight                 (V, k) per field
                linear w             linear_model.embedding_dict.NAME.weight    (V, 1) per field
                bias w0              out.bias                                   (1,)
                attention W, b       fm.attention_W (k, t) transposed, fm.attention_b (t,)
                h                    fm.projection_h[:, 0]                      (t,)
                p                    fm.projection_p[:, 0]                      (k,)
`task` is the `task` the model was built with: "binary" ends in a sigmoid (our raw score is
its logit), "regression" does not. Dense features (DenseFeat) have no counterpart here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from afm.checkpoint import Checkpoint
from afm.errors import CheckpointError, ConfigError
from afm.importers.weights import StateReader, check_shape, imported_checkpoint, imported_schema, read_state_dict
from afm.train import TASKS

LIBRARY = "DeepCTR-Torch 0.3.0"
EMBEDDING, LINEAR = "embedding_dict.", "linear_model.embedding_dict."


def import_deepctr(weights: str | os.PathLike, fields: Sequence[str] | None = None, task: str = "binary",
                   features: str | os.PathLike | None = None) -> Checkpoint:
    """A checkpoint of the DeepCTR-Torch AFM whose state_dict is in `weights`."""
    label = str(weights)
    if task not in TASKS:
        raise ConfigError(f"task must be one of {TASKS}, got {task!r}")
    state = read_state_dict(weights)
    listed = [k[len(EMBEDDING):-len(".weight")] for k in state if k.startswith(EMBEDDING) and k.endswith(".weight")]
    if "linear_model.weight" in state:
        raise CheckpointError(label, "the model has dense features (DenseFeat); only sparse features can be imported")
    names = list(fields) if fields else listed
    unknown = sorted(set(names) - set(listed))
    if unknown or len(set(names)) != len(names):
        raise ConfigError(f"{label}: fields must name each embedding of the weights once; unknown {unknown[:8]}, "
                          f"the weights have {listed[:20]}")
    if set(listed) - set(names):
        raise ConfigError(f"{label}: the weights also have fields {sorted(set(listed) - set(names))[:8]}; "
                          "list every field")
    if len(names) < 2:
        raise CheckpointError(label, f"{len(names)} sparse feature(s); pairs need at least two")
    reader = StateReader(state, label)
    tables = [reader.take(f"{EMBEDDING}{name}.weight", 2) for name in names]  # (V_f, k) each
    k = tables[0].shape[1]
    for name, table in zip(names, tables):
        check_shape(label, f"{EMBEDDING}{name}.weight", table, (table.shape[0], k))
    linear = []
    for name, table in zip(names, tables):
        key = f"{LINEAR}{name}.weight"
        if reader.has(key):
            weight = reader.take(key, 2)  # (V_f, 1)
            check_shape(label, key, weight, (table.shape[0], 1))
        else:  # a column left out of linear_feature_columns has no first-order term
            weight = torch.zeros(table.shape[0], 1)
        linear.append(weight)
    bias = reader.take("out.bias", 1)  # (1,)
    check_shape(label, "out.bias", bias, (1,))
    ours = {"embedding.weight": torch.cat(tables), "linear.weight": torch.cat(linear), "bias": bias[0]}
    if reader.has("fm.attention_W"):
        model_name, library = "afm", f"{LIBRARY} AFM"
        attention = reader.take("fm.attention_W", 2)  # (k, t)
        t = attention.shape[1]
        check_shape(label, "fm.attention_W", attention, (k, t))
        attention_bias = reader.take("fm.attention_b", 1)  # (t,)
        check_shape(label, "fm.attention_b", attention_bias, (t,))
        h = reader.take("fm.projection_h", 2)  # (t, 1)
        check_shape(label, "fm.projection_h", h, (t, 1))
        p = reader.take("fm.projection_p", 2)  # (k, 1)
        check_shape(label, "fm.projection_p", p, (k, 1))
        ours.update({"attention.weight": attention.T.contiguous(), "attention.bias": attention_bias,
                     "attention_h": h[:, 0].contiguous(), "projection": p[:, 0].contiguous()})
    else:
        model_name, library, t = "fm", f"{LIBRARY} AFM (use_attention=False: an FM)", k
    leftover_linear = [key for key in reader.state if key.startswith(LINEAR)]
    if leftover_linear:
        raise CheckpointError(label, f"first-order weights {leftover_linear[:5]} belong to no embedded field; "
                              "only models whose linear features are among their embedded ones can be imported")
    reader.finish(library)
    schema = imported_schema([t_.shape[0] for t_ in tables], names, features)
    return imported_checkpoint(model_name, ours, schema, k, t, task, library, weights)
