#!/usr/bin/env python3
"""Training time and accuracy of the reference models with their recipes, on this machine.

Each (model, activation) is trained with `edgeact.models.RECIPES` at a fixed thread count, in this one
process, one after another; the table gives wall time, process CPU time and test accuracy, and the load
average before and after — on a machine shared with other jobs, wall time grows with the load (and
OpenMP's spinning threads inflate CPU time), so read the times together with the load.

    python benchmarks/bench_training.py                              # mlp/relu, cnn/relu, mnv3s/hard_swish
    python benchmarks/bench_training.py --runs mnv3s:relu,mish,selu --threads 2
    python benchmarks/bench_training.py --write benchmarks/RESULTS-training.md
"""
from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

DEFAULT_RUNS = ["mlp:relu", "cnn:relu", "mnv3s:hard_swish"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="*", default=DEFAULT_RUNS, help="model:act[,act…] (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", type=Path, help="also write the Markdown table to this file")
    args = parser.parse_args()

    import torch

    from edgeact.markdown import markdown_table
    from edgeact.models import RECIPES, build, digits_for, fit

    torch.set_num_threads(args.threads)
    rows = []
    for spec in args.runs:
        model_name, acts = spec.split(":")
        for act in acts.split(","):
            load_before = os.getloadavg()[0]
            model = build(model_name, act)
            result = fit(model, digits_for(model_name), **RECIPES[model_name])
            rows.append({"model": model_name, "activation": act, "epochs": result.epochs,
                         "test accuracy %": round(result.test_accuracy, 2), "wall s": round(result.seconds, 1),
                         "CPU s": round(result.cpu_seconds, 1), "load before": round(load_before, 2),
                         "load after": round(os.getloadavg()[0], 2)})
            print(rows[-1], flush=True)
    table = markdown_table(rows, list(rows[0]))
    header = (f"Training with the recipes of edgeact.models.RECIPES, torch.set_num_threads({args.threads}), "
              f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, torch {torch.__version__}.\n\n")
    print(table)
    if args.write:
        from edgeact.fileio import atomic_write

        atomic_write(args.write, "# Training the reference models\n\n" + header + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
