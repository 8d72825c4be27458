"""The study as independent cells: Ray tasks give the table the serial run gives; the cache gives it again
without training; the 'clusters' task is harder than digits. Small settings (mlp, two activations)."""
from __future__ import annotations

import numpy as np
import pytest

from edgeact.errors import EdgeActError
from edgeact.executor import SerialExecutor, get_executor
from edgeact.study import confidence_halfwidth, run_study

SMALL = dict(model="mlp", activations=["relu", "hard_swish"], task="clusters", seeds=2, qat_epochs=1, runs=2,
             emulated_runs=1, progress=False)


def _comparable(result) -> list[dict]:
    """Every cell of the table except milliseconds (wall-clock, never identical twice) and onnxruntime's
    instruction counts under QEMU, compared with a tolerance instead: the guest gets the same argv, environment
    and model bytes from any process, and most runs give the same count, but one in a few moves by up to ~2 %
    (measured with one file in plain subprocesses: 140,210 ×6, 137,142 ×1); LiteRT's never move."""
    rows = []
    for row in result.flat_rows():
        rows.append({k: ({kk: vv for kk, vv in v.items() if kk not in ("median_ms", "min_ms")
                          and not (k.startswith("onnxruntime@qemu") and kk == "insns")}
                         if isinstance(v, dict) else v) for k, v in row.items()})
    return rows


@pytest.mark.slow
def test_ray_tasks_give_the_serial_table(tmp_path, aarch64_root):
    pytest.importorskip("ray")
    serial = run_study(targets=["host", "qemu-aarch64"], out_dir=tmp_path / "serial", executor="serial", cache=False,
                       **SMALL)
    ray_run = run_study(targets=["host", "qemu-aarch64"], out_dir=tmp_path / "ray", executor="ray", cache=False,
                        **SMALL)
    a, b = _comparable(ray_run), _comparable(serial)
    diffs = [(ra["activation"], k, ra.get(k), rb.get(k)) for ra, rb in zip(a, b) for k in set(ra) | set(rb)
             if ra.get(k) != rb.get(k)]
    assert not diffs
    for ra, rb in zip(ray_run.rows, serial.rows):
        counts = ra.exports["onnxruntime"].latency["qemu-aarch64"]["insns"], \
            rb.exports["onnxruntime"].latency["qemu-aarch64"]["insns"]
        assert abs(counts[0] - counts[1]) < 0.03 * counts[1], counts
    for row in serial.rows:
        for m in row.exports.values():
            assert m.parity_mismatches == 0 and m.parity_codes == 2 * 750 * 10  # 2 seeds × 750 test rows × 10
            assert m.latency["qemu-aarch64"]["insns"] > 10_000
            assert len(m.accuracies) == 2
    # The same files, byte for byte.
    for name in ("mlp_relu.onnx", "mlp_hard_swish.tflite"):
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes()


def test_second_run_reads_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEACT_CACHE", str(tmp_path / "cache"))
    kw = dict(SMALL, activations=["relu"], backends=["onnxruntime"], targets=["host"], executor="serial")
    first = run_study(out_dir=tmp_path / "a", **kw)
    entries = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "study").iterdir()}
    assert len(entries) >= 2 * 3  # per seed: trained model, its accuracies, its deployed file
    second = run_study(out_dir=tmp_path / "b", **kw)
    assert _comparable(second) == _comparable(first)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "study").iterdir()} == entries  # nothing rewritten
    # A damaged entry is recomputed, to the same numbers.
    victim = sorted(entries)[0]
    victim.write_bytes(b"not a torch file")
    third = run_study(out_dir=tmp_path / "c", **kw)
    assert _comparable(third) == _comparable(first)


@pytest.mark.slow
def test_clusters_task_is_harder_than_digits_and_separates_activations(tmp_path):
    """Float accuracy of two activations over three seeds: far from 100 %, and apart by more than the
    95 % intervals (the numbers come from plain training, not from the study's own code path)."""
    import torch

    from edgeact import models
    from edgeact.models.tasks import recipe, task_data

    torch.set_num_threads(1)
    data = task_data("clusters", "mlp")
    accs = {}
    for act in ("relu", "selu"):
        accs[act] = []
        for seed in range(3):
            net = models.build("mlp", act, seed=seed)
            accs[act].append(models.fit(net, data, seed=seed, **recipe("clusters", "mlp")).test_accuracy)
    for act, a in accs.items():
        assert 40 < np.mean(a) < 90, (act, a)
    gap = abs(np.mean(accs["relu"]) - np.mean(accs["selu"]))
    assert gap > confidence_halfwidth(accs["relu"]) + confidence_halfwidth(accs["selu"]), accs


def test_confidence_halfwidth_against_the_t_table():
    # n = 3: t(0.975, 2) = 4.303; sd of (1, 2, 3) is 1, so the half-width is 4.303 / sqrt(3).
    assert confidence_halfwidth([1.0, 2.0, 3.0]) == pytest.approx(4.303 / np.sqrt(3), rel=1e-3)
    assert confidence_halfwidth([5.0]) == 0.0


def test_executor_choices_and_errors(monkeypatch):
    assert isinstance(get_executor("serial"), SerialExecutor)
    with pytest.raises(EdgeActError, match="unknown executor"):
        get_executor("threads")
    ex = SerialExecutor()
    a = ex.submit(lambda x: x + 1, 1)
    b = ex.submit(lambda x, y: x * y, a, 10)  # a future as an argument
    assert ex.gather([a, b]) == [2, 20]
    with pytest.raises(EdgeActError, match="seeds"):
        run_study("mlp", ["relu"], seeds=0, executor="serial", progress=False)


def test_unreachable_ray_cluster_is_a_clear_error(tmp_path):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EdgeActError, match="cannot reach the Ray cluster"):
        get_executor("ray", address=f"127.0.0.1:{port}")
