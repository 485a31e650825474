"""The retry policy, with an injected clock, sleep and random source: no real sleeping."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from uploader.errors import ConfigurationError, PermanentError, TransientError
from uploader.retry import Deadline, Retrier, RetryPolicy, parse_retry_after


@dataclass
class FakeTime:
    """A clock that only moves when the code under test sleeps (or a call takes time)."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def deadline(self, seconds: float, margin: float = 0.0) -> Deadline:
        end = self.now + seconds
        return Deadline(lambda: int((end - self.now) * 1000), safety_margin=margin)


class Failing:
    """A call that raises the given errors in turn, then returns ``result``; records its budgets."""

    def __init__(
        self, *errors: Exception, result: str = "done", cost: float = 0.0, clock: FakeTime | None = None
    ) -> None:
        self.queue = list(errors)
        self.result = result
        self.cost = cost
        self.clock = clock
        self.budgets: list[float] = []

    def __call__(self, budget: float) -> str:
        self.budgets.append(budget)
        if self.clock is not None:
            self.clock.now += self.cost
        if self.queue:
            raise self.queue.pop(0)
        return self.result


failing = Failing


def test_full_jitter_stays_under_the_exponential_ceiling() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)

    ceilings = [policy.delay(n, None, lambda: 1.0) for n in range(1, 7)]

    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.delay(3, None, lambda: 0.0) == 0.0
    assert policy.delay(3, None, lambda: 0.25) == 0.5


def test_retry_after_is_a_floor() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)

    assert policy.delay(1, 3.0, lambda: 1.0) == 3.0
    assert policy.delay(5, 3.0, lambda: 1.0) == 8.0


def test_transient_errors_are_retried_until_success() -> None:
    clock = FakeTime()
    retrier = Retrier(RetryPolicy(max_attempts=4), sleep=clock.sleep, rng=lambda: 1.0)
    attempts: list[int] = []
    call = failing(TransientError("500"), TransientError("429"))

    result = retrier.run(call, clock.deadline(60), lambda: attempts.append(1))

    assert result == "done"
    assert len(attempts) == 3
    assert clock.sleeps == [0.5, 1.0]


def test_attempts_are_capped() -> None:
    clock = FakeTime()
    retrier = Retrier(RetryPolicy(max_attempts=3), sleep=clock.sleep, rng=lambda: 0.5)
    attempts: list[int] = []

    with pytest.raises(TransientError, match="third"):
        retrier.run(
            failing(TransientError("first"), TransientError("second"), TransientError("third")),
            clock.deadline(60),
            lambda: attempts.append(1),
        )

    assert len(attempts) == 3 and len(clock.sleeps) == 2


@pytest.mark.parametrize("error", [PermanentError("400"), ConfigurationError("401")])
def test_permanent_and_configuration_errors_are_not_retried(error: Exception) -> None:
    clock = FakeTime()
    retrier = Retrier(RetryPolicy(max_attempts=4), sleep=clock.sleep)
    attempts: list[int] = []

    with pytest.raises(type(error)):
        retrier.run(failing(error), clock.deadline(60), lambda: attempts.append(1))

    assert len(attempts) == 1 and clock.sleeps == []


def test_retry_after_is_honoured() -> None:
    clock = FakeTime()
    retrier = Retrier(RetryPolicy(max_attempts=2), sleep=clock.sleep, rng=lambda: 0.0)

    retrier.run(failing(TransientError("429", retry_after=2.5)), clock.deadline(60), lambda: None)

    assert clock.sleeps == [2.5]


def test_no_wait_runs_past_the_deadline() -> None:
    clock = FakeTime()
    retrier = Retrier(RetryPolicy(max_attempts=5), sleep=clock.sleep, rng=lambda: 1.0)

    # 30 s left, a Retry-After of 60 s: give up now rather than sleep past the end of the invocation.
    with pytest.raises(TransientError, match="429"):
        retrier.run(failing(TransientError("429", retry_after=60)), clock.deadline(30), lambda: None)

    assert clock.sleeps == []


def test_no_call_starts_without_time_left() -> None:
    clock = FakeTime()
    retrier = Retrier(RetryPolicy(), sleep=clock.sleep, min_call_seconds=1.0)
    attempts: list[int] = []

    with pytest.raises(TransientError, match="no time left"):
        retrier.run(failing(), clock.deadline(3.5, margin=3.0), lambda: attempts.append(1))

    assert attempts == []


def test_each_call_gets_the_remaining_time_as_its_budget() -> None:
    clock = FakeTime()
    retrier = Retrier(RetryPolicy(max_attempts=3), sleep=clock.sleep, rng=lambda: 1.0)
    call = failing(TransientError("timeout"), cost=10.0, clock=clock)

    retrier.run(call, clock.deadline(60, margin=3.0), lambda: None)

    # 57 s at first; then 10 s spent in the call and 0.5 s asleep.
    assert call.budgets == [57.0, 46.5]


def test_the_deadline_keeps_the_safety_margin() -> None:
    assert Deadline(lambda: 10_000, safety_margin=3.0).remaining() == 7.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Thu, 01 Jan 2026 00:00:30 GMT", 30.0),
        ("Thu, 01 Jan 2026 00:00:00 GMT", 0.0),
        ("Wed, 31 Dec 2025 23:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("-5", None),
    ],
)
def test_retry_after_accepts_seconds_and_http_dates(header: str | None, seconds: float | None) -> None:
    now = 1767225600.0  # 2026-01-01T00:00:00Z

    assert parse_retry_after(header, lambda: now) == seconds
