"""What a model is made of (`ModelConfig`): everything needed to rebuild one, checked when made and
saved inside every checkpoint. The models themselves are in afm.models."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from afm.errors import ConfigError
from afm.limits import MAX_DIM, MAX_FEATURES, MAX_FIELDS, MAX_TABLE_WEIGHTS

MODEL_NAMES = ("fm", "fwfm", "afm")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON `true` is not a count


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model. Saved inside every checkpoint."""

    model: str = "afm"  # "fm" | "fwfm" | "afm"
    num_features: int = 0  # rows of the embedding tables: the largest feature id + 1
    num_fields: int = 0  # F: every row holds one feature per field, P = F(F-1)/2 pairs
    embedding_dim: int = 256  # k; the paper uses 256 on Frappe and MovieLens
    attention_dim: int = 256  # t, width of AFM's attention MLP; paper 256 (AFM only)
    dropout_attention: float = 0.0  # on a_ij: 1 - keep[0]; the Frappe recipe keeps all (AFM only)
    dropout_pooled: float = 0.2  # on the pooled k-vector: 1 - keep[1] (AFM), 1 - keep (FM)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        checks = [
            (self.model in MODEL_NAMES, f"model must be one of {MODEL_NAMES}, got {self.model!r}"),
            (_is_int(self.num_features) and 0 < self.num_features <= MAX_FEATURES,
             f"num_features must be in 1..{MAX_FEATURES:,}, got {self.num_features!r}"),
            (_is_int(self.num_fields) and 2 <= self.num_fields <= MAX_FIELDS,
             f"num_fields must be in 2..{MAX_FIELDS} (pairs need two fields), got {self.num_fields!r}"),
            (_is_int(self.embedding_dim) and 1 <= self.embedding_dim <= MAX_DIM,
             f"embedding_dim must be in 1..{MAX_DIM}, got {self.embedding_dim!r}"),
            (_is_int(self.attention_dim) and 1 <= self.attention_dim <= MAX_DIM,
             f"attention_dim must be in 1..{MAX_DIM}, got {self.attention_dim!r}"),
            (isinstance(self.dropout_attention, float) and 0.0 <= self.dropout_attention < 1.0,
             f"dropout_attention must be in [0, 1), got {self.dropout_attention!r}"),
            (isinstance(self.dropout_pooled, float) and 0.0 <= self.dropout_pooled < 1.0,
             f"dropout_pooled must be in [0, 1), got {self.dropout_pooled!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.num_features * self.embedding_dim > MAX_TABLE_WEIGHTS:
            raise ConfigError(f"an embedding table of {self.num_features:,} x {self.embedding_dim} is more than the "
                              f"{MAX_TABLE_WEIGHTS:,} weights supported; lower k, or remap sparse feature ids to "
                              "0..n-1 (the table has a row for every id up to the largest)")

    @property
    def num_pairs(self) -> int:
        return self.num_fields * (self.num_fields - 1) // 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict) -> ModelConfig:
        if not isinstance(obj, dict):
            raise ConfigError("model config must be an object")
        known = {f.name for f in fields(cls)}
        unknown = set(obj) - known
        if unknown:
            raise ConfigError(f"unknown model config keys {sorted(unknown)}")
        values = dict(obj)
        for key in ("dropout_attention", "dropout_pooled"):  # JSON writes 0.0 as 0
            if type(values.get(key)) is int:
                values[key] = float(values[key])
        return cls(**values)
