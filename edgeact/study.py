"""The activation study: which activation to deploy, measured end to end.

For each activation: train (or load) the reference model, measure float accuracy, int8 PTQ and
int8 QAT accuracy in PyTorch, export to ONNX and TFLite, run the files (accuracy, and parity with
the converted PyTorch model code for code), time them on each target, and plot accuracy against
latency (the Pareto front).
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from edgeact import interrupt
from edgeact.activations import canonical_name
from edgeact.errors import EdgeActError
from edgeact.fileio import atomic_write, ensure_writable_dir
from edgeact.markdown import markdown_table

DEFAULT_ACTIVATIONS = ("relu", "relu6", "leaky_relu", "hard_swish", "swish", "mish", "hard_mish", "selu")
# The study's runtime columns → the backend each file is converted for, per CPU family (prefer).
STUDY_BACKENDS = {("onnxruntime", "x86"): "onnxruntime", ("onnxruntime", "arm"): "onnxruntime:aarch64",
                  ("litert", "x86"): "litert", ("litert", "arm"): "litert:aarch64"}
BACKEND_SUFFIX = {"onnxruntime": ".onnx", "litert": ".tflite"}


@dataclasses.dataclass
class Measured:
    """One exported file of one activation: accuracy, parity with PyTorch, size, latency per target."""

    backend: str
    path: str
    size_bytes: int
    accuracy: float
    parity_mismatches: int
    parity_codes: int
    parity_max_lsb: int
    latency: dict = dataclasses.field(default_factory=dict)  # target → {median_ms, min_ms, insns, emulated}
    accuracies: list = dataclasses.field(default_factory=list)  # one per seed (accuracy is their mean)


@dataclasses.dataclass
class StudyRow:
    activation: str
    float_accuracy: float
    ptq_accuracy: float
    qat_accuracy: float
    exports: dict = dataclasses.field(default_factory=dict)  # backend → Measured
    seconds: float = 0.0
    seeds: dict = dataclasses.field(default_factory=dict)  # 'float'/'ptq'/'qat' → accuracy per seed


@dataclasses.dataclass
class StudyResult:
    model: str
    targets: list[str]
    backends: list[str]
    qat_epochs: int
    rows: list[StudyRow]
    prefer: str = "x86"
    task: str = "digits"
    seeds: int = 1

    # -- reports --------------------------------------------------------------------------------
    def flat_rows(self) -> list[dict]:
        out = []
        for r in self.rows:
            row = {"activation": r.activation, "float": r.float_accuracy, "ptq": r.ptq_accuracy, "qat": r.qat_accuracy,
                   "qat_gap": r.qat_accuracy - r.float_accuracy}
            if self.seeds > 1:
                for k in ("float", "ptq", "qat"):
                    row[f"{k}_ci"] = confidence_halfwidth(r.seeds.get(k, []))
            for b, m in r.exports.items():
                row[f"{b}_acc"] = m.accuracy
                if self.seeds > 1:
                    row[f"{b}_acc_ci"] = confidence_halfwidth(m.accuracies)
                row[f"{b}_parity"] = f"{m.parity_mismatches}/{m.parity_codes}"
                row[f"{b}_kb"] = m.size_bytes / 1024
                for t, lat in m.latency.items():
                    row[f"{b}@{t}"] = lat
            out.append(row)
        return out

    def markdown(self) -> str:
        cols = {"activation": "activation", "float": "float %", "ptq": "int8 PTQ %", "qat": "int8 QAT %",
                "qat_gap": "QAT − float"}
        for b in self.backends:
            cols[f"{b}_acc"] = f"{b} int8 %"
            cols[f"{b}_parity"] = f"{b} codes ≠ PyTorch"
        for b in self.backends:
            cols[f"{b}_kb"] = f"{b} KB"
            for t in self.targets:
                cols[f"{b}@{t}"] = f"{b} @ {t}"
        fmt = {k: _latency_cell for k in cols if "@" in k}
        fmt.update({k: (lambda v: "—" if v is None else f"{v:.2f}") for k in cols if k.endswith(("acc", "float", "ptq", "qat"))})
        fmt["qat_gap"] = lambda v: f"{v:+.2f}"
        for k in cols:
            if k.endswith("_kb"):
                fmt[k] = lambda v: "—" if v is None else f"{v:.1f}"
        rows = self.flat_rows()
        if self.seeds > 1:  # mean ± half-width of the 95 % confidence interval over the seeds
            for r in rows:
                for k in [k for k in r if f"{k}_ci" in r]:
                    r[k] = f"{r[k]:.1f} ± {r[k + '_ci']:.1f}"
            for k in list(fmt):
                if k.endswith(("acc", "float", "ptq", "qat")):
                    fmt[k] = lambda v: "—" if v is None else (v if isinstance(v, str) else f"{v:.2f}")
        text = markdown_table(rows, cols, fmt)
        if self.seeds > 1:
            text += (f"\nAccuracies: mean ± half-width of the 95 % confidence interval (Student t) over {self.seeds} "
                     f"seeds (weight initialisation, shuffling, QAT); task {self.task!r}; files and latency of seed 0.\n")
        if any(t.startswith("qemu") for t in self.targets):
            text += ("\nUnder QEMU the figure is instructions per inference (one thread, fixed -cpu; identical run to "
                     "run for LiteRT, for onnxruntime mostly identical, one run in a few ~2 % off); emulated "
                     "milliseconds are 200–400× the host's and noisy and are not ARM latencies.\n")
        return text

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    def to_csv(self) -> str:
        import csv
        import io

        rows = self.flat_rows()
        keys = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (_latency_cell(v) if isinstance(v, dict) else v) for k, v in r.items()})
        return buf.getvalue()


def confidence_halfwidth(values, level: float = 0.95) -> float:
    """Half-width of the Student-t confidence interval of the mean (0 for fewer than two values)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return 0.0
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))


def _latency_cell(v) -> str:
    if not v:
        return "—"
    if v.get("insns") is not None:
        return f"{v['insns'] / 1e6:.2f} M insn"
    return f"{v['median_ms']:.3f} ms"


# -- the study ---------------------------------------------------------------------------------
def run_study(model: str = "mnv3s", activations: Sequence[str] = DEFAULT_ACTIVATIONS, targets: Sequence[str] = ("host",),
              backends: Sequence[str] = ("onnxruntime", "litert"), qat_epochs: int = 2, out_dir="out/study",
              runs: int = 30, emulated_runs: int = 2, test_limit: int | None = None, progress: bool = True,
              prefer: str | None = None, task: str = "digits", seeds: int = 1, executor="auto",
              address: str | None = None, cache: bool = True) -> StudyResult:
    """Run the whole pipeline for each activation; files and reports go to `out_dir`.

    targets: 'host', 'qemu-aarch64[:cpu]', 'qemu-armv7[:cpu]' (LiteRT only), 'ssh://user@board'.
    test_limit: use only the first N test images (the tests' reduced setting).
    prefer: 'x86' or 'arm' — which CPU's cheapest exact lowering each activation gets in the files
        (exact on both either way); default 'arm' when a target is ARM, else 'x86'.
    task: 'digits' or 'clusters' (harder; see edgeact.models.tasks). seeds: train each activation from
        this many seeds; accuracies are then means with 95 % confidence intervals.
    executor: 'auto' (Ray when installed), 'serial', 'ray', or an executor object (edgeact.executor);
        address: a Ray cluster to attach to (else $RAY_ADDRESS, else Ray embedded in this process).
    cache: reuse trained models and deterministic measurements from the cache directory (by content hash).
    """
    from edgeact.executor import get_executor
    from edgeact.models.tasks import canonical_task

    out_dir = Path(out_dir)
    activations, prefer = check_study_args(model, activations, targets, backends, qat_epochs, runs, emulated_runs,
                                           test_limit, prefer)
    task = canonical_task(task)
    model = canonical_model_name(model)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise EdgeActError(f"seeds must be a whole number ≥ 1, not {seeds!r}")
    from edgeact.targets import get_target

    target_backends = {t: get_target(t).backends() for t in targets}
    ensure_writable_dir(out_dir)
    ex = get_executor(executor, address) if isinstance(executor, str) else executor
    try:
        # Every cell is a task; a later cell takes an earlier one's future, so nothing waits for a whole stage.
        trained = {(a, s): ex.submit(train_cell, model, a, task, s, qat_epochs, test_limit, cache)
                   for a in activations for s in range(seeds)}
        deployed = {(a, s, b): ex.submit(deploy_cell, model, a, task, s, b, trained[a, s], test_limit, prefer, cache)
                    for a in activations for s in range(seeds) for b in backends}
        timed = {(a, b, t): ex.submit(bench_cell, deployed[a, 0, b], b, t, runs, emulated_runs, cache)
                 for a in activations for b in backends for t in targets if b in target_backends[t]}
        # Gathered activation by activation (the serial executor runs them in this order), so an interrupted
        # study has whole activations done.
        cells = {**{("train", k): f for k, f in trained.items()}, **{("deploy", k): f for k, f in deployed.items()},
                 **{("bench", k): f for k, f in timed.items()}}
        keys = sorted(cells, key=lambda key: activations.index(key[1][0]))
        results: dict[int, object] = {}
        try:
            with tqdm(total=len(keys), desc=f"study ({ex.name}, {ex.workers} workers)", disable=not progress) as bar:
                ex.gather([cells[k] for k in keys], progress=bar, results=results)
        except KeyboardInterrupt:  # keep what finished: the report of the activations done, without the plot
            values = {keys[i]: v for i, v in results.items()}
            done = [a for a in activations if all(k in values for k in keys if k[1][0] == a)]
            if done:
                rows = [_assemble_row(a, seeds, backends, targets, values, out_dir, model) for a in done]
                _write_reports(StudyResult(model, list(targets), list(backends), qat_epochs, rows, prefer, task,
                                           seeds), out_dir)
                interrupt.note(f"study.md/.json/.csv for {', '.join(done)} in {out_dir}")
            raise
        values = {keys[i]: v for i, v in results.items()}
    finally:  # also on Ctrl-C: Ray's workers and QEMU runs stop with it; what finished stays in the cache
        if isinstance(executor, str):
            ex.shutdown()
    rows = [_assemble_row(a, seeds, backends, targets, values, out_dir, model) for a in activations]
    result = StudyResult(model, list(targets), list(backends), qat_epochs, rows, prefer, task, seeds)
    _write_reports(result, out_dir)
    plot_pareto(result, out_dir / "pareto.png")
    return result


def _write_reports(result: StudyResult, out_dir: Path) -> None:
    atomic_write(out_dir / "study.md", result.markdown())
    atomic_write(out_dir / "study.json", result.to_json())
    atomic_write(out_dir / "study.csv", result.to_csv())


def check_study_args(model, activations, targets, backends, qat_epochs, runs, emulated_runs, test_limit, prefer):
    """Every argument of the study, checked before anything is trained or written (it takes minutes):
    returns the canonical activation names and the CPU family to prefer."""
    from edgeact.targets import get_target

    canonical_model_name(model)
    activations = list(dict.fromkeys(canonical_name(a) for a in activations))
    if not activations:
        raise EdgeActError("no activation to study; give at least one, e.g. --activations relu,hard_swish")
    if not targets:
        raise EdgeActError("no target to time on; give at least one, e.g. --targets host")
    if not backends:
        raise EdgeActError("no backend; give onnxruntime and/or litert, e.g. --backends onnxruntime,litert")
    for b in backends:
        if b not in BACKEND_SUFFIX:
            raise EdgeActError(f"unknown backend {b!r}; choose from {', '.join(BACKEND_SUFFIX)}")
    for t in targets:
        get_target(t)  # an unknown name or CPU model fails here, not after training
    for name, value, lo in (("qat_epochs", qat_epochs, 0), ("runs", runs, 1), ("emulated_runs", emulated_runs, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise EdgeActError(f"{name} must be a whole number ≥ {lo}, not {value!r}")
    if test_limit is not None and (isinstance(test_limit, bool) or not isinstance(test_limit, int) or test_limit < 1):
        raise EdgeActError(f"test_limit must be a whole number ≥ 1 (or None for every test image), not {test_limit!r}")
    if prefer is None:
        prefer = "arm" if any(t.startswith(("qemu-", "ssh://")) for t in targets) else "x86"
    if prefer not in ("x86", "arm"):
        raise EdgeActError(f"prefer must be 'x86' or 'arm', not {prefer!r}")
    return activations, prefer


def canonical_model_name(model: str) -> str:
    from edgeact.models.registry import canonical_model

    return canonical_model(model)


def _accuracy(logits, labels) -> float:
    return 100.0 * float((np.asarray(logits).argmax(1) == np.asarray(labels)).mean())


def _test_split(data, test_limit):
    x, y = data.x_test, data.y_test
    return (x[:test_limit], y[:test_limit]) if test_limit else (x, y)


def _one_thread() -> None:
    """Cells run on one thread each, under any executor: results do not depend on how many run at once,
    and N cells on N cores do not fight over threads."""
    torch.set_num_threads(1)


def train_cell(model_name: str, act: str, task: str, seed: int, qat_epochs: int, test_limit, use_cache: bool) -> dict:
    """Float model (checkpoint or trained), PTQ and QAT accuracy, and the QAT model's state — cached by content."""
    import edgeact
    from edgeact import models
    from edgeact.models.tasks import recipe, task_data
    from edgeact.quantize import QAT_QCONFIG
    from edgeact.study_cache import cached, content_key

    _one_thread()
    start = time.perf_counter()
    data = task_data(task, model_name)
    rec = recipe(task, model_name)
    key = content_key("train", model=model_name, activation=act, task=task, seed=seed, qat_epochs=qat_epochs,
                      recipe=rec)

    def compute() -> dict:
        if task == "digits" and seed == 0:
            float_model = models.load(model_name, act).eval()  # the shipped checkpoint (trained from seed 0)
        else:
            float_model = models.build(model_name, act, seed=seed)
            models.fit(float_model, data, seed=seed, **rec)
            float_model.eval()
        qat = edgeact.prepare(float_model, qconfig=QAT_QCONFIG)
        edgeact.calibrate(qat, data.calibration_batches(), progress=False)
        models.qat_finetune(qat, data, epochs=qat_epochs, seed=seed, progress=False)
        return {"float_state": float_model.state_dict(), "qat_state": qat.state_dict()}

    def evaluate() -> dict:
        state = cached(key, compute) if use_cache else compute()
        float_model, qat = _rebuild(model_name, act, state, data)
        x_test, y_test = _test_split(data, test_limit)
        with torch.no_grad():
            float_acc = _accuracy(float_model(x_test), y_test)
            ptq = edgeact.prepare(float_model)
            edgeact.calibrate(ptq, data.calibration_batches(), progress=False)
            ptq_acc = _accuracy(edgeact.convert(ptq)(x_test), y_test)
            qat_acc = _accuracy(edgeact.convert(qat)(x_test), y_test)
        return {"float": float_acc, "ptq": ptq_acc, "qat": qat_acc, "state": state, "key": key}

    # The accuracies are a deterministic function of the cached models: cached too (a second run only reads).
    result = dict(cached(f"{key}-eval-{test_limit}", evaluate) if use_cache else evaluate())
    result["seconds"] = time.perf_counter() - start
    return result


def _rebuild(model_name, act, state, data):
    """The float model and the frozen QAT model from their state dicts."""
    import edgeact
    from edgeact import models
    from edgeact.quantize import QAT_QCONFIG, freeze

    float_model = models.build(model_name, act)
    float_model.load_state_dict(state["float_state"])
    float_model.eval()
    qat = edgeact.prepare(float_model, qconfig=QAT_QCONFIG)
    own = dict(qat.named_buffers())
    for name, value in state["qat_state"].items():
        if name in own and own[name].shape != value.shape:  # per-channel observer ranges start as scalars
            owner, _, attr = name.rpartition(".")
            setattr(qat.get_submodule(owner), attr, torch.empty_like(value))
    qat.load_state_dict(state["qat_state"])
    qat.edgeact_example = data.calibration_batches()[0][:1].clone()  # what calibrate() would have kept
    freeze(qat)
    return float_model, qat


def deploy_cell(model_name: str, act: str, task: str, seed: int, backend: str, trained: dict, test_limit,
                prefer: str, use_cache: bool = True) -> dict:
    """Convert the QAT model for `backend`, write its file, run it on the host and compare code for code.

    Deterministic given the trained model and the code version, so cached by the trained model's key."""
    from edgeact.study_cache import cached

    start = time.perf_counter()
    args = (model_name, act, task, backend, trained, test_limit, prefer)
    key = f"{trained.get('key', 'nokey')}-deploy-{backend}-{prefer}-{test_limit}"
    result = dict(cached(key, lambda: _deploy(*args)) if use_cache and "key" in trained else _deploy(*args))
    result["seconds"] = time.perf_counter() - start
    return result


def _deploy(model_name, act, task, backend, trained, test_limit, prefer) -> dict:
    import tempfile

    import edgeact
    from edgeact.backend import get_backend
    from edgeact.export.verify import run_exported
    from edgeact.models.tasks import task_data

    _one_thread()
    data = task_data(task, model_name)
    x_test, y_test = _test_split(data, test_limit)
    _, qat = _rebuild(model_name, act, trained["state"], data)
    converted = edgeact.convert(qat, backend=STUDY_BACKENDS[backend, prefer])
    with tempfile.TemporaryDirectory(prefix="edgeact-study-") as tmp:
        path = Path(tmp) / f"{model_name}_{act}{BACKEND_SUFFIX[backend]}"
        get_backend(converted.edgeact_backend).write(converted, path, x_test[:1])
        with torch.no_grad():
            expected = converted(x_test).numpy()
        got = np.asarray(run_exported(path, x_test.numpy())[0])
        blob = path.read_bytes()
    out_qp = _output_qparams(converted)
    codes_expected = np.rint(expected / out_qp.scale) + out_qp.zero_point
    codes_got = np.rint(got / out_qp.scale) + out_qp.zero_point
    diff = np.abs(codes_expected - codes_got)
    return {"name": path.name, "bytes": blob, "accuracy": _accuracy(got, y_test),
            "mismatches": int((diff > 0).sum()), "codes": int(diff.size), "max_lsb": int(diff.max()) if diff.size else 0}


def bench_cell(deployed: dict, backend: str, target: str, runs: int, emulated_runs: int, use_cache: bool) -> dict:
    """Latency of one file on one target (a QEMU run is its own process); emulated instruction counts are
    deterministic, so they are cached by the file's content."""
    import hashlib

    from edgeact.measure import bench_bytes
    from edgeact.study_cache import cached, content_key

    _one_thread()
    emulated = target.startswith("qemu")

    def measure() -> dict:
        r = bench_bytes(deployed["name"], deployed["bytes"], target, backend=backend, threads=1,
                        warmup=1 if emulated else 5, runs=emulated_runs if emulated else runs)
        return {"median_ms": r.latency_ms["median"], "min_ms": r.latency_ms["min"],
                "insns": r.insns["median"] if r.insns else None, "emulated": r.emulated}

    if emulated and use_cache:
        key = content_key("bench", file=hashlib.sha256(deployed["bytes"]).hexdigest(), backend=backend,
                          target=target, runs=emulated_runs)
        result = cached(key, measure)
        if result.get("insns") is not None:
            return result
    return measure()


def _assemble_row(act, seeds, backends, targets, values, out_dir: Path, model_name: str) -> StudyRow:
    trained = [values["train", (act, s)] for s in range(seeds)]
    row = StudyRow(act, *(float(np.mean([t[k] for t in trained])) for k in ("float", "ptq", "qat")))
    row.seeds = {k: [t[k] for t in trained] for k in ("float", "ptq", "qat")}
    row.seconds = sum(t["seconds"] for t in trained)
    for b in backends:
        deps = [values["deploy", (act, s, b)] for s in range(seeds)]
        path = out_dir / deps[0]["name"]
        atomic_write(path, deps[0]["bytes"])  # the seed-0 file, the one timed
        m = Measured(b, str(path), len(deps[0]["bytes"]), float(np.mean([d["accuracy"] for d in deps])),
                     sum(d["mismatches"] for d in deps), sum(d["codes"] for d in deps),
                     max(d["max_lsb"] for d in deps))
        m.accuracies = [d["accuracy"] for d in deps]
        for t in targets:
            if ("bench", (act, b, t)) in values:
                m.latency[t] = values["bench", (act, b, t)]
        row.exports[b] = m
        row.seconds += sum(d["seconds"] for d in deps)
    return row


def _output_qparams(converted):
    from edgeact.quantized import Dequantize

    deq = [m for m in converted.modules() if isinstance(m, Dequantize)]
    return deq[-1].in_qparams[0]


# -- the Pareto plot ---------------------------------------------------------------------------
def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both lower latency and higher accuracy."""
    front = []
    for i, (lat, acc) in enumerate(points):
        dominated = any((l2 <= lat and a2 >= acc) and (l2 < lat or a2 > acc) for j, (l2, a2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def _label_groups(pts: list[tuple[float, float]], names: list[str], xspan: float) -> list[tuple[float, float, str]]:
    """Points that nearly coincide share one label ('swish, mish') instead of overprinting."""
    groups: list[list] = []
    for (x, y), n in zip(pts, names):
        for g in groups:
            if abs(g[0] - x) <= 0.08 * xspan and abs(g[1] - y) < 1e-9:
                g[2].append(n)
                break
        else:
            groups.append([x, y, [n]])
    return [(x, y, ", ".join(ns)) for x, y, ns in groups]


def plot_pareto(result: StudyResult, path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(b, t) for b in result.backends for t in result.targets]
    cols = min(2, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7.0 * cols, 4.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (b, t) in zip(axes.flat, panels):
        pts, names, errs = [], [], []
        for r in result.rows:
            m = r.exports.get(b)
            if not m or t not in m.latency:
                continue
            lat = m.latency[t]
            x = lat["insns"] / 1e6 if lat.get("insns") is not None else lat["median_ms"]
            pts.append((x, m.accuracy))
            names.append(r.activation)
            errs.append(confidence_halfwidth(m.accuracies))
        if not pts:
            ax.set_visible(False)
            continue
        front = set(pareto_front(pts))
        for i, (x, y) in enumerate(pts):
            color = "tab:red" if i in front else "tab:blue"
            if errs[i] > 0:  # the spread over seeds: 95 % confidence interval of the mean
                ax.errorbar(x, y, yerr=errs[i], fmt="none", ecolor=color, elinewidth=1.2, capsize=4, zorder=2)
            ax.scatter(x, y, s=70 if i in front else 35, color=color, zorder=3)
        xs = [p[0] for p in pts]
        offsets = [(6, 5), (6, -13), (6, 16)]  # neighbours on one accuracy level take turns above and below
        same_level: dict[float, int] = {}
        for x, y, label in sorted(_label_groups(pts, names, (max(xs) - min(xs)) or 1.0), key=lambda g: (g[1], g[0])):
            k = same_level.get(y, 0)
            same_level[y] = k + 1
            ax.annotate(label, (x, y), textcoords="offset points", xytext=offsets[k % 3], fontsize=9)
        fx = sorted(pts[i] for i in front)
        ax.plot([p[0] for p in fx], [p[1] for p in fx], "--", color="tab:red", alpha=0.6,
                label="Pareto front (no activation is both cheaper and more accurate)")
        ax.margins(x=0.35, y=0.25)
        emulated = t.startswith("qemu")
        ax.set_xlabel("instructions per inference, millions (deterministic)" if emulated
                      else "median latency, ms (1 thread)")
        ax.set_ylabel("int8 test accuracy of the file, %")
        ax.set_title(f"{b} on {t}")
        ax.grid(alpha=0.3)
    spread = (f"mean of {result.seeds} seeds, bars: 95 % CI; " if result.seeds > 1 else "")
    fig.suptitle(f"{result.model}: accuracy vs cost per activation (QAT int8, {result.task} test set; {spread}"
                 "red dashed: Pareto front — nothing is both cheaper and more accurate)", fontsize=10)
    fig.tight_layout()
    from edgeact.fileio import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
