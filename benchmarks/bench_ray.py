#!/usr/bin/env python3
"""Speed-up of the study on Ray over the serial run, on this machine, and a simulation for N machines.

One process runs the same study twice, caches off (both train, export, check and time everything):
serially, then as Ray tasks (embedded local Ray, one task per core). The serial run also records how
long each cell took and which cells it waited for; a list-scheduling simulation replays those cells on
N machines × C cores (a free worker takes the first ready task, as Ray's scheduler does for equal one-CPU tasks), plus the
fixed start-up cost measured here (Ray start and worker imports). On a shared machine wall times follow
the load; the load average is printed before and after each run.

    python benchmarks/bench_ray.py                        # mlp on clusters, 4 activations × 2 seeds
    python benchmarks/bench_ray.py --write benchmarks/RESULTS-ray.md
"""
from __future__ import annotations

import argparse
import heapq
import os
import tempfile
import time
from pathlib import Path


class TimingExecutor:
    """The serial executor, recording each task's duration and the tasks it depends on."""

    name, workers = "serial (timed)", 1

    def __init__(self):
        from edgeact.executor import SerialExecutor

        self._inner = SerialExecutor()
        self.tasks: list[dict] = []

    def submit(self, fn, *args, **kwargs):
        deps = [a.index for a in list(args) + list(kwargs.values()) if isinstance(a, _Timed)]
        record = {"name": fn.__name__, "deps": deps, "seconds": 0.0}
        self.tasks.append(record)

        def timed(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                record["seconds"] = time.perf_counter() - start

        plain = [a.future if isinstance(a, _Timed) else a for a in args]
        plain_kw = {k: (v.future if isinstance(v, _Timed) else v) for k, v in kwargs.items()}
        return _Timed(self._inner.submit(timed, *plain, **plain_kw), len(self.tasks) - 1)

    def gather(self, futures, progress=None, results=None):
        return self._inner.gather([f.future for f in futures], progress, results)

    def shutdown(self):
        pass


class _Timed:
    def __init__(self, future, index):
        self.future, self.index = future, index


def simulate(tasks: list[dict], workers: int, overhead_s: float = 0.0) -> float:
    """Makespan of `tasks` on `workers` equal workers: a free worker takes the first task (in submission
    order) whose dependencies have finished — what Ray's scheduler does with equal one-CPU tasks."""
    dependents: list[list[int]] = [[] for _ in tasks]
    waiting = [len(t["deps"]) for t in tasks]
    for i, t in enumerate(tasks):
        for d in t["deps"]:
            dependents[d].append(i)
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int]] = []
    now, free, done = 0.0, workers, 0
    while done < len(tasks):
        while free and ready:
            i = heapq.heappop(ready)
            heapq.heappush(running, (now + tasks[i]["seconds"], i))
            free -= 1
        now, i = heapq.heappop(running)
        free, done = free + 1, done + 1
        for j in dependents[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    return overhead_s + now


def _warm(i: int) -> int:
    import edgeact.study  # noqa: F401  (what every cell imports first)

    return i


def _replicate(tasks: list[dict], copies: int) -> list[dict]:
    out = []
    for c in range(copies):
        base = c * len(tasks)
        out += [{"name": t["name"], "seconds": t["seconds"], "deps": [d + base for d in t["deps"]]} for t in tasks]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--task", default="clusters")
    parser.add_argument("--activations", default="relu,hard_swish,mish,selu")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--targets", default="host,qemu-aarch64")
    parser.add_argument("--write", type=Path, help="also write the Markdown report to this file")
    args = parser.parse_args()

    from edgeact.executor import RayExecutor
    from edgeact.markdown import markdown_table
    from edgeact.study import run_study

    cpus = os.cpu_count() or 1
    kw = dict(model=args.model, activations=args.activations.split(","), task=args.task, seeds=args.seeds,
              targets=args.targets.split(","), qat_epochs=2, runs=10, emulated_runs=1, progress=False, cache=False)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        timing = TimingExecutor()
        load = os.getloadavg()[0]
        start = time.perf_counter()
        serial = run_study(out_dir=Path(tmp) / "serial", executor=timing, **kw)
        runs["serial"] = (time.perf_counter() - start, load, os.getloadavg()[0])
        load = os.getloadavg()[0]
        start = time.perf_counter()
        ray_ex = RayExecutor(num_cpus=cpus)
        # Start-up, measured on its own: Ray itself, then one task per worker that imports the study code.
        ray_ex.gather([ray_ex.submit(_warm, i) for i in range(cpus)])
        startup = time.perf_counter() - start
        ray_run = run_study(out_dir=Path(tmp) / "ray", executor=ray_ex, **kw)
        ray_ex.shutdown()
        runs["ray"] = (time.perf_counter() - start, load, os.getloadavg()[0])
    same = [r.qat_accuracy for r in serial.rows] == [r.qat_accuracy for r in ray_run.rows]
    cells = len(timing.tasks)
    busy = sum(t["seconds"] for t in timing.tasks)
    overhead = startup
    rows = [{"run": name, "wall s": round(w, 1), "load before": round(lb, 2), "load after": round(la, 2),
             "speed-up": round(runs["serial"][0] / w, 2)} for name, (w, lb, la) in runs.items()]
    text = (f"Study: {args.model} on {args.task}, activations {args.activations}, {args.seeds} seeds, targets "
            f"{args.targets}, both backends, caches off; {cells} cells, {busy:.1f} s of cell time in the serial run; "
            f"{cpus} cores; same accuracies: {same}.\n\n" + markdown_table(rows, list(rows[0])))
    text += (f"\nRay start-up (ray.init + one task per worker importing the study code), inside the Ray run's wall time: "
             f"{startup:.1f} s. Simulated with the serial run's cell times on {cpus} workers, without start-up: "
             f"{simulate(timing.tasks, cpus):.1f} s.\n")
    sim_rows = []
    for copies, what in ((1, "this sweep"), (10, "10× the cells"),
                         (100, "100× the cells")):
        tasks = _replicate(timing.tasks, copies)
        total = busy * copies
        for machines in (1, 2, 4, 8, 16, 64):
            w = machines * 2
            t = simulate(tasks, w, overhead)
            sim_rows.append({"sweep": what, "machines (2 cores)": machines, "predicted wall s": round(t, 1),
                             "speed-up vs serial": round(total / t, 2), "efficiency": round(total / t / w, 2)})
    text += (f"\nSimulation (list scheduling of the measured cells, dependencies kept, plus the {overhead:.1f} s start-up; "
             "the sweep copied to show larger ones):\n\n" + markdown_table(sim_rows, list(sim_rows[0])))
    print(text)
    if args.write:
        from edgeact.fileio import atomic_write

        atomic_write(args.write, "# Sweeps on Ray\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
