"""``make demo``: the whole product on a local AWS, in one command.

Starts ministack and the kie.ai emulator on free loopback ports (state under ``.local/demo``), creates a
bucket holding two objects from "before the stack" (one under the watched prefix ``incoming/``, one
outside it), deploys the real CDK stack on that bucket into ministack, runs ``kie-uploader backfill`` (it
enqueues the first, skips the second as not watched), puts sample objects, sends a plain message and a
resolve request for the object outside the prefix (the function refuses both and writes nothing), waits
for every record, checks the bytes behind each downloadUrl and prints a table. Exits 0 only when every
object reached its expected status. ``--keep`` leaves everything running.

``run_demo()`` is the same code path for the test suite.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from kie_uploader import deploy, discovery, live, local
from kie_uploader.cli import tables
from kie_uploader.cli.args import DEFAULT_STACK, S3Uri
from kie_uploader.cli.aws import Aws
from kie_uploader.cli.moving import backfill
from kie_uploader.cli.output import format_epoch, format_size, redact, render_table
from kie_uploader.cli.store import deserialize
from kie_uploader.function import watch
from kie_uploader.samples import NOT_WATCHED, NOTIFIED_PREFIX, Sample, demo_samples

DEMO_API_KEY = "demo-kie-key"
#: The bucket the local demo creates before the stack, then deploys the stack on (an imported bucket).
DEMO_BUCKET = "kie-uploader-demo-photos"
#: Small, so the "over the size limit" sample stays small (1 MiB + 1 byte).
DEMO_MAX_OBJECT_BYTES = 1024 * 1024
TERMINAL = ("UPLOADED", "FAILED", "SKIPPED", "DELETED")
REAL_KIE_NOTE = (
    "kie.ai downloads each object itself from a presigned S3 URL; a local S3 (ministack on 127.0.0.1) is "
    "not reachable from kie.ai, so the real service needs a real bucket"
)

Log = Callable[[str], None]


class DemoError(Exception):
    """The demo cannot run as asked; the message says why and what to do."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class DemoOptions:
    """What the demo was asked to do (the command line's flags)."""

    keep: bool = False
    kie_url: str | None = None  # None: the local emulator
    bucket: str | None = None  # a real bucket, only with a real kie.ai URL
    stack_name: str = DEFAULT_STACK
    state_dir: Path | None = None  # default: .local/demo
    timeout: float = 180.0
    max_object_bytes: int = DEMO_MAX_OBJECT_BYTES
    #: With a real kie.ai: put KIE_API_KEY into the deployed stack's secret, replacing what it holds.
    overwrite_secret: bool = False


@dataclass
class ObjectResult:
    """What became of one sample."""

    sample: Sample
    record: dict[str, Any] | None
    bytes_match: bool | None = None  # None: not uploaded, nothing to compare
    check_error: str = ""
    #: The function's answer to a resolve request (for an object outside what the stack watches).
    answer: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        if self.record:
            return str(self.record.get("status"))
        return str(self.answer.get("status")) if self.answer else "NO RECORD"

    @property
    def ok(self) -> bool:
        if self.status != self.sample.expected_status:
            return False
        if self.status == NOT_WATCHED:
            return self.record is None  # refused, and nothing written
        return self.status != "UPLOADED" or self.bytes_match is True

    @property
    def detail(self) -> str:
        """The URL of an upload, else the reason: the record's error, or the function's refusal."""
        record = self.record or {}
        if self.status == "UPLOADED":
            return str(record.get("downloadUrl", ""))
        if record:
            return str(record.get("error", "")) or self.check_error
        if self.answer:
            return f"{self.answer.get('error') or 'refused'} (nothing written)"
        return self.check_error


@dataclass
class DemoResult:
    """The demo's outcome: one row per sample, and the timings of its phases."""

    objects: list[ObjectResult]
    bucket: str
    outputs: dict[str, str]
    endpoint_url: str | None = None
    kie_url: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    servers: list[local.Server] = field(default_factory=list)
    #: ``kie-uploader url`` for one object and one record-change event received (local runs).
    live: list[str] = field(default_factory=list)
    live_ok: bool = True
    #: ``kie-uploader backfill`` of the objects from before the stack, and what it said (local runs).
    backfill: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.objects) and all(o.ok for o in self.objects) and self.live_ok

    def table(self, width: int | None = None, *, wide: bool = False) -> str:
        """One row per sample, fitted to ``width`` (default: the terminal's, ``$COLUMNS`` or 80) as the
        CLI's ``list`` is: URLs and keys cut in the middle, EXPIRES then SIZE dropped when narrow;
        ``wide``: nothing cut."""
        rows = []
        for obj in self.objects:
            record = obj.record or {}
            expires = format_epoch(record["expiresAt"]) if record.get("expiresAt") is not None else ""
            match = {True: "yes", False: "NO", None: "-"}[obj.bytes_match]
            verdict = "ok" if obj.ok else f"expected {obj.sample.expected_status}"
            size = format_size(len(obj.sample.body))
            rows.append((obj.sample.key, size, obj.status, obj.detail, expires, match, verdict))
        return render_table(_TABLE_COLUMNS, rows, width=width, wide=wide)


# --- the parts -------------------------------------------------------------------------------------


_TABLE_COLUMNS = (
    tables.Column("S3 KEY", min=16, want=30, elide="middle", weight=2),
    tables.Column("SIZE", min=8, max=10, drop=3),
    tables.Column("STATUS", min=8, max=11),
    tables.Column("DOWNLOAD URL / ERROR", min=20, want=40, elide="auto", weight=3),
    tables.Column("EXPIRES", min=17, max=20, drop=4),
    tables.Column("BYTES MATCH", min=11, max=11),
    tables.Column("RESULT", min=17, max=17),
)


@dataclass
class _EndpointSession:
    """A boto3 session whose clients reach ``endpoint_url`` (for :func:`live.lambda_client`)."""

    session: Any
    endpoint_url: str | None

    def client(self, service: str, **kwargs: Any) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_url, **kwargs)

    @property
    def region_name(self) -> str | None:
        return str(self.session.region_name)


class _CliAws(Aws):
    """The command line's view of the demo's stack: ``kie-uploader``'s own code, at the local endpoint."""

    def __init__(self, endpoint_url: str, stack_name: str) -> None:
        super().__init__(local.LOCAL_REGION, stack_name)
        self.session = _EndpointSession(_local_session(), endpoint_url)


def _local_session() -> Any:
    return boto3.Session(
        aws_access_key_id=local.LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=local.LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=local.LOCAL_REGION,
    )


class _Aws:
    """boto3 clients for the demo's target: a local endpoint (test credentials) or the real chain."""

    def __init__(self, endpoint_url: str | None) -> None:
        if endpoint_url:
            session = _local_session()
        else:
            session = boto3.Session()
        config = Config(retries={"mode": "standard", "max_attempts": 5})
        self.s3 = session.client("s3", endpoint_url=endpoint_url, config=config)
        self.sqs = session.client("sqs", endpoint_url=endpoint_url, config=config)
        self.dynamodb = session.client("dynamodb", endpoint_url=endpoint_url, config=config)
        self.cloudformation = session.client("cloudformation", endpoint_url=endpoint_url, config=config)
        self.lambda_ = live.lambda_client(_EndpointSession(session, endpoint_url))
        self.events = session.client("events", endpoint_url=endpoint_url, config=config)
        self.secretsmanager = session.client("secretsmanager", endpoint_url=endpoint_url, config=config)


def put_objects(aws: _Aws, bucket: str, samples: Sequence[Sample], log: Log) -> None:
    """Put the samples' objects."""
    for sample in samples:
        aws.s3.put_object(Bucket=bucket, Key=sample.key, Body=sample.body, ContentType=sample.content_type)
        log(f"  put s3://{bucket}/{sample.key} ({format_size(len(sample.body))}, {sample.note})")


def send_plain_messages(aws: _Aws, bucket: str, queue_url: str, samples: Sequence[Sample], log: Log) -> None:
    """A plain ``{"bucket","key"}`` message for each sample routed through the queue, and for each one the
    stack does not watch (as any producer allowed to send to the queue could: the function refuses it)."""
    for sample in samples:
        if sample.route in ("queue", "refused"):
            body = json.dumps({"bucket": bucket, "key": sample.key}, ensure_ascii=False)
            aws.sqs.send_message(QueueUrl=queue_url, MessageBody=body)
            log(f"  sent {body} to the queue")


def ask_the_function(
    aws: _Aws, outputs: dict[str, str], bucket: str, samples: Sequence[Sample], log: Log
) -> dict[str, dict[str, Any]]:
    """The function's answers to a resolve request (``kie-uploader url``'s) for the samples it must refuse."""
    answers: dict[str, dict[str, Any]] = {}
    for sample in samples:
        if sample.route != "refused":
            continue
        uri = f"s3://{bucket}/{sample.key}"
        try:
            (answers[sample.key],) = live.resolve(aws.lambda_, outputs["FunctionName"], [uri], min_valid=0)
        except live.LiveUrlError as exc:
            answers[sample.key] = {"status": "ERROR", "error": str(exc)}
        log(f"  asked the function for {uri}: {answers[sample.key].get('status')}")
    return answers


def _read_record(aws: _Aws, table: str, bucket: str, key: str) -> dict[str, Any] | None:
    """The object's record as it is now (a strongly consistent read), or None."""
    pk = {"pk": {"S": f"s3://{bucket}/{key}"}}
    item = aws.dynamodb.get_item(TableName=table, Key=pk, ConsistentRead=True)
    return deserialize(item["Item"]) if "Item" in item else None


def _settled(sample: Sample, record: dict[str, Any] | None) -> bool:
    """A record is final for the demo once it has the expected status or a status no retry will change;
    an object the stack does not watch has none (a record at all is final: a wrong one)."""
    if sample.expected_status == NOT_WATCHED:
        return record is None or record.get("status") in TERMINAL
    if not record or record.get("status") not in TERMINAL:
        return False
    return record["status"] == sample.expected_status or not record.get("retryable", False)


def wait_for_records(
    aws: _Aws,
    outputs: dict[str, str],
    bucket: str,
    samples: Sequence[Sample],
    *,
    timeout: float,
    log: Log,
) -> dict[str, dict[str, Any] | None]:
    """Poll the table until every sample's record is settled or ``timeout`` passes; shows progress.

    A line is logged when the count changes and every 10 s otherwise, with the dead-letter queue's depth
    when it is not empty (the first sign of a function that fails).
    """
    records: dict[str, dict[str, Any] | None] = {s.key: None for s in samples}
    started = time.monotonic()
    last: tuple[int, int] | None = None
    last_logged = 0.0
    while True:
        for sample in samples:
            if _settled(sample, records[sample.key]):
                continue
            records[sample.key] = _read_record(aws, outputs["TableName"], bucket, sample.key)
        done = sum(_settled(s, records[s.key]) for s in samples)
        dead = _queue_depth(aws, outputs.get("DeadLetterQueueUrl"))
        elapsed = time.monotonic() - started
        if (done, dead) != last or elapsed - last_logged >= 10:
            extra = f", {dead} in the dead-letter queue" if dead else ""
            log(f"  waiting for records: {done}/{len(samples)} settled{extra} ({elapsed:.0f} s)")
            last, last_logged = (done, dead), elapsed
        if done == len(samples):
            return records
        if elapsed > timeout:
            log(f"  gave up waiting after {timeout:.0f} s")
            return records
        time.sleep(0.5)


def _queue_depth(aws: _Aws, queue_url: str | None) -> int:
    if not queue_url:
        return 0
    attributes = aws.sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    ).get("Attributes", {})
    return int(attributes.get("ApproximateNumberOfMessages", 0))


def download(url: str, timeout: float = 30.0) -> bytes:
    """The bytes behind a downloadUrl (the emulator's, or kie.ai's public one)."""
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {scheme}")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - scheme checked above
        return bytes(response.read())


def check_bytes(
    samples: Sequence[Sample],
    records: dict[str, dict[str, Any] | None],
    answers: dict[str, dict[str, Any]] | None = None,
) -> list[ObjectResult]:
    """Download each uploaded object back from its downloadUrl and compare it with what was put."""
    results = []
    for sample in samples:
        record = records.get(sample.key)
        result = ObjectResult(sample, record, answer=(answers or {}).get(sample.key))
        if record and record.get("status") == "UPLOADED" and record.get("downloadUrl"):
            try:
                result.bytes_match = download(str(record["downloadUrl"])) == sample.body
            except (OSError, ValueError, urllib.error.URLError) as exc:
                result.bytes_match = False
                result.check_error = redact(f"download failed: {exc}")
        results.append(result)
    return results


def exercise_stack(
    aws: _Aws,
    outputs: dict[str, str],
    samples: Sequence[Sample],
    *,
    timeout: float,
    log: Log,
    present: frozenset[str] = frozenset(),
    drain_timeout: float | None = None,
) -> list[ObjectResult]:
    """The demo's core against any deployed stack: put (the samples not ``present`` yet), send the plain
    messages, ask the function about what it must refuse, wait, check. An object the stack does not watch
    is checked once more after the queue is empty (``drain_timeout``, default ``timeout``): the function
    handled its message, and wrote nothing."""
    bucket = outputs["BucketNames"].split(",")[0].strip()
    fresh = [s for s in samples if s.key not in present]
    log(f"Putting {len(fresh)} sample objects into s3://{bucket}/")
    put_objects(aws, bucket, fresh, log)
    send_plain_messages(aws, bucket, outputs["QueueUrl"], samples, log)
    answers = ask_the_function(aws, outputs, bucket, samples, log)
    records = wait_for_records(aws, outputs, bucket, samples, timeout=timeout, log=log)
    refused = [s for s in samples if s.route == "refused"]
    if refused:
        _wait_until_drained(
            aws, outputs["QueueUrl"], timeout if drain_timeout is None else drain_timeout, log
        )
        for sample in refused:
            records[sample.key] = _read_record(aws, outputs["TableName"], bucket, sample.key)
    log("Downloading every downloadUrl to compare the bytes")
    return check_bytes(samples, records, answers)


def _wait_until_drained(aws: _Aws, queue_url: str, timeout: float, log: Log) -> None:
    """Wait until the queue holds no message, visible or in flight (every message was handled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attributes = aws.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        ).get("Attributes", {})
        if not sum(int(value) for value in attributes.values()):
            return
        time.sleep(0.5)
    log(f"  the queue still holds messages after {timeout:.0f} s")


def backfill_before_the_samples(cli_aws: Aws, bucket: str, log: Log) -> list[str]:
    """``kie-uploader backfill s3://bucket/`` (the command's own code), run while the bucket holds only the
    objects from before the stack: it enqueues the watched one and skips the other as not watched."""
    uri = S3Uri(bucket, "")
    log(f"Backfilling the objects from before the stack: kie-uploader backfill {uri}")
    done = backfill(cli_aws, uri)
    log(f"  {done.sentence()}")
    return [f"$ kie-uploader backfill {uri}   (the objects from before the stack)", done.sentence()]


def subscribe_to_record_changes(aws: _Aws, outputs: dict[str, str]) -> str | None:
    """A consumer's queue behind an EventBridge rule on the stack's ``EventPattern`` (when events are on)."""
    if "EventPattern" not in outputs:
        return None
    url: str = aws.sqs.create_queue(QueueName="demo-record-changes")["QueueUrl"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = outputs["EventBusName"]
    aws.events.put_rule(Name="demo-record-changes", EventPattern=outputs["EventPattern"], EventBusName=bus)
    aws.events.put_targets(
        Rule="demo-record-changes", EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}]
    )
    return url


def show_live_url_and_event(
    aws: _Aws, outputs: dict[str, str], objects: Sequence[ObjectResult], consumer: str | None, *, log: Log
) -> tuple[list[str], bool]:
    """``kie-uploader url`` for one uploaded object, and the first record-change event the consumer got."""
    uploaded = next((o for o in objects if o.status == "UPLOADED"), None)
    if uploaded is None:
        return ["kie-uploader url: no uploaded object to ask about"], False
    bucket = outputs["BucketNames"].split(",")[0].strip()
    uri = f"s3://{bucket}/{uploaded.sample.key}"
    lines: list[str] = []
    ok = True
    try:
        (result,) = live.resolve(aws.lambda_, outputs["FunctionName"], [uri], min_valid=3600)
        url = live.url_of(result)
        how = "uploaded now" if result.get("uploaded") else "the live record, no kie.ai call"
        lines.append(f"$ kie-uploader url {uri} --min-valid 1h   ({how})")
        lines.append(f"{url}")
    except live.LiveUrlError as exc:
        lines.append(f"kie-uploader url {uri}: {exc}")
        ok = False
    if consumer is None:
        return lines, ok
    log("Reading one record-change event from the consumer's queue")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = aws.sqs.receive_message(QueueUrl=consumer, MaxNumberOfMessages=1, WaitTimeSeconds=1)
        for message in got.get("Messages", []):
            event = json.loads(message["Body"])
            detail = event.get("detail", {})
            lines.append(
                f"event received: {event.get('detail-type')} {detail.get('s3Uri')} "
                f"status={detail.get('status')} downloadUrl={detail.get('downloadUrl')}"
            )
            return lines, ok
    lines.append("event received: none within 30 s")
    return lines, False


# --- local and real runs ---------------------------------------------------------------------------


def _is_local_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


def check_real_service(options: DemoOptions, environ: dict[str, str] | None = None) -> str:
    """Refuse a real kie.ai URL unless it can work; returns the API key. Raises ``DemoError`` saying why."""
    env = dict(os.environ if environ is None else environ)
    key = env.get("KIE_API_KEY", "")
    if not key:
        raise DemoError(f"--kie-url {options.kie_url} needs your kie.ai API key in KIE_API_KEY")
    if not options.bucket:
        raise DemoError(f"--kie-url {options.kie_url} needs --bucket NAME: {REAL_KIE_NOTE}")
    if env.get("AWS_ENDPOINT_URL"):
        raise DemoError(
            f"AWS_ENDPOINT_URL is set ({env['AWS_ENDPOINT_URL']}): {REAL_KIE_NOTE}; unset it to use real AWS"
        )
    return key


def _secret_key(value: dict[str, Any]) -> str:
    """The kie.ai key a secret value holds (a raw key or ``{"apiKey": ...}``), "" for none."""
    text = str(value.get("SecretString") or "").strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            return ""
        return str(document.get("apiKey", "")).strip() if isinstance(document, dict) else ""
    return text


def ensure_api_key(
    secrets: Any, secret_arn: str, api_key: str, *, overwrite: bool, stack_name: str, log: Log = _stderr
) -> bool:
    """Leave the deployed stack's secret alone unless ``overwrite``; True when the key was put.

    The secret of a stack deployed to AWS is production's: the demo never replaces it with whatever
    ``KIE_API_KEY`` holds on this machine (a test key would become production's key). Without
    ``--overwrite-secret`` it runs only when the secret already holds the same key.
    """
    if overwrite:
        deploy.put_api_key(secret_arn, api_key, client=secrets)
        log(f"Put KIE_API_KEY into stack {stack_name}'s secret (--overwrite-secret)")
        return True
    try:
        current = _secret_key(secrets.get_secret_value(SecretId=secret_arn))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        current = ""  # the stack's secret has no value yet
    if not current:
        raise DemoError(
            f"stack {stack_name}'s secret holds no kie.ai key; the demo does not write a deployed stack's "
            "secret: put the key into it yourself (README, Deploy to AWS), or pass --overwrite-secret to "
            "let the demo put KIE_API_KEY into it"
        )
    if current != api_key:
        raise DemoError(
            f"stack {stack_name}'s secret holds another kie.ai key than KIE_API_KEY; the demo will not "
            "replace it (a test key would become production's key): set KIE_API_KEY to the deployed key, "
            "or pass --overwrite-secret to replace it"
        )
    return False


def _deploy_local(
    endpoint_url: str, kie_url: str, options: DemoOptions, state_dir: Path, timings: dict[str, float]
) -> dict[str, str]:

    context = {
        "bucketNames": DEMO_BUCKET,  # created, with its objects from "before the stack", before the deploy
        "maxObjectBytes": str(options.max_object_bytes),
        "prefix": NOTIFIED_PREFIX,  # archive/ is not watched: backfill skips it, the function refuses it
    }
    return deploy.deploy_local(
        endpoint_url=endpoint_url,
        kie_base_url=kie_url,
        context=context,
        stack_name=options.stack_name,
        outdir=state_dir / "cdk.out",
        timings=timings,
    )


def run_local(options: DemoOptions, log: Log = _stderr) -> DemoResult:
    """Start ministack and the emulator (unless ``options.kie_url`` is a local URL), deploy, exercise."""
    # The demo deploys the repository's app with the CDK CLI: what is missing is said before anything starts.
    deploy.require_app(local.repo_root(), what="the demo (python -m kie_uploader.demo)")
    deploy.cdk_command()
    state_dir = Path(options.state_dir or local.state_root() / "demo")
    state_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    servers: list[local.Server] = []
    result: DemoResult | None = None
    started = time.monotonic()
    try:
        shutil.rmtree(state_dir / "ministack", ignore_errors=True)  # a fresh S3 for every run
        ministack = local.start_ministack(state_dir / "ministack")
        servers.append(ministack)
        log(f"Started ministack at {ministack.endpoint_url} (pid {ministack.pid})")
        kie_url, api_key = options.kie_url, DEMO_API_KEY
        if kie_url is None:
            emulator = local.start_emulator(api_key=api_key, state_dir=state_dir / "kie-emulator")
            servers.append(emulator)
            kie_url = emulator.endpoint_url
            log(f"Started the kie.ai emulator at {kie_url} (pid {emulator.pid})")
        else:
            api_key = os.environ.get("KIE_API_KEY", api_key)
        timings["start"] = time.monotonic() - started

        aws = _Aws(ministack.endpoint_url)
        samples = demo_samples(options.max_object_bytes)
        before = [s for s in samples if s.route in ("backfill", "refused")]
        log(f"Creating s3://{DEMO_BUCKET}/ with {len(before)} objects from before the stack")
        aws.s3.create_bucket(Bucket=DEMO_BUCKET)
        put_objects(aws, DEMO_BUCKET, before, log)

        log("Deploying the CDK stack into ministack (cdk bootstrap + deploy)…")
        phase = time.monotonic()
        outputs = _deploy_local(ministack.endpoint_url, kie_url, options, state_dir, timings)
        log(f"Deployed stack {options.stack_name} in {time.monotonic() - phase:.0f} s")
        deploy.put_api_key(outputs["SecretArn"], api_key, endpoint_url=ministack.endpoint_url)

        phase = time.monotonic()
        consumer = subscribe_to_record_changes(aws, outputs)
        backfilled = backfill_before_the_samples(
            _CliAws(ministack.endpoint_url, options.stack_name), DEMO_BUCKET, log
        )
        objects = exercise_stack(
            aws,
            outputs,
            samples,
            timeout=options.timeout,
            log=log,
            present=frozenset(s.key for s in before),
        )
        timings["exercise"] = time.monotonic() - phase
        live_lines, live_ok = show_live_url_and_event(aws, outputs, objects, consumer, log=log)
        timings["total"] = time.monotonic() - started
        result = DemoResult(
            objects=objects,
            bucket=outputs["BucketNames"].split(",")[0].strip(),
            outputs=outputs,
            endpoint_url=ministack.endpoint_url,
            kie_url=kie_url,
            timings=timings,
            servers=list(servers),
            live=live_lines,
            live_ok=live_ok,
            backfill=backfilled,
        )
        if not result.ok:
            log(
                f"Not every object reached its expected status; the function's log is in {ministack.log_path}"
            )
        return result
    finally:
        if options.keep and result is not None:
            for server in servers:
                atexit.unregister(server.stop)  # leave them running after this process exits
        else:
            for server in reversed(servers):
                server.stop()


def run_real(options: DemoOptions, log: Log = _stderr) -> DemoResult:
    """Against a stack already deployed to AWS with ``--bucket`` among its buckets and the real kie.ai."""
    api_key = check_real_service(options)
    aws = _Aws(None)
    try:
        stack = aws.cloudformation.describe_stacks(StackName=options.stack_name)["Stacks"][0]
    except NoCredentialsError as exc:
        raise DemoError("no AWS credentials: the real service needs a real bucket in your account") from exc
    except ClientError as exc:
        raise DemoError(
            f"stack {options.stack_name} is not deployed in AWS: deploy it first (see README)"
        ) from exc
    try:
        uploaders = discovery.uploaders_of(stack.get("Outputs", []), options.stack_name)
        outputs = discovery.choose(uploaders, options.stack_name).as_outputs()
    except discovery.DiscoveryError as exc:
        raise DemoError(str(exc)) from None
    buckets = [b.strip() for b in outputs.get("BucketNames", "").split(",") if b.strip()]
    if options.bucket not in buckets:
        raise DemoError(
            f"bucket {options.bucket} is not one of stack {options.stack_name}'s buckets: {buckets}"
        )
    function = aws.lambda_.get_function_configuration(FunctionName=outputs["FunctionName"])
    env = function.get("Environment", {}).get("Variables", {})
    if env.get("KIE_BASE_URL", "").rstrip("/") != str(options.kie_url).rstrip("/"):
        raise DemoError(f"the deployed function calls {env.get('KIE_BASE_URL')}, not {options.kie_url}")
    limit = int(env.get("MAX_OBJECT_BYTES", DEMO_MAX_OBJECT_BYTES))
    watched = watch.from_env(env) or watch.Watched.of_buckets([options.bucket or ""])
    ensure_api_key(
        aws.secretsmanager,
        outputs["SecretArn"],
        api_key,
        overwrite=options.overwrite_secret,
        stack_name=options.stack_name,
        log=log,
    )
    samples = real_samples(watched, options.bucket or "", limit, f"kie-uploader-demo/{int(time.time())}/")
    outputs = {**outputs, "BucketNames": options.bucket or ""}
    started = time.monotonic()
    try:
        # The real queue may carry other traffic: the refused sample's message is waited for a while only.
        objects = exercise_stack(aws, outputs, samples, timeout=options.timeout, log=log, drain_timeout=30)
    finally:
        if not options.keep:
            for sample in samples:
                aws.s3.delete_object(Bucket=options.bucket or "", Key=sample.key)
    return DemoResult(
        objects=objects,
        bucket=options.bucket or "",
        outputs=outputs,
        kie_url=str(options.kie_url),
        timings={"total": time.monotonic() - started},
    )


def real_samples(watched: watch.Watched, bucket: str, limit: int, root: str) -> list[Sample]:
    """The samples for a stack deployed to AWS, under ``root`` inside the first prefix it watches in the
    bucket (outside it for the one it must refuse). Every watched sample goes through the queue (a plain
    message: the stack's notifications may not cover ``root``); a sample the stack does not watch (outside
    its prefix, or without its suffix) is expected refused; none is outside when it watches every key."""
    rule = (watched.rules_of(bucket) or (watch.Rule(bucket),))[0]
    samples = []
    for sample in demo_samples(limit, root=f"{rule.prefix}{root}", outside_root=root):
        if len(sample.body) > 8 * 1024 * 1024 and sample.expected_status == "FAILED":
            continue  # no huge upload for the demo
        if watched.watches(bucket, sample.key):
            if sample.route == "refused":
                continue  # the stack watches every key: nothing to refuse
            samples.append(dataclasses.replace(sample, route="queue"))
        else:
            note = "not watched by the stack: refused"
            samples.append(
                dataclasses.replace(sample, expected_status=NOT_WATCHED, route="refused", note=note)
            )
    return samples


def run_demo(options: DemoOptions, log: Log = _stderr) -> DemoResult:
    """The demo: locally on ministack and the emulator, or with ``--kie-url`` against the real kie.ai."""
    if options.kie_url and not _is_local_url(options.kie_url):
        return run_real(options, log)
    if options.bucket:
        raise DemoError("--bucket names a real bucket, which only makes sense with a real --kie-url")
    return run_local(options, log)


def keep_instructions(result: DemoResult) -> str:
    """How to talk to what ``--keep`` left running."""
    if result.endpoint_url is None:
        return f"The sample objects stay in s3://{result.bucket}/kie-uploader-demo/."
    env = local.local_aws_env(result.endpoint_url)
    exports = " ".join(f"{name}={value}" for name, value in env.items())
    sample = next((o.sample.key for o in result.objects if o.sample.route == "notification"), "")
    outside = next((o.sample.key for o in result.objects if o.sample.route == "refused"), "")
    pids = " ".join(f"-{s.pid}" for s in result.servers)
    return "\n".join(
        [
            "Everything is still running. To talk to it:",
            f"  export {exports}",
            "  .venv/bin/kie-uploader info                    # notify mode, the watched prefix",
            "  .venv/bin/kie-uploader list",
            f"  .venv/bin/kie-uploader status 's3://{result.bucket}/{sample}'",
            f"  .venv/bin/kie-uploader status 's3://{result.bucket}/{outside}'   # not watched",
            f"  .venv/bin/kie-uploader backfill s3://{result.bucket}/",
            "  .venv/bin/kie-uploader list --status FAILED --json",
            f"  aws s3 ls s3://{result.bucket}/ --recursive   # with the AWS CLI, if installed",
            f"kie.ai emulator: {result.kie_url} (its calls: {result.kie_url}/_emulator/calls)",
            f"Stop them with: kill -TERM -- {pids}",
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kie_uploader.demo",
        description="Deploy the stack into a local AWS (ministack), upload sample objects to the kie.ai "
        "emulator and show the result.",
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave ministack, the emulator and the stack running"
    )
    parser.add_argument(
        "--kie-url",
        help=f"a real kie.ai base URL, e.g. https://api.kie.ai, with KIE_API_KEY set; {REAL_KIE_NOTE} "
        "(--bucket, real AWS credentials, no AWS_ENDPOINT_URL)",
    )
    parser.add_argument("--bucket", help="a real bucket of a stack deployed to AWS (only with --kie-url)")
    parser.add_argument(
        "--overwrite-secret",
        action="store_true",
        help="with --kie-url: put KIE_API_KEY into the deployed stack's secret, replacing the key it holds "
        "(without it the demo never writes that secret and runs only if it already holds KIE_API_KEY)",
    )
    parser.add_argument("--stack", default=DEFAULT_STACK, help=f"stack name (default {DEFAULT_STACK})")
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for records (default 180)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; 0 only when every object reached its expected status."""
    args = build_parser().parse_args(argv)
    options = DemoOptions(
        keep=args.keep,
        kie_url=args.kie_url,
        bucket=args.bucket,
        stack_name=args.stack,
        timeout=args.timeout,
        overwrite_secret=args.overwrite_secret,
    )
    try:
        result = run_demo(options)
    except (DemoError, deploy.SetupError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    except (local.LocalServerError, deploy.DeployError, ClientError, BotoCoreError) as exc:
        print(f"demo: failed: {redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130
    print()
    print(result.table())
    print()
    for line in result.backfill + result.live:
        print(line)
    if result.backfill or result.live:
        print()
    timings = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.timings.items())
    ok = sum(o.ok for o in result.objects)
    print(f"{ok}/{len(result.objects)} objects reached their expected status ({timings})")
    if options.keep:
        print()
        print(keep_instructions(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
