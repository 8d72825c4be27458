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
           ("leaky_relu", {"negative_slope": 0.1}), ("selu", {}), ("mish", {}), ("sigmoid", {}), ("tanh", {})]


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


# The 18 mish activations of the mnv3s checkpoint (models/checkpoints), calibrated on its 256 digits:
# (s_in, z_in, s_out, z_out) as convert(backend="litert") freezes them.
MNV3S_MISH = [
    (0.025526167824864388, 12, 0.01262325793504715, -104), (0.04024156555533409, 2, 0.02088899351656437, -113),
    (0.005318556912243366, -71, 0.004210963845252991, -92), (0.036586690694093704, 0, 0.01945723034441471, -112),
    (0.06201428547501564, 1, 0.031839657574892044, -118), (0.04125792905688286, -8, 0.02306034415960312, -115),
    (0.052288968116045, -7, 0.02865494042634964, -117), (0.046467021107673645, -9, 0.026024550199508667, -116),
    (0.04235437884926796, -16, 0.02494797296822071, -116), (0.013204383663833141, -18, 0.008453343994915485, -91),
    (0.04140237346291542, -14, 0.024050898849964142, -115), (0.0510125495493412, -7, 0.027942633256316185, -117),
    (0.011376915499567986, 0, 0.006464499514549971, -80), (0.0354662761092186, -20, 0.021708279848098755, -114),
    (0.052182912826538086, -14, 0.030003609135746956, -118), (0.01798691600561142, 24, 0.008213912136852741, -90),
    (0.03409331291913986, -17, 0.020493609830737114, -113), (0.04848911613225937, -19, 0.028945889323949814, -117)]


def test_every_mnv3s_mish_is_a_delegated_chain_within_one_step():
    act = bind("mish")
    pairs = [(QuantParams(a, b), QuantParams(c, d)) for a, b, c, d in MNV3S_MISH]
    assert {T.plan_activation(act, i, o).kind for i, o in pairs} == {"chain"}
    interp = rt.load(activation_batch_model(act, pairs))
    got = np.stack([o.reshape(-1) for o in rt.run(interp, [CODES] * len(pairs))]).astype(np.int64)
    np.testing.assert_array_equal(got, np.stack([int8_table(act, i, o, backend="litert") for i, o in pairs]))
    assert rt.partitions(interp) == rt.Partitions(1, ())
    for (i, o), table in zip(pairs, got):  # mish in float64, from its definition, correctly rounded
        x = i.scale * (np.arange(-128, 128) - i.zero_point)
        ideal = np.clip(np.round(x * np.tanh(np.logaddexp(0.0, x)) / o.scale) + o.zero_point, -128, 127)
        assert np.abs(table - ideal).max() <= 1


# ops a chain could use, as one int8 op each: whether XNNPACK takes it must match chains.DELEGATED
PROBED = ["ADD", "SUB", "MUL", "LOGISTIC", "TANH", "ELU", "LEAKY_RELU", "EXP", "LOG", "NEG", "ABS", "MINIMUM",
          "MAXIMUM", "SQUARED_DIFFERENCE", "HARD_SWISH", "GELU"]


@pytest.mark.parametrize("op", PROBED)
def test_delegated_is_measured(op):
    from ai_edge_litert import schema_py_generated as schema
    from edgeact.export.litert.builder import ModelBuilder
    from edgeact.export.litert.chains import DELEGATED

    b = ModelBuilder()
    x = b.tensor("x", CODES.shape, "int8", QuantParams(0.03, 5))
    y = b.tensor("y", CODES.shape, "int8", QuantParams(0.05, 0) if op != "LOGISTIC" else T.LOGISTIC_OUTPUT)
    binary = op in ("ADD", "SUB", "MUL", "MINIMUM", "MAXIMUM", "SQUARED_DIFFERENCE")
    inputs = [x, b.constant("c", np.array([64], np.int8), "int8", QuantParams(1 / 64, 0))] if binary else [x]
    options = {"ADD": schema.AddOptionsT, "SUB": schema.SubOptionsT, "MUL": schema.MulOptionsT,
               "LEAKY_RELU": schema.LeakyReluOptionsT}.get(op)
    options = options() if options else None
    if op == "LEAKY_RELU":
        options.alpha = 0.1  # XNNPACK refuses slopes whose 8-bit multiplier would be 0
    b.op(op, inputs, [y], options)
    interp = rt.load(b.finish([x], [y]))
    rt.run(interp, [CODES])
    assert (rt.partitions(interp).outside == ()) == (op in DELEGATED), rt.partitions(interp)


def test_tables_split_the_delegated_graph_chains_do_not():
    act = bind("hard_swish")
    pairs = realistic_pairs(act, n=3)
    table = rt.partitions(rt.load(activation_batch_model(act, pairs, lowering="table")))
    assert table.outside.count("GATHER") == 3 and table.delegated == 0
    chain = rt.partitions(rt.load(activation_batch_model(act, pairs)))
    assert chain.outside == () and chain.delegated == 1


@pytest.mark.parametrize("act", ["hard_swish", "swish", "hard_mish", "mish"])
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


@pytest.mark.parametrize("act, fixed, op", [("sigmoid", QuantParams(1 / 256, -128), "LOGISTIC"),
                                            ("tanh", QuantParams(1 / 128, 0), "TANH")])
def test_fixed_output_activations_keep_the_spec_parameters_and_run_natively(act, fixed, op, tmp_path):
    """sigmoid and tanh quantize their outputs to the TFLite spec's fixed parameters — through calibration and
    QAT, which leave them alone — so LiteRT runs its own LOGISTIC / TANH with no requantizing MUL after it."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeact.nn import QuantAct

    torch.manual_seed(0)
    p = edgeact.prepare(SmallCNN().eval(), activations={"relu": act})
    edgeact.calibrate(p, torch.randn(64, 3, 8, 8) * 1.5, progress=False)
    edgeact.start_qat(p)
    opt = torch.optim.SGD(p.parameters(), lr=1e-2)
    for _ in range(3):
        loss = p(torch.randn(16, 3, 8, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    edgeact.freeze(p)
    acts = [m for m in p.modules() if isinstance(m, QuantAct)]
    assert acts and all(m.out_qparams() == fixed for m in acts)
    c = edgeact.convert(p, backend="litert")
    path = tmp_path / "cnn.tflite"
    to_tflite(c, torch.zeros(1, 3, 8, 8), path)
    report = verify_tflite(path, c, torch.randn(20, 3, 8, 8) * 1.5)
    assert report.ok, str(report)
    assert set(map(str, report.lowerings.values())) == {op}, report.lowerings
    model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    codes = [model.OperatorCodes(graph.Operators(i).OpcodeIndex()) for i in range(graph.OperatorsLength())]
    builtin = [max(c.BuiltinCode(), c.DeprecatedBuiltinCode()) for c in codes]
    assert builtin.count(getattr(schema.BuiltinOperator, op)) == 2 and schema.BuiltinOperator.MUL not in builtin
