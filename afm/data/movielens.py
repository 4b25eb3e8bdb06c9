"""MovieLens `tags.csv` (userId, movieId, tag, ...) to the paper's ml-tag form.

As the AFM/NFM authors built ml-tag: every tag application is a row (user, movie, tag) with
label 1, followed by two rows with label -1 for the same user and movie and another tag, one
that user did not apply to that movie (drawn uniformly from the tag vocabulary; the two
differ). The rows are split 70/20/10 with a seed. Feature ids: users, then movies (each by
numeric id), then tags (by text); a features.tsv beside names every one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from afm.data.libfm import LIBFM_SPLIT_SUFFIX, write_libfm
from afm.data.splits import split_indices
from afm.data.text import read_csv_file
from afm.errors import DataError, quote
from afm.files import write_atomic
from afm.limits import MAX_FEATURES

NAME = "ml-tag"
COLUMNS = ("userId", "movieId", "tag")
NEGATIVES = 2  # per application, as the authors sampled


def read_tags(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, movie ids, tag texts) of every application, checked; errors name the line."""
    # Text cells stay text: "NA" or "null" is a tag someone typed, not a missing value.
    frame = read_csv_file(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(path, f"no column {missing[0]!r}; a MovieLens tags.csv has userId,movieId,tag,timestamp "
                        f"(this one has {[str(c) for c in frame.columns][:10]})", line=1)
    frame = frame[list(COLUMNS)]
    lines = np.arange(len(frame), dtype=np.int64) + 2  # the header is line 1; exact unless a cell spans lines
    blank = (frame == "").all(axis=1).to_numpy()
    frame, lines = frame[~blank], lines[~blank]
    if frame.empty:
        raise DataError(path, "no tag applications")
    ids = []
    for column in COLUMNS[:2]:
        text = frame[column].str.strip()
        numbers = pd.to_numeric(text.where(text.str.fullmatch(r"[0-9]+"), None), errors="coerce")
        bad = numbers.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(path, f"{column} {quote(frame[column].iloc[row])} is not a non-negative integer",
                            line=int(lines[row]))
        ids.append(numbers.to_numpy(np.int64))
    tags = frame["tag"].str.strip().to_numpy(dtype=object)
    empty = tags == ""
    if empty.any():
        raise DataError(path, "the tag is empty", line=int(lines[np.flatnonzero(empty)[0]]))
    return ids[0], ids[1], tags


def sample_negatives(pair: np.ndarray, tag: np.ndarray, num_tags: int, rng: np.random.Generator,
                     source: object) -> np.ndarray:
    """(A, NEGATIVES) tag codes, per application: uniform over the vocabulary, never a tag its
    (user, movie) pair was given, distinct within the application. `pair`: each application's
    (user, movie) code; `tag`: its tag code."""
    applied = np.unique(pair * num_tags + tag)  # sorted keys of every (pair, tag) given
    per_pair = np.bincount(applied // num_tags)  # distinct tags each pair was given
    if per_pair.max() > num_tags - NEGATIVES:
        raise DataError(source, f"a user gave one movie {per_pair.max()} of the {num_tags} tags; sampling "
                        f"{NEGATIVES} other tags needs at least {NEGATIVES} it did not give")
    negatives = np.empty((len(pair), NEGATIVES), dtype=np.int64)
    todo = np.ones_like(negatives, dtype=bool)  # slots still to draw
    while todo.any():  # rejection sampling; each round redraws only the rejected slots
        rows, slots = np.nonzero(todo)
        negatives[rows, slots] = rng.integers(0, num_tags, len(rows))
        keys = pair[:, None] * num_tags + negatives  # (A, NEGATIVES)
        position = np.minimum(np.searchsorted(applied, keys), len(applied) - 1)
        todo = applied[position] == keys  # given to this pair: redraw
        todo[:, 1:] |= negatives[:, 1:] == negatives[:, :1]  # the same as the first: redraw the second
    return negatives


def convert_tags(tags_csv: str | os.PathLike, dest: str | os.PathLike, seed: int = 0) -> dict:
    """Write DEST/ml-tag/ml-tag.{train,validation,test}.libfm and ml-tag.features.tsv from a
    MovieLens tags.csv. Returns a summary: directory, applications, rows per split, features."""
    path = Path(tags_csv)
    users, movies, tags = read_tags(path)
    user_ids, user_code = np.unique(users, return_inverse=True)
    movie_ids, movie_code = np.unique(movies, return_inverse=True)
    tag_names, tag_code = np.unique(tags.astype(str), return_inverse=True)
    sizes = (len(user_ids), len(movie_ids), len(tag_names))
    if sum(sizes) > MAX_FEATURES:
        raise DataError(path, f"{sum(sizes):,} users, movies and tags; at most {MAX_FEATURES:,} features are supported")
    _, pair_code = np.unique(user_code * sizes[1] + movie_code, return_inverse=True)
    rng = np.random.default_rng(seed)
    negatives = sample_negatives(pair_code, tag_code, sizes[2], rng, path)  # (A, 2)
    applications = len(tag_code)
    rows_tags = np.concatenate([tag_code[:, None], negatives], axis=1).ravel()  # (3A,) positive, then negatives
    ids = np.stack([np.repeat(user_code, 1 + NEGATIVES), sizes[0] + np.repeat(movie_code, 1 + NEGATIVES),
                    sizes[0] + sizes[1] + rows_tags], axis=1)  # (3A, 3)
    labels = np.tile(np.array([1.0] + [-1.0] * NEGATIVES, dtype=np.float32), applications)  # (3A,)
    directory = Path(dest) / NAME
    rows = {}
    for split, index in split_indices(len(labels), seed).items():
        write_libfm(directory / f"{NAME}.{LIBFM_SPLIT_SUFFIX[split]}.libfm", [(labels[index], ids[index], None)])
        rows[split] = len(index)
    names = [*(str(u) for u in user_ids), *(str(m) for m in movie_ids),
             *(" ".join(t.split()) for t in tag_names)]  # no tab or line break inside a cell
    fields = ["user"] * sizes[0] + ["movie"] * sizes[1] + ["tag"] * sizes[2]
    table = "feature\tfield\tvalue\n" + "".join(f"{i}\t{f}\t{n}\n" for i, (f, n) in enumerate(zip(fields, names)))
    write_atomic(directory / f"{NAME}.features.tsv", table.encode(), lambda problem: DataError(directory, problem))
    return {"dataset": NAME, "directory": str(directory), "applications": applications, "rows": rows,
            "users": sizes[0], "movies": sizes[1], "tags": sizes[2], "features": sum(sizes), "seed": seed}
