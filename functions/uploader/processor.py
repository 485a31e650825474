"""What happens to one object, and to the objects of one invocation.

Every event and message is a *nudge* about a key, not the truth about it: the record is made to describe
what S3 holds when the function looks (docs/architecture.md states the invariant and why it holds).

One object:

1. an object the stack does not watch (:mod:`uploader.watch`) → ``NOT_WATCHED``: nothing read, presigned
   or written;
2. the record is read: an event already reflected in it (its sequencer) costs nothing more; another
   delivery's live claim is *bumped* (that delivery reads S3 again) and this one is done;
3. the record is claimed (a conditional write), then S3 is read (HeadObject of the current version):
   gone → ``DELETED`` (``NOT_FOUND`` and no record for a key that never had an object); larger
   than ``MAX_OBJECT_BYTES`` → ``FAILED`` (permanent); a live ``UPLOADED`` record of this version (or
   a permanent refusal of it) → nothing to do, unless the message forces a new upload;
4. the API key, then the transfer (``TRANSFER``: url, stream or auto, :meth:`Processor._transfer`): a
   presigned GET URL right before each call and kie.ai's URL upload, or the object streamed from S3's
   GetObject to kie.ai's stream upload, each attempt under a new ``uploadPath``
   (``auto`` also streams when kie.ai answers that it could not fetch the URL); retried with backoff
   while the invocation has time. Without a version id to pin the bytes, a URL upload is confirmed by
   reading S3 again after kie.ai's answer, a stream upload by GetObject's own reading; a changed object is
   uploaded again;
5. the state is written at the claimed revision, which releases the claim. A write that loses a race
   reads again (the upload is kept: no second kie.ai call for the same version).

A failure never replaces a live upload of the same version (the record keeps its working URL).
Objects of one invocation run concurrently (up to ``MAX_CONCURRENCY``) in *lanes*: events of the same
object run one after the other, in delivery order.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from uploader.config import LAMBDA_MAX_SECONDS, Config
from uploader.errors import (
    ConfigurationError,
    ObjectNotFoundError,
    PermanentError,
    TransientError,
    UploaderError,
)
from uploader.events import iso_ms
from uploader.kie import KieClient, KieCouldNotFetch, KieUpload
from uploader.models import (
    ErrorKind,
    EventKind,
    Message,
    ObjectHead,
    ObjectRef,
    Outcome,
    Status,
    Transfer,
)
from uploader.retry import Deadline, Retrier
from uploader.s3 import S3Objects
from uploader.stream import MultipartBody, SourceChanged
from uploader.table import (
    EVENT_SEEN,
    RecordTable,
    Settle,
    Upload,
    claimed_by_other,
    covers_sequencer,
    has_status,
    is_live_upload,
    is_settled_refusal,
    newest_sequencer,
    revision,
)

log = logging.getLogger(__name__)

#: Rounds of read → claim → S3 → write one delivery tries before it is delivered again.
MAX_ROUNDS = 12
#: A claim outlives its holder's invocation by this much (then it may be taken over).
LEASE_MARGIN_SECONDS = 5.0
#: How often a waiting request looks again at a record another delivery holds.
CLAIM_POLL_SECONDS = 0.2
#: Uploads of one claim whose object changed while kie.ai fetched it, before the delivery gives up.
MAX_CHANGES = 3
#: How long after reading an unversioned object in its write second the presign waits (S3's clock has
#: one-second resolution; a little more than a second makes sure it moved on).
WRITE_SECOND_WAIT = 1.05
#: File names kie.ai (and any file system) refuses.
_RESERVED_NAMES = frozenset({"", ".", ".."})


class ApiKeyProvider(Protocol):
    def get(self) -> str: ...

    def invalidate(self) -> None: ...


def upload_path(prefix: str, bucket: str) -> str:
    """``{prefix}/{bucket}/{16 hex}``, new for every upload: kie.ai overwrites the same path + name (and may
    keep serving a cached old file), so a file someone may still be using is never replaced."""
    return f"{prefix}/{bucket}/{secrets.token_hex(8)}"


def file_name(key: str) -> str:
    """The key's base name (control characters replaced); ``object`` for a key ending in ``/``, ``.`` or
    ``..`` (names kie.ai refuses)."""
    name = key.rsplit("/", 1)[-1]
    name = "".join("_" if ord(c) < 32 or ord(c) == 127 else c for c in name)
    return "object" if name.strip() in _RESERVED_NAMES else name


def parse_time(text: Any) -> datetime | None:
    """An ISO 8601 time (kie.ai's ``uploadedAt``; UTC when it names no zone), or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def expires_at(uploaded_at: str | None, retention_seconds: int, now: datetime) -> int:
    """Epoch seconds when kie.ai forgets the file: its ``uploadedAt`` (or now) + the retention."""
    start = parse_time(uploaded_at) or now
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
    sleep: Callable[[float], None] = time.sleep

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

    def process(
        self,
        message_id: str,
        ref: ObjectRef,
        deadline: Deadline,
        *,
        min_valid: int = 0,
        waits: bool = False,
        precheck: bool = True,
        verify: bool = False,
    ) -> Outcome:
        """One object; never raises (an unexpected error becomes a transient failure to deliver again).

        ``min_valid``: a live upload with fewer seconds left is uploaded again. ``waits``: the caller waits
        for the answer (a synchronous request), so another delivery's claim is waited for, not bumped.
        ``precheck``: a message (no sequencer) first checks, without writing, whether the record is
        already true (off for refresh rounds, whose records are due by construction). ``verify``: a live
        URL older than ``KIE_VERIFY_AFTER_SECONDS`` is checked at kie.ai first, and uploaded again when
        kie.ai no longer serves it.
        """
        started = self.monotonic()
        outcome = Outcome(ref=ref, message_id=message_id, status=Status.FAILED)
        try:
            self._process(
                ref, outcome, deadline, min_valid=min_valid, waits=waits, precheck=precheck, verify=verify
            )
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

    def _process(
        self,
        ref: ObjectRef,
        outcome: Outcome,
        deadline: Deadline,
        *,
        min_valid: int,
        waits: bool,
        precheck: bool,
        verify: bool,
    ) -> None:
        watched = self.config.watched
        refusal = watched.refusal(ref.bucket, ref.key) if watched is not None else None
        if refusal is not None:
            # Not ours to publish: nothing is read, uploaded or written (bad input, not a lost object).
            outcome.status, outcome.retry, outcome.error = Status.NOT_WATCHED, False, refusal
            return
        record = self.table.get(ref.pk)
        if precheck and ref.sequencer is None and not ref.force:
            done, record = self._already_true(ref, record, min_valid, outcome, verify)
            if done:
                outcome.status = Status.DUPLICATE
                return
        self._converge(ref, record, outcome, deadline, min_valid=min_valid, waits=waits, verify=verify)

    def _converge(
        self,
        ref: ObjectRef,
        record: dict[str, Any] | None,
        outcome: Outcome,
        deadline: Deadline,
        *,
        min_valid: int,
        waits: bool,
        verify: bool = False,
    ) -> None:
        """Rounds of claim → read S3 → write, from the record last read, until one write lands (or the
        event is reflected, or another delivery holds the object)."""
        owner = uuid.uuid4().hex
        cache = _UploadCache()
        rounds, waited, first = 0, False, True
        held: int | None = None  # the revision this delivery's claim last held
        bumped = False
        while rounds < MAX_ROUNDS and deadline.remaining() > 0:
            if not first:
                record = self.table.get(ref.pk)
                # Still our claim, at a later revision: another delivery bumped it with news of a change.
                bumped = bumped or (held is not None and _bumped(record, owner, held))
            first = False
            if not ref.force and min_valid == 0 and covers_sequencer(record, ref.sequencer):
                outcome.status = Status.SUPERSEDED
                return
            now_ms = int(self.now().timestamp() * 1000)
            rev = revision(record)
            if claimed_by_other(record, owner, now_ms):
                # A waiting caller (or a claim whose holder has no one to deliver it again) waits; a
                # delivery hands its nudge to the holder, which must read S3 again before it writes.
                if waits or (record is not None and record.get("claimWaits")):
                    waited = True
                    self.sleep(CLAIM_POLL_SECONDS)
                    continue
                if self.table.bump(ref, rev):
                    outcome.status = Status.IN_PROGRESS
                    return
                rounds += 1
                continue
            rounds += 1
            lease_ms = int((max(deadline.remaining(), 0) + LEASE_MARGIN_SECONDS) * 1000)
            now = int(self.now().timestamp())
            if not self.table.claim(ref, rev, owner=owner, until_ms=now_ms + lease_ms, now=now, waits=waits):
                continue
            held = rev + 1
            try:
                if self._settle(ref, record, rev + 1, outcome, deadline, cache, min_valid, verify, bumped):
                    return
            except BaseException:
                self._release_quietly(ref, rev + 1)
                raise
        if waited:
            raise TransientError("another delivery is still processing the object: try again shortly")
        raise TransientError(
            f"the record kept changing while this delivery ran (at most {MAX_ROUNDS} rounds)"
        )

    def _already_true(
        self, ref: ObjectRef, record: dict[str, Any] | None, min_valid: int, outcome: Outcome, verify: bool
    ) -> tuple[bool, dict[str, Any] | None]:
        """Whether a message finds the record already true without writing, and the latest record read.

        Only a settled, unclaimed record is worth the check (a new key, the usual backfill message, goes
        straight to the claim). S3 is read first, then the record again: when that record, unclaimed,
        describes the reading, nothing needs writing, because any later writer claims after this read of
        the record and so reads S3 after our reading (docs/architecture.md, rule 6).
        """
        if not has_status(record) or (record is not None and record.get("claimOwner")):
            return False, record
        try:
            head: ObjectHead | None = self.s3.head(ref.bucket, ref.key, None)
        except ObjectNotFoundError:
            head = None
        except UploaderError:
            return False, record  # the claimed path reads S3 again and records the failure
        record = self.table.get(ref.pk)
        # Any claim, even one whose lease ran out: its holder may still write at its claimed revision.
        if record is None or record.get("claimOwner"):
            return False, record
        if head is None:
            return record.get("status") == Status.DELETED, record
        now = int(self.now().timestamp())
        if not is_live_upload(record, head, now, min_valid) or not self._still_served(
            record, now, verify, outcome
        ):
            return False, record
        outcome.confirmed = head
        return True, record

    def _settle(
        self,
        ref: ObjectRef,
        record: dict[str, Any] | None,
        rev: int,
        outcome: Outcome,
        deadline: Deadline,
        cache: _UploadCache,
        min_valid: int,
        verify: bool = False,
        bumped: bool = False,
    ) -> bool:
        """Holding the claim at ``rev``: read S3 and write what it says. ``False`` when the claim was lost.

        ``bumped``: another delivery bumped this claim (a change S3 announced that no write reflects yet)."""
        moment = self.now()
        observed_at, now = iso_ms(moment), int(moment.timestamp())

        def write(state: Settle) -> bool:
            return self.table.settle(
                ref, rev, state, observed_at=observed_at, now=now, attempts=outcome.attempts
            )

        stored = record.get("sequencer") if record else None
        try:
            head = self.s3.head(ref.bucket, ref.key, None)
            read_at = self.monotonic()
        except ObjectNotFoundError:
            return self._gone(ref, record, rev, outcome, write, newest_sequencer(record, ref.sequencer))
        except UploaderError as exc:
            # S3 was not read: nothing is known of the object, so no ordering state may move on (the
            # stored sequencer is written back as it was, never this event's).
            return self._failed(ref, record, rev, None, exc, outcome, write, stored, now, bumped=bumped)
        # From here on S3 was read after the claim, hence after this event's change: its sequencer holds.
        sequencer = newest_sequencer(record, ref.sequencer)
        forced = _forced(ref, record)
        for _ in range(MAX_CHANGES):
            # A permanent refusal of this version settles a (duplicate) event; a plain message tries again.
            refused = ref.sequencer is not None and is_settled_refusal(record, head)
            live = is_live_upload(record, head, now, min_valid) and self._still_served(
                record, now, verify, outcome
            )
            if not forced and (live or refused):
                if not self.table.release(ref, rev, sequencer=sequencer):
                    return False
                outcome.status, outcome.confirmed = Status.DUPLICATE, head
                return True
            upload = cache.get(head)
            if upload is None:
                try:
                    self._check_size(head)
                    confirmed = self._confirmed_upload(ref, head, outcome, deadline, read_at)
                except ObjectNotFoundError:  # the key was deleted while kie.ai fetched it: it did exist
                    return self._gone(ref, record, rev, outcome, write, sequencer, seen=True)
                except UploaderError as exc:
                    return self._failed(ref, record, rev, head, exc, outcome, write, sequencer, now)
                if isinstance(confirmed, ObjectHead):
                    # kie.ai may hold other bytes than ``head`` names: that upload is never recorded.
                    head, read_at = confirmed, self.monotonic()
                    continue
                upload = confirmed
                cache.put(head, upload)
            state = Settle(
                Status.UPLOADED,
                head=head,
                upload=upload,
                sequencer=sequencer,
                request_id=ref.request_id if forced else None,
            )
            if not write(state):
                return False
            outcome.status, outcome.confirmed = Status.UPLOADED, head
            return True
        changing = TransientError(f"the object changed {MAX_CHANGES} times while kie.ai fetched it")
        return self._failed(ref, record, rev, head, changing, outcome, write, sequencer, now)

    def _gone(
        self,
        ref: ObjectRef,
        record: dict[str, Any] | None,
        rev: int,
        outcome: Outcome,
        write: Callable[[Settle], bool],
        sequencer: str | None,
        *,
        seen: bool = False,
    ) -> bool:
        """S3 has no current version. ``DELETED`` when an object existed (this claim read it, a record with a
        status, or an event seen for the key); otherwise the key never had an object: the record this claim
        created is removed, and nothing is left (``NOT_FOUND``)."""
        if seen or _existed(ref, record):
            if not write(Settle(Status.DELETED, sequencer=sequencer)):
                return False
            outcome.status = Status.DELETED
            return True
        if not self.table.forget(ref, rev):
            return False
        outcome.status, outcome.error = Status.NOT_FOUND, "the object does not exist (and never had a record)"
        return True

    def probe(self, record: dict[str, Any] | None, now: int) -> bool | None:
        """For a URL older than ``KIE_VERIFY_AFTER_SECONDS`` (the shortest retention kie.ai documents):
        whether kie.ai still serves it (``None``: not checked, or kie.ai's answer said neither)."""
        after = self.config.kie_verify_after_seconds
        if not record or not after or not record.get("downloadUrl"):
            return None
        uploaded = parse_time(record.get("uploadedAt"))
        if uploaded is not None and now - uploaded.timestamp() < after:
            return None
        served = self.kie.probe(str(record["downloadUrl"]))
        if served is False:
            log.warning("kie.ai no longer serves an uploaded file: uploading it again")
        return served

    def _still_served(self, record: dict[str, Any] | None, now: int, verify: bool, outcome: Outcome) -> bool:
        """``False`` only when a check at kie.ai found the URL gone (a doubt never condemns a URL)."""
        if not verify:
            return True
        served = self.probe(record, now)
        if served is not None:
            outcome.probes.append(served)
        return served is not False

    def _check_size(self, head: ObjectHead) -> None:
        limit = self.config.max_object_bytes
        if limit is not None and head.size > limit:
            raise PermanentError(f"object is {head.size} bytes, over MAX_OBJECT_BYTES ({limit})")

    def _wait_past_write_second(self, head: ObjectHead, read_at: float) -> None:
        """An unversioned object read in the second it was written: wait until S3's clock has left that
        second before presigning, so that any later write has a later Last-Modified (see
        :meth:`_changed_while_fetched`)."""
        if head.pinned:
            return
        if head.last_modified is not None and head.s3_time is not None and head.s3_time > head.last_modified:
            return
        self.sleep(max(0.0, read_at + WRITE_SECOND_WAIT - self.monotonic()))

    def _confirmed_upload(
        self, ref: ObjectRef, head: ObjectHead, outcome: Outcome, deadline: Deadline, read_at: float
    ) -> Upload | ObjectHead:
        """kie.ai's upload of exactly ``head``'s bytes (rule 8), or a new reading of S3 to upload instead: the
        object changed while kie.ai fetched it, or before a stream sent anything (:class:`SourceChanged`)."""
        try:
            upload = self._upload(ref, head, outcome, deadline, read_at)
        except SourceChanged as exc:
            return exc.head
        except ObjectNotFoundError:
            # The version read was deleted while it was sent (a stream's GetObject by version id answered
            # 404): the key may still hold another version. Read it again (a 404 here: the key is gone).
            return self.s3.head(ref.bucket, ref.key, None)
        return self._changed_while_fetched(ref, head, upload) or upload

    def _changed_while_fetched(self, ref: ObjectRef, head: ObjectHead, upload: Upload) -> ObjectHead | None:
        """``None`` when kie.ai's copy is confirmed to be the bytes ``head`` names; else a new reading of S3
        (the object to upload again).

        A version id pins the bytes: kie.ai fetched exactly them. A stream upload sent the bytes of a
        GetObject whose reading is ``head``'s (:meth:`_stream_upload`): no second reading either. Otherwise
        (a URL on an unversioned or suspended bucket), S3 is read again after kie.ai's answer: the same ETag,
        size and Last-Modified mean no write happened since ``head`` was read (a write after it has a later
        Last-Modified second: the presign waited for S3's clock to leave the object's write second).
        kie.ai's ``fileSize`` must match too.
        """
        named = head.pinned or upload.transfer is Transfer.STREAM
        size = upload.result.file_size
        if size is not None and size != head.size:
            log.warning("kie.ai holds %s bytes where S3 holds %s: uploading again", size, head.size)
            return head if named else self.s3.head(ref.bucket, ref.key, None)
        if named:
            return None
        after = self.s3.head(ref.bucket, ref.key, None)
        return None if after.same_bytes(head) else after

    def _failed(
        self,
        ref: ObjectRef,
        record: dict[str, Any] | None,
        rev: int,
        head: ObjectHead | None,
        exc: UploaderError,
        outcome: Outcome,
        write: Callable[[Settle], bool],
        sequencer: str | None,
        now: int,
        *,
        bumped: bool = False,
    ) -> bool:
        """Record the failure, unless the record holds a live upload of this version (then kept).

        ``sequencer`` must be one an S3 read of this claim confirmed (the stored one when S3 was not read).
        A claim that was ``bumped`` and then could not read S3 keeps nothing: the bumping delivery was
        acknowledged on the promise that this one reads S3 again, so the record may describe an object that
        is gone or changed; the failure is recorded (due, when retryable) so that a redelivery or a
        keep-alive round finishes the work.
        A retryable failure stays due in the expiry index, so that a keep-alive round retries it even when
        no delivery is left to (a refresh, a resolve, a message gone to the DLQ).
        """
        outcome.error, outcome.error_kind = str(exc), exc.kind
        outcome.status, outcome.retry = Status.FAILED, exc.retryable
        kept = not (head is None and bumped)
        if kept and is_live_upload(record, head, now):  # without a reading of S3 (head None): any version
            return self.table.release(ref, rev, sequencer=sequencer)
        if kept and head is None and _verdict_stands(ref, record):
            return self.table.release(ref, rev, sequencer=sequencer)
        if head is None and not _existed(ref, record):
            # Nothing says an object ever was there (S3 unread, no settled record, no event): no record of
            # it may be left (a later 404 would call it DELETED); the message is delivered again.
            return self.table.forget(ref, rev)
        state = Settle(
            Status.FAILED,
            head=head,
            error=str(exc),
            error_kind=exc.kind,
            sequencer=sequencer,
            due_at=now if exc.retryable else None,
        )
        return write(state)

    def _release_quietly(self, ref: ObjectRef, rev: int) -> None:
        try:
            self.table.release(ref, rev)
        except Exception:  # the lease ends the claim anyway
            log.warning("could not release the claim on an object", exc_info=True)

    def _transfer(self, ref: ObjectRef, head: ObjectHead) -> Transfer:
        """``TRANSFER``; for ``auto``, the URL upload unless the object is over ``URL_TRANSFER_MAX_BYTES`` or
        its bucket is one kie.ai cannot fetch from (``KIE_CANNOT_FETCH``, doctor's finding)."""
        config = self.config
        if config.transfer is not Transfer.AUTO:
            return config.transfer
        if head.size > config.url_transfer_max_bytes or ref.bucket in config.kie_cannot_fetch:
            return Transfer.STREAM
        return Transfer.URL

    def _upload(
        self, ref: ObjectRef, head: ObjectHead, outcome: Outcome, deadline: Deadline, read_at: float
    ) -> Upload:
        """kie.ai's upload of ``head``'s bytes by the chosen transfer; with ``auto``, a URL upload that kie.ai
        answers it could not fetch is followed at once by a stream upload."""
        api_key = self.api_key.get()
        try:
            if self._transfer(ref, head) is Transfer.URL:
                self._wait_past_write_second(head, read_at)
                try:
                    return self._url_upload(ref, head, outcome, deadline, api_key)
                except _CouldNotFetch as exc:
                    log.warning("kie.ai could not fetch the object's URL (%s): streaming it instead", exc)
            return self._stream_upload(ref, head, outcome, deadline, api_key)
        except ConfigurationError:
            self.api_key.invalidate()  # the key may have been rotated: read the secret again next time
            raise

    def _url_upload(
        self, ref: ObjectRef, head: ObjectHead, outcome: Outcome, deadline: Deadline, api_key: str
    ) -> Upload:
        outcome.transfer = Transfer.URL
        name = file_name(ref.key)
        fall_back = self.config.transfer is Transfer.AUTO
        paths: list[str] = []

        def call(budget: float) -> KieUpload:
            # A new uploadPath per attempt: kie.ai may still handle an attempt the client gave up on (a
            # timeout), fetching the object later; on an unversioned bucket that fetch can get newer bytes,
            # and under a shared path it would overwrite the file a later attempt's record names.
            paths.append(upload_path(self.config.kie_upload_path, ref.bucket))
            # Presigned right before the call: its lifetime starts when kie.ai can use it.
            url = self.s3.presign_get(
                ref.bucket, ref.key, head.version_id, self.config.presign_expires_seconds
            )
            started = self.monotonic()
            try:
                return self.kie.upload(
                    api_key=api_key,
                    file_url=url,
                    upload_path=paths[-1],
                    file_name=name,
                    timeout=min(self.config.kie_timeout_seconds, budget),
                )
            except KieCouldNotFetch as exc:
                if fall_back:  # not retried as a URL: auto streams the object instead
                    raise _CouldNotFetch(str(exc)) from exc
                raise
            finally:
                outcome.kie_latencies_ms.append(round((self.monotonic() - started) * 1000, 1))

        result = self.retrier.run(call, deadline, lambda: self._count_attempt(outcome))
        return Upload(
            result=result,
            upload_path=paths[-1],
            expires_at=expires_at(result.uploaded_at, self.config.kie_retention_seconds, self.now()),
        )

    def _stream_upload(
        self, ref: ObjectRef, head: ObjectHead, outcome: Outcome, deadline: Deadline, api_key: str
    ) -> Upload:
        """Stream ``head``'s bytes from S3 to kie.ai. Every attempt opens a new GetObject (of the version,
        when pinned) and uses a new ``uploadPath``, so a stream cut mid-body never shares a path with the
        upload that is recorded; GetObject's reading must be ``head`` (else :class:`SourceChanged`)."""
        outcome.transfer = Transfer.STREAM
        seconds = self._stream_seconds(head, deadline)
        name = file_name(ref.key)
        paths: list[str] = []

        def call(budget: float) -> KieUpload:
            with self.s3.open(ref.bucket, ref.key, head.version_id) as source:
                if not source.reading.same_bytes(head):
                    raise SourceChanged(source.reading)
                paths.append(upload_path(self.config.kie_upload_path, ref.bucket))
                body = MultipartBody(
                    source,
                    head.size,
                    upload_path=paths[-1],
                    file_name=name,
                    media_type=source.reading.content_type,
                )
                started = self.monotonic()
                try:
                    return self.kie.stream_upload(api_key=api_key, body=body, timeout=min(seconds, budget))
                finally:
                    outcome.kie_latencies_ms.append(round((self.monotonic() - started) * 1000, 1))

        result = self.retrier.run(call, deadline, lambda: self._count_attempt(outcome))
        return Upload(
            result=result,
            upload_path=paths[-1],
            expires_at=expires_at(result.uploaded_at, self.config.kie_retention_seconds, self.now()),
            transfer=Transfer.STREAM,
        )

    def _stream_seconds(self, head: ObjectHead, deadline: Deadline) -> float:
        """How long a stream upload of ``head`` may take (``STREAM_BYTES_PER_SECOND``); an object that cannot
        make it within Lambda's 15 minutes is refused for good, one that cannot within this invocation's
        time left is tried again later (another invocation)."""
        config = self.config
        seconds = config.stream_seconds(head.size)
        rate = f"{config.stream_bytes_per_second / 1_048_576:g} MiB/s (STREAM_BYTES_PER_SECOND)"
        if head.size > config.stream_max_bytes:
            raise PermanentError(
                f"object is {head.size} bytes: a stream upload at {rate} needs up to {seconds:.0f} s, over "
                f"Lambda's 15-minute limit ({LAMBDA_MAX_SECONDS} s per invocation; at most "
                f"{config.stream_max_bytes} bytes)"
            )
        left = deadline.remaining()
        if seconds > left:
            raise TransientError(
                f"a stream upload of {head.size} bytes at {rate} needs up to {seconds:.0f} s, and this "
                f"invocation has {max(left, 0):.0f} s left (is the function's timeout long enough?)"
            )
        return seconds

    @staticmethod
    def _count_attempt(outcome: Outcome) -> None:
        outcome.attempts += 1


class _CouldNotFetch(Exception):
    """kie.ai could not fetch the URL and ``auto`` streams instead (not an UploaderError: never retried)."""


def _existed(ref: ObjectRef, record: dict[str, Any] | None) -> bool:
    """Something says an object was at the key: a settled record (not an older version's SKIPPED), an S3
    creation event seen for the key (marked on the record, or this very one). A removal event says nothing:
    on a versioned bucket S3 creates (and announces) a delete marker for a key that never had an object."""
    settled = has_status(record) and (record or {}).get("status") != Status.SKIPPED
    seen = bool(record and record.get(EVENT_SEEN))
    return settled or seen or (ref.sequencer is not None and ref.kind is EventKind.CREATED)


def _bumped(record: dict[str, Any] | None, owner: str, held: int) -> bool:
    """The record still carries ``owner``'s claim at a later revision than it held: a bump (a takeover
    changes the owner; a write that landed without its answer removes the claim)."""
    return record is not None and record.get("claimOwner") == owner and revision(record) > held


def _verdict_stands(ref: ObjectRef, record: dict[str, Any] | None) -> bool:
    """A failure that read nothing of S3 leaves the record's verdict on the object as it is: a permanent
    refusal or ``DELETED``, when this request brings no news of a change (no S3 event: a resolve, a plain
    message). Writing ``FAILED``/transient over it would say less than the record knew, and a keep-alive
    round would retry an object nothing had changed (found by ``make model``, 2026-12-05). An S3 event
    does bring news: its failure is recorded (transient, due), so that a keep-alive round retries it even
    when the event's message ends in the DLQ."""
    if record is None or ref.sequencer is not None:
        return False
    status = record.get("status")
    refused = status == Status.FAILED and record.get("errorKind") == ErrorKind.PERMANENT
    return refused or status == Status.DELETED


def _forced(ref: ObjectRef, record: dict[str, Any] | None) -> bool:
    """The message forces a new upload (and is not a redelivered copy of one already done)."""
    done = record is not None and ref.request_id is not None and record.get("requestId") == ref.request_id
    return ref.force and not done


@dataclass
class _UploadCache:
    """The upload this delivery made, kept across lost races so that the same version is sent once.

    Only a confirmed upload is kept (kie.ai's copy is the bytes its reading names), so an ETag names its
    bytes and the key (version id, ETag) is enough."""

    head: ObjectHead | None = None
    upload: Upload | None = None

    def get(self, head: ObjectHead) -> Upload | None:
        if self.head is not None and (self.head.version_id, self.head.etag) == (head.version_id, head.etag):
            return self.upload
        return None

    def put(self, head: ObjectHead, upload: Upload) -> None:
        self.head, self.upload = head, upload
