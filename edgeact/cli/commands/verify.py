"""`edgeact verify FILE --model CONVERTED`: the exported file against the converted model, code for code."""
from __future__ import annotations

import json
import sys

from edgeact.cli import numbers


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "verify", help="compare an exported .onnx/.tflite file with the converted model, code for code",
        description="Runs FILE in its runtime (onnxruntime for .onnx, LiteRT for .tflite) and the converted model "
        "on the same inputs and reports every tensor that differs (count, size in LSB, where). Exit status 1 "
        "if any code differs. torch.load runs code from the model files: use only models you made.")
    p.add_argument("file", metavar="FILE", help="exported model (.onnx or .tflite)")
    p.add_argument("--model", required=True, metavar="CONVERTED", help="saved converted model (.pt)")
    p.add_argument("--data", metavar="X.npy|X.npz", help="inputs (npz: one array per model input, in order); "
                   "default: random inputs shaped and scaled like the model's example")
    p.add_argument("--samples", type=numbers.samples, default=32, help="random inputs to draw (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", metavar="FLOAT.pt", help="the float model (torch.save) for the float error")
    p.add_argument("--outputs-only", action="store_true", help="compare only the outputs, not every tensor")
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON ('-' for stdout)")
    p.add_argument("--target", default="host", help="where to run the file: host (default) or an emulated x86 "
                   "CPU, qemu-x86_64:haswell / qemu-x86_64:nehalem (this machine's Python under QEMU, so both "
                   "sides run there). For ARM or a board use `edgeact check --target`.")
    p.set_defaults(func=handler)


def handler(args) -> int:
    import torch

    from edgeact.errors import ModelFileError
    from edgeact.export import verify
    from edgeact.export.converted import load_converted
    from edgeact.inputdata import check_samples, load_inputs

    from edgeact.targets.compat import announce
    from edgeact.targets.registry import get_target

    target = get_target(args.target)
    announce(args.file, target)  # before comparing: this CPU's kernels vs the file's backend
    if target.name != "host":
        return _run_under(target, args)
    model = load_converted(args.model)
    example = getattr(model, "edgeact_example", None)
    n_inputs = sum(1 for n in model.graph.nodes if n.op == "placeholder")
    if args.data:
        specs = [{"name": f"input {i}", "shape": tuple(example.shape) if i == 0 and example is not None else None}
                 for i in range(n_inputs)]
        data = load_inputs(args.data, specs)
        inputs = tuple(torch.from_numpy(a) for a in data.values())
    else:
        if example is None:
            raise ModelFileError(f"{args.model!r} records no example input; pass --data X.npz")
        example = torch.as_tensor(example, dtype=torch.float32)
        samples = check_samples(args.samples, tuple(example.shape))
        gen = torch.Generator().manual_seed(args.seed)
        noise = torch.randn((samples, *example.shape[1:]), generator=gen)
        inputs = noise * example.std() + example.mean()
    reference = None
    if args.reference:
        try:
            reference = torch.load(args.reference, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ModelFileError(f"cannot load the float reference {args.reference!r}: {exc}") from None
        if not isinstance(reference, torch.nn.Module):
            raise ModelFileError(f"{args.reference!r} holds a {type(reference).__name__}, not a model; save the "
                                 "float model with torch.save(model, path)")
    report = verify(args.file, model, inputs, reference=reference, intermediate=not args.outputs_only)
    print(report)
    if args.json:
        text = json.dumps(report.to_dict(), indent=2)
        if args.json == "-":
            sys.stdout.write(text + "\n")
        else:
            from edgeact.fileio import atomic_write

            atomic_write(args.json, text)
    return 0 if report.ok else 1


def _run_under(target, args) -> int:
    """verify itself (the converted model in PyTorch and the file in its runtime) under an emulated x86 CPU."""
    import subprocess

    from edgeact.errors import TargetError
    from edgeact.targets.qemu_x86 import QemuX86Target

    if not isinstance(target, QemuX86Target):
        raise TargetError(f"verify runs the converted model in PyTorch beside the file, so it needs this machine's "
                          f"Python: use --target host or qemu-x86_64:haswell/nehalem, not {target.name}. For ARM or a "
                          "board, `edgeact check MODEL --target ...` compares the file's codes there with the host's.")
    cmd, env = target.python_command()
    argv = ["verify", args.file, "--model", args.model, "--samples", str(args.samples), "--seed", str(args.seed)]
    for flag, value in (("--data", args.data), ("--reference", args.reference), ("--json", args.json)):
        if value:
            argv += [flag, value]
    if args.outputs_only:
        argv.append("--outputs-only")
    code = "import sys; from edgeact.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(cmd + ["-c", code] + argv, env=env, stdin=subprocess.DEVNULL).returncode
