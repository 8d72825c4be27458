"""Latency and accuracy measurements of exported int8 models on a target.

`bench` runs a model W+R times and reports the figures onnxruntime_perf_test and TFLite's benchmark_model
report (median, p10, p90, min), the model size, peak memory, and under QEMU the deterministic instruction count
per inference (the headline there: emulated milliseconds are 200-400x the host's and noisy).
`check` compares a target's outputs with a float reference run on the host (max/mean |Δ|, SQNR, top-1
agreement) and with the same int8 model on the host, code by code: an int8 export must give the same codes on
the device as on the host, and where it does not, the report says where.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

import numpy as np

from edgeact.errors import ModelFileError, TargetError
from edgeact.targets import get_target
from edgeact.targets.base import RunResult, Target, check_model, normalize_inputs
from edgeact.targets.compat import announce, compatibility
from edgeact.targets.cpu import host_family

EMULATION_WARNING = ("emulated time: tens to hundreds of times the host's and noisy run to run (±30%); not an "
                     "ARM latency. Compare instruction counts instead.")


# ------------------------------------------------------------------------------------------ statistics


def latency_stats(times_ms) -> dict:
    """median, p10, p90, min (and n) of per-inference times in ms."""
    t = np.asarray(list(times_ms), dtype=np.float64)
    if t.size == 0:
        return {"n": 0, "median": None, "p10": None, "p90": None, "min": None}
    return {"n": int(t.size), "median": float(np.median(t)), "p10": float(np.percentile(t, 10)),
            "p90": float(np.percentile(t, 90)), "min": float(t.min())}


def insn_stats(counts) -> dict | None:
    if not counts:
        return None
    c = np.asarray(counts, dtype=np.int64)
    return {"n": int(c.size), "median": int(np.median(c)), "min": int(c.min()), "max": int(c.max())}


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio 10·log10(Σref² / Σ(test−ref)²); inf when identical."""
    ref = np.asarray(reference, np.float64)
    noise = np.sum((np.asarray(test, np.float64) - ref) ** 2)
    signal = np.sum(ref ** 2)
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return float(10 * np.log10(signal / noise))


def error_stats(reference: np.ndarray, test: np.ndarray) -> dict:
    ref = np.asarray(reference, np.float64)
    tst = np.asarray(test, np.float64)
    if ref.shape != tst.shape:
        raise ModelFileError(f"output shapes differ: model {tst.shape}, reference {ref.shape}. The reference "
                             "must be the float version of the same network (same layout).")
    d = np.abs(tst - ref)
    return {"max_abs": float(d.max()) if d.size else 0.0, "mean_abs": float(d.mean()) if d.size else 0.0,
            "sqnr_db": sqnr_db(ref, tst)}


def top1_agreement(reference: np.ndarray, test: np.ndarray) -> float | None:
    """Share of samples whose arg-max class agrees, for classifier-shaped outputs ([N, C], C > 1)."""
    ref = np.asarray(reference)
    tst = np.asarray(test)
    if ref.ndim != 2 or ref.shape[1] < 2 or ref.shape != tst.shape:
        return None
    return float(np.mean(ref.argmax(1) == tst.argmax(1)))


def code_diff_histogram(host_codes: np.ndarray, target_codes: np.ndarray) -> dict[int, int]:
    """Histogram of (target − host) int8 code differences, in LSB."""
    d = target_codes.astype(np.int64) - host_codes.astype(np.int64)
    vals, counts = np.unique(d, return_counts=True)
    return {int(v): int(c) for v, c in zip(vals, counts)}


# ------------------------------------------------------------------------------------- model facts


def model_size(path) -> int:
    return Path(path).stat().st_size


def onnx_output_quant(path) -> list[tuple[float, int] | None]:
    """(scale, zero point) of each graph output produced by QuantizeLinear or DequantizeLinear with constant
    per-tensor parameters; None otherwise. The runner cannot know it (ONNX outputs carry no quant params)."""
    import onnx
    from onnx import numpy_helper

    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelFileError(f"{path} is not a readable ONNX model ({exc}). Export it again.") from None
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Constant" and n.attribute:
            for a in n.attribute:
                if a.name == "value":
                    inits[n.output[0]] = numpy_helper.to_array(a.t)
    producer = {o: n for n in m.graph.node for o in n.output}
    out = []
    for o in m.graph.output:
        n = producer.get(o.name)
        q = None
        if n is not None and n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) >= 2:
            s = inits.get(n.input[1])
            z = inits.get(n.input[2]) if len(n.input) > 2 else np.array(0)
            if s is not None and z is not None and np.size(s) == 1 and np.size(z) == 1:
                q = (float(np.asarray(s).ravel()[0]), int(np.asarray(z).ravel()[0]))
        out.append(q)
    return out


def output_quant(model: Path, result: RunResult) -> list[tuple[float, int] | None]:
    if model.suffix.lower() == ".onnx":
        return onnx_output_quant(model)
    return list(result.output_quant)


def dequantize(outputs, quants) -> list[np.ndarray]:
    out = []
    for a, q in zip(outputs, quants):
        if q and a.dtype.kind in "iu":
            out.append((a.astype(np.float64) - q[1]) * q[0])
        else:
            out.append(a.astype(np.float64))
    return out


def codes(outputs, quants) -> list[np.ndarray | None]:
    """int8 codes of each output: the array itself if integer, recovered through the scale if a DQ'd float."""
    out = []
    for a, q in zip(outputs, quants):
        if a.dtype.kind in "iu":
            out.append(a.astype(np.int64))
        elif q:
            out.append(np.round(a.astype(np.float64) / q[0]).astype(np.int64) + q[1])
        else:
            out.append(None)
    return out


def model_inputs(path, concrete: bool = True) -> list[dict]:
    """name, shape, dtype (and TFLite quantization) of a model's inputs, read on the host. A symbolic
    dimension is 1 (`concrete`, for drawing inputs) or -1 (any size, for checking given data)."""
    path = check_model(path)
    if path.suffix.lower() == ".onnx":
        import onnxruntime as ort

        try:
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelFileError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:300]}). "
                                 "Export it again.") from None
        types = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}
        return [{"name": i.name, "shape": [d if isinstance(d, int) else (1 if concrete else -1) for d in i.shape],
                 "dtype": types.get(i.type, "float32"), "quant": None} for i in sess.get_inputs()]
    from ai_edge_litert.interpreter import Interpreter

    try:
        it = Interpreter(model_path=str(path))
    except Exception as exc:
        raise ModelFileError(f"{path}: LiteRT cannot load it ({str(exc).splitlines()[0][:300]}). "
                             "Export it again.") from None
    res = []
    for d in it.get_input_details():
        s, z = d["quantization"]
        res.append({"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                    "quant": (float(s), int(z)) if s else None})
    return res


def random_inputs(path, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for timing: float N(0, 1) or uniform int8 codes, by the model's own input dtypes."""
    rng = np.random.default_rng(seed)
    out = {}
    for spec in model_inputs(path):
        dt = np.dtype(spec["dtype"])
        if dt.kind in "iu":
            info = np.iinfo(dt)
            out[spec["name"]] = rng.integers(info.min, info.max + 1, size=spec["shape"], dtype=dt)
        else:
            out[spec["name"]] = rng.standard_normal(spec["shape"]).astype(dt)
    return out


def load_data(data, model=None) -> dict[str, np.ndarray]:
    """Inputs from a .npz path or arrays, checked (edgeact.inputdata) against `model`'s inputs if given."""
    from edgeact.inputdata import is_path, match_inputs, read_arrays

    specs = model_inputs(model, concrete=False) if model is not None else None
    arrays = read_arrays(data) if is_path(data) else normalize_inputs(data)
    where = str(data) if is_path(data) else "inputs"
    return match_inputs(arrays, specs, where)


def _resolve(target) -> Target:
    return get_target(target) if isinstance(target, str) else target


# ---------------------------------------------------------------------------------------------- bench


@dataclasses.dataclass
class BenchResult:
    model: str
    target: str
    backend: str
    runtime: str
    machine: str
    cpu: str | None
    emulated: bool
    threads: int
    warmup: int
    runs: int
    size_bytes: int
    latency_ms: dict
    insns: dict | None
    peak_rss_kb: int | None
    rss_note: str
    times_ms: list[float]
    # .tflite: XNNPACK partitions and the ops LiteRT runs outside them (a split graph costs time)
    partitions: dict | None = None

    @property
    def note(self) -> str:
        return EMULATION_WARNING if self.emulated else ""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["note"] = self.note
        return d


def bench(model, target="host", backend: str | None = None, threads: int = 1, warmup: int = 1, runs: int = 10,
          inputs: Mapping | None = None, progress: bool = False, seed: int = 0, count: bool = True
          ) -> BenchResult:
    """Time `runs` inferences after `warmup` on `target` (a name or a Target). Under QEMU, `count` adds the
    instruction count per inference (needs threads=1)."""
    model = check_model(model)
    if runs < 1 or warmup < 0 or threads < 1:
        raise TargetError("need --runs >= 1, --warmup >= 0 and --threads >= 1.")
    tgt = _resolve(target)
    data = load_data(inputs, model) if inputs is not None else random_inputs(model, seed)
    extra = {"count": count} if tgt.emulated else {}
    options = announce(model, tgt)  # says so when this CPU's kernels differ from the file's backend
    res = tgt.run(model, data, backend=backend, threads=threads, warmup=warmup, runs=runs, progress=progress,
                  session_options=options,
                  **extra)
    return BenchResult(
        model=str(model), target=tgt.name, backend=res.backend, runtime=res.runtime, machine=res.machine,
        cpu=res.cpu, emulated=res.emulated, threads=threads, warmup=warmup, runs=runs,
        size_bytes=model_size(model), latency_ms=latency_stats(res.times_ms), insns=insn_stats(res.insn_counts),
        peak_rss_kb=res.peak_rss_kb, rss_note=res.rss_note, times_ms=list(res.times_ms),
        partitions=xnnpack_partitions(model),
    )


def bench_all(models, targets, *, executor="serial", address: str | None = None, progress: bool = True,
              **options) -> list[BenchResult]:
    """`bench` of every model on every target, in that order (model-major), with `options` as for `bench`.

    Emulated instruction counts do not depend on what else runs, so those cells run as independent tasks
    on `executor` ('serial', 'ray', 'auto' or an edgeact.executor object; Ray: in parallel, here or on a
    cluster at `address`). Wall-clock timings (host, SSH, QEMU with count=False) run one at a time in this
    process, before the parallel cells start, so no concurrent work skews them.
    """
    from tqdm.auto import tqdm

    from edgeact.executor import get_executor

    cells = [(m, _resolve(t)) for m in models for t in targets]
    counted = options.get("count", True) and options.get("threads", 1) == 1
    parallel = [i for i, (_, t) in enumerate(cells) if t.emulated and counted]
    results: dict[int, BenchResult] = {}
    with tqdm(total=len(cells), desc="bench", unit="cell", disable=not progress or len(cells) < 2) as bar:
        for i, (m, t) in enumerate(cells):
            if i not in parallel:
                results[i] = bench(m, t, progress=progress and len(cells) == 1, **options)
                bar.update(1)
        if parallel:
            ex = get_executor(executor, address) if isinstance(executor, str) else executor
            try:
                futures = [ex.submit(bench_bytes, Path(cells[i][0]).name, check_model(cells[i][0]).read_bytes(),
                                     cells[i][1], **options) for i in parallel]
                done: dict[int, BenchResult] = {}
                ex.gather(futures, progress=bar, results=done)
            finally:
                if isinstance(executor, str):
                    ex.shutdown()
            for k, i in enumerate(parallel):
                results[i] = dataclasses.replace(done[k], model=str(cells[i][0]))
    return [results[i] for i in range(len(cells))]


def bench_bytes(name: str, content: bytes, target, **options) -> BenchResult:
    """`bench` of a model file given as its name and bytes (a task's argument travels as bytes, so a worker on
    another machine can run it), from a private temporary folder; `options` as for `bench`."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="edgeact-bench-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        return bench(path, target, **{"progress": False, **options})


def xnnpack_partitions(model) -> dict | None:
    """{'delegated': n, 'outside': [op, …]} of a .tflite under LiteRT's default XNNPACK delegate (the same
    split on every CPU: XNNPACK decides by op and type, on the host), None for other formats."""
    if Path(model).suffix.lower() != ".tflite":
        return None
    from edgeact.export.litert import interpreter as rt

    parts = rt.partitions(rt.load(model))
    return {"delegated": parts.delegated, "outside": list(parts.outside)}


# ---------------------------------------------------------------------------------------------- check


@dataclasses.dataclass
class OutputCheck:
    name: str
    shape: tuple
    max_abs: float
    mean_abs: float
    sqnr_db: float
    top1: float | None
    scale: float | None
    error_lsb: list[float] | None  # (target − float reference) / scale, for the error histogram
    host_equal: bool | None
    host_code_hist: dict[int, int] | None  # (target − host) code differences
    host_diff_where: list[dict]  # first differing elements: index, host code, target code, input code

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("error_lsb")
        d["host_code_hist"] = {str(k): v for k, v in (self.host_code_hist or {}).items()} or None
        return d


@dataclasses.dataclass
class CheckResult:
    model: str
    reference: str
    target: str
    backend: str
    runtime: str
    host_runtime: str | None
    cpu: str | None
    outputs: list[OutputCheck]
    why: str = ""

    def to_dict(self) -> dict:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "outputs"}
        d["outputs"] = [o.to_dict() for o in self.outputs]
        return d


VERSION_WHY = ("The target runs a different runtime build/version than the host ({target} vs {host}), so its "
               "kernels may differ; compare against the same version where one exists (armv7's tflite-runtime "
               "2.14: convert with backend='tflite-runtime:armv7' for its codes).")
DIFF_WHY = ("Same runtime version, different kernels: the ARM build runs NEON code paths whose rounding at "
            "exact .5 ties or whose fixed-point requantization differs from the x86 (SSE/AVX) paths — in LiteRT the "
            "NEON HARD_SWISH and XNNPACK's fixed-point MUL (convert with backend='litert:aarch64' for ARM's codes; "
            "benchmarks/RESULTS-arm.md lists every known case). A 1-LSB difference at a tie is this, anything "
            "larger is a bug to report.")


def _input_codes(data: dict, quant_inputs: list[dict]) -> np.ndarray | None:
    """The int8 input codes when the model is elementwise (one input, same shape as the output)."""
    if len(data) != 1 or len(quant_inputs) != 1:
        return None
    x = next(iter(data.values()))
    q = quant_inputs[0].get("quant")
    if x.dtype.kind in "iu":
        return x.astype(np.int64)
    if q:
        return np.clip(np.round(x / q[0]) + q[1], -128, 127).astype(np.int64)
    return None


def _is_elementwise(input_codes: np.ndarray | None, host: np.ndarray) -> bool:
    """True when the host output code is a function of the input code at the same position (an activation),
    so that differences can be listed per input code."""
    if input_codes is None or input_codes.shape != host.shape:
        return False
    pairs = np.unique(np.stack([input_codes.ravel(), host.ravel()], axis=1), axis=0)
    return len(pairs) == len(np.unique(input_codes))


def compare_codes(host: np.ndarray, target: np.ndarray, input_codes: np.ndarray | None = None,
                  limit: int = 10) -> tuple[bool, dict[int, int], list[dict]]:
    """Equal?, histogram of code differences, and where they are: for an elementwise model one entry per
    distinct (input code, host code, target code) with its count, else the first differing positions."""
    hist = code_diff_histogram(host, target)
    idx = np.flatnonzero(host.ravel() != target.ravel())
    if idx.size and _is_elementwise(input_codes, host):
        triples = np.stack([input_codes.ravel()[idx], host.ravel()[idx], target.ravel()[idx]], axis=1)
        uniq, counts = np.unique(triples, axis=0, return_counts=True)
        return False, hist, [{"input_code": int(u[0]), "host": int(u[1]), "target": int(u[2]), "count": int(c)}
                             for u, c in zip(uniq[:limit], counts[:limit])]
    where = []
    for i in idx[:limit]:
        item = {"index": [int(v) for v in np.unravel_index(int(i), host.shape)],
                "host": int(host.ravel()[i]), "target": int(target.ravel()[i])}
        where.append(item)
    return idx.size == 0, hist, where


def check(model, reference, data, target="host", backend: str | None = None, progress: bool = False
          ) -> CheckResult:
    """Accuracy of `model` on `target` against the float `reference` run on the host, and code-by-code
    agreement with the same int8 model on the host."""
    from edgeact.targets.host import HostTarget

    model = check_model(model)
    reference = check_model(reference)
    inputs = load_data(data, model)
    tgt = _resolve(target)
    host = HostTarget()
    ref = host.run(reference, inputs, progress=progress)
    res = tgt.run(model, inputs, backend=backend, progress=progress, session_options=announce(model, tgt))
    quants = output_quant(model, res)
    deq = dequantize(res.outputs, quants)
    tcodes = codes(res.outputs, quants)
    if len(ref.outputs) != len(deq):
        raise ModelFileError(f"{model} has {len(deq)} outputs, the reference {reference} has "
                             f"{len(ref.outputs)}; pass the float version of the same network.")
    for who, arrays in ((f"the reference {reference}", ref.dequantized()), (f"{model} on {tgt.name}", deq)):
        bad = sum(int(np.count_nonzero(~np.isfinite(a))) for a in arrays)
        if bad:
            raise ModelFileError(f"{who} gives {bad} NaN/Inf output value(s) for these inputs, so no error can be "
                                 "measured; check that model (its weights) and the data's range")
    host_res = res if tgt.name == "host" else host.run(model, inputs, backend=res.backend, progress=progress,
                                                       session_options=compatibility(model, host_family()).session_options)
    hcodes = codes(host_res.outputs, quants)
    in_codes = _input_codes(inputs, res.inputs)
    checks = []
    any_diff = False
    for i, (name, t, r) in enumerate(zip(res.output_names, deq, ref.dequantized())):
        st = error_stats(r, t)
        q = quants[i]
        err_lsb = ((t - r) / q[0]).ravel().tolist() if q else None
        if tcodes[i] is not None and hcodes[i] is not None:
            equal, hist, where = compare_codes(hcodes[i], tcodes[i], in_codes)
        else:
            equal = bool(np.array_equal(res.outputs[i], host_res.outputs[i]))
            hist, where = None, []
        any_diff |= not equal
        checks.append(OutputCheck(name=name, shape=tuple(t.shape), max_abs=st["max_abs"], mean_abs=st["mean_abs"],
                                  sqnr_db=st["sqnr_db"], top1=top1_agreement(r, t), scale=q[0] if q else None,
                                  error_lsb=err_lsb, host_equal=equal, host_code_hist=hist, host_diff_where=where))
    return CheckResult(model=str(model), reference=str(reference), target=tgt.name, backend=res.backend,
                       runtime=res.runtime, host_runtime=host_res.runtime, cpu=res.cpu, outputs=checks,
                       why=("" if not any_diff or tgt.name == "host" else DIFF_WHY if res.runtime ==
                            host_res.runtime else VERSION_WHY.format(target=res.runtime, host=host_res.runtime)))
