from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from afm.data import (
    FieldSchema,
    load_csv,
    load_dataset,
    load_libfm_dir,
    load_libfm_file,
    read_feature_names,
    read_libfm,
    split_indices,
)
from afm.errors import DataError
from tests.conftest import requires_frappe


def write(path, text):
    path.write_text(text)
    return path


def test_reads_ids_values_and_labels(tmp_path):
    path = write(tmp_path / "a.libfm", "1 0:1 3:1 5:0.5\n-1 1:1 4:2 6:1\n0.25 2:1 3:1 7:1\n")
    split = read_libfm(path)
    assert split.feature_ids.tolist() == [[0, 3, 5], [1, 4, 6], [2, 3, 7]]
    assert split.feature_values.tolist() == [[1, 1, 0.5], [1, 2, 1], [1, 1, 1]]
    assert split.labels.tolist() == [1, -1, 0.25]
    assert split.feature_ids.dtype == np.int64 and split.feature_values.dtype == np.float32


def test_tolerates_tabs_crlf_blank_lines_and_no_final_newline(tmp_path):
    path = write(tmp_path / "a.libfm", "1\t0:1  3:1\r\n\n  \n-1 1:1 4:1")
    split = read_libfm(path)
    assert split.feature_ids.tolist() == [[0, 3], [1, 4]]
    assert split.labels.tolist() == [1, -1]


@pytest.mark.parametrize(
    "text, line, problem",
    [
        ("1 0:1 3:1\n1 0:1 3\n", 2, "not of the form id:value"),
        ("1 0:1 3:1\n1 0:1:2 3:1\n", 2, "not of the form id:value"),
        ("1 0:1 3:1\nabc 0:1 3:1\n", 2, "label 'abc' is not a number"),
        ("1 0:1 3:1\n\n1 0:1 x:1\n", 3, "integer id"),
        ("1 0:1 3:1\n1 0:1\n", 2, "row has 1 features, the first row has 2"),
        ("1 0:1 3:1\n1 -4:1 3:1\n", 2, "negative"),
        ("1 0:1 3:1\n1 0:1 3:nan\n", 2, "not finite"),
        ("1 0:1 3:1\n1\n", 2, "no features"),
        ("1 0:1 3:1\n1 2.5:1 3:1\n", 2, "integer"),
        ("1 0:1 99999999999:1\n", 1, "too large"),
        ("1 0:1 3 4:1\n", 1, "not of the form id:value"),
    ],
)
def test_bad_rows_name_file_line_and_problem(tmp_path, text, line, problem):
    path = write(tmp_path / "bad.libfm", text)
    with pytest.raises(DataError) as info:
        read_libfm(path)
    assert info.value.line == line
    assert problem in info.value.problem
    assert str(path) in str(info.value) and f"line {line}" in str(info.value)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="empty"):
        read_libfm(write(tmp_path / "e.libfm", "\n \n"))
    with pytest.raises(DataError, match="cannot read"):
        read_libfm(tmp_path / "missing.libfm")


def test_fields_inferred_from_column_id_ranges(tmp_path):
    write(tmp_path / "d.train.libfm", "1 0:1 3:1 5:1\n-1 2:1 4:1 6:1\n")
    write(tmp_path / "d.validation.libfm", "1 1:1 3:1 6:1\n")
    write(tmp_path / "d.test.libfm", "1 0:1 4:1 7:1\n")
    data = load_libfm_dir(tmp_path)
    assert data.schema.field_names == ("field0", "field1", "field2")
    assert data.schema.feature_field.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert data.schema.num_features == 8 and data.schema.num_pairs == 3
    assert len(data.train) == 2 and len(data.valid) == 1 and len(data.test) == 1


def test_overlapping_column_ranges_need_a_field_spec(tmp_path):
    write(tmp_path / "d.train.libfm", "1 0:1 3:1\n-1 4:1 1:1\n")
    write(tmp_path / "d.validation.libfm", "1 0:1 3:1\n")
    write(tmp_path / "d.test.libfm", "1 0:1 3:1\n")
    with pytest.raises(DataError, match="share feature ids"):
        load_libfm_dir(tmp_path)


def test_features_tsv_names_fields_and_reorders_columns(tmp_path):
    # Rows list the features in any order; the field table puts field f in column f.
    write(tmp_path / "d.train.libfm", "1 3:1 0:1\n-1 1:1 2:1\n")
    write(tmp_path / "d.validation.libfm", "1 0:1 2:1\n")
    write(tmp_path / "d.test.libfm", "1 3:1 1:1\n")
    write(tmp_path / "d.features.tsv",
          "feature\tfield\tvalue\n0\tuser\tann\n1\tuser\tbob\n2\titem\tpen\n3\titem\tcup\n")
    data = load_libfm_dir(tmp_path)
    assert data.schema.field_names == ("user", "item")
    assert data.train.feature_ids.tolist() == [[0, 3], [1, 2]]
    assert data.test.feature_ids.tolist() == [[1, 3]]
    assert data.schema.feature_label(3) == "item=cup"


def test_row_missing_a_field_is_reported_with_its_line(tmp_path):
    write(tmp_path / "d.train.libfm", "1 0:1 2:1\n\n-1 0:1 1:1\n")
    write(tmp_path / "d.validation.libfm", "1 0:1 2:1\n")
    write(tmp_path / "d.test.libfm", "1 0:1 2:1\n")
    write(tmp_path / "d.features.tsv", "feature\tfield\tvalue\n0\tuser\ta\n1\tuser\tb\n2\titem\tc\n")
    with pytest.raises(DataError) as info:
        load_libfm_dir(tmp_path)
    assert info.value.line == 3 and "d.train.libfm" in info.value.source


def test_single_file_gets_a_seeded_70_20_10_split(tmp_path):
    rows = "\n".join(f"{i % 2} {i % 5}:1 {5 + i % 3}:1" for i in range(100))
    path = write(tmp_path / "one.libfm", rows + "\n")
    data = load_libfm_file(path, seed=3)
    assert (len(data.train), len(data.valid), len(data.test)) == (70, 20, 10)
    again = load_libfm_file(path, seed=3)
    assert np.array_equal(data.test.labels, again.test.labels)
    parts = split_indices(100, seed=3)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(100))


def test_csv_categorical_and_numeric_columns(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "city": rng.choice(["oslo", "rome", "lima"], 50),
        "plan": rng.integers(0, 3, 50),
        "price": rng.normal(10, 2, 50),
        "label": rng.normal(size=50),
    })
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    data = load_csv(path)
    assert data.schema.field_names == ("city", "plan", "price")
    assert len(data.train) + len(data.valid) + len(data.test) == 50
    encoding = {c["name"]: c for c in data.schema.csv_encoding["columns"]}
    assert encoding["city"]["kind"] == "categorical" and encoding["plan"]["kind"] == "categorical"
    assert encoding["price"]["kind"] == "numeric"
    # The numeric field is one feature whose value is the standardised price.
    price_ids = np.unique(np.concatenate([s.feature_ids[:, 2] for s in data.splits.values()]))
    assert len(price_ids) == 1
    assert abs(float(data.train.feature_values[:, 2].mean())) < 0.5
    # Categorical values are one-hot with value 1 and readable names.
    assert set(data.train.feature_values[:, 0].tolist()) == {1.0}
    assert data.schema.feature_label(int(data.train.feature_ids[0, 0])).startswith("city=")


def test_csv_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,label\n" + "x,y,1\n" * 12 + "x,y,oops\n")
    with pytest.raises(DataError) as info:
        load_csv(path)
    assert info.value.line == 14 and "oops" in info.value.problem
    with pytest.raises(DataError, match="no label column"):
        load_csv(path, label="target")


def test_unknown_dataset_name_is_a_clear_error():
    with pytest.raises(DataError, match="not a dataset name"):
        load_dataset("no-such-dataset")


def test_bundled_sample_loads_with_names():
    data = load_dataset("sample")
    assert data.schema.num_fields == 10 and data.schema.num_pairs == 45
    assert data.schema.field_names[:2] == ("user", "item")
    assert data.schema.feature_label(0) == "user=user_0"
    assert data.fingerprint == load_dataset("sample").fingerprint


def test_schema_json_round_trip_and_rejects_garbage():
    schema = FieldSchema(("a", "b"), (0, 0, 1, -1, 1), ("x", "y", "z", "?", "w"))
    assert FieldSchema.from_json(schema.to_json()) == schema
    for bad in (None, {"field_names": []}, {"field_names": ["a"], "feature_field": [[5, 1]]},
                {"field_names": ["a"], "feature_field": [[0, 10**9]]}):
        with pytest.raises(DataError):
            FieldSchema.from_json(bad)


@requires_frappe
@pytest.mark.frappe
def test_frappe_splits_and_fields():
    data = load_dataset("frappe")
    assert (len(data.train), len(data.valid), len(data.test)) == (202_027, 57_722, 28_860)
    assert data.schema.field_names[:2] == ("user", "item") and data.schema.num_features == 5382
    # Column f holds field f's feature in every row.
    fields = np.asarray(data.schema.feature_field)[data.test.feature_ids]
    assert np.array_equal(fields, np.broadcast_to(np.arange(10), fields.shape))
    assert data.is_binary and data.label_range == (-1.0, 1.0)


def test_an_explicit_data_dir_is_the_only_place_looked_at(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("frappe", data_dir=tmp_path)
    assert str(tmp_path) in str(info.value) and "download frappe" in str(info.value)


# --------------------------------------------------------------------------- feature tables


def test_feature_table_is_read_strictly(tmp_path):
    good = write(tmp_path / "f.tsv", "feature\tfield\tvalue\n0\tuser\tann\n2\titem\tpen\n1\tuser\tbob\n")
    names, ids, fields, values = read_feature_names(good)
    assert names == ["user", "item"] and ids.tolist() == [0, 2, 1] and fields.tolist() == [0, 1, 0]
    assert values == ["ann", "pen", "bob"]
    for text, line, problem in [
        ("feature\tfield\tvalue\n0\tuser\tann\n1.5\tuser\tbob\n", 3, "not a non-negative integer"),
        ("feature\tfield\tvalue\n0\tuser\tann\n0\titem\tpen\n", 3, "listed twice (first on line 2)"),
        ("feature\tfield\tvalue\n0\tuser\n", 2, "got 2 column(s)"),
        ("id\tfield\tvalue\n0\tuser\tann\n", 1, "header must start"),
        ("feature\tfield\tvalue\n-3\tuser\tann\n", 2, "not a non-negative integer"),
        ("feature\tfield\tvalue\n99999999999\tuser\tann\n", 2, "too large"),
    ]:
        path = write(tmp_path / "bad.tsv", text)
        with pytest.raises(DataError) as info:
            read_feature_names(path)
        assert info.value.line == line and problem in info.value.problem, (text, str(info.value))


def test_a_huge_id_in_a_feature_table_stays_cheap(tmp_path):
    """One line naming id 49,999,999: the schema is an int16 array and a dict of named ids, not
    50 million Python objects (it used to take 4.3 GB and 19 s)."""
    write(tmp_path / "d.train.libfm", "1 0:1 2:1\n-1 1:1 3:1\n")
    write(tmp_path / "d.validation.libfm", "1 0:1 2:1\n")
    write(tmp_path / "d.test.libfm", "1 1:1 3:1\n")
    write(tmp_path / "d.features.tsv", "feature\tfield\tvalue\n0\tu\ta\n1\tu\tb\n2\ti\tc\n3\ti\td\n49999999\ti\tz\n")
    data = load_libfm_dir(tmp_path)
    assert data.schema.num_features == 50_000_000 and data.schema.feature_field.dtype == np.int16
    assert len(data.schema.feature_names) == 5 and data.schema.feature_label(49_999_999) == "i=z"


# --------------------------------------------------------------------------- CSV limits and encoding


def test_csv_limits(tmp_path):
    few = tmp_path / "few.csv"
    few.write_text("a,b,label\n" + "x,y,1\n" * 9)
    with pytest.raises(DataError, match="only 9 data rows"):
        load_csv(few)
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(258)) + ",label\n" + ("1," * 258 + "0\n") * 12)
    with pytest.raises(DataError, match="258 feature columns; at most 256"):
        load_csv(wide)
    one = tmp_path / "one.csv"
    one.write_text("a,label\n" + "x,1\n" * 12)
    with pytest.raises(DataError, match="at least two feature columns"):
        load_csv(one)


def test_csv_vocabulary_comes_from_training_rows_and_rare_values_train_unknown(tmp_path):
    rows = [f"{'common' if i % 3 else 'other'},{'v' + str(i)},{i % 2}" for i in range(60)]
    path = tmp_path / "d.csv"
    path.write_text("kind,unique,label\n" + "\n".join(rows) + "\n")
    data = load_csv(path, seed=1)
    encoding = {c["name"]: c for c in data.schema.csv_encoding["columns"]}
    assert set(encoding["kind"]["values"]) == {"common", "other"}
    # Each value of `unique` occurs once: below min_count 2, so all fold into <unknown>, which
    # therefore has training rows behind it.
    assert encoding["unique"]["values"] == []
    unknown_id = data.schema.num_features - 1
    assert data.schema.feature_label(unknown_id) == "unique=<unknown>"
    assert (data.train.feature_ids[:, 1] == unknown_id).all()


def test_csv_encoder_applies_unchanged_to_new_rows(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"city": rng.choice(["oslo", "rome", "lima"], 80), "price": rng.normal(10, 2, 80),
                          "label": rng.normal(size=80)})
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    data = load_csv(path)
    original = load_dataset(path, schema=data.schema).rows("all")
    later = frame.iloc[::-1].reset_index(drop=True)
    later.loc[0, "city"] = "paris"  # never seen in training
    later.loc[1, "price"] = np.nan  # missing: the training mean
    later_path = tmp_path / "later.csv"
    later.to_csv(later_path, index=False)
    again = load_dataset(later_path, schema=data.schema)
    assert again.schema == data.schema  # the checkpoint's encoding, not a refit
    # Row for row, the reversed file encodes as the original did (order of splits aside).
    by_label = {float(label): (tuple(i), tuple(v)) for label, i, v in
                zip(original.labels, original.feature_ids, original.feature_values)}
    reencoded = again.rows("all")
    for label, ids, values in zip(reencoded.labels, reencoded.feature_ids, reencoded.feature_values):
        expected_ids, expected_values = by_label[float(label)]
        if label == np.float32(later.loc[0, "label"]):
            assert data.schema.feature_label(int(ids[0])) == "city=<unknown>"
            continue
        if label == np.float32(later.loc[1, "label"]):
            assert values[1] == 0.0 and ids[1] == expected_ids[1]
            continue
        assert tuple(ids) == expected_ids and tuple(values) == expected_values


@pytest.mark.parametrize("cell, problem", [("inf", "not a finite number"), ("-inf", "not a finite number"),
                                           ("1e400", "not a finite number"), ("1e308", "beyond the float32 range"),
                                           ("-1e39", "beyond the float32 range")])
def test_non_finite_and_huge_numbers_are_errors_with_a_line(tmp_path, cell, problem):
    lines = [f"{'ab'[i % 2]},{1.5 + i},{i % 2}" for i in range(30)]
    lines[6] = f"a,{cell},1"
    if cell == "1e308":
        lines[7] = "a,1e308,1"  # two of them would overflow the mean: refused before, as beyond float32
    path = tmp_path / "d.csv"
    path.write_text("g,price,label\n" + "\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        load_csv(path)
    assert problem in info.value.problem and info.value.line in (8, 9), str(info.value)


def test_label_errors_quote_the_cell_not_a_numpy_repr(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n" + "x,y,1\n" * 5 + "x,y,\n" + "x,y,1\n" * 6)
    with pytest.raises(DataError) as info:
        load_csv(path)
    assert info.value.line == 7 and "is empty" in info.value.problem and "np." not in str(info.value)


def test_empty_and_na_cells_are_documented_missing_values(tmp_path):
    lines = [f"{'ab'[i % 2]},{1.5 + i},{i % 2}" for i in range(30)]
    lines[3], lines[4] = "a,,1", "b,nan,0"  # pandas' missing-value spellings: empty, nan, NA, null, ...
    path = tmp_path / "d.csv"
    path.write_text("g,price,label\n" + "\n".join(lines) + "\n")
    everything = load_csv(path).rows("all")
    rows = np.isin(everything.labels, everything.labels)  # every row loaded
    assert rows.sum() == 30 and np.isfinite(everything.feature_values).all()
    assert (everything.feature_values[:, 1] == 0).sum() >= 2  # the two missing prices sit at the mean


def test_one_hot_means_every_value_is_one():
    from afm.data.splits import Split

    split = Split(np.zeros((5, 2), np.int64), np.ones((5, 2), np.float32), np.zeros(5, np.float32))
    assert split.one_hot
    split.feature_values[4, 1] = 0.5
    assert not split.one_hot
    assert Split(np.zeros((0, 2), np.int64), np.zeros((0, 2), np.float32), np.zeros(0, np.float32)).one_hot
