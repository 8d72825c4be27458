"""Markdown tables for reports printed to a terminal and pasted into the README."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "—"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | Mapping[str, str],
                   formats: Mapping[str, Callable[[Any], str]] | None = None) -> str:
    """rows → a Markdown table; `columns` is a list of keys or {key: header}."""
    headers = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
    formats = formats or {}
    lines = ["| " + " | ".join(headers.values()) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [formats.get(k, _fmt)(row.get(k)) for k in headers]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
