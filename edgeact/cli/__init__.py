"""The `edgeact` command line.

Each subcommand lives in its own module under `edgeact.cli.commands` and exposes
`register(subparsers)`; this module discovers them so that features stay in their own files.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import sys

from edgeact.errors import EdgeActError


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other edgeact error (`edgeact COMMAND -h` shows the usage)."""

    def error(self, message: str):
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        hint = f" (see edgeact {command} -h)" if command else " (see edgeact -h)"
        print(f"edgeact: error: {command + ': ' if command else ''}{message}{hint}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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


def _fail(message: str, code: int) -> int:
    try:
        print(f"edgeact: error: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed or broken: nothing left to tell
        pass
    return code


def main(argv: list[str] | None = None) -> int:
    """Run one command; the `edgeact` command itself ends right after (see `edgeact.interrupt.finish`)."""
    from edgeact import interrupt

    code = _main(argv)
    interrupt.finish(code)
    return code


def _main(argv: list[str] | None = None) -> int:
    """Run one command. Every way it can end short of success is one line on stderr and a non-zero
    status: an EdgeActError (1), an OS error such as a full or read-only disk (1), Ctrl-C (130)."""
    from edgeact import interrupt

    interrupt.install()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        interrupt.say_once()
        return interrupt.EXIT_CODE
    except EdgeActError as exc:
        return _fail(str(exc), 1)
    except BrokenPipeError:  # `edgeact … | head`: the reader left; not an error worth a traceback
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    except OSError as exc:
        where = f" {exc.filename!r}" if exc.filename else ""
        fix = {errno.ENOSPC: "free some space or choose another folder",
               errno.EDQUOT: "free some space or choose another folder",
               errno.EROFS: "the disk is read-only; choose a writable folder",
               errno.EACCES: "choose a folder you can write to", errno.EPERM: "choose a folder you can write to",
               }.get(exc.errno, "check the path and try again")
        return _fail(f"cannot access{where}: {exc.strerror or exc} — {fix}", 1)
    finally:
        interrupt.uninstall()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
