"""Event factories built from AWS's documented sample events, stand-in Lambda contexts, and the local world
the integration tests run the handler in.

Shapes follow AWS's documentation: "Event message structure" (S3 notifications, ``s3:TestEvent``),
"Using Lambda with Amazon SQS" (the SQS record), "Amazon SNS message and JSON formats" (the SNS envelope)
and "Amazon S3 events delivered to EventBridge" ("Object Created" / "Object Deleted").

This module must stay importable without the function's folder on ``sys.path`` (the benchmarks import it
before they add it): :meth:`World.invoke` imports the handler when it is called.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import boto3

if TYPE_CHECKING:
    import pytest

    from kie_uploader.emulator import KieEmulator

#: The uploader's resources the CLI and the demo read from its discovery record, under the names the stack's
#: outputs had before the records (``kie_uploader.discovery.Uploader.as_outputs``; docs/architecture.md).
OUTPUT_KEYS = {
    "BucketNames",
    "QueueUrl",
    "DeadLetterQueueUrl",
    "TableName",
    "SecretArn",
    "FunctionName",
    "AlarmTopicArn",
    # Only when events are on (the default): the bus record changes go to, and a rule pattern for them.
    "EventBusName",
    "EventPattern",
}
#: The resources a stack deployed with ``-c events=false`` does not have.
EVENT_OUTPUT_KEYS = {"EventBusName", "EventPattern"}

ACCOUNT = "123456789012"
REGION = "us-east-1"

# The integration tests' local account (created by the ``world`` fixture of tests/conftest.py).
#: In ALLOWED_BUCKETS, unversioned.
BUCKET = "photos"
#: In ALLOWED_BUCKETS, versioning enabled.
VERSIONED = "versioned"
#: Not in ALLOWED_BUCKETS.
OTHER = "elsewhere"
TABLE = "records"
SECRET = "kie/api-key"


def records_table_definition(name: str) -> dict[str, Any]:
    """CreateTable arguments of the records table as the stack makes it: ``pk``, and the sparse expiry index
    (``liveBucket`` + ``expiresAt``, present only on live uploads)."""
    return {
        "TableName": name,
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "liveBucket", "AttributeType": "S"},
            {"AttributeName": "expiresAt", "AttributeType": "N"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "byExpiry",
                "KeySchema": [
                    {"AttributeName": "liveBucket", "KeyType": "HASH"},
                    {"AttributeName": "expiresAt", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


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


def lambda_destination_record(
    payload: dict[str, Any], *, function_name: str = "kie-uploader", error_type: str = "RetryNeededError"
) -> dict[str, Any]:
    """The invocation record Lambda sends to an on-failure destination (here the DLQ) once an asynchronous
    invocation (a direct S3 event) has failed all its retries ("Capturing records of Lambda asynchronous
    invocations")."""
    request_id = str(uuid.uuid4())
    return {
        "version": "1.0",
        "timestamp": "2025-01-01T12:03:05.568Z",
        "requestContext": {
            "requestId": request_id,
            "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {
            "errorType": error_type,
            "errorMessage": "1 of 1 records need another try",
            "requestId": request_id,
        },
    }


# S3 Batch Operations (``LambdaInvoke``). Version 1.0: the example request of AWS's S3 User Guide, "Invoke AWS
# Lambda function" (https://docs.aws.amazon.com/AmazonS3/latest/userguide/batch-ops-invoke-lambda.html; its
# source: github.com/awsdocs/amazon-s3-userguide, doc_source/batch-ops-invoke-lambda.md). Version 2.0:
# Powertools for AWS Lambda (Python)'s test event s3BatchOperationEventSchemaV2.json,
# github.com/aws-powertools/powertools-lambda-python (its tests/events folder). Only the bucket, key,
# version id and ids are adapted.
BATCH_INVOCATION_ID = "YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo"
BATCH_JOB_ID = "f3cc4f60-61f6-4a2b-8a21-d07600c373ce"
BATCH_TASK_ID = "dGFza2lkZ29lc2hlcmUK"


def batch_task(
    version: str,
    bucket: str,
    key: str,
    *,
    version_id: str | None = None,
    task_id: str = BATCH_TASK_ID,
    encoded: bool = True,
) -> dict[str, Any]:
    """One task as Batch Operations sends it: the key URL-encoded (as the manifest holds it); schema 1.0
    names the bucket by ARN (``s3BucketArn``), 2.0 by name (``s3Bucket``)."""
    task: dict[str, Any] = {
        "taskId": task_id,
        "s3Key": encode_key(key) if encoded else key,
        "s3VersionId": version_id,
    }
    if version == "1.0":
        task["s3BucketArn"] = f"arn:aws:s3:::{bucket}"
    else:
        task["s3Bucket"] = bucket
    return task


def batch_operations_event(
    version: str, *tasks: dict[str, Any], invocation_id: str = BATCH_INVOCATION_ID
) -> dict[str, Any]:
    """An S3 Batch Operations invocation of schema ``version`` ("1.0" or "2.0") with these tasks."""
    job: dict[str, Any] = {"id": BATCH_JOB_ID}
    if version == "2.0":
        job["userArguments"] = {"k1": "v1", "k2": "v2"}
    return {
        "invocationSchemaVersion": version,
        "invocationId": invocation_id,
        "job": job,
        "tasks": list(tasks),
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


@dataclass
class CountdownContext(LambdaContext):
    """A Lambda context whose remaining time runs down from its creation, as the real one does."""

    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.remaining_ms - (time.monotonic() - self.started) * 1000))


# --- the integration tests' world ------------------------------------------------------------------------


@dataclass
class World:
    """The local AWS account, the emulator and the function's environment for one test.

    Built by the ``world`` fixture, which creates the buckets, the table and the secret; boto3 reaches
    ministack through the ``AWS_*`` variables of the ``aws_env`` fixture.
    """

    kie: KieEmulator
    monkeypatch: pytest.MonkeyPatch
    s3: Any = field(default_factory=lambda: boto3.client("s3"))
    ddb: Any = field(default_factory=lambda: boto3.client("dynamodb"))
    secrets: Any = field(default_factory=lambda: boto3.client("secretsmanager"))
    _sequencers: Iterator[int] = field(default_factory=lambda: itertools.count(0x1000))

    def env(self, **values: str | None) -> None:
        """Set (or, for None, remove) variables of the function's environment for this test."""
        for name, value in values.items():
            if value is None:
                self.monkeypatch.delenv(name, raising=False)
            else:
                self.monkeypatch.setenv(name, value)

    def put(self, key: str, body: bytes = b"hello kie", bucket: str = BUCKET) -> dict[str, Any]:
        """Put the object; the facts its S3 notification carries (``etag``, ``version_id``, ``size``)."""
        answer = self.s3.put_object(Bucket=bucket, Key=key, Body=body)
        return {"etag": answer["ETag"].strip('"'), "version_id": answer.get("VersionId"), "size": len(body)}

    def next_sequencer(self) -> str:
        """A sequencer greater than every one handed out before (S3's order of events of one key)."""
        return f"00{next(self._sequencers):016X}"

    def created(self, key: str, body: bytes = b"hello kie", bucket: str = BUCKET) -> dict[str, Any]:
        """Put the object and return its S3 notification record (as S3 would send it)."""
        facts = self.put(key, body, bucket)
        return s3_record(bucket, key, sequencer=self.next_sequencer(), **facts)

    def removed(self, key: str, bucket: str = BUCKET, **kwargs: Any) -> dict[str, Any]:
        """The S3 notification record of the object's removal (the caller deletes the object)."""
        return s3_removed_record(bucket, key, sequencer=self.next_sequencer(), **kwargs)

    def invoke(self, event: dict[str, Any], remaining_ms: int = 60_000) -> Any:
        """Call the function's handler in-process, as the Lambda runtime would."""
        from uploader import handler as handler_module  # see the module's docstring

        return handler_module.handler(event, LambdaContext(remaining_ms=remaining_ms))

    def sqs(self, *bodies: Any) -> tuple[dict[str, Any], list[str]]:
        """An SQS event with one message per body, and the messages' ids (``m0``, ``m1``, ...)."""
        records = [sqs_record(body, message_id=f"m{i}") for i, body in enumerate(bodies)]
        return sqs_event(*records), [r["messageId"] for r in records]

    def record(self, key: str, bucket: str = BUCKET) -> dict[str, Any] | None:
        """The object's record (attribute values as DynamoDB's strings, numbers as text), or None."""
        item = self.ddb.get_item(
            TableName=TABLE, Key={"pk": {"S": f"s3://{bucket}/{key}"}}, ConsistentRead=True
        )
        if "Item" not in item:
            return None
        return {name: next(iter(value.values())) for name, value in item["Item"].items()}

    def existing_record(self, key: str, bucket: str = BUCKET) -> dict[str, Any]:
        """The object's record; fails the test, naming the object, when it has none."""
        record = self.record(key, bucket)
        if record is None:
            raise AssertionError(f"no record for s3://{bucket}/{key}")
        return record


def failures(answer: dict[str, Any]) -> list[str]:
    """The message ids of an SQS answer's ``batchItemFailures``, in order."""
    return [item["itemIdentifier"] for item in answer["batchItemFailures"]]
