"""CSV files a spreadsheet opens safely: a text cell that begins with `=`, `+`, `-`, `@` (or a tab or
carriage return) is a formula to Excel, LibreOffice and Google Sheets, so a model `name: "=HYPERLINK(...)"`
would run as one. Such cells are written with a leading apostrophe, as OWASP's CSV-injection advice
says; numbers (a negative one too) are left as they are."""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def spreadsheet_safe(table: Any) -> Any:
    """A copy of the DataFrame whose text cells cannot start a formula."""
    out = table.copy()
    for column in out.columns:
        if out[column].dtype == object or str(out[column].dtype) in ("string", "str"):
            out[column] = out[column].map(safe_cell)
    return out


def read_back(table: Any) -> Any:
    """The DataFrame as it was before `spreadsheet_safe` (results.csv read again to rebuild the report)."""
    out = table.copy()
    for column in out.columns:
        if out[column].dtype == object or str(out[column].dtype) in ("string", "str"):
            out[column] = out[column].map(_unescaped)
    return out


def _unescaped(value: Any) -> Any:
    escaped = isinstance(value, str) and value.startswith("'") and value[1:].startswith(FORMULA_STARTS)
    return value[1:] if escaped else value
