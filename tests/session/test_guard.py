"""The login guard, sans-IO: failures per address, and the delay of the next login."""

from __future__ import annotations

from proxyd.session.guard import LoginGuard


def test_delays_start_after_the_threshold_double_and_stop_at_the_cap() -> None:
    guard = LoginGuard(threshold=3, delay=1.0, max_delay=8.0)
    delays = []
    for n in range(8):
        delays.append(guard.delay_for("10.0.0.1", float(n)))
        guard.failed("10.0.0.1", float(n))
    assert delays == [0, 0, 0, 1, 2, 4, 8, 8]
    assert guard.delay_for("10.0.0.2", 8.0) == 0  # another address is not slowed
    assert guard.addresses_delayed == 1


def test_success_resets_and_quiet_addresses_are_forgotten() -> None:
    guard = LoginGuard(threshold=1, delay=1.0, max_delay=4.0)
    guard.failed("a", 0.0)
    assert guard.delay_for("a", 0.0) == 1
    guard.succeeded("a")
    assert guard.delay_for("a", 0.0) == 0
    guard.failed("b", 0.0)
    assert guard.delay_for("b", 9.0) == 0  # quiet for more than twice the cap
    assert guard.addresses_delayed == 0


def test_a_zero_delay_turns_it_off() -> None:
    guard = LoginGuard(threshold=0, delay=0.0, max_delay=30.0)
    guard.failed("a", 0.0)
    assert guard.delay_for("a", 0.0) == 0
