"""On an AVX2 host without VNNI: what each exact way of writing the weights costs against quantize_static.

Times, side by side (interleaved, 1 thread, batch 1), the same model as edgeact's portable file (uint8
weights, U8U8 kernels), the int8-weight file with session.x64quantprecision=1 (u8s8 at full precision),
the `onnxruntime:x86-avx2` file (int8 weights; ORT's saturating u8s8 kernels, which that backend models),
and quantize_static's U8 files with and without reduce_range. All three edgeact files are exact on AVX2;
only the last one is exact without a session option *and* runs the peer's kernel. Results:
benchmarks/RESULTS-peers.md. Run: .venv/bin/python benchmarks/probe_ort_avx2_weights.py [--rounds N]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).parent))
import bench_vs_peers as peers  # noqa: E402

PRECISE = {"session.x64quantprecision": "1"}


def main(argv=None) -> int:
    import edgeact
    from edgeact.backend import x86_kernel_family
    from edgeact.export import to_onnx

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--acts", default="swish,relu6")
    ap.add_argument("--models", default="mobilenet_v3_small")
    args = ap.parse_args(argv)
    print(f"x86 kernel family: {x86_kernel_family()}")
    subjects = [peers.mnv3s_subject(a) for a in args.acts.split(",") if a] + \
               [peers.zoo_subject(m) for m in args.models.split(",") if m]
    print("| model · activation | edgeact U8U8 | int8 weights, precise | x86-avx2 (saturating, modelled) | qs U8 | qs U8 rr | x86-avx2 / fastest peer |")
    print("|---|---|---|---|---|---|---|")
    for subject in subjects:
        with tempfile.TemporaryDirectory() as tmp:
            files = peers.onnx_files(subject, Path(tmp))
        example = subject.calibration[0][:1]
        for label, backend in (("int8w", "onnxruntime:x86-vnni"), ("avx2", "onnxruntime:x86-avx2")):
            files[label] = to_onnx(edgeact.convert(peers._prepared(subject), backend=backend), example).SerializeToString()
        x = subject.x[:1].astype(np.float32)
        runners = {}
        for key, label, options in (("U8U8", "edgeact", {}), ("precise", "int8w", PRECISE), ("avx2", "avx2", {}),
                                    ("qs U8", "qs U8", {}), ("qs U8 rr", "qs U8 rr", {})):
            so = ort.SessionOptions()
            so.intra_op_num_threads = so.inter_op_num_threads = 1
            for k, v in options.items():
                so.add_session_config_entry(k, v)
            sess = ort.InferenceSession(files[label], so, providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            runners[key] = lambda sess=sess, name=name: sess.run(None, {name: x})
        ms = peers.time_interleaved(runners, args.rounds)
        best = min(ms["qs U8"], ms["qs U8 rr"])
        print(f"| {subject.label} | " + " | ".join(f"{ms[k]:.3f}" for k in runners) + f" | {ms['avx2'] / best:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
