"""Cells of the CSV files the package writes, made safe to open in a spreadsheet.

A text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to Excel, LibreOffice
and Google Sheets (CSV injection: a case file named ``=HYPERLINK(...).nii.gz`` would become a live link). Following
OWASP's rule, every CSV writer of the package (``evaluate``'s results, summary and lesion tables; ``review``'s
``review.csv``, ``lesions.csv`` and Zooniverse ``manifest.csv``) passes its cells through :func:`safe_cell`, which
puts a single quote before such text. Numbers (int, float, numpy numbers, including negative ones) are never
changed, so numeric columns read back as numbers. A file named in a CSV cell that other software opens by that
name (the Zooniverse ``image_1`` column) gets a name that needs no quote (:func:`cell_safe_file_name`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FORMULA_STARTS", "cell_safe_file_name", "safe_cell", "safe_frame", "safe_rows"]

#: First characters that make a spreadsheet read a text cell as a formula (OWASP, "CSV Injection").
FORMULA_STARTS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """``value`` with a ``'`` put before it if it is text starting with one of :data:`FORMULA_STARTS`; any other
    value (numbers included) unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_rows(rows: Iterable[Mapping[str, object]]) -> list[dict[str, object]]:
    """Rows (dicts of cells) with every cell passed through :func:`safe_cell`."""
    return [{key: safe_cell(value) for key, value in row.items()} for row in rows]


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells went through :func:`safe_cell`; numeric columns are left as they are."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or str(out[column].dtype) in ("string", "str"):
            out[column] = out[column].map(safe_cell)
    return out


def cell_safe_file_name(name: str) -> str:
    """``name`` for a file that a CSV cell names verbatim: ``_`` put before it when it starts with one of
    :data:`FORMULA_STARTS` (a quoted cell would name another file), else unchanged."""
    return "_" + name if safe_cell(name) != name else name
