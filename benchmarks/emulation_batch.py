#!/usr/bin/env python3
"""Guest side of bench_emulation.py: time (and mark for the instruction counter) many models in one process.

One QEMU process per CPU model instead of one per (model, CPU): starting the ARM Python and importing a
runtime under emulation takes seconds, running one of these models takes milliseconds. The model
loading, input matching and marking are edgeact's own runner (`edgeact/targets/runner.py`, imported
from the directory given as the first argument), so a count here is the count `edgeact bench` reports
for the same model, up to the allocator state a previous model leaves behind (a few hundred
instructions; the benchmark measures it).

    python emulation_batch.py RUNNER_DIR JOB.json

JOB.json: {"warmup": W, "runs": R, "mark": bool, "models": [{"model", "backend", "inputs", "out"}, ...]}.
Writes JOB.json's "result" path: per model the runtime, times_ns and how many marked inferences it made,
in order, so the plugin's counts can be split per model. Imports only the standard library, NumPy and
the runtimes, like the runner.
"""
import json
import os
import sys
import time

import numpy as np


def main(argv):
    sys.path.insert(0, argv[1])
    import runner  # edgeact/targets/runner.py: OrtModel, LiteModel, prepare_inputs, mark

    with open(argv[2]) as fh:
        job = json.load(fh)
    results = []
    for spec in job["models"]:
        cls = runner.OrtModel if spec["backend"] == "onnxruntime" else runner.LiteModel
        t0 = time.perf_counter()
        model = cls(spec["model"], 1)
        load_s = time.perf_counter() - t0
        with np.load(spec["inputs"]) as z:
            data = {k: z[k] for k in z.files}
        model.set_inputs(runner.prepare_inputs(model, data))
        for _ in range(job["warmup"]):
            model.invoke()
        times = []
        for _ in range(job["runs"]):
            if job["mark"]:
                runner.mark(runner.MARK_START)
            t = time.perf_counter_ns()
            model.invoke()
            t = time.perf_counter_ns() - t
            if job["mark"]:
                runner.mark(runner.MARK_END)
            times.append(t)
        outs = model.get_outputs()
        np.savez(spec["out"], **{"output_%d" % i: o for i, o in enumerate(outs)})
        results.append({"runtime": model.runtime, "times_ns": times, "marked": job["runs"] if job["mark"] else 0,
                        "load_s": load_s, "outputs": model.outputs})
        print("@@progress", 1, len(job["models"]), flush=True)
    tmp = job["result"] + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(results, fh)
    os.replace(tmp, job["result"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
