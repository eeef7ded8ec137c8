"""Which mysql.user row proxyd's lookup uses: the one the server matches for proxyd."""

from __future__ import annotations

from proxyd.pool.accounts import best_match

ROWS = [
    ("%", "mysql_native_password", "*ANY"),
    ("10.0.%", "mysql_native_password", "*NET"),
    ("10.0.0.5", "mysql_native_password", "*EXACT"),
    ("localhost", "mysql_native_password", "*LOCAL"),
]


def test_exact_host_before_patterns_and_percent_last() -> None:
    assert best_match("10.0.0.5", ROWS) == ROWS[2]
    assert best_match("10.0.7.1", ROWS) == ROWS[1]
    assert best_match("192.168.1.1", ROWS) == ROWS[0]


def test_localhost_and_loopback_are_the_same_host() -> None:
    assert best_match("127.0.0.1", ROWS) == ROWS[3]
    assert best_match("localhost", ROWS) == ROWS[3]
    assert best_match("localhost", [("127.0.0.1", "mysql_native_password", "*LO")]) is not None


def test_no_matching_host_is_no_account() -> None:
    assert best_match("192.168.1.1", ROWS[1:3]) is None
    assert best_match("10.0.0.5", []) is None
