"""Measurement and reports: statistics, bench and check on the host and on emulated ARM, and the CLI."""
from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

import fixtures_models as F
from edgeact.export.litert import interpreter as rt
from edgeact import measure, report
from edgeact.cli import main
from edgeact.errors import ModelFileError


# ---------------------------------------------------------------------------------------- statistics


def test_latency_stats_match_numpy_percentiles():
    t = [5.0, 1.0, 2.0, 4.0, 3.0, 10.0]
    s = measure.latency_stats(t)
    assert s["n"] == 6 and s["min"] == 1.0 and s["median"] == 3.5
    assert s["p10"] == pytest.approx(np.percentile(t, 10)) and s["p90"] == pytest.approx(np.percentile(t, 90))
    assert measure.latency_stats([])["median"] is None


def test_sqnr_and_error_stats():
    ref = np.array([1.0, -2.0, 3.0, 0.5])
    assert measure.sqnr_db(ref, ref) == math.inf
    noisy = ref + np.array([0.1, -0.1, 0.1, -0.1])
    assert measure.sqnr_db(ref, noisy) == pytest.approx(10 * np.log10(np.sum(ref ** 2) / 0.04))
    st = measure.error_stats(ref, noisy)
    assert st["max_abs"] == pytest.approx(0.1) and st["mean_abs"] == pytest.approx(0.1)
    with pytest.raises(ModelFileError, match="shapes differ"):
        measure.error_stats(ref, ref[:2])


def test_top1_and_code_histogram():
    ref = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    tst = np.array([[0.2, 0.8], [0.1, 0.9], [0.3, 0.7], [0.6, 0.4]])
    assert measure.top1_agreement(ref, tst) == 0.75
    assert measure.top1_agreement(ref[:, 0], tst[:, 0]) is None  # not a classifier output
    h = measure.code_diff_histogram(np.array([1, 2, 3, 4], np.int8), np.array([1, 3, 3, 2], np.int8))
    assert h == {-2: 1, 0: 2, 1: 1}


def test_onnx_output_quant_reads_q_and_dq(target_models, tmp_path):
    assert measure.onnx_output_quant(target_models["conv_qdq.onnx"]) == [(pytest.approx(0.05), -128)]
    F.act_qdq_onnx(tmp_path / "dq.onnx", s_out=0.03, z_out=5, dq_output=True)
    assert measure.onnx_output_quant(tmp_path / "dq.onnx") == [(pytest.approx(0.03), 5)]
    assert measure.onnx_output_quant(target_models["conv_float.onnx"]) == [None]


# ------------------------------------------------------------------------------------- bench and check


def test_bench_on_host(target_models):
    r = measure.bench(target_models["conv_int8.tflite"], "host", warmup=1, runs=5)
    assert r.backend == "litert" and r.runs == 5 and len(r.times_ms) == 5
    assert r.latency_ms["min"] <= r.latency_ms["median"] <= r.latency_ms["p90"]
    assert r.size_bytes == target_models["conv_int8.tflite"].stat().st_size
    assert r.peak_rss_kb > 1000 and r.insns is None and not r.emulated
    md = report.bench_markdown([r])
    assert "conv_int8.tflite" in md and "p90" in md and "emulated" not in md
    # the XNNPACK split, from LiteRT's own execution plan
    plan = rt.delegated_ops(rt.load(target_models["conv_int8.tflite"]))
    assert r.partitions["delegated"] == plan.count("DELEGATE") >= 1
    assert report.bench_rows([r])[0]["xnnpack_partitions"] == r.partitions["delegated"]
    assert "XNNPACK partitions" in md


def test_bench_on_qemu_reports_instruction_counts(aarch64_root, target_models, tmp_path):
    r = measure.bench(target_models["hardswish_int8.tflite"], "qemu-aarch64", warmup=1, runs=3)
    assert r.emulated and r.insns and r.insns["median"] > 0 and r.cpu == "cortex-a72"
    row = report.bench_rows([r])[0]
    assert row["p10_ms"] is None and row["p90_ms"] is None  # only min and median under emulation
    md = report.bench_markdown([r])
    assert f"**{r.insns['median']:,}**" in md and "not an ARM latency" in md
    png = report.plot_bench([r], tmp_path / "bench.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_cli_bench_over_many_files_on_ray_gives_the_serial_counts(aarch64_root, target_models, tmp_path):
    """Emulated instruction counts run as Ray tasks (files shipped as bytes), host timings stay in this process;
    the table is the serial one, in the same order, with the user's paths."""
    pytest.importorskip("ray")
    files = [str(target_models[n]) for n in ("hardswish_int8.tflite", "conv_int8.tflite", "hardswish_gather.tflite")]
    runs = {}
    for executor in ("serial", "ray"):
        out = tmp_path / f"{executor}.json"
        argv = ["bench", *files, "--target", "host", "--target", "qemu-aarch64", "--runs", "2", "--executor",
                executor, "--json", str(out), "--no-progress"]
        assert main(argv) == 0
        runs[executor] = json.loads(out.read_text())
    serial, ray_rows = runs["serial"], runs["ray"]
    assert [(r["model"], r["target"]) for r in ray_rows] == [(r["model"], r["target"]) for r in serial] \
        == [(f, t) for f in files for t in ("host", "qemu-aarch64")]
    for a, b in zip(ray_rows, serial):
        if b["emulated"]:
            assert a["insns"]["median"] == b["insns"]["median"] > 10_000
        else:
            assert a["insns"] is None and a["latency_ms"]["n"] == 2


def test_check_on_host_against_float(target_models, tmp_path):
    data = tmp_path / "x.npz"
    np.savez(data, x=F.sample_input((1, 16, 56, 56), seed=7))
    r = measure.check(target_models["hardswish_qdq.onnx"], target_models["hardswish_float.onnx"], data, "host")
    (o,) = r.outputs
    assert o.host_equal and o.host_code_hist == {0: 16 * 56 * 56}
    # inside the int8 range the error is output rounding (0.5 LSB) plus input rounding (0.5 LSB) times
    # hard-swish's steepest slope in that range (1.5 at x = 3): at most 1.25 LSB
    x = np.load(data)["x"]
    inside = (np.abs(x) < 6.0).ravel()
    assert o.sqnr_db > 30
    assert np.max(np.abs(np.asarray(o.error_lsb)[inside])) <= 1.25 + 1e-3


def test_check_on_arm_shows_where_codes_differ(aarch64_root, target_models, tmp_path):
    """conv_qdq.onnx: ORT's ARM64 kernels may round differently; the report must say where, or be equal."""
    data = tmp_path / "x.npz"
    np.savez(data, x=F.sample_input((1, 16, 56, 56), seed=0))
    r = measure.check(target_models["conv_qdq.onnx"], target_models["conv_float.onnx"], data, "qemu-aarch64")
    (o,) = r.outputs
    assert r.runtime == r.host_runtime
    md = report.check_markdown([r])
    if o.host_equal:
        assert o.host_diff_where == [] and "first differences" not in md
    else:
        assert set(o.host_code_hist) <= {-1, 0, 1}, "more than one LSB apart: a real bug"
        assert o.host_diff_where and "first differences" in md and "Why:" in md
        w = o.host_diff_where[0]
        assert w["host"] != w["target"]
    png = report.plot_check([r], tmp_path / "check.png")
    assert png.stat().st_size > 1000


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_bench_json_csv_plot(target_models, tmp_path, capsys):
    out_json, out_csv, png = tmp_path / "b.json", tmp_path / "b.csv", tmp_path / "b.png"
    rc = main(["bench", str(target_models["hardswish_qdq.onnx"]), str(target_models["hardswish_int8.tflite"]),
               "--runs", "3", "--json", str(out_json), "--csv", str(out_csv), "--plot", str(png), "--no-progress"])
    assert rc == 0
    md = capsys.readouterr().out
    assert md.startswith("| model |") and "hardswish_int8.tflite" in md
    rows = json.loads(out_json.read_text())
    assert [r["backend"] for r in rows] == ["onnxruntime", "litert"]
    assert all(r["latency_ms"]["n"] == 3 for r in rows)
    table = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert len(table) == 2 and float(table[0]["median_ms"]) > 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_check_json_to_stdout(target_models, tmp_path, capsys):
    data = tmp_path / "x.npz"
    np.savez(data, F.sample_input((1, 56, 56, 16), seed=8))  # positional array: matched by order
    rc = main(["check", str(target_models["hardswish_int8.tflite"]), "--reference",
               str(target_models["hardswish_float.tflite"]), "--data", str(data), "--json", "--no-progress"])
    assert rc == 0
    (res,) = json.loads(capsys.readouterr().out)
    (o,) = res["outputs"]
    assert res["backend"] == "litert" and o["host_equal"] is True and o["sqnr_db"] > 25


def test_cli_check_missing_data_names_the_fix(target_models, tmp_path, capsys):
    rc = main(["check", str(target_models["hardswish_qdq.onnx"]), "--reference",
               str(target_models["hardswish_float.onnx"]), "--data", str(tmp_path / "none.npz")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "data file" in err and "numpy.savez" in err or ".npz" in err


def test_check_lists_differences_per_input_code_for_an_activation(aarch64_root, tmp_path):
    """Every int8 input code through LiteRT HARD_SWISH on aarch64 vs the host: any difference is listed by
    input code (the table entry that differs), never more than one LSB."""
    model = F.act_tflite(tmp_path / "hsw.tflite", "HARD_SWISH", (1, 1, 16, 16))
    ref = F.float_act_tflite(tmp_path / "hsw_float.tflite", "HARD_SWISH", (1, 1, 16, 16))
    data = tmp_path / "codes.npz"
    np.savez(data, x=(np.arange(-128, 128, dtype=np.float32) * 0.05).reshape(1, 1, 16, 16))
    r = measure.check(model, ref, data, "qemu-aarch64")
    (o,) = r.outputs
    for w in o.host_diff_where:
        assert set(w) == {"input_code", "host", "target", "count"} and abs(w["host"] - w["target"]) == 1
    assert sum(w["count"] for w in o.host_diff_where) == sum(v for k, v in o.host_code_hist.items() if k)
