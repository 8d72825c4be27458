"""`edgeact study`: which activation to deploy — accuracy (float, PTQ, QAT, deployed files), parity, latency."""
from __future__ import annotations

from edgeact.cli import numbers
from edgeact.study import DEFAULT_ACTIVATIONS, run_study


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def handler(args) -> int:
    result = run_study(args.model, _csv_list(args.activations), _csv_list(args.targets), _csv_list(args.backends),
                       qat_epochs=args.qat_epochs, out_dir=args.out, runs=args.runs, emulated_runs=args.emulated_runs,
                       test_limit=args.test_limit, progress=not args.quiet, prefer=args.prefer, task=args.task,
                       seeds=args.seeds, executor=args.executor, address=args.address, cache=not args.no_cache)
    if args.json:
        print(result.to_json())
    elif args.csv:
        print(result.to_csv(), end="")
    else:
        print(result.markdown())
    print(f"files, study.md/.json/.csv and pareto.png in {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "study", help="compare activations end to end: float/PTQ/QAT accuracy, exported files, parity, latency",
        description="For each activation: train (or load) the reference model, quantize it (PTQ and QAT), export "
        "ONNX and TFLite, check the files against the PyTorch int8 model code for code, time them on each target, "
        "and plot accuracy against latency (Pareto front).")
    p.add_argument("--model", default="mnv3s", help="reference model: mlp, cnn or mnv3s (default: mnv3s)")
    p.add_argument("--activations", default=",".join(DEFAULT_ACTIVATIONS), help="comma-separated activation names")
    p.add_argument("--targets", default="host",
                   help="comma-separated targets: host, qemu-aarch64[:cpu], qemu-armv7[:cpu], ssh://user@board")
    p.add_argument("--backends", default="onnxruntime,litert", help="onnxruntime and/or litert")
    p.add_argument("--qat-epochs", type=numbers.epochs, default=2, help="epochs of quantization-aware fine-tuning (default 2)")
    p.add_argument("--runs", type=numbers.runs, default=30, help="timed runs per file on the host (default 30)")
    p.add_argument("--emulated-runs", type=numbers.runs, default=2, help="timed runs per file under QEMU (default 2)")
    p.add_argument("--prefer", choices=("x86", "arm"), default=None,
                   help="lower each activation as is cheapest on this CPU family (exact on both either way); "
                   "default arm when a target is ARM")
    p.add_argument("--task", default="digits", choices=("digits", "clusters"),
                   help="data: digits (every activation ≈ 99–100 %%) or clusters (harder; activations differ)")
    p.add_argument("--seeds", type=numbers.int_range(1, 1000), default=1,
                   help="train each activation from this many seeds; accuracies get 95%% confidence intervals")
    p.add_argument("--executor", default="auto", choices=("auto", "serial", "ray"),
                   help="run the cells as Ray tasks (auto: when Ray is installed) or one after another")
    p.add_argument("--address", default=None,
                   help="Ray cluster to attach to (default $RAY_ADDRESS, else Ray embedded in this process)")
    p.add_argument("--no-cache", action="store_true",
                   help="train and measure afresh instead of reusing the cache (models by content hash)")
    p.add_argument("--test-limit", type=numbers.test_limit, default=None, help="use only the first N test images")
    p.add_argument("--out", default="out/study", help="folder for the exported files, reports and plot")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    p.add_argument("--csv", action="store_true", help="print CSV instead of Markdown")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=handler)
