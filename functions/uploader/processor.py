"""What happens to one object, and to the objects of one invocation.

One object (``ObjectCreated`` or a plain message):

1. a bucket outside ``ALLOWED_BUCKETS`` → ``FAILED`` (permanent), nothing presigned;
2. the record is read: a newer state (see :mod:`uploader.table`) → superseded; a live ``UPLOADED`` record
   of the same version → duplicate; either way kie.ai is not called;
3. HeadObject: gone → ``SKIPPED``; larger than ``MAX_OBJECT_BYTES`` → ``FAILED`` (permanent);
4. the API key, a presigned GET URL right before each call, and kie.ai's URL upload, retried with backoff
   while the invocation has time;
5. the record is written under its condition (refused → superseded).

``ObjectRemoved`` marks the record ``DELETED``. Objects of one invocation run concurrently (up to
``MAX_CONCURRENCY``) in *lanes*: events of the same object run one after the other, in delivery order.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from uploader.config import Config
from uploader.errors import ConfigurationError, ObjectNotFoundError, PermanentError, UploaderError
from uploader.events import iso_ms
from uploader.kie import KieClient, KieUpload
from uploader.models import ErrorKind, EventKind, Message, ObjectHead, ObjectRef, Outcome, Status
from uploader.retry import Deadline, Retrier
from uploader.s3 import S3Objects
from uploader.table import RecordTable, Upload, is_live_upload, same_version, stored_is_newer

log = logging.getLogger(__name__)


class ApiKeyProvider(Protocol):
    def get(self) -> str: ...

    def invalidate(self) -> None: ...


def upload_path(prefix: str, bucket: str, key: str, head: ObjectHead) -> str:
    """``{prefix}/{bucket}/{16 hex}``: unique per object version, so kie.ai never overwrites another
    object's file (it overwrites same path + name, and may keep serving a cached old one)."""
    identity = head.version_id if head.version_id != "null" else f"etag:{head.etag}"
    digest = hashlib.sha256(f"{key}\0{identity}".encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{prefix}/{bucket}/{digest}"


def file_name(key: str) -> str:
    """The key's base name (control characters replaced); ``object`` for a key ending in ``/``."""
    name = key.rsplit("/", 1)[-1]
    return "".join("_" if ord(c) < 32 or ord(c) == 127 else c for c in name) or "object"


def expires_at(uploaded_at: str | None, retention_seconds: int, now: datetime) -> int:
    """Epoch seconds when kie.ai forgets the file: its ``uploadedAt`` (or now) + the retention."""
    start = now
    if uploaded_at:
        try:
            parsed = datetime.fromisoformat(uploaded_at.replace("Z", "+00:00"))
            start = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return int(start.timestamp()) + retention_seconds


@dataclass
class Processor:
    """Processes objects with the adapters it is given (built once per container by the handler)."""

    config: Config
    s3: S3Objects
    kie: KieClient
    table: RecordTable
    api_key: ApiKeyProvider
    retrier: Retrier
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    monotonic: Callable[[], float] = time.monotonic

    def process_messages(self, messages: Iterable[Message], deadline: Deadline) -> list[Outcome]:
        """Every object of every message, concurrently by lane; outcomes lane by lane, in input order."""
        lanes: dict[str, list[tuple[str, ObjectRef]]] = {}
        for message in messages:
            for ref in message.objects:
                lanes.setdefault(ref.pk, []).append((message.message_id, ref))
        if not lanes:
            return []
        workers = min(self.config.max_concurrency, len(lanes))
        if workers == 1:
            results = [self._run_lane(lane, deadline) for lane in lanes.values()]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="object") as pool:
                results = list(pool.map(lambda lane: self._run_lane(lane, deadline), lanes.values()))
        return [outcome for lane_outcomes in results for outcome in lane_outcomes]

    def _run_lane(self, lane: list[tuple[str, ObjectRef]], deadline: Deadline) -> list[Outcome]:
        return [self.process(message_id, ref, deadline) for message_id, ref in lane]

    def process(self, message_id: str, ref: ObjectRef, deadline: Deadline) -> Outcome:
        """One object; never raises (an unexpected error becomes a transient failure to deliver again)."""
        started = self.monotonic()
        outcome = Outcome(ref=ref, message_id=message_id, status=Status.FAILED)
        try:
            self._process(ref, outcome, deadline)
        except UploaderError as exc:  # the table or the secret failed: nothing could be recorded
            outcome.status, outcome.retry = Status.FAILED, exc.retryable
            outcome.error, outcome.error_kind = str(exc), exc.kind
        except Exception as exc:  # a bug must not lose the object: deliver it again (then the DLQ)
            log.exception("unexpected error while processing an object")
            outcome.status, outcome.retry = Status.FAILED, True
            outcome.error, outcome.error_kind = f"unexpected {type(exc).__name__}", ErrorKind.TRANSIENT
        outcome.duration_ms = round((self.monotonic() - started) * 1000, 1)
        return outcome

    # --- steps ---

    def _process(self, ref: ObjectRef, outcome: Outcome, deadline: Deadline) -> None:
        observed_at, now = iso_ms(self.now()), int(self.now().timestamp())
        allowed = self.config.allowed_buckets
        if allowed is not None and ref.bucket not in allowed:
            error = PermanentError(f"bucket {ref.bucket!r} is not in ALLOWED_BUCKETS")
            self._fail(ref, outcome, error, observed_at, now, None, False)
            return
        if ref.kind is EventKind.REMOVED:
            written = self.table.put_deleted(ref, observed_at=observed_at)
            outcome.status = Status.DELETED if written else Status.SUPERSEDED
            return

        record = self.table.get(ref.pk)
        if ref.sequencer is not None and stored_is_newer(record, ref, observed_at):
            outcome.status = Status.SUPERSEDED
            return
        if (ref.version_id or ref.etag) and is_live_upload(record, ref.version_id, ref.etag, now):
            outcome.status = Status.DUPLICATE
            return

        try:
            head = self.s3.head(ref.bucket, ref.key, ref.version_id)
        except ObjectNotFoundError:
            missing = PermanentError("the object no longer exists")
            self._fail(ref, outcome, missing, observed_at, now, None, False, status=Status.SKIPPED)
            return
        except UploaderError as exc:
            self._fail(ref, outcome, exc, observed_at, now, None, False)
            return

        if ref.sequencer is not None and ref.version_id is None and ref.etag and head.etag != ref.etag:
            # Unversioned bucket, object replaced since this event: the newer event uploads the new bytes.
            outcome.status = Status.SUPERSEDED
            return
        if ref.sequencer is None and stored_is_newer(record, ref, observed_at, head):
            outcome.status = Status.SUPERSEDED
            return
        if is_live_upload(record, head.version_id, head.etag, now):
            outcome.status = Status.DUPLICATE
            return
        plain_same = (
            ref.sequencer is None and record is not None and same_version(record, head.version_id, head.etag)
        )
        if head.size > self.config.max_object_bytes:
            too_large = PermanentError(
                f"object is {head.size} bytes, over MAX_OBJECT_BYTES ({self.config.max_object_bytes})"
            )
            self._fail(ref, outcome, too_large, observed_at, now, head, plain_same)
            return

        try:
            result = self._upload(ref, head, outcome, deadline)
        except UploaderError as exc:
            self._fail(ref, outcome, exc, observed_at, now, head, plain_same)
            return
        upload = Upload(
            result=result,
            upload_path=upload_path(self.config.kie_upload_path, ref.bucket, ref.key, head),
            expires_at=expires_at(result.uploaded_at, self.config.kie_retention_seconds, self.now()),
        )
        written = self.table.put_uploaded(
            ref,
            head,
            upload,
            observed_at=observed_at,
            attempts=outcome.attempts,
            plain_same_version=plain_same,
        )
        outcome.status = Status.UPLOADED if written else Status.SUPERSEDED

    def _upload(self, ref: ObjectRef, head: ObjectHead, outcome: Outcome, deadline: Deadline) -> KieUpload:
        api_key = self.api_key.get()
        path = upload_path(self.config.kie_upload_path, ref.bucket, ref.key, head)
        name = file_name(ref.key)

        def call(budget: float) -> KieUpload:
            # Presigned right before the call: its lifetime starts when kie.ai can use it.
            url = self.s3.presign_get(
                ref.bucket, ref.key, head.version_id, self.config.presign_expires_seconds
            )
            started = self.monotonic()
            try:
                return self.kie.upload(
                    api_key=api_key,
                    file_url=url,
                    upload_path=path,
                    file_name=name,
                    timeout=min(self.config.kie_timeout_seconds, budget),
                )
            finally:
                outcome.kie_latencies_ms.append(round((self.monotonic() - started) * 1000, 1))

        def counted() -> None:
            outcome.attempts += 1

        try:
            return self.retrier.run(call, deadline, counted)
        except ConfigurationError:
            self.api_key.invalidate()  # the key may have been rotated: read the secret again next time
            raise

    def _fail(
        self,
        ref: ObjectRef,
        outcome: Outcome,
        exc: UploaderError,
        observed_at: str,
        now: int,
        head: ObjectHead | None,
        plain_same: bool,
        status: Status = Status.FAILED,
    ) -> None:
        written = self.table.put_failed(
            ref,
            status,
            error=str(exc),
            kind=exc.kind,
            observed_at=observed_at,
            attempts=outcome.attempts,
            now=now,
            head=head,
            plain_same_version=plain_same,
        )
        outcome.error, outcome.error_kind = str(exc), exc.kind
        if not written:
            # A newer state (or a live upload of this version) is recorded: nothing left to do.
            outcome.status, outcome.retry = Status.SUPERSEDED, False
            return
        outcome.status = status
        outcome.retry = status is Status.FAILED and exc.retryable
