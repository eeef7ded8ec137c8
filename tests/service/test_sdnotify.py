"""sd_notify: proxyd tells systemd READY/RELOADING/STOPPING/STATUS over a real socket."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from proxyd.sdnotify import Notifier
from tests.service.conftest import NotifySocket, Service
from tests.support.processes import free_port, port_accepts


def test_notifier_sends_datagrams_to_a_path_socket(notify_socket: NotifySocket) -> None:
    notifier = Notifier.from_environment()
    assert notifier.enabled
    assert notifier.ready("2 clients\nand a newline")
    assert notify_socket.receive(1, os.getpid()) == {
        "READY": "1",
        "STATUS": "2 clients and a newline",
    }
    assert notifier.reloading()
    message = notify_socket.receive(1, os.getpid())
    assert message is not None and message["RELOADING"] == "1"
    assert int(message["MONOTONIC_USEC"]) == pytest.approx(time.monotonic() * 1e6, rel=0.01)
    assert notifier.stopping()
    assert notify_socket.receive(1, os.getpid()) == {"STOPPING": "1"}
    notifier.close()


def test_notifier_reaches_an_abstract_socket() -> None:
    name = f"proxyd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(b"\0" + name.encode())
        receiver.settimeout(1)
        notifier = Notifier(f"@{name}")
        assert notifier.status("hello")
        assert receiver.recv(1024) == b"STATUS=hello"
        notifier.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready()


def test_a_missing_socket_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"))
    with caplog.at_level(logging.WARNING, "proxyd.sdnotify"):
        assert not notifier.ready()
        assert not notifier.status("x")
    assert len(caplog.records) == 1
    notifier.close()


def test_watchdog_only_for_the_process_it_names() -> None:
    mine = Notifier.from_environment(
        {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert mine.watchdog_usec == 30_000_000
    inherited = Notifier.from_environment(
        {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}
    )
    assert inherited.watchdog_usec == 0


def test_proxyd_reports_ready_reloading_and_stopping(
    service: Callable[..., Service], notify_socket: NotifySocket
) -> None:
    svc = service({"pool": {"min_idle": 2}})
    pid = svc.proc.pid
    ready = notify_socket.wait_for("READY", pid=pid)
    # READY=1 means listening with warm pools.
    assert port_accepts(svc.proc.host, svc.proc.port)
    assert "clients" in ready["STATUS"] and "2 idle" in ready["STATUS"]

    svc.proc.send_signal(signal.SIGHUP)
    reloading = notify_socket.wait_for("RELOADING", pid=pid)
    assert "MONOTONIC_USEC" in reloading
    notify_socket.wait_for("READY", pid=pid)

    svc.proc.send_signal(signal.SIGTERM)
    stopping = notify_socket.wait_for("STOPPING", pid=pid)
    assert stopping["STATUS"].startswith("stopping")
    assert svc.proc.wait(timeout=10) == 0


def test_ready_even_when_the_backend_is_down(
    service: Callable[..., Service], notify_socket: NotifySocket
) -> None:
    # systemd would otherwise kill and restart proxyd after TimeoutStartSec, over and over.
    svc = service(backend=f"127.0.0.1:{free_port()}")
    ready = notify_socket.wait_for("READY", pid=svc.proc.pid)
    assert "backend unreachable" in ready["STATUS"]
    assert svc.http("/healthz")[0] == 503
