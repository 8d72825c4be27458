"""Reports of bench and check results: a Markdown table for people, JSON and CSV for machines, PNG plots.

Emulated rows never show p10/p90 and always carry the warning: their milliseconds are not ARM latencies.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Sequence

from edgeact.fileio import atomic_write
from edgeact.measure import EMULATION_WARNING, BenchResult, CheckResult


def _ms(v) -> str:
    if v is None:
        return "—"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _target_label(r) -> str:
    return f"{r.target} ({r.cpu})" if getattr(r, "cpu", None) else r.target


# ---------------------------------------------------------------------------------------------- bench


BENCH_COLUMNS = ["model", "target", "cpu", "backend", "runtime", "threads", "runs", "size_bytes",
                 "median_ms", "p10_ms", "p90_ms", "min_ms", "insns_per_inference", "insns_min", "insns_max",
                 "peak_rss_kb", "emulated", "xnnpack_partitions", "ops_outside_xnnpack"]


def bench_rows(results: Sequence[BenchResult]) -> list[dict]:
    rows = []
    for r in results:
        lat = r.latency_ms
        rows.append({
            "model": Path(r.model).name, "target": r.target, "cpu": r.cpu or "", "backend": r.backend,
            "runtime": r.runtime, "threads": r.threads, "runs": r.runs, "size_bytes": r.size_bytes,
            "median_ms": lat["median"], "p10_ms": None if r.emulated else lat["p10"],
            "p90_ms": None if r.emulated else lat["p90"], "min_ms": lat["min"],
            "insns_per_inference": r.insns["median"] if r.insns else None,
            "insns_min": r.insns["min"] if r.insns else None, "insns_max": r.insns["max"] if r.insns else None,
            "peak_rss_kb": None if r.emulated else r.peak_rss_kb, "emulated": r.emulated,
            "xnnpack_partitions": r.partitions["delegated"] if r.partitions else None,
            "ops_outside_xnnpack": len(r.partitions["outside"]) if r.partitions else None,
        })
    return rows


def bench_markdown(results: Sequence[BenchResult]) -> str:
    head = ("| model | target | backend | size | instructions / inference | median ms | p10 ms | p90 ms | "
            "min ms | peak memory | XNNPACK partitions (ops outside) |")
    lines = [head, "|" + "---|" * 11]
    emulated = False
    for r in results:
        lat = r.latency_ms
        star = " *" if r.emulated else ""
        emulated |= r.emulated
        ins = f"**{r.insns['median']:,}**" if r.insns else "—"
        if r.insns and r.insns["min"] != r.insns["max"]:
            ins += f" ({r.insns['min']:,}–{r.insns['max']:,})"
        mem = "— (emulator)" if r.emulated else (f"{r.peak_rss_kb / 1024:.1f} MB" if r.peak_rss_kb else "—")
        lines.append(
            f"| {Path(r.model).name} | {_target_label(r)} | {r.backend} ({r.runtime}) | {r.size_bytes / 1024:.1f} KB"
            f" | {ins} | {_ms(lat['median'])}{star} | {'—' if r.emulated else _ms(lat['p10'])} | "
            f"{'—' if r.emulated else _ms(lat['p90'])} | {_ms(lat['min'])}{star} | {mem} | {_partitions(r)} |"
        )
    if emulated:
        lines.append("")
        lines.append(f"\\* {EMULATION_WARNING} Instruction counts are per inference, one thread, "
                     "fixed -cpu, and identical run to run.")
    return "\n".join(lines) + "\n"


def _partitions(r: BenchResult) -> str:
    if not r.partitions:
        return "—"
    outside = r.partitions["outside"]
    kinds = ", ".join(f"{op} ×{outside.count(op)}" for op in sorted(set(outside)))
    return f"{r.partitions['delegated']} ({kinds or 'none'})"


def bench_json(results: Sequence[BenchResult]) -> str:
    return json.dumps(_finite([r.to_dict() for r in results]), indent=2, default=_json_default)


def bench_csv(results: Sequence[BenchResult]) -> str:
    return _csv(bench_rows(results), BENCH_COLUMNS)


def _finite(o):
    """JSON has no Infinity: an identical output's SQNR (inf) is written as the string "inf"."""
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _json_default(o):
    if isinstance(o, float) and math.isinf(o):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def plot_bench(results: Sequence[BenchResult], path) -> Path:
    """Latency per target and backend (log scale: emulation is 100s of times slower, hatched), and the
    instruction count per inference for the emulated rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counted = [r for r in results if r.insns]
    fig, axes = plt.subplots(1, 2 if counted else 1, figsize=(12 if counted else 7, 0.5 * len(results) + 2.2),
                             squeeze=False)
    ax = axes[0][0]
    labels = [f"{Path(r.model).stem}\n{_target_label(r)} · {r.backend}" for r in results]
    med = [r.latency_ms["median"] for r in results]
    lo = [r.latency_ms["median"] - (r.latency_ms["min"] if r.emulated else r.latency_ms["p10"]) for r in results]
    hi = [0 if r.emulated else r.latency_ms["p90"] - r.latency_ms["median"] for r in results]
    colors = ["#c0504d" if r.emulated else "#4f81bd" for r in results]
    y = range(len(results))
    bars = ax.barh(y, med, xerr=[lo, hi], color=colors, capsize=3)
    for b, r in zip(bars, results):
        if r.emulated:
            b.set_hatch("//")
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ms / inference, log (median; p10–p90; emulated: min–median)")
    ax.set_title("Latency per target and backend" + ("\n(hatched red: emulated under QEMU, not an ARM latency)"
                                                     if any(r.emulated for r in results) else ""), fontsize=10)
    if counted:
        ax2 = axes[0][1]
        lab2 = [f"{Path(r.model).stem}\n{_target_label(r)} · {r.backend}" for r in counted]
        vals = [r.insns["median"] / 1e6 for r in counted]
        yb = range(len(counted))
        ax2.barh(yb, vals, color="#9bbb59")
        for i, v in zip(yb, vals):
            ax2.text(v, i, f" {v:.2f} M", va="center", fontsize=8)
        ax2.set_yticks(list(yb), lab2, fontsize=8)
        ax2.invert_yaxis()
        ax2.set_xlabel("M guest instructions / inference")
        ax2.set_title("Instruction count under QEMU\n(deterministic: one thread, fixed -cpu)", fontsize=10)
        ax2.set_xlim(0, max(vals) * 1.25)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------- check


CHECK_COLUMNS = ["model", "reference", "target", "cpu", "backend", "runtime", "output", "max_abs", "mean_abs",
                 "sqnr_db", "top1", "host_equal", "host_code_hist"]


def check_rows(results: Sequence[CheckResult]) -> list[dict]:
    rows = []
    for r in results:
        for o in r.outputs:
            rows.append({"model": Path(r.model).name, "reference": Path(r.reference).name, "target": r.target,
                         "cpu": r.cpu or "", "backend": r.backend, "runtime": r.runtime, "output": o.name,
                         "max_abs": o.max_abs, "mean_abs": o.mean_abs, "sqnr_db": o.sqnr_db, "top1": o.top1,
                         "host_equal": o.host_equal,
                         "host_code_hist": json.dumps(o.host_code_hist) if o.host_code_hist else ""})
    return rows


def _hist_text(h: dict | None) -> str:
    if not h:
        return "—"
    return ", ".join(f"{k:+d}: {v}" if k else f"0: {v}" for k, v in sorted(h.items()))


def check_markdown(results: Sequence[CheckResult]) -> str:
    lines = ["| model | target | output | max abs Δ | mean abs Δ | SQNR dB | top-1 | same int8 codes as host | "
             "code Δ vs host (LSB: count) |", "|" + "---|" * 9]
    notes = []
    for r in results:
        for o in r.outputs:
            top1 = "—" if o.top1 is None else f"{100 * o.top1:.1f}%"
            same = "—" if o.host_equal is None else ("yes" if o.host_equal else "**no**")
            lines.append(f"| {Path(r.model).name} | {_target_label(r)} · {r.backend} | {o.name} | {o.max_abs:.4g} | "
                         f"{o.mean_abs:.4g} | {o.sqnr_db:.1f} | {top1} | {same} | {_hist_text(o.host_code_hist)} |")
            if o.host_diff_where and "count" in o.host_diff_where[0]:
                shown = "; ".join(f"input code {w['input_code']}: host {w['host']}, target {w['target']} "
                                  f"({w['count']} elements)" for w in o.host_diff_where)
                notes.append(f"- {Path(r.model).name} on {_target_label(r)} ({r.runtime}; host "
                             f"{r.host_runtime}), output {o.name}: {shown}.")
            elif o.host_diff_where:
                shown = "; ".join(f"{tuple(w['index'])}: host {w['host']}, target {w['target']}"
                                  for w in o.host_diff_where[:5])
                notes.append(f"- {Path(r.model).name} on {_target_label(r)} ({r.runtime}; host "
                             f"{r.host_runtime}), output {o.name}: first differences at {shown}.")
        if r.why and notes:
            notes.append(f"  Why: {r.why}")
    out = "\n".join(lines) + "\n"
    if notes:
        out += "\nWhere the target's int8 codes differ from the host's:\n" + "\n".join(notes) + "\n"
    return out


def check_json(results: Sequence[CheckResult]) -> str:
    return json.dumps(_finite([r.to_dict() for r in results]), indent=2, default=_json_default)


def check_csv(results: Sequence[CheckResult]) -> str:
    return _csv(check_rows(results), CHECK_COLUMNS)


def plot_check(results: Sequence[CheckResult], path) -> Path:
    """Per output: histogram of the error against the float reference in LSB, and of the int8 code
    differences against the host run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    items = [(r, o) for r in results for o in r.outputs]
    fig, axes = plt.subplots(len(items), 2, figsize=(11, 3.0 * len(items)), squeeze=False)
    for (r, o), (a1, a2) in zip(items, axes):
        title = f"{Path(r.model).name} · {_target_label(r)} · {o.name}"
        if o.error_lsb is not None:
            e = np.asarray(o.error_lsb)
            lim = max(2.0, float(np.ceil(np.percentile(np.abs(e), 99.5))))
            outside = int(np.sum(np.abs(e) > lim))
            a1.hist(np.clip(e, -lim, lim), bins=np.linspace(-lim, lim, 8 * int(lim) + 1), color="#4f81bd")
            a1.set_yscale("log")
            a1.set_xlabel("(target − float reference) / scale   [LSB]"
                          + (f"; {outside} beyond ±{lim:.0f} in the end bins" if outside else ""))
        else:
            a1.text(0.5, 0.5, "float output: no scale", ha="center", transform=a1.transAxes)
        a1.set_ylabel("elements")
        a1.set_title(f"error vs float — SQNR {o.sqnr_db:.1f} dB\n{title}", fontsize=9)
        if o.host_code_hist:
            ks = sorted(o.host_code_hist)
            a2.bar([str(k) for k in ks], [o.host_code_hist[k] for k in ks],
                   color=["#9bbb59" if k == 0 else "#c0504d" for k in ks])
            a2.set_yscale("log")
            a2.set_xlabel("target code − host code   [LSB]")
            for i, k in enumerate(ks):
                a2.text(i, o.host_code_hist[k], f"{o.host_code_hist[k]}", ha="center", va="bottom", fontsize=8)
        else:
            a2.text(0.5, 0.5, "no int8 codes to compare", ha="center", transform=a2.transAxes)
        a2.set_title(f"int8 codes vs the host run ({'identical' if o.host_equal else 'differ'})", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write(path, buf.getvalue())


def emit_all(markdown: str, json_text: str, csv_text: str, json_dest: str | None, csv_dest: str | None) -> None:
    """The CLI's outputs: Markdown on stdout unless JSON or CSV goes there ('-'), JSON/CSV where asked."""
    if "-" not in (json_dest, csv_dest):
        emit(markdown, None)
    if json_dest:
        emit(json_text, json_dest)
    if csv_dest:
        emit(csv_text, csv_dest)


def emit(text: str, dest: str | None) -> None:
    """Write `text` to a file (atomically) or to stdout for '-'."""
    if dest in (None, "-"):
        print(text, end="" if text.endswith("\n") else "\n")
    else:
        atomic_write(dest, text)
