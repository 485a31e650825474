"""``kie-uploader``: the operator's command line for a deployed stack.

It finds the stack's resources from its CloudFormation outputs and talks to AWS through the standard
credential chain; ``AWS_ENDPOINT_URL`` points it at a local stack instead. Errors a user can meet (no
credentials, no such stack, no such bucket, a malformed S3 URI) are one line on stderr and a non-zero
exit code, never a traceback.

Exit codes: 0 success; 1 the command ran but the answer is "no" (an object is not uploaded, a message
could not be sent); 2 the command could not run (bad arguments, AWS errors); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.types import TypeDeserializer
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from kie_uploader import live
from kie_uploader.function import liveness
from kie_uploader.function import redact as shared_redact

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

EXIT_OK = 0
EXIT_NO = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

DEFAULT_STACK = "KieUploader"
STATUSES = ("UPLOADED", "FAILED", "SKIPPED", "DELETED")
SQS_BATCH = 10  # SendMessageBatch's limit
DYNAMODB_BATCH_GET = 100  # BatchGetItem's limit
EXPIRY_INDEX = "byExpiry"  # the table's sparse index of UPLOADED records: liveBucket, expiresAt
REQUIRED_OUTPUTS = ("BucketNames", "QueueUrl", "DeadLetterQueueUrl", "TableName")

# S3 bucket names: 3-63 characters, lowercase letters, digits, dots and hyphens, starting and ending with
# a letter or digit (the general-purpose rules; a typo such as "s3://My_Bucket" is caught before any call).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CREDENTIAL_ERRORS = frozenset(
    {
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
    }
)
_DESERIALIZER = TypeDeserializer()


class CliError(Exception):
    """A failure the user can act on: printed as one line, with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def redact(text: str) -> str:
    """What the CLI prints, without presigned URLs' secrets: the function's own rule
    (:mod:`kie_uploader.function.redact`), keeping kie.ai's URLs whole and the text uncut."""
    return shared_redact.redact(text, limit=None, every_query=False)


# --- S3 URIs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Uri:
    """``s3://bucket/key``; ``key`` is a prefix (possibly empty) where a command takes one."""

    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, text: str, *, require_key: bool = False) -> S3Uri:
        """Parse ``s3://bucket[/key]``; raise ``CliError`` naming what is wrong."""
        expected = "s3://bucket/key" if require_key else "s3://bucket[/prefix]"
        if not text.startswith("s3://"):
            raise CliError(f"malformed S3 URI {text!r}: expected {expected}")
        bucket, _, key = text[len("s3://") :].partition("/")
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise CliError(f"malformed S3 URI {text!r}: {bucket!r} is not a valid bucket name")
        if require_key and not key:
            raise CliError(f"malformed S3 URI {text!r}: expected {expected} (the key is missing)")
        if len(key.encode()) > 1024:
            raise CliError(f"malformed S3 URI {text!r}: keys are at most 1024 bytes")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def _s3_uri_arg(require_key: bool) -> Any:
    def parse(text: str) -> S3Uri:
        try:
            return S3Uri.parse(text, require_key=require_key)
        except CliError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    parse.__name__ = "S3 URI"  # what argparse names in "invalid S3 URI value"
    return parse


# --- AWS access ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackResources:
    """What the CLI needs from the stack's CloudFormation outputs."""

    stack_name: str
    bucket_names: tuple[str, ...]
    queue_url: str
    dead_letter_queue_url: str
    table_name: str
    outputs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_outputs(cls, stack_name: str, outputs: dict[str, str]) -> StackResources:
        missing = [name for name in REQUIRED_OUTPUTS if not outputs.get(name)]
        if missing:
            raise CliError(
                f"stack {stack_name} has no output {', '.join(missing)}: is it a kie-uploader stack?"
            )
        buckets = tuple(name.strip() for name in outputs["BucketNames"].split(",") if name.strip())
        return cls(
            stack_name=stack_name,
            bucket_names=buckets,
            queue_url=outputs["QueueUrl"],
            dead_letter_queue_url=outputs["DeadLetterQueueUrl"],
            table_name=outputs["TableName"],
            outputs=dict(outputs),
        )


class Aws:
    """One boto3 session and its clients, each built once on first use."""

    def __init__(self, region: str | None = None, stack_name: str = DEFAULT_STACK) -> None:
        self.session = boto3.Session(region_name=region)
        self.stack_name = stack_name
        # Standard retries absorb throttling; short connect timeouts make a wrong endpoint fail fast.
        self._config = Config(
            retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60
        )

    def _client(self, service: str) -> Any:
        return self.session.client(service, config=self._config)

    @cached_property
    def cloudformation(self) -> CloudFormationClient:
        return self._client("cloudformation")

    @cached_property
    def s3(self) -> S3Client:
        return self._client("s3")

    @cached_property
    def sqs(self) -> SQSClient:
        return self._client("sqs")

    @cached_property
    def dynamodb(self) -> DynamoDBClient:
        return self._client("dynamodb")

    @cached_property
    def lambda_(self) -> LambdaClient:
        """For synchronous invocations: waits as long as the function may run."""
        return live.lambda_client(self.session)

    @property
    def function_name(self) -> str:
        name = self.stack.outputs.get("FunctionName")
        if not name:
            raise CliError(f"stack {self.stack_name} has no output FunctionName: is it a kie-uploader stack?")
        return name

    @cached_property
    def stack(self) -> StackResources:
        """The stack's resources, from its outputs; ``CliError`` when there is no such stack."""
        from kie_uploader.deploy import DeployError, stack_outputs  # boto3 only; no CDK imports

        try:
            outputs = stack_outputs(self.cloudformation, self.stack_name)
        except DeployError as exc:  # DescribeStacks answered, but with no stack
            raise CliError(self._no_such_stack()) from exc
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "ValidationError" and "does not exist" in error.get("Message", ""):
                raise CliError(self._no_such_stack()) from exc
            raise
        return StackResources.from_outputs(self.stack_name, outputs)

    def _no_such_stack(self) -> str:
        region = self.session.region_name or "the default region"
        return f"no such stack: {self.stack_name} in {region} (deploy it, or pass --stack NAME)"


# --- records ---------------------------------------------------------------------------------------


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


def format_epoch(epoch: Any, *, now: float | None = None) -> str:
    """``2025-01-04 12:00:00Z (in 2d 23h)`` or ``... (expired 3h 0m ago)``."""
    try:
        seconds = float(epoch)
    except (TypeError, ValueError):
        return str(epoch)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    left = seconds - (time.time() if now is None else now)
    if left <= 0:
        return f"{stamp} (expired {format_duration(-left)} ago)"
    return f"{stamp} (in {format_duration(left)})"


def format_duration(seconds: float) -> str:
    """A rough human duration: ``2d 23h``, ``5h 10m``, ``42s``."""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def format_size(size: Any) -> str:
    """Bytes as ``512 B``, ``1.5 KiB``, ``3.0 MiB``."""
    if not isinstance(size, int | float):
        return "" if size is None else str(size)
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


_RECORD_ORDER = (
    "pk", "status", "state", "bucket", "key", "versionId", "size", "etag", "sequencer", "downloadUrl",
    "expiresAt", "uploadedAt", "fileName", "filePath", "fileSize", "mimeType", "uploadPath", "error",
    "errorKind", "retryable", "attempts", "updatedAt",
)  # fmt: skip


def render_record(record: dict[str, Any], *, now: float | None = None) -> str:
    """A record as aligned ``name: value`` lines, the important attributes first; ``state`` (what the
    record means: live with the time left, expired, waiting for a retry, ...) after ``status``. The URL of
    an upload that is not live is never shown as if it could be used."""
    now = time.time() if now is None else now
    state = live.describe_record(record, now)
    shown = dict(record)
    shown["state"] = state.sentence
    names = [n for n in _RECORD_ORDER if n in shown] + sorted(n for n in shown if n not in _RECORD_ORDER)
    width = max(len(n) for n in names)
    lines = []
    for name in names:
        value = shown[name]
        if name == "downloadUrl" and not is_live_upload(record, now=now):
            text = f"(not served: {state.label})"
        elif name == "expiresAt":
            text = format_epoch(value, now=now)
        elif name in ("size", "fileSize"):
            text = f"{value} ({format_size(value)})" if isinstance(value, int) else str(value)
        elif isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, dict | list):
            text = json.dumps(value, ensure_ascii=False, sort_keys=True)
        else:
            text = str(value)
        lines.append(f"{name.ljust(width)}  {text}")
    return redact("\n".join(lines))


def render_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, max_width: int = 80, whole: Sequence[int] = ()
) -> str:
    """A plain-text table with a header rule; cells longer than ``max_width`` are cut with ``…``,
    except in the columns numbered in ``whole``."""
    # Redact before cutting, so a cut can never leave part of a secret behind.
    cells = [
        [redact(str(c)) if i in whole else _cut(redact(str(c)), max_width) for i, c in enumerate(row)]
        for row in rows
    ]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return redact("\n".join(lines))


def _cut(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _record_detail(record: dict[str, Any], now: float) -> str:
    if record.get("status") == "UPLOADED":
        # An expired URL is never shown as if it could be used: the STATE column says it expired.
        return str(record.get("downloadUrl", "")) if is_live_upload(record, now=now) else ""
    if record.get("status") in (None, "", "DELETED"):
        return ""
    error = str(record.get("error", ""))
    kind = record.get("errorKind")
    if kind:
        retry = ", retryable" if record.get("retryable") else ""
        return f"[{kind}{retry}] {error}"
    return error


def records_table(records: Sequence[dict[str, Any]], *, now: float | None = None) -> str:
    """The ``list`` command's table: the record's status, and its state (``live, 2 d 3 h left``,
    ``expired 3 h ago``, ``waiting for a retry``, ``being processed; ...``)."""
    now = time.time() if now is None else now
    rows = [
        (
            str(r.get("pk", "")),
            str(r.get("status") or "-"),
            live.describe_record(r, now).label,
            format_size(r.get("size")),
            format_epoch(r["expiresAt"], now=now) if r.get("expiresAt") is not None else "",
            str(r.get("updatedAt", "")),
            _record_detail(r, now),
        )
        for r in records
    ]
    headers = ("S3 URI", "STATUS", "STATE", "SIZE", "EXPIRES", "UPDATED", "DOWNLOAD URL / ERROR")
    return render_table(headers, rows, whole=(0,))  # a cut S3 URI would hide which object it is


def with_state(record: dict[str, Any], *, now: float | None = None) -> dict[str, Any]:
    """The record with ``state`` and ``stateDescription`` (``describe_record``) for JSON output."""
    state = live.describe_record(record, time.time() if now is None else now)
    return {**record, "state": state.state, "stateDescription": state.sentence}


def to_json(value: Any) -> str:
    """JSON for scripts, with presigned URLs' secrets redacted."""
    return redact(json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str))


# --- progress --------------------------------------------------------------------------------------


class Progress:
    """A one-line progress counter on stderr, drawn only when stderr is a terminal."""

    def __init__(self, label: str, *, enabled: bool | None = None) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._last = 0.0

    def update(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < 0.1):
            return
        self._last = now
        sys.stderr.write(f"\r\x1b[K{self.label}: {text}")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


# --- commands --------------------------------------------------------------------------------------


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


def _message(bucket: str, key: str, *, force: bool = False) -> str:
    """The plain message. ``force``: upload again even over a live upload; its fresh ``requestId`` makes
    a redelivery of this very message a duplicate (one new upload per ``backfill --force``, not per
    delivery)."""
    body: dict[str, Any] = {"bucket": bucket, "key": key}
    if force:
        body.update(force=True, requestId=str(uuid.uuid4()))
    return json.dumps(body, ensure_ascii=False)


def _batch_get_records(
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


def _check_bucket(aws: Aws, bucket: str) -> None:
    try:
        aws.s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            raise CliError(f"no such bucket: {bucket}") from exc
        if code in ("403", "AccessDenied"):
            raise CliError(f"access denied to bucket {bucket}") from exc
        raise
    if bucket not in aws.stack.bucket_names:
        watched = ", ".join(aws.stack.bucket_names) or "none"
        raise CliError(
            f"bucket {bucket} is not watched by stack {aws.stack.stack_name} (its buckets: {watched})"
        )


def cmd_backfill(aws: Aws, args: argparse.Namespace) -> int:
    """Enqueue every object under the prefix that has no live UPLOADED record (all with --force)."""
    uri: S3Uri = args.uri
    _check_bucket(aws, uri.bucket)
    stack = aws.stack
    counts = {"listed": 0, "alreadyUploaded": 0, "folders": 0, "enqueued": 0, "failed": 0}
    errors: list[str] = []
    progress = Progress(f"backfill {uri}")
    paginator = aws.s3.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=uri.bucket, Prefix=uri.key):
            objects = []
            for obj in page.get("Contents", []):
                if obj["Key"].endswith("/") and obj.get("Size", 0) == 0:
                    counts["folders"] += 1  # a console "folder" marker, not an object to upload
                    continue
                objects.append(obj)
            counts["listed"] += len(objects)
            if not args.force and objects:
                records = _batch_get_records(
                    aws.dynamodb, stack.table_name, [f"s3://{uri.bucket}/{o['Key']}" for o in objects]
                )
                todo = []
                for obj in objects:
                    record = records.get(f"s3://{uri.bucket}/{obj['Key']}")
                    if is_live_upload(record, etag=obj.get("ETag")):
                        counts["alreadyUploaded"] += 1
                    else:
                        todo.append(obj)
                objects = todo
            for start in range(0, len(objects), SQS_BATCH):
                chunk = objects[start : start + SQS_BATCH]
                sent = send_messages(
                    aws.sqs,
                    stack.queue_url,
                    [_message(uri.bucket, o["Key"], force=args.force) for o in chunk],
                )
                counts["enqueued"] += sent.sent
                counts["failed"] += sent.failed
                errors += sent.errors
                progress.update(
                    f"{counts['listed']} listed, {counts['enqueued']} enqueued, "
                    f"{counts['alreadyUploaded']} already uploaded, {counts['failed']} failed"
                )
    except (ClientError, BotoCoreError, CliError):
        progress.done()
        print(f"backfill stopped after enqueuing {counts['enqueued']} objects", file=sys.stderr)
        raise
    progress.done()
    if args.json:
        print(to_json({"uri": str(uri), **counts, "errors": errors[:10]}))
    else:
        print(
            f"{uri}: {counts['listed']} objects listed, {counts['alreadyUploaded']} already uploaded, "
            f"{counts['enqueued']} enqueued, {counts['failed']} failed"
        )
        for error in dict.fromkeys(errors):
            print(f"send failed: {redact(error)}", file=sys.stderr)
    return EXIT_NO if counts["failed"] else EXIT_OK


def cmd_status(aws: Aws, args: argparse.Namespace) -> int:
    """Print one object's record and what it means; exit 0 only when it is UPLOADED and not expired."""
    uri: S3Uri = args.uri
    response = aws.dynamodb.get_item(
        TableName=aws.stack.table_name, Key={"pk": {"S": str(uri)}}, ConsistentRead=True
    )
    record = deserialize(response["Item"]) if "Item" in response else None
    now = time.time()
    if args.json:
        print(to_json(None if record is None else with_state(record, now=now)))
    elif record is None:
        print(f"{uri}: {live.describe_record(None, now).sentence}")
    else:
        print(render_record(record, now=now))
    return EXIT_OK if is_live_upload(record, now=now) else EXIT_NO


def _scan(aws: Aws, *, status: str | None, prefix: S3Uri | None, retryable: bool = False) -> Iterator[dict]:
    conditions: list[str] = []
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    if status:
        conditions.append("#s = :s")
        names["#s"] = "status"
        values[":s"] = {"S": status}
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
    for page in aws.dynamodb.get_paginator("scan").paginate(**kwargs):
        for item in page.get("Items", []):
            yield deserialize(item)


def cmd_list(aws: Aws, args: argparse.Namespace) -> int:
    """A table (or JSON) of records, filtered by status and S3 prefix; with ``--expiring-within`` the
    UPLOADED records whose file expires within that time, from the expiry index (never a scan)."""
    prefix: S3Uri | None = args.prefix or args.prefix_uri
    if args.prefix and args.prefix_uri and args.prefix != args.prefix_uri:
        raise CliError("give the prefix once: s3://bucket/prefix or --prefix s3://bucket/prefix")
    now = time.time()
    if args.expiring_within is not None:
        if args.status not in (None, "UPLOADED"):
            raise CliError("--expiring-within lists UPLOADED records only: drop --status")
        records = _expiring(aws, prefix, until=int(now) + args.expiring_within)
    else:
        records = sorted(_scan(aws, status=args.status, prefix=prefix), key=lambda r: str(r.get("pk", "")))
    if args.json:
        print(to_json([with_state(r, now=now) for r in records]))
        return EXIT_OK
    if records:
        print(records_table(records, now=now))
    print(f"{len(records)} record{'s' if len(records) != 1 else ''}")
    return EXIT_OK


def _expiring(aws: Aws, prefix: S3Uri | None, *, until: int) -> list[dict[str, Any]]:
    """The UPLOADED records (of the prefix's bucket, or of every bucket of the stack) whose file expires by
    ``until``, soonest first: a query of the sparse ``byExpiry`` index per bucket, then the records."""
    stack = aws.stack
    if prefix is not None and prefix.bucket not in stack.bucket_names:
        watched = ", ".join(stack.bucket_names) or "none"
        raise CliError(
            f"bucket {prefix.bucket} is not watched by stack {stack.stack_name} (its buckets: {watched})"
        )
    buckets = [prefix.bucket] if prefix is not None else list(stack.bucket_names)
    pks: list[str] = []
    for bucket in buckets:
        request: dict[str, Any] = {
            "TableName": stack.table_name,
            "IndexName": EXPIRY_INDEX,
            "KeyConditionExpression": "#b = :b AND #e <= :t",
            "ExpressionAttributeNames": {"#b": "liveBucket", "#e": "expiresAt"},
            "ExpressionAttributeValues": {":b": {"S": bucket}, ":t": {"N": str(until)}},
        }
        if prefix is not None and prefix.key:
            request["FilterExpression"] = "begins_with(#pk, :p)"
            request["ExpressionAttributeNames"]["#pk"] = "pk"
            request["ExpressionAttributeValues"][":p"] = {"S": str(prefix)}
        try:
            for page in aws.dynamodb.get_paginator("query").paginate(**request):
                pks += [item["pk"]["S"] for item in page.get("Items", [])]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if (
                error.get("Code") == "ValidationException"
                and "index" in str(error.get("Message", "")).lower()
            ):
                raise CliError(
                    f"the stack's table has no {EXPIRY_INDEX} index: deploy this version of the stack first"
                ) from exc
            raise
    records = _batch_get_records(aws.dynamodb, stack.table_name, pks, projection=None)
    # Read again: a record may have been refreshed (or deleted) between the index and the read.
    due = [r for pk in dict.fromkeys(pks) if (r := records.get(pk)) and r.get("status") == "UPLOADED"]
    return sorted(due, key=lambda r: (float(r.get("expiresAt") or 0), str(r.get("pk", ""))))


def cmd_url(aws: Aws, args: argparse.Namespace) -> int:
    """Print a kie.ai URL of the object valid for at least --min-valid, from the stack's function."""
    uri: S3Uri = args.uri
    try:
        [result] = live.resolve(aws.lambda_, aws.function_name, [str(uri)], args.min_valid)
    except live.LiveUrlError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        # Not redacted: the URL is the answer (kie.ai's URL carries no AWS secret; errors are redacted).
        shown = {**result, "error": redact(str(result["error"])) if result.get("error") else None}
        print(json.dumps(shown, ensure_ascii=False, indent=2, sort_keys=True))
        return EXIT_OK if result.get("downloadUrl") else EXIT_NO
    try:
        url = live.url_of(result)
    except live.LiveUrlError as exc:
        raise CliError(str(exc), EXIT_NO) from exc
    print(url)
    return EXIT_OK


def cmd_refresh(aws: Aws, args: argparse.Namespace) -> int:
    """Ask the function to upload again the live uploads under the prefixes that expire within the time."""
    prefixes: list[S3Uri] = args.uris
    for prefix in prefixes:
        if prefix.bucket not in aws.stack.bucket_names:
            watched = ", ".join(aws.stack.bucket_names) or "none"
            raise CliError(
                f"bucket {prefix.bucket} is not watched by stack {aws.stack_name} (its buckets: {watched})"
            )
    try:
        counts = live.refresh(
            aws.lambda_, aws.function_name, [str(p) for p in prefixes], args.expiring_within
        )
    except live.LiveUrlError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(to_json(counts))
    else:
        where = ", ".join(str(p) for p in prefixes)
        print(
            f"{where}: {counts['due']} due within {live.human_duration(args.expiring_within)}, "
            f"{counts['refreshed']} refreshed, {counts['unchanged']} unchanged, {counts['deleted']} deleted, "
            f"{counts['failed']} failed, {counts['left']} left for the next round"
        )
    return EXIT_NO if counts["failed"] or counts["left"] else EXIT_OK


def cmd_redrive(aws: Aws, args: argparse.Namespace) -> int:
    """Move messages from the dead-letter queue back to the queue: receive, send, then delete."""
    stack = aws.stack
    moved = failed = 0
    errors: list[str] = []
    progress = Progress("redrive")
    while args.max is None or moved + failed < args.max:
        wanted = SQS_BATCH if args.max is None else min(SQS_BATCH, args.max - moved - failed)
        response = aws.sqs.receive_message(
            QueueUrl=stack.dead_letter_queue_url,
            MaxNumberOfMessages=wanted,
            WaitTimeSeconds=1,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            break
        entries = []
        for i, message in enumerate(messages):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": message["Body"]}
            if message.get("MessageAttributes"):
                entry["MessageAttributes"] = message["MessageAttributes"]
            entries.append(entry)
        sent = aws.sqs.send_message_batch(QueueUrl=stack.queue_url, Entries=entries)
        done = {e["Id"] for e in sent.get("Successful", [])}
        for entry in sent.get("Failed", []):
            errors.append(f"{entry.get('Code')}: {entry.get('Message', '')}")
        failed += len(messages) - len(done)
        # Delete only what reached the queue: a failed send stays in the DLQ (visible again later).
        if done:
            aws.sqs.delete_message_batch(
                QueueUrl=stack.dead_letter_queue_url,
                Entries=[{"Id": i, "ReceiptHandle": messages[int(i)]["ReceiptHandle"]} for i in sorted(done)],
            )
        moved += len(done)
        progress.update(f"{moved} moved, {failed} failed")
    progress.done()
    if args.json:
        print(to_json({"moved": moved, "failed": failed, "errors": errors[:10]}))
    else:
        print(
            f"moved {moved} message{'s' if moved != 1 else ''} from the dead-letter queue to the queue"
            + (f", {failed} failed (left in the dead-letter queue)" if failed else "")
        )
        for error in dict.fromkeys(errors):
            print(f"send failed: {redact(error)}", file=sys.stderr)
    return EXIT_NO if failed else EXIT_OK


def cmd_retry_failed(aws: Aws, args: argparse.Namespace) -> int:
    """Enqueue the objects whose records are FAILED with a retryable error."""
    stack = aws.stack
    records = list(_scan(aws, status="FAILED", prefix=args.prefix, retryable=True))
    result = SendResult()
    progress = Progress("retry-failed")
    for start in range(0, len(records), SQS_BATCH):
        chunk = records[start : start + SQS_BATCH]
        bodies = [_message(*_bucket_key(r)) for r in chunk]
        sent = send_messages(aws.sqs, stack.queue_url, bodies)
        result.sent += sent.sent
        result.failed += sent.failed
        result.errors += sent.errors
        progress.update(f"{result.sent} of {len(records)} enqueued")
    progress.done()
    if args.json:
        print(to_json({"retryable": len(records), "enqueued": result.sent, "failed": result.failed}))
    else:
        print(
            f"{len(records)} retryable FAILED record{'s' if len(records) != 1 else ''}: "
            f"{result.sent} enqueued, {result.failed} failed"
        )
        for error in dict.fromkeys(result.errors):
            print(f"send failed: {redact(error)}", file=sys.stderr)
    return EXIT_NO if result.failed else EXIT_OK


def _bucket_key(record: dict[str, Any]) -> tuple[str, str]:
    if record.get("bucket") and record.get("key") is not None:
        return str(record["bucket"]), str(record["key"])
    uri = S3Uri.parse(str(record["pk"]), require_key=True)
    return uri.bucket, uri.key


# --- entry point -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; ``--json``, ``--stack`` and ``--region`` work before or after the command."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS keeps a subcommand's unset option from overwriting the same option given before it.
    common.add_argument(
        "--stack",
        default=argparse.SUPPRESS,
        help=f"CloudFormation stack name (default: $KIE_UPLOADER_STACK or {DEFAULT_STACK})",
    )
    common.add_argument(
        "--region", default=argparse.SUPPRESS, help="AWS region (default: the standard chain)"
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )

    parser = argparse.ArgumentParser(
        prog="kie-uploader",
        parents=[common],
        description="Operate a deployed kie-uploader stack: backfill, inspect and retry uploads to kie.ai.",
        epilog="AWS_ENDPOINT_URL points every call at a local stack (e.g. the demo's ministack).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    backfill = commands.add_parser(
        "backfill", parents=[common], help="enqueue existing objects under a prefix"
    )
    backfill.add_argument("uri", type=_s3_uri_arg(False), metavar="s3://bucket/prefix")
    backfill.add_argument(
        "--force",
        action="store_true",
        help="also enqueue objects already uploaded: each message asks for a new upload (force, requestId)",
    )
    backfill.set_defaults(handler=cmd_backfill)

    status = commands.add_parser("status", parents=[common], help="show one object's record")
    status.add_argument("uri", type=_s3_uri_arg(True), metavar="s3://bucket/key")
    status.set_defaults(handler=cmd_status)

    list_ = commands.add_parser("list", parents=[common], help="a table of records")
    list_.add_argument(
        "prefix_uri", nargs="?", type=_s3_uri_arg(False), metavar="s3://bucket/prefix", default=None,
        help="only objects under this prefix (same as --prefix)",
    )  # fmt: skip
    list_.add_argument("--status", type=str.upper, choices=STATUSES, help="only records with this status")
    list_.add_argument(
        "--expiring-within",
        type=_duration_arg,
        metavar="DURATION",
        default=None,
        help="only UPLOADED records whose file expires within this time (90s, 30m, 12h, 2d; expired ones "
        "too), from the table's expiry index",
    )
    list_.add_argument(
        "--prefix",
        type=_s3_uri_arg(False),
        metavar="s3://bucket/prefix",
        help="only objects under this prefix",
    )
    list_.set_defaults(handler=cmd_list)

    url = commands.add_parser(
        "url", parents=[common], help="print a kie.ai URL of the object, uploading it when it must"
    )
    url.add_argument("uri", type=_s3_uri_arg(True), metavar="s3://bucket/key")
    url.add_argument(
        "--min-valid",
        type=_duration_arg,
        metavar="DURATION",
        default=int(live.DEFAULT_MIN_VALID.total_seconds()),
        help="the URL must stay valid at least this long (90s, 30m, 1h, 2d; default 1h)",
    )
    url.set_defaults(handler=cmd_url)

    refresh = commands.add_parser(
        "refresh", parents=[common], help="upload again the files under a prefix that expire soon"
    )
    refresh.add_argument("uris", nargs="+", type=_s3_uri_arg(False), metavar="s3://bucket/prefix")
    refresh.add_argument(
        "--expiring-within",
        type=_duration_arg,
        metavar="DURATION",
        default=12 * 3600,
        help="refresh the files that expire within this time (default 12h)",
    )
    refresh.set_defaults(handler=cmd_refresh)

    redrive = commands.add_parser(
        "redrive", parents=[common], help="move dead-letter messages back to the queue"
    )
    redrive.add_argument("--max", type=_positive_int, default=None, help="move at most this many messages")
    redrive.set_defaults(handler=cmd_redrive)

    retry = commands.add_parser(
        "retry-failed", parents=[common], help="enqueue objects that failed retryably"
    )
    retry.add_argument(
        "--prefix",
        type=_s3_uri_arg(False),
        metavar="s3://bucket/prefix",
        help="only objects under this prefix",
    )
    retry.set_defaults(handler=cmd_retry_failed)

    from kie_uploader import doctor, settings_file  # their commands live in their own modules

    settings_file.add_parser(commands, common)
    doctor.add_parser(commands, common)
    return parser


def _duration_arg(text: str) -> int:
    try:
        return live.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


_duration_arg.__name__ = "duration"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def describe_aws_error(exc: Exception) -> str:
    """One line that says what went wrong and what to do about it."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or run `aws configure`)"
        )
    if isinstance(exc, NoRegionError):
        return "no AWS region: pass --region or set AWS_REGION"
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url", "the AWS endpoint")
        hint = ""
        if os.environ.get("AWS_ENDPOINT_URL"):
            hint = " (AWS_ENDPOINT_URL is set: is the local stack running?)"
        return f"cannot connect to {endpoint}{hint}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))
        operation = getattr(exc, "operation_name", "AWS call")
        if code in _CREDENTIAL_ERRORS:
            return f"AWS rejected the credentials ({code}): check AWS_PROFILE / AWS_ACCESS_KEY_ID"
        if code in ("AccessDenied", "AccessDeniedException", "403"):
            return f"access denied: {operation}: {message or code}"
        if code in ("NoSuchBucket", "404") and error.get("BucketName"):
            return f"no such bucket: {error['BucketName']}"
        if code == "ResourceNotFoundException":
            return f"not found: {operation}: {message} (was the stack deleted?)"
        if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            return f"the stack's queue does not exist: {message} (was the stack deleted?)"
        return f"{operation} failed: {code}: {message}".rstrip(": ")
    return f"AWS error: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage and the one-line error
        return int(exc.code) if isinstance(exc.code, int) else EXIT_ERROR
    args.json = getattr(args, "json", False)
    stack = getattr(args, "stack", None) or os.environ.get("KIE_UPLOADER_STACK") or DEFAULT_STACK
    try:
        aws = Aws(region=getattr(args, "region", None), stack_name=stack)
        return int(args.handler(aws, args))
    except CliError as exc:
        print(f"kie-uploader: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except (ClientError, BotoCoreError) as exc:
        print(f"kie-uploader: error: {redact(describe_aws_error(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("kie-uploader: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
