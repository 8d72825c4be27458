"""`edgeact bench MODEL --target T`: latency (median, p10, p90, min), size, memory, instruction counts."""
from __future__ import annotations

from edgeact.cli import numbers


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="time a model on a target (host, qemu-aarch64, qemu-armv7, ssh://user@host[:port])",
        description="Time MODEL on each --target. Under QEMU the headline is the instruction count per "
        "inference (deterministic: one thread, fixed --cpu); emulated milliseconds are shown only as min and "
        "median, with a warning.")
    p.add_argument("models", nargs="+", metavar="MODEL", help=".onnx or .tflite file(s)")
    p.add_argument("--target", action="append", help="target (repeatable; default host). A QEMU target "
                   "may name a CPU: qemu-aarch64:cortex-a53")
    p.add_argument("--backend", choices=["onnxruntime", "litert"], help="checked against the model's format")
    p.add_argument("--cpu", help="CPU model for QEMU targets (aarch64: cortex-a53/a72/a76; armv7: cortex-a7/a15)")
    p.add_argument("--threads", type=numbers.threads, default=1)
    p.add_argument("--warmup", type=numbers.warmup, default=1)
    p.add_argument("--runs", type=numbers.runs, default=10)
    p.add_argument("--no-count", action="store_true",
                   help="under QEMU, skip the instruction count (allows --threads > 1)")
    p.add_argument("--data", help=".npz with inputs (default: random inputs of the model's shapes)")
    p.add_argument("--json", nargs="?", const="-", metavar="PATH", help="write JSON (stdout if no path)")
    p.add_argument("--csv", nargs="?", const="-", metavar="PATH", help="write CSV (stdout if no path)")
    p.add_argument("--plot", metavar="PNG", help="write a latency / instruction-count plot")
    p.add_argument("--executor", default="serial", choices=("auto", "serial", "ray"),
                   help="where the emulated instruction-count cells run: one after another (default), or as "
                   "parallel Ray tasks ('ray'; 'auto': Ray when installed). Wall-clock timings always run one at "
                   "a time here")
    p.add_argument("--address", default=None,
                   help="Ray cluster to attach to (default $RAY_ADDRESS, else Ray embedded in this process)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=handler)


def handler(args) -> int:
    from edgeact import measure, report
    from edgeact.inputdata import read_arrays
    from edgeact.targets.registry import get_targets

    targets = get_targets(args.target, args.cpu)
    data = read_arrays(args.data) if args.data else None
    results = measure.bench_all(args.models, targets, executor=args.executor, address=args.address,
                                progress=not args.no_progress, backend=args.backend, threads=args.threads,
                                warmup=args.warmup, runs=args.runs, inputs=data, count=not args.no_count)
    report.emit_all(report.bench_markdown(results), report.bench_json(results), report.bench_csv(results),
                    args.json, args.csv)
    if args.plot:
        report.plot_bench(results, args.plot)
    return 0
