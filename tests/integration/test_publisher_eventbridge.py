"""The publisher against ministack: records written by the real uploader into a table with a stream, the
stream read with GetRecords, the handler called in-process with those records in the shape Lambda delivers
them, and its events received from EventBridge through a rule on ``source: kie-uploader`` → SQS."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests import factories as f
from tests.conftest import KIE_TEST_KEY
from tests.factories import BUCKET, LambdaContext, World
from uploader import publisher

STREAMED_TABLE = "records-streamed"
RULE_PATTERN = {"source": ["kie-uploader"]}


@dataclass
class Outbox:
    """The streamed records table, the rule's SQS queue and the stream reader of one test."""

    world: World
    stream_arn: str
    queue_url: str
    sqs: Any
    streams: Any

    def stream_event(self) -> dict[str, Any]:
        """Every record of the table's stream so far, as the event source mapping would deliver them
        (GetRecords gives ``ApproximateCreationDateTime`` as a timestamp and no ``eventSourceARN``)."""
        records: list[dict[str, Any]] = []
        description = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        for shard in description["Shards"]:
            iterator = self.streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            ).get("ShardIterator")
            while iterator:
                answer = self.streams.get_records(ShardIterator=iterator)
                for record in answer["Records"]:
                    record["dynamodb"]["ApproximateCreationDateTime"] = int(
                        record["dynamodb"]["ApproximateCreationDateTime"].timestamp()
                    )
                    record["eventSourceARN"] = self.stream_arn
                    records.append(record)
                if not answer["Records"]:
                    break
                iterator = answer.get("NextShardIterator")
        return {"Records": records}

    def received(self, expected: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The EventBridge events the rule delivered to the queue (waits for ``expected`` of them)."""
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            for message in answer.get("Messages", []):
                events.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            if len(events) >= expected and not answer.get("Messages"):
                break
        return events


@pytest.fixture
def outbox(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Outbox]:
    created = world.ddb.create_table(
        TableName=STREAMED_TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    stream_arn = created["TableDescription"]["LatestStreamArn"]
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="object-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = boto3.client("events")
    events.put_rule(Name="kie-uploader-objects", EventPattern=json.dumps(RULE_PATTERN))
    events.put_targets(Rule="kie-uploader-objects", Targets=[{"Id": "queue", "Arn": queue_arn}])
    world.env(TABLE_NAME=STREAMED_TABLE, EVENT_BUS_NAME=None)
    monkeypatch.setattr(publisher, "_publisher", None)
    yield Outbox(world, stream_arn, queue_url, sqs, boto3.client("dynamodbstreams"))
    monkeypatch.setattr(publisher, "_publisher", None)


def publish(event: dict[str, Any]) -> dict[str, Any]:
    return publisher.handler(event, LambdaContext(function_name="kie-uploader-publisher"))


def test_uploaded_failed_and_deleted_records_reach_a_rule_as_events(outbox: Outbox) -> None:
    world = outbox.world
    big = "incoming/too-large.bin"
    assert world.invoke(f.s3_notification(world.created("incoming/a b.png", b"png bytes"))) is None
    assert world.invoke(f.s3_notification(world.created(big, b"x" * 1001))) is None
    # A write of only claim attributes (the lead's processing claim) changes no status nor URL.
    world.ddb.update_item(
        TableName=STREAMED_TABLE,
        Key={"pk": {"S": f"s3://{BUCKET}/incoming/a b.png"}},
        UpdateExpression="SET claimOwner = :o, claimUntil = :u ADD rev :one",
        ExpressionAttributeValues={":o": {"S": "req-1"}, ":u": {"N": "1"}, ":one": {"N": "1"}},
    )
    world.s3.delete_object(Bucket=BUCKET, Key="incoming/a b.png")
    assert world.invoke(f.s3_notification(world.removed("incoming/a b.png"))) is None
    event = outbox.stream_event()
    # The claim write above (and the uploader's own claim writes, if it makes any) are on the stream too.
    assert len(event["Records"]) >= 4

    assert publish(event) == {"batchItemFailures": []}

    received = outbox.received(expected=3)
    kinds = [(e["detail-type"], e["detail"]["key"]) for e in received]
    assert sorted(kinds) == sorted(
        [
            ("Object Uploaded", "incoming/a b.png"),
            ("Object Upload Failed", big),
            ("Object Deleted", "incoming/a b.png"),
        ]
    )
    by_kind = {e["detail-type"]: e for e in received}
    up = by_kind["Object Uploaded"]
    assert up["source"] == "kie-uploader" and up["account"] and up["time"]
    detail = up["detail"]
    assert detail["s3Uri"] == f"s3://{BUCKET}/incoming/a b.png" and detail["bucket"] == BUCKET
    assert detail["status"] == "UPLOADED" and detail["downloadUrl"].startswith(world.kie.base_url)
    assert detail["expiresAt"] > time.time() and detail["size"] == len(b"png bytes") and detail["etag"]
    failed = by_kind["Object Upload Failed"]["detail"]
    assert failed["status"] == "FAILED" and "1001 bytes" in failed["error"] and failed["downloadUrl"] is None
    deleted = by_kind["Object Deleted"]["detail"]
    assert deleted["previousStatus"] == "UPLOADED" and deleted["downloadUrl"] is None
    assert len({e["detail"]["eventId"] for e in received}) == 3
    text = json.dumps(received)
    assert KIE_TEST_KEY not in text and "X-Amz-" not in text


def test_a_redelivered_batch_publishes_the_same_event_ids(outbox: Outbox) -> None:
    world = outbox.world
    assert world.invoke(f.s3_notification(world.created("again.txt"))) is None
    event = outbox.stream_event()

    assert publish(event) == {"batchItemFailures": []}
    assert publish(json.loads(json.dumps(event))) == {"batchItemFailures": []}

    received = outbox.received(expected=2)
    assert len(received) == 2
    assert received[0]["detail"]["eventId"] == received[1]["detail"]["eventId"]


def test_a_refused_put_events_reports_the_batch_and_drops_nothing(outbox: Outbox) -> None:
    world = outbox.world
    assert world.invoke(f.s3_notification(world.created("first.txt"))) is None
    assert world.invoke(f.s3_notification(world.created("second.txt"))) is None
    event = outbox.stream_event()
    # ministack accepts PutEvents to any bus *name* (and delivers nowhere); a bus ARN of another account
    # is refused per entry (ResourceNotFoundException), as a missing or foreign bus is on AWS.
    world.env(EVENT_BUS_NAME="arn:aws:events:us-east-1:111111111111:event-bus/no-such-bus")

    answer = publish(event)

    # Lambda resumes at the first record that announces something (the claim write before it announces
    # nothing and is done).
    first = next(
        r["dynamodb"]["SequenceNumber"] for r in event["Records"] if "status" in r["dynamodb"]["NewImage"]
    )
    assert answer == {"batchItemFailures": [{"itemIdentifier": first}]}
    assert outbox.received(expected=0, timeout=2) == []

    # Fixed (the bus is the default again): the redelivered batch goes out whole.
    world.env(EVENT_BUS_NAME=None)
    assert publish(event) == {"batchItemFailures": []}
    assert sorted(e["detail"]["key"] for e in outbox.received(expected=2)) == ["first.txt", "second.txt"]


# --- the event source mapping itself, run by ministack ----------------------------------------------------


def function_zip() -> bytes:
    """The function's asset as a zip: the ``uploader`` package and the pure-Python dependencies the publisher
    imports (ministack runs it on its own interpreter, which has boto3)."""
    import aws_lambda_powertools
    import typing_extensions

    import uploader

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in (uploader, aws_lambda_powertools):
            root = Path(str(package.__file__)).parent
            for path in root.rglob("*.py"):
                archive.write(path, path.relative_to(root.parent))
        module = Path(typing_extensions.__file__)
        archive.write(module, module.name)
    return buffer.getvalue()


def test_ministack_runs_the_stream_mapping_and_the_function_publishes(outbox: Outbox) -> None:
    """ministack 1.5.33 polls the stream and invokes the function with its records. (It does not honour
    ``batchItemFailures`` for a stream: a reported failure is not delivered again there, see
    docs/events.md.)"""
    world = outbox.world
    lam = boto3.client("lambda")
    lam.create_function(
        FunctionName="kie-uploader-publisher",
        Runtime="python3.12",
        Role="arn:aws:iam::000000000000:role/publisher",
        Handler="uploader.publisher.handler",
        Code={"ZipFile": function_zip()},
        Timeout=60,
        Environment={"Variables": {"EVENT_BUS_NAME": "default"}},
    )
    lam.create_event_source_mapping(
        FunctionName="kie-uploader-publisher",
        EventSourceArn=outbox.stream_arn,
        StartingPosition="TRIM_HORIZON",
        BatchSize=100,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        BisectBatchOnFunctionError=True,
        MaximumRetryAttempts=10,
    )
    started = time.monotonic()

    assert world.invoke(f.s3_notification(world.created("mapped.png", b"png"))) is None

    [event] = outbox.received(expected=1, timeout=20)
    assert event["detail-type"] == "Object Uploaded" and event["detail"]["key"] == "mapped.png"
    assert event["detail"]["downloadUrl"].startswith(world.kie.base_url)
    assert time.monotonic() - started < 20
