"""An ml-tag-shaped dataset made here, since the real MovieLens-tag files cannot be fetched on
every machine: the paper's three fields at their sizes, the real data's row structure, skewed
popularity, and planted interactions the attention views should recover.

The real data (the AFM/NFM authors' ml-tag): every tag application (user, movie, tag) is a row
with label 1, followed by two rows with label -1 for the same user and movie and another tag,
drawn at random from the tag vocabulary. Here every application's user and movie are drawn by
popularity; the user considers `CANDIDATES` tags drawn by tag popularity and applies one with
probability softmax(score), a Gumbel-max draw:

    score(u, m, t) = b_t + s_ut <U_u, A_t> / sqrt(r) + s_mt <M_m, B_t> / sqrt(r)

with rank-r Gaussian tables, so each planted term has unit variance and s is the standard
deviation it adds. The two negatives are drawn uniformly from the vocabulary, as the authors
did. A label thus depends on the tag alone (popular tags are applied, random ones are not), on
user x tag and movie x tag (planted); user x movie is the same in the three rows of an
application and carries nothing (ground-truth strength 0).

Users, movies and tags are drawn with Zipf-like popularity, p ∝ 1 / rank^a (a few users and
tags account for most applications, as in MovieLens; the exponents are chosen, not fitted),
and popular ids are scattered over the id range. Rows are made in chunks of applications,
each from its own seeded stream, so memory holds one chunk whatever the row count; the same
seed writes the same bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from afm.data import LIBFM_SPLIT_SUFFIX, split_indices
from afm.data.libfm import write_libfm
from afm.errors import ConfigError, DataError
from afm.files import write_atomic

NAME = "ml-tag"
# The paper's Table 1: 17,045 users, 23,743 movies, 49,657 tags = 90,445 features.
ML_TAG_FIELDS = {"user": 17_045, "movie": 23_743, "tag": 49_657}
ML_TAG_ROWS = 2_006_859  # 668,953 tag applications x (1 positive + 2 negatives)
ROWS_PER_APPLICATION = 3
APPLICATIONS_PER_CHUNK = 100_000
CANDIDATES = 10  # tags a user considers for one application


@dataclass
class MlTagConfig:
    num_rows: int = ML_TAG_ROWS
    fields: dict[str, int] = field(default_factory=lambda: dict(ML_TAG_FIELDS))  # user, movie, tag
    popularity: dict[str, float] = field(default_factory=lambda: {"user": 1.1, "movie": 1.1, "tag": 1.0})
    # (field, field, strength); every planted pair involves the tag (see the module docstring)
    planted: list[tuple[str, str, float]] = field(
        default_factory=lambda: [("user", "tag", 1.0), ("movie", "tag", 1.5)])
    rank: int = 4  # of each planted table
    tag_bias: float = 1.0  # std of b_t, what a tag alone says
    seed: int = 2017

    def __post_init__(self):
        if list(self.fields) != ["user", "movie", "tag"] or min(self.fields.values()) < ROWS_PER_APPLICATION:
            raise ConfigError("fields must be user, movie and tag, each with at least 3 values")
        if not isinstance(self.num_rows, int) or self.num_rows < 10:
            raise ConfigError(f"--rows must be an integer >= 10 (every split needs rows), got {self.num_rows!r}")
        for a, b, _ in self.planted:
            if "tag" not in (a, b) or a == b or {a, b} - set(self.fields):
                raise ConfigError(f"planted pair ({a}, {b}): pairs must join the tag with the user or the movie")


@dataclass
class World:
    """The fixed part: popularity of every value and the planted tables."""

    offsets: dict[str, int]  # first feature id of each field
    cumulative: dict[str, np.ndarray]  # (size,) cumulative draw probability of each field's values
    tag_bias: np.ndarray  # (tags,)
    tables: list[tuple[str, np.ndarray, np.ndarray, float]]  # (other field, L (|other|, r), R (tags, r), s)


def make_world(config: MlTagConfig) -> World:
    rng = np.random.default_rng([config.seed, 0])
    sizes = config.fields
    offsets = dict(zip(sizes, np.concatenate(([0], np.cumsum(list(sizes.values()))[:-1])).tolist()))
    cumulative = {}
    for name, size in sizes.items():
        weights = 1.0 / np.arange(1, size + 1) ** config.popularity[name]  # (size,) by popularity rank
        weights = weights[rng.permutation(size)]  # popular ids anywhere in the range
        cumulative[name] = np.cumsum(weights / weights.sum())
    tag_bias = rng.normal(0.0, config.tag_bias, sizes["tag"])
    tables = []
    for a, b, strength in config.planted:
        other = a if b == "tag" else b
        left = rng.normal(size=(sizes[other], config.rank))  # (|other|, r)
        right = rng.normal(size=(sizes["tag"], config.rank))  # (tags, r)
        tables.append((other, left, right, float(strength)))
    return World(offsets, cumulative, tag_bias, tables)


def _draw(cumulative: np.ndarray, shape, rng: np.random.Generator) -> np.ndarray:
    return np.minimum(np.searchsorted(cumulative, rng.random(shape)), len(cumulative) - 1)


def generate_chunk(world: World, config: MlTagConfig, chunk: int, applications: int) -> tuple[np.ndarray, np.ndarray]:
    """(feature ids (3A, 3), labels (3A,)) of `applications` applications, from chunk `chunk`'s
    stream: each application's row with label 1, then its two rows with label -1."""
    rng = np.random.default_rng([config.seed, 1, chunk])
    users = _draw(world.cumulative["user"], applications, rng)  # (A,)
    movies = _draw(world.cumulative["movie"], applications, rng)  # (A,)
    candidates = _draw(world.cumulative["tag"], (applications, CANDIDATES), rng)  # (A, C)
    score = world.tag_bias[candidates]  # (A, C)
    values = {"user": users, "movie": movies}
    for other, left, right, strength in world.tables:
        term = np.einsum("ar,acr->ac", left[values[other]], right[candidates])  # (A, C)
        score = score + strength * term / math.sqrt(config.rank)
    picked = np.argmax(score + rng.gumbel(size=score.shape), axis=1)  # (A,) a softmax(score) choice
    applied = candidates[np.arange(applications), picked]  # (A,)
    tags = np.empty((applications, ROWS_PER_APPLICATION), dtype=np.int64)  # (A, 3) applied, negative, negative
    tags[:, 0] = applied
    todo = np.ones((applications, ROWS_PER_APPLICATION), dtype=bool)
    todo[:, 0] = False
    while todo.any():  # negatives: uniform over the vocabulary, unlike the applied tag and each other
        tags[todo] = rng.integers(0, config.fields["tag"], int(todo.sum()))
        todo[:, 1] = tags[:, 1] == tags[:, 0]
        todo[:, 2] = (tags[:, 2] == tags[:, 0]) | (tags[:, 2] == tags[:, 1])
    ids = np.stack([np.repeat(users, ROWS_PER_APPLICATION) + world.offsets["user"],
                    np.repeat(movies, ROWS_PER_APPLICATION) + world.offsets["movie"],
                    tags.ravel() + world.offsets["tag"]], axis=1)  # (3A, 3)
    labels = np.tile(np.array([1.0, -1.0, -1.0], dtype=np.float32), applications)  # (3A,)
    return ids, labels


def iter_split(world: World, config: MlTagConfig, split: str) -> Iterator[tuple[np.ndarray, np.ndarray, None]]:
    """The rows of one split, chunk by chunk: each chunk's rows are split 70/20/10 with a seed
    drawn from its own stream, so the three files are three passes over the same rows."""
    applications = math.ceil(config.num_rows / ROWS_PER_APPLICATION)
    for chunk, start in enumerate(range(0, applications, APPLICATIONS_PER_CHUNK)):
        count = min(APPLICATIONS_PER_CHUNK, applications - start)
        ids, labels = generate_chunk(world, config, chunk, count)
        keep = min(len(labels), config.num_rows - start * ROWS_PER_APPLICATION)  # the last application may be cut
        split_seed = int(np.random.default_rng([config.seed, 2, chunk]).integers(2**62))
        rows = split_indices(keep, split_seed)[split]
        yield labels[rows], ids[rows], None


def _counted(chunks, counts: list[int]):
    for chunk in chunks:
        counts.append(len(chunk[0]))
        yield chunk


def feature_table(config: MlTagConfig) -> bytes:
    lines = ["feature\tfield\tvalue"]
    feature = 0
    for name, size in config.fields.items():
        lines += [f"{feature + v}\t{name}\t{name}_{v}" for v in range(size)]
        feature += size
    return ("\n".join(lines) + "\n").encode()


def write_ml_tag(dest: str | Path, config: MlTagConfig | None = None) -> dict:
    """Write DEST/ml-tag/ml-tag.{train,validation,test}.libfm, ml-tag.features.tsv and
    ml-tag.planted.json (the ground truth, in the bundled sample's format). Each file is written
    atomically. Returns a summary: directory, rows per split, features."""
    config = config or MlTagConfig()
    directory = Path(dest) / NAME
    world = make_world(config)
    rows = {}
    for split, suffix in LIBFM_SPLIT_SUFFIX.items():
        counts = []
        write_libfm(directory / f"{NAME}.{suffix}.libfm", _counted(iter_split(world, config, split), counts))
        rows[split] = sum(counts)
    write_atomic(directory / f"{NAME}.features.tsv", feature_table(config), lambda p: DataError(directory, p))
    truth = {"planted": [{"fields": [a, b], "strength": s} for a, b, s in config.planted],
             "unplanted": [["user", "movie"]], "config": asdict(config)}
    write_atomic(directory / f"{NAME}.planted.json", (json.dumps(truth, indent=2) + "\n").encode(),
                 lambda p: DataError(directory, p))
    return {"dataset": NAME, "directory": str(directory), "rows": rows, "features": sum(config.fields.values()),
            "seed": config.seed}
