"""Where independent pieces of work run: one after another here, or as Ray tasks (local or a cluster).

One code path for both: a caller submits functions and gets futures; a future may be passed as an
argument to a later submission (Ray resolves it where the task runs, the serial executor already has
the value), and `gather` returns the values in submission order. Ray is optional (`edgeact[scale]`).

    ex = get_executor("auto")          # Ray if installed (embedded, num_cpus = this machine), else serial
    a = ex.submit(train, "relu")
    b = ex.submit(export, a, "onnxruntime")   # runs when `a` is ready
    values = ex.gather([a, b])
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from edgeact.errors import EdgeActError

RAY_HINT = "install the optional extra: pip install 'edgeact[scale]' (or pip install ray)"


class _Task:
    """A serial 'future': runs when its value is first needed (so `gather` can show progress)."""

    __slots__ = ("fn", "args", "kwargs", "done", "_value")

    def __init__(self, fn, args, kwargs):
        self.fn, self.args, self.kwargs, self.done = fn, args, kwargs, False

    @property
    def value(self):
        if not self.done:
            args = [a.value if isinstance(a, _Task) else a for a in self.args]
            kwargs = {k: (v.value if isinstance(v, _Task) else v) for k, v in self.kwargs.items()}
            self._value, self.done = self.fn(*args, **kwargs), True
            self.fn = self.args = self.kwargs = None
        return self._value


class SerialExecutor:
    """Runs the submissions one after another, in this process, in submission order."""

    name = "serial"
    workers = 1

    def submit(self, fn: Callable, *args, **kwargs) -> _Task:
        return _Task(fn, args, kwargs)

    def gather(self, futures: Sequence[_Task], progress=None, results: dict | None = None) -> list:
        """The values in order; `results` (index → value) fills as each finishes, so a caller interrupted
        half-way still has what is done."""
        results = {} if results is None else results
        for i, f in enumerate(futures):
            results[i] = f.value
            if progress is not None:
                progress.update(1)
        return [results[i] for i in range(len(futures))]

    def shutdown(self) -> None:
        pass


class RayExecutor:
    """Each submission is a Ray task (one CPU, its own worker process). `address=None` starts Ray embedded
    in this process (no dashboard, nothing listening beyond this machine); an address attaches to a cluster."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        try:
            import ray
        except ImportError:
            raise EdgeActError(f"Ray is not installed; {RAY_HINT}") from None
        self._ray = ray
        self._remote: dict[Callable, Any] = {}
        self._started = False
        if not ray.is_initialized():
            kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if address:
                _check_reachable(address)
                kw["address"] = address
            else:
                kw.update(num_cpus=num_cpus or os.cpu_count() or 1, address="local")
                # The workers import this package from the same place as the driver (an editable install).
            try:
                ray.init(**kw)
            except ConnectionError as exc:
                raise EdgeActError(f"cannot reach the Ray cluster at {address!r} ({exc}); start it with "
                                   "`ray start --head` there, or drop --address / RAY_ADDRESS to run locally") from None
            self._started = True
        self.workers = int(ray.cluster_resources().get("CPU", 1))

    def submit(self, fn: Callable, *args, **kwargs):
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(num_cpus=1, max_retries=0)(fn)
        return remote.remote(*args, **kwargs)

    def gather(self, futures: Sequence, progress=None, results: dict | None = None) -> list:
        """As SerialExecutor.gather: values in order, `results` filled as tasks finish (in any order)."""
        ray = self._ray
        results = {} if results is None else results
        index = {ref: i for i, ref in enumerate(futures)}
        pending = list(futures)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    results[index[ref]] = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
                    if isinstance(cause, EdgeActError):
                        raise type(cause)(*cause.args) from None
                    raise
            if progress is not None:
                progress.update(len(done))
        return [results[i] for i in range(len(futures))]

    def shutdown(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, naming the address, instead of Ray retrying an unreachable cluster for minutes."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return  # 'auto' or a form Ray resolves itself
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise EdgeActError(f"cannot reach the Ray cluster at {address!r} ({exc.strerror or exc}); start it with "
                           "`ray start --head` there, or drop --address / RAY_ADDRESS to run locally") from None


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def get_executor(kind: str = "auto", address: str | None = None, num_cpus: int | None = None):
    """'serial', 'ray' or 'auto' (Ray when it is installed and there is more than one CPU or an address).

    The address comes from `address`, else $RAY_ADDRESS; none means an embedded local Ray.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    if kind not in ("auto", "serial", "ray"):
        raise EdgeActError(f"unknown executor {kind!r}; choose auto, serial or ray")
    if kind == "serial":
        return SerialExecutor()
    if kind == "auto" and (not ray_available() or (address is None and (num_cpus or os.cpu_count() or 1) < 2)):
        return SerialExecutor()
    return RayExecutor(address=address, num_cpus=num_cpus)
