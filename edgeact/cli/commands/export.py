"""`edgeact export MODEL --format onnx|tflite`: a saved converted model as a deployable int8 file."""
from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="write a converted model as a QDQ int8 ONNX (or int8 TFLite) file",
        description="MODEL is a converted model saved with torch.save (edgeact.export.converted.save_converted). "
        "Writes a file that the runtime runs code for code like the converted model (check with edgeact verify). "
        "torch.load runs code from MODEL: use only models you made.")
    p.add_argument("model", metavar="MODEL", help="saved converted model (.pt)")
    p.add_argument("--format", choices=["onnx", "tflite"], default="onnx")
    p.add_argument("-o", "--output", metavar="PATH", help="output file (default: MODEL with .onnx / .tflite)")
    p.add_argument("--lowering", choices=["table"],
                   help="write every activation as its exact lookup table (default: the lowering convert chose; "
                   "to force native ops, convert with edgeact.convert(..., lowering='native'))")
    p.add_argument("--io", choices=["float", "int8"], default="float",
                   help="float in/out like the converted model (default), or the int8 codes")
    p.add_argument("--weights", choices=["uint8", "int8"],
                   help="ONNX weight type: uint8 (onnxruntime's U8U8 kernels, exact on every CPU; the default) or "
                   "int8 (its u8s8 kernels, which saturate pairs of products on AVX2; the default for a model "
                   "converted for backend 'onnxruntime:x86-avx2', which models that)")
    p.set_defaults(func=handler)


def handler(args) -> int:
    from edgeact.export.converted import load_converted

    model = load_converted(args.model)
    if args.lowering == "table":
        from edgeact.quantize.convert import with_tables

        model = with_tables(model)
    out = Path(args.output) if args.output else Path(args.model).with_suffix(f".{args.format}")
    if args.format == "onnx":
        from edgeact.export import to_onnx

        to_onnx(model, None, out, io=args.io, weights=args.weights)
    else:
        if args.weights:
            from edgeact.errors import UnsupportedError

            raise UnsupportedError("--weights applies to ONNX files (TFLite weights are int8); drop it or use "
                                   "--format onnx")
        to_tflite = _tflite_exporter()
        to_tflite(model, None, out, io=args.io)
    print(f"wrote {out}")
    return 0


def _tflite_exporter():
    """The TFLite side: edgeact.export.to_tflite (model, example_inputs, path, io=)."""
    from edgeact.errors import UnsupportedError

    try:
        from edgeact.export import to_tflite
    except ImportError as exc:
        raise UnsupportedError("TFLite export is not available in this version of edgeact; use --format onnx") from exc
    return to_tflite
