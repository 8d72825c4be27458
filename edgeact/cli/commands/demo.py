"""`edgeact demo`: the whole pipeline in one run — the README's main command.

1. the activations (registry table), their PWL stand-ins (minimax fits vs uniform) and the gap
   between each hard variant and the smooth function it replaces;
2. the figures (activations, derivatives, PWL fits, int8 tables, output landscapes);
3. the linear-collapse demonstration from the seed notes;
4. the activation study: by default a small network on a task where activations differ ('clusters'),
   three seeds each (95 % intervals), float / PTQ / QAT accuracy, ONNX and TFLite files checked code for
   code against PyTorch, latency on the host and instruction counts on emulated ARM, and the Pareto plot;
   `--full` runs the MobileNetV3-Small-style model on digits with all eight activations.

Independent pieces run as Ray tasks when Ray is installed (`edgeact[scale]`), else one after another;
what is trained or deterministic is cached by content, so a second run mostly reads the cache.
"""
from __future__ import annotations

import time
from pathlib import Path

from edgeact.cli import numbers
from edgeact.fileio import atomic_write

# The default shows the whole pipeline in about a minute: a small model on a task where activations
# differ, three seeds each, files checked code for code and timed on the host and emulated ARM.
DEFAULT = {"model": "mlp", "task": "clusters", "activations": "relu,hard_swish,mish,selu", "seeds": 3}
# --full: today's full study, MobileNetV3-Small-style on digits, every default activation.
FULL = {"model": "mnv3s", "task": "digits", "seeds": 1}

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


def pwl_section() -> str:
    """The PWL table (minimax fits): deterministic, so cached by code version."""
    from edgeact import pwl
    from edgeact.study import _one_thread
    from edgeact.study_cache import cached, content_key

    def compute():
        _one_thread()
        return {"text": pwl.render_markdown(pwl.demo_table())}

    return cached(content_key("demo-pwl"), compute)["text"]


def figures_section() -> dict:
    """Every figure, as {file name: bytes}: deterministic, so cached by code version."""
    import tempfile

    from edgeact import plots
    from edgeact.study import _one_thread
    from edgeact.study_cache import cached, content_key

    def compute():
        _one_thread()
        with tempfile.TemporaryDirectory(prefix="edgeact-figures-") as tmp:
            paths = plots.write_all(tmp)
            return {"files": {str(Path(p).relative_to(tmp)): Path(p).read_bytes() for p in paths}}

    return cached(content_key("demo-figures"), compute)["files"]


def pwl_and_figures() -> tuple[str, dict]:
    return pwl_section(), figures_section()


def handler(args) -> int:
    from edgeact.cli.commands.activations import activation_table
    from edgeact.diagnose import collapse_demo
    from edgeact.executor import get_executor
    from edgeact.study import DEFAULT_ACTIVATIONS, run_study

    start = time.perf_counter()
    out = Path(args.out)
    report: list[str] = ["# edgeact demo\n"]

    def emit(title: str, text: str) -> None:
        _section(title)
        print(text, flush=True)
        report.append(f"## {title}\n\n{text}\n")

    emit("Activations", activation_table())
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    _ensure_targets(targets)
    setting = dict(FULL, activations=",".join(DEFAULT_ACTIVATIONS)) if args.full else dict(DEFAULT)
    for k in ("model", "task", "activations", "seeds"):
        if getattr(args, k) is not None:
            setting[k] = getattr(args, k)

    ex = get_executor(args.executor, args.address)
    try:
        # The PWL fits and the figures run alongside the study's cells (on Ray, on the other cores).
        # One task for both: the figures redraw the PWL fits, which pwl's in-process cache then already holds.
        both = ex.submit(pwl_and_figures)
        print(f"\nrunning the study ({setting['model']} on {setting['task']}, {setting['seeds']} seed(s), "
              f"targets {', '.join(targets)}), the PWL fits and the figures ({ex.name}, {ex.workers} workers) …",
              flush=True)
        result = run_study(setting["model"], setting["activations"].split(","), targets, ("onnxruntime", "litert"),
                           qat_epochs=args.qat_epochs, out_dir=out / "study", progress=True, task=setting["task"],
                           seeds=setting["seeds"], executor=ex)
        pwl_text, figures = ex.gather([both])[0]
    finally:
        ex.shutdown()

    emit("Piecewise-linear stand-ins", pwl_text)
    paths = [atomic_write(out / "plots" / name, data) for name, data in figures.items()]
    emit("Figures", "\n".join(f"- {p}" for p in paths))

    c = collapse_demo()
    emit("Linear collapse (seed note: a deep linear net is one layer)",
         f"Two stacked nn.Linear layers vs one with W = W2·W1, B = W2·b1 + b2: max |difference| = "
         f"{c['max_abs_difference']:.2e} on outputs of size up to {c['output_scale']:.2f}; with a ReLU between "
         f"them the single layer misses by {c['max_abs_difference_with_relu_between']:.3f}.")

    emit(f"Activation study ({setting['model']} on {setting['task']}; targets {', '.join(targets)})",
         result.markdown() + f"\nPareto plot: {out / 'study' / 'pareto.png'}\n")
    atomic_write(out / "demo.md", "\n".join(report))
    print(f"\nreport: {out / 'demo.md'}; files: {out}; {time.perf_counter() - start:.0f} s")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole pipeline: activations, PWL fits, plots, and the activation study",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/demo", help="folder for plots, exported models and reports (default out/demo)")
    p.add_argument("--full", action="store_true",
                   help="the full study: mnv3s on digits, all eight activations (minutes, not one)")
    p.add_argument("--model", default=None, help=f"reference model of the study (default {DEFAULT['model']}; "
                   f"--full: {FULL['model']})")
    p.add_argument("--task", default=None, choices=("digits", "clusters"),
                   help=f"study data (default {DEFAULT['task']}; --full: {FULL['task']})")
    p.add_argument("--activations", default=None, help=f"comma-separated (default {DEFAULT['activations']})")
    p.add_argument("--seeds", type=numbers.int_range(1, 1000), default=None, help=f"seeds per activation (default {DEFAULT['seeds']})")
    p.add_argument("--targets", default="host,qemu-aarch64",
                   help="targets of the study (default host,qemu-aarch64; QEMU roots are set up on first use)")
    p.add_argument("--qat-epochs", type=numbers.epochs, default=2, help="QAT fine-tuning epochs per activation (default 2)")
    p.add_argument("--executor", default="auto", choices=("auto", "serial", "ray"),
                   help="cells as Ray tasks (auto: when Ray is installed) or one after another")
    p.add_argument("--address", default=None, help="Ray cluster address (default $RAY_ADDRESS, else local)")
    p.set_defaults(func=handler)
