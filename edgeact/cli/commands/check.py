"""`edgeact check MODEL --reference FLOAT --data X.npz --target T`: accuracy vs float, codes vs host."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check", help="accuracy of an int8 model on a target against its float reference",
        description="Run MODEL on each --target and the float REFERENCE (.onnx or .tflite) on the host with "
        "the same inputs: max |Δ|, mean |Δ|, SQNR, top-1 agreement for classifiers, and a histogram of int8 "
        "code differences against the same model run on the host (an ARM run must give the host's codes).")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--reference", required=True, metavar="FLOAT_MODEL")
    p.add_argument("--data", required=True, metavar="FILE.npz", help="one array per model input")
    p.add_argument("--target", action="append", help="target (repeatable; default host)")
    p.add_argument("--backend", choices=["onnxruntime", "litert"])
    p.add_argument("--cpu", help="CPU model for QEMU targets")
    p.add_argument("--json", nargs="?", const="-", metavar="PATH")
    p.add_argument("--csv", nargs="?", const="-", metavar="PATH")
    p.add_argument("--plot", metavar="PNG", help="write error histograms")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=handler)


def handler(args) -> int:
    from edgeact import measure, report
    from edgeact.targets.registry import get_targets

    targets = get_targets(args.target, args.cpu)
    results = [measure.check(args.model, args.reference, args.data, t, backend=args.backend,
                             progress=not args.no_progress) for t in targets]
    report.emit_all(report.check_markdown(results), report.check_json(results), report.check_csv(results),
                    args.json, args.csv)
    if args.plot:
        report.plot_check(results, args.plot)
    return 0
