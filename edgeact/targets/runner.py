#!/usr/bin/env python3
"""edgeact's on-target runner: load one model, run it, write outputs (.npz) and timings (.json).

It runs wherever the model runs (this CPU, an ARM root under QEMU, a board over SSH), so it imports only the
standard library, NumPy and the runtime: onnxruntime, ai_edge_litert or tflite_runtime. Never edgeact.
Exit codes: 0 ok, 2 bad arguments/inputs, 3 runtime missing, 4 model refused by the runtime.
"""
import argparse
import json
import os
import platform
import resource
import sys
import time

import numpy as np

MARK_START = -31337  # close() on these descriptors marks an inference for edgeact's QEMU plugin
MARK_END = -31338


def fail(code, msg):
    sys.stderr.write("edgeact-runner: error: %s\n" % msg)
    sys.exit(code)


def mark(fd):
    try:
        os.close(fd)
    except OSError:
        pass


class OrtModel:
    def __init__(self, path, threads, config=()):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            fail(3, "onnxruntime is not installed on this target (%s)" % exc)
        self.runtime = "onnxruntime " + ort.__version__
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        for key, value in config:  # session config entries the file's backend needs (edgeact sets them)
            so.add_session_config_entry(key, value)
        try:
            with open(path, "rb") as f:  # bytes, not a path: the guest must not see this folder's name
                self.sess = ort.InferenceSession(f.read(), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # the runtime's own error says what is wrong with the file
            fail(4, "onnxruntime refused the model: %s" % str(exc).strip().splitlines()[0][:400])
        types = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
                 "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(float16)": "float16"}
        self.inputs = [{"name": i.name, "dtype": types.get(i.type, i.type), "shape": i.shape,
                        "quant": None} for i in self.sess.get_inputs()]
        self.outputs = [{"name": o.name, "dtype": types.get(o.type, o.type), "quant": None}
                        for o in self.sess.get_outputs()]
        self.feed = None

    def set_inputs(self, arrays):
        self.feed = dict(zip([i["name"] for i in self.inputs], arrays))

    def invoke(self):
        self.result = self.sess.run(None, self.feed)

    def get_outputs(self):
        return [np.asarray(r) for r in self.result]


class LiteModel:
    def __init__(self, path, threads):
        try:
            from ai_edge_litert.interpreter import Interpreter
            import importlib.metadata as md
            self.runtime = "ai-edge-litert " + md.version("ai-edge-litert")
        except ImportError:
            try:
                from tflite_runtime.interpreter import Interpreter
                import tflite_runtime
                self.runtime = "tflite-runtime " + getattr(tflite_runtime, "__version__", "?")
            except ImportError as exc:
                fail(3, "neither ai_edge_litert nor tflite_runtime is installed on this target (%s)" % exc)
        try:
            with open(path, "rb") as f:  # bytes, not a path, as for onnxruntime
                self._model = f.read()  # LiteRT reads the buffer in place: keep it alive
            self.it = Interpreter(model_content=self._model, num_threads=threads)
            self.it.allocate_tensors()
        except Exception as exc:
            fail(4, "LiteRT refused the model: %s" % str(exc).strip().splitlines()[0][:400])

        def q(d):
            s, z = d.get("quantization", (0.0, 0))
            return [float(s), int(z)] if s else None

        self.in_det = self.it.get_input_details()
        self.out_det = self.it.get_output_details()
        self.inputs = [{"name": d["name"], "dtype": np.dtype(d["dtype"]).name,
                        "shape": [int(x) for x in d["shape"]], "quant": q(d)} for d in self.in_det]
        self.outputs = [{"name": d["name"], "dtype": np.dtype(d["dtype"]).name, "quant": q(d)}
                        for d in self.out_det]

    def set_inputs(self, arrays):
        for d, a in zip(self.in_det, arrays):
            self.it.set_tensor(d["index"], a)

    def invoke(self):
        self.it.invoke()

    def get_outputs(self):
        return [np.array(self.it.get_tensor(d["index"])) for d in self.out_det]


def prepare_inputs(model, data):
    """Match the .npz arrays to the model's inputs by name (or by order) and dtype."""
    names = [i["name"] for i in model.inputs]
    keys = list(data.keys())
    if all(n in data for n in names):
        arrays = [data[n] for n in names]
    elif len(keys) == len(names):
        arrays = [data[k] for k in keys]
    else:
        fail(2, "the model has inputs %s but the data has arrays %s" % (names, keys))
    out = []
    for spec, a in zip(model.inputs, arrays):
        want = np.dtype(spec["dtype"])
        a = np.asarray(a)
        if a.dtype != want:
            if want.kind in "iu" and a.dtype.kind == "f":
                if not spec["quant"]:
                    fail(2, "input %r is %s and has no quantization parameters: pass %s data"
                         % (spec["name"], want.name, want.name))
                s, z = spec["quant"]
                info = np.iinfo(want)
                a = np.clip(np.round(a.astype(np.float64) / s) + z, info.min, info.max).astype(want)
            elif want.kind == "f" and a.dtype.kind in "fiu":
                a = a.astype(want)
            else:
                fail(2, "input %r wants %s, got %s" % (spec["name"], want.name, a.dtype.name))
        out.append(np.ascontiguousarray(a))
    return out


def peak_rss_kb():
    """Peak resident memory of this process. VmHWM, because ru_maxrss survives exec() and would report the
    parent's peak when the parent was larger."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--backend", choices=["onnxruntime", "litert"], required=True)
    ap.add_argument("--inputs", required=True, help=".npz with one array per model input")
    ap.add_argument("--out", required=True, help=".npz to write the outputs to")
    ap.add_argument("--result", required=True, help=".json to write timings and details to")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--mark", action="store_true", help="mark each timed inference for the QEMU plugin")
    ap.add_argument("--progress", action="store_true", help="print progress lines on stdout")
    ap.add_argument("--session-option", action="append", default=[], metavar="KEY=VALUE",
                    help="onnxruntime session config entry (repeatable)")
    a = ap.parse_args(argv)
    if not os.path.isfile(a.model):
        fail(2, "model file %s not found on the target" % a.model)
    t0 = time.perf_counter()
    config = []
    for item in a.session_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(2, "--session-option needs KEY=VALUE, got %r" % item)
        config.append((key, value))
    if a.backend == "onnxruntime":
        model = OrtModel(a.model, a.threads, config)
    else:
        model = LiteModel(a.model, a.threads)
    load_s = time.perf_counter() - t0
    with np.load(a.inputs) as z:
        data = {k: z[k] for k in z.files}
    try:
        model.set_inputs(prepare_inputs(model, data))
        model.invoke()  # a first inference outside the timed loop: shape or type errors surface here
    except SystemExit:
        raise
    except Exception as exc:
        fail(2, "the model does not accept these inputs (%s): %s. Check shapes and layout (ONNX models "
             "are usually NCHW, TFLite NHWC)" % (
            ", ".join("%s %s" % (k, tuple(v.shape)) for k, v in data.items()),
            str(exc).strip().splitlines()[0][:300]))
    total = a.warmup + a.runs
    for _ in range(a.warmup):
        model.invoke()
        if a.progress:
            print("@@progress", 1, total, flush=True)
    times = []
    for _ in range(a.runs):
        if a.mark:
            mark(MARK_START)
        t = time.perf_counter_ns()
        model.invoke()
        t = time.perf_counter_ns() - t
        if a.mark:
            mark(MARK_END)
        times.append(t)
        if a.progress:
            print("@@progress", 1, total, flush=True)
    outs = model.get_outputs()
    tmp = a.out + ".tmp.npz"
    np.savez(tmp, **{"output_%d" % i: o for i, o in enumerate(outs)})
    os.replace(tmp, a.out)
    res = {
        "runtime": model.runtime,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": a.threads,
        "load_s": load_s,
        "times_ns": times,
        "maxrss_kb": peak_rss_kb(),
        "inputs": model.inputs,
        "outputs": model.outputs,
    }
    tmp = a.result + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(res, fh)
    os.replace(tmp, a.result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
