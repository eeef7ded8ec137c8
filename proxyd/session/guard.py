"""Password guessing, slowed down per client address: sans-IO (the clock is passed in).

After ``threshold`` failed logins from one address, each further login from it (right or
wrong) is answered only after a delay that doubles with each failure, from ``delay`` up
to ``max_delay``, as MySQL's connection_control plugin does. A successful login resets the
address. Answering every login late, not only the wrong ones, is what makes it work: a
guesser that gives up waiting early learns nothing. Addresses forgotten after a quiet
spell of ``max_delay`` twice over, and the table is bounded.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

MAX_ADDRESSES = 100_000


@dataclass(slots=True)
class _Failures:
    count: int
    last: float


class LoginGuard:
    """Failed logins per client address, and the delay the next login from it gets."""

    def __init__(self, threshold: int, delay: float, max_delay: float) -> None:
        self.threshold = threshold
        self.delay = delay
        self.max_delay = max_delay
        self._failures: collections.OrderedDict[str, _Failures] = collections.OrderedDict()
        self.delayed = 0  # logins answered late, for the metrics

    def configure(self, threshold: int, delay: float, max_delay: float) -> None:
        self.threshold, self.delay, self.max_delay = threshold, delay, max_delay

    def delay_for(self, address: str, now: float) -> float:
        """How long a login from ``address`` waits before it is checked."""
        entry = self._failures.get(address)
        if entry is None or self.delay <= 0:
            return 0.0
        if now - entry.last > 2 * self.max_delay:
            del self._failures[address]
            return 0.0
        over = entry.count - self.threshold
        if over < 0:
            return 0.0
        self.delayed += 1
        return float(min(self.max_delay, self.delay * 2 ** min(over, 30)))

    def failed(self, address: str, now: float) -> None:
        entry = self._failures.pop(address, None)
        if entry is None:
            entry = _Failures(0, now)
        entry.count += 1
        entry.last = now
        self._failures[address] = entry  # most recent last
        while len(self._failures) > MAX_ADDRESSES:
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    @property
    def addresses_delayed(self) -> int:
        """Addresses whose next login waits (for the metrics)."""
        return sum(1 for e in self._failures.values() if e.count >= self.threshold)
