"""systemd's readiness protocol: tell the service manager we are ready, reloading, stopping.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET``, the address of an AF_UNIX datagram
socket (a path, or an abstract name written with a leading ``@``). Each message is one
datagram of newline-separated ``KEY=VALUE`` assignments: ``READY=1``, ``RELOADING=1`` (with
``MONOTONIC_USEC``), ``STOPPING=1``, ``STATUS=free text``, ``WATCHDOG=1``. See sd_notify(3).

Outside systemd the variable is unset and every call does nothing. A notification that
cannot be delivered is logged once and otherwise ignored: the service manager going away
must never take the proxy down with it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["Notifier"]

log = logging.getLogger("proxyd.sdnotify")


def _socket_address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        # Abstract namespace: the name starts with a NUL byte instead of the @.
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock: and anything else are not for us


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Notifier:
    """Sends sd_notify messages to ``address``; a Notifier without address does nothing."""

    def __init__(self, address: str | None, watchdog_usec: int = 0) -> None:
        self.address = address
        self._target = _socket_address(address) if address else None
        if address and self._target is None:
            log.warning("NOTIFY_SOCKET=%s is not an AF_UNIX socket; not notifying systemd", address)
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        watchdog = 0
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process meant to ping; a child that inherited it must not.
        if usec.isdigit() and (not pid or pid == str(os.getpid())):
            watchdog = int(usec)
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog)

    @property
    def enabled(self) -> bool:
        return self._target is not None

    def notify(self, **fields: object) -> bool:
        """Send one message; keys are upper-cased (``ready=1`` sends ``READY=1``)."""
        if self._target is None:
            return False
        lines = [f"{key.upper()}={_one_line(str(value))}" for key, value in fields.items()]
        message = "\n".join(lines).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # A full or gone receiver must not stall the event loop.
                self._sock.setblocking(False)
            self._sock.sendto(message, self._target)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", self.address, exc.strerror or exc)
                self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify(ready=1, status=status) if status else self.notify(ready=1)

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd (Type=notify-reload, v253+) tell this reload from
        # an earlier one; older versions ignore it.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(reloading=1, monotonic_usec=usec, status="reloading configuration")

    def stopping(self, status: str = "") -> bool:
        return self.notify(stopping=1, status=status) if status else self.notify(stopping=1)

    def status(self, text: str) -> bool:
        return self.notify(status=text)

    def watchdog(self) -> bool:
        return self.notify(watchdog=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
