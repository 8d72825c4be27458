"""Ctrl-C: every command ends within 2 seconds with one line, and keeps what finished.

`install()` (called by the CLI) replaces Python's SIGINT handling with one that raises KeyboardInterrupt
as usual — so `finally` blocks remove temporary files and `study` writes its report for the work done —
but also starts a watchdog: if the process has not ended `GRACE` seconds later (the interrupt landed in
a weakref or finalizer callback, where Python only prints "Exception ignored" and carries on, as in
matplotlib's WeakSet), it prints the one line and exits. A second Ctrl-C exits at once.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

GRACE = 1.6  # seconds between Ctrl-C and the forced exit; leaves margin under the 2 s promise
EXIT_CODE = 130  # 128 + SIGINT, what shells report for an interrupted command

_state = {"at": None, "notes": [], "printed": False}
_lock = threading.Lock()


def note(text: str) -> None:
    """Something the interrupt message should mention (e.g. where a partial report was written)."""
    _state["notes"].append(text)


def interrupted_message() -> str:
    return "interrupted (Ctrl-C)" + "".join(f"; {n}" for n in _state["notes"])


def _say_once() -> None:
    with _lock:
        if _state["printed"]:
            return
        _state["printed"] = True
    try:
        sys.stderr.write(f"edgeact: error: {interrupted_message()}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _watchdog(started: float) -> None:
    time.sleep(max(0.0, started + GRACE - time.monotonic()))
    _say_once()
    os._exit(EXIT_CODE)


def _handler(signum, frame):
    if _state["at"] is not None and not _state.get("rearmed"):
        _say_once()
        os._exit(EXIT_CODE)  # a second Ctrl-C: the user means it
    _state["rearmed"] = False
    if _state["at"] is None:
        _state["at"] = time.monotonic()
        threading.Thread(target=_watchdog, args=(_state["at"],), daemon=True, name="edgeact-sigint").start()
    raise KeyboardInterrupt


def _unraisable(hook_args, _previous=sys.unraisablehook):
    """A KeyboardInterrupt swallowed inside a callback is raised again in the main thread, silently."""
    if isinstance(hook_args.exc_value, KeyboardInterrupt):
        import _thread

        _state["rearmed"] = True
        _thread.interrupt_main()
        return
    _previous(hook_args)


def install() -> None:
    """Take over SIGINT for this process (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _handler)
    sys.unraisablehook = _unraisable


def printed() -> bool:
    """True once the interrupt line went out (the CLI then prints nothing more)."""
    return bool(_state["printed"])
