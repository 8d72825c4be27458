"""argparse types for the numbers the CLI takes: checked when the command line is read, before any work.

Each returns a `type=` function; a bad value ends the command with one line that names the option, the
allowed range and what was given (argparse adds the option name).
"""
from __future__ import annotations

import argparse
import math
import os

MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))  # more threads than this only costs memory
MAX_RUNS = 1_000_000


def int_range(lo: int, hi: int | None = None, what: str = ""):
    """An int in [lo, hi] (hi None: no upper bound)."""
    span = f"{lo} to {hi:,}" if hi is not None else f"at least {lo}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give {span}{what}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value} is out of range; give {span}{what}")
        return value

    parse.__name__ = "int"
    return parse


def float_range(lo: float, hi: float, lo_open: bool = False, what: str = ""):
    """A finite float in [lo, hi] ((lo, hi] if lo_open)."""
    span = f"{'>' if lo_open else '≥'} {lo:g} and ≤ {hi:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a value {span}{what}") from None
        if not math.isfinite(value) or value < lo or (lo_open and value == lo) or value > hi:
            raise argparse.ArgumentTypeError(f"{text} is out of range; give a value {span}{what}")
        return value

    parse.__name__ = "float"
    return parse


threads = int_range(1, MAX_THREADS, " (threads beyond the cores only cost memory)")
runs = int_range(1, MAX_RUNS)
warmup = int_range(0, MAX_RUNS)
epochs = int_range(0, 10_000)
positive_epochs = int_range(1, 10_000)
test_limit = int_range(1, None, " (omit the option to use every test image)")
samples = int_range(1, 100_000)
