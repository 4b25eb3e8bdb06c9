"""CSV files: a fitted encoder turns a table into F (feature id, value) slots per row.

A CSV is read as text (`afm.data.text`): every cell is the string it is. `TabularEncoder.fit`
learns each column's kind from all rows and its encoding from the training rows only. A column is
**numeric** when every cell holding a value is a number (as pandas' C parser reads one: `1.5`,
`-2e3`, ` 4`, `inf`) and at least one of them is not a whole number: whole numbers alone (`7`,
`007`) are codes, read as categories with their text as written, so `007` and `7` stay two values.
A column that would be numeric but for a few cells that are not numbers, at least half of its
cells with a value being numbers, is an error naming the first such cell and its line: a stray
word would otherwise turn a column of numbers into categories of which each is seen once.
- categorical (text, boolean and whole-number columns): one feature per value seen at least
  `min_count` times in training, plus an `<unknown>` feature. Values are matched as text, so
  `007` and `7` are two values. Values seen less often are folded into `<unknown>`, so it is
  trained like any other value and a value never seen before gets a sensible score instead of
  an untrained embedding. An empty cell is the value `<missing>`; every other cell is the text
  it is, `NA` included.
- numeric: one feature whose x is the value standardised with the training rows' mean and
  standard deviation (eq. 1 allows any x_i). A missing number (an empty cell, or pandas'
  missing-value spellings: nan, NA, null, N/A, ...) sits at the training mean, x = 0. `inf`,
  numbers beyond float32's range and numbers too large to standardise are errors that name the
  line; so is a word among the numbers.
A **label** column holds numbers, or two classes written as text, neither a number (`yes`/`no`),
read as 0 and 1 for the binary task (`label_classes`): the positive class is the one of a known
pair (yes, true, y, t, positive, pos; against no, false, n, f, negative, neg, in any case), else
the later of the two in sorted order (as scikit-learn's LabelEncoder orders classes).
`transform` encodes any rows with that fitted state; it is saved in every checkpoint's schema
(`afm.data.schema.CsvEncoding`, with the label's classes), so new data is scored exactly as the
training data was encoded, whatever its row order. `describe_columns` says what each column was
read as (kind, values, range), for `afm info`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from afm.data.schema import DEFAULT_MIN_COUNT, ColumnEncoding, CsvEncoding, FieldSchema
from afm.data.schema import describe_columns as describe_columns  # read from here by the app
from afm.data.splits import Dataset, Split, split_indices
from afm.data.text import beyond_float32, float32_problem, read_csv_file, read_csv_text
from afm.errors import DataError, quote
from afm.files import read_regular_file
from afm.limits import MAX_FEATURES, MAX_FIELDS, MAX_TEXT_FILE_BYTES

UNKNOWN = "<unknown>"
MISSING = "<missing>"  # an empty cell in a categorical column is a value of its own
# Column names that say "the label", any case, first match wins: the label of an upload is found by
# name, and where none is named the app asks (the command line takes the last column, and says so).
LABEL_COLUMN_NAMES = ("label", "target", "y", "rating", "click", "clicked", "clicks", "converted", "conversion",
                      "purchased", "outcome", "response")
MIN_ROWS = 10
# pandas' default missing-value spellings (read_csv's na_values), which numeric columns honour.
NA_SPELLINGS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                          "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
POSITIVE_WORDS = frozenset({"yes", "true", "y", "t", "positive", "pos"})
NEGATIVE_WORDS = frozenset({"no", "false", "n", "f", "negative", "neg"})
STRAY_SHARE = 0.5  # a would-be numeric column with at most this share of non-numbers: the rest are strays


class TabularEncoder(CsvEncoding):
    """The saved encoding (`afm.data.schema.CsvEncoding`) with what it does: fit on a table's
    training rows, and encode any rows as (feature id, value) slots."""

    # ----------------------------------------------------------------- fit
    @classmethod
    def fit(cls, frame: pd.DataFrame, label: str, train_rows: np.ndarray, source: object,
            categorical: Sequence[str] = (), numeric: Sequence[str] = (), min_count: int = DEFAULT_MIN_COUNT,
            lines: np.ndarray | None = None, label_classes: tuple[str, str] | None = None) -> TabularEncoder:
        """Fit on `frame.iloc[train_rows]`. `lines`: each row's line in the file, for errors;
        `label_classes`: the label's two texts, (negative, positive), when it has them."""
        lines = _file_lines(frame) if lines is None else lines
        columns = [c for c in frame.columns if c != label]
        unknown = set(categorical) | set(numeric)
        unknown -= set(columns)
        if unknown:
            raise DataError(source, f"columns {sorted(unknown)} are not in the file", line=1)
        if len(columns) < 2:
            raise DataError(source, "need at least two feature columns besides the label", line=1)
        if len(columns) > MAX_FIELDS:
            raise DataError(source, f"{len(columns)} feature columns; at most {MAX_FIELDS} are supported", line=1)
        specs = []
        for column in columns:
            series = frame[column]
            kind = ("numeric" if column in numeric else "categorical" if column in categorical
                    else infer_kind(series, column, source, lines))
            if kind == "numeric":
                specs.append(_fit_numeric(series, str(column), train_rows, source, lines))
            else:
                counts = categories(series, MISSING).iloc[train_rows].value_counts(sort=False)
                kept = tuple(str(v) for v, n in counts.items() if n >= min_count)
                specs.append(ColumnEncoding(str(column), "categorical", values=kept))
        encoder = cls(str(label), tuple(specs), int(min_count), label_classes=label_classes)
        if encoder.num_features > MAX_FEATURES:
            raise DataError(source, f"{encoder.num_features:,} features, more than the {MAX_FEATURES:,} supported")
        return encoder

    # ----------------------------------------------------------------- transform
    @property
    def num_features(self) -> int:
        return sum(c.num_features for c in self.columns)

    def schema(self) -> FieldSchema:
        fields, names = [], []
        for index, column in enumerate(self.columns):
            values = [*column.values, UNKNOWN] if column.kind == "categorical" else ["value"]
            fields += [index] * len(values)
            names += values
        return FieldSchema(tuple(c.name for c in self.columns), fields, names, csv_encoding=self.to_json())

    def transform(self, frame: pd.DataFrame, source: object,
                  lines: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids (N, F) int64, values (N, F) float32) of every row, with the fitted state."""
        lines = _file_lines(frame) if lines is None else lines
        n = len(frame)
        ids = np.zeros((n, len(self.columns)), dtype=np.int64)  # (N, F)
        values = np.ones((n, len(self.columns)), dtype=np.float32)  # (N, F)
        missing = [c.name for c in self.columns if c.name not in frame.columns]
        if missing:
            raise DataError(source, f"columns {missing} that the model was trained on are missing; the file has "
                            f"{[str(c) for c in frame.columns][:20]}", line=1)
        offset = 0
        for f, column in enumerate(self.columns):
            series = frame[column.name]
            if column.kind == "numeric":
                x = numbers(series, column.name, source, lines)
                standardised = (x - column.mean) / column.std
                values[:, f] = np.nan_to_num(standardised, nan=0.0)  # missing: the training mean
                if not np.isfinite(values[:, f]).all():
                    row = int(np.flatnonzero(~np.isfinite(values[:, f]))[0])
                    raise DataError(source, f"column {column.name!r} holds {x[row]:g}, too far from the training "
                                    "values to encode", line=int(lines[row]))
                ids[:, f] = offset
            else:
                text = categories(series, MISSING)
                if self.cells == "inferred":
                    text = _legacy_spellings(text, column.values)
                codes = pd.Index(column.values, dtype=object).get_indexer(text.astype(object))  # -1: unseen
                ids[:, f] = offset + np.where(codes < 0, len(column.values), codes)  # unseen: <unknown>
            offset += column.num_features
        return ids, values

    @classmethod
    def of(cls, schema: FieldSchema, source: object = "checkpoint") -> TabularEncoder | None:
        """The encoder a schema carries (None for libfm data), checked against the schema."""
        if schema.csv_encoding is None:
            return None
        encoder = cls.from_json(schema.csv_encoding, source)
        if encoder.num_features != schema.num_features or len(encoder.columns) != schema.num_fields:
            raise DataError(source, "csv_encoding does not match the schema's fields and features")
        return encoder


# --------------------------------------------------------------------------- cells: what a column holds


def text_cells(series: pd.Series) -> pd.Series:
    """Cells as text: a column read as strings stays as it is, anything else
    (a DataFrame built by hand) is turned into its text, missing cells empty."""
    if isinstance(series.dtype, pd.StringDtype) or (
            series.dtype == object and pd.api.types.infer_dtype(series, skipna=False) == "string"):
        return series if not series.isna().any() else series.fillna("")
    return series.astype(object).where(series.notna(), "").astype(str)


def is_missing(cells: pd.Series) -> np.ndarray:
    """(n,) bool: empty cells and missing-value spellings."""
    return cells.isin(NA_SPELLINGS).to_numpy(bool)


def parse_numbers(cells: pd.Series) -> np.ndarray:
    """(n,) float64: each cell as the number pandas' C parser reads in it (`1.5`, ` 2`, `1e3`,
    `inf`), NaN where it reads none (a word, an empty cell, `NA`)."""
    return np.array(pd.to_numeric(cells, errors="coerce").to_numpy(np.float64, na_value=np.nan))  # writable


def is_whole(cells: pd.Series) -> np.ndarray:
    """(n,) bool: cells written as whole numbers, digits after an optional sign (`7`, `007`, `-3`)."""
    return cells.str.strip().str.lstrip("+-").str.isdigit().fillna(False).to_numpy(bool)


def infer_kind(series: pd.Series, column: object, source: object, lines: np.ndarray) -> str:
    """'numeric' or 'categorical' by the rule of the module docstring, judged on every row (so a
    column's kind does not depend on the split's seed); strays in a numeric column are an error."""
    cells = text_cells(series)
    valued = ~is_missing(cells)
    if not valued.any():
        return "categorical"
    cells, lines = cells[valued], lines[valued]
    distinct = pd.Series(pd.unique(cells), dtype=cells.dtype)  # each value judged once
    number = ~np.isnan(parse_numbers(distinct))
    if not (number & ~is_whole(distinct)).any():
        return "categorical"  # text, or codes written as whole numbers
    if number.all():
        return "numeric"
    strays = np.flatnonzero(cells.isin(distinct[~number]).to_numpy(bool))
    if len(strays) <= STRAY_SHARE * len(cells):
        first = int(strays[0])
        others = f" (and {len(strays) - 1:,} more)" if len(strays) > 1 else ""
        raise DataError(source, f"column {column!r} holds numbers but {quote(cells.iloc[first])} is not one"
                        f"{others}; correct the cell or leave it empty for a missing value (a column is numeric "
                        "when most cells are numbers; to use it as categories, write them as text, e.g. 'v1.5')",
                        line=int(lines[first]))
    return "categorical"


def numbers(series: pd.Series, column: object, source: object, lines: np.ndarray) -> np.ndarray:
    """A numeric column as float64: missing cells NaN, anything else a finite number within
    float32's range, or an error naming the line."""
    cells = text_cells(series)
    missing = is_missing(cells)
    x = parse_numbers(cells)
    bad = ~missing & ~np.isfinite(x)
    x[missing] = np.nan
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(source, f"column {column!r} holds {quote(cells.iloc[row])}, not a finite number "
                        "(leave the cell empty for a missing value)", line=int(lines[row]))
    large = beyond_float32(x)
    if large.any():
        row = int(np.flatnonzero(large)[0])
        raise DataError(source, f"column {column!r}: {float32_problem(cells.iloc[row])}", line=int(lines[row]))
    return x


def label_classes(series: pd.Series) -> tuple[str, str] | None:
    """(negative, positive) when the label cells are two values, neither of them a number (text
    classes, by the module docstring's rule); None otherwise."""
    cells = text_cells(series).str.strip()
    distinct = pd.unique(cells[~is_missing(cells)])
    if len(distinct) != 2 or not np.isnan(parse_numbers(pd.Series(distinct, dtype=object))).all():
        return None  # a number among them: a numeric label with a stray word is an error, not two classes
    low, high = sorted(str(v) for v in distinct)
    if low.lower() in POSITIVE_WORDS and high.lower() in NEGATIVE_WORDS:
        return high, low
    return low, high


def label_numbers(series: pd.Series, column: object, source: object, lines: np.ndarray,
                  allow_empty: bool = False, classes: tuple[str, str] | None = None) -> np.ndarray:
    """A label column as float32: every cell a finite number within float32's range, or with
    `classes` (negative, positive) one of those two texts, read as 0 and 1 (empty cells NaN when
    `allow_empty`), or an error naming the first bad line."""
    cells = text_cells(series)
    empty = is_missing(cells)
    if classes is not None:
        stripped = cells.str.strip()
        x = np.where(stripped == classes[1], 1.0, np.where(stripped == classes[0], 0.0, np.nan))
        x[empty] = np.nan
        bad = (~empty & np.isnan(x)) | (empty & (not allow_empty))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            what = "is empty" if empty[row] else (f"holds {quote(cells.iloc[row])}, neither of its two classes "
                                                  f"{classes[0]!r} (0) and {classes[1]!r} (1)")
            raise DataError(source, f"label in column {column!r} {what}", line=int(lines[row]))
        return x.astype(np.float32)
    x = parse_numbers(cells)
    x[empty] = np.nan
    bad = (~empty & ~np.isfinite(x)) | (empty & (not allow_empty))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = "is empty" if empty[row] else f"{quote(cells.iloc[row])} is not a finite number"
        if not empty[row] and np.isnan(x[~empty]).all():  # words only: too many to be two classes
            what += (" (a label of text must take exactly two values, the classes of the binary task; "
                     f"this column holds {len(pd.unique(cells[~empty])):,} different ones)")
        raise DataError(source, f"label in column {column!r} {what}", line=int(lines[row]))
    large = beyond_float32(x)
    if large.any():
        row = int(np.flatnonzero(large)[0])
        raise DataError(source, f"label in column {column!r}: {float32_problem(cells.iloc[row])}",
                        line=int(lines[row]))
    return x.astype(np.float32)


def categories(series: pd.Series, missing: str) -> pd.Series:
    """Category names: each cell's text as written, an empty cell `missing`."""
    cells = text_cells(series)
    return cells.where(cells != "", missing)


# --------------------------------------------------------------------------- fitting and reading


def _fit_numeric(series: pd.Series, column: str, train_rows: np.ndarray, source: object,
                 lines: np.ndarray) -> ColumnEncoding:
    values = numbers(series, column, source, lines)
    train = values[train_rows]
    train = train[~np.isnan(train)]
    if len(train) == 0:
        raise DataError(source, f"numeric column {column!r} has no numbers in the training rows", line=2)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked just below
        mean = float(np.mean(train))
        std = float(np.std(train, ddof=1)) if len(train) > 1 else 1.0
    if not (math.isfinite(mean) and math.isfinite(std)):
        row = int(np.nanargmax(np.abs(values)))
        raise DataError(source, f"column {column!r} holds {values[row]:g}; numbers this large cannot "
                        "be standardised (rescale the column)", line=int(lines[row]))
    return ColumnEncoding(column, "numeric", mean=mean, std=std if std > 0 else 1.0,
                          low=float(train.min()), high=float(train.max()))


def _file_lines(frame: pd.DataFrame) -> np.ndarray:
    """The 1-based file line of each row (header on line 1), when `read_table` did not say."""
    return np.arange(len(frame), dtype=np.int64) + 2


def _spelling(text: str) -> str:
    """One key for the spellings pandas gave one value when it guessed cell types: '3', '3.0'
    and '003'; 'true' and 'True'."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(number) if math.isfinite(number) else text


def _legacy_spellings(text: pd.Series, vocabulary: tuple[str, ...]) -> pd.Series:
    """For an encoder saved when cells were read as pandas guessed (`cells: inferred`): a cell
    that is not in the vocabulary as written is mapped to the vocabulary's spelling of the same
    value where only one value has it ('007' to '7', 'true' to 'True'); a missing-value spelling
    to `<missing>`, as pandas read it."""
    by_key: dict[str, list[str]] = {}
    for value in vocabulary:
        by_key.setdefault(_spelling(value), []).append(value)
    aliases = {key: values[0] for key, values in by_key.items() if len(values) == 1}
    known = set(vocabulary)
    strangers = pd.unique(text[~text.isin(known)])
    renames = {s: MISSING if s in NA_SPELLINGS else aliases.get(_spelling(s)) for s in strangers}
    renames = {s: v for s, v in renames.items() if v is not None and v != s}
    return text.replace(renames) if renames else text


def read_table(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """A CSV with a header as text cells, and the file line of each data row (blank rows are
    skipped; a quoted cell spanning lines counts its lines)."""
    raw = read_regular_file(path, MAX_TEXT_FILE_BYTES, lambda problem: DataError(path, problem))
    return read_csv_text(raw, path)


def label_by_name(columns) -> str | None:
    """The column whose name says it is the label (LABEL_COLUMN_NAMES, any case), or None."""
    lowered = {str(c).strip().lower(): c for c in reversed(list(columns))}  # the first of equal names wins
    return next((lowered[name] for name in LABEL_COLUMN_NAMES if name in lowered), None)


def csv_columns(path: str | os.PathLike) -> list[str]:
    """The header of a CSV file, as the reader names its columns (a DataError when unreadable)."""
    return [str(c) for c in read_csv_file(Path(path), nrows=0, dtype=str).columns]


def guess_label_column(frame: pd.DataFrame) -> str:
    return label_by_name(frame.columns) or frame.columns[-1]


def labels_of(frame: pd.DataFrame, label: str, source: object, lines: np.ndarray,
              classes: tuple[str, str] | None = None) -> np.ndarray:
    """The label column as finite float32 numbers (text `classes` as 0 and 1), or an error
    naming the first bad line."""
    return label_numbers(frame[label], label, source, lines, classes=classes)


def load_csv(path: str | os.PathLike, label: str | None = None, seed: int = 0,
             categorical: Sequence[str] = (), numeric: Sequence[str] = (), min_count: int = DEFAULT_MIN_COUNT,
             schema: FieldSchema | None = None) -> Dataset:
    """A CSV with a header; each column but the label becomes one field, split 70/20/10 with
    `seed`. Without `schema` the encoder is fitted on the training rows; with a checkpoint's
    `schema` its saved encoder is used as it is (and its label column, unless `label` is given)."""
    path = Path(path)
    frame, lines = read_table(path)
    return table_dataset(frame, lines, path, path.stem, str(path), label, split_indices(len(frame), seed),
                         [f"split 70/20/10 with seed {seed}"], categorical, numeric, min_count, schema)


FRAME_SOURCE = "DataFrame"  # what errors about a frame's cells name; their "line" is the row's position (iloc)


def frame_text(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """A pandas DataFrame as the text cells a CSV file of it would hold (written with `to_csv` and
    read back by the CSV reader), so a frame is read by exactly the rules of a CSV file: numbers
    with a fraction are numeric, codes and words categorical, an empty or NaN cell missing; but
    every row is a row, one whose cells are all missing included (a file skips it as a blank
    line). The rows' positions stand for line numbers in errors."""
    if not isinstance(frame, pd.DataFrame):
        raise DataError(FRAME_SOURCE, f"expected a pandas DataFrame, got {type(frame).__name__}")
    if frame.columns.duplicated().any():
        twice = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise DataError(FRAME_SOURCE, f"duplicate column names {twice[:5]}")
    if len(frame.columns) == 0 or len(frame) == 0:
        raise DataError(FRAME_SOURCE, "the frame is empty (no columns or no rows)")
    marker = "_afm_row_"  # a column that is never empty, so no row reads as a blank line
    while marker in {str(c) for c in frame.columns}:
        marker = f"_{marker}_"
    # \r\n: the writer quotes a cell holding either character, which would otherwise end its row
    raw = frame.reset_index(drop=True).to_csv(index_label=marker, lineterminator="\r\n").encode("utf-8")
    cells, _ = read_csv_text(raw, FRAME_SOURCE)
    return cells.drop(columns=marker), np.arange(len(cells))


def table_dataset(frame: pd.DataFrame, lines: np.ndarray, source: object, name: str, location: str,
                  label: str | None, index: dict[str, np.ndarray], notes: list[str],
                  categorical: Sequence[str] = (), numeric: Sequence[str] = (), min_count: int = DEFAULT_MIN_COUNT,
                  schema: FieldSchema | None = None) -> Dataset:
    """A table of text cells (a CSV file's or a DataFrame's) as a Dataset with the splits `index`
    names (rows per split): the label column checked and read, the encoder fitted on the training
    rows (or a checkpoint's `schema`'s, used as it is)."""
    encoder = TabularEncoder.of(schema, source) if schema is not None else None
    if schema is not None and encoder is None:
        raise DataError(source, "the model was trained on libfm data, not on a CSV; give it libfm rows")
    guessed = not label and encoder is None and label_by_name(frame.columns) is None
    label = label or (encoder.label if encoder else None) or guess_label_column(frame)
    if guessed:
        notes.append(f"The label is the last column, {label!r}: no column is named like a label "
                     f"({', '.join(LABEL_COLUMN_NAMES[:6])}, ...); give the label column to choose another.")
    if label not in frame.columns:
        raise DataError(source, f"no label column {label!r}; columns are {[str(c) for c in frame.columns][:20]}",
                        line=1)
    if len(frame) < MIN_ROWS and encoder is None:
        raise DataError(source, f"only {len(frame)} data rows; at least {MIN_ROWS} are needed to split and train")
    classes = encoder.label_classes if encoder is not None else label_classes(frame[label])
    labels = labels_of(frame, label, source, lines, classes)
    if encoder is None:
        encoder = TabularEncoder.fit(frame, label, index["train"], source, categorical, numeric, min_count, lines,
                                     label_classes=classes)
    ids, values = encoder.transform(frame, source, lines)
    everything = Split(ids, values, labels)
    splits = {split: everything.take(rows) for split, rows in index.items()}
    return Dataset(name, encoder.schema(), splits, location, notes=notes)
