"""Every accepted event and message shape → a list of :class:`~uploader.models.Message`.

Accepted (see the README):

* a direct S3 event notification (``Records[].eventSource == "aws:s3"``): one message per record;
* an SQS event whose bodies are an S3 event notification, the same wrapped in an SNS notification,
  an EventBridge "Object Created"/"Object Deleted" event from S3, or a plain message
  ``{"bucket", "key", "versionId"?, "force"?, "requestId"?}`` / ``{"s3Uri": "s3://bucket/key", ...}``,
  or the Lambda destination record (``requestPayload``) that a failed direct invocation leaves in the DLQ,
  so that a redrive of the DLQ brings it back;
* an EventBridge S3 event delivered directly to the function.

S3 URL-encodes keys in notifications (``+`` for a space, ``%XX``), and in EventBridge events too (as
Powertools' data classes assume): they are decoded. Keys of plain messages are taken as written.

A body that cannot be read never raises: it becomes a message with a readable ``problem``, so one bad
message fails alone. ``s3:TestEvent`` and event types that are not handled become a message with a
``note`` (acknowledged, nothing to do).

Powertools' event source data classes are not used here: they raise ``KeyError`` on a missing field,
while every bad body must turn into a reason naming what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from uploader import sequencer as seq
from uploader.models import EventKind, Message, ObjectRef

#: S3 allows keys of at most 1024 bytes (UTF-8).
_MAX_KEY_BYTES = 1024
_SOURCE_S3 = "aws:s3"
_SOURCE_SQS = "aws:sqs"


class UnsupportedEventError(ValueError):
    """The invocation's event is of no shape this function accepts (nothing in it can be processed)."""


class _Malformed(ValueError):
    """Internal: the reason a message cannot be read."""


@dataclass(frozen=True)
class ParsedEvent:
    """``source`` is ``"sqs"``, ``"s3"``, ``"eventbridge"`` or ``"batch-operations"`` (it decides how the
    handler answers)."""

    source: str
    messages: list[Message]


def parse_event(event: Any) -> ParsedEvent:
    """Turn one invocation's event into messages; raises :class:`UnsupportedEventError` for other shapes."""
    if isinstance(event, Mapping):
        records = event.get("Records")
        if isinstance(records, list) and records:
            first = records[0] if isinstance(records[0], Mapping) else {}
            if first.get("eventSource") == _SOURCE_SQS:
                return ParsedEvent("sqs", [_sqs_message(i, r) for i, r in enumerate(records)])
            if first.get("eventSource") == _SOURCE_S3:
                return ParsedEvent("s3", [_s3_event_record(i, r) for i, r in enumerate(records)])
        if event.get("source") == "aws.s3" and "detail-type" in event:
            return ParsedEvent("eventbridge", [_guard(str(event.get("id") or "event"), _eventbridge, event)])
    raise UnsupportedEventError(
        "unsupported event: expected an SQS event, an S3 event notification or an EventBridge S3 event"
    )


def parse_body(message_id: str, body: str) -> Message:
    """Read one SQS message body (any accepted shape)."""
    return _guard(message_id, _body, body)


def event_time(raw: Any) -> str | None:
    """Normalise an ISO time to ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (the form of the record's ``updatedAt``)."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return iso_ms(parsed)


def iso_ms(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds: fixed width, so such strings compare in time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- message level -----------------------------------------------------------------------------------


def _guard(message_id: str, parse: Any, payload: Any) -> Message:
    try:
        objects, note = parse(payload)
    except _Malformed as exc:
        return Message(message_id, problem=str(exc))
    except (seq.InvalidSequencerError, TypeError, ValueError, AttributeError, KeyError) as exc:
        # Defensive: a shape no check above foresaw; still one readable reason, never a failed batch.
        return Message(message_id, problem=f"unreadable message ({type(exc).__name__}: {str(exc)[:120]})")
    return Message(message_id, objects=tuple(objects), note=note)


def _sqs_message(index: int, record: Any) -> Message:
    if not isinstance(record, Mapping):
        return Message(f"record-{index}", problem="SQS record is not an object")
    message_id = record.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        return Message(f"record-{index}", problem="SQS record has no messageId")
    body = record.get("body")
    if not isinstance(body, str):
        return Message(message_id, problem="SQS record has no body")
    return parse_body(message_id, body)


def _s3_event_record(index: int, record: Any) -> Message:
    return _guard(f"record-{index}", lambda r: _notification({"Records": [r]}), record)


def _json_object(text: str, what: str) -> Mapping[str, Any]:
    """``text`` parsed as a JSON object, or :class:`_Malformed` naming ``what`` was wrong with it."""
    try:
        payload = json.loads(text)
    except ValueError:
        raise _Malformed(f"{what} is not JSON: {text[:60]!r}") from None
    except RecursionError:
        # json's decoder recurses per nesting level: a body of 100,000 "[" must fail alone, not the batch.
        raise _Malformed(f"{what} is JSON nested too deeply") from None
    if not isinstance(payload, Mapping):
        raise _Malformed(f"{what} is JSON but not an object ({type(payload).__name__})")
    return payload


def _body(body: str) -> tuple[list[ObjectRef], str | None]:
    payload = _json_object(body, "body")
    if payload.get("Type") == "Notification" and "Message" in payload:
        return _sns(payload)
    return _payload(payload)


def _payload(payload: Mapping[str, Any]) -> tuple[list[ObjectRef], str | None]:
    if payload.get("Event") == "s3:TestEvent":
        return [], "s3:TestEvent"
    if isinstance(payload.get("requestContext"), Mapping) and "requestPayload" in payload:
        return _destination_record(payload)
    if "Records" in payload:
        return _notification(payload)
    if payload.get("source") == "aws.s3" and "detail-type" in payload:
        return _eventbridge(payload)
    if "s3Uri" in payload or "bucket" in payload or "key" in payload:
        return [_plain(payload)], None
    raise _Malformed("body is no S3 notification, SNS notification, EventBridge event or plain message")


def _sns(envelope: Mapping[str, Any]) -> tuple[list[ObjectRef], str | None]:
    inner = envelope.get("Message")
    if not isinstance(inner, str):
        raise _Malformed("SNS notification's Message is not a string")
    return _payload(_json_object(inner, "SNS notification's Message"))


def _destination_record(record: Mapping[str, Any]) -> tuple[list[ObjectRef], str | None]:
    # A direct (asynchronous) invocation that failed every retry reaches the DLQ as a Lambda destination
    # record; `kie-uploader redrive` sends it back here, so its original event must be readable.
    inner = record.get("requestPayload")
    if not isinstance(inner, Mapping) or isinstance(inner.get("requestContext"), Mapping):
        raise _Malformed("Lambda destination record's requestPayload is not an S3 or EventBridge event")
    if inner.get("source") == "aws.s3" and "detail-type" in inner:
        return _eventbridge(inner)
    if "Records" in inner:
        return _notification(inner)
    raise _Malformed("Lambda destination record's requestPayload is not an S3 or EventBridge event")


# --- S3 notification --------------------------------------------------------------------------------


def _notification(payload: Mapping[str, Any]) -> tuple[list[ObjectRef], str | None]:
    records = payload.get("Records")
    if not isinstance(records, list) or not records:
        raise _Malformed("S3 notification has no Records")
    refs: list[ObjectRef] = []
    skipped: list[str] = []
    for record in records:
        if not isinstance(record, Mapping) or record.get("eventSource") != _SOURCE_S3:
            raise _Malformed("S3 notification record is not from aws:s3")
        name = str(record.get("eventName") or "")
        kind = _kind_of_event_name(name)
        if kind is None:
            skipped.append(name or "no eventName")
            continue
        s3 = _mapping(record, "s3")
        obj = _mapping(s3, "object")
        raw_key = obj.get("key")
        if not isinstance(raw_key, str):
            raise _Malformed("S3 notification record has no s3.object.key")
        version_id = _opt_str(obj.get("versionId"))
        refs.append(
            ObjectRef(
                bucket=_bucket(_mapping(s3, "bucket").get("name")),
                key=_key(unquote_plus(raw_key)),
                kind=kind,
                version_id=version_id,
                etag=_etag(obj.get("eTag")),
                size=_size(obj.get("size")),
                sequencer=_sequencer(obj.get("sequencer")),
                event_time=event_time(record.get("eventTime")),
                permanent_delete=kind is EventKind.REMOVED and name.endswith(":Delete") and bool(version_id),
            )
        )
    return refs, (f"event type not handled: {', '.join(sorted(set(skipped)))}" if skipped else None)


def _kind_of_event_name(name: str) -> EventKind | None:
    # S3 sends "ObjectCreated:Put"; some producers prefix "s3:". Lifecycle expiration removes objects too.
    name = name.removeprefix("s3:")
    if name.startswith("ObjectCreated:"):
        return EventKind.CREATED
    if name.startswith(("ObjectRemoved:", "LifecycleExpiration:Delete")):
        return EventKind.REMOVED
    return None


# --- EventBridge --------------------------------------------------------------------------------------


def _eventbridge(event: Mapping[str, Any]) -> tuple[list[ObjectRef], str | None]:
    detail_type = event.get("detail-type")
    if detail_type == "Object Created":
        kind = EventKind.CREATED
    elif detail_type == "Object Deleted":
        kind = EventKind.REMOVED
    else:
        return [], f"event type not handled: {str(detail_type)[:60]}"
    detail = _mapping(event, "detail")
    obj = _mapping(detail, "object")
    raw_key = obj.get("key")
    if not isinstance(raw_key, str):
        raise _Malformed("EventBridge event has no detail.object.key")
    version_id = _opt_str(obj.get("version-id"))
    ref = ObjectRef(
        bucket=_bucket(_mapping(detail, "bucket").get("name")),
        key=_key(unquote_plus(raw_key)),
        kind=kind,
        version_id=version_id,
        etag=_etag(obj.get("etag")),
        size=_size(obj.get("size")),
        sequencer=_sequencer(obj.get("sequencer")),
        event_time=event_time(event.get("time")),
        permanent_delete=detail.get("deletion-type") == "Permanently Deleted" and bool(version_id),
    )
    return [ref], None


# --- plain message ------------------------------------------------------------------------------------


def _plain(payload: Mapping[str, Any]) -> ObjectRef:
    bucket: Any
    key: Any
    if "s3Uri" in payload:
        try:
            bucket, key = parse_s3_uri(payload["s3Uri"])
        except _Malformed as exc:
            raise _Malformed(f"s3Uri: {exc}") from None
    else:
        bucket, key = payload.get("bucket"), payload.get("key")
        if not isinstance(key, str):
            raise _Malformed("plain message needs a string 'key'")
    version_id = payload.get("versionId")
    if version_id is not None and (not isinstance(version_id, str) or not version_id):
        raise _Malformed("versionId must be a non-empty string when given")
    force = payload.get("force", False)
    if not isinstance(force, bool):
        raise _Malformed("force must be true or false when given")
    request_id = payload.get("requestId")
    if request_id is not None and (not isinstance(request_id, str) or not 0 < len(request_id) <= 128):
        raise _Malformed("requestId must be a string of 1 to 128 characters when given")
    return ObjectRef(
        bucket=_bucket(bucket), key=_key(key), version_id=version_id, force=force, request_id=request_id
    )


def object_message(message_id: str, bucket: Any, key: Any, version_id: Any = None) -> Message:
    """One object named by a source with its own envelope (an S3 Batch Operations task): its bucket, its key
    (already decoded) and version id checked as every message's, or a message with a readable ``problem``."""

    def read(_: None) -> tuple[list[ObjectRef], str | None]:
        if not isinstance(key, str):
            raise _Malformed("the object key is missing or not a string")
        if version_id is not None and not isinstance(version_id, str):
            raise _Malformed("the version id must be a string or null")
        return [ObjectRef(bucket=_bucket(bucket), key=_key(key), version_id=_opt_str(version_id))], None

    return _guard(message_id, read, None)


def parse_s3_uri(text: Any, *, allow_prefix: bool = False) -> tuple[str, str]:
    """``s3://bucket/key`` → ``(bucket, key)``, checked as the bucket and key of any message; with
    ``allow_prefix``, ``s3://bucket/prefix`` (possibly empty). Raises ``ValueError`` with the reason."""
    if not isinstance(text, str) or not text.startswith("s3://"):
        raise _Malformed("not an S3 URI (expected s3://bucket/key)")
    bucket, _, key = text[len("s3://") :].partition("/")
    if not key and not allow_prefix:
        raise _Malformed("the S3 URI names no key (expected s3://bucket/key)")
    return _bucket(bucket), _key(key) if key else key


# --- fields -------------------------------------------------------------------------------------------


def _mapping(parent: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = parent.get(name)
    if not isinstance(value, Mapping):
        raise _Malformed(f"'{name}' is missing or not an object")
    return value


def _bucket(value: Any) -> str:
    # Bucket names are 3–63 of [a-z0-9.-]; anything else cannot be an S3 bucket (and must not be presigned).
    if (
        not isinstance(value, str)
        or not (3 <= len(value) <= 63)
        or not all(c.islower() or c.isdigit() or c in ".-" for c in value)
        or not value.isascii()
    ):
        raise _Malformed(f"invalid bucket name: {str(value)[:70]!r}")
    return value


def _key(value: str) -> str:
    if not value:
        raise _Malformed("object key is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (JSON "\ud800"): no S3 key, no DynamoDB string, no log line can hold it.
        raise _Malformed("object key is not valid Unicode text (it holds a lone surrogate)") from None
    if len(value.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
        raise _Malformed("object key is longer than 1024 bytes")
    return value


def _opt_str(value: Any) -> str | None:
    # S3 notifications of unversioned buckets carry no versionId, sometimes the JSON null or "null".
    return value if isinstance(value, str) and value and value != "null" else None


def _etag(value: Any) -> str | None:
    return value.strip('"') if isinstance(value, str) and value.strip('"') else None


def _size(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _sequencer(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return seq.canonical(value)
    except seq.InvalidSequencerError as exc:
        raise _Malformed(str(exc)) from None
