"""What a queue message names: its body decoded (an S3 event notification, the same wrapped in SNS or in
an SQS event, an EventBridge S3 event, a Lambda destination record, or the plain ``{"bucket", "key"}``
message), for ``dlq peek``. Pure: no AWS calls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus


@dataclass
class Decoded:
    """What a message body names: objects ``(bucket, key, event)``, its shape, and a note or problem."""

    shape: str
    objects: list[tuple[str, str, str]] = field(default_factory=list)
    note: str | None = None  # why the message failed, when the body says (a Lambda destination record)
    problem: str | None = None  # the body cannot be read


def decode_body(body: str) -> Decoded:
    """Decode a message body: an S3 event notification, the same wrapped in SNS or in an SQS event, an
    EventBridge S3 event, a Lambda destination record, or the plain ``{"bucket", "key"}`` message."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return Decoded("unreadable", problem=f"not JSON: {body[:60]!r}")
    if not isinstance(payload, dict):
        return Decoded("unreadable", problem=f"JSON but not an object ({type(payload).__name__})")
    try:
        return _decode(payload, depth=0)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        return Decoded("unreadable", problem=f"unreadable message ({type(exc).__name__})")


def _decode(payload: Mapping[str, Any], *, depth: int) -> Decoded:
    if depth > 3:
        return Decoded("unreadable", problem="nested too deeply")
    if payload.get("Type") == "Notification" and isinstance(payload.get("Message"), str):
        inner = decode_body(payload["Message"])
        return Decoded(f"sns/{inner.shape}", inner.objects, inner.note, inner.problem)
    if payload.get("Event") == "s3:TestEvent":
        return Decoded("s3-test", note="s3:TestEvent (nothing to upload)")
    if isinstance(payload.get("requestContext"), Mapping) and "requestPayload" in payload:
        inner = (
            _decode(payload["requestPayload"], depth=depth + 1)
            if isinstance(payload["requestPayload"], Mapping)
            else Decoded("unreadable", problem="requestPayload is not an object")
        )
        response = payload.get("responsePayload")
        why = payload["requestContext"].get("condition") or "failed"
        if isinstance(response, Mapping) and response.get("errorMessage"):
            why = f"{why}: {response.get('errorType', 'error')}: {response['errorMessage']}"
        return Decoded(f"lambda-destination/{inner.shape}", inner.objects, why, inner.problem)
    records = payload.get("Records")
    if isinstance(records, list) and records:
        return _decode_records(records, depth=depth)
    if payload.get("source") == "aws.s3" and "detail-type" in payload:
        detail = payload.get("detail") or {}
        bucket, key = str(detail["bucket"]["name"]), unquote_plus(str(detail["object"]["key"]))
        return Decoded("eventbridge", [(bucket, key, str(payload["detail-type"]))])
    if "s3Uri" in payload:
        bucket, _, key = str(payload["s3Uri"]).removeprefix("s3://").partition("/")
        return Decoded("plain", [(bucket, key, _plain_event(payload))])
    if "bucket" in payload or "key" in payload:
        return Decoded(
            "plain", [(str(payload.get("bucket", "")), str(payload.get("key", "")), _plain_event(payload))]
        )
    return Decoded(
        "unknown", problem="no S3 notification, SNS notification, EventBridge event or plain message"
    )


def _plain_event(payload: Mapping[str, Any]) -> str:
    return "message (force)" if payload.get("force") else "message"


def _decode_records(records: list[Any], *, depth: int) -> Decoded:
    first = records[0] if isinstance(records[0], Mapping) else {}
    if first.get("eventSource") == "aws:sqs":  # a whole SQS event (a failed direct invocation's payload)
        decoded = [decode_body(str(r.get("body", ""))) for r in records if isinstance(r, Mapping)]
        problems = [d.problem for d in decoded if d.problem]
        return Decoded(
            "sqs-event",
            [o for d in decoded for o in d.objects],
            problem="; ".join(problems) if problems else None,
        )
    objects = []
    for record in records:
        s3 = record["s3"]
        objects.append(
            (
                str(s3["bucket"]["name"]),
                unquote_plus(str(s3["object"]["key"])),
                str(record.get("eventName", "")),
            )
        )
    return Decoded("s3-notification", objects)
