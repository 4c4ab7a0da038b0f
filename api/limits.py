"""How often a key (an owner, a webhook URL) may call something costly: a token bucket per key, in memory.

In memory and per process is what a single server needs; several servers behind a load balancer each enforce the
limit for the requests they see (so the effective limit is the rate times the servers). Buckets of keys that have
been idle long enough to be full again are dropped, so the table stays as small as the set of recent callers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimit:
    """At most ``per_minute`` calls per key, in bursts of up to ``burst`` (default: a minute's worth)."""

    def __init__(
        self, per_minute: float, *, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.per_minute = per_minute
        self.rate = per_minute / 60.0  # tokens a second
        self.burst = max(1.0, burst if burst is not None else per_minute)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens left, when counted)
        self._lock = threading.Lock()
        self._swept = clock()

    def take(self, key: str) -> float:
        """0.0 when the call may go ahead (it is counted), else the seconds until one may."""
        now = self.clock()
        with self._lock:
            self._sweep(now)
            tokens = self._level(key, now)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def wait(self, key: str) -> float:
        """Like :meth:`take` without counting a call: 0.0 if one may go ahead now, else the seconds until one may."""
        now = self.clock()
        with self._lock:
            tokens = self._level(key, now)
            return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def give_back(self, key: str) -> None:
        """Undo one counted call (up to the burst)."""
        now = self.clock()
        with self._lock:
            self._buckets[key] = (min(self.burst, self._level(key, now) + 1.0), now)

    def _level(self, key: str, now: float) -> float:
        """The tokens ``key`` has at ``now``: what was left, refilled since (up to the burst)."""
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def _sweep(self, now: float) -> None:
        full_after = self.burst / self.rate  # an idle bucket is full again after this long: forget it
        if now - self._swept < full_after:
            return
        self._buckets = {k: (t, at) for k, (t, at) in self._buckets.items() if now - at < full_after}
        self._swept = now


class SignInGuard:
    """What stands between the sign-in forms and password guessing, or a flood of them.

    Attempts are counted per client address and per email before the password is checked (a guesser spreading
    over many accounts, or over many addresses at one account, meets one of the two), and a success is given back,
    so signing in often is fine.
    And at most ``hashing`` password checks run at once: argon2 takes 64 MiB and tens of milliseconds per check on
    purpose, so forty parallel attempts took a server from 220 MB to 2.35 GB before this."""

    def __init__(
        self,
        *,
        per_client: float = 30,
        per_email: float = 10,
        hashing: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = RateLimit(per_client, clock=clock)
        self.emails = RateLimit(per_email, clock=clock)
        self.hashing = threading.BoundedSemaphore(hashing)
        self._lock = threading.Lock()

    def begin(self, client: str, email: str) -> float:
        """Count an attempt before its password is checked: 0.0 when this client may try this email now (the
        attempt is counted, so a burst of parallel attempts cannot all pass before the first failure is known),
        else the seconds to wait (nothing counted)."""
        with self._lock:
            wait = max(self.clients.wait(client), self.emails.wait(email.lower()))
            if wait > 0:
                return wait
            self.clients.take(client)
            self.emails.take(email.lower())
            return 0.0

    def succeeded(self, client: str, email: str) -> None:
        """A success costs nothing: its attempt is given back."""
        self.clients.give_back(client)
        self.emails.give_back(email.lower())
