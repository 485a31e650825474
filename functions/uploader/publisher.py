"""Lambda entry point ``uploader.publisher.handler``: the records table's stream → EventBridge events.

The outbox pattern: the uploader only writes its record; this function reads the table's DynamoDB stream
(``NEW_AND_OLD_IMAGES``) and announces every change of a record's ``status`` or ``downloadUrl`` on
EventBridge, so no write is ever announced that did not happen, and none is lost (docs/events.md).

What is published (one event per stream record at most, :func:`change_of`):

* a new status (or the first one): "Object Uploaded", "Object Upload Failed", "Object Skipped",
  "Object Deleted";
* the same status for another object version (``versionId`` or ``etag`` changed): the same kinds;
* ``UPLOADED`` → ``UPLOADED`` of the same version with another ``downloadUrl`` or ``expiresAt``:
  "Object URL Refreshed".

Nothing else: a write of only ``claimOwner``/``claimUntil``/``rev``/``attempts``/``updatedAt`` (or a new
error text of the same failed version) publishes nothing, and neither does a removed item (TTL purge or an
operator's delete: the object was not deleted, and kie.ai's URL expires on its own at ``expiresAt``).

Delivery is at least once, in stream order per object: entries go to ``PutEvents`` in stream order, at
most 10 per call and never two of one object in one call; failed entries are retried a few times, then
the invocation reports the stream record of the first entry still unpublished as its batch item failure,
so Lambda delivers it and everything after it again (later entries of the same call that did succeed are
published again with the same ``eventId``). Lambda's retries, bisection and on-failure destination (the
event source mapping's settings, src/kie_uploader/cdk/publisher.py) take it from there.

``eventId`` is derived from the table, the record's key, its ``generation`` and its ``rev`` (or, without
``rev``, the stream record's sequence number): a redelivered batch publishes the same ids, and consumers
dedupe on it. A record re-created after a purge starts a new generation: order a key's changes by
(``generation``, ``rev``).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger

from uploader.redact import redact

SOURCE = "kie-uploader"
SERVICE = "kie-uploader-publisher"
#: The bus events go to when ``EVENT_BUS_NAME`` is not set: the account's default bus.
DEFAULT_BUS = "default"
#: PutEvents takes at most 10 entries per call...
MAX_ENTRIES_PER_CALL = 10
#: ... and at most 256 KB in all (AWS's entry size: Source + DetailType + Detail + resources, UTF-8).
MAX_CALL_BYTES = 240_000
#: PutEvents calls per chunk of entries (the first and the retries of the entries that failed).
MAX_ATTEMPTS = 4
BASE_DELAY_SECONDS = 0.2
#: Kept free at the end of an invocation for answering; no retry is started inside it.
SAFETY_MARGIN_SECONDS = 2.0
#: When there is no Lambda context (a local call), the Lambda maximum.
_DEFAULT_REMAINING_MS = 900_000
#: eventId = uuid5(this namespace, "<table>\n<pk>\n<rev>"): fixed forever, consumers may rely on it.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c1f4e-5b1a-4c1e-9f3e-6b6b2d0a7e51")
#: Whole-call errors that another try cannot fix (a missing bus, a missing permission).
_PERMANENT_CALL_ERRORS = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "AccessDenied",
        "ValidationException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "NotAuthorized",
    }
)
#: Entry error codes worth another try (others: e.g. a malformed detail, which no retry changes).
_RETRYABLE_ENTRY_ERRORS = frozenset({"InternalFailure", "ThrottlingException", "InternalException"})
#: A presigned URL's credential parameters (SigV4 and SigV2), as ``uploader.redact`` knows them.
_PRESIGNED = re.compile(
    r"[?&](?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|AWSAccessKeyId|Signature)=",
    re.IGNORECASE,
)
_TTL_PRINCIPAL = "dynamodb.amazonaws.com"

logger = Logger(service=SERVICE)


class Kind(StrEnum):
    """The ``detail-type`` of each kind of change."""

    UPLOADED = "Object Uploaded"
    REFRESHED = "Object URL Refreshed"
    FAILED = "Object Upload Failed"
    SKIPPED = "Object Skipped"
    DELETED = "Object Deleted"


_STATUS_KINDS = {
    "UPLOADED": Kind.UPLOADED,
    "FAILED": Kind.FAILED,
    "SKIPPED": Kind.SKIPPED,
    "DELETED": Kind.DELETED,
}


class MalformedRecordError(ValueError):
    """A stream record this function cannot read (e.g. the stream's view type lacks the images)."""


@dataclass(frozen=True)
class Change:
    """One announced change: the event's ``detail-type`` and ``detail``, and where it came from."""

    kind: Kind
    detail: dict[str, Any]
    pk: str
    sequence_number: str
    time: datetime | None


# --- the pure part: a stream record → a change or nothing ------------------------------------------------


def change_of(record: Mapping[str, Any]) -> Change | None:
    """The change a stream record announces, or ``None`` (see the module docstring)."""
    stream = record.get("dynamodb")
    if not isinstance(stream, Mapping):
        raise MalformedRecordError("stream record without its 'dynamodb' part")
    sequence_number = str(stream.get("SequenceNumber", ""))
    event_name = record.get("eventName")
    if event_name == "REMOVE":
        return None
    if event_name not in ("INSERT", "MODIFY"):
        raise MalformedRecordError(f"unknown eventName {event_name!r}")
    if "NewImage" not in stream or (event_name == "MODIFY" and "OldImage" not in stream):
        raise MalformedRecordError(
            f"{event_name} record without its images: the stream must be NEW_AND_OLD_IMAGES "
            f"(this one is {stream.get('StreamViewType')!r})"
        )
    new = item_of(stream["NewImage"])
    old = item_of(stream["OldImage"]) if event_name == "MODIFY" else None
    kind = kind_of(old, new)
    if kind is None:
        return None
    pk = str(new.get("pk") or item_of(stream.get("Keys") or {}).get("pk") or "")
    event_id = event_id_of(
        table_of(str(record.get("eventSourceARN", ""))),
        pk,
        new.get("rev"),
        sequence_number,
        generation=new.get("generation"),
    )
    return Change(
        kind=kind,
        detail=detail_of(new, old, event_id=event_id, pk=pk),
        pk=pk,
        sequence_number=sequence_number,
        time=_time_of(stream.get("ApproximateCreationDateTime")),
    )


def kind_of(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> Kind | None:
    """The kind of change from ``old`` to ``new`` (``old`` is None for a new item), or None."""
    status = new.get("status")
    kind = _STATUS_KINDS.get(str(status)) if status is not None else None
    if kind is None:
        return None  # no status yet (e.g. a claim on a new item) or one this version does not announce
    if old is None or old.get("status") != status:
        return kind
    if not _same_version(old, new):
        return kind
    if status == "UPLOADED" and (
        old.get("downloadUrl") != new.get("downloadUrl") or old.get("expiresAt") != new.get("expiresAt")
    ):
        return Kind.REFRESHED
    return None


def is_ttl_removal(record: Mapping[str, Any]) -> bool:
    """Whether DynamoDB's Time to Live deleted the item (AWS's documented ``userIdentity``)."""
    identity = record.get("userIdentity") or {}
    return (
        record.get("eventName") == "REMOVE"
        and identity.get("type") == "Service"
        and identity.get("principalId") == _TTL_PRINCIPAL
    )


def detail_of(
    new: Mapping[str, Any], old: Mapping[str, Any] | None, *, event_id: str, pk: str
) -> dict[str, Any]:
    """The event's ``detail``: the object, its status, URL or error; never a presigned URL nor a key."""
    status = str(new.get("status"))
    bucket, key = new.get("bucket"), new.get("key")
    if (bucket is None or key is None) and pk.startswith("s3://"):
        bucket, _, key = pk[len("s3://") :].partition("/")
    uploaded = status == "UPLOADED"
    error = new.get("error")
    return {
        "eventId": event_id,
        "s3Uri": pk,
        "bucket": bucket,
        "key": key,
        "versionId": new.get("versionId"),
        "etag": new.get("etag"),
        "size": new.get("size"),
        "status": status,
        "previousStatus": old.get("status") if old is not None else None,
        "downloadUrl": safe_url(new.get("downloadUrl")) if uploaded else None,
        "expiresAt": new.get("expiresAt") if uploaded else None,
        "uploadPath": new.get("uploadPath") if uploaded else None,
        "error": redact(str(error)) if error is not None and not uploaded else None,
        "errorKind": new.get("errorKind") if not uploaded else None,
        "retryable": new.get("retryable") if not uploaded else None,
        "rev": new.get("rev"),
        "generation": new.get("generation"),
        "updatedAt": new.get("updatedAt"),
    }


def safe_url(url: Any) -> str | None:
    """kie.ai's download URL as stored, or None if it carries presigning credentials (never published)."""
    if not isinstance(url, str) or not url:
        return None
    if _PRESIGNED.search(url):
        logger.warning("downloadUrl withheld: it carries presigning credentials")
        return None
    return url


def event_id_of(table: str, pk: str, rev: Any, sequence_number: str, *, generation: Any = None) -> str:
    """A deterministic id: the same record revision (or stream record) gives the same id on redelivery.

    A record re-created after a purge or a removal starts a new ``generation`` (and counts ``rev`` from 1
    again), so its changes never repeat an earlier life's id."""
    if isinstance(rev, int) and not isinstance(rev, bool):
        name = f"{table}\n{pk}\n{rev}"
        if isinstance(generation, str) and generation:
            name = f"{table}\n{pk}\n{generation}\n{rev}"
    else:
        name = f"{table}\nseq\n{sequence_number}"
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


def table_of(stream_arn: str) -> str:
    """The table name in ``arn:aws:dynamodb:region:account:table/NAME/stream/LABEL`` ('' if not there)."""
    _, _, resource = stream_arn.rpartition(":table/")
    return resource.split("/", 1)[0] if resource else ""


def entry_of(change: Change, bus_name: str) -> dict[str, Any]:
    """The PutEvents request entry for a change."""
    entry: dict[str, Any] = {
        "Source": SOURCE,
        "DetailType": change.kind.value,
        "Detail": json.dumps(change.detail, ensure_ascii=False, separators=(",", ":")),
        "EventBusName": bus_name,
    }
    if change.time is not None:
        entry["Time"] = change.time
    return entry


def entry_size(entry: Mapping[str, Any]) -> int:
    """AWS's size of a PutEvents entry (the parts this function sets; Time counts 14 bytes)."""
    size = sum(len(str(entry.get(part, "")).encode()) for part in ("Source", "DetailType", "Detail"))
    return size + (14 if "Time" in entry else 0)


def item_of(image: Mapping[str, Any]) -> dict[str, Any]:
    """A stream image (DynamoDB JSON) as plain values: numbers as int (or float), sets as lists."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {name: _plain(deserializer.deserialize(value)) for name, value in image.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set | frozenset | list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, bytes | bytearray):
        return None  # binary attributes are not part of the record's contract
    return value


def _same_version(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return bool(old.get("versionId") == new.get("versionId") and old.get("etag") == new.get("etag"))


def _time_of(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def chunks(changes: Sequence[Change], entries: Sequence[dict[str, Any]]) -> list[list[int]]:
    """Indexes of consecutive entries per PutEvents call: at most 10, under the size limit, and no object
    twice (so a later change of an object is never published before an earlier one)."""
    calls: list[list[int]] = []
    current: list[int] = []
    pks: set[str] = set()
    size = 0
    for index, change in enumerate(changes):
        entry_bytes = entry_size(entries[index])
        if current and (
            len(current) == MAX_ENTRIES_PER_CALL or change.pk in pks or size + entry_bytes > MAX_CALL_BYTES
        ):
            calls.append(current)
            current, pks, size = [], set(), 0
        current.append(index)
        pks.add(change.pk)
        size += entry_bytes
    if current:
        calls.append(current)
    return calls


# --- the effectful part: PutEvents with retries, and the answer to Lambda ------------------------------


@dataclass
class Publisher:
    """Publishes the changes of a stream batch; answers with the first stream record to deliver again."""

    client: Any
    bus_name: str = DEFAULT_BUS
    sleep: Callable[[float], None] = time.sleep

    def publish(
        self, records: Iterable[Mapping[str, Any]], remaining_ms: Callable[[], int]
    ) -> dict[str, Any]:
        changes: list[Change] = []
        unreadable: str | None = None
        ignored_removals = 0
        for record in records:
            try:
                change = change_of(record)
            except MalformedRecordError as exc:
                # Never skipped: it and everything after it are delivered again, then go to the DLQ.
                unreadable = str((record.get("dynamodb") or {}).get("SequenceNumber", ""))
                logger.error(
                    "unreadable stream record", extra={"reason": str(exc), "sequenceNumber": unreadable}
                )
                if not unreadable:
                    raise  # no sequence number to name: the whole batch fails (and is bisected)
                break
            if change is not None:
                changes.append(change)
            elif record.get("eventName") == "REMOVE":
                ignored_removals += 1
                if not is_ttl_removal(record):
                    logger.info("record removed (not by TTL): nothing published")
        entries = [entry_of(change, self.bus_name) for change in changes]
        published = 0
        for call in chunks(changes, entries):
            failed = self._put([entries[i] for i in call], remaining_ms)
            if failed:
                first = changes[call[failed[0]]]
                logger.error(
                    "events not published: the batch is delivered again from the first of them",
                    extra={"published": published, "unpublished": len(changes) - published},
                )
                return _answer(first.sequence_number)
            published += len(call)
        if changes or ignored_removals:
            kinds: dict[str, int] = {}
            for change in changes:
                kinds[change.kind.value] = kinds.get(change.kind.value, 0) + 1
            logger.info("events published", extra={"published": published, "kinds": kinds})
        return _answer(unreadable)

    def _put(self, entries: list[dict[str, Any]], remaining_ms: Callable[[], int]) -> list[int]:
        """Indexes (into ``entries``) still unpublished after the retries; ``[]`` when all went out."""
        pending = list(range(len(entries)))
        for attempt in range(1, MAX_ATTEMPTS + 1):
            pending, retryable = self._call(entries, pending, attempt)
            if not pending:
                return []
            delay = BASE_DELAY_SECONDS * 2 ** (attempt - 1)
            if not retryable or attempt == MAX_ATTEMPTS:
                break
            if remaining_ms() / 1000.0 - SAFETY_MARGIN_SECONDS < delay + 1.0:
                break
            self.sleep(delay)
        return pending

    def _call(
        self, entries: list[dict[str, Any]], pending: list[int], attempt: int
    ) -> tuple[list[int], bool]:
        """One PutEvents call of the pending entries: those that failed, and whether a retry may help."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.put_events(Entries=[entries[i] for i in pending])
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            logger.warning("PutEvents refused", extra={"errorCode": code, "attempt": attempt})
            return pending, code not in _PERMANENT_CALL_ERRORS
        except BotoCoreError as exc:
            logger.warning("PutEvents failed", extra={"error": type(exc).__name__, "attempt": attempt})
            return pending, True
        results = answer.get("Entries") or []
        failed: list[int] = []
        codes: set[str] = set()
        for position, index in enumerate(pending):
            result = results[position] if position < len(results) else {}
            if result.get("ErrorCode") or not result.get("EventId"):
                failed.append(index)
                codes.add(str(result.get("ErrorCode") or "NoEventId"))
        if failed:
            logger.warning(
                "PutEvents failed some entries",
                extra={
                    "failedEntryCount": answer.get("FailedEntryCount", len(failed)),
                    "errorCodes": sorted(codes),
                    "attempt": attempt,
                },
            )
        return failed, codes <= _RETRYABLE_ENTRY_ERRORS


def _answer(sequence_number: str | None) -> dict[str, Any]:
    """Lambda's partial batch response for a stream: it resumes at the lowest sequence number named."""
    failures = [{"itemIdentifier": sequence_number}] if sequence_number else []
    return {"batchItemFailures": failures}


# --- the Lambda entry point ----------------------------------------------------------------------------

_CLIENT_VARIABLES = ("EVENT_BUS_NAME", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EVENTBRIDGE", "AWS_REGION")
_publisher: tuple[tuple[str | None, ...], Publisher] | None = None


def _get_publisher() -> Publisher:
    """The container's publisher, built once; rebuilt only if the environment changed (tests do that)."""
    global _publisher
    fingerprint = tuple(os.environ.get(name) for name in _CLIENT_VARIABLES)
    if _publisher is None or _publisher[0] != fingerprint:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "events",
            region_name=os.environ.get("AWS_REGION") or None,
            config=Config(
                connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}
            ),
        )
        bus_name = os.environ.get("EVENT_BUS_NAME") or DEFAULT_BUS
        _publisher = (fingerprint, Publisher(client=client, bus_name=bus_name))
    return _publisher[1]


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Publish the batch's changes; ``{"batchItemFailures": [...]}`` names where Lambda must resume."""
    records = event.get("Records") or []
    remaining = getattr(context, "get_remaining_time_in_millis", lambda: _DEFAULT_REMAINING_MS)
    return _get_publisher().publish(records, remaining)
