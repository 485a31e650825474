"""Event factories built from AWS's documented sample events, and a stand-in Lambda context.

Shapes follow AWS's documentation: "Event message structure" (S3 notifications, ``s3:TestEvent``),
"Using Lambda with Amazon SQS" (the SQS record), "Amazon SNS message and JSON formats" (the SNS envelope)
and "Amazon S3 events delivered to EventBridge" ("Object Created" / "Object Deleted").
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

ACCOUNT = "123456789012"
REGION = "us-east-1"


def encode_key(key: str) -> str:
    """A key as S3 writes it in notifications: URL-encoded, ``+`` for a space."""
    return quote_plus(key, safe="/")


def s3_record(
    bucket: str,
    key: str,
    *,
    event_name: str = "ObjectCreated:Put",
    size: int | None = 1024,
    etag: str | None = "0123456789abcdef0123456789abcdef",
    version_id: str | None = None,
    sequencer: str | None = "0A1B2C3D4E5F678901",
    event_time: str = "2025-01-01T12:00:00.000Z",
    encoded: bool = True,
) -> dict[str, Any]:
    """One record of an S3 event notification (event version 2.1)."""
    obj: dict[str, Any] = {"key": encode_key(key) if encoded else key}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag
    if version_id is not None:
        obj["versionId"] = version_id
    if sequencer is not None:
        obj["sequencer"] = sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": event_time,
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAINPONIXQXHT3IKHL2"},
        "requestParameters": {"sourceIPAddress": "205.255.255.255"},
        "responseElements": {
            "x-amz-request-id": "D82B88E5F771F645",
            "x-amz-id-2": "vlR7PnpV2Ce81l0PRw6jlUpck7Jo5ZsQjryTjKlc5aLWGVHPZLj5NeC6qMa0emYBDXOo6QBU0Wo=",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "kie-uploader",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3I5XTEXAMAI3E"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }


def s3_removed_record(bucket: str, key: str, **kwargs: Any) -> dict[str, Any]:
    """An ``ObjectRemoved:Delete`` record (S3 sends no size nor eTag for removals)."""
    kwargs.setdefault("event_name", "ObjectRemoved:Delete")
    return s3_record(bucket, key, size=None, etag=None, **kwargs)


def s3_notification(*records: dict[str, Any]) -> dict[str, Any]:
    """An S3 event notification (also the direct Lambda event of an S3 trigger)."""
    return {"Records": list(records)}


def s3_test_event(bucket: str) -> dict[str, Any]:
    """The message S3 sends when a notification configuration is saved."""
    return {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2025-01-01T12:00:00.089Z",
        "Bucket": bucket,
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
    }


def sns_wrapped(payload: dict[str, Any], *, topic: str = "s3-events") -> dict[str, Any]:
    """An SNS notification as SQS receives it without raw message delivery."""
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:{topic}",
        "Subject": "Amazon S3 Notification",
        "Message": json.dumps(payload),
        "Timestamp": "2025-01-01T12:00:00.123Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fU=",
        "SigningCertURL": f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-0000000000.pem",
        "UnsubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe",
    }


def eventbridge_object_created(
    bucket: str,
    key: str,
    *,
    size: int = 1024,
    etag: str = "b1946ac92492d2347c6235b4d2611184",
    version_id: str | None = None,
    sequencer: str = "617f08299329d189",
    time: str = "2025-01-01T12:00:00Z",
) -> dict[str, Any]:
    """EventBridge "Object Created" from S3."""
    obj: dict[str, Any] = {"key": encode_key(key), "size": size, "etag": etag, "sequencer": sequencer}
    if version_id is not None:
        obj["version-id"] = version_id
    return _eventbridge("Object Created", bucket, obj, time, {"reason": "PutObject"})


def eventbridge_object_deleted(
    bucket: str,
    key: str,
    *,
    version_id: str | None = None,
    sequencer: str = "617f0837b476e463",
    deletion_type: str = "Delete Marker Created",
    time: str = "2025-01-01T12:00:01Z",
) -> dict[str, Any]:
    """EventBridge "Object Deleted" from S3."""
    obj: dict[str, Any] = {"key": encode_key(key), "sequencer": sequencer}
    if version_id is not None:
        obj["version-id"] = version_id
    extra = {"reason": "DeleteObject", "deletion-type": deletion_type}
    return _eventbridge("Object Deleted", bucket, obj, time, extra)


def _eventbridge(
    detail_type: str, bucket: str, obj: dict[str, Any], time: str, extra: dict[str, Any]
) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": time,
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": obj,
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": ACCOUNT,
            "source-ip-address": "1.2.3.4",
            **extra,
        },
    }


def plain_message(bucket: str, key: str, version_id: str | None = None) -> dict[str, Any]:
    """The plain message of the backfill tool and other producers."""
    message: dict[str, Any] = {"bucket": bucket, "key": key}
    if version_id is not None:
        message["versionId"] = version_id
    return message


def sqs_record(body: str | dict[str, Any], *, message_id: str | None = None) -> dict[str, Any]:
    """One record of an SQS event; a dict body is JSON-encoded as a producer would."""
    text = body if isinstance(body, str) else json.dumps(body)
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "MessageReceiptHandle",
        "body": text,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1523232000000",
            "SenderId": "123456789012",
            "ApproximateFirstReceiveTimestamp": "1523232000001",
        },
        "messageAttributes": {},
        "md5OfBody": "7b270e59b47ff90a553787216d55d91d",
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:kie-uploader",
        "awsRegion": REGION,
    }


def sqs_event(*records: dict[str, Any]) -> dict[str, Any]:
    """An SQS event (what the event source mapping invokes the function with)."""
    return {"Records": list(records)}


@dataclass
class LambdaContext:
    """The Lambda context object the runtime passes to the handler (a stand-in, not the code under test)."""

    remaining_ms: int = 60_000
    function_name: str = "kie-uploader"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/kie-uploader"
    log_stream_name: str = "2025/01/01/[$LATEST]0123456789abcdef"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
