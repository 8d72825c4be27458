"""`edgeact plot [--out DIR] [WHAT]`: write figures (PNG) from the registry in `edgeact.plots`.

WHAT is checked against the live registry, so a figure another module registers with
`edgeact.plots.register_figure` (e.g. `landscape`) becomes `edgeact plot landscape` without
touching this file; see the `edgeact.plots` docstring for how.
"""
from __future__ import annotations

from pathlib import Path

DEFAULT_OUT = Path("out") / "plots"


class _FigureChoices:
    """argparse `choices` that read the figure registry when checked or listed, not when built."""

    def _names(self) -> list[str]:
        from edgeact.plots import figures

        return ["all"] + sorted(figures())

    def __contains__(self, item) -> bool:
        return item in self._names()

    def __iter__(self):
        return iter(self._names())


def _epilog() -> str:
    from edgeact.plots import figures

    lines = ["figures:", "  all            every figure below except those marked (not in all)"]
    for name, fig in sorted(figures().items()):
        lines.append(f"  {name:<14} {fig.help}{'' if fig.in_all else ' (not in all)'}")
    return "\n".join(lines)


def register(sub) -> None:
    import argparse

    p = sub.add_parser("plot", help="write PNG figures: activations and derivatives, PWL fits, int8 tables",
                       description="Write figures as PNG files (matplotlib, Agg backend; files are written "
                                   "atomically).", epilog=_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="?", default="all", choices=_FigureChoices(), metavar="WHAT",
                   help="which figure(s) to write (default: all)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                   help=f"folder for the PNG files (default: {DEFAULT_OUT})")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from edgeact.fileio import ensure_writable_dir
    from edgeact.plots import write

    paths = write(args.what, ensure_writable_dir(args.out))
    for path in paths:
        print(path)
    return 0
