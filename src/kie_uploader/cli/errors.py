"""Errors and exit codes: what every command returns, and how a failure reaches the user.

Exit codes: 0 success; 1 the command ran but the answer is "no" (an object is not uploaded, a message
could not be sent); 2 the command could not run (bad arguments, AWS errors); 130 interrupted. A failure
the user can act on is a :class:`CliError`: one line on stderr (``kie-uploader: error: ...``), never a
traceback; AWS's own errors are put in words by :func:`kie_uploader.aws_errors.describe_aws_error`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_OK = 0
EXIT_NO = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure the user can act on: printed as one line, with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextmanager
def interrupt_after() -> Iterator[None]:
    """Ctrl-C (SIGINT) during the block is held until the block ends, then raised: what the block did
    (a message batch SQS accepted) is counted before the command stops and says what it did."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, _frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
