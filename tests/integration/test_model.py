"""Model-based test of the record's invariant: after every delivery, the record describes S3's current object.

Hypothesis generates histories against the real local servers: S3 operations on an unversioned and a
versioned bucket (put new bytes, put identical bytes, overwrite quickly, delete, delete and re-put, delete a
non-current version), whose real notifications ministack sends to an SQS queue; and deliveries of those
notifications (any subset, shuffled, duplicated, two invocations at once) mixed with plain messages (some
forced) that run while others are in flight. When every notification has been delivered at least once:

* the object exists → ``UPLOADED`` with its ``versionId`` and ``etag``, and a ``downloadUrl`` serving exactly
  its bytes;
* no current version (deleted, or a delete marker) → ``DELETED`` without a ``downloadUrl``;
* no claim is left on any record.

``MODEL_EXAMPLES`` sets how many histories run (``make test``: 12; ``make model``: 300).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
from typing import Any

import boto3
import pytest
import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from tests import factories as f
from tests.factories import BUCKET, VERSIONED, World
from uploader.config import Config
from uploader.events import parse_event
from uploader.processor import Processor
from uploader.retry import Deadline
from uploader.runtime import build_processor

EXAMPLES = int(os.environ.get("MODEL_EXAMPLES", "12"))
STEPS = int(os.environ.get("MODEL_STEPS", "14"))
KEYS = ("a", "b")
BUCKETS = (BUCKET, VERSIONED)
_examples = itertools.count()


def receive_all(sqs: Any, queue_url: str) -> list[str]:
    """Every message on the queue now (ministack sends S3's notifications while it answers the request)."""
    bodies: list[str] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = got.get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


class Histories(RuleBasedStateMachine):
    """One history per example, on keys of its own (no reset between examples)."""

    world: World
    queue_url: str
    containers: tuple[Processor, Processor]

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"h{next(_examples)}/"
        self.pending: list[str] = []  # notifications sent by S3, delivered or not (they may come again)
        self.undelivered: set[int] = set()
        self.touched: set[tuple[str, str]] = set()
        self.counter = itertools.count()
        self.sqs = boto3.client("sqs")

    # --- S3 operations ---

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _collect(self) -> None:
        for body in receive_all(self.sqs, self.queue_url):
            self.undelivered.add(len(self.pending))
            self.pending.append(body)

    def _put(self, bucket: str, key: str, body: bytes | None = None) -> None:
        data = body if body is not None else f"{bucket}/{key} #{next(self.counter)}".encode()
        self.world.s3.put_object(Bucket=bucket, Key=self._key(key), Body=data)
        self.touched.add((bucket, self._key(key)))

    def _current_body(self, bucket: str, key: str) -> bytes | None:
        try:
            body: bytes = self.world.s3.get_object(Bucket=bucket, Key=self._key(key))["Body"].read()
            return body
        except self.world.s3.exceptions.NoSuchKey:
            return None
        except Exception:  # a delete marker is current
            return None

    @initialize(bucket=st.sampled_from(BUCKETS), key=st.sampled_from(KEYS))
    def first_put(self, bucket: str, key: str) -> None:
        self._put(bucket, key)
        self._collect()

    @rule(bucket=st.sampled_from(BUCKETS), key=st.sampled_from(KEYS))
    def put_new_bytes(self, bucket: str, key: str) -> None:
        self._put(bucket, key)
        self._collect()

    @rule(bucket=st.sampled_from(BUCKETS), key=st.sampled_from(KEYS))
    def put_identical_bytes(self, bucket: str, key: str) -> None:
        self._put(bucket, key, self._current_body(bucket, key) or b"identical")
        self._collect()

    @rule(bucket=st.sampled_from(BUCKETS), key=st.sampled_from(KEYS))
    def overwrite_quickly(self, bucket: str, key: str) -> None:
        self._put(bucket, key)
        self._put(bucket, key)
        self._collect()

    @rule(bucket=st.sampled_from(BUCKETS), key=st.sampled_from(KEYS))
    def delete(self, bucket: str, key: str) -> None:
        self.world.s3.delete_object(Bucket=bucket, Key=self._key(key))
        self.touched.add((bucket, self._key(key)))
        self._collect()

    @rule(bucket=st.sampled_from(BUCKETS), key=st.sampled_from(KEYS), identical=st.booleans())
    def delete_and_reput(self, bucket: str, key: str, identical: bool) -> None:
        before = self._current_body(bucket, key)
        self.world.s3.delete_object(Bucket=bucket, Key=self._key(key))
        self._put(bucket, key, before if identical and before is not None else None)
        self._collect()

    @rule(key=st.sampled_from(KEYS), data=st.data())
    def delete_a_noncurrent_version(self, key: str, data: st.DataObject) -> None:
        listing = self.world.s3.list_object_versions(Bucket=VERSIONED, Prefix=self._key(key))
        old = [
            v["VersionId"]
            for v in listing.get("Versions", []) + listing.get("DeleteMarkers", [])
            if v["Key"] == self._key(key) and not v["IsLatest"]
        ]
        pick = data.draw(st.integers(0, 10_000), label="version")
        if old:
            version = old[pick % len(old)]
            self.world.s3.delete_object(Bucket=VERSIONED, Key=self._key(key), VersionId=version)
            self._collect()

    # --- deliveries ---

    def _draw_batch(self, data: st.DataObject) -> list[str]:
        # Indices, not the bodies: the bodies (request ids, sequencers) differ each time a history is
        # replayed, and Hypothesis must draw the same shape of data on a replay.
        picks = data.draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=4), label="batch")
        if not self.pending:
            return []
        return [self.pending[pick % len(self.pending)] for pick in picks]

    def _deliver(self, container: Processor, bodies: list[str]) -> None:
        event = f.sqs_event(*[f.sqs_record(body) for body in bodies])
        container.process_messages(parse_event(event).messages, Deadline(lambda: 60_000, 3.0))
        for body in bodies:
            if body in self.pending:
                self.undelivered.discard(self.pending.index(body))

    @rule(data=st.data())
    def deliver_some(self, data: st.DataObject) -> None:
        batch = self._draw_batch(data)
        if batch:
            self._deliver(self.containers[0], batch)

    @rule(data=st.data())
    def deliver_two_at_once(self, data: st.DataObject) -> None:
        first, second = self._draw_batch(data), self._draw_batch(data)
        self._concurrently((self.containers[0], first), (self.containers[1], second))

    @rule(
        bucket=st.sampled_from(BUCKETS),
        key=st.sampled_from(KEYS),
        force=st.booleans(),
        data=st.data(),
    )
    def plain_message_while_others_run(self, bucket: str, key: str, force: bool, data: st.DataObject) -> None:
        plain = {**f.plain_message(bucket, self._key(key)), "force": force}
        self.touched.add((bucket, self._key(key)))
        others = self._draw_batch(data)
        self._concurrently((self.containers[0], [json.dumps(plain)]), (self.containers[1], others))

    def _concurrently(self, *work: tuple[Processor, list[str]]) -> None:
        errors: list[BaseException] = []

        def target(container: Processor, bodies: list[str]) -> None:
            try:
                if bodies:
                    self._deliver(container, bodies)
            except BaseException as exc:  # surfaced below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=target, args=w) for w in work]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        if errors:
            raise errors[0]

    # --- the property ---

    def teardown(self) -> None:
        self._collect()
        rest = [self.pending[i] for i in sorted(self.undelivered)]
        random.Random(len(self.pending)).shuffle(rest)
        for start in range(0, len(rest), 5):
            self._deliver(self.containers[0], rest[start : start + 5])
        for bucket, key in sorted(self.touched):
            self._check(bucket, key)

    def _check(self, bucket: str, key: str) -> None:
        record = self.world.record(key, bucket)
        where = f"s3://{bucket}/{key}: {record}"
        try:
            current = self.world.s3.get_object(Bucket=bucket, Key=key)
        except Exception:  # NoSuchKey, or a delete marker is current
            current = None
        if current is None:
            if record is None:
                return  # only plain messages named it, and nothing ever existed: nothing to record
            assert record.get("status") in ("DELETED", "SKIPPED"), where
            assert "downloadUrl" not in record, where
        else:
            body = current["Body"].read()
            assert record is not None, where
            assert record.get("status") == "UPLOADED", where
            assert record["etag"] == current["ETag"].strip('"'), where
            assert record["versionId"] == current.get("VersionId", "null"), where
            served = requests.get(record["downloadUrl"], timeout=10).content
            assert served == body, where
        assert "claimOwner" not in record, where


def test_every_history_converges_to_s3s_current_state(world: World) -> None:
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="model-notifications")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    for bucket in BUCKETS:
        world.s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": events}]},
        )
    world.kie.set_faults(latency_seconds=0.05)  # wide enough for deliveries to overlap
    receive_all(sqs, queue_url)  # the s3:TestEvents
    Histories.world = world
    Histories.queue_url = queue_url
    config = Config.from_env()
    Histories.containers = (build_processor(config), build_processor(config))

    run_state_machine_as_test(
        Histories,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )


pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
