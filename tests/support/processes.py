"""Helpers shared by the fixtures that run real processes: ports, logs and cleanup."""

from __future__ import annotations

import atexit
import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the caller may still lose a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:])


_setpriv = shutil.which("setpriv")
# The kernel sends the death signal when the *thread* that forked the child exits, not the
# process, and tests do start servers from short-lived threads (threading.Timer to bring a
# server back mid-query). So every child is forked from this one long-lived thread.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-spawner")


def spawn(argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[bytes]:
    """Popen(argv) whose child gets SIGKILL if the test process dies without cleaning up.

    atexit covers normal exits and Ctrl-C; this covers `kill -9` of pytest, so no stray
    mariadbd or proxyd outlives a run.
    """
    if _setpriv is not None:
        argv = [_setpriv, "--pdeathsig", "KILL", "--", *argv]

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, **popen_kw)

    return _spawner.submit(popen).result()


def stop_process(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> int | None:
    """Send `sig`, wait up to `timeout`; returns the exit code, or None if it had to be killed."""
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        return None


def kill_process(proc: subprocess.Popen[bytes]) -> int:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGKILL)
    return proc.wait()


class Closeable(Protocol):
    def close(self) -> None: ...


# Strong references on purpose: an object dropped without close() still owns a process.
_live: set[Closeable] = set()


def close_at_exit(obj: Closeable) -> None:
    """Register a safety net: obj.close() runs at interpreter exit if nobody closed it."""
    _live.add(obj)


def forget_at_exit(obj: Closeable) -> None:
    _live.discard(obj)


@atexit.register
def _close_leftovers() -> None:
    for obj in list(_live):
        with contextlib.suppress(Exception):
            obj.close()


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll predicate until it is true or `timeout` seconds pass; returns its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
