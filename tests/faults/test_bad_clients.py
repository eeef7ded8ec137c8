"""Clients that send garbage, stop half way, break the protocol's rules or say nothing.

Each gets a clear ERR packet where the protocol allows one and is closed (or, for an
unknown command after login, keeps its connection), while a well-behaved PyMySQL client
queries in a thread the whole time without a single error, and proxyd's log shows no
traceback. These talk raw bytes over a socket; the parsers themselves are fuzzed in
tests/protocol/.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.faults.rawclient import (
    Closed,
    Err,
    connect,
    frames,
    handshake_response,
    logged_in,
    packet,
    parse_err,
    query,
    read_packet,
)
from tests.support.mariadb import MariaDBServer
from tests.support.proxy import ProxydProcess
from tests.support.workload import Reader, running, wait_for_progress

LOGIN_TIMEOUT = 1.0
ER_HANDSHAKE = 1043
ER_UNKNOWN_COM = 1047
ER_NET_PACKET_TOO_LARGE = 1153
ER_NET_PACKETS_OUT_OF_ORDER = 1156


def expect_err_then_close(sock: socket.socket, timeout: float = 5.0) -> Err:
    """The next packet is an ERR, and then the connection closes."""
    sock.settimeout(timeout)
    try:
        _, payload = read_packet(sock)
    except Closed:
        pytest.fail("closed without an ERR packet")
    err = parse_err(payload)
    assert err is not None, f"expected an ERR packet, got {payload[:40]!r}"
    with pytest.raises(Closed):
        read_packet(sock)
    return err


# -- the scene: proxyd, and a client that must not notice a thing --------------------------


@pytest.fixture
def proxy(proxyd: Callable[..., ProxydProcess]) -> ProxydProcess:
    return proxyd({"client_login_timeout": f"{LOGIN_TIMEOUT}s"})


@pytest.fixture
def bystander(proxy: ProxydProcess) -> Iterator[Reader]:
    """A normal client querying in a thread while the test runs. Afterwards it must still
    get answers and never have failed, and proxyd's log must hold no traceback."""
    stop = threading.Event()
    reader = Reader("bystander", lambda: proxy.connect(read_timeout=10), stop)
    with running([reader], stop):
        assert wait_for_progress([reader], 5, timeout=10)
        yield reader
        # Still answering after the bad client, and never failed.
        assert wait_for_progress([reader], 5, timeout=10), reader.tally.summary()
    assert reader.tally.failures == 0, reader.tally.summary()
    log = proxy.log_text()
    assert "Traceback" not in log, log[max(0, log.index("Traceback") - 2000) :][:6000]


# -- what a bad client sends -----------------------------------------------------------------


def garbage(sock: socket.socket, salt: bytes, seed: int) -> None:
    sock.sendall(random.Random(seed).randbytes(4096))


def truncated_handshake_response(sock: socket.socket, salt: bytes, seed: int) -> None:
    # The header promises the whole response; half of it arrives, then nothing.
    whole = handshake_response(salt)
    sock.sendall(packet(whole, 1)[: 4 + len(whole) // 2])


def cut_short_handshake_response(sock: socket.socket, salt: bytes, seed: int) -> None:
    # A complete packet whose payload ends inside the user name.
    sock.sendall(packet(handshake_response(salt)[:34], 1))


def oversized_length_header(sock: socket.socket, salt: bytes, seed: int) -> None:
    # 16 MiB - 1, the most one header can say, meaning more frames follow: the first header
    # of a 100 MB packet, at a point where a handshake response of a few hundred bytes is due.
    sock.sendall(b"\xff\xff\xff\x01" + b"\0" * 4096)


def command_before_login(sock: socket.socket, salt: bytes, seed: int) -> None:
    sock.sendall(packet(b"\x03SELECT 1", 0))


def handshake_response_out_of_order(sock: socket.socket, salt: bytes, seed: int) -> None:
    sock.sendall(packet(handshake_response(salt), 5))


def silence(sock: socket.socket, salt: bytes, seed: int) -> None:
    pass


BAD_INPUTS: dict[str, Callable[[socket.socket, bytes, int], None]] = {
    "garbage": garbage,
    "truncated_handshake_response": truncated_handshake_response,
    "cut_short_handshake_response": cut_short_handshake_response,
    "oversized_length_header": oversized_length_header,
    "command_before_login": command_before_login,
    "handshake_response_out_of_order": handshake_response_out_of_order,
    "silence": silence,
}


# Where MySQL has a word for it; the others may get any clear ERR.
EXPECTED_CODES = {
    "truncated_handshake_response": ER_HANDSHAKE,  # proxyd: login timed out
    "silence": ER_HANDSHAKE,
    "handshake_response_out_of_order": ER_NET_PACKETS_OUT_OF_ORDER,
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_before_login_gets_an_err_and_is_closed(
    name: str, proxy: ProxydProcess, bystander: Reader
) -> None:
    send = BAD_INPUTS[name]
    for seed in range(10 if name == "garbage" else 1):
        sock, salt = connect(proxy)
        with sock:
            started = time.monotonic()
            send(sock, salt, seed)
            err = expect_err_then_close(sock, timeout=LOGIN_TIMEOUT + 4)
            seconds = time.monotonic() - started
        expected = EXPECTED_CODES.get(name)
        assert expected is None or err.code == expected, err
        assert err.message, err
        if name in ("silence", "truncated_handshake_response"):
            assert LOGIN_TIMEOUT - 0.2 <= seconds < LOGIN_TIMEOUT + 1.5, seconds
        elif name != "garbage":
            assert seconds < 1.0, f"{err} after {seconds:.1f}s"


def test_client_that_never_reads_the_greeting_is_closed_after_login_timeout(
    proxy: ProxydProcess, bystander: Reader
) -> None:
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        started = time.monotonic()
        time.sleep(LOGIN_TIMEOUT + 0.5)  # not reading: the greeting waits in our buffer
        read_packet(sock)  # the greeting
        err = expect_err_then_close(sock)
        assert err.code == ER_HANDSHAKE, err
        assert time.monotonic() - started < LOGIN_TIMEOUT + 2.5


def test_garbage_from_many_clients_at_once(proxy: ProxydProcess, bystander: Reader) -> None:
    socks = [connect(proxy) for _ in range(30)]
    for seed, (sock, salt) in enumerate(socks):
        garbage(sock, salt, 100 + seed)
    for sock, _ in socks:
        with sock:
            expect_err_then_close(sock, timeout=LOGIN_TIMEOUT + 4)


def test_command_with_wrong_sequence_id_after_login_gets_an_err_and_is_closed(
    proxy: ProxydProcess, bystander: Reader
) -> None:
    with logged_in(proxy) as sock:
        assert query(sock, b"SELECT 7") == [b"\x017"]
        sock.sendall(packet(b"\x03SELECT 1", 3))
        err = expect_err_then_close(sock)
    assert err.code == ER_NET_PACKETS_OUT_OF_ORDER, err
    assert err.message.startswith("proxyd:"), err


@pytest.mark.parametrize("command", [0x00, 0x12, 0x20, 0x7F, 0xFE])
def test_unknown_command_after_login_gets_1047_and_the_connection_stays(
    command: int, proxy: ProxydProcess, bystander: Reader
) -> None:
    with logged_in(proxy) as sock:
        sock.settimeout(5)
        sock.sendall(packet(bytes((command,)) + b"\x01\x02\x03", 0))
        seq, payload = read_packet(sock)
        err = parse_err(payload)
        assert err is not None and err.code == ER_UNKNOWN_COM, (seq, payload)
        assert seq == 1
        assert query(sock, b"SELECT 'still here'") == [b"\x0astill here"]


def test_oversized_command_after_login_gets_the_packet_too_large_err(
    proxy: ProxydProcess, bystander: Reader
) -> None:
    """100 MB in one COM_QUERY, more than the server's max_allowed_packet (16 MiB): the
    client hears what the server would have said directly (1153)."""
    with logged_in(proxy) as sock:
        sock.settimeout(30)
        # Closed before all of it arrived? The ERR must be waiting for us anyway.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(frames(b"\x03SELECT '" + b"x" * (100 * 1024 * 1024) + b"'"))
        try:
            _, answer = read_packet(sock)
        except Closed:
            pytest.fail("closed without an ERR packet")
    err = parse_err(answer)
    assert err is not None, answer[:40]
    assert err.code == ER_NET_PACKET_TOO_LARGE and "max_allowed_packet" in err.message, err


def test_command_longer_than_one_packet_goes_through(
    mariadb_factory: Callable[..., MariaDBServer], proxyd: Callable[..., ProxydProcess]
) -> None:
    """Legal but big: a 20 MB statement comes in two packets (16 MiB each at most)."""
    server = mariadb_factory(max_allowed_packet="64M")
    proxy = proxyd(backend=server)
    conn = proxy.connect(max_allowed_packet=64 * 1024 * 1024, read_timeout=30)
    with conn.cursor() as cur:
        cur.execute("SELECT LENGTH(%s)", ("x" * (20 * 1024 * 1024),))
        assert cur.fetchall() == ((20 * 1024 * 1024,),)
        cur.execute("SELECT 'still here'")
        assert cur.fetchall() == (("still here",),)
    conn.close()
