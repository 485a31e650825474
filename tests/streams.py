"""DynamoDB stream records of the records table, in the shape Lambda delivers them.

The shape is AWS's documented one ("Using AWS Lambda with Amazon DynamoDB", the event of an event source
mapping on a stream; "Record" in the DynamoDB Streams API reference for ``userIdentity`` of a TTL
deletion): ``eventID``, ``eventName`` (INSERT | MODIFY | REMOVE), ``eventVersion`` "1.1",
``eventSource`` "aws:dynamodb", ``awsRegion``, ``dynamodb`` {``ApproximateCreationDateTime`` (epoch
seconds), ``Keys``, ``NewImage``, ``OldImage``, ``SequenceNumber`` (decimal digits), ``SizeBytes``,
``StreamViewType``}, ``eventSourceARN`` (``…:table/NAME/stream/LABEL``).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from boto3.dynamodb.types import TypeSerializer

STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/records/stream/2026-12-01T22:00:00.000"
CREATED = 1_764_626_400  # 2025-12-01T22:00:00Z, epoch seconds
_sequence: Iterator[int] = itertools.count(4_421_584_500_000_000_017_450_439_091)


def image(item: Mapping[str, Any]) -> dict[str, Any]:
    """A plain item as DynamoDB JSON (the form of ``NewImage``/``OldImage``/``Keys``)."""
    serializer = TypeSerializer()
    return {name: serializer.serialize(value) for name, value in item.items() if value is not None}


def stream_record(
    event_name: str,
    *,
    new: Mapping[str, Any] | None = None,
    old: Mapping[str, Any] | None = None,
    view_type: str = "NEW_AND_OLD_IMAGES",
    sequence_number: str | None = None,
    stream_arn: str = STREAM_ARN,
    created: int = CREATED,
    ttl: bool = False,
) -> dict[str, Any]:
    """One stream record; ``ttl`` marks a REMOVE as done by DynamoDB's Time to Live."""
    reference = new or old or {}
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": created,
        "Keys": image({"pk": reference.get("pk")}),
        "SequenceNumber": sequence_number or str(next(_sequence)),
        "SizeBytes": 26,
        "StreamViewType": view_type,
    }
    if new is not None and view_type in ("NEW_AND_OLD_IMAGES", "NEW_IMAGE"):
        dynamodb["NewImage"] = image(new)
    if old is not None and view_type in ("NEW_AND_OLD_IMAGES", "OLD_IMAGE"):
        dynamodb["OldImage"] = image(old)
    record: dict[str, Any] = {
        "eventID": uuid.uuid4().hex,
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }
    if ttl:
        record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return record


def inserted(new: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    return stream_record("INSERT", new=new, **kwargs)


def modified(old: Mapping[str, Any], new: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    return stream_record("MODIFY", new=new, old=old, **kwargs)


def removed(old: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    return stream_record("REMOVE", old=old, **kwargs)


def stream_event(*records: dict[str, Any]) -> dict[str, Any]:
    """The event a DynamoDB stream's event source mapping invokes the function with."""
    return {"Records": list(records)}


def uploaded_item(
    bucket: str = "photos",
    key: str = "incoming/a b.png",
    *,
    rev: int = 2,
    url: str = "https://tempfile.redpandaai.co/xxx/kie-uploader/a%20b.png",
    expires_at: int = 1_764_885_600,
    version_id: str = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
    etag: str = "d41d8cd98f00b204e9800998ecf8427e",
) -> dict[str, Any]:
    """A record as the uploader writes it for an uploaded object (with the lead's rev/claim attributes)."""
    return {
        "pk": f"s3://{bucket}/{key}",
        "bucket": bucket,
        "key": key,
        "versionId": version_id,
        "etag": etag,
        "size": 1024,
        "status": "UPLOADED",
        "downloadUrl": url,
        "uploadedAt": "2025-12-01T22:00:00.000Z",
        "expiresAt": expires_at,
        "filePath": "kie-uploader/a b.png",
        "fileName": "a b.png",
        "fileSize": 1024,
        "mimeType": "image/png",
        "uploadPath": "kie-uploader",
        "sequencer": "00000000000000001000",
        "attempts": 1,
        "updatedAt": "2025-12-01T21:59:59.500Z",
        "rev": rev,
    }


def failed_item(
    bucket: str = "photos",
    key: str = "incoming/a b.png",
    *,
    rev: int = 2,
    status: str = "FAILED",
    error: str = "kie.ai HTTP 422: cannot download the file",
    kind: str = "permanent",
    version_id: str = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
    etag: str = "d41d8cd98f00b204e9800998ecf8427e",
) -> dict[str, Any]:
    return {
        "pk": f"s3://{bucket}/{key}",
        "bucket": bucket,
        "key": key,
        "versionId": version_id,
        "etag": etag,
        "size": 1024,
        "status": status,
        "error": error,
        "errorKind": kind,
        "retryable": kind != "permanent",
        "attempts": 3,
        "updatedAt": "2025-12-01T21:59:59.500Z",
        "rev": rev,
    }
