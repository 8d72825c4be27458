"""`edgeact demo`: the whole pipeline in one run — the README's main command.

1. the activations (registry table), their PWL stand-ins (minimax fits vs uniform) and the gap
   between each hard variant and the smooth function it replaces;
2. the figures (activations, derivatives, PWL fits, int8 tables, output landscapes);
3. the linear-collapse demonstration from the seed notes;
4. the activation study on the MobileNetV3-Small-style model: float / PTQ / QAT accuracy, ONNX and
   TFLite files checked code for code against PyTorch, latency on the host and instruction counts
   on emulated ARM, and the Pareto plot.
"""
from __future__ import annotations

import time
from pathlib import Path

from edgeact.cli import numbers
from edgeact.fileio import atomic_write

QUICK_ACTIVATIONS = "relu6,hard_swish,mish,hard_mish"


def _section(title: str) -> None:
    print(f"\n## {title}\n", flush=True)


def _ensure_targets(targets: list[str]) -> list[str]:
    """Set up QEMU targets that are missing (with progress); a target that cannot be set up stops the demo."""
    from edgeact.targets import get_target
    from edgeact.targets.sysroot import setup

    for t in targets:
        if t.startswith("qemu-") and not get_target(t).status().available:
            print(f"setting up {t} (first run only) …", flush=True)
            setup(t.split(":")[0][len("qemu-"):], progress=True)
    return targets


def handler(args) -> int:
    from edgeact import pwl, plots
    from edgeact.cli.commands.activations import activation_table
    from edgeact.diagnose import collapse_demo
    from edgeact.study import DEFAULT_ACTIVATIONS, run_study

    start = time.perf_counter()
    out = Path(args.out)
    report: list[str] = ["# edgeact demo\n"]

    def emit(title: str, text: str) -> None:
        _section(title)
        print(text, flush=True)
        report.append(f"## {title}\n\n{text}\n")

    emit("Activations", activation_table())
    emit("Piecewise-linear stand-ins", pwl.render_markdown(pwl.demo_table()))

    paths = plots.write_all(out / "plots")
    emit("Figures", "\n".join(f"- {p}" for p in paths))

    c = collapse_demo()
    emit("Linear collapse (seed note: a deep linear net is one layer)",
         f"Two stacked nn.Linear layers vs one with W = W2·W1, B = W2·b1 + b2: max |difference| = "
         f"{c['max_abs_difference']:.2e} on outputs of size up to {c['output_scale']:.2f}; with a ReLU between "
         f"them the single layer misses by {c['max_abs_difference_with_relu_between']:.3f}.")

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    _ensure_targets(targets)
    activations = QUICK_ACTIVATIONS if args.quick else ",".join(DEFAULT_ACTIVATIONS)
    _section(f"Activation study ({args.model}; targets {', '.join(targets)})")
    result = run_study(args.model, activations.split(","), targets, ("onnxruntime", "litert"),
                       qat_epochs=args.qat_epochs, out_dir=out / "study", progress=True)
    print(result.markdown(), flush=True)
    report.append(f"## Activation study\n\n{result.markdown()}\nPareto plot: {out / 'study' / 'pareto.png'}\n")
    atomic_write(out / "demo.md", "\n".join(report))
    print(f"\nreport: {out / 'demo.md'}; files: {out}; {time.perf_counter() - start:.0f} s")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole pipeline: activations, PWL fits, plots, and the activation study",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/demo", help="folder for plots, exported models and reports (default out/demo)")
    p.add_argument("--model", default="mnv3s", help="reference model of the study (default mnv3s)")
    p.add_argument("--targets", default="host,qemu-aarch64",
                   help="targets of the study (default host,qemu-aarch64; QEMU roots are set up on first use)")
    p.add_argument("--qat-epochs", type=numbers.epochs, default=2, help="QAT fine-tuning epochs per activation (default 2)")
    p.add_argument("--quick", action="store_true", help=f"study only {QUICK_ACTIVATIONS}")
    p.set_defaults(func=handler)
