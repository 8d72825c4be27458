#!/usr/bin/env python3
"""Speed-up of the study on Ray over the serial run, on this machine, and a simulation for N machines.

One process runs the same study serially and as Ray tasks (embedded local Ray, one task per core), caches
off (both train, export, check and time everything), for --rounds rounds, alternating which goes first; the
speed-up is the median of the rounds' ratios. Before and after, it measures what the machine itself gives
that many processes (the same cells alone, then one copy per core at once): the ceiling any scheduler
can reach here. The first serial run also records how long each cell took and which cells it waited
for; a list-scheduling simulation replays those cells on N machines × C cores (a free worker takes the
first ready task, as Ray's scheduler does for equal one-CPU tasks), plus the fixed start-up cost
measured here (Ray start and worker imports). On a shared machine wall times follow the load; the
load average is printed before and after each run.

    python benchmarks/bench_ray.py                        # mlp on clusters, 4 activations × 2 seeds
    python benchmarks/bench_ray.py --write benchmarks/RESULTS-ray.md
"""
from __future__ import annotations

import argparse
import heapq
import os
import statistics
import subprocess
import sys
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


CEILING_WORK = ("import time, torch; torch.set_num_threads(1); from edgeact.study import train_cell; "
                "train_cell('mlp', 'relu', 'clusters', 0, 1, None, False); t = time.perf_counter(); "
                "[train_cell('mlp', a, 'clusters', s, 2, None, False) for a in ('relu', 'mish') for s in (1, 2)]; "
                "print(time.perf_counter() - t)")


def parallel_ceiling(cpus: int) -> tuple[float, float, float]:
    """What this machine gives `cpus` independent processes: the same CPU-bound work (four of the study's train
    cells, after a warm-up cell) alone, then `cpus` copies at once — (alone s, slowest copy s, ceiling =
    cpus × alone / slowest). Shared caches, memory bandwidth and a host's other guests make it < cpus."""
    def run(copies: int) -> float:
        procs = [subprocess.Popen([sys.executable, "-c", CEILING_WORK], stdout=subprocess.PIPE, text=True,
                                  stderr=subprocess.DEVNULL) for _ in range(copies)]
        return max(float(p.communicate()[0].split()[-1]) for p in procs)

    alone, together = run(1), run(cpus)
    return alone, together, cpus * alone / together


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--task", default="clusters")
    parser.add_argument("--activations", default="relu,hard_swish,mish,selu")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--targets", default="host,qemu-aarch64")
    parser.add_argument("--rounds", type=int, default=2,
                        help="serial and Ray runs, alternating which goes first (default 2)")
    parser.add_argument("--write", type=Path, help="also write the Markdown report to this file")
    args = parser.parse_args()

    from edgeact.executor import RayExecutor
    from edgeact.markdown import markdown_table
    from edgeact.study import run_study

    cpus = os.cpu_count() or 1
    kw = dict(model=args.model, activations=args.activations.split(","), task=args.task, seeds=args.seeds,
              targets=args.targets.split(","), qat_epochs=2, runs=10, emulated_runs=1, progress=False, cache=False)
    ceiling_before = parallel_ceiling(cpus)
    rows, speedups, startups, timings, same = [], [], [], None, True
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            walls, tables = {}, {}
            for name in (("serial", "ray") if r % 2 == 0 else ("ray", "serial")):
                load = os.getloadavg()[0]
                start = time.perf_counter()
                if name == "serial":
                    ex = TimingExecutor()
                else:
                    ex = RayExecutor(num_cpus=cpus)
                    # Start-up, measured on its own: Ray itself, then one task per worker that imports the study code.
                    ex.gather([ex.submit(_warm, i) for i in range(cpus)])
                    startups.append(time.perf_counter() - start)
                tables[name] = run_study(out_dir=Path(tmp) / f"{name}{r}", executor=ex, **kw)
                ex.shutdown()
                walls[name] = time.perf_counter() - start
                if name == "serial" and timings is None:
                    timings = ex.tasks
                rows.append({"round": r + 1, "run": name, "wall s": round(walls[name], 1), "load before": round(load, 2),
                             "load after": round(os.getloadavg()[0], 2)})
            speedups.append(walls["serial"] / walls["ray"])
            rows[-1]["speed-up (round)"] = rows[-2]["speed-up (round)"] = round(speedups[-1], 2)
            same &= [x.qat_accuracy for x in tables["serial"].rows] == [x.qat_accuracy for x in tables["ray"].rows]
    ceiling_after = parallel_ceiling(cpus)
    cells = len(timings)
    busy = sum(t["seconds"] for t in timings)
    overhead = statistics.median(startups)
    median = statistics.median(speedups)
    text = (f"Study: {args.model} on {args.task}, activations {args.activations}, {args.seeds} seeds, targets "
            f"{args.targets}, both backends, caches off; {cells} cells, {busy:.1f} s of cell time in the first serial "
            f"run; {cpus} cores; same accuracies in every round: {same}.\n\n" + markdown_table(rows, list(rows[0]))
            + f"\n**Speed-up: {median:.2f}× (median of {len(speedups)} rounds: "
            + ", ".join(f"{s:.2f}" for s in speedups) + ")**. ")
    text += ("What this machine gives " + f"{cpus} processes (the same train cells alone, then {cpus} copies at once): "
             + "; ".join(f"{c:.2f}× ({a:.1f} s alone, {t:.1f} s together) {when}"
                         for (a, t, c), when in ((ceiling_before, "before"), (ceiling_after, "after")))
             + f" — so Ray reached {median / max(ceiling_before[2], ceiling_after[2]):.0%}–"
             + f"{median / min(ceiling_before[2], ceiling_after[2]):.0%} of the machine's own ceiling.\n")
    text += (f"\nRay start-up (ray.init + one task per worker importing the study code), inside the Ray run's wall time: "
             f"{overhead:.1f} s (median). Simulated with the serial run's cell times on {cpus} workers, without start-up: "
             f"{simulate(timings, cpus):.1f} s.\n")
    sim_rows = []
    for copies, what in ((1, "this sweep"), (10, "10× the cells"),
                         (100, "100× the cells")):
        tasks = _replicate(timings, copies)
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
