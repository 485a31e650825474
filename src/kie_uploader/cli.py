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
import signal
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)
from botocore.parsers import ResponseParserError

from kie_uploader import console, live
from kie_uploader.aws_errors import describe_aws_error
from kie_uploader.function import liveness, watch
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
SCAN_PAGE = 1000  # items a Scan request reads at most (a 1 MB page is ~2,200 records)
EXPIRY_INDEX = "byExpiry"  # the table's sparse index of UPLOADED records: liveBucket, expiresAt
REQUIRED_OUTPUTS = ("BucketNames", "QueueUrl", "DeadLetterQueueUrl", "TableName")
#: The function's resolve statuses that mean "wrong object" (it wrote nothing), with their default words.
URL_REFUSALS = {
    "NOT_WATCHED": "not watched by the stack",
    "NOT_FOUND": "no such object in S3 (nothing recorded)",
    "INVALID": "not an S3 URI the function accepts",
}

# S3 bucket names: 3-63 characters, lowercase letters, digits, dots and hyphens, starting and ending with
# a letter or digit (the general-purpose rules; a typo such as "s3://My_Bucket" is caught before any call).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
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


@dataclass(frozen=True)
class Watching:
    """What the stack watches: its buckets, and in each the keys of its prefix/suffix rules. The rules are
    the function's own (:mod:`kie_uploader.function.watch`, from its ``WATCHED_OBJECTS``), so that what the
    CLI enqueues, reports and refuses is what the function accepts. ``source`` says where they came from."""

    rules: watch.Watched
    stack_name: str
    source: str

    @property
    def buckets(self) -> tuple[str, ...]:
        """The served buckets, in the rules' order."""
        return tuple(dict.fromkeys(rule.bucket for rule in self.rules.rules))

    def require_served(self, bucket: str) -> None:
        """``CliError`` (exit 2, one line naming the stack's buckets) when the stack does not serve it."""
        if not self.rules.serves(bucket):
            names = ", ".join(self.buckets) or "none"
            raise CliError(
                f"bucket {bucket} is not watched by stack {self.stack_name} (its buckets: {names})"
            )

    def watches(self, bucket: str, key: str) -> bool:
        return self.rules.watches(bucket, key)

    def keys_of(self, bucket: str) -> str:
        """Which keys of a served bucket are watched: ``prefix incoming/`` (several rules: ``... or ...``),
        ``every key``."""
        rules = self.rules.rules_of(bucket)
        if any(not rule.prefix and not rule.suffix for rule in rules):
            return "every key"
        return " or ".join(rule.describe() for rule in rules)

    def outside(self, bucket: str, key: str) -> str | None:
        """Why a key of a served bucket is not watched (``outside prefix incoming/``), ``None`` when it is."""
        if self.watches(bucket, key):
            return None
        return f"outside {self.keys_of(bucket)}"

    def require_prefix(self, uri: S3Uri) -> None:
        """``CliError`` when the bucket is not served, or when no key under the prefix can be watched (say
        ``s3://b/other/`` of a stack that watches ``incoming/``): nothing under it is the stack's."""
        self.require_served(uri.bucket)
        rules = self.rules.rules_of(uri.bucket)
        if not any(rule.prefix.startswith(uri.key) or uri.key.startswith(rule.prefix) for rule in rules):
            raise CliError(
                f"{uri}: not watched: outside {self.keys_of(uri.bucket)} (stack {self.stack_name} watches "
                "nothing under it)"
            )

    def to_json(self) -> list[dict[str, str]]:
        return [rule.to_json() for rule in self.rules.rules]


def watching_of(stack: StackResources, environment: dict[str, str] | None, *, why: str = "") -> Watching:
    """The stack's rules from the function's environment (``watch.from_env``: ``WATCHED_OBJECTS``, else
    every key of ``ALLOWED_BUCKETS``), else every key of the buckets of the stack's ``BucketNames`` output
    (a stack from before ``WATCHED_OBJECTS``, or a function whose configuration could not be read:
    ``why``)."""
    env = environment or {}
    try:
        rules = watch.from_env(env)
    except ValueError as exc:
        raise CliError(f"the function of stack {stack.stack_name} has a malformed {exc}") from None
    if rules is not None and watch.VARIABLE in env and env[watch.VARIABLE].strip():
        source = f"the function's {watch.VARIABLE}"
    elif rules is not None:
        source = "the function's ALLOWED_BUCKETS (every key: a function from before WATCHED_OBJECTS)"
    else:
        rules = watch.Watched.of_buckets(stack.bucket_names)
        source = "the stack's BucketNames output (every key" + (f": {why})" if why else ")")
    return Watching(rules, stack.stack_name, source)


class Aws:
    """One boto3 session and its clients, each built once on first use."""

    def __init__(
        self, region: str | None = None, stack_name: str = DEFAULT_STACK, profile: str | None = None
    ) -> None:
        self.session = live.session(region, profile)
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

    @cached_property
    def watching(self) -> Watching:
        """What the stack watches, from its function's configuration (``GetFunctionConfiguration``): every
        command that names objects checks them here, with the function's own rules."""
        stack = self.stack
        if not stack.outputs.get("FunctionName"):
            return watching_of(stack, None, why="the stack has no FunctionName output")
        try:
            config = self.lambda_.get_function_configuration(FunctionName=self.function_name)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in ("AccessDenied", "AccessDeniedException", "ResourceNotFoundException"):
                raise
            why = f"the function's configuration could not be read: {code}"
            print(
                f"kie-uploader: note: {why}; every key of the stack's buckets is taken as watched",
                file=sys.stderr,
            )
            return watching_of(stack, None, why=why)
        return watching_of(stack, dict(config.get("Environment", {}).get("Variables", {})))

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


def plural(count: int, word: str) -> str:
    """``1 record``, ``3 records``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


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


def render_record(
    record: dict[str, Any], *, now: float | None = None, state: live.RecordState | None = None
) -> str:
    """A record as aligned ``name: value`` lines, the important attributes first; ``state`` (what the
    record means: live with the time left, expired, waiting for a retry, ...) after ``status``. The URL of
    an upload that is not live is never shown as if it could be used."""
    now = time.time() if now is None else now
    state = live.describe_record(record, now) if state is None else state
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
    headers: Sequence[str | console.Column],
    rows: Iterable[Sequence[Any]],
    *,
    width: int | None = None,
    wide: bool = False,
) -> str:
    """A plain-text table with a header rule, no line longer than ``width`` (default: the terminal's,
    ``$COLUMNS`` or 80): long cells are cut with ``…`` (URLs in the middle); ``wide``: nothing is cut."""
    columns = [h if isinstance(h, console.Column) else console.Column(h, elide="auto") for h in headers]
    return console.render(columns, rows, redact=redact, width=width, wide=wide)


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


# The list's columns: the key and the URL or error share what the others leave; columns of lesser use go
# first when the terminal is narrow (UPDATED, then EXPIRES, SIZE, STATUS: STATE says the most).
_RECORD_COLUMNS = (
    console.Column("S3 URI", min=24, want=32, elide="middle", weight=2),
    console.Column("STATUS", min=8, max=8, drop=2),
    console.Column("STATE", min=14, max=24),
    console.Column("SIZE", min=8, max=10, drop=3),
    console.Column("EXPIRES", min=17, max=17, drop=4),
    console.Column("UPDATED", min=20, max=20, drop=5),
    console.Column("DOWNLOAD URL / ERROR", min=30, want=40, elide="auto", weight=3),
)
_RECORD_TSV = (
    "pk", "status", "state", "size", "expiresAt", "updatedAt", "downloadUrl", "errorKind", "retryable",
    "error",
)  # fmt: skip


def record_columns(bucket: str | None = None) -> tuple[console.Column, ...]:
    """The list's columns; with ``bucket`` the first one holds keys relative to it (``record_title``)."""
    if bucket is None:
        return _RECORD_COLUMNS
    first = _RECORD_COLUMNS[0]
    return (console.Column("KEY", min=first.min, want=first.want, elide="middle", weight=2),) + (
        _RECORD_COLUMNS[1:]
    )


def record_title(bucket: str | None) -> str | None:
    """The line above the header of a table whose keys are relative to ``bucket``: the bucket, whole (a
    bucket's name can be 63 characters, too long for a column's header)."""
    return None if bucket is None else f"keys in s3://{bucket}/"


def _utc(epoch: Any, form: str = "%Y-%m-%d %H:%MZ") -> str:
    """Epoch seconds as a UTC time (``form``: a strftime format); what is not a time, as it is."""
    try:
        return datetime.fromtimestamp(float(epoch), tz=UTC).strftime(form)
    except (TypeError, ValueError, OverflowError, OSError):
        return str(epoch)


def record_row(record: dict[str, Any], now: float, bucket: str | None = None) -> tuple[str, ...]:
    """A record as the list's row; with ``bucket`` its key relative to it (a record of another bucket
    keeps its whole S3 URI)."""
    pk = str(record.get("pk", ""))
    if bucket is not None and pk.startswith(f"s3://{bucket}/"):
        pk = pk[len(f"s3://{bucket}/") :]
    return (
        pk,
        str(record.get("status") or "-"),
        live.describe_record(record, now).label,
        format_size(record.get("size")),
        _utc(record["expiresAt"]) if record.get("expiresAt") is not None else "",
        str(record.get("updatedAt", "")),
        _record_detail(record, now),
    )


def record_tsv(record: dict[str, Any], now: float) -> dict[str, Any]:
    """A record's TSV fields: machine values (bytes, ISO 8601 UTC times, the state's name); the URL only
    of a live upload."""
    expires = record.get("expiresAt")
    return {
        "pk": record.get("pk"),
        "status": record.get("status"),
        "state": live.describe_record(record, now).state,
        "size": record.get("size"),
        "expiresAt": None if expires is None else _utc(expires, "%Y-%m-%dT%H:%M:%SZ"),
        "updatedAt": record.get("updatedAt"),
        "downloadUrl": record.get("downloadUrl") if is_live_upload(record, now=now) else None,
        "errorKind": record.get("errorKind"),
        "retryable": record.get("retryable"),
        "error": record.get("error"),
    }


def records_table(
    records: Sequence[dict[str, Any]],
    *,
    now: float | None = None,
    bucket: str | None = None,
    width: int | None = None,
    wide: bool = False,
) -> str:
    """The ``list`` command's table (all at once): the record's status, and its state (``live, 2 d 3 h
    left``, ``expired 3 h ago``, ``waiting for a retry``, ``being processed; ...``)."""
    now = time.time() if now is None else now
    rows = [record_row(r, now, bucket) for r in records]
    columns = record_columns(bucket)
    return console.render(columns, rows, redact=redact, width=width, wide=wide, title=record_title(bucket))


def with_state(record: dict[str, Any], *, now: float | None = None) -> dict[str, Any]:
    """The record with ``state`` and ``stateDescription`` (``describe_record``) for JSON output."""
    state = live.describe_record(record, time.time() if now is None else now)
    return {**record, "state": state.state, "stateDescription": state.sentence}


def to_json(value: Any) -> str:
    """JSON for scripts, with presigned URLs' secrets redacted."""
    return console.to_json(value, redact=redact)


# --- progress --------------------------------------------------------------------------------------


class Progress(console.Progress):
    """A progress line on stderr, drawn by rich only when stderr is a terminal (redrawn cleanly even when
    it wraps, cleared when done); its text goes through ``redact``. ``total``: a bar, rate and time left;
    ``unit``: a count and rate when the total is unknown."""

    def __init__(
        self, label: str, *, total: int | None = None, unit: str = "", enabled: bool | None = None
    ) -> None:
        super().__init__(label, total=total, unit=unit, enabled=enabled, redact=redact)


def output_format(args: argparse.Namespace) -> str:
    """``--output`` (``--json`` is ``--output json``); ``table`` by default."""
    return str(getattr(args, "output", None) or ("json" if getattr(args, "json", False) else "table"))


def say(args: argparse.Namespace, text: str, *, page: bool = False) -> None:
    """Print a command's words (redacted) fitted to the width of the terminal (or ``$COLUMNS``) unless
    ``--wide``: sentences are wrapped (nothing cut); a ``page`` of ``name  value`` lines has each long line
    cut in the middle. Into a pipe or a file without ``$COLUMNS`` they go whole: a script reads them."""
    sized = console.is_terminal(sys.stdout) or bool(os.environ.get("COLUMNS"))
    fitted = sized and not getattr(args, "wide", False)
    width = console.terminal_width() if fitted else None
    text = redact(text)
    print(console.fit_page(text, width) if page else console.wrap_prose(text, width))


def emit(args: argparse.Namespace, value: Any) -> bool:
    """Print ``value`` in the machine-readable format asked for (``json``, ``jsonl``, ``tsv``) and say so;
    False for ``table`` (the command prints its own words)."""
    output = output_format(args)
    if output == "table":
        return False
    console.write_value(value, output, redact=redact)
    return True


# --- commands --------------------------------------------------------------------------------------


@contextmanager
def interrupt_after() -> Iterator[None]:
    """Ctrl-C (SIGINT) during the block is held until the block ends, then raised: what the block did
    (a message batch SQS accepted) is counted before the command stops and says what it did."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, _frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


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


def _check_bucket(aws: Aws, uri: S3Uri) -> Watching:
    """The bucket exists, the stack serves it and watches keys under the prefix. The stack is read first:
    a wrong endpoint or stack is named for what it is, not as a missing bucket."""
    watching = aws.watching
    try:
        aws.s3.head_bucket(Bucket=uri.bucket)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            raise CliError(f"no such bucket: {uri.bucket}") from exc
        if code in ("403", "AccessDenied"):
            raise CliError(f"access denied to bucket {uri.bucket}") from exc
        raise
    watching.require_prefix(uri)
    return watching


@dataclass
class Backfill:
    """What a backfill did so far: objects listed (folder markers apart), not watched (outside the stack's
    prefix/suffix rules: never enqueued), already uploaded, enqueued, failed to send."""

    uri: S3Uri
    why_not_watched: str | None = None
    listed: int = 0
    not_watched: int = 0
    already_uploaded: int = 0
    folders: int = 0
    enqueued: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "uri": str(self.uri), "listed": self.listed, "notWatched": self.not_watched,
            "notWatchedReason": self.why_not_watched if self.not_watched else None,
            "alreadyUploaded": self.already_uploaded, "folders": self.folders, "enqueued": self.enqueued,
            "failed": self.failed, "errors": self.errors[:10],
        }  # fmt: skip

    def skipped(self) -> str:
        """``12 skipped as not watched (outside prefix incoming/), `` or nothing."""
        if not self.not_watched:
            return ""
        return f"{self.not_watched} skipped as not watched ({self.why_not_watched}), "

    def sentence(self) -> str:
        return (
            f"{self.uri}: {plural(self.listed, 'object')} listed, {self.skipped()}"
            f"{self.already_uploaded} already uploaded, {self.enqueued} enqueued, {self.failed} failed"
        )


def backfill(
    aws: Aws,
    uri: S3Uri,
    *,
    force: bool = False,
    progress: Progress | None = None,
    done: Backfill | None = None,
) -> Backfill:
    """Enqueue a plain message for every watched object under the prefix that has no live upload of its
    current bytes (every watched one with ``force``); keys outside the stack's rules are counted, never
    enqueued. ``done`` is filled as it goes: after Ctrl-C or an AWS error it says what was done."""
    done = Backfill(uri) if done is None else done
    watching = _check_bucket(aws, uri)
    stack = aws.stack
    done.why_not_watched = f"outside {watching.keys_of(uri.bucket)}"
    paginator = aws.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=uri.bucket, Prefix=uri.key):
        objects = []
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/") and obj.get("Size", 0) == 0:
                done.folders += 1  # a console "folder" marker, not an object to upload
                continue
            done.listed += 1
            if not watching.watches(uri.bucket, obj["Key"]):
                done.not_watched += 1  # the function would refuse it: kie.ai must never get it
                continue
            objects.append(obj)
        if not force and objects:
            records = _batch_get_records(
                aws.dynamodb, stack.table_name, [f"s3://{uri.bucket}/{o['Key']}" for o in objects]
            )
            todo = []
            for obj in objects:
                record = records.get(f"s3://{uri.bucket}/{obj['Key']}")
                if is_live_upload(record, etag=obj.get("ETag")):
                    done.already_uploaded += 1
                else:
                    todo.append(obj)
            objects = todo
        for start in range(0, len(objects), SQS_BATCH):
            chunk = objects[start : start + SQS_BATCH]
            with interrupt_after():  # a batch SQS took is counted before Ctrl-C stops the loop
                sent = send_messages(
                    aws.sqs, stack.queue_url, [_message(uri.bucket, o["Key"], force=force) for o in chunk]
                )
                done.enqueued += sent.sent
                done.failed += sent.failed
                done.errors += sent.errors
            _backfill_progress(progress, done)
        _backfill_progress(progress, done)  # a page with nothing to send moves it too
    return done


def cmd_backfill(aws: Aws, args: argparse.Namespace) -> int:
    """Enqueue every watched object under the prefix that has no live UPLOADED record (all with --force)."""
    uri: S3Uri = args.uri
    progress = Progress("backfill", unit="handled")
    done = Backfill(uri)
    try:
        backfill(aws, uri, force=args.force, progress=progress, done=done)
    except KeyboardInterrupt:
        progress.done()
        raise CliError(
            f"backfill interrupted: {done.enqueued} of {done.listed} objects listed so far were enqueued "
            f"({done.skipped()}{done.already_uploaded} already uploaded); run it again to go on: enqueued "
            "objects that have been handled since are skipped",
            EXIT_INTERRUPTED,
        ) from None
    except (ClientError, BotoCoreError, CliError):
        progress.done()
        if done.why_not_watched is not None:  # it was listing: say what it did (a refusal did nothing)
            print(f"backfill stopped after enqueuing {done.enqueued} objects", file=sys.stderr)
        raise
    progress.done()
    if not emit(args, done.summary()):
        say(args, done.sentence())
        for error in dict.fromkeys(done.errors):
            print(f"send failed: {redact(error)}", file=sys.stderr)
    return EXIT_NO if done.failed else EXIT_OK


def _backfill_progress(progress: Progress | None, done: Backfill) -> None:
    """The count (and rate) is of objects handled (enqueued, not watched, already uploaded or failed): no
    total is known while S3 lists; the text says how many were listed and what became of them."""
    if progress is None:
        return
    skipped = f"{done.not_watched:,} not watched, " if done.not_watched else ""
    progress.update(
        f"{done.listed:,} listed, {skipped}{done.enqueued:,} enqueued, "
        f"{done.already_uploaded:,} already uploaded, {done.failed:,} failed",
        completed=done.enqueued + done.not_watched + done.already_uploaded + done.failed,
    )


def cmd_status(aws: Aws, args: argparse.Namespace) -> int:
    """Print one object's record and what it means (with S3's reading of the object: waiting, never
    seen, changed since, not in S3; not watched for a key outside the stack's rules); exit 0 only when its
    URL is live and of the object's current bytes. A bucket the stack does not serve is an error (exit 2)."""
    uri: S3Uri = args.uri
    now = time.time()
    watching = aws.watching
    watching.require_served(uri.bucket)
    outside = watching.outside(uri.bucket, uri.key)
    response = aws.dynamodb.get_item(
        TableName=aws.stack.table_name, Key={"pk": {"S": str(uri)}}, ConsistentRead=True
    )
    record = deserialize(response["Item"]) if "Item" in response else None
    # A key outside the rules never gets an event: what S3 holds changes nothing to what it is.
    reading = None if outside else _read_object(aws, uri)
    state = live.describe_object(record, now, reading=reading, outside=outside, stack=aws.stack.stack_name)
    if output_format(args) != "table":
        shown = {"pk": str(uri)} if record is None else record
        emit(args, {**shown, "state": state.state, "stateDescription": state.sentence})
    elif record is None:
        say(args, f"{uri}: {state.sentence}")
    else:
        say(args, render_record(record, now=now, state=state), page=True)
    return EXIT_OK if state.state == live.LIVE else EXIT_NO


def _read_object(aws: Aws, uri: S3Uri) -> live.S3Reading | None:
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


def _scan(
    aws: Aws, *, status: str | Sequence[str] | None, prefix: S3Uri | None, retryable: bool = False
) -> Iterator[dict]:
    for page in _scan_pages(aws, status=status, prefix=prefix, retryable=retryable):
        yield from page


def _scan_pages(
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


def cmd_list(aws: Aws, args: argparse.Namespace) -> int:
    """Records, filtered by status and S3 prefix, printed page by page as the Scan returns them (in the
    table's order, sorted by key within a page); with ``--expiring-within`` the UPLOADED records whose file
    expires within that time, soonest first, from the expiry index (never a scan). ``--limit N`` stops
    after N records (and the scan with them)."""
    prefix: S3Uri | None = args.prefix or args.prefix_uri
    if args.prefix and args.prefix_uri and args.prefix != args.prefix_uri:
        raise CliError("give the prefix once: s3://bucket/prefix or --prefix s3://bucket/prefix")
    if prefix is not None:
        aws.watching.require_served(prefix.bucket)  # a typo is an error, not "0 records"
    now = time.time()
    limit: int | None = getattr(args, "limit", None)
    pages: Iterable[list[dict[str, Any]]]
    if args.expiring_within is not None:
        if args.status not in (None, "UPLOADED"):
            raise CliError("--expiring-within lists UPLOADED records only: drop --status")
        pages = [_expiring(aws, prefix, until=int(now) + args.expiring_within)]  # bounded, soonest first
    else:
        scan = _scan_pages(aws, status=args.status, prefix=prefix, page_size=limit)
        pages = (sorted(page, key=lambda r: str(r.get("pk", ""))) for page in scan)
    buckets = aws.stack.bucket_names
    # Keys relative to the bucket when there is only one (a record of another bucket keeps its S3 URI).
    bucket = prefix.bucket if prefix is not None else (buckets[0] if len(buckets) == 1 else None)
    return _print_records(pages, args, now=now, bucket=bucket, limit=limit)


def _print_records(
    pages: Iterable[list[dict[str, Any]]],
    args: argparse.Namespace,
    *,
    now: float,
    bucket: str | None,
    limit: int | None,
) -> int:
    """Write the records page by page in the format asked for; the table ends with the count."""
    output = output_format(args)
    stream = console.Stream(
        output,
        redact=redact,
        columns=record_columns(bucket),
        title=record_title(bucket),
        tsv_fields=_RECORD_TSV,
        wide=bool(getattr(args, "wide", False)),
    )
    for page in pages:
        if limit is not None:
            page = page[: limit - stream.count]
        if output == "table":
            stream.write(page, [record_row(r, now, bucket) for r in page])
        elif output == "tsv":
            stream.write([record_tsv(r, now) for r in page])
        else:
            stream.write([with_state(r, now=now) for r in page])
        if limit is not None and stream.count >= limit:
            break  # closes the scan: no further page is read
    stream.close()
    if output == "table":
        count = stream.count
        more = f" (--limit {limit}: there may be more)" if limit is not None and count >= limit else ""
        say(args, f"{plural(count, 'record')}{more}")
    return EXIT_OK


def _expiring(aws: Aws, prefix: S3Uri | None, *, until: int) -> list[dict[str, Any]]:
    """The UPLOADED records (of the prefix's bucket, or of every bucket of the stack) whose file expires by
    ``until``, soonest first: a query of the sparse ``byExpiry`` index per bucket, then the records."""
    stack = aws.stack
    buckets = [prefix.bucket] if prefix is not None else list(aws.watching.buckets)
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
    """Print a kie.ai URL of the object valid for at least --min-valid, from the stack's function. An object
    the stack does not watch, or a key without an object, is an error (exit 2): the function refuses it
    and writes nothing (``NOT_WATCHED``, ``NOT_FOUND``)."""
    uri: S3Uri = args.uri
    watching = aws.watching
    watching.require_served(uri.bucket)
    outside = watching.outside(uri.bucket, uri.key)
    if outside is not None:
        raise CliError(
            f"{uri}: not watched: {outside} (stack {watching.stack_name} never hands it to kie.ai)"
        )
    try:
        [result] = live.resolve(aws.lambda_, aws.function_name, [str(uri)], args.min_valid)
    except live.LiveUrlError as exc:
        raise CliError(str(exc)) from exc
    refused = result.get("status") in URL_REFUSALS
    output = output_format(args)
    if output != "table":
        # Not redacted: the URL is the answer (kie.ai's URL carries no AWS secret; errors are redacted).
        shown = {**result, "error": redact(str(result["error"])) if result.get("error") else None}
        console.write_value(shown, output, redact=lambda text: text)
        return EXIT_ERROR if refused else EXIT_OK if result.get("downloadUrl") else EXIT_NO
    if refused:
        reason = live.one_line(result.get("error")) or URL_REFUSALS[str(result["status"])]
        raise CliError(f"{uri}: {reason}")
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
        aws.watching.require_prefix(prefix)
    try:
        counts = live.refresh(
            aws.lambda_, aws.function_name, [str(p) for p in prefixes], args.expiring_within
        )
    except live.LiveUrlError as exc:
        raise CliError(str(exc)) from exc
    if not emit(args, counts):
        where = ", ".join(str(p) for p in prefixes)
        say(
            args,
            f"{where}: {counts['due']} due within {live.human_duration(args.expiring_within)}, "
            f"{counts['refreshed']} refreshed, {counts['unchanged']} unchanged, {counts['deleted']} deleted, "
            f"{counts['failed']} failed, {counts['left']} left for the next round",
        )
    return EXIT_NO if counts["failed"] or counts["left"] else EXIT_OK


def cmd_retry_failed(aws: Aws, args: argparse.Namespace) -> int:
    """Enqueue the objects whose records are FAILED with a retryable error."""
    stack = aws.stack
    records = list(_scan(aws, status="FAILED", prefix=args.prefix, retryable=True))
    result = SendResult()
    progress = Progress("retry-failed", total=len(records))
    try:
        for start in range(0, len(records), SQS_BATCH):
            chunk = records[start : start + SQS_BATCH]
            bodies = [_message(*_bucket_key(r)) for r in chunk]
            with interrupt_after():  # a batch SQS took is counted before Ctrl-C stops the loop
                sent = send_messages(aws.sqs, stack.queue_url, bodies)
                result.sent += sent.sent
                result.failed += sent.failed
                result.errors += sent.errors
            progress.update(f"{result.sent:,} enqueued", completed=result.sent + result.failed)
    except KeyboardInterrupt:
        progress.done()
        raise CliError(
            f"retry-failed interrupted: {result.sent} of {len(records)} retryable records enqueued",
            EXIT_INTERRUPTED,
        ) from None
    progress.done()
    if not emit(args, {"retryable": len(records), "enqueued": result.sent, "failed": result.failed}):
        say(
            args,
            f"{plural(len(records), 'retryable FAILED record')}: "
            f"{result.sent} enqueued, {result.failed} failed",
        )
        for error in dict.fromkeys(result.errors):
            print(f"send failed: {redact(error)}", file=sys.stderr)
    return EXIT_NO if result.failed else EXIT_OK


# --- forget: records only older versions wrote -----------------------------------------------------

#: ``forget``: conditional deletes in flight at once.
FORGET_WORKERS = 8
FORGET_BATCH = 25


@dataclass
class Forget:
    """What ``forget`` found and did: SKIPPED records (a key without an object), FAILED records of buckets
    the stack does not serve; removed, or kept because they changed since they were read."""

    dry_run: bool
    skipped: int = 0
    unserved: int = 0
    unserved_buckets: set[str] = field(default_factory=set)
    removed: int = 0
    kept: int = 0

    @property
    def selected(self) -> int:
        return self.skipped + self.unserved

    def kinds(self) -> str:
        parts = []
        if self.skipped:
            parts.append(f"{self.skipped} SKIPPED (keys without an object)")
        if self.unserved:
            names = sorted(self.unserved_buckets)
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            parts.append(f"{self.unserved} FAILED of buckets the stack does not serve ({shown})")
        return "; ".join(parts)

    def summary(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run, "selected": self.selected, "skipped": self.skipped,
            "unservedFailed": self.unserved, "unservedBuckets": sorted(self.unserved_buckets),
            "removed": self.removed, "kept": self.kept,
        }  # fmt: skip

    def sentence(self) -> str:
        if not self.selected:
            return "no record to forget"
        if self.dry_run:
            return (
                f"would forget {plural(self.selected, 'record')}: {self.kinds()}; nothing removed: run it "
                "again with --yes to remove them"
            )
        kept = f"; {self.kept} kept (changed since they were read)" if self.kept else ""
        return f"forgot {plural(self.removed, 'record')} of {self.selected}: {self.kinds()}{kept}"


def _forget_one(dynamodb: DynamoDBClient, table: str, pk: str, status: str) -> bool:
    """Delete the record if it still has ``status`` and no claim (no delivery is working on it); False
    when it changed meanwhile (it is kept)."""
    try:
        dynamodb.delete_item(
            TableName=table,
            Key={"pk": {"S": pk}},
            ConditionExpression="#s = :s AND attribute_not_exists(claimOwner)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": status}},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


def forget(
    aws: Aws,
    *,
    skipped: bool,
    unserved: bool,
    prefix: S3Uri | None = None,
    dry_run: bool = True,
    progress: Progress | None = None,
    done: Forget | None = None,
) -> Forget:
    """Find (and unless ``dry_run`` remove) the records only older versions wrote for mistakes: SKIPPED
    (``skipped``: a key that never had an object) and FAILED of a bucket the stack does not serve
    (``unserved``: "not in ALLOWED_BUCKETS"). Each delete is conditional: a record whose status changed, or
    that a delivery claimed, since the scan read it is kept. One scan, filtered by status."""
    done = Forget(dry_run) if done is None else done
    statuses = (["SKIPPED"] if skipped else []) + (["FAILED"] if unserved else [])
    served = aws.watching if unserved else None
    dynamodb, table = aws.dynamodb, aws.stack.table_name
    with ThreadPoolExecutor(max_workers=FORGET_WORKERS) as pool:
        for page in _scan_pages(aws, status=statuses, prefix=prefix):
            chosen: list[tuple[str, str]] = []
            for record in page:
                if record.get("claimOwner"):
                    continue  # a delivery is working on it: it will change
                status, bucket = str(record.get("status")), _bucket_key(record)[0]
                if status == "SKIPPED" and skipped:
                    done.skipped += 1
                elif status == "FAILED" and served is not None and not served.rules.serves(bucket):
                    done.unserved += 1
                    done.unserved_buckets.add(bucket)
                else:
                    continue
                chosen.append((str(record["pk"]), status))
            if dry_run:
                continue
            for start in range(0, len(chosen), FORGET_BATCH):
                batch = chosen[start : start + FORGET_BATCH]
                with interrupt_after():  # a batch deleted is counted before Ctrl-C stops the loop
                    results = list(pool.map(lambda one: _forget_one(dynamodb, table, *one), batch))
                    done.removed += sum(results)
                    done.kept += len(results) - sum(results)
                if progress is not None:
                    progress.update(f"{done.removed:,} removed, {done.kept:,} kept", completed=done.removed)
    return done


def cmd_forget(aws: Aws, args: argparse.Namespace) -> int:
    """Remove (with --yes; else only count) the records older versions wrote for mistakes."""
    if not args.status and not args.unserved:
        raise CliError("say which records to forget: --status SKIPPED, --unserved, or both")
    progress = Progress("forget", unit="removed")
    done = Forget(dry_run=not args.yes)
    try:
        forget(
            aws,
            skipped=args.status == "SKIPPED",
            unserved=args.unserved,
            prefix=args.prefix_uri,
            dry_run=not args.yes,
            progress=progress,
            done=done,
        )
    except KeyboardInterrupt:
        progress.done()
        raise CliError(
            f"forget interrupted: {plural(done.removed, 'record')} removed, {done.kept} kept; run it again "
            "to go on",
            EXIT_INTERRUPTED,
        ) from None
    finally:
        progress.done()
    if not emit(args, done.summary()):
        say(args, done.sentence())
    return EXIT_OK


def _bucket_key(record: dict[str, Any]) -> tuple[str, str]:
    if record.get("bucket") and record.get("key") is not None:
        return str(record["bucket"]), str(record["key"])
    uri = S3Uri.parse(str(record["pk"]), require_key=True)
    return uri.bucket, uri.key


# --- entry point -----------------------------------------------------------------------------------


class _OutputAction(argparse.Action):
    """``--output FORMAT`` and ``--json`` (``--output json``): set ``output``, and ``json`` for the
    commands that only know ``args.json`` (true for json and jsonl)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, "output", **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        output = "json" if self.nargs == 0 else str(values)
        namespace.output = output
        namespace.json = output in ("json", "jsonl")


def examples(*lines: str, description: str | None = None) -> dict[str, Any]:
    """``add_parser`` keywords for a command's help: its examples, kept as written, after the options
    (every command has some); the description wrapped to 100 columns."""
    shown: dict[str, Any] = {
        "epilog": "examples:\n" + "\n".join(f"  {line}" for line in lines),
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
    if description:
        shown["description"] = textwrap.fill(description, 100)
    return shown


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
        "--region",
        default=argparse.SUPPRESS,
        help="AWS region (default: $AWS_REGION, $AWS_DEFAULT_REGION, then the profile's)",
    )
    common.add_argument(
        "--profile", default=argparse.SUPPRESS, help="AWS profile (default: $AWS_PROFILE, else the default)"
    )
    common.add_argument(
        "--output",
        action=_OutputAction,
        choices=console.OUTPUTS,
        default=argparse.SUPPRESS,
        help="table (default: fitted to the terminal's width, $COLUMNS or 80), json, jsonl (one object a "
        "line) or tsv (a header line, then one line a record)",
    )
    common.add_argument(
        "--wide",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no width limit in table output: whole keys, URLs and values, lines as long as they are",
    )
    common.add_argument(
        "--json",
        action=_OutputAction,
        nargs=0,
        default=argparse.SUPPRESS,
        help="machine-readable output (same as --output json)",
    )

    parser = argparse.ArgumentParser(
        prog="kie-uploader",
        parents=[common],
        description="Operate a deployed kie-uploader stack: backfill, inspect and retry uploads to kie.ai.",
        epilog="AWS_ENDPOINT_URL points every call at a local stack (e.g. the demo's ministack).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    backfill = commands.add_parser(
        "backfill",
        parents=[common],
        help="enqueue existing objects under a prefix",
        **examples(
            "kie-uploader backfill s3://my-bucket/            # every object without a live upload",
            "kie-uploader backfill s3://my-bucket/photos/2025/",
            "kie-uploader backfill s3://my-bucket/big.mov --force   # upload again, even if live",
            description="Lists the objects under the prefix and enqueues a plain message for each one the "
            "stack watches (its prefix/suffix) that has no live upload of its current bytes (all of them "
            "with --force); the others are counted as not watched, never enqueued. Run it again after an "
            "interruption: what was handled since is skipped.",
        ),
    )
    backfill.add_argument("uri", type=_s3_uri_arg(False), metavar="s3://bucket/prefix")
    backfill.add_argument(
        "--force",
        action="store_true",
        help="also enqueue objects already uploaded: each message asks for a new upload (force, requestId)",
    )
    backfill.set_defaults(handler=cmd_backfill)

    status = commands.add_parser(
        "status",
        parents=[common],
        help="show one object's record and state",
        **examples(
            "kie-uploader status s3://my-bucket/photos/cat.png",
            "kie-uploader status s3://my-bucket/photos/cat.png --output json | jq -r .state",
            description="Prints the object's record and its state: live (time left), expired, waiting (put "
            "moments ago, or changed since its upload), in progress, failed, deleted, never seen, not in S3, "
            "or not watched (outside the stack's prefix/suffix). Exit 0 only when its URL is live; 2 for a "
            "bucket the stack does not serve.",
        ),
    )
    status.add_argument("uri", type=_s3_uri_arg(True), metavar="s3://bucket/key")
    status.set_defaults(handler=cmd_status)

    list_ = commands.add_parser(
        "list",
        parents=[common],
        help="a table of records",
        **examples(
            "kie-uploader list s3://my-bucket/photos/",
            "kie-uploader list --status failed --limit 20",
            "kie-uploader list --expiring-within 12h",
            "kie-uploader list --output jsonl | jq -r 'select(.state == \"EXPIRED\") | .pk'",
        ),
    )
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
    list_.add_argument(
        "--limit", type=_positive_int, metavar="N", default=None, help="stop after N records (and the scan)"
    )
    list_.set_defaults(handler=cmd_list)
    list_.description = (
        "Records as the table's Scan returns them, page by page (the table's order, sorted by key within "
        "each page: pipe --output tsv through sort for one order); --expiring-within lists soonest first."
    )

    url = commands.add_parser(
        "url",
        parents=[common],
        help="print a kie.ai URL of the object, uploading it when it must",
        **examples(
            "kie-uploader url s3://my-bucket/photos/cat.png",
            "kie-uploader url s3://my-bucket/photos/cat.png --min-valid 2d",
        ),
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
        "refresh",
        parents=[common],
        help="upload again the files under a prefix that expire soon",
        **examples(
            "kie-uploader refresh s3://my-bucket/photos/",
            "kie-uploader refresh s3://my-bucket/a/ s3://my-bucket/b/ --expiring-within 1d",
        ),
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

    retry = commands.add_parser(
        "retry-failed",
        parents=[common],
        help="enqueue objects that failed retryably",
        **examples(
            "kie-uploader retry-failed                      # after fixing the key: kie-uploader set-key",
            "kie-uploader retry-failed --prefix s3://my-bucket/photos/",
            description="Enqueues a plain message for each record FAILED with a retryable error (kie.ai "
            "down, a bad key, no credits). Permanent failures stay: `backfill --force` sends those.",
        ),
    )
    retry.add_argument(
        "--prefix",
        type=_s3_uri_arg(False),
        metavar="s3://bucket/prefix",
        help="only objects under this prefix",
    )
    retry.set_defaults(handler=cmd_retry_failed)

    forget_ = commands.add_parser(
        "forget",
        parents=[common],
        help="remove records older versions wrote for mistakes (SKIPPED; FAILED of unserved buckets)",
        **examples(
            "kie-uploader forget --status SKIPPED               # says how many; removes nothing",
            "kie-uploader forget --status SKIPPED --yes",
            "kie-uploader forget --status SKIPPED s3://my-bucket/photos/ --yes",
            "kie-uploader forget --unserved --yes              # FAILED records of buckets not served",
            description="Older versions wrote a record for a mistake: SKIPPED for a key without an object "
            '(`url s3://bucket/typo`), FAILED ("not in ALLOWED_BUCKETS") for a bucket the stack does not '
            "serve. This version writes none; forget removes those: it says how many it found, and removes "
            "them with --yes, each with a conditional delete (a record that changed since, or that a "
            "delivery is working on, is kept).",
        ),
    )
    forget_.add_argument(
        "prefix_uri", nargs="?", type=_s3_uri_arg(False), metavar="s3://bucket/prefix", default=None,
        help="only records of objects under this prefix",
    )  # fmt: skip
    forget_.add_argument(
        "--status", type=str.upper, choices=("SKIPPED",), help="the SKIPPED records (keys without an object)"
    )
    forget_.add_argument(
        "--unserved",
        action="store_true",
        help='the FAILED records of buckets the stack does not serve ("not in ALLOWED_BUCKETS")',
    )
    forget_.add_argument("--yes", action="store_true", help="remove them (without it: only say how many)")
    forget_.set_defaults(handler=cmd_forget)

    from kie_uploader import doctor, ops, settings_file  # their commands live in their own modules

    settings_file.add_parser(commands, common)
    doctor.add_parser(commands, common)
    ops.add_parser(commands, common)  # info, stats, set-key, dlq peek, redrive
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


def version() -> str:
    """The installed distribution's version (``unknown`` when run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as distribution_version

    try:
        return distribution_version("kie-s3-uploader")
    except PackageNotFoundError:
        return "unknown"


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
        aws = Aws(getattr(args, "region", None), stack, profile=getattr(args, "profile", None))
        code = int(args.handler(aws, args))
        sys.stdout.flush()  # inside the try: a reader that went away is a broken pipe handled here
        return code
    except CliError as exc:
        print(f"kie-uploader: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        print(f"kie-uploader: error: {redact(describe_aws_error(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("kie-uploader: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`kie-uploader list | head -1`): what it wanted was printed. Point stdout
        # at /dev/null so that the interpreter's last flush cannot fail again.
        _discard_stdout()
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("KIE_UPLOADER_DEBUG"):
            raise
        print(
            f"kie-uploader: internal error: {type(exc).__name__}: {redact(str(exc))} "
            "(KIE_UPLOADER_DEBUG=1 shows the traceback; please report it)",
            file=sys.stderr,
        )
        return EXIT_ERROR


def _discard_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file (captured in tests): nothing to flush later
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
