"""Result tables as data: rows (dicts) written as CSV and rendered as Markdown.

A table is a list of rows with the same keys; `columns` picks and orders them. CSV keeps the raw
values (the data); Markdown formats them for reading (numbers to a few significant digits).
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Callable, Sequence

Row = dict[str, Any]


def format_value(value: Any, digits: int = 4) -> str:
  """A cell for a Markdown table: floats to `digits` significant digits, None as "-"."""
  if value is None:
    return "-"
  if isinstance(value, bool):
    return "yes" if value else "no"
  if isinstance(value, float):
    if math.isnan(value):
      return "nan"
    if math.isinf(value):
      return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"
  return str(value)


def markdown_table(rows: Sequence[Row], columns: Sequence[str],
                   headers: Sequence[str] | None = None,
                   formatters: dict[str, Callable[[Row], str]] | None = None) -> str:
  """A GitHub Markdown table of `rows` (one line per row, `columns` in order).

  `headers` renames the columns for display; `formatters[col](row)` renders a cell from the whole
  row (e.g. "mean ± sd" from two columns).
  """
  headers = list(headers or columns)
  formatters = formatters or {}
  lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
  for row in rows:
    cells = [formatters[c](row) if c in formatters else format_value(row.get(c))
             for c in columns]
    lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
  return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[Row], columns: Sequence[str]) -> str:
  """`rows` as CSV text with a header line; lists are joined with ';'."""
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(columns)
  for row in rows:
    writer.writerow([_csv_cell(row.get(c)) for c in columns])
  return out.getvalue()


def _csv_cell(value: Any) -> Any:
  if value is None:
    return ""
  if isinstance(value, (list, tuple)):
    return ";".join(str(v) for v in value)
  return value


def read_csv(path: str) -> list[dict[str, str]]:
  """The rows of a CSV written by `csv_text` (values as strings)."""
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def mean_sd(mean: float | None, sd: float | None, digits: int = 3) -> str:
  """"0.123 ± 0.004" (or "-" when there is no value)."""
  if mean is None:
    return "-"
  if sd is None or sd == 0.0:
    return format_value(float(mean), digits)
  return f"{format_value(float(mean), digits)} ± {format_value(float(sd), 2)}"
