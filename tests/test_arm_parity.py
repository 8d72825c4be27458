"""ARM vs x86, same runtime version: which kernels compute different codes, and edgeact's answer.

Every ARM figure here comes from the runtime's own ARM build run under QEMU (the targets' roots:
ai-edge-litert 2.3 and onnxruntime 1.32 on aarch64, tflite-runtime 2.14 on armv7), every x86 figure
from the same runtime on this host; the expected codes from edgeact's models of the kernels
(`edgeact.export.litert.arithmetic_aarch64`, `edgeact.export.onnxruntime.arithmetic`), which are written from the
kernels' source, not from these runs.
"""
from __future__ import annotations

import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
import torch

import edgeact
from edgeact import QuantParams
from edgeact.activations import bind
from edgeact.export.onnxruntime import chains
from edgeact.errors import ExportError, UnsupportedError
from edgeact.export import to_onnx, to_tflite
from edgeact.export.litert.lowering import activation_batch_model
from edgeact.backend import get_backend
from edgeact.export.litert import arithmetic as T
from edgeact.export.litert.arithmetic_aarch64 import hard_swish_table_neon, plan_activation_for
from edgeact.targets import get_target
from edgeact.targets.compat import compatibility
from edgeact.targets.cpu import target_family
from edgeact.targets.host import HostTarget

CODES = np.arange(-128, 128, dtype=np.int8)
SHAPE = (1, 16, 16, 1)
TIE = QuantParams(0.05, 0)  # hard-swish of code −30 (x = −1.5) is exactly −7.5 steps
HARD_SWISH = bind("hard_swish")


def native_pairs(n: int, seed: int) -> list[tuple[QuantParams, QuantParams]]:
    """The tie, one pair past the int16 shift range (output exponent ≤ −16), and random pairs at which
    TFLite's HARD_SWISH kernel exists."""
    rng = np.random.default_rng(seed)
    pairs = [(TIE, TIE), (QuantParams(0.0011535, 6), QuantParams(1.2306, 36))]
    while len(pairs) < n:
        s_in, s_out = 10.0 ** rng.uniform(-3, 0.3, 2)
        p = (QuantParams(s_in, int(rng.integers(-128, 128))), QuantParams(s_out, int(rng.integers(-128, 128))))
        if T.HardSwishParams.of(*p).supported:
            pairs.append(p)
    return pairs


def run_codes(target: str, model_path, n: int) -> np.ndarray:
    t = get_target(target)
    kwargs = {"count": False} if t.emulated else {}
    res = t.run(model_path, [CODES.reshape(SHAPE)] * n, **kwargs)
    return np.stack([o.reshape(-1) for o in res.outputs]).astype(np.int64)


# ----------------------------------------------------------------------- LiteRT's NEON HARD_SWISH

@pytest.fixture(scope="module")
def hard_swish_native(tmp_path_factory):
    pairs = native_pairs(80, seed=zlib.crc32(b"neon"))
    path = tmp_path_factory.mktemp("hsw") / "hard_swish_native.tflite"
    path.write_bytes(activation_batch_model(HARD_SWISH, pairs, shape=SHAPE, lowering="native"))
    return pairs, path


def test_x86_runs_the_reference_hard_swish(hard_swish_native):
    pairs, path = hard_swish_native
    expected = np.stack([T.hard_swish_table(i, o) for i, o in pairs])
    np.testing.assert_array_equal(run_codes("host", path, len(pairs)), expected)


@pytest.mark.parametrize("arch", ["aarch64", "armv7"])
def test_arm_runs_the_neon_hard_swish(arch, hard_swish_native, request):
    request.getfixturevalue(f"{arch}_root")
    pairs, path = hard_swish_native
    got = run_codes(f"qemu-{arch}", path, len(pairs))
    neon = np.stack([hard_swish_table_neon(i, o) for i, o in pairs])
    reference = np.stack([T.hard_swish_table(i, o) for i, o in pairs])
    np.testing.assert_array_equal(got, neon)
    # …and that is not the x86 result: the tie, the long shift, and others move by one step.
    assert got[0, -30 + 128] == -7 and reference[0, -30 + 128] == -8
    assert np.all(got[1] == 36) and set(reference[1]) == {35, 37}
    differing_pairs = int(np.any(neon != reference, axis=1).sum())
    assert 3 <= differing_pairs < len(pairs) // 2, differing_pairs


def test_the_last_elements_past_whole_blocks_of_eight_take_the_reference_loop(aarch64_root, tmp_path):
    """Why the NEON table is exact only for flat sizes that are multiples of 8: the loop runs whole
    blocks of 8 and leaves the rest to reference_ops::HardSwish."""
    codes = np.concatenate([CODES, np.full(5, -30, np.int8)])  # 261 = 32·8 + 5
    path = tmp_path / "tail.tflite"
    path.write_bytes(activation_batch_model(HARD_SWISH, [(TIE, TIE)], shape=(1, codes.size), lowering="native"))
    got = get_target("qemu-aarch64").run(path, [codes[None]], count=False).outputs[0].reshape(-1)
    assert got[-30 + 128] == hard_swish_table_neon(TIE, TIE)[-30 + 128] == -7  # inside the blocks
    assert list(got[256:]) == [T.hard_swish_table(TIE, TIE)[-30 + 128]] * 5 == [-8] * 5  # the tail


# ------------------------------------------------------------- XNNPACK's MUL: fp32 on x86, rndnu on ARM

def test_xnnpack_mul_is_fixed_point_on_aarch64(aarch64_root, tmp_path):
    """LiteRT's default MUL (XNNPACK) requantizes in float32 on x86 and in fixed point on aarch64, so
    products on a tie land one step apart: 'tflite' and 'tflite-aarch64' each reproduce their CPU."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeact.export.litert.builder import ModelBuilder

    rng = np.random.default_rng(0)
    b, ins, outs, cases, feeds = ModelBuilder("mul"), [], [], [], []
    for k in range(24):
        if k % 2:  # power-of-two scales: exact ties
            qa, qb = (QuantParams(2.0 ** -int(rng.integers(2, 6)), int(rng.integers(-20, 20))) for _ in range(2))
            qo = QuantParams(qa.scale * qb.scale * 2.0 ** int(rng.integers(1, 7)), int(rng.integers(-20, 20)))
        else:
            qa, qb = (QuantParams(float(10 ** rng.uniform(-2.5, -0.5)), int(rng.integers(-128, 128))) for _ in range(2))
            qo = QuantParams(float(qa.scale * qb.scale * 10 ** rng.uniform(1, 2.5)), int(rng.integers(-128, 128)))
        gate = (1, 1, 1, 16) if k % 4 < 2 else (1, 8, 8, 16)  # broadcast (squeeze-excite) and elementwise
        a, g = b.tensor(f"a{k}", (1, 8, 8, 16), "int8", qa), b.tensor(f"g{k}", gate, "int8", qb)
        y = b.tensor(f"y{k}", (1, 8, 8, 16), "int8", qo)
        b.op("MUL", [a, g], [y], schema.MulOptionsT())
        ins += [a, g]
        outs.append(y)
        cases.append((qa, qb, qo))
        feeds += [rng.integers(-128, 128, (1, 8, 8, 16), dtype=np.int8), rng.integers(-128, 128, gate, dtype=np.int8)]
    path = tmp_path / "mul.tflite"
    path.write_bytes(b.finish(ins, outs))

    def expected(semantics):
        sem = get_backend(semantics).arithmetic
        return [sem.mul(torch.from_numpy(feeds[2 * k].astype(np.int64)), qa,
                        torch.from_numpy(feeds[2 * k + 1].astype(np.int64)), qb, qo).numpy()
                for k, (qa, qb, qo) in enumerate(cases)]

    host = [o.astype(np.int64) for o in HostTarget().run(path, feeds).outputs]
    arm = [o.astype(np.int64) for o in get_target("qemu-aarch64").run(path, feeds, count=False).outputs]
    x86, aarch64 = expected("tflite"), expected("tflite-aarch64")
    for k in range(len(cases)):
        np.testing.assert_array_equal(host[k], x86[k])
        np.testing.assert_array_equal(arm[k], aarch64[k])
    differ = sum(int(np.count_nonzero(a != x)) for a, x in zip(aarch64, x86))
    assert 20 < differ < 2000, differ


def test_mish_chain_on_aarch64_and_host(aarch64_root, tmp_path):
    """The mish chain (LOGISTIC, ADD and MUL inside XNNPACK) at mnv3s's 18 pairs: each CPU gives its
    semantics' codes, and both stay within one step of mish (the chain is chosen only if so)."""
    from test_tflite_lowering import MNV3S_MISH

    mish = bind("mish")
    pairs = [(QuantParams(a, b), QuantParams(c, d)) for a, b, c, d in MNV3S_MISH]
    path = tmp_path / "mish.tflite"
    path.write_bytes(activation_batch_model(mish, pairs, shape=SHAPE))
    host = np.stack([o.reshape(-1) for o in HostTarget().run(path, [CODES.reshape(SHAPE)] * len(pairs)).outputs])
    np.testing.assert_array_equal(host, np.stack([edgeact.int8_table(mish, i, o, backend="litert") for i, o in pairs]))
    arm = run_codes("qemu-aarch64", path, len(pairs))
    np.testing.assert_array_equal(arm, np.stack([edgeact.int8_table(mish, i, o, backend="litert:aarch64")
                                                 for i, o in pairs]))
    for (i, o), a in zip(pairs, arm):
        x = i.scale * (np.arange(-128, 128) - i.zero_point)
        ideal = np.clip(np.round(x * np.tanh(np.logaddexp(0.0, x)) / o.scale) + o.zero_point, -128, 127)
        assert np.abs(a - ideal).max() <= 1


# ------------------------------------------------------------------ target-aware lowering (prefer)

def test_prefer_arm_emits_hard_swish_only_where_arm_and_x86_agree(aarch64_root, tmp_path):
    # pairs where no exact chain of XNNPACK ops exists (export/litert/chains.py): x86's choice is the table
    pairs = [p for p in native_pairs(240, seed=3) if T.plan_activation(HARD_SWISH, *p).kind == "table"][:60]
    plans = [plan_activation_for(HARD_SWISH, i, o, "arm") for i, o in pairs]
    same = [np.array_equal(T.hard_swish_table(i, o), hard_swish_table_neon(i, o)) for i, o in pairs]
    assert [p.kind == "native" for p in plans] == same
    assert 0 < sum(same) < len(pairs)
    assert {T.plan_activation(HARD_SWISH, i, o).kind for i, o in pairs} == {"table"}  # the x86 choice
    path = tmp_path / "prefer_arm.tflite"
    path.write_bytes(activation_batch_model(HARD_SWISH, pairs, shape=SHAPE, prefer="arm"))
    expected = np.stack([T.hard_swish_table(i, o) if s else get_backend("tflite").arithmetic.activation_table(HARD_SWISH, i, o)
                         for (i, o), s in zip(pairs, same)])
    np.testing.assert_array_equal(run_codes("host", path, len(pairs)), expected)
    np.testing.assert_array_equal(run_codes("qemu-aarch64", path, len(pairs)), expected)


def test_bad_preference_is_named():
    with pytest.raises(UnsupportedError, match="prefer must be"):
        plan_activation_for(HARD_SWISH, TIE, TIE, "riscv")
    from edgeact.export.onnxruntime.lowering import choose_lowering

    with pytest.raises(UnsupportedError, match="prefer must be"):
        choose_lowering(bind("swish"), TIE, TIE, None, prefer="riscv")


def test_onnx_prefer_arm_goes_native_only_for_the_tables_its_kernel_computes():
    """A model converted for another backend carries swish's ideal table, which ORT's float ops do not
    compute everywhere: prefer='arm' keeps the table then; with the native kernel's table it is native. Where
    an integer chain is exact on every CPU, a model converted for onnxruntime carries the chain's table and
    the chain is the lowering."""
    from edgeact.arithmetic import Arithmetic
    from edgeact.export.onnxruntime.arithmetic import ARITHMETIC as ORT
    from edgeact.export.onnxruntime.lowering import choose_lowering

    near_tie = (QuantParams(0.010231898166239262, 80), QuantParams(0.002169219311326742, 114))  # 1 in 4,000
    swish, pairs = bind("swish"), native_pairs(20, seed=9) + [near_tie]
    ideal = [Arithmetic().activation_table(swish, i, o) for i, o in pairs]
    native = [ORT.native_table(swish, i, o) for i, o in pairs]
    assert not np.array_equal(ideal[-1], native[-1])
    chained = 0
    for (i, o), t_ideal, t_native in zip(pairs, ideal, native):
        chain = chains.search(swish, i, o)
        if chain is not None:
            chained += 1
            assert np.array_equal(ORT.activation_table(swish, i, o), chain.table)
            assert choose_lowering(swish, i, o, chain.table, prefer="arm") == "chain"
            assert choose_lowering(swish, i, o, chain.table, prefer="x86") == "chain"
        if chain is None or not np.array_equal(chain.table, t_native):
            assert choose_lowering(swish, i, o, t_native, prefer="arm") == "native"
            assert choose_lowering(swish, i, o, t_native, prefer="x86") == "table"
        if chain is None or not np.array_equal(chain.table, t_ideal):
            assert choose_lowering(swish, i, o, t_ideal, prefer="arm") == (
                "native" if np.array_equal(t_ideal, t_native) else "table")
    assert 0 < chained < len(pairs)


# ------------------------------------------------- the study's model (mnv3s) on ARM and on the host

@pytest.fixture(scope="module")
def mnv3s():
    """MobileNetV3-Small calibrated on digits. Untrained weights (parity does not depend on training), with
    BatchNorm statistics that keep the signal alive: default ones shrink the activations of a fresh network
    to ~1e-8, where bias codes saturate int32."""
    from edgeact import models

    data = models.digits_for("mnv3s")
    prepared = {}
    for act in ("hard_swish", "swish"):
        torch.manual_seed(0)
        net = models.build("mnv3s", act).eval()
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                with torch.no_grad():
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
        p = edgeact.prepare(net)
        edgeact.calibrate(p, data.calibration_batches(n=64), progress=False)
        prepared[act] = p
    return prepared, data.x_test[:40]


def _codes(y, qp) -> np.ndarray:
    return np.rint(np.asarray(y, np.float32) / np.float32(qp.scale)).astype(np.int64)


def _output_qp(converted):
    from edgeact.quantized import Dequantize

    return [m for m in converted.modules() if isinstance(m, Dequantize)][-1].in_qparams[0]


CASES = [  # activation, semantics, format, an op the file must (True) or must not (False) hold
    ("hard_swish", "tflite", "tflite", ("GATHER", False)),  # MUL → ADD → MUL inside XNNPACK (chains.py)
    ("hard_swish", "tflite-aarch64", "tflite", ("GATHER", False)),  # the same chain, ARM's MUL arithmetic
    ("hard_swish", "onnxruntime", "onnx", ("GatherElements", False)),
    ("swish", "onnxruntime", "onnx", ("GatherElements", False)),  # QLinearSigmoid → QLinearMul (a chain)
    ("swish", "onnxruntime-aarch64", "onnx", ("Sigmoid", True)),  # the same chain on ARM
]


def _ops(path) -> set[str]:
    if str(path).endswith(".onnx"):
        import onnx

        return {n.op_type for n in onnx.load(str(path)).graph.node}
    from ai_edge_litert.interpreter import Interpreter

    return {d["op_name"] for d in Interpreter(model_path=str(path))._get_ops_details()}


@pytest.mark.parametrize("act,semantics,fmt,op", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_mnv3s_on_aarch64_and_host(aarch64_root, mnv3s, tmp_path, act, semantics, fmt, op):
    prepared, x = mnv3s
    converted = edgeact.convert(prepared[act], backend=semantics)
    path = tmp_path / f"mnv3s.{fmt}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a semantics the exporter does not expect would warn
        (to_tflite if fmt == "tflite" else to_onnx)(converted, x[:1], path)
    assert (op[0] in _ops(path)) == op[1], sorted(_ops(path))
    qp = _output_qp(converted)
    with torch.no_grad():
        expected = _codes(converted(x).numpy(), qp)
    feed = {"x": x.numpy()} if fmt == "onnx" else [x.numpy().transpose(0, 2, 3, 1)]
    if fmt == "tflite":  # one image per call: the exported TFLite model has batch 1
        host = np.stack([_codes(HostTarget().run(path, [xi[None]]).outputs[0], qp)[0] for xi in feed[0][:4]])
        arm = np.stack([_codes(get_target("qemu-aarch64").run(path, [xi[None]], count=False).outputs[0], qp)[0]
                        for xi in feed[0][:4]])
        expected = expected[:4]
    else:  # with the session options verify and bench set for this file on this CPU (int8 weights on AVX2)
        options = compatibility(path, target_family(HostTarget())).session_options
        host = _codes(HostTarget().run(path, feed, session_options=options).outputs[0], qp)
        arm = _codes(get_target("qemu-aarch64").run(path, feed, count=False).outputs[0], qp)
    # The CPU the semantics is written for gives the converted model's codes exactly. ONNX Runtime computes
    # these files alike on both; LiteRT's MUL (squeeze-excite) may move a code by one at a tie on the other.
    exact, other = (arm, host) if semantics == "tflite-aarch64" else (host, arm)
    np.testing.assert_array_equal(exact, expected)
    if fmt == "onnx":
        np.testing.assert_array_equal(other, expected)
    else:
        assert np.count_nonzero(other != expected) <= 4, other - expected


# ------------------------------------- onnxruntime: int8 activations fuse into QLinearConv only on ARM

DUMP = """import sys, onnxruntime as ort
so = ort.SessionOptions(); so.optimized_model_filepath = sys.argv[2]; so.log_severity_level = 3
ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
"""


def _optimized_ops(path, out, python_cmd, env=None) -> list[str]:
    import onnx

    script = out.with_suffix(".py")
    script.write_text(DUMP)
    subprocess.run(python_cmd + [str(script), str(path), str(out)], check=True, env=env, capture_output=True)
    return [n.op_type for n in onnx.load(str(out)).graph.node]


def test_ort_fuses_a_conv_with_int8_activations_on_arm_only(aarch64_root, tmp_path):
    """The conv fixture (int8 activations, QDQ) differs at ±1 between x86 and aarch64 because ORT's
    QDQ fusion allows int8 activations only on ARM (QDQIsInt8Allowed): x86 keeps DQ → float Conv → Q,
    aarch64 runs an integer QLinearConv. edgeact's exporter keeps uint8 inside, which both fuse."""
    import fixtures_models as F
    from edgeact.export.onnxruntime.arithmetic import ARITHMETIC as ORT
    from edgeact.targets.qemu import qemu_env, qemu_python_cmd

    path = F.conv_qdq_onnx(tmp_path / "conv_qdq.onnx")
    host_ops = _optimized_ops(path, tmp_path / "host.onnx", [sys.executable])
    arm_ops = _optimized_ops(path, tmp_path / "arm.onnx", qemu_python_cmd(aarch64_root, "cortex-a72"),
                             qemu_env(aarch64_root, "cortex-a72"))
    assert "Conv" in host_ops and "QLinearConv" not in host_ops
    assert "QLinearConv" in arm_ops and "Conv" not in arm_ops

    x = F.sample_input((1, 16, 56, 56), seed=0)
    host = HostTarget().run(path, {"x": x}).outputs[0].astype(np.int64)
    arm = get_target("qemu-aarch64").run(path, {"x": x}, count=False).outputs[0].astype(np.int64)
    # The integer requantization ORT's QLinearConv does, written independently of both runs:
    w_q, s_w, b_q = F.conv_weights(16, 16, 3, 0)
    s_in, s_out = 0.05, 0.05
    qx = torch.from_numpy(np.clip(np.rint(x / np.float32(s_in)), -128, 127)).double()
    acc = torch.nn.functional.conv2d(qx, torch.from_numpy(w_q.astype(np.float64)),
                                     torch.from_numpy(b_q.astype(np.float64)), padding=1).long()
    qp = lambda s, z: QuantParams(s, z)  # noqa: E731
    integer = ORT.requantize_accumulator(acc, qp(s_in, 0), QuantParams(s_w, 0), qp(s_out, -128)).numpy()
    np.testing.assert_array_equal(arm, integer)
    differ = int(np.count_nonzero(host != integer))
    assert 0 < differ < 200 and int(np.abs(host - integer).max()) == 1, differ


# ------------------------------------------------- onnxruntime:aarch64: int8 weights, symmetric conv kernels

def _single_layer(kind: str) -> torch.nn.Module:
    """One layer of each kind ORT's aarch64 build runs in its own kernel with int8 weights: the 3×3
    depthwise kernel (kernel size 9), the generic depthwise one, the indirect ConvSym kernel (full 3×3,
    grouped), the pointwise conv and QGemm (Linear)."""
    nn = torch.nn
    layer = {"depthwise3x3": nn.Conv2d(16, 16, 3, padding=1, groups=16),
             "depthwise5x5": nn.Conv2d(16, 16, 5, padding=2, groups=16),
             "conv3x3": nn.Conv2d(16, 24, 3, padding=1),
             "grouped3x3": nn.Conv2d(16, 32, 3, padding=1, groups=4),
             "pointwise": nn.Conv2d(16, 24, 1),
             "linear": nn.Sequential(nn.Flatten(), nn.Linear(16 * 8 * 8, 40))}[kind]
    layer = nn.Sequential(layer)  # a module of the model, as prepare takes it
    gen = torch.Generator().manual_seed(zlib.crc32(kind.encode()))
    with torch.no_grad():
        for m in layer.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                # every weight at ± the channel's largest magnitude: codes ±127, the widest pair sums
                signs = torch.randint(0, 2, m.weight.shape, generator=gen).float() * 2 - 1
                m.weight.copy_(signs * 0.1)
                m.bias.uniform_(-0.5, 0.5, generator=gen)
    return layer.eval()


def _extreme_inputs(n: int, seed: int) -> torch.Tensor:
    """Mostly the calibrated minimum (int8 code −128, the largest |code − 128| ORT's kernels see inside),
    some maximum, some in between."""
    gen = torch.Generator().manual_seed(seed)
    pick = torch.rand(n, 16, 8, 8, generator=gen)
    x = torch.where(pick < 0.6, -1.0, torch.where(pick < 0.8, 1.0, torch.rand(n, 16, 8, 8, generator=gen) * 2 - 1))
    x[0, 0, 0, 0], x[0, 0, 0, 1] = -1.0, 1.0  # the calibrated range is exactly [−1, 1]
    return x


def _calibrated(model: torch.nn.Module):
    prepared = edgeact.prepare(model)
    edgeact.calibrate(prepared, [_extreme_inputs(4, 0)], progress=False)
    return prepared


@pytest.mark.parametrize("kind", ["depthwise3x3", "depthwise5x5", "conv3x3", "grouped3x3", "pointwise", "linear"])
def test_aarch64_file_with_int8_weights_is_exact_at_the_extremes(aarch64_root, tmp_path, kind):
    """'onnxruntime:aarch64' writes int8 weights so that ORT's aarch64 build runs its symmetric conv kernels,
    which add two u8·s8 products in an int16 lane before widening (smull + smlal); with edgeact's weights in
    [−127, 127] the largest pair, 2·128·127, fits. Inputs at the code extremes and weights at ±127 drive
    every pair to its bound, on an ARM core without (cortex-a72) and with (cortex-a76) dot-product kernels."""
    c = edgeact.convert(_calibrated(_single_layer(kind)), backend="onnxruntime:aarch64")
    weights = [m.weight_codes for m in c.modules() if hasattr(m, "weight_codes")]
    assert weights and all(int(w.abs().max()) == 127 for w in weights)
    path = tmp_path / f"{kind}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        to_onnx(c, _extreme_inputs(1, 0), path)
    import onnx

    types = {t.data_type for t in onnx.load(str(path)).graph.initializer if len(t.dims) >= 2}
    assert types == {onnx.TensorProto.INT8}, types
    x = _extreme_inputs(3, 1)
    last = [n.target for n in c.graph.nodes if n.op == "call_module"][-1]
    scale = np.float32(c.get_submodule(last).in_qparams[0].scale)
    with torch.no_grad():
        expected = np.rint(c(x).numpy() / scale).astype(np.int64)
    for cpu in ("cortex-a72", "cortex-a76"):
        got = get_target(f"qemu-aarch64:{cpu}").run(path, {"x": x.numpy()}, count=False).outputs[0]
        np.testing.assert_array_equal(np.rint(np.asarray(got, np.float32) / scale).astype(np.int64), expected,
                                      err_msg=f"{kind} on {cpu}")


def test_int8_weights_refuse_code_minus_128(tmp_path):
    """A weight code −128 would overflow the aarch64 kernels' int16 pair sums: writing it as int8 is an error
    that names the cause, not a file that differs on ARM; the U8U8 file (no pairing) is still written."""
    c = edgeact.convert(_calibrated(_single_layer("pointwise")), backend="onnxruntime:aarch64")
    layer = next(m for m in c.modules() if hasattr(m, "weight_codes"))
    layer.weight_codes[0, 0] = -128
    with pytest.raises(ExportError, match="-128"):
        to_onnx(c, _extreme_inputs(1, 0), tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        to_onnx(c, _extreme_inputs(1, 0), tmp_path / "u8.onnx", weights="uint8")
    assert (tmp_path / "u8.onnx").stat().st_size > 0
