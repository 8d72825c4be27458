"""The `edgeact` command line.

Each subcommand lives in its own module under `edgeact.cli.commands` and exposes
`register(subparsers)`; this module discovers them so that features stay in their own files.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from edgeact.errors import EdgeActError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeact",
        description="Activation functions to edge devices in int8: see them, fake-quantize them, "
        "export them to ONNX/TFLite and measure them on the host, under QEMU and on a board.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from edgeact.cli import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EdgeActError as exc:
        print(f"edgeact: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
