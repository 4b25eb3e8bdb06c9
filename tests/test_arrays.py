"""Data as memory-mapped arrays (`afm encode`), and the libfm reader and writer that stream."""

from __future__ import annotations

import json

import numpy as np
import pytest

import afm.data.libfm as libfm
from afm.cli import main
from afm.data import load_dataset, load_libfm_dir, read_libfm
from afm.data.arrays import MANIFEST, encode_libfm_dir, open_arrays, write_arrays
from afm.data.libfm import format_libfm, iter_libfm_rows, write_libfm
from afm.errors import ConfigError, DataError
from afm.samples.mltag_shape import MlTagConfig, write_ml_tag
from tests.conftest import random_dataset


def same_rows(a, b) -> None:
    assert a.schema == b.schema
    for name in ("train", "valid", "test"):
        for attribute in ("feature_ids", "feature_values", "labels"):
            assert np.array_equal(getattr(a.splits[name], attribute), getattr(b.splits[name], attribute)), \
                (name, attribute)
    assert a.fingerprint == b.fingerprint and a.label_range == b.label_range and a.is_binary == b.is_binary


@pytest.fixture
def ml_tag_dir(tmp_path):
    write_ml_tag(tmp_path / "data", MlTagConfig(num_rows=3000))
    return tmp_path / "data" / "ml-tag"


def test_libfm_splits_stream_into_arrays_equal_to_the_rows_in_memory(ml_tag_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(libfm, "LIBFM_CHUNK_BYTES", 4096)  # many chunks, lines cut at chunk edges
    assert main(["encode", "--data", str(ml_tag_dir), "--dest", str(tmp_path / "arrays")]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["train_rows"] == 2100 and summary["features"] == 90_445
    mapped = load_dataset(tmp_path / "arrays")
    assert isinstance(mapped.train.feature_ids, np.memmap) and not mapped.train.feature_ids.flags.writeable
    same_rows(mapped, load_libfm_dir(ml_tag_dir))  # fingerprint included: the same data to a checkpoint
    assert not list(tmp_path.glob(".arrays.*"))  # the temporary directory was renamed


def test_columns_are_put_in_field_order(tmp_path):
    directory = tmp_path / "swapped"
    directory.mkdir()
    (directory / "x.features.tsv").write_text("feature\tfield\tvalue\n" + "".join(
        f"{i}\t{'a' if i < 3 else 'b'}\tv{i}\n" for i in range(5)))
    for suffix in ("train", "validation", "test"):  # field b's feature listed first on every row
        (directory / f"x.{suffix}.libfm").write_text("".join(f"{i % 2} {3 + i % 2}:1 {i % 3}:1\n" for i in range(9)))
    mapped = encode_libfm_dir(directory, tmp_path / "arrays")
    same_rows(mapped, load_libfm_dir(directory))
    assert mapped.schema.field_names == ("a", "b") and mapped.train.feature_ids[0].tolist() == [0, 3]


def test_a_csv_is_encoded_once_with_its_fitted_encoding(tmp_path, capsys):
    rows = "".join(f"{['a', 'b', 'c'][i % 3]},{i % 4},{i * 0.5},{i % 2}\n" for i in range(60))
    (tmp_path / "t.csv").write_text("color,size,weight,label\n" + rows)
    assert main(["encode", "--data", str(tmp_path / "t.csv"), "--dest", str(tmp_path / "arrays")]) == 0
    mapped = open_arrays(tmp_path / "arrays")
    same_rows(mapped, load_dataset(tmp_path / "t.csv"))
    assert mapped.schema.csv_encoding is not None and mapped.is_binary


def test_arrays_written_from_memory_equal_their_source(tmp_path):
    data = random_dataset(num_rows=1000, real_valued=True)
    same_rows(write_arrays(data, tmp_path / "arrays"), data)


def test_a_models_schema_must_match_the_encoding(tmp_path):
    data = random_dataset(num_rows=200)
    write_arrays(data, tmp_path / "arrays")
    assert open_arrays(tmp_path / "arrays", schema=data.schema).schema == data.schema
    other = random_dataset(num_rows=200, field_sizes=(4, 5, 3, 6)).schema
    with pytest.raises(DataError, match="other fields than the model"):
        open_arrays(tmp_path / "arrays", schema=other)


def test_bad_input_writes_nothing(ml_tag_dir, tmp_path, capsys):
    with open(ml_tag_dir / "ml-tag.test.libfm", "a") as handle:
        handle.write("1 5:1 17050:1\n")  # two features where every row has three
    assert main(["encode", "--data", str(ml_tag_dir), "--dest", str(tmp_path / "arrays")]) == 2
    err = capsys.readouterr().err
    assert "ml-tag.test.libfm, line 301: row has 2 features, the first row has 3" in err, err
    assert not (tmp_path / "arrays").exists() and not list(tmp_path.glob(".arrays.*"))
    (tmp_path / "arrays").mkdir()
    with pytest.raises(ConfigError, match="already exists"):
        write_arrays(random_dataset(), tmp_path / "arrays")


@pytest.mark.parametrize("damage,expected", [
    (lambda d: (d / "train.ids.npy").unlink(), "train.ids.npy is missing"),
    (lambda d: np.save(d / "valid.labels.npy", np.zeros(3, np.float32)), r"valid.labels.npy holds float32 \(3,\)"),
    (lambda d: (d / MANIFEST).write_text("{}"), "not an arrays manifest"),
    (lambda d: (d / MANIFEST).write_text("[1,"), "is not valid JSON"),
    # Found by tests/test_cli_contract.py: an empty .npy was an EOFError (exit 1), a cut magic number
    # was called pickled data.
    (lambda d: (d / "train.ids.npy").write_bytes(b""), r"train.ids.npy is not an .npy array \(empty\)"),
    (lambda d: (d / "test.values.npy").write_bytes(b"\x93NUM"), r"test.values.npy is not an .npy array \(it does not"),
    (lambda d: (d / "valid.ids.npy").write_bytes(b"\x93NUMPY\x01"), "valid.ids.npy is not a readable .npy array"),
])
def test_damaged_arrays_are_one_line_errors(tmp_path, damage, expected):
    write_arrays(random_dataset(num_rows=100), tmp_path / "arrays")
    damage(tmp_path / "arrays")
    with pytest.raises(DataError, match=expected):
        load_dataset(tmp_path / "arrays")


# --------------------------------------------------------------------------- libfm, streamed


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_streamed_chunks_are_the_whole_file_with_its_line_numbers(tmp_path, newline):
    lines = [f"{i % 3 - 1} {i % 5}:1 {5 + i % 7}:0.5" if i % 11 else "" for i in range(200)]
    path = tmp_path / "x.libfm"
    path.write_bytes(newline.join(lines).encode())
    whole = libfm.read_libfm_rows(path)
    chunks = list(iter_libfm_rows(path, chunk_bytes=100))
    assert len(chunks) > 10 or newline == "\r"  # a file with CR-only line ends is one chunk
    for attribute in ("feature_ids", "feature_values", "labels"):
        assert np.array_equal(np.concatenate([getattr(c.split, attribute) for c in chunks]),
                              getattr(whole.split, attribute))
    assert np.array_equal(np.concatenate([c.line_numbers for c in chunks]), whole.line_numbers)


@pytest.mark.parametrize("bad", ["1 3:1 x:1", "1 3:1", "nan 3:1 4:1", "1 3:1 -4:1"])
def test_a_bad_line_deep_in_a_streamed_file_gets_the_in_memory_message(tmp_path, bad):
    path = tmp_path / "x.libfm"
    path.write_text("".join(f"1 {i % 3}:1 {3 + i % 4}:1\n" for i in range(150)) + bad + "\n1 0:1 3:1\n")
    with pytest.raises(DataError) as in_memory:
        read_libfm(path)
    with pytest.raises(DataError) as streamed:
        list(iter_libfm_rows(path, chunk_bytes=64))
    assert str(streamed.value) == str(in_memory.value) and streamed.value.line == 151


def test_libfm_written_in_chunks_reads_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 10**6, (1000, 4))
    values = rng.normal(size=(1000, 4)).astype(np.float32)
    labels = rng.normal(size=1000).astype(np.float32)
    halves = [(labels[part], ids[part], values[part]) for part in (slice(0, 300), slice(300, None))]
    write_libfm(tmp_path / "x.libfm", halves)
    back = read_libfm(tmp_path / "x.libfm")
    assert np.array_equal(back.feature_ids, ids) and np.array_equal(back.feature_values, values)
    assert np.array_equal(back.labels, labels)
    assert format_libfm(np.array([1.0, -1.0], np.float32), np.array([[3, 7], [0, 2]])) == b"1 3:1 7:1\n-1 0:1 2:1\n"


@pytest.mark.slow
def test_a_model_trained_on_arrays_scores_them_as_it_scores_the_libfm_rows(ml_tag_dir, tmp_path, capsys):
    arrays = tmp_path / "arrays"
    assert main(["encode", "--data", str(ml_tag_dir), "--dest", str(arrays)]) == 0
    model = tmp_path / "fm.safetensors"
    assert main(["train", "--data", str(arrays), "--model", "fm", "--k", "4", "--epochs", "2", "--batch-size", "256",
                 "--out", str(model)]) == 0
    trained = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert trained["streamed"] and trained["world_size"] == 1
    scores = {}
    for data in (arrays, ml_tag_dir):
        assert main(["evaluate", "--checkpoint", str(model), "--data", str(data), "--split", "all"]) == 0
        out, err = capsys.readouterr()
        assert "warning" not in err  # the same fingerprint: the model recognises its data
        scores[data] = json.loads(out.splitlines()[-1])
    assert scores[arrays]["rmse"] == pytest.approx(scores[ml_tag_dir]["rmse"], abs=1e-6)
    assert scores[arrays]["rows"] == 3000
