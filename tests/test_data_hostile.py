"""Hostile and careless data files: each class of bad input gets one line naming the file, the
line and the problem (docs/robustness.md, "Data files"), never a wrong reading without a word."""

from __future__ import annotations

import io
import json
import string
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import afm.data.stream as stream
from afm.data import load_csv, load_dataset, read_feature_names, read_libfm, split_indices
from afm.data.arrays import open_arrays, write_arrays
from afm.data.libfm import parse_libfm
from afm.data.schema import describe_columns
from afm.data.stream import iter_rows
from afm.data.tabular import TabularEncoder
from afm.data.text import CsvHeader, iter_csv_pieces, parse_records, read_csv_text, record_lines
from afm.errors import DataError
from tests.conftest import cli, random_dataset


def rows(count=30, label=lambda i: i % 2, price=lambda i: 1.5 + i) -> list[str]:
    return [f"{'ab'[i % 2]},{price(i)},{label(i)}" for i in range(count)]


def csv_file(tmp_path, lines, header="g,price,label", name="d.csv"):
    path = tmp_path / name
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    return path


def raises(call, *args, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    return info.value


# --------------------------------------------------------------------------- 1. float32, not float64


@pytest.mark.parametrize("where", ["label", "cell"])
def test_csv_numbers_beyond_float32_are_errors_with_the_line(tmp_path, where):
    lines = rows()
    lines[6] = "a,1e39,1" if where == "cell" else "a,2.5,-1e39"
    error = raises(load_csv, csv_file(tmp_path, lines))
    assert error.line == 8 and "beyond the float32 range" in error.problem, str(error)


@pytest.mark.parametrize("line", ["1e39 0:1 1:1", "1 0:1 1:-4e38", "1 0:1 1:4e38 2:x"])
def test_libfm_numbers_beyond_float32_are_errors_with_the_line(line):
    raw = ("1 0:1 1:1\n" * 3 + line + "\n").encode()
    error = raises(parse_libfm, raw, "d.libfm")
    assert error.line == 4 and "float32" in error.problem, str(error)


def test_rows_scored_by_a_model_are_checked_at_float32_too(tmp_path):
    data = load_csv(csv_file(tmp_path, rows()))
    lines = rows(8)
    lines[5] = "b,3.5e38,1"
    error = raises(lambda: list(iter_rows(csv_file(tmp_path, lines, name="new.csv"), data.schema)))
    assert error.line == 7 and "float32" in error.problem
    lines[5] = "b,3.5,-1e39"
    error = raises(lambda: list(iter_rows(csv_file(tmp_path, lines, name="new.csv"), data.schema)))
    assert error.line == 7 and "float32" in error.problem


def test_an_arrays_directory_with_infinite_values_or_labels_names_the_split(tmp_path):
    write_arrays(random_dataset(num_rows=100, real_valued=True), tmp_path / "arrays")
    values = np.load(tmp_path / "arrays" / "valid.values.npy")
    values[3, 1] = np.inf
    np.save(tmp_path / "arrays" / "valid.values.npy", values)
    error = raises(open_arrays, tmp_path / "arrays")
    assert "valid split's values" in error.problem and "row 3" in error.problem


# --------------------------------------------------------------------------- 2. cells are text


def test_a_few_words_in_a_numeric_column_are_an_error_not_categories(tmp_path):
    lines = rows()
    lines[9], lines[20] = "a,oops,1", "b,?,0"
    error = raises(load_csv, csv_file(tmp_path, lines))
    assert error.line == 11 and "'oops'" in error.problem and "(and 1 more)" in error.problem
    assert "leave it empty" in error.problem
    lines[9], lines[20] = "a,,1", "b,NA,0"  # empty and missing-value spellings are missing numbers
    encoding = load_csv(csv_file(tmp_path, lines)).schema.csv_encoding
    assert encoding["columns"][1]["kind"] == "numeric"


def test_a_column_of_mostly_words_with_some_numbers_is_categorical(tmp_path):
    lines = [f"{'ab'[i % 2]},{['S', 'M', 'L', '38.5'][i % 4]},{i % 2}" for i in range(40)]
    encoding = load_csv(csv_file(tmp_path, lines, header="g,size,label")).schema.csv_encoding
    assert encoding["columns"][1]["kind"] == "categorical"
    assert set(encoding["columns"][1]["values"]) == {"S", "M", "L", "38.5"}


def test_codes_with_leading_zeros_stay_distinct_values(tmp_path):
    codes = ["007", "7", "0070", "070"]
    lines = [f"{'ab'[i % 2]},{codes[i % 4]},{i % 2}" for i in range(40)]
    data = load_csv(csv_file(tmp_path, lines, header="g,code,label"), min_count=1)
    assert sorted(data.schema.csv_encoding["columns"][1]["values"]) == sorted(codes)
    everything = data.rows("all")
    assert len(np.unique(everything.feature_ids[:, 1])) == 4


def test_a_duplicate_column_name_is_an_error_naming_it(tmp_path):
    error = raises(load_csv, csv_file(tmp_path, rows(), header="city,city,label"))
    assert error.line == 1 and "'city' appears twice" in error.problem


def test_scored_codes_match_the_vocabulary_as_text(tmp_path):
    """Zip codes with a word among them in training; a file of digits only later: each code is
    its own value still (pandas read them as integers, 02139 as 2139: all <unknown>)."""
    codes = ["02139", "10001", "00501", "unknown"]
    train = [f"{'ab'[i % 2]},{codes[i % 4]},{i * 0.5}" for i in range(40)]
    data = load_csv(csv_file(tmp_path, train, header="g,zip,label"))
    later = csv_file(tmp_path, [f"a,{codes[i % 3]},{i}" for i in range(12)], header="g,zip,label", name="later.csv")
    scored = load_dataset(later, schema=data.schema).rows("all")
    names = {data.schema.feature_label(int(i)) for i in scored.feature_ids[:, 1]}
    assert names == {"zip=02139", "zip=10001", "zip=00501"}
    streamed = np.concatenate([c.feature_ids[:, 1] for c in iter_rows(later, data.schema)])
    assert {data.schema.feature_label(int(i)) for i in streamed} == names


def test_a_label_that_is_not_a_number_when_scoring_is_an_error_with_its_line(tmp_path):
    data = load_csv(csv_file(tmp_path, rows()))
    lines = rows(8)
    lines[4] = "a,2.5,yes"
    lines[6] = "a,2.5,"  # empty: a row without a label, NaN
    error = raises(lambda: list(iter_rows(csv_file(tmp_path, lines, name="new.csv"), data.schema)))
    assert error.line == 6 and "'yes' is not a finite number" in error.problem
    lines[4] = "a,2.5,1"
    labels = np.concatenate([c.labels for c in iter_rows(csv_file(tmp_path, lines, name="new.csv"), data.schema)])
    assert np.isnan(labels[6]) and np.isfinite(np.delete(labels, 6)).all()


def test_info_shows_each_columns_kind_and_values_or_range(tmp_path, capsys):
    lines = [f"{'ab'[i % 2]},{1.5 + i},{['007', '7'][i % 2]},{i % 2}" for i in range(30)]
    path = csv_file(tmp_path, lines, header="g,price,code,label")
    columns = load_csv(path).summary()["columns"]
    assert [(c["column"], c["kind"]) for c in columns] == [("g", "categorical"), ("price", "numeric"),
                                                           ("code", "categorical")]
    assert columns[0]["values"] == 2 and set(columns[2]["examples"]) == {"007", "7"}
    low, high = columns[1]["range"]
    assert 1.5 <= low < high <= 30.5
    code, stdout, _ = cli(capsys, "info", "--data", str(path))
    assert code == 0 and json.loads(stdout.splitlines()[-1])["columns"] == columns
    assert load_dataset("sample").summary().get("columns") is None  # libfm data: no CSV columns


def test_an_encoder_saved_before_cells_were_text_still_reads_its_spellings():
    """A checkpoint's encoder without `cells: text` holds the spellings pandas guessed ('7' for
    007, 'True' for true, <missing> for NA): cells are mapped to them."""
    saved = {"label": "y", "min_count": 1, "columns": [
        {"name": "code", "kind": "categorical", "values": ["7", "True", "<missing>"]},
        {"name": "price", "kind": "numeric", "mean": 1.0, "std": 2.0}]}
    encoder = TabularEncoder.from_json(saved)
    frame = pd.DataFrame({"code": ["007", "true", "NA", "x"], "price": ["1", "3", "", "5"]}, dtype=str)
    ids, values = encoder.transform(frame, "old")
    assert ids[:, 0].tolist() == [0, 1, 2, 3] and values[:, 1].tolist() == [0.0, 1.0, 0.0, 2.0]
    assert describe_columns(saved)[1]["range"] is None


# --------------------------------------------------------------------------- the property


_CODES = st.text(alphabet="0123456789", min_size=1, max_size=4)  # leading zeros included
_WORDS = st.text(alphabet=string.ascii_letters + "é _-;'\"\n,", min_size=0, max_size=6)
_NUMBERS = st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: f"{x:.3f}")


@st.composite
def _tables(draw):
    n = draw(st.integers(10, 40))
    columns = {}
    for c in range(draw(st.integers(2, 4))):
        kind = draw(st.sampled_from(["codes", "words", "numbers", "numbers with strays"]))
        cells = draw(st.lists({"codes": _CODES, "words": _WORDS}.get(kind, _NUMBERS), min_size=n, max_size=n))
        if kind == "numbers with strays":
            for row in draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2)):
                cells[row] = draw(st.sampled_from(["oops", "n/a?", "-", "1.2.3"]))
        columns[f"c{c}"] = cells
    columns["label"] = [str(i % 3) for i in range(n)]
    return pd.DataFrame(columns)


def _as_read(cell: str) -> str:
    """A cell's text as read: spaces before an unquoted cell are not part of it (to_csv quotes a
    cell only when it holds a comma, a quote or a line end)."""
    return cell if any(c in cell for c in ',"\n\r') else cell.lstrip(" ")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=_tables())
def test_every_categorical_cell_reads_back_as_its_text_or_the_file_is_refused_with_a_line(tmp_path_factory, table):
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    table.to_csv(path, index=False)
    try:
        data = load_csv(path, min_count=1)
    except DataError as exc:
        event(f"refused: {exc.problem[:30]}")
        assert exc.line is not None and len(str(exc)) < 1100, str(exc)
        return
    event(f"loaded: {sorted(c['kind'] for c in data.schema.csv_encoding['columns'])}")
    blank = (table == "").all(axis=1).to_numpy()  # never: every row has a label
    kept = table[~blank].reset_index(drop=True)
    index = split_indices(len(kept), 0)
    train, order = index["train"], np.concatenate([index[s] for s in ("train", "valid", "test")])
    everything = np.empty((len(kept), data.schema.num_fields), dtype=np.int64)
    everything[order] = load_dataset(path, schema=data.schema).rows("all").feature_ids  # back in file order
    with mock.patch.object(stream, "BLOCK_BYTES", 13):  # blocks end inside cells and quotes
        streamed = np.concatenate([c.feature_ids for c in iter_rows(path, data.schema, chunk_rows=7)])
    assert np.array_equal(streamed, everything)  # scoring reads every cell as training did
    for f, column in enumerate(data.schema.csv_encoding["columns"]):
        if column["kind"] != "categorical":
            continue
        texts = [c or "<missing>" for c in kept[column["name"]].map(_as_read)]
        vocabulary = set(column["values"])
        assert vocabulary == {texts[r] for r in train}, column["name"]  # min_count 1: every training text
        read = [data.schema.value_name(int(i)) for i in everything[:, f]]
        assert read == [t if t in vocabulary else "<unknown>" for t in texts], column["name"]


def _streamed(raw: bytes) -> tuple[list[list[str]], list[int]]:
    header, cells, lines = None, [], []
    for piece, first_line, _ in iter_csv_pieces(io.BytesIO(raw), "fuzz", 3, 7):
        if header is None:
            header = CsvHeader.read(piece, "fuzz", first_line)
            parse_records(piece, header.width, "fuzz", first_line, header=True)
            continue
        frame, at = header.frame(*parse_records(piece, header.width, "fuzz", first_line), "fuzz")
        cells += frame.to_numpy().tolist()
        lines += at.tolist()
    if header is None:
        raise DataError("fuzz", "file is empty")
    return cells, lines


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=',"\n\r ab1.;', max_size=60))
def test_the_csv_reader_fails_only_with_a_data_error_and_streams_as_it_reads_whole(text):
    raw = text.encode()
    try:
        frame, lines = read_csv_text(raw, "fuzz")
    except DataError:
        # The stream may meet another problem of the same file first (a short row before the
        # whole column is seen), so both refuse it, each with a line-numbered DataError.
        with pytest.raises(DataError):
            _streamed(raw)
        return
    assert len(lines) == len(frame) and (np.diff(lines) > 0).all()
    assert _streamed(raw) == (frame.to_numpy().tolist(), lines.tolist())


# --------------------------------------------------------------------------- 3. messages that mislead


@pytest.mark.parametrize("name", ["d.csv", "d.libfm", "d.features.tsv"])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_files_are_named_utf16_not_binary(tmp_path, name, encoding):
    text = {"d.csv": "g,price,label\n" + "\n".join(rows()) + "\n", "d.libfm": "1 0:1 1:1\n" * 20,
            "d.features.tsv": "feature\tfield\tvalue\n0\tuser\tann\n"}[name]
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    reader = {"d.csv": load_csv, "d.libfm": read_libfm, "d.features.tsv": read_feature_names}[name]
    error = raises(reader, path)
    assert "UTF-16" in error.problem and "save it as UTF-8" in error.problem and "binary" not in error.problem


def test_a_utf8_byte_order_mark_is_accepted_everywhere(tmp_path):
    bom = b"\xef\xbb\xbf"
    (tmp_path / "d.csv").write_bytes(bom + ("g,price,label\n" + "\n".join(rows()) + "\n").encode())
    assert load_csv(tmp_path / "d.csv").schema.field_names == ("g", "price")
    (tmp_path / "d.libfm").write_bytes(bom + b"1 0:1 1:1\n" * 3)
    assert read_libfm(tmp_path / "d.libfm").labels.tolist() == [1, 1, 1]
    (tmp_path / "f.tsv").write_bytes(bom + b"feature\tfield\tvalue\n0\tuser\tann\n")
    assert read_feature_names(tmp_path / "f.tsv")[0] == ["user"]


def test_a_quoted_cell_spanning_lines_keeps_later_line_numbers_true(tmp_path):
    lines = rows()
    lines[2] = '"a\nsecond line\nthird",3.5,1'  # one row over three lines: lines 4-6
    data = load_csv(csv_file(tmp_path, lines[:12]))
    lines[12] = "a,3.5,oops"  # a bad label: line 16 (header 1, rows 2-3, the quoted row 4-6, then 7 onward)
    error = raises(load_csv, csv_file(tmp_path, lines))
    assert error.line == 16 and "'oops'" in error.problem, str(error)
    lines[12] = "a,ten,1"  # scored in chunks of 3 rows: the line of the file, not of a chunk
    error = raises(lambda: list(iter_rows(csv_file(tmp_path, lines, name="new.csv"), data.schema, chunk_rows=3)))
    assert error.line == 16 and "'ten'" in error.problem, str(error)


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_rows_streamed_in_tiny_blocks_read_as_the_whole_file(tmp_path, monkeypatch, ending):
    """Blocks of 5 bytes end inside cells, inside quotes and between CR and LF: the chunks still
    hold the rows of the whole file, each with its own line."""
    monkeypatch.setattr(stream, "BLOCK_BYTES", 5)
    lines = [f'"{"ab"[i % 2]}{chr(10) * (i % 3)}x",{1.5 + i},"{i % 2}"' for i in range(24)]
    lines[5] = ""  # a blank line: no row
    path = tmp_path / "d.csv"
    path.write_bytes(("\ufeffg,price,label" + ending + ending.join(lines) + ending).encode())
    data = load_csv(path)
    chunks = list(iter_rows(path, data.schema, chunk_rows=2))
    assert all(len(c) <= 2 for c in chunks)
    expected_lines = [2 + sum(1 + lines[j].count(chr(10)) for j in range(i)) for i in range(24) if i != 5]
    assert np.concatenate([c.lines for c in chunks]).tolist() == expected_lines
    whole = load_dataset(path, schema=data.schema).rows("all")
    by_label = sorted(zip(whole.labels.tolist(), whole.feature_values[:, 1].tolist()))
    streamed = sorted(zip(np.concatenate([c.labels for c in chunks]).tolist(),
                          np.concatenate([c.feature_values[:, 1] for c in chunks]).tolist()))
    assert streamed == by_label and chunks[-1].bytes_read == path.stat().st_size


def test_a_quote_never_closed_names_the_line_it_opens_on(tmp_path):
    lines = rows()
    data = load_csv(csv_file(tmp_path, lines))
    lines[20] = '"b,2.5,1'
    path = csv_file(tmp_path, lines, name="open.csv")
    error = raises(load_csv, path)
    assert error.line == 22 and "never closed" in error.problem, str(error)
    error = raises(lambda: list(iter_rows(path, data.schema, chunk_rows=4)))
    assert error.line == 22 and "never closed" in error.problem, str(error)


def test_record_lines_follow_quotes_as_pandas_reads_them():
    raw = b'a,b\n"x\n\ny",1\n12" tall,2\n"p""q\n",3\nlast,4'
    assert record_lines(raw, 1).tolist() == [1, 2, 5, 6, 8]
    assert len(pd.read_csv(__import__("io").BytesIO(raw), header=None, dtype=str)) == 5


def test_trailing_commas_on_every_line_are_not_a_column(tmp_path):
    path = csv_file(tmp_path, [line + "," for line in rows()], header="g,price,label,")
    data = load_csv(path)
    assert data.schema.field_names == ("g", "price")
    error = raises(load_csv, csv_file(tmp_path, [line + "," for line in rows()]))  # not on the header
    assert error.line == 2 and "has 4 cells, the header names 3" in error.problem
    lines = [line + "," for line in rows()]
    lines[5] += "x"
    error = raises(load_csv, csv_file(tmp_path, lines, header="g,price,label,"))
    assert error.line == 7 and "column 4 has no name" in error.problem
    error = raises(load_csv, csv_file(tmp_path, [f"{i}," + line for i, line in enumerate(rows())],
                                      header=",g,price,label"))
    assert error.line == 1 and "column 1 has no name" in error.problem


@pytest.mark.parametrize("separator, word", [(";", "semicolon"), ("\t", "tab")])
def test_a_semicolon_or_tab_separated_file_is_named_so(tmp_path, separator, word):
    lines = [line.replace(",", separator) for line in rows()]
    error = raises(load_csv, csv_file(tmp_path, lines, header=f"g{separator}price{separator}label"))
    assert error.line == 1 and f"looks {word}-separated" in error.problem and "label" not in error.problem[:20]


# --------------------------------------------------------------------------- 4. bounded work


def test_a_header_of_many_commas_is_refused_before_parsing(tmp_path, capsys):
    """50,000 commas kept pandas busy for about 13 s naming columns (a 20 MB line, for many
    minutes); the header's cells are counted on the bytes first."""
    path = tmp_path / "commas.csv"
    path.write_text("," * 50_000 + "\n")
    error = raises(load_csv, path)
    assert error.line == 1 and "50,001 cells" in error.problem
    one_line = cli(capsys, "info", "--data", str(path))
    assert one_line[0] == 2 and "50,001 cells" in one_line[2]
    data = load_csv(csv_file(tmp_path, rows()))
    error = raises(lambda: list(iter_rows(path, data.schema)))
    assert error.line == 1 and "50,001 cells" in error.problem


def test_a_header_line_longer_than_a_megabyte_is_refused(tmp_path):
    path = tmp_path / "long.csv"
    path.write_bytes(b"x" * (2 * 1024**2) + b",label\n1,2\n")
    error = raises(load_csv, path)
    assert error.line == 1 and "longer than 1,048,576 bytes" in error.problem
    data = load_csv(csv_file(tmp_path, rows()))
    error = raises(lambda: list(iter_rows(path, data.schema)))
    assert error.line == 1 and "longer than" in error.problem


# --------------------------------------------------------------------------- 5. arrays from `afm encode`


@pytest.mark.parametrize("change, fragment", [
    (lambda ids: ids.__setitem__((4, 2), 10_000), "feature id 10000"),
    (lambda ids: ids.__setitem__((4, 2), -1), "feature id -1"),
    (lambda ids: ids.__setitem__((4, 2), 0), "not a feature of field 'f2'"),
])
def test_arrays_with_ids_outside_the_schema_name_the_split(tmp_path, capsys, change, fragment):
    write_arrays(random_dataset(num_rows=200), tmp_path / "arrays")
    ids = np.load(tmp_path / "arrays" / "test.ids.npy")
    change(ids)
    np.save(tmp_path / "arrays" / "test.ids.npy", ids)
    error = raises(load_dataset, tmp_path / "arrays")
    assert "the test split" in error.problem and fragment in error.problem and "row 4" in error.problem
    code, stdout, stderr = cli(capsys, "train", "--data", str(tmp_path / "arrays"), "--model", "fm", "--k", "4",
                               "--epochs", "1", "--out", str(tmp_path / "m.safetensors"))
    assert code == 2 and "the test split" in stderr and "Traceback" not in stderr


@settings(max_examples=300, deadline=None)
@given(body=st.lists(st.sampled_from([b"a", b"1", b",", b" ", b"\r", b"\n", b"\r\n", b'"', b"\xc3\xa9"]), max_size=80),
       bom=st.booleans(), block=st.integers(1, 9))
def test_text_read_in_blocks_is_the_text_of_the_whole_file(body, bom, block):
    """`text_blocks` (the stream's reader, CSV and libfm) against `check_text` on the whole file:
    the same text for any block size, a CR at a block's end included."""
    import io

    from afm.data.text import check_text, text_blocks

    raw = (b"\xef\xbb\xbf" if bom else b"") + b"".join(body)
    pieces = list(text_blocks(io.BytesIO(raw), "f", block))
    assert b"".join(text for text, _, _ in pieces) == check_text(raw, "f")
    assert pieces[-1][2] and not any(done for _, _, done in pieces[:-1]) and pieces[-1][1] == len(raw)


def test_a_utf16_libfm_file_streamed_to_predict_says_utf16(tmp_path):
    from afm.checkpoint import load_checkpoint
    from afm.paths import sample_dir
    from afm.predict import predict_file

    rows = tmp_path / "rows.libfm"
    rows.write_bytes((sample_dir() / "sample" / "sample.test.libfm").read_text()[:2000].encode("utf-16"))
    with pytest.raises(DataError, match="rows.libfm: is UTF-16 text; save it as UTF-8"):
        predict_file(load_checkpoint(sample_dir() / "sample" / "sample_afm.safetensors"), rows, tmp_path / "o.csv")
