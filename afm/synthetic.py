"""The bundled synthetic dataset: categorical fields with a few *planted* pairwise interactions
of known strength, so the attention analysis has a ground truth to recover.

    y = w0 + sum_f w_f[x_f] + sum_{(f,g) planted} strength_fg * <U_f[x_f], V_g[x_g]> + noise

Each planted interaction is a rank-`rank` table scaled to unit variance, so `strength` is the
standard deviation the pair adds to y. All other pairs contribute nothing. Regenerate with
`python -m afm sample` (same seed, same bytes).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from afm.data import LIBFM_SPLIT_SUFFIX, split_indices

# A small, readable world: a user picks an item at some hour on some device...
DEFAULT_FIELDS = {
    "user": 60, "item": 40, "hour": 24, "device": 4, "weekday": 7,
    "country": 12, "weather": 5, "channel": 6, "age": 6, "plan": 3,
}
# (field, field, strength): the ground truth the attention should rank on top.
DEFAULT_PLANTED = [("user", "item", 1.0), ("hour", "device", 0.8), ("weather", "channel", 0.7)]


@dataclass
class SyntheticConfig:
    fields: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_FIELDS))  # name -> cardinality
    planted: list[tuple[str, str, float]] = field(default_factory=lambda: list(DEFAULT_PLANTED))
    num_rows: int = 15_000
    rank: int = 2  # rank of each planted interaction table
    first_order_scale: float = 0.3  # std of the first-order weights
    noise: float = 0.2  # std of the label noise
    seed: int = 2017


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
            rows += [(int(self.offsets[f]) + v, name, f"{name}_{v}") for v in range(size)]
        return rows


def generate(config: SyntheticConfig | None = None) -> SyntheticData:
    config = config or SyntheticConfig()
    names = list(config.fields)
    sizes = np.array([config.fields[n] for n in names])
    for a, b, _ in config.planted:
        assert a in config.fields and b in config.fields and a != b, f"planted pair ({a}, {b}) needs two known fields"
    rng = np.random.default_rng(config.seed)
    n = config.num_rows
    # Values drawn with mild popularity skew (Dirichlet weights), as real categorical data has.
    values = np.stack([rng.choice(size, size=n, p=rng.dirichlet(np.full(size, 2.0)))
                       for size in sizes], axis=1)  # (N, F)
    y = np.full(n, 0.1)  # w0
    for f, size in enumerate(sizes):
        y += rng.normal(0.0, config.first_order_scale, size)[values[:, f]]
    for a, b, strength in config.planted:
        fa, fb = names.index(a), names.index(b)
        left = rng.normal(size=(sizes[fa], config.rank))  # (|a|, r)
        right = rng.normal(size=(sizes[fb], config.rank))  # (|b|, r)
        term = np.einsum("nr,nr->n", left[values[:, fa]], right[values[:, fb]])  # (N,)
        y += strength * term / term.std()
    y += rng.normal(0.0, config.noise, n)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))  # (F,)
    return SyntheticData(values + offsets, y.astype(np.float32), offsets, config)


def write_sample(directory: str | Path, config: SyntheticConfig | None = None) -> Path:
    """Write sample.{train,validation,test}.libfm, sample.features.tsv and sample.planted.json."""
    data = generate(config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for split, rows in split_indices(len(data.labels), seed=data.config.seed).items():
        lines = [f"{label:.3f} " + " ".join(f"{i}:1" for i in ids)
                 for label, ids in zip(data.labels[rows], data.feature_ids[rows])]
        (directory / f"sample.{LIBFM_SPLIT_SUFFIX[split]}.libfm").write_text("\n".join(lines) + "\n")
    table = ["feature\tfield\tvalue"] + [f"{i}\t{field_name}\t{value}" for i, field_name, value in data.feature_names()]
    (directory / "sample.features.tsv").write_text("\n".join(table) + "\n")
    truth = {"planted": [{"fields": [a, b], "strength": s} for a, b, s in data.config.planted],
             "config": asdict(data.config)}
    (directory / "sample.planted.json").write_text(json.dumps(truth, indent=2) + "\n")
    return directory


def planted_pairs(directory: str | Path) -> list[tuple[str, str, float]]:
    """The ground truth that `write_sample` recorded, or [] when there is none."""
    path = Path(directory) / "sample.planted.json"
    if not path.is_file():
        return []
    truth = json.loads(path.read_text())
    return [(p["fields"][0], p["fields"][1], float(p["strength"])) for p in truth["planted"]]
