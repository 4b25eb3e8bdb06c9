"""CSV cells as text, and the rule that makes a column numeric.

A CSV is read as text (`afm.data.csvfile`); this module decides what each column's cells are:
- a column is **numeric** when every cell holding a value is a number (as pandas' C parser reads
  one: `1.5`, `-2e3`, ` 4`, `inf`) and at least one of them is not a whole number: whole numbers
  alone (`7`, `007`) are codes, read as categories with their text as written, so `007` and `7`
  stay two values.
- empty cells and pandas' missing-value spellings (`NA`, `nan`, `null`, `N/A`, ...) hold no
  value in a numeric column (they sit at the training mean); in a categorical column an empty
  cell is the value `<missing>` and every other cell is the text it is, `NA` included.
- a column that would be numeric but for a few cells that are not numbers, at least half of its
  cells with a value being numbers, is an error naming the first such cell and its line: a stray
  word would otherwise turn a column of numbers into categories of which each is seen once.

A **label** column holds numbers, or two classes written as text, neither a number (`yes`/`no`),
read as 0 and 1 for the binary task (`label_classes`): the positive class is the one of a known
pair (yes, true, y, t, positive, pos; against no, false, n, f, negative, neg, in any case), else
the later of the two in sorted order (as scikit-learn's LabelEncoder orders classes). The
mapping is saved with the model's encoder and read back at predict time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from afm.data.text import beyond_float32, float32_problem
from afm.errors import DataError, quote

# pandas' default missing-value spellings (read_csv's na_values), which numeric columns honour.
NA_SPELLINGS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                          "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
POSITIVE_WORDS = frozenset({"yes", "true", "y", "t", "positive", "pos"})
NEGATIVE_WORDS = frozenset({"no", "false", "n", "f", "negative", "neg"})
STRAY_SHARE = 0.5  # a would-be numeric column with at most this share of non-numbers: the rest are strays


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


def labels(series: pd.Series, column: object, source: object, lines: np.ndarray,
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
