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

from edgeact.activations import canonical_name
from edgeact.errors import EdgeActError
from edgeact.fileio import atomic_write
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


@dataclasses.dataclass
class StudyRow:
    activation: str
    float_accuracy: float
    ptq_accuracy: float
    qat_accuracy: float
    exports: dict = dataclasses.field(default_factory=dict)  # backend → Measured
    seconds: float = 0.0


@dataclasses.dataclass
class StudyResult:
    model: str
    targets: list[str]
    backends: list[str]
    qat_epochs: int
    rows: list[StudyRow]
    prefer: str = "x86"

    # -- reports --------------------------------------------------------------------------------
    def flat_rows(self) -> list[dict]:
        out = []
        for r in self.rows:
            row = {"activation": r.activation, "float": r.float_accuracy, "ptq": r.ptq_accuracy, "qat": r.qat_accuracy,
                   "qat_gap": r.qat_accuracy - r.float_accuracy}
            for b, m in r.exports.items():
                row[f"{b}_acc"] = m.accuracy
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
        text = markdown_table(self.flat_rows(), cols, fmt)
        if any(t.startswith("qemu") for t in self.targets):
            text += ("\nUnder QEMU the figure is instructions per inference (one thread, fixed -cpu, identical run to "
                     "run); emulated milliseconds are 200–400× the host's and noisy and are not ARM latencies.\n")
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
              prefer: str | None = None) -> StudyResult:
    """Run the whole pipeline for each activation; files and reports go to `out_dir`.

    targets: 'host', 'qemu-aarch64[:cpu]', 'qemu-armv7[:cpu]' (LiteRT only), 'ssh://user@board'.
    test_limit: use only the first N test images (the tests' reduced setting).
    prefer: 'x86' or 'arm' — which CPU's cheapest exact lowering each activation gets in the files
        (exact on both either way); default 'arm' when a target is ARM, else 'x86'.
    """
    from edgeact import models

    out_dir = Path(out_dir)
    activations = [canonical_name(a) for a in activations]
    if prefer is None:
        prefer = "arm" if any(t.startswith(("qemu-", "ssh://")) for t in targets) else "x86"
    for b in backends:
        if b not in BACKEND_SUFFIX:
            raise EdgeActError(f"unknown backend {b!r}; choose from {', '.join(BACKEND_SUFFIX)}")
    data = models.digits_for(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    bar = tqdm(activations, desc="study", disable=not progress)
    for act in bar:
        bar.set_postfix_str(act)
        rows.append(_study_one(model, act, data, targets, backends, qat_epochs, out_dir, runs, emulated_runs,
                               test_limit, prefer))
    result = StudyResult(canonical_model_name(model), list(targets), list(backends), qat_epochs, rows, prefer)
    atomic_write(out_dir / "study.md", result.markdown())
    atomic_write(out_dir / "study.json", result.to_json())
    atomic_write(out_dir / "study.csv", result.to_csv())
    plot_pareto(result, out_dir / "pareto.png")
    return result


def canonical_model_name(model: str) -> str:
    from edgeact.models.registry import canonical_model

    return canonical_model(model)


def _accuracy(logits, labels) -> float:
    return 100.0 * float((np.asarray(logits).argmax(1) == np.asarray(labels)).mean())


def _study_one(model_name, act, data, targets, backends, qat_epochs, out_dir, runs, emulated_runs, test_limit,
               prefer) -> StudyRow:
    import edgeact
    from edgeact import models
    from edgeact.backend import get_backend
    from edgeact.export.verify import run_exported
    from edgeact.measure import bench
    from edgeact.quantize import QAT_QCONFIG
    from edgeact.targets import get_target

    start = time.perf_counter()
    x_test, y_test = data.x_test, data.y_test
    if test_limit:
        x_test, y_test = x_test[:test_limit], y_test[:test_limit]
    float_model = models.load(model_name, act).eval()
    with torch.no_grad():
        float_acc = _accuracy(float_model(x_test), y_test)

    ptq = edgeact.prepare(float_model)
    edgeact.calibrate(ptq, data.calibration_batches(), progress=False)
    with torch.no_grad():
        ptq_acc = _accuracy(edgeact.convert(ptq)(x_test), y_test)

    qat = edgeact.prepare(float_model, qconfig=QAT_QCONFIG)
    edgeact.calibrate(qat, data.calibration_batches(), progress=False)
    models.qat_finetune(qat, data, epochs=qat_epochs, progress=False)
    with torch.no_grad():
        qat_acc = _accuracy(edgeact.convert(qat)(x_test), y_test)

    row = StudyRow(act, float_acc, ptq_acc, qat_acc)
    for backend in backends:
        converted = edgeact.convert(qat, backend=STUDY_BACKENDS[backend, prefer])
        path = out_dir / f"{canonical_model_name(model_name)}_{act}{BACKEND_SUFFIX[backend]}"
        get_backend(converted.edgeact_backend).write(converted, path, x_test[:1])
        with torch.no_grad():
            expected = converted(x_test).numpy()
        got = np.asarray(run_exported(path, x_test.numpy())[0])
        out_qp = _output_qparams(converted)
        codes_expected = np.rint(expected / out_qp.scale) + out_qp.zero_point
        codes_got = np.rint(got / out_qp.scale) + out_qp.zero_point
        diff = np.abs(codes_expected - codes_got)
        m = Measured(backend, str(path), path.stat().st_size, _accuracy(got, y_test), int((diff > 0).sum()),
                     int(diff.size), int(diff.max()) if diff.size else 0)
        for target in targets:
            if backend not in get_target(target).backends():
                continue  # e.g. qemu-armv7 has no onnxruntime wheel; `edgeact targets` says why
            emulated = target.startswith("qemu")
            r = bench(path, target=target, backend=backend,
                      threads=1, warmup=1 if emulated else 5, runs=emulated_runs if emulated else runs,
                      progress=False)
            m.latency[target] = {"median_ms": r.latency_ms["median"], "min_ms": r.latency_ms["min"],
                                 "insns": r.insns["median"] if r.insns else None, "emulated": r.emulated}
        row.exports[backend] = m
    row.seconds = time.perf_counter() - start
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
        pts, names = [], []
        for r in result.rows:
            m = r.exports.get(b)
            if not m or t not in m.latency:
                continue
            lat = m.latency[t]
            x = lat["insns"] / 1e6 if lat.get("insns") is not None else lat["median_ms"]
            pts.append((x, m.accuracy))
            names.append(r.activation)
        if not pts:
            ax.set_visible(False)
            continue
        front = set(pareto_front(pts))
        for i, (x, y) in enumerate(pts):
            ax.scatter(x, y, s=70 if i in front else 35, color="tab:red" if i in front else "tab:blue", zorder=3)
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
    fig.suptitle(f"{result.model}: accuracy vs cost per activation (QAT int8, digits test set); "
                 "red dashed: Pareto front (nothing is both cheaper and more accurate)")
    fig.tight_layout()
    from edgeact.fileio import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
