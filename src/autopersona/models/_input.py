"""Reading the analyst's transaction and basket files, with errors that name file and column.

Every loader raises :class:`InputError` (a ``ValueError``) whose message starts with the
file's path and, where one is to blame, the column, so the CLI can print it and exit 2.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

__all__ = ["InputError", "parse_dates", "parse_numbers", "read_table"]

CSV_SUFFIXES = frozenset({".csv", ".txt", ".tsv"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})


class InputError(ValueError):
    """A file the user passed cannot be used; the message names the file and column."""


def read_table(
    path: str | Path, columns: Sequence[str], *, text_columns: Sequence[str] = ()
) -> pd.DataFrame:
    r"""Read the named ``columns`` of a CSV or Parquet file.

    Parameters
    ----------
    path
        ``.csv``/``.txt`` (comma-separated), ``.tsv`` (tab) or ``.parquet``/``.pq``.
    columns
        Columns that must be present; only these are returned, in this order.
    text_columns
        CSV columns read as text (dates such as ``19970101`` must not become integers).

    Returns
    -------
    pandas.DataFrame
        The requested columns, at least one row.

    Raises
    ------
    InputError
        The file is missing, empty, unreadable or lacks one of ``columns``.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = p.write_text("id,day\n1,19970101\n")
    >>> read_table(p, ["day"], text_columns=["day"])["day"].tolist()
    ['19970101']
    >>> read_table(p, ["amount"])
    Traceback (most recent call last):
    InputError: ...t.csv: column 'amount' not found (columns: id, day)
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: the file is empty")
    suffix = p.suffix.lower()
    wanted = list(dict.fromkeys(columns))
    try:
        if suffix in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            names = list(pq.read_schema(p).names)
            _check_columns(p, wanted, names)
            df = pd.read_parquet(p, columns=wanted)
        elif suffix in CSV_SUFFIXES:
            sep = "\t" if suffix == ".tsv" else ","
            names = list(pd.read_csv(p, sep=sep, nrows=0).columns)
            _check_columns(p, wanted, names)
            dtype = {c: "string" for c in text_columns if c in wanted}
            df = pd.read_csv(p, sep=sep, usecols=wanted, dtype=dtype)
        else:
            raise InputError(f"{p}: unsupported file type {suffix!r} (use .csv, .tsv or .parquet)")
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError(f"{p}: the file is empty") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InputError(f"{p}: cannot be read: {exc}") from None
    if df.empty:
        raise InputError(f"{p}: the file has no rows")
    return df[wanted]


def _check_columns(path: Path, wanted: Sequence[str], names: Sequence[str]) -> None:
    for c in wanted:
        if c not in names:
            raise InputError(f"{path}: column {c!r} not found (columns: {', '.join(names)})")


def parse_dates(
    values: pd.Series, *, path: str | Path, column: str, fmt: str | None = None
) -> pd.Series:
    """Parse a column into naive timestamps; any unparsable value is an error.

    Already-datetime columns pass through (time zones are dropped after conversion to
    UTC). Text is tried as ISO 8601 first (``2011-12-09 12:50``, ``19970101``), then with
    the format pandas infers from the first value, unless ``fmt`` is given.

    Parameters
    ----------
    values
        The raw column.
    path, column
        Named in the error message.
    fmt
        An explicit ``strftime`` format.

    Returns
    -------
    pandas.Series
        ``datetime64`` values; missing input stays missing.

    Raises
    ------
    InputError
        Naming the file, the column and the first value that is not a date.

    Examples
    --------
    >>> parse_dates(pd.Series(["19970101", "1997-01-02"]), path="f.csv", column="d").dt.day.tolist()
    [1, 2]
    >>> parse_dates(pd.Series(["1997-01-01", "soon"]), path="f.csv", column="d")
    Traceback (most recent call last):
    InputError: f.csv: column 'd': 'soon' (row 2) is not a date
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        naive: pd.Series = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return naive
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values
    text = values.astype("string").str.strip()
    formats: list[str | None] = [fmt] if fmt else ["ISO8601", None]
    for f in formats:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                out: pd.Series = pd.to_datetime(text, format=f)
                return out
        except (ValueError, TypeError, UserWarning, OverflowError):
            continue
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(text, format=fmt or "mixed", errors="coerce")
    bad = parsed.isna() & text.notna() & (text != "")
    if not bad.any():  # pragma: no cover - only mixed formats get here
        return parsed
    i = int(bad.to_numpy().argmax())
    raise InputError(f"{path}: column {column!r}: {text.iloc[i]!r} (row {i + 1}) is not a date")


def parse_numbers(values: pd.Series, *, path: str | Path, column: str) -> pd.Series:
    """Parse a column as float; any non-numeric, non-missing value is an error.

    Examples
    --------
    >>> parse_numbers(pd.Series(["1.5", "2"]), path="f.csv", column="x").tolist()
    [1.5, 2.0]
    >>> parse_numbers(pd.Series(["1.5", "two"]), path="f.csv", column="x")
    Traceback (most recent call last):
    InputError: f.csv: column 'x': 'two' (row 2) is not a number
    """
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64")
    out = pd.to_numeric(values, errors="coerce").astype("float64")
    bad = out.isna() & values.notna()
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise InputError(
            f"{path}: column {column!r}: {values.iloc[i]!r} (row {i + 1}) is not a number"
        )
    return out
