"""The retry policy for kie.ai calls: exponential backoff with full jitter, ``Retry-After``, a deadline.

The clock, the sleep and the random source are injected so that the policy is tested without sleeping.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TypeVar

from uploader.errors import TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` calls at most; the n-th wait is uniform in [0, min(max_delay, base_delay·2ⁿ⁻¹)]
    (AWS's "full jitter"), and never shorter than the server's ``Retry-After``."""

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None, rng: Callable[[], float]) -> float:
        """Seconds to wait after failed call number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return float(max(ceiling * rng(), retry_after or 0.0))


@dataclass
class Deadline:
    """The time this invocation may still spend: Lambda's remaining time minus a safety margin
    (kept for writing the records and answering)."""

    remaining_ms: Callable[[], int]
    safety_margin: float = 3.0

    def remaining(self) -> float:
        """Seconds left for work (may be negative)."""
        return self.remaining_ms() / 1000.0 - self.safety_margin


@dataclass
class Retrier:
    """Runs a call under a :class:`RetryPolicy` and a :class:`Deadline`."""

    policy: RetryPolicy
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = field(default=random.random)
    #: A call is not started with less time than this left (it could not finish).
    min_call_seconds: float = 1.0

    def run(self, call: Callable[[float], T], deadline: Deadline, on_attempt: Callable[[], None]) -> T:
        """Call ``call(time_budget_seconds)`` until it returns, raises a non-transient error, runs out of
        attempts or of time. ``on_attempt`` is told of every call started (the record counts them)."""
        attempt = 0
        while True:
            budget = deadline.remaining()
            if budget < self.min_call_seconds:
                raise TransientError("no time left in this invocation for a kie.ai call")
            attempt += 1
            on_attempt()
            try:
                return call(budget)
            except TransientError as exc:
                if attempt >= self.policy.max_attempts:
                    raise
                wait = self.policy.delay(attempt, exc.retry_after, self.rng)
                if wait + self.min_call_seconds > deadline.remaining():
                    raise  # the message comes back later; its visibility timeout is the longer wait
                self.sleep(wait)


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; ``None`` when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now())
