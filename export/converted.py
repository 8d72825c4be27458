"""A converted model on disk: torch.save of the GraphModule that edgeact.convert returns.

The CLI's `edgeact export` and `edgeact verify` read models saved this way. torch.load unpickles,
which runs code from the file: load only models you made yourself.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch
import torch.fx as fx

from edgeact.errors import ModelFileError, UnsupportedError
from edgeact.fileio import atomic_write
from edgeact.quantized import modules as Q


def is_converted(model) -> bool:
    """Whether `model` is what edgeact.convert returns: an fx graph of edgeact's integer modules."""
    return isinstance(model, fx.GraphModule) and any(isinstance(m, Q.QuantizedModule) for m in model.modules())


def checked_for_export(model, example_inputs, io: str, ios, *, writer: str, fmt: str, runtime: str,
                       exact_backend: str, batch_one: bool = False):
    """What both writers check before they write: a converted model, a known `io`, example inputs that fit
    (shapes are propagated through the model, which loses them in torch.save). Returns the model's backend,
    whether convert planned its activations for this format (else: a warning, every activation a table) and
    the example tensors (`batch_one`: cut to one sample)."""
    import warnings

    from edgeact.backend import get_backend
    from edgeact.errors import ExportError, UnsupportedError
    from edgeact.tracing import propagate_shapes

    if not is_converted(model):
        raise UnsupportedError(
            f"{writer} needs a converted model (edgeact.convert(prepared_model)), got {type(model).__name__}; "
            "prepare, calibrate and convert it first")
    if io not in ios:
        raise UnsupportedError(f"io must be one of {ios}, got {io!r}")
    backend = get_backend(getattr(model, "edgeact_backend", "ideal"))
    planned = backend.format == fmt
    if not planned:
        warnings.warn(f"the model was converted for backend {backend.name!r}: {runtime} rounds differently at some "
                      f"ties, so its codes may differ; convert with backend={exact_backend!r} for a bit-exact "
                      "export", stacklevel=3)
    if example_inputs is None:
        example_inputs = getattr(model, "edgeact_example", None)
        if example_inputs is None:
            raise ExportError(f"{writer} needs example_inputs (a tensor of the input shape)")
    examples = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    examples = tuple(torch.as_tensor(e, dtype=torch.float32) for e in examples)
    if batch_one:
        examples = tuple(e[:1] for e in examples)
    try:
        with torch.no_grad():
            propagate_shapes(model, *examples)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ExportError(f"the example input(s) of shape {[tuple(e.shape) for e in examples]} do not fit the "
                          f"model ({exc}); pass tensors shaped like the model's input") from exc
    return backend, planned, examples


def unexpected_node(node: fx.Node, fmt: str) -> UnsupportedError:
    """The error for a node a writer meets that is not an edgeact.quantized module."""
    what = getattr(node.target, "__name__", str(node.target))
    return UnsupportedError(
        f"cannot export node {node.name!r} ({node.op} {what}) to {fmt}: the converted model should contain only "
        "edgeact.quantized modules — convert the model with edgeact.convert()")


def model_outputs(node: fx.Node, dequantized) -> list[fx.Node]:
    """The output nodes of a converted graph's `output` node, each checked to be one of `dequantized` (the
    nodes a writer has as float tensors: edgeact.convert ends every output with a Dequantize)."""
    outs = node.args[0]
    outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
    for i, o in enumerate(outs):
        if not isinstance(o, fx.Node) or o not in dequantized:
            raise UnsupportedError(f"model output {i} is not a dequantized tensor (got {o!r}); export needs a "
                                   "model whose outputs come from edgeact.convert's Dequantize")
    return outs


def save_converted(model: fx.GraphModule, path) -> Path:
    """torch.save the converted model, atomically."""
    buf = io.BytesIO()
    torch.save(model, buf)
    return atomic_write(path, buf.getvalue(), create_dirs=False)


def load_converted(path) -> fx.GraphModule:
    """The converted model saved at `path` (ModelFileError if it is missing or not one)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"converted model {str(path)!r} does not exist — save one with "
                             "edgeact.export.converted.save_converted(edgeact.convert(...), path)")
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle, zip and torch errors alike
        raise ModelFileError(f"{str(path)!r} is not a readable torch.save file ({type(exc).__name__}: {exc}); "
                             "save the converted model with save_converted") from exc
    if not is_converted(model):
        raise ModelFileError(f"{str(path)!r} holds a {type(model).__name__}, not a converted model: save the "
                             "result of edgeact.convert(prepared_model)")
    return model
