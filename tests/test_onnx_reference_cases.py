"""The activations against ONNX's own backend node test cases (model, inputs, expected outputs).

`onnx.backend.test.case.node.collect_testcases(op_type)` (onnx 1.23) builds its cases once per process, when
it first imports ONNX's case modules, into a module-level list: a second call — ours for the next op, or
another test's — returns the first call's list. So the cases are collected once, unfiltered, in a fresh
Python process (~5 s), and handed back as plain data. Only single-node cases are used: each `*_expanded`
case is the same data run through the op's function body.
"""
from __future__ import annotations

import functools
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeact import activations as A

OPS = ["HardSwish", "HardSigmoid", "Mish", "Selu", "Elu", "LeakyRelu", "PRelu", "Relu", "Sigmoid", "Tanh",
       "Gelu", "Softplus", "Swish"]

_COLLECT = """
import pickle, sys, warnings
warnings.simplefilter("ignore")
from onnx import helper
from onnx.backend.test.case.node import collect_testcases
ops = set(sys.argv[2:])
out = []
for case in collect_testcases():
    nodes = case.model.graph.node
    if len(nodes) == 1 and nodes[0].op_type in ops:
        attrs = {a.name: helper.get_attribute_value(a) for a in nodes[0].attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        out.append((case.name, nodes[0].op_type, attrs, [(list(i), list(o)) for i, o in case.data_sets]))
with open(sys.argv[1], "wb") as f:
    pickle.dump(out, f)
"""


@functools.lru_cache(maxsize=None)
def onnx_cases() -> tuple:
    """(name, op_type, attributes, [(inputs, expected outputs)]) of every single-node case of OPS."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cases.pkl"
        r = subprocess.run([sys.executable, "-c", _COLLECT, str(path), *OPS], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"collecting ONNX's node test cases failed:\n{r.stderr}")
        return tuple(pickle.loads(path.read_bytes()))


class CannotExpress(Exception):
    """An ONNX case whose attributes or inputs edgeact's activation cannot express."""


def edgeact_of(op_type: str, attrs: dict, inputs: list[np.ndarray]):
    """(registry name, params) for one ONNX node ('channel_axis' for a PRelu slope along another axis);
    CannotExpress says why not."""
    x = inputs[0]
    if op_type == "HardSigmoid":
        # ONNX defaults alpha 0.2, beta 0.5 (edgeact's defaults are PyTorch's 1/6, 0.5)
        return "hard_sigmoid", {"alpha": attrs.get("alpha", 0.2), "beta": attrs.get("beta", 0.5)}
    if op_type == "Selu":
        alpha, gamma = attrs.get("alpha", 1.67326319217681884765625), attrs.get("gamma", 1.05070102214813232421875)
        if (np.float32(alpha), np.float32(gamma)) != (np.float32(1.6732632423543772), np.float32(1.0507009873554805)):
            raise CannotExpress(f"Selu with alpha={alpha}, gamma={gamma}: edgeact's selu has the fixed "
                                "self-normalising constants (use elu with a scale for other values)")
        return "selu", {}
    if op_type == "Elu":
        return "elu", {"alpha": attrs.get("alpha", 1.0)}
    if op_type == "LeakyRelu":
        return "leaky_relu", {"negative_slope": attrs.get("alpha", 0.01)}
    if op_type == "PRelu":
        slope = inputs[1]
        if slope.size == 1:
            return "prelu", {"weight": float(slope.reshape(-1)[0])}
        if slope.ndim == 1:  # ONNX broadcasts numpy-style: a 1-D slope runs along the last axis
            return "prelu", {"weight": slope.astype(np.float64), "channel_axis": x.ndim - 1}
        raise CannotExpress(f"PRelu with a slope of shape {slope.shape} (one per element): edgeact's prelu has "
                            "one slope per channel or one shared")
    if op_type == "Gelu":
        return "gelu", {"approximate": attrs.get("approximate", "none")}
    if op_type == "Swish":
        return "swish", {"beta": attrs.get("alpha", 1.0)}
    simple = {"HardSwish": "hard_swish", "Mish": "mish", "Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh",
              "Softplus": "softplus"}
    return simple[op_type], {}


ALL = sorted(onnx_cases(), key=lambda c: (c[1], c[0]))

# Expected cases we must NOT be able to express, and why (anything else that is skipped is a failure).
KNOWN_INEXPRESSIBLE = {"test_selu", "test_selu_example", "test_prelu_example"}


def test_every_op_has_reference_cases():
    assert {op for _, op, _, _ in ALL} == set(OPS)
    names = {name for name, _, _, _ in ALL}
    assert {"test_hardswish", "test_mish", "test_gelu_tanh_2", "test_hardsigmoid_default", "test_selu_default",
            "test_prelu_broadcast", "test_swish"} <= names


def test_only_the_known_cases_are_inexpressible():
    skipped = set()
    for name, op, attrs, data_sets in ALL:
        try:
            edgeact_of(op, attrs, data_sets[0][0])
        except CannotExpress:
            skipped.add(name)
    assert skipped == KNOWN_INEXPRESSIBLE


@pytest.mark.parametrize("case_name,op,attrs,data_sets", ALL, ids=[c[0] for c in ALL])
def test_numpy_twin_matches_onnx_reference(case_name, op, attrs, data_sets):
    for inputs, (expected,) in data_sets:
        try:
            name, params = edgeact_of(op, attrs, inputs)
        except CannotExpress as why:
            pytest.skip(str(why))
        x = inputs[0]
        assert x.dtype == np.float32
        act = A.get(name)
        got = act.numpy_fn(x, **act.params(**{k: v for k, v in params.items() if k != "channel_axis"}),
                           **({"channel_axis": params["channel_axis"]} if "channel_axis" in params else {}))
        # ONNX computed the expected values in float32 from float32 inputs; ours is float64 on the same inputs.
        np.testing.assert_allclose(got, expected.astype(np.float64), rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("case_name,op,attrs,data_sets", ALL, ids=[c[0] for c in ALL])
def test_torch_function_matches_onnx_reference(case_name, op, attrs, data_sets):
    for inputs, (expected,) in data_sets:
        try:
            name, params = edgeact_of(op, attrs, inputs)
        except CannotExpress as why:
            pytest.skip(str(why))
        # in float64, as the tables are built (torch's float32 erf-GELU loses ~1e-7 to cancellation at x < −2)
        x = inputs[0].astype(np.float64)
        if "channel_axis" in params:  # torch's prelu is per channel on dim 1: move the slope axis there
            x = torch.from_numpy(np.moveaxis(x, params["channel_axis"], 1))
            got = np.moveaxis(A.get(name).torch(x, weight=torch.from_numpy(inputs[1]).double()).numpy(), 1,
                              params["channel_axis"])
        else:
            got = A.get(name).torch(torch.from_numpy(x), **params).numpy()
        np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-7)
