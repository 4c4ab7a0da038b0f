"""Retry delays: constant or exponential, capped, with jitter that is deterministic.

Jitter must not come from a random generator (replaying a run must give the same decisions), so it is derived
from a hash of the run, the step and the attempt: spread across steps and runs, identical on replay.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from engine.dsl.model import Retry


def retry_delay(policy: Retry, attempt: int, seed: str) -> timedelta:
    """The wait before attempt ``attempt + 1``, after attempt ``attempt`` (1-based) failed."""
    base = policy.initial_delay.seconds
    if policy.backoff == "exponential":
        base *= policy.factor ** (attempt - 1)
    if policy.max_delay is not None:
        base = min(base, policy.max_delay.seconds)
    if policy.jitter:
        digest = hashlib.sha256(f"{seed}:{attempt}".encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64
        base = base * (0.5 + fraction / 2)  # "equal jitter": between half and all of the delay
    return timedelta(seconds=round(base, 3))
