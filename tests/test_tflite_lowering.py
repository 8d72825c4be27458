"""Activation chains in LiteRT (export/litert/chains.py): at realistic parameters every
study activation with a chain is lowered to int8 ops XNNPACK runs — one partition, nothing outside —
and LiteRT returns exactly the 'tflite' table for all 256 codes; the table stays within one step of
the correctly rounded activation (computed here from the float64 NumPy function, independently)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import edgeact
from edgeact import QuantParams, int8_table
from edgeact.export.litert import interpreter as rt
from edgeact.activations import bind
from edgeact.export import to_tflite
from edgeact.export.litert.lowering import activation_batch_model
from edgeact.export.litert.run import verify_tflite
from edgeact.export.litert import arithmetic as T
from nets import SmallCNN

CODES = np.arange(-128, 128, dtype=np.int8).reshape(1, 16, 16, 1)
CHAINED = [("swish", {}), ("hard_swish", {}), ("hard_mish", {}), ("hard_sigmoid", {}),
           ("leaky_relu", {"negative_slope": 0.1}), ("selu", {})]


def realistic_pairs(act, n=60, seed=0):
    """Input ranges as a calibrated model has them; the output parameters cover the activation's range
    over the input's (an observer's min/max)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        s_in = float(np.float32(10 ** rng.uniform(-2.0, -0.7)))
        z_in = int(rng.integers(-100, 100))
        y = act(s_in * (np.arange(-128, 128) - z_in))
        lo, hi = min(float(y.min()), 0.0), max(float(y.max()), 0.0)
        s_out = float(np.float32((hi - lo) / 255))
        pairs.append((QuantParams(s_in, z_in), QuantParams(s_out, int(np.clip(round(-128 - lo / s_out), -128, 127)))))
    return pairs


@pytest.mark.parametrize("name,params", CHAINED, ids=[c[0] for c in CHAINED])
def test_chain_is_exact_delegated_and_within_one_step(name, params):
    act = bind(name, **params)
    pairs = realistic_pairs(act)
    plans = [T.plan_activation(act, i, o) for i, o in pairs]
    chained = [k for k, p in enumerate(plans) if p.kind == "chain"]
    assert len(chained) >= len(pairs) * 3 // 4, f"{name}: only {len(chained)} of {len(pairs)} pairs chained"
    pairs = [pairs[k] for k in chained]
    interp = rt.load(activation_batch_model(act, pairs))
    got = np.stack([o.reshape(-1) for o in rt.run(interp, [CODES] * len(pairs))]).astype(np.int64)
    expected = np.stack([int8_table(act, i, o, backend="litert") for i, o in pairs])
    np.testing.assert_array_equal(got, expected)
    parts = rt.partitions(interp)
    assert parts.delegated == 1 and parts.outside == ()
    for (i, o), table in zip(pairs, expected):  # independent reference: the float64 function, rounded
        x = i.scale * (np.arange(-128, 128) - i.zero_point)
        ideal = np.clip(np.round(act(x) / o.scale) + o.zero_point, -128, 127)
        assert np.abs(table - ideal).max() <= 1


def test_mish_has_no_chain_and_stays_a_table():
    act = bind("mish")
    assert {T.plan_activation(act, i, o).kind for i, o in realistic_pairs(act, n=10)} == {"table"}


def test_tables_split_the_delegated_graph_chains_do_not():
    act = bind("hard_swish")
    pairs = realistic_pairs(act, n=3)
    table = rt.partitions(rt.load(activation_batch_model(act, pairs, lowering="table")))
    assert table.outside.count("GATHER") == 3 and table.delegated == 0
    chain = rt.partitions(rt.load(activation_batch_model(act, pairs)))
    assert chain.outside == () and chain.delegated == 1


@pytest.mark.parametrize("act", ["hard_swish", "swish", "hard_mish"])
def test_small_cnn_is_one_partition_and_bit_exact(act, tmp_path):
    torch.manual_seed(0)
    model = SmallCNN(residual=True).eval()
    with torch.no_grad():
        model.bn.running_var.uniform_(0.5, 2.0)
    p = edgeact.prepare(model, activations={"relu": act})
    edgeact.calibrate(p, torch.randn(64, 3, 8, 8) * 1.5, progress=False)
    c = edgeact.convert(p, backend="litert")
    path = tmp_path / "cnn.tflite"
    to_tflite(c, torch.zeros(1, 3, 8, 8), path)
    report = verify_tflite(path, c, torch.randn(20, 3, 8, 8) * 1.5)
    assert report.ok, str(report)
    assert report.partitions == {"delegated": 1, "outside": []}, str(report)
    assert all(str(v).startswith("chain") for v in report.lowerings.values()), report.lowerings
    assert "XNNPACK: 1 partition(s); outside: none" in str(report)


def test_forced_table_still_exact_and_reported(tmp_path):
    torch.manual_seed(0)
    p = edgeact.prepare(SmallCNN().eval(), activations={"relu": "hard_swish"})
    edgeact.calibrate(p, torch.randn(64, 3, 8, 8), progress=False)
    c = edgeact.convert(p, backend="litert", lowering="table")
    path = tmp_path / "cnn.tflite"
    to_tflite(c, torch.zeros(1, 3, 8, 8), path)
    report = verify_tflite(path, c, torch.randn(10, 3, 8, 8))
    assert report.ok, str(report)
    assert report.partitions["outside"].count("GATHER") == 2 and report.partitions["delegated"] >= 2
