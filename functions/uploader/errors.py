"""Error classes, classified once at the adapter boundary.

The processor decides what to do by class only, never by parsing messages:

* :class:`TransientError` — may succeed later (timeouts, 429, 455, 5xx, malformed answers, throttling):
  retried with backoff in the invocation, then the message is delivered again.
* :class:`PermanentError` — this object will never succeed as it is (400, other 4xx, too large, bucket
  not allowed): recorded ``FAILED`` and acknowledged.
* :class:`ConfigurationError` — the deployment is wrong (401, 402, secret missing or unreadable, access
  denied): recorded ``FAILED`` and delivered again, so that the messages wait in the DLQ for a redrive.

Messages of these errors are shown in logs and stored in the table: they never contain the API key or a
presigned URL (adapters summarise, see :func:`uploader.redact.redact`).
"""

from __future__ import annotations

from typing import ClassVar

from uploader.models import ErrorKind


class UploaderError(Exception):
    """Base class: an error whose ``kind`` tells the processor what to do."""

    kind: ClassVar[ErrorKind]

    @property
    def retryable(self) -> bool:
        """Whether the message should be delivered again."""
        return self.kind is not ErrorKind.PERMANENT


class TransientError(UploaderError):
    """May succeed on a later attempt. ``retry_after`` is the server's hint in seconds, if any."""

    kind = ErrorKind.TRANSIENT

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(UploaderError):
    """This object cannot succeed as it is; retrying is useless."""

    kind = ErrorKind.PERMANENT


class ConfigurationError(UploaderError):
    """The deployment (key, secret, permissions, environment) is wrong; needs an operator."""

    kind = ErrorKind.CONFIGURATION


class ObjectNotFoundError(Exception):
    """The object (or the requested version) no longer exists: recorded ``SKIPPED``, not an error kind."""
