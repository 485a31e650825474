"""The local world the in-process sections run the handler against: ministack (S3, DynamoDB, Secrets
Manager) and the kie.ai emulator, each a process of its own so that their CPU is not the function's.

The function's environment is the one the stack gives it (table, secret, kie.ai URL), pointed at loopback.
Objects are put into the bucket for real and announced by S3 notifications wrapped in SQS records, the
shape the deployed queue delivers, built by the tests' factories from AWS's sample events.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from bench.common import STATE_DIR, ensure_function_on_path, scoped_env
from kie_uploader import local
from tests import factories

BUCKET = "bench-objects"
#: The same with versioning on: a presigned URL pins the version, no second HeadObject.
VERSIONED_BUCKET = "bench-versioned"
TABLE = "bench-records"
SECRET = "bench/kie-api-key"
API_KEY = "bench-kie-key"
#: The size of every benchmark object: small, so that the figures are the function's overhead, not bytes.
OBJECT_BYTES = 1024
#: Variables of the function's environment set by :meth:`LocalWorld.function_env` (besides ``AWS_*``).
FUNCTION_VARIABLES = (
    "TABLE_NAME",
    "KIE_API_KEY_SECRET_ID",
    "KIE_API_KEY",
    "KIE_BASE_URL",
    "ALLOWED_BUCKETS",
    "MAX_CONCURRENCY",
    "KIE_TIMEOUT_SECONDS",
    "KIE_MAX_ATTEMPTS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
)
#: Objects per SQS batch: the stack's event source mapping batch size.
BATCH_SIZE = 10


@dataclass
class PutObject:
    """An object put into the bucket, with the facts its S3 notification carries."""

    key: str
    etag: str
    size: int
    version_id: str | None
    sequencer: str
    bucket: str = BUCKET


@dataclass
class LocalWorld:
    """ministack + the emulator process, the bucket/table/secret, and the function's environment."""

    ministack: local.Server
    emulator: local.Server
    env: dict[str, str]
    _sequencers: Iterator[int] = field(default_factory=lambda: itertools.count(0x10000))
    _clients: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, state_dir: Path = STATE_DIR) -> LocalWorld:
        """Start both servers on free loopback ports and create the resources; stop with :meth:`stop`."""
        ministack = local.start_ministack(state_dir / "ministack")
        try:
            emulator = local.start_emulator(api_key=API_KEY, state_dir=state_dir / "kie-emulator")
        except BaseException:
            ministack.stop()
            raise
        env = {
            **local.local_aws_env(ministack.endpoint_url),
            "TABLE_NAME": TABLE,
            "KIE_API_KEY_SECRET_ID": SECRET,
            "KIE_BASE_URL": emulator.endpoint_url,
            "ALLOWED_BUCKETS": f"{BUCKET},{VERSIONED_BUCKET}",
            "MAX_CONCURRENCY": "10",
            "KIE_TIMEOUT_SECONDS": "40",
            "KIE_MAX_ATTEMPTS": "4",
            "POWERTOOLS_SERVICE_NAME": "kie-uploader",
            "POWERTOOLS_METRICS_NAMESPACE": "KieUploader",
        }
        world = cls(ministack=ministack, emulator=emulator, env=env)
        try:
            world.create_resources()
        except BaseException:
            world.stop()
            raise
        return world

    def stop(self) -> None:
        for server in (self.emulator, self.ministack):
            server.stop()

    # --- AWS side ---------------------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service,
                endpoint_url=self.ministack.endpoint_url,
                region_name=local.LOCAL_REGION,
                aws_access_key_id=local.LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=local.LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            )
        return self._clients[service]

    def create_resources(self) -> None:
        """The bucket, the table (as the stack makes it) and the secret holding the key as JSON."""
        self.client("s3").create_bucket(Bucket=BUCKET)
        self.client("s3").create_bucket(Bucket=VERSIONED_BUCKET)
        self.client("s3").put_bucket_versioning(
            Bucket=VERSIONED_BUCKET, VersioningConfiguration={"Status": "Enabled"}
        )
        self.client("dynamodb").create_table(**factories.records_table_definition(TABLE))
        self.client("secretsmanager").create_secret(Name=SECRET, SecretString=json.dumps({"apiKey": API_KEY}))

    def put_objects(self, count: int, prefix: str, bucket: str = BUCKET) -> list[PutObject]:
        """Put ``count`` distinct objects (a few threads: this is setup, not the function's time)."""
        run = uuid.uuid4().hex[:8]
        keys = [f"{prefix}/{run}/object {i:05d}.bin" for i in range(count)]
        s3 = self.client("s3")

        def put(key: str) -> PutObject:
            body = os.urandom(OBJECT_BYTES)
            answer = s3.put_object(Bucket=bucket, Key=key, Body=body)
            return PutObject(
                key=key,
                etag=answer["ETag"].strip('"'),
                size=len(body),
                version_id=answer.get("VersionId"),
                sequencer="",
                bucket=bucket,
            )

        with ThreadPoolExecutor(max_workers=4) as pool:
            objects = list(pool.map(put, keys))
        for obj in objects:  # in key order, as S3 would number them
            obj.sequencer = f"00{next(self._sequencers):016X}"
        return objects

    def statuses(self, objects: Sequence[PutObject]) -> dict[str, int]:
        """How many of ``objects`` have a record in each status (``MISSING`` for none)."""
        counts: dict[str, int] = {}
        ddb = self.client("dynamodb")
        for start in range(0, len(objects), 100):
            keys = [{"pk": {"S": f"s3://{BUCKET}/{o.key}"}} for o in objects[start : start + 100]]
            found: dict[str, str] = {}
            request: dict[str, Any] = {TABLE: {"Keys": keys, "ConsistentRead": True}}
            while request:
                answer = ddb.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(TABLE, []):
                    found[item["pk"]["S"]] = item["status"]["S"]
                request = answer.get("UnprocessedKeys") or {}
            for key in keys:
                status = found.get(key["pk"]["S"], "MISSING")
                counts[status] = counts.get(status, 0) + 1
        return counts

    # --- the emulator -----------------------------------------------------------------------------------

    def _admin(self, name: str, payload: dict[str, Any] | None) -> Any:
        data = json.dumps(payload or {}).encode()
        request = urllib.request.Request(
            f"{self.emulator.endpoint_url}/_emulator/{name}",
            data=data,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def set_latency(self, seconds: float) -> None:
        """Every upload call waits ``seconds`` before it is served (kie.ai downloading a large file)."""
        self._admin("faults", {"latency_seconds": seconds})

    def reset_emulator(self) -> None:
        """Forget stored files, calls and faults (keeps the emulator process's memory flat)."""
        self._admin("reset", None)

    # --- the function's side ------------------------------------------------------------------------------

    def function_env(self, **overrides: str) -> contextlib.AbstractContextManager[None]:
        """The function's environment in this process for a ``with`` block (the handler rebuilds its
        runtime when it changes); everything is put back afterwards."""
        return scoped_env({**self.env, **overrides})


def sqs_batches(objects: Sequence[PutObject], size: int = BATCH_SIZE) -> list[dict[str, Any]]:
    """SQS events of ``size`` records, each body an S3 notification of one object (the queue's shape)."""
    events = []
    for start in range(0, len(objects), size):
        records = [
            factories.sqs_record(
                factories.s3_notification(
                    factories.s3_record(
                        o.bucket,
                        o.key,
                        size=o.size,
                        etag=o.etag,
                        version_id=o.version_id,
                        sequencer=o.sequencer,
                        event_time=event_time(),
                    )
                )
            )
            for o in objects[start : start + size]
        ]
        events.append(factories.sqs_event(*records))
    return events


def event_time() -> str:
    """S3's eventTime format (UTC, milliseconds): now, so that records order as they would on AWS."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def import_handler() -> Any:
    """The handler module, imported in this process (after the function's folder is on the path)."""
    ensure_function_on_path()
    from uploader import handler

    return handler


def lambda_context(remaining_ms: int = 120_000) -> Any:
    """The tests' stand-in Lambda context (120 s: the stack's function timeout)."""
    return factories.LambdaContext(remaining_ms=remaining_ms)
