"""Rate caps: a token bucket, for work that must cost at most a set rate however fast the stream runs
(the re-embed's share of the encoder, the online hit rate's probes)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """At most `rate` items per second on average, bursts of `burst`; `rate` <= 0: no cap."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.at = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def wait_s(self, items: int) -> float:
        """Seconds to wait before `items` more may go; takes them (the balance may go negative)."""
        if self.rate <= 0:
            return 0.0
        self._refill()
        self.tokens -= items
        return max(-self.tokens / self.rate, 0.0)

    def take(self) -> bool:
        """Whether one more item may go now (then it is taken); never waits, never goes negative."""
        if self.rate <= 0:
            return True
        self._refill()
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
