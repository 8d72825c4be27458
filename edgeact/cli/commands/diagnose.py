"""`edgeact diagnose MODEL`: linear collapse, dying units, saturation, gradients at initialisation."""
from __future__ import annotations

import json
from pathlib import Path

from edgeact.cli import numbers


def register(sub) -> None:
    p = sub.add_parser(
        "diagnose", help="flag affine layers with no activation between, dead units, saturation, vanishing gradients",
        description="Diagnose a model on the digits test set: consecutive affine layers with no nonlinearity "
        "between (traced with torch.fx), units that never pass a gradient (dying ReLU), saturated bounded "
        "activations, and the gradient norm of each layer at initialisation. MODEL is a reference model name "
        "(mlp, cnn, mnv3s; trained weights from its checkpoint, with --activation) or a file written with "
        "torch.save(module).")
    p.add_argument("model", metavar="MODEL", help="mlp | cnn | mnv3s | path/to/module.pt")
    p.add_argument("--activation", default="relu", help="activation of a reference model (default relu)")
    p.add_argument("--untrained", action="store_true", help="diagnose a reference model at initialisation "
                   "instead of its trained checkpoint")
    p.add_argument("--depth", type=numbers.int_range(1, 1000), help="mlp only: a fresh MLP with DEPTH hidden layers of 32 units "
                   "(e.g. --activation sigmoid --depth 10 shows vanishing gradients)")
    p.add_argument("--input-size", type=numbers.int_range(1, 4096), help="digits image size for a model file (default: the model's "
                   "`input_size` attribute, else 8)")
    p.add_argument("--samples", type=numbers.samples, default=360, help="test images to run (default: all 360)")
    p.add_argument("--epsilon", type=numbers.float_range(0.0, 1.0, lo_open=True), default=0.01,
                   help="saturation: within epsilon × (output range) of an asymptote (default 0.01)")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    p.set_defaults(func=run)


def load_model(spec: str, activation: str, untrained: bool, depth: int | None = None):
    """A reference model by name, or a torch.save'd nn.Module from a file (ModelFileError otherwise)."""
    import torch
    from torch import nn

    from edgeact.errors import ModelFileError, UnsupportedError
    from edgeact.models.registry import MODELS, canonical_model

    try:
        name = canonical_model(spec)
    except UnsupportedError:
        name = None
    if name is not None and not Path(spec).exists():
        from edgeact import models

        if depth is not None:
            if name != "mlp" or depth < 1:
                raise UnsupportedError("--depth N (N ≥ 1) applies to the mlp only: edgeact diagnose mlp --depth 10")
            return models.build("mlp", activation, hidden=(32,) * depth)
        return models.build(name, activation) if untrained else models.load(name, activation)
    path = Path(spec)
    if not path.is_file():
        raise ModelFileError(f"{spec!r} is neither a reference model ({', '.join(MODELS)}) nor an existing file; "
                             "give a model name or the path of a file written with torch.save(module)")
    try:
        # A whole pickled module: this runs code from the file, as torch.load(weights_only=False) always does.
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelFileError(f"{path} cannot be read as a torch file ({type(exc).__name__}: {exc}); save the model "
                             "with torch.save(model, path)") from None
    if not isinstance(obj, nn.Module):
        raise ModelFileError(f"{path} holds a {type(obj).__name__}, not an nn.Module (a state_dict?); save the whole "
                             "module with torch.save(model, path), or diagnose a reference model by name")
    return obj


def run(args) -> int:
    import torch

    from edgeact.diagnose import diagnose
    from edgeact.errors import EdgeActError
    from edgeact.models.data import load_digits

    model = load_model(args.model, args.activation, args.untrained, args.depth)
    size = args.input_size or getattr(model, "input_size", 8)
    data = load_digits(size)
    x, y = data.x_test[: args.samples], data.y_test[: args.samples]
    if len(x) == 0:
        raise EdgeActError("--samples must be at least 1")
    try:
        with torch.no_grad():
            model.eval()(x[:2])
    except Exception as exc:
        raise EdgeActError(f"the model does not accept digits images of shape {tuple(x.shape[1:])} "
                           f"({type(exc).__name__}: {exc}); pass --input-size 8 or 16") from None
    batches = list(zip(x.split(128), y.split(128)))
    result = diagnose(model, batches, epsilon=args.epsilon)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.to_markdown())
    return 0
