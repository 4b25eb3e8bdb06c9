"""Shared fixtures. Data-dependent tests skip with a reason when the data is absent."""

from __future__ import annotations

import http.server
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from afm.data import Dataset, FieldSchema, Split, resolve_dataset_dir
from afm.errors import DataError


def frappe_dir() -> Path | None:
    try:
        return resolve_dataset_dir("frappe")
    except DataError:
        return None


requires_frappe = pytest.mark.skipif(
    frappe_dir() is None, reason="Frappe data not found (set AFM_DATA_DIR or put ../shared/data/frappe beside)")


def random_dataset(num_rows=400, field_sizes=(5, 4, 3, 6), seed=0, real_valued=False) -> Dataset:
    """A small random dataset with contiguous field ranges and a learnable label."""
    rng = np.random.default_rng(seed)
    offsets = np.concatenate(([0], np.cumsum(field_sizes)[:-1]))
    ids = np.stack([rng.integers(0, s, num_rows) for s in field_sizes], axis=1) + offsets
    values = rng.uniform(0.5, 1.5, ids.shape).astype(np.float32) if real_valued else np.ones(ids.shape, np.float32)
    weights = rng.normal(size=sum(field_sizes))
    labels = (weights[ids] * values).sum(1) + 0.5 * weights[ids[:, 0]] * weights[ids[:, 1]]
    labels = labels.astype(np.float32)
    feature_field = np.repeat(np.arange(len(field_sizes)), field_sizes)
    schema = FieldSchema(tuple(f"f{i}" for i in range(len(field_sizes))), tuple(feature_field.tolist()))
    cut1, cut2 = int(0.7 * num_rows), int(0.85 * num_rows)
    everything = Split(ids.astype(np.int64), values, labels)
    splits = {"train": everything.take(np.arange(cut1)), "valid": everything.take(np.arange(cut1, cut2)),
              "test": everything.take(np.arange(cut2, num_rows))}
    return Dataset("random", schema, splits, "memory")


@pytest.fixture
def tiny_dataset() -> Dataset:
    return random_dataset()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True, scope="session")
def _uploads_in_a_temporary_folder(tmp_path_factory):
    """The app's per-session upload folders go under the test run's own temporary folder."""
    import os

    os.environ.setdefault("AFM_UPLOAD_DIR", str(tmp_path_factory.mktemp("uploads")))
    yield


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1 with a free port; yields (base_url, www)."""
    www = tmp_path / "www"
    (www / "toy").mkdir(parents=True)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    httpd.shutdown()
    httpd.server_close()


def planted_csv(seed: int) -> bytes:
    """A labelled CSV of random shape, as a user might bring: 3-6 text and integer fields of random
    cardinality, a random planted pair, the label last under a name the reader does not know."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    fields = int(rng.integers(3, 7))
    columns = {}
    for f in range(fields):
        values = rng.integers(0, int(rng.integers(2, 9)), 400)
        columns[f"field{f}"] = values if f % 2 else [f"v{v}" for v in values]
    i, j = rng.choice(fields, 2, replace=False)
    codes = [pd.factorize(pd.Series(columns[f"field{f}"]))[0] for f in (i, j)]
    score = (codes[0] == codes[1]).astype(float) + 0.1 * rng.normal(size=400)
    return pd.DataFrame({**columns, "score": score}).to_csv(index=False).encode()


def cli(capsys, *argv) -> tuple[int, str, str]:
    """`afm ARGV` in this process: (exit code, stdout, stderr), argparse's exits included."""
    from afm.cli import main

    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def one_thread():
    """Training on one thread: small models on a shared 2-core machine run several times faster so."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
