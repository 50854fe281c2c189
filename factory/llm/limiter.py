"""How many requests one endpoint gets at once: additive increase, multiplicative decrease.

The right concurrency is a property of the endpoint (its batch slots, its rate limit, the
machine's other users), not of the recipe, so it is found at run time, as TCP finds a window:

- slow start: from ``initial``, the limit grows by one per answered request (it doubles every
  round trip) until the first sign of overload;
- then additive increase: one more every round trip (``1/limit`` per answer) while latency holds;
- multiplicative decrease on a 429, a 5xx, a timeout or a dropped connection (halve), and on
  latency rising above ``latency_tolerance`` times the best seen, and at least ``LATENCY_SLACK``
  above it (cut by a quarter): the requests are queueing at the endpoint, and more of them only
  makes every dialogue slower. The slack keeps the jitter of a busy client machine on a fast
  endpoint from reading as queueing, and latency must stay high for a whole round trip: a burst
  of late answers (the client's own loop paused, a long dialogue) is not queueing either;
- at most one decrease per round trip, so that one burst of slow answers counts once.

Latency is compared per kind of request (writing a dialogue takes longer than a verdict), so a
run that mixes them does not read its long requests as queueing.

The limit always stays within the recipe's ``[minimum, maximum]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

LATENCY_SLACK = 0.25  # seconds


@dataclass
class AdaptiveLimiter:
    minimum: int
    maximum: int
    initial: int
    latency_tolerance: float = 2.0
    adaptive: bool = True
    limit: float = field(init=False)
    in_flight: int = field(default=0, init=False)
    slow_start: bool = field(default=True, init=False)
    decreases: int = field(default=0, init=False)
    _last_decrease: float = field(default=float("-inf"), init=False)
    _over_since: float | None = field(default=None, init=False)
    _best: dict[str, float] = field(default_factory=dict, init=False)
    _smoothed: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.maximum:
            raise ValueError(
                f"concurrency bounds must satisfy 1 <= minimum <= maximum, got {self.minimum}, {self.maximum}"
            )
        self.limit = float(self.maximum if not self.adaptive else min(max(self.initial, self.minimum), self.maximum))

    @property
    def capacity(self) -> int:
        """Requests that may start now."""
        return max(0, int(self.limit) - self.in_flight)

    def started(self) -> None:
        self.in_flight += 1

    def succeeded(self, latency: float, kind: str = "", now: float | None = None) -> None:
        self.in_flight -= 1
        if not self.adaptive:
            return
        now = time.monotonic() if now is None else now
        best = self._best[kind] = min(self._best.get(kind, latency), latency)
        # smoothed so that one slow answer (a long dialogue) is not read as queueing
        previous = self._smoothed.get(kind)
        smoothed = self._smoothed[kind] = latency if previous is None else 0.8 * previous + 0.2 * latency
        if smoothed > max(self.latency_tolerance * best, best + LATENCY_SLACK):
            if self._over_since is None:
                self._over_since = now
            elif now - self._over_since >= smoothed:
                self._decrease(0.75, now, smoothed)
                self._over_since = None
            return
        self._over_since = None
        if self.slow_start:
            self.limit = min(self.maximum, self.limit + 1)
        else:
            self.limit = min(self.maximum, self.limit + 1 / max(self.limit, 1))

    def overloaded(self, now: float | None = None) -> None:
        """A 429, a 5xx, a timeout or a dropped connection."""
        self.in_flight -= 1
        if self.adaptive:
            self._decrease(0.5, time.monotonic() if now is None else now, max(self._smoothed.values(), default=0.0))

    def failed_quietly(self) -> None:
        """A request that failed for its own reasons (400: prompt too long): says nothing of load."""
        self.in_flight -= 1

    def _decrease(self, factor: float, now: float, round_trip: float) -> None:
        if now - self._last_decrease < round_trip:
            return
        self._last_decrease = now
        self.slow_start = False
        self.decreases += 1
        self.limit = max(float(self.minimum), self.limit * factor)
