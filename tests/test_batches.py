"""Training batches resident on the device or streamed in shuffled blocks, and training on
memory-mapped data larger than the memory its process may use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from afm.batches import BLOCKS_PER_WINDOW, ResidentBatches, StreamedBatches, read_ahead
from afm.data import FieldSchema, Split
from afm.data.arrays import ArraysWriter, write_arrays
from afm.models import ModelConfig, build_model
from afm.train import TrainConfig, train_model
from tests.conftest import random_dataset

CPU = torch.device("cpu")


def numbered_split(rows: int, fields: int = 3) -> Split:
    """Row r holds id r in its first field, so a batch says which rows it holds."""
    ids = np.stack([np.arange(rows)] + [np.zeros(rows, np.int64)] * (fields - 1), axis=1)
    return Split(ids, np.ones((rows, fields), np.float32), np.arange(rows, dtype=np.float32))


def epoch_rows(source) -> list[np.ndarray]:
    batches = list(source.epoch())
    for ids, _, targets in batches:
        assert np.array_equal(ids[:, 0].numpy(), targets.numpy())  # ids, values, targets stay together
    assert len(batches) == source.num_batches
    assert all(len(b[2]) == source.batch_size for b in batches[:-1])
    return [b[0][:, 0].numpy() for b in batches]


@pytest.mark.parametrize("kind", [ResidentBatches, StreamedBatches])
def test_every_row_of_the_shard_once_per_epoch_in_a_new_seeded_order(kind):
    split = numbered_split(10_000)
    shard = range(2_000, 9_000)
    options = {"window_bytes": 40 * 100} if kind is StreamedBatches else {}  # 100 rows a window: 70 windows
    source = kind(split, shard, CPU, "regression", 64, seed=3, **options)
    first, second = np.concatenate(epoch_rows(source)), np.concatenate(epoch_rows(source))
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(shard)
    assert not np.array_equal(first, second)
    again = kind(split, shard, CPU, "regression", 64, seed=3, **options)
    assert np.array_equal(np.concatenate(epoch_rows(again)), first)


def test_streamed_windows_mix_blocks_from_all_over_the_data():
    source = StreamedBatches(numbered_split(100_000), range(100_000), CPU, "regression", 1000, seed=0,
                             window_bytes=40 * 16_000)
    assert source.block_rows == 16_000 // BLOCKS_PER_WINDOW
    first_batch = next(iter(source.epoch()))[0][:, 0].numpy()
    blocks = set((first_batch // source.block_rows).tolist())
    assert len(blocks) >= 8 and max(blocks) - min(blocks) > 20  # not one stretch of neighbouring rows


def test_binary_targets_are_zero_one():
    split = Split(np.zeros((10, 2), np.int64), np.ones((10, 2), np.float32), np.array([-1.0, 1.0] * 5, np.float32))
    for kind in (ResidentBatches, StreamedBatches):
        targets = torch.cat([t for _, _, t in kind(split, range(10), CPU, "binary", 4, seed=0).epoch()])
        assert sorted(targets.tolist()) == [0.0] * 5 + [1.0] * 5


def test_read_ahead_passes_errors_on_and_stops_its_thread_when_closed():
    def failing():
        yield 1
        raise ValueError("bad block")

    with pytest.raises(ValueError, match="bad block"):
        list(read_ahead(failing()))
    before = threading.active_count()
    stream = read_ahead(iter(range(1000)))
    assert next(stream) == 0
    stream.close()  # a stop request mid-epoch
    assert threading.active_count() == before


@pytest.mark.slow
def test_memory_mapped_data_trains_by_streaming_as_well_as_in_memory(tmp_path):
    data = random_dataset(num_rows=6000, field_sizes=(30, 20, 10, 40))
    mapped = write_arrays(data, tmp_path / "arrays")
    results = {}
    for name, dataset in (("memory", data), ("mapped", mapped)):
        model = build_model(ModelConfig(model="fm", num_features=100, num_fields=4, embedding_dim=8,
                                        dropout_pooled=0.0), seed=0)
        results[name] = train_model(model, dataset, TrainConfig(epochs=8, lr=0.1, batch_size=64, device="cpu"))
    assert results["mapped"].streamed and not results["memory"].streamed
    memory, streamed = (results[n].best["valid_rmse"] for n in ("memory", "mapped"))
    assert streamed < 0.5 * results["mapped"].history[0]["valid_rmse"]
    assert abs(streamed - memory) < 0.05 * memory, (memory, streamed)


# --------------------------------------------------------------------------- larger than the memory limit

LIMIT_MB = 640  # RLIMIT_DATA of the training process: torch itself needs about 450 MB of it
FIELDS, VALUES, CHUNK = 100, 50, 110_000
TRAIN_ROWS = 660_000  # x (100 x 12 + 4) bytes = 795 MB of training rows alone

TRAIN_UNDER_A_LIMIT = textwrap.dedent("""
    import json, resource, sys
    limit = int(sys.argv[2]) * 1024**2
    # RLIMIT_DATA caps the memory the process allocates (heap and anonymous maps); pages of a
    # read-only file map are the page cache's, which the kernel reclaims as it needs.
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    import numpy as np, torch
    torch.set_num_threads(1)
    from afm.data import load_dataset
    from afm.models import ModelConfig, build_model
    from afm.train import TrainConfig, train_model
    data = load_dataset(sys.argv[1])
    try:
        np.array(data.train.feature_ids)
        fits = True
    except MemoryError:
        fits = False
    config = ModelConfig(model="fm", num_features=data.schema.num_features, num_fields=data.schema.num_fields,
                         embedding_dim=4, dropout_pooled=0.0)
    try:  # every row moved to the device (here: copied into memory), as for data in memory
        train_model(build_model(config, seed=0), data, TrainConfig(epochs=1, device="cpu", stream="off"))
        resident = "trained"
    except MemoryError:
        resident = "out of memory"
    result = train_model(build_model(config, seed=0), data,
                         TrainConfig(epochs=1, batch_size=2048, lr=0.01, device="cpu"))
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    kilobytes = lambda key: int(status[key].split()[0])
    print(json.dumps({"fits": fits, "resident": resident, "streamed": result.streamed,
                      "before": result.history[0]["valid_rmse"], "after": result.history[1]["valid_rmse"],
                      "rows": len(data.train),
                      "rss_anon_kb": kilobytes("RssAnon"), "vm_data_kb": kilobytes("VmData")}))
""")


def write_wide_arrays(dest: Path) -> None:
    """TRAIN_ROWS rows of FIELDS one-hot fields with a learnable label (a pool of rows repeated)."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=FIELDS * VALUES).astype(np.float32)
    ids = rng.integers(0, VALUES, (CHUNK, FIELDS)) + np.arange(FIELDS) * VALUES  # (CHUNK, F)
    labels = (weights[ids].sum(1) / 10 + rng.normal(0, 0.1, CHUNK)).astype(np.float32)
    pool = Split(ids, np.ones((CHUNK, FIELDS), np.float32), labels)
    schema = FieldSchema([f"f{i}" for i in range(FIELDS)], np.repeat(np.arange(FIELDS), VALUES))
    rows = {"train": TRAIN_ROWS, "valid": 10_000, "test": 10_000}
    with ArraysWriter(dest, schema, rows, "wide", "test") as writer:
        for split, count in rows.items():
            for start in range(0, count, CHUNK):
                writer.append(split, pool.take(np.arange(min(CHUNK, count - start))))
        writer.finish()


@pytest.mark.slow
def test_training_streams_data_larger_than_its_memory_limit(tmp_path):
    write_wide_arrays(tmp_path / "wide")
    size = sum(f.stat().st_size for f in (tmp_path / "wide").iterdir())
    assert size > 1.2 * LIMIT_MB * 1024**2
    # glibc gives each thread its own malloc arena, and arenas count against RLIMIT_DATA: how many
    # threads touched the heap moved the peak by tens of MB between runs (it failed once in CI here).
    # Two arenas make the measured bound the data path's, not the allocator's.
    done = subprocess.run([sys.executable, "-c", TRAIN_UNDER_A_LIMIT, str(tmp_path / "wide"), str(LIMIT_MB)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "MALLOC_ARENA_MAX": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert not report["fits"]  # the training rows alone cannot be loaded under the limit
    assert report["resident"] == "out of memory"  # nor trained on without streaming
    assert report["streamed"] and report["rows"] == TRAIN_ROWS
    assert report["after"] < 0.5 * report["before"]  # it learned, reading every row once
    assert report["vm_data_kb"] < LIMIT_MB * 1024
