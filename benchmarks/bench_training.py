#!/usr/bin/env python3
"""Training time and accuracy of the reference models with their recipes, on this machine.

Each (model, activation) is trained with `edgeact.models.RECIPES` at a fixed thread count, in this one
process, one after another; the table gives wall time, process CPU time and test accuracy, and the load
average before and after — on a machine shared with other jobs, wall time grows with the load (and
OpenMP's spinning threads inflate CPU time), so read the times together with the load.

    python benchmarks/bench_training.py                              # mlp/relu, cnn/relu, mnv3s/hard_swish
    python benchmarks/bench_training.py --runs mnv3s:relu,mish,selu --threads 2
    python benchmarks/bench_training.py --write benchmarks/RESULTS-training.md
    python benchmarks/bench_training.py --qat-epoch --write benchmarks/RESULTS-training.md   # QAT vs float epoch

--qat-epoch --attribute: instead of torch.ao, two stripped QAT epochs in the same rounds, to attribute the
difference — the prepared model with its activation tables' correction skipped (QuantAct returns its fake-quant
output), and with every quantizer an identity too (the folded-BN float graph with its QuantAct modules). Their
numbers are no QAT result; they only say what the quantizers and the tables cost.

--qat-epoch: one training epoch of the same trained model (mnv3s/hard_swish by default) three ways, interleaved
and repeated: float, edgeact's QAT (edgeact.prepare + QAT_QCONFIG, what the study fine-tunes) and torch.ao's QAT
(prepare_qat_fx with the default x86 qconfig: FusedMovingAvgObsFakeQuantize, conv-BN folded in training).
Medians of process CPU time (one thread), so other jobs on the machine weigh less than in wall time; the ratio
is the median over rounds of (epoch / the float epoch of the same round).
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
    parser.add_argument("--qat-epoch", action="store_true", help="compare a QAT epoch with a float epoch (see above)")
    parser.add_argument("--model", default="mnv3s:hard_swish", help="model:activation for --qat-epoch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--attribute", action="store_true",
                        help="with --qat-epoch: where the QAT epoch's extra time goes (see above)")
    args = parser.parse_args()
    if args.qat_epoch:
        return qat_epoch(args)

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


def qat_epoch(args) -> int:
    import copy
    import statistics
    import time
    import warnings

    import torch

    import edgeact
    from edgeact.markdown import markdown_table
    from edgeact.models import digits_for, fit, load
    from edgeact.quantize import QAT_QCONFIG, start_qat

    torch.set_num_threads(1)
    model_name, act = args.model.split(":")
    data = digits_for(model_name)
    trained = load(model_name, act)

    def float_model():
        return copy.deepcopy(trained).train()

    def edgeact_qat():
        q = edgeact.prepare(trained, qconfig=QAT_QCONFIG)
        edgeact.calibrate(q, data.calibration_batches(), progress=False)
        return start_qat(q)

    def torch_ao_qat():
        from torch.ao.quantization import get_default_qat_qconfig_mapping
        from torch.ao.quantization.quantize_fx import prepare_qat_fx

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return prepare_qat_fx(copy.deepcopy(trained).train(), get_default_qat_qconfig_mapping("x86"),
                                  (data.x_train[:1],))

    makers = {"float": float_model, "edgeact QAT": edgeact_qat, "torch.ao QAT (FakeQuantize)": torch_ao_qat}
    if args.attribute:
        makers = {"float": float_model, "edgeact QAT": edgeact_qat,
                  "  without the table correction": lambda: _stripped(edgeact_qat(), tables=False),
                  "  without tables and quantizers": lambda: _stripped(edgeact_qat(), tables=False, quantizers=False)}
    cpu: dict[str, list[float]] = {k: [] for k in makers}
    wall: dict[str, list[float]] = {k: [] for k in makers}
    loads = [os.getloadavg()[0]]
    for _ in range(args.repeats + 1):  # the first round warms up and is dropped
        for name, make in makers.items():
            model = make()
            c, w = time.process_time(), time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit(model, data, 1, lr=2e-4, evaluate_at_end=False)
            cpu[name].append(time.process_time() - c)
            wall[name].append(time.perf_counter() - w)
    loads.append(os.getloadavg()[0])
    med = {name: (statistics.median(cpu[name][1:]), statistics.median(wall[name][1:])) for name in makers}
    # the ratio per round (each against the float epoch of its own round), then the median of those: a load
    # change between rounds moves both epochs of a round together
    per_round = {name: statistics.median(c / f for c, f in zip(cpu[name][1:], cpu["float"][1:])) for name in makers}
    rows = [{"epoch": name, "CPU s (median)": round(med[name][0], 2), "wall s (median)": round(med[name][1], 2),
             "× float (CPU, median of round ratios)": round(per_round[name], 2),
             "CPU s per round": " ".join(f"{c:.2f}" for c in cpu[name][1:])} for name in makers]
    table = markdown_table(rows, list(rows[0]))
    if args.attribute:
        print(f"load average {loads[0]:.2f} before, {loads[1]:.2f} after\n{table}")
        return 0
    text = (f"## A QAT epoch against a float epoch\n\n{model_name}/{act}, {len(data.y_train)} training images, batch 64, "
            f"1 thread, {args.repeats} interleaved rounds (one warm-up round dropped), medians; load average "
            f"{loads[0]:.2f} before, {loads[1]:.2f} after ({os.cpu_count()} cores); torch {torch.__version__}.\n\n{table}")
    print(text)
    if args.write:
        from edgeact.fileio import atomic_write

        old = args.write.read_text() if args.write.exists() else "# Training the reference models\n"
        old = old.split("## A QAT epoch against a float epoch")[0].rstrip() + "\n\n"
        atomic_write(args.write, old + text)
    return 0


def _stripped(model, tables: bool = True, quantizers: bool = True):
    """The prepared model with parts of its QAT step replaced by identities (--attribute only)."""
    import types

    from edgeact.fake_quant import FakeQuantize
    from edgeact.nn.quant_act import QuantAct

    for m in model.modules():
        if isinstance(m, QuantAct) and not tables:
            m.forward = types.MethodType(lambda self, x: self.output_quant(self.act(self.input_quant(x))), m)
        if isinstance(m, FakeQuantize) and not quantizers:
            m.forward = types.MethodType(lambda self, x: x, m)
    return model


if __name__ == "__main__":
    raise SystemExit(main())
