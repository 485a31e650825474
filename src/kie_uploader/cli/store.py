"""The stack's table and queue as the commands read and change them: records as plain values, scans page
by page, batch reads, plain messages sent in batches, S3's reading of one object.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from kie_uploader import live
from kie_uploader.cli.args import S3Uri
from kie_uploader.cli.aws import Aws
from kie_uploader.function import liveness

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient


STATUSES = ("UPLOADED", "FAILED", "SKIPPED", "DELETED")


SQS_BATCH = 10  # SendMessageBatch's limit


DYNAMODB_BATCH_GET = 100  # BatchGetItem's limit


SCAN_PAGE = 1000  # items a Scan request reads at most (a 1 MB page is ~2,200 records)


EXPIRY_INDEX = "byExpiry"  # the table's sparse index of UPLOADED records: liveBucket, expiresAt


_DESERIALIZER = TypeDeserializer()


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain Python values (numbers become int or float)."""
    return {name: _plain(_DESERIALIZER.deserialize(value)) for name, value in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return value


def is_live_upload(
    record: dict[str, Any] | None, *, now: float | None = None, etag: str | None = None
) -> bool:
    """The record's URL may be handed out now (and, ``etag`` given, describes those bytes): the rule the
    function itself applies (:func:`kie_uploader.function.liveness.is_live`)."""
    return liveness.is_live(record, time.time() if now is None else now, etag=etag)


def bucket_key(record: dict[str, Any]) -> tuple[str, str]:
    if record.get("bucket") and record.get("key") is not None:
        return str(record["bucket"]), str(record["key"])
    uri = S3Uri.parse(str(record["pk"]), require_key=True)
    return uri.bucket, uri.key


def read_object(aws: Aws, uri: S3Uri) -> live.S3Reading | None:
    """S3's reading of the object; ``None`` when it cannot be read (no permission): then only the record
    speaks."""
    try:
        head = aws.s3.head_object(Bucket=uri.bucket, Key=uri.key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            return live.S3Reading(exists=False)
        if code in ("403", "AccessDenied"):
            return None
        raise
    modified = head.get("LastModified")
    return live.S3Reading(
        exists=True,
        etag=str(head.get("ETag") or "") or None,
        last_modified=modified.timestamp() if modified is not None else None,
    )


def scan(
    aws: Aws, *, status: str | Sequence[str] | None, prefix: S3Uri | None, retryable: bool = False
) -> Iterator[dict]:
    for page in scan_pages(aws, status=status, prefix=prefix, retryable=retryable):
        yield from page


def scan_pages(
    aws: Aws,
    *,
    status: str | Sequence[str] | None,
    prefix: S3Uri | None,
    retryable: bool = False,
    page_size: int | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """The records page by page, as the Scan returns them (at most 1 MB or SCAN_PAGE items), filtered by
    status (one, or any of several) and prefix; ``page_size`` bounds the first page of an unfiltered scan
    (``--limit``). Closing the iterator stops the scan."""
    conditions: list[str] = []
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    statuses = [status] if isinstance(status, str) else list(status or ())
    if statuses:
        placeholders = [f":s{i}" if len(statuses) > 1 else ":s" for i in range(len(statuses))]
        conditions.append("#s = :s" if len(statuses) == 1 else f"#s IN ({', '.join(placeholders)})")
        names["#s"] = "status"
        values.update({p: {"S": s} for p, s in zip(placeholders, statuses, strict=True)})
    if prefix:
        conditions.append("begins_with(pk, :p)")
        values[":p"] = {"S": str(prefix)}
    if retryable:
        conditions.append("retryable = :t")
        values[":t"] = {"BOOL": True}
    kwargs: dict[str, Any] = {"TableName": aws.stack.table_name}
    if conditions:
        kwargs["FilterExpression"] = " AND ".join(conditions)
        kwargs["ExpressionAttributeValues"] = values
    if names:
        kwargs["ExpressionAttributeNames"] = names
    # Pages of at most SCAN_PAGE items read: DynamoDB's own page stops at 1 MB, about 2,200 small records,
    # which holds twice the memory and makes the first line wait twice as long (bench section cli-list); a
    # --limit below that bounds the first page of an unfiltered scan.
    size = min(page_size, SCAN_PAGE) if page_size and not conditions else SCAN_PAGE
    kwargs["PaginationConfig"] = {"PageSize": size}
    for page in aws.dynamodb.get_paginator("scan").paginate(**kwargs):
        yield [deserialize(item) for item in page.get("Items", [])]


def batch_get_records(
    dynamodb: DynamoDBClient,
    table: str,
    pks: Sequence[str],
    *,
    projection: str | None = "pk, #s, expiresAt, etag",
) -> dict[str, dict[str, Any]]:
    """Records by pk (absent ones are missing), with unprocessed keys retried; ``projection=None``: whole."""
    found: dict[str, dict[str, Any]] = {}
    unique = list(dict.fromkeys(pks))
    for start in range(0, len(unique), DYNAMODB_BATCH_GET):
        keys: dict[str, Any] = {
            "Keys": [{"pk": {"S": pk}} for pk in unique[start : start + DYNAMODB_BATCH_GET]]
        }
        if projection is not None:
            keys["ProjectionExpression"] = projection
            keys["ExpressionAttributeNames"] = {"#s": "status"}
        request: dict[str, Any] = {table: keys}
        delay = 0.05
        while request:
            response = dynamodb.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(table, []):
                record = deserialize(item)
                found[record["pk"]] = record
            request = response.get("UnprocessedKeys") or {}
            if request:  # throttled: back off before asking for the rest
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
    return found


@dataclass
class SendResult:
    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def send_messages(sqs: SQSClient, queue_url: str, bodies: Sequence[str], *, attempts: int = 3) -> SendResult:
    """Send up to 10 bodies with SendMessageBatch, retrying entries that failed on AWS's side."""
    result = SendResult()
    pending = {str(i): body for i, body in enumerate(bodies)}
    for attempt in range(attempts):
        if not pending:
            break
        if attempt:
            time.sleep(0.2 * 2**attempt)
        response = sqs.send_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": i, "MessageBody": b} for i, b in pending.items()]
        )
        for entry in response.get("Successful", []):
            pending.pop(entry["Id"], None)
            result.sent += 1
        for entry in response.get("Failed", []):
            if entry.get("SenderFault"):  # our fault: sending it again will not help
                pending.pop(entry["Id"], None)
                result.failed += 1
                result.errors.append(f"{entry.get('Code')}: {entry.get('Message', '')}")
    for _ in pending:
        result.failed += 1
        result.errors.append("not accepted after retries")
    return result


def message_body(bucket: str, key: str, *, force: bool = False) -> str:
    """The plain message. ``force``: upload again even over a live upload; its fresh ``requestId`` makes
    a redelivery of this very message a duplicate (one new upload per ``backfill --force``, not per
    delivery)."""
    body: dict[str, Any] = {"bucket": bucket, "key": key}
    if force:
        body.update(force=True, requestId=str(uuid.uuid4()))
    return json.dumps(body, ensure_ascii=False)


def queue_attributes(aws: Aws, url: str, names: Sequence[str]) -> dict[str, str]:
    """The queue's attributes (``GetQueueAttributes``) as strings."""
    attributes = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names))
    return dict(attributes.get("Attributes", {}))


def int_or_none(value: Any) -> int | None:
    """An attribute as an int (SQS and CloudFormation answer strings); None when it is not one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
