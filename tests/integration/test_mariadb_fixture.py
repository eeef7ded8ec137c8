"""The harness itself: what the fault tests rely on must really happen to a real client."""

from __future__ import annotations

import threading
import time

import pymysql
import pytest

from tests.support.mariadb import MariaDBServer
from tests.support.relay import TcpRelay

# CR_SERVER_LOST / CR_SERVER_GONE_ERROR: what a client sees after its server hung up.
LOST = {2013, 2006}


@pytest.mark.parametrize("graceful", [True, False], ids=["sigterm", "sigkill"])
def test_restart_keeps_data_port_and_app_user(fresh_mariadb: MariaDBServer, graceful: bool) -> None:
    port = fresh_mariadb.port
    with fresh_mariadb.connect("app", "apppw", database="test") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE kept (id INT PRIMARY KEY) ENGINE=InnoDB")
        cur.execute("INSERT INTO kept VALUES (1), (2)")

    fresh_mariadb.restart(graceful=graceful, options={"wait_timeout": 3})

    assert fresh_mariadb.port == port
    with fresh_mariadb.connect("app", "apppw", database="test") as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM kept ORDER BY id")
        assert cur.fetchall() == ((1,), (2,))
        cur.execute("SELECT @@global.wait_timeout")
        assert cur.fetchone() == (3,)


def test_kill_connections_disconnects_a_real_client(mariadb: MariaDBServer) -> None:
    conn = mariadb.connect("app", "apppw", database="test")
    try:
        assert mariadb.count_connections("app") == 1

        assert mariadb.kill_connections("app") == 1

        assert mariadb.count_connections("app") == 0
        with pytest.raises(pymysql.err.OperationalError) as lost:
            conn.cursor().execute("SELECT 1")
        assert lost.value.args[0] in LOST
    finally:
        conn.close()


def test_relay_blackhole_stalls_a_client_until_forwarding_resumes(
    mariadb: MariaDBServer, relay: TcpRelay
) -> None:
    host, port = relay.host, relay.port
    with pymysql.connect(
        host=host, port=port, user="app", password="apppw", read_timeout=1, autocommit=True
    ) as conn:
        conn.ping(reconnect=False)
        assert relay.accepted == 1

        relay.blackhole()
        started = time.monotonic()
        with pytest.raises(pymysql.err.OperationalError) as lost:
            conn.cursor().execute("SELECT 1")
        assert lost.value.args[0] in LOST
        assert 0.9 < time.monotonic() - started < 5
        # A partition, not a disconnect: the server still holds the session.
        assert mariadb.count_connections("app") == 1

    relay.forward()
    with pymysql.connect(host=host, port=port, user="app", password="apppw") as conn:
        conn.ping(reconnect=False)
    assert relay.accepted == 2


def test_relay_drop_all_resets_and_refuse_turns_clients_away(relay: TcpRelay) -> None:
    conn = pymysql.connect(host=relay.host, port=relay.port, user="app", password="apppw")
    try:
        assert relay.drop_all() == 1
        with pytest.raises(pymysql.err.OperationalError) as lost:
            conn.cursor().execute("SELECT 1")
        assert lost.value.args[0] in LOST
    finally:
        conn.close()

    relay.refuse()
    with pytest.raises(pymysql.err.OperationalError) as refused:
        pymysql.connect(host=relay.host, port=relay.port, user="app", password="apppw")
    assert refused.value.args[0] in {2003, *LOST}


def test_relay_delay_holds_each_reply(relay: TcpRelay) -> None:
    with pymysql.connect(host=relay.host, port=relay.port, user="app", password="apppw") as conn:
        relay.delay(0.3)
        started = time.monotonic()
        conn.ping(reconnect=False)
        # The delay applies each way: request and reply.
        assert time.monotonic() - started >= 0.55


def test_server_started_from_a_short_lived_thread_outlives_it(
    fresh_mariadb: MariaDBServer,
) -> None:
    # Fault tests bring a server back from a threading.Timer while a query waits.
    fresh_mariadb.stop()
    starter = threading.Thread(target=fresh_mariadb.start)
    starter.start()
    starter.join()
    time.sleep(0.3)

    assert fresh_mariadb.is_running
    assert fresh_mariadb.execute("SELECT 1") == [(1,)]
