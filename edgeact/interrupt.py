"""Ctrl-C: every command ends within 2 seconds with one line, and keeps what finished.

The CLI's SIGINT handler raises KeyboardInterrupt as usual — so `finally` blocks remove temporary
files and `study` writes its report for the work done — and `edgeact.cli.main` turns it into one line.
That alone is not enough: Python runs a signal handler only between bytecodes of the main thread, so
an interrupt that lands in a long C call (matplotlib drawing, a runtime's kernel) waits for it, and
one raised inside a weakref or finalizer callback is only printed as "Exception ignored" (matplotlib's
WeakSet) while the command carries on. So the `edgeact` command also forks a tiny watchdog process
before it imports anything heavy: it receives the same Ctrl-C (the terminal signals the whole process
group; the handler forwards one sent to the command alone) and, if the command is still alive `GRACE`
seconds later, prints the line and kills it. It leaves with its parent. A second Ctrl-C exits at once.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time

GRACE = 1.2  # seconds from Ctrl-C to the forced exit: time to write a partial report, margin under 2 s
EXIT_CODE = 130  # 128 + SIGINT, what shells report for an interrupted command
_PRINTED = b"p"  # parent → watchdog: the line is out, do not print it again

_state = {"at": None, "notes": [], "printed": False, "started": False, "rearmed": False,
          "watchdog": None, "pipe": None, "previous": None}
_lock = threading.Lock()


def note(text: str) -> None:
    """Something the interrupt message should mention (e.g. where a partial report was written)."""
    _state["notes"].append(text)


def interrupted_message() -> str:
    return "interrupted (Ctrl-C)" + "".join(f"; {n}" for n in _state["notes"])


def say_once() -> None:
    """Print the one interrupt line (once per process)."""
    with _lock:
        if _state["printed"]:
            return
        _state["printed"] = True
    try:
        sys.stderr.write(f"edgeact: error: {interrupted_message()}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    if _state["pipe"] is not None:
        try:
            os.write(_state["pipe"], _PRINTED)
        except OSError:
            pass


_say_once = say_once


def track(path, done: bool = False) -> None:
    """Tell the watchdog about a temporary file or folder of this process (`done`: removed or renamed), so
    that it removes it if it has to kill the process. A no-op without a watchdog."""
    if _state["pipe"] is None:
        return
    msg = (b"-" if done else b"+") + os.fsencode(os.path.abspath(path)) + b"\n"
    if len(msg) < select.PIPE_BUF:  # one atomic write
        try:
            os.write(_state["pipe"], msg)
        except OSError:
            pass


def _thread_watchdog(started: float) -> None:
    """In-process fallback (no watchdog process, e.g. main() called from Python)."""
    time.sleep(max(0.0, started + GRACE - time.monotonic()))
    say_once()
    os._exit(EXIT_CODE)


def _handler(signum, frame):
    if not _state["started"] or (_state["at"] is not None and not _state["rearmed"]):
        say_once()  # before the command started (imports) or a second Ctrl-C: nothing to keep
        os._exit(EXIT_CODE)
    _state["rearmed"] = False
    if _state["at"] is None:
        _state["at"] = time.monotonic()
        child = _state["watchdog"]
        if child is not None:
            try:
                os.kill(child, signal.SIGUSR1)  # a SIGINT sent to this process alone: start the countdown
            except OSError:
                pass
        else:
            threading.Thread(target=_thread_watchdog, args=(_state["at"],), daemon=True,
                             name="edgeact-sigint").start()
    raise KeyboardInterrupt


def _unraisable(hook_args, _previous=sys.unraisablehook):
    """A KeyboardInterrupt swallowed inside a callback is raised again in the main thread, silently — from
    another thread, a moment later: raised while this hook still runs, it would be swallowed again, with a
    traceback (seen under load)."""
    if isinstance(hook_args.exc_value, KeyboardInterrupt):
        import _thread

        _state["rearmed"] = True
        timer = threading.Timer(0.01, _thread.interrupt_main)
        timer.daemon = True
        timer.start()
        return
    _previous(hook_args)


def install(started: bool = True) -> None:
    """Take over SIGINT for this process (main thread only; a no-op elsewhere). Before the command has
    started (`started=False`: while its imports load, which takes seconds) Ctrl-C simply exits with the
    line, as there is nothing to keep or clean."""
    if threading.current_thread() is not threading.main_thread():
        return
    _state["started"] = started
    previous = signal.signal(signal.SIGINT, _handler)
    if _state["previous"] is None:
        _state["previous"] = previous
    sys.unraisablehook = _unraisable


def uninstall() -> None:
    """Give SIGINT back (main() called in-process, e.g. from tests, must not change the caller's Ctrl-C)."""
    if _state["watchdog"] is not None or threading.current_thread() is not threading.main_thread():
        return  # the command's own process: keep it until exit
    if _state["previous"] is not None:
        signal.signal(signal.SIGINT, _state["previous"])
        _state["previous"] = None
    sys.unraisablehook = sys.__unraisablehook__
    _state.update(at=None, printed=False, started=False, rearmed=False, notes=[])


def _watch(parent: int, rfd: int) -> None:
    """The watchdog process: wait for Ctrl-C (or the parent's SIGUSR1) or the parent's exit (EOF)."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for sig in (signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, lambda *a: None)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    deadline, printed, buf, temps = None, False, b"", set()
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            ready, _, _ = select.select([rfd, wake_r], [], [], timeout)
        except InterruptedError:
            continue
        if rfd in ready:
            data = os.read(rfd, 64)
            if not data:
                return  # the parent is gone
            buf += data
            while True:
                head, sep, rest = buf.partition(b"\n")
                if head.startswith(_PRINTED):
                    printed, buf = True, buf[1:]
                    continue
                if not sep:
                    break
                buf = rest
                (temps.add if head[:1] == b"+" else temps.discard)(head[1:])
        if wake_r in ready:
            os.read(wake_r, 64)
            if deadline is None:
                deadline = time.monotonic() + GRACE
        if deadline is not None and time.monotonic() >= deadline:
            try:
                os.kill(parent, 0)
            except OSError:
                return
            if not printed:
                try:
                    os.write(2, f"edgeact: error: {interrupted_message()}\n".encode())
                except OSError:
                    pass
            try:
                os.kill(parent, signal.SIGKILL)
            except OSError:
                pass
            time.sleep(0.05)  # let the kill land before removing what it was writing
            for t in temps:
                _remove(t)
            return


def finish(code: int) -> None:
    """End the `edgeact` command now: exit handlers run and output is flushed as usual, but Python's
    final teardown of torch & co. is skipped — it takes seconds on a busy machine, and during it
    Ctrl-C would fall back to a bare signal death. A no-op unless this process is the command."""
    if _state["watchdog"] is None:
        return
    import atexit

    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _remove(path: bytes) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            for root, dirs, files in os.walk(path, topdown=False):
                for f in files:
                    os.unlink(os.path.join(root, f))
                for d in dirs:
                    os.rmdir(os.path.join(root, d))
            os.rmdir(path)
        else:
            os.unlink(path)
    except OSError:
        pass


def _start_watchdog() -> None:
    rfd, wfd = os.pipe()
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError:
        os.close(rfd)
        os.close(wfd)
        return  # no process to spare: the in-process fallback takes over
    if pid == 0:  # the watchdog
        try:
            os.close(wfd)
            for fd in (0, 1):
                try:
                    os.close(fd)  # hold no pipe of the caller open except stderr
                except OSError:
                    pass
            _watch(parent, rfd)
        finally:
            os._exit(0)
    os.close(rfd)
    _state["watchdog"], _state["pipe"] = pid, wfd
    threading.Thread(target=_reap, args=(pid,), daemon=True, name="edgeact-watchdog-reaper").start()


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def install_for_command_line() -> None:
    """Called at the top of `import edgeact`: only when this process is the `edgeact` command (the
    console script), so that a Ctrl-C while torch loads ends with one line too, and the watchdog is
    forked while the process is still small. Library users keep Python's own handling."""
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if argv0 != "edgeact" or _state["started"] or _state["watchdog"] is not None:
        return
    if threading.current_thread() is not threading.main_thread() or not hasattr(os, "fork"):
        return
    install(started=False)
    _start_watchdog()
