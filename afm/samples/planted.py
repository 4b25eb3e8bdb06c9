"""The bundled synthetic samples: categorical fields with a few *planted* pairwise interactions
of known strength, so the attention analysis has a ground truth to recover.

    y = w0 + sum_f w_f[x_f] + sum_{planted (f,g)} gate_fg(row) * strength_fg * <U_f[x_f], V_g[x_g]> + noise

Each planted interaction is a rank-`rank` table scaled to unit variance, so `strength` is the
standard deviation the pair adds to y where it acts. All other pairs contribute nothing. Two
samples teach two lessons:

- `sample`: the device decides whether the user x item match matters. On phones it drives the
  rating; on laptops it does not count at all (hour x device matters in every row). A fixed
  weight per field pair (FM: 1, FwFM: r_fg) can only split the difference between the two kinds
  of rows; AFM's attention is computed for each row and normalised over the row's pairs, so it
  can put its weight on user x item in phone rows and move it to pairs that add nothing in
  laptop rows. FwFM still beats FM a little: it can weigh hour x device up and the 43 pairs that
  carry nothing down. Order in RMSE: AFM < FwFM < FM (README, `bench/sample_table.py`).
- `sample-fixed`: three pairs that matter equally in every row. One scalar per field pair says
  all there is (FwFM's case); AFM's per-row attention has nothing extra to find.

Regenerate with `python -m afm sample` (same seeds, same bytes).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from afm.data.libfm import LIBFM_SPLIT_SUFFIX
from afm.data.splits import split_indices

# A small, readable world: a user picks an item at some hour on some device...
FIXED_FIELDS = {
    "user": 60, "item": 40, "hour": 24, "device": 4, "weekday": 7,
    "country": 12, "weather": 5, "channel": 6, "age": 6, "plan": 3,
}
GATED_FIELDS = {**FIXED_FIELDS, "user": 30, "item": 20, "device": 2}


@dataclass(frozen=True)
class PlantedPair:
    """Field pair (first, second) adds strength * <U, V>; with `when`, only in the rows whose
    field `when[0]` holds one of the values `when[1]` (by value name)."""

    first: str
    second: str
    strength: float
    when: tuple[str, tuple[str, ...]] | None = None

    @property
    def pair(self) -> str:
        return f"{self.first} x {self.second}"

    def describe(self) -> str:
        condition = f", only where {self.when[0]} is {' or '.join(self.when[1])}" if self.when else ""
        return f"{self.pair} (strength {self.strength:g}{condition})"

    def to_json(self) -> dict:
        out = {"fields": [self.first, self.second], "strength": self.strength}
        if self.when:
            out["when"] = {"field": self.when[0], "values": list(self.when[1])}
        return out

    @classmethod
    def from_json(cls, obj: dict) -> PlantedPair:
        when = obj.get("when")
        return cls(obj["fields"][0], obj["fields"][1], float(obj["strength"]),
                   (when["field"], tuple(when["values"])) if when else None)


@dataclass
class SyntheticConfig:
    name: str = "sample"  # file prefix and registry name
    fields: dict[str, int] = field(default_factory=lambda: dict(GATED_FIELDS))  # name -> cardinality
    value_names: dict[str, list[str]] = field(default_factory=lambda: {"device": ["phone", "laptop"]})
    planted: list[PlantedPair] = field(default_factory=lambda: [
        PlantedPair("user", "item", 1.4, when=("device", ("phone",))), PlantedPair("hour", "device", 0.8)])
    num_rows: int = 15_000
    rank: int = 2  # rank of each planted interaction table
    first_order_scale: float = 0.3  # std of the first-order weights
    noise: float = 0.2  # std of the label noise
    seed: int = 2017

    def value_name(self, field_name: str, value: int) -> str:
        names = self.value_names.get(field_name)
        return names[value] if names else f"{field_name}_{value}"


SAMPLES = {
    "sample": SyntheticConfig(),
    "sample-fixed": SyntheticConfig(
        name="sample-fixed", fields=dict(FIXED_FIELDS), value_names={},
        planted=[PlantedPair("user", "item", 1.0), PlantedPair("hour", "device", 0.8),
                 PlantedPair("weather", "channel", 0.7)]),
}


@dataclass
class SyntheticData:
    feature_ids: np.ndarray  # (N, F) int64, field f's ids start at offsets[f]
    labels: np.ndarray  # (N,) float32
    offsets: np.ndarray  # (F,)
    config: SyntheticConfig

    def feature_names(self) -> list[tuple[int, str, str]]:
        """(feature id, field name, value name) for every feature."""
        rows = []
        for f, (name, size) in enumerate(self.config.fields.items()):
            rows += [(int(self.offsets[f]) + v, name, self.config.value_name(name, v)) for v in range(size)]
        return rows


def generate(config: SyntheticConfig | None = None) -> SyntheticData:
    config = config or SyntheticConfig()
    names = list(config.fields)
    sizes = np.array([config.fields[n] for n in names])
    for planted in config.planted:
        assert planted.first in names and planted.second in names and planted.first != planted.second, \
            f"planted pair {planted.pair} needs two known fields"
    rng = np.random.default_rng(config.seed)
    n = config.num_rows
    # Values drawn with mild popularity skew (Dirichlet weights), as real categorical data has.
    values = np.stack([rng.choice(size, size=n, p=rng.dirichlet(np.full(size, 2.0)))
                       for size in sizes], axis=1)  # (N, F)
    y = np.full(n, 0.1)  # w0
    for f, size in enumerate(sizes):
        y += rng.normal(0.0, config.first_order_scale, size)[values[:, f]]
    for planted in config.planted:
        fa, fb = names.index(planted.first), names.index(planted.second)
        left = rng.normal(size=(sizes[fa], config.rank))  # (|a|, r)
        right = rng.normal(size=(sizes[fb], config.rank))  # (|b|, r)
        term = np.einsum("nr,nr->n", left[values[:, fa]], right[values[:, fb]])  # (N,)
        term = planted.strength * term / term.std()
        if planted.when:
            gate_field = names.index(planted.when[0])
            wanted = [v for v in range(sizes[gate_field]) if config.value_name(planted.when[0], v) in planted.when[1]]
            term = term * np.isin(values[:, gate_field], wanted)  # (N,) zero where the pair does not act
        y += term
    y += rng.normal(0.0, config.noise, n)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))  # (F,)
    return SyntheticData(values + offsets, y.astype(np.float32), offsets, config)


def write_sample(directory: str | Path, config: SyntheticConfig | None = None) -> Path:
    """Write NAME.{train,validation,test}.libfm, NAME.features.tsv and NAME.planted.json."""
    data = generate(config)
    name = data.config.name
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for split, rows in split_indices(len(data.labels), seed=data.config.seed).items():
        lines = [f"{label:.3f} " + " ".join(f"{i}:1" for i in ids)
                 for label, ids in zip(data.labels[rows], data.feature_ids[rows])]
        (directory / f"{name}.{LIBFM_SPLIT_SUFFIX[split]}.libfm").write_text("\n".join(lines) + "\n")
    table = ["feature\tfield\tvalue"] + [f"{i}\t{field_name}\t{value}" for i, field_name, value in data.feature_names()]
    (directory / f"{name}.features.tsv").write_text("\n".join(table) + "\n")
    config = asdict(data.config)
    config["planted"] = [p.to_json() for p in data.config.planted]
    truth = {"planted": config["planted"], "config": config}
    (directory / f"{name}.planted.json").write_text(json.dumps(truth, indent=2) + "\n")
    return directory


def planted_pairs(directory: str | Path) -> list[PlantedPair]:
    """The ground truth that `write_sample` recorded in `directory`, or [] when there is none."""
    found = sorted(Path(directory).glob("*.planted.json"))
    if not found:
        return []
    return [PlantedPair.from_json(p) for p in json.loads(found[0].read_text())["planted"]]
