"""`edgeact activations`: the registry as a table (what each activation is, bounded, monotonic, smooth…)."""
from __future__ import annotations

from edgeact.activations import REGISTRY
from edgeact.markdown import markdown_table

COLUMNS = {
    "name": "activation", "bounded_below": "bounded below", "bounded_above": "bounded above",
    "monotonic": "monotonic", "smooth": "smooth", "piecewise_linear": "PWL", "range": "range of interest",
    "hard": "hard variant / stands in for", "description": "what",
}


def activation_rows() -> list[dict]:
    rows = []
    for a in REGISTRY.values():
        rows.append({
            "name": a.name, "bounded_below": a.bounded_below, "bounded_above": a.bounded_above,
            "monotonic": a.monotonic, "smooth": a.smooth, "piecewise_linear": a.piecewise_linear,
            "range": f"[{a.range_of_interest[0]:g}, {a.range_of_interest[1]:g}]",
            "hard": (f"→ {a.hard_variant}" if a.hard_variant else (f"≈ {a.stands_in_for}" if a.stands_in_for else "")),
            "description": a.description,
        })
    return rows


def activation_table() -> str:
    return markdown_table(activation_rows(), COLUMNS)


def register(sub) -> None:
    p = sub.add_parser("activations", help="list the activations edgeact knows, with their properties",
                       description="Print the activation registry as a Markdown table.")
    p.set_defaults(func=lambda args: print(activation_table()) or 0)
