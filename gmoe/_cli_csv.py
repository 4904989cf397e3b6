"""The command line's one-line errors, its check of the files it will write, and its
reader of CSV files of numbers (``gmoe fit``, ``gmoe select``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CLIError", "check_output", "read_table"]


class CLIError(Exception):
    """An error to print as one line, exit code 2."""


def check_output(path, option: str, command: str) -> Path:
    """The file an option names (``--save``, ``--out``), checked before any work: not a
    folder, in a folder that exists and that this process may write (else CLIError)."""
    path = Path(path)
    where = f"gmoe {command}: {option} {path}"
    if path.is_dir():
        raise CLIError(f"{where} is a folder; give a file name")
    folder = path.parent
    if not folder.exists():
        raise CLIError(f"{where}: no such folder: {folder}")
    if not folder.is_dir():
        raise CLIError(f"{where}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists()
                                                    and not os.access(path, os.W_OK)):
        raise CLIError(f"{where}: permission denied (cannot write there)")
    return path


def _column_name(name, header: bool) -> str:
    """How a message names a column: 'x2' with a header, 2 (from 0) without."""
    return f"column {name!r}" if header else f"column {name}"


def _find_column(spec: str, columns: list, header: bool, option: str, path: Path,
                 positions: bool = True):
    """The column that ``--y``, ``--weights`` or ``--index-col`` names: a header name,
    or a position from 0 (always without a header; with one only if ``positions``)."""
    if spec in columns:
        return spec
    if (positions or not header) and spec.isdigit() and int(spec) < len(columns):
        return columns[int(spec)]
    shown = ", ".join(map(str, columns)) if header else f"0 to {len(columns) - 1}"
    hint = (f" ({option} takes a position only with --no-header)"
            if header and not positions and spec.isdigit() else "")
    raise CLIError(f"gmoe fit: no column {spec!r} in {path} ({option}); columns: "
                   f"{shown}{hint}")


def _check_fields(path: Path, header: bool) -> None:
    """Every row of the file has as many fields as the header (or, without a header, as
    the first row); else one line naming the first row that does not, and the counts.

    pandas would otherwise read a row with an extra field as a row label (the first
    column silently dropped when every row has one) or fill a short row with empty
    cells (blamed on the next line). Blank lines are left to the reader's own check.
    """
    import csv

    expected = first = None
    line = 0  # the last line read: a record starts on the next one (quoted fields span)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle, skipinitialspace=True)
            for row in reader:
                start, line = line + 1, reader.line_num
                if len(row) <= 1 and not "".join(row).strip():
                    continue  # a blank line
                if expected is None:
                    expected, first = len(row), start
                elif len(row) != expected:
                    ref = "the header" if header else f"line {first}"
                    extra = row[expected:]
                    hint = (" (a trailing comma?)" if extra and not "".join(extra).strip()
                            else "")
                    raise CLIError(f"gmoe fit: {path}, line {start} has {len(row)} "
                                   f"field{'s' if len(row) != 1 else ''}, {ref} has "
                                   f"{expected}{hint}")
    except UnicodeDecodeError:
        raise CLIError(f"gmoe fit: {path} is not a text (UTF-8) CSV file") from None
    except csv.Error as exc:
        raise CLIError(f"gmoe fit: cannot read {path} as CSV: line {line + 1}: {exc}") \
            from None


def read_table(path: Path, header: bool, index_col: str | None, y_col: str | None,
               weight_col: str | None = None):
    """Read a CSV of numbers with pandas: (X, y, weights, feature names, response name).

    Every cell must be a finite number; the first one that is not is reported with its
    line in the file and its column, as one line. ``weight_col`` names a column of
    sample weights (taken out of the features; weights None without it).
    """
    import numpy as np
    import pandas as pd

    _check_fields(path, header)
    try:
        # every cell as text: the checks below can then name what they found
        table = pd.read_csv(path, header=0 if header else None, dtype=str,
                            keep_default_na=False, na_filter=False, skip_blank_lines=False,
                            skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise CLIError(f"gmoe fit: {path} is empty") from None
    except pd.errors.ParserError as exc:
        detail = " ".join(str(exc).split())
        raise CLIError(f"gmoe fit: cannot read {path} as CSV: {detail}") from None
    except UnicodeDecodeError:
        raise CLIError(f"gmoe fit: {path} is not a text (UTF-8) CSV file") from None
    columns = list(table.columns)
    if not header:
        table.columns = columns = [str(c) for c in columns]
    first_line = 2 if header else 1  # the file line of the first data row
    # blank lines at the end are harmless; elsewhere they are reported below
    filled = (table.fillna("").apply(lambda c: c.str.strip()) != "").any(axis=1).to_numpy()
    last = np.flatnonzero(filled)
    table = table.iloc[: last[-1] + 1 if last.size else 0]
    if table.empty:
        raise CLIError(f"gmoe fit: {path} has no data rows"
                       + (" below its header" if header else ""))
    if header:
        _check_header(path, columns, index_col)
    if index_col is not None:
        table = table.drop(columns=_find_column(index_col, columns, header, "--index-col",
                                                path))
        columns = list(table.columns)
    blank = np.flatnonzero(~filled[: len(table)])
    if blank.size:
        raise CLIError(f"gmoe fit: {path}, line {blank[0] + first_line} is blank")
    # --y takes a position only without a header (its help says so); --weights and
    # --index-col by name or position (--index-col 0: the unnamed column of to_csv)
    ycol = (columns[-1] if y_col is None
            else _find_column(y_col, columns, header, "--y", path, positions=False))
    wcol = (None if weight_col is None
            else _find_column(weight_col, columns, header, "--weights", path))
    if wcol is not None and wcol == ycol:
        raise CLIError(f"gmoe fit: --weights and the response are the same "
                       f"{_column_name(ycol, header)}")
    xcols = [c for c in columns if c not in (ycol, wcol)]
    if not xcols:
        raise CLIError(f"gmoe fit: {path} needs at least one feature column besides "
                       f"{_column_name(ycol, header)}")
    values = _numbers(table, path, header, first_line)
    X = values[xcols].to_numpy(dtype=float)
    y = values[ycol].to_numpy(dtype=float)
    w = None if wcol is None else values[wcol].to_numpy(dtype=float)
    if w is not None and (np.any(w < 0) or not np.any(w > 0)):
        row = int(np.argmax(w < 0)) if np.any(w < 0) else None
        raise CLIError(f"gmoe fit: {path}: the weights ({_column_name(wcol, header)}) must "
                       "be >= 0 and not all 0" + ("" if row is None else
                                                   f"; line {row + first_line} is negative"))
    if not header:
        return X, y, w, [f"column {c}" for c in xcols], f"column {ycol}"
    return X, y, w, [str(c) for c in xcols], str(ycol)


def _check_header(path: Path, columns: list, index_col: str | None) -> None:
    """Refuse a header that is data (a file without one) or has unnamed columns."""
    import pandas as pd

    as_numbers = pd.to_numeric(pd.Series(columns, dtype=str).str.strip(), errors="coerce")
    if as_numbers.notna().all():
        shown = ", ".join(str(c)[:12] for c in columns[:3]) + (", ..." if len(columns) > 3
                                                                else "")
        raise CLIError(f"gmoe fit: the first line of {path} ({shown}) looks like data, not "
                       "column names; pass --no-header if the file has no header")
    for pos, name in enumerate(columns):
        if str(name).startswith("Unnamed: ") and index_col not in (str(pos), name):
            if pos == 0:
                raise CLIError(f"gmoe fit: the first column of {path} has no name, as "
                               "pandas' to_csv writes the row index; pass --index-col 0 "
                               "to use it as row labels")
            raise CLIError(f"gmoe fit: column {pos} (from 0) of {path} has no name in the "
                           "header")


def _numbers(table, path: Path, header: bool, first_line: int):
    """The table as floats; a cell that is not a finite number is reported, as one line."""
    import numpy as np
    import pandas as pd

    text = table.fillna("").apply(lambda c: c.str.strip())
    values = text.apply(lambda c: pd.to_numeric(c, errors="coerce")).astype(float)
    bad = ~np.isfinite(values.to_numpy())
    if not bad.any():
        return values
    row, col = np.argwhere(bad)[0]  # the first in reading order: by line, then column
    raw = text.iat[row, col]
    if raw == "":
        what = "the cell is empty"
    elif np.isnan(values.iat[row, col]) and raw.lower() not in ("nan", "+nan", "-nan"):
        shown = raw if len(raw) <= 30 else raw[:27] + "..."
        what = f"{shown!r} is not a number"
    else:
        what = f"{raw!r} is not a finite number"
    more = int(bad.sum()) - 1
    rest = f" (and {more} more such cell{'s' if more > 1 else ''})" if more else ""
    raise CLIError(f"gmoe fit: {path}, line {row + first_line}, "
                   f"{_column_name(table.columns[col], header)}: {what}{rest}")
