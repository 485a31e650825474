"""Shared value types: the object reference, what S3 says about an object, the outcome of one object.

One name per idea: an *object* is an S3 object, a *record* its DynamoDB item, a *message* an SQS message,
an *upload* one call to kie.ai.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ErrorKind(enum.StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    CONFIGURATION = "configuration"


class Status(enum.StrEnum):
    """What happened to one object. The first four are stored as the record's ``status``."""

    UPLOADED = "UPLOADED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    DELETED = "DELETED"
    #: A live UPLOADED record already holds this object version: nothing done (not stored).
    DUPLICATE = "DUPLICATE"
    #: The record already reflects a newer reading of S3 than this event: nothing done (not stored).
    SUPERSEDED = "SUPERSEDED"
    #: Another delivery is processing the object and was told to read S3 again: nothing done (not stored).
    IN_PROGRESS = "IN_PROGRESS"
    #: The object is outside what the stack watches: refused, nothing read, uploaded or written.
    NOT_WATCHED = "NOT_WATCHED"
    #: A message or request about a key that has no object and never had a record: nothing written.
    NOT_FOUND = "NOT_FOUND"


#: Statuses that are written to the table.
STORED_STATUSES = frozenset({Status.UPLOADED, Status.FAILED, Status.SKIPPED, Status.DELETED})


class Transfer(enum.StrEnum):
    """How the bytes reach kie.ai (``TRANSFER``; the record's ``transfer`` says which one served it)."""

    #: kie.ai fetches a presigned GET URL itself (``POST /api/file-url-upload``).
    URL = "url"
    #: The function streams the object from S3 to kie.ai (``POST /api/file-stream-upload``).
    STREAM = "stream"
    #: The URL upload, and the stream upload for objects over ``URL_TRANSFER_MAX_BYTES``, for buckets
    #: kie.ai cannot reach (``KIE_CANNOT_FETCH``) and when kie.ai answers that it could not fetch the URL.
    AUTO = "auto"


class EventKind(enum.StrEnum):
    CREATED = "created"
    REMOVED = "removed"


@dataclass(frozen=True)
class ObjectRef:
    """One object named by an event or a message (key already decoded).

    ``sequencer`` is the canonical form (see :mod:`uploader.sequencer`), ``event_time`` an ISO UTC string
    with milliseconds; both are ``None`` for plain messages. ``version_id``/``etag``/``size`` are what the
    event says, when it says it: hints only, the processor reads the current state from S3.
    ``permanent_delete`` marks the removal of one specific version. ``force`` (plain messages) asks for a
    new upload even when a live one exists; ``request_id`` makes a redelivered force message a duplicate.
    """

    bucket: str
    key: str
    kind: EventKind = EventKind.CREATED
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    sequencer: str | None = None
    event_time: str | None = None
    permanent_delete: bool = False
    force: bool = False
    request_id: str | None = None

    @property
    def pk(self) -> str:
        """The record's partition key."""
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class ObjectHead:
    """What S3's HeadObject says about the object. ``version_id`` is ``"null"`` when unversioned.

    ``last_modified`` and ``s3_time`` (S3's ``Date`` header: its clock when it answered) are epoch seconds,
    both of one-second resolution; they serve only to tell whether an unversioned object changed between
    two readings (:meth:`pinned`, and the processor's confirmation rule).
    """

    version_id: str
    etag: str
    size: int
    content_type: str | None = None
    last_modified: int | None = None
    s3_time: int | None = None

    @property
    def pinned(self) -> bool:
        """A presigned URL can name these exact bytes (a version id): nothing can change what it serves."""
        return self.version_id != "null"

    def same_bytes(self, other: ObjectHead) -> bool:
        """Both readings name the same object write (version, ETag, size and Last-Modified)."""
        return (self.version_id, self.etag, self.size, self.last_modified) == (
            other.version_id,
            other.etag,
            other.size,
            other.last_modified,
        )


@dataclass(frozen=True)
class Message:
    """One unit of delivery: an SQS message, or one record of a direct S3 event.

    A message names zero or more objects; ``problem`` says why it could not be read (malformed), ``note``
    why it names no object although it is fine (``s3:TestEvent``, an event type that is not handled).
    """

    message_id: str
    objects: tuple[ObjectRef, ...] = ()
    problem: str | None = None
    note: str | None = None


@dataclass
class Outcome:
    """What happened to one object in this delivery."""

    ref: ObjectRef
    message_id: str
    status: Status
    retry: bool = False
    error: str | None = None
    error_kind: ErrorKind | None = None
    attempts: int = 0
    duration_ms: float = 0.0
    kie_latencies_ms: list[float] = field(default_factory=list)
    #: The S3 reading this processing confirmed the record against (UPLOADED, DUPLICATE): a synchronous
    #: answer hands out a URL only when the record still describes it.
    confirmed: ObjectHead | None = None
    #: What each check of the record's URL at kie.ai answered (True: still served, False: gone).
    probes: list[bool] = field(default_factory=list)
    #: The transfer of the upload this processing made (None: no upload was made).
    transfer: Transfer | None = None
