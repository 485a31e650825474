"""Outage and recovery through the stack deployed into ministack: nothing is lost.

kie.ai is down (connection refused: the emulator is stopped) for the whole first pass. Objects arrive the
way the stack is deployed with ``notify=lambda`` (the ``direct_stack`` fixture; the default is ``queue``):
S3 notifications invoke the function asynchronously; every
invocation fails (the function raises after recording ``FAILED``), Lambda retries it twice, then parks the
event in the DLQ as a Lambda destination record. Then kie.ai comes back on the same port, the operator
runs ``kie-uploader redrive``, the queue's event source mapping hands the destination records to the
function, and every object ends ``UPLOADED``.

ministack retries asynchronous invocations after 1 s and 2 s (``LAMBDA_ASYNC_RETRY_BASE_SECONDS``), where
AWS waits about a minute and two: the behaviour is AWS's, the wall-clock is shorter.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from kie_uploader import cli, local
from tests.e2e.conftest import DeployedStack
from tests.factories import BUCKET, TABLE, World

pytestmark = pytest.mark.slow

OBJECTS = 6
WAIT_SECONDS = 120.0


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


def wait_for(what: str, check: Any, timeout: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def dlq_bodies(stack: DeployedStack) -> list[dict[str, Any]]:
    """The DLQ's messages, read without consuming them (visibility 0)."""
    sqs = stack.client("sqs")
    bodies: dict[str, dict[str, Any]] = {}
    for _ in range(5):
        answer = sqs.receive_message(
            QueueUrl=stack.outputs["DeadLetterQueueUrl"], MaxNumberOfMessages=10, VisibilityTimeout=0
        )
        for message in answer.get("Messages", []):
            bodies[message["MessageId"]] = json.loads(message["Body"])
    return list(bodies.values())


def test_an_outage_parks_every_object_in_the_dlq_and_redrive_uploads_them_all(
    direct_stack: DeployedStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack, emulator = direct_stack, direct_stack.emulator
    s3, bucket = stack.client("s3"), stack.bucket_name
    run = uuid.uuid4().hex[:8]
    objects = {f"outage-{run}/{i}.txt": f"outage {run} object {i}".encode() for i in range(OBJECTS)}
    port = emulator.port

    # Given kie.ai is down for the whole first pass
    emulator.stop()
    try:
        for key, body in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)

        # then every object is recorded FAILED (retryable) and its event waits in the DLQ
        for key in objects:
            record = stack.wait_for_record(bucket, key, lambda r: r.get("status") == "FAILED")
            assert record["errorKind"] == "transient" and record["retryable"] is True
            assert "unreachable" in record["error"]
        parked = wait_for(
            "every event in the DLQ",
            lambda: (bodies := dlq_bodies(stack)) and len(bodies) >= OBJECTS and bodies,
        )
    finally:
        # when kie.ai comes back (same address: the function's KIE_BASE_URL)
        emulator.port = port
        emulator.start()
    parked_keys = {
        record["s3"]["object"]["key"]
        for body in parked
        for record in body.get("requestPayload", {}).get("Records", [])
        if record["s3"]["object"]["key"].startswith(f"outage-{run}/")
    }
    assert parked_keys == set(objects)

    # and the operator redrives the DLQ
    for name, value in stack.aws_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    assert cli.main(["--stack", stack.stack_name, "redrive"]) == 0
    assert f"moved {len(parked)} message" in capsys.readouterr().out

    # then every object ends UPLOADED with its own bytes, and both queues drain
    for key, body in objects.items():
        record = stack.wait_for_record(bucket, key, lambda r: r.get("status") == "UPLOADED")
        assert "error" not in record and int(record["attempts"]) > 1
        assert download(str(record["downloadUrl"])) == body
    wait_for("the queue to drain", lambda: stack.queue_depth(stack.outputs["QueueUrl"]) == 0)
    assert stack.queue_depth(stack.outputs["DeadLetterQueueUrl"]) == 0


# --- the SQS path: real queues, an in-process event source mapping ----------------------------------------
#
# With the stack's defaults (function timeout 120 s, so a visibility timeout of 720 s, and maxReceiveCount 5)
# a message takes an hour to reach the DLQ: too slow for a test. Here ministack's real queues carry the
# messages, with a real redrive policy (maxReceiveCount 3) and a 1 s visibility timeout, and a poller in the
# test invokes the handler the way Lambda's event source mapping does: receive up to 10, invoke, delete
# all but the batchItemFailures, leave those to come back when their visibility ends. ministack moves a
# message to the DLQ once it has been received maxReceiveCount times.

MAX_RECEIVE_COUNT = 3
VISIBILITY_SECONDS = 1


@dataclass
class QueuePair:
    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str
    stack_name: str


def create_queue_stack(w: World, name: str) -> QueuePair:
    """A CloudFormation stack with the queue, its DLQ and the outputs the CLI reads."""
    template = {
        "Resources": {
            "DeadLetterQueue": {"Type": "AWS::SQS::Queue"},
            "Queue": {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "VisibilityTimeout": VISIBILITY_SECONDS,
                    "RedrivePolicy": {
                        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                        "maxReceiveCount": MAX_RECEIVE_COUNT,
                    },
                },
            },
        },
        "Outputs": {
            "BucketNames": {"Value": BUCKET},
            "QueueUrl": {"Value": {"Ref": "Queue"}},
            "QueueArn": {"Value": {"Fn::GetAtt": ["Queue", "Arn"]}},
            "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
            "TableName": {"Value": TABLE},
        },
    }
    cloudformation = boto3.client("cloudformation")
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template))
    cloudformation.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig={"Delay": 1})
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in cloudformation.describe_stacks(StackName=name)["Stacks"][0]["Outputs"]
    }
    return QueuePair(outputs["QueueUrl"], outputs["QueueArn"], outputs["DeadLetterQueueUrl"], name)


def depth(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def run_event_source_mapping(w: World, pair: QueuePair, timeout: float = 60.0) -> int:
    """Poll the queue and invoke the handler until the queue is empty; the number of invocations."""
    sqs = boto3.client("sqs")
    invocations = 0
    deadline = time.monotonic() + timeout
    while depth(sqs, pair.queue_url) > 0:
        assert time.monotonic() < deadline, "the queue did not drain"
        got = sqs.receive_message(
            QueueUrl=pair.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"]
        )
        messages = got.get("Messages", [])
        if not messages:
            continue
        event = {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": pair.queue_arn,
                    "awsRegion": "us-east-1",
                }
                for m in messages
            ]
        }
        answer = w.invoke(event)
        invocations += 1
        retry = {item["itemIdentifier"] for item in answer["batchItemFailures"]}
        done = [m for m in messages if m["MessageId"] not in retry]
        if done:
            sqs.delete_message_batch(
                QueueUrl=pair.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
    return invocations


def test_an_outage_on_the_sqs_path_parks_every_message_in_the_dlq_and_redrive_uploads_them_all(
    world: World,  # noqa: F811 (the fixture imported above)
    capsys: pytest.CaptureFixture[str],
) -> None:
    pair = create_queue_stack(world, f"OutageQueues{uuid.uuid4().hex[:6]}")
    world.s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": pair.queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    objects = {f"sqs-outage/{i}.txt": f"sqs outage object {i}".encode() for i in range(OBJECTS)}
    sqs = boto3.client("sqs")

    # Given kie.ai refuses connections for the whole first pass
    world.env(KIE_BASE_URL=f"http://127.0.0.1:{local.free_port()}", KIE_MAX_ATTEMPTS="1")
    for key, body in objects.items():
        world.put(key, body)
    run_event_source_mapping(world, pair)

    # then every object is recorded FAILED (retryable), and every message is in the DLQ
    for key in objects:
        record = world.record(key)
        assert record is not None and record["status"] == "FAILED", (key, record)
        assert record["errorKind"] == "transient" and record["retryable"] is True
        assert int(record["attempts"]) == MAX_RECEIVE_COUNT  # one call per delivery
    assert depth(sqs, pair.dead_letter_queue_url) == OBJECTS

    # when kie.ai is back and the operator redrives the DLQ
    world.env(KIE_BASE_URL=world.kie.base_url)
    assert cli.main(["--stack", pair.stack_name, "redrive"]) == 0
    assert f"moved {OBJECTS} messages" in capsys.readouterr().out
    run_event_source_mapping(world, pair)

    # then every object is UPLOADED with its bytes, once, and nothing is left in either queue
    for key, body in objects.items():
        record = world.record(key)
        assert record is not None and record["status"] == "UPLOADED" and "error" not in record
        assert world.kie.stored(record["filePath"]) == body
    assert world.kie.upload_count == OBJECTS
    assert depth(sqs, pair.queue_url) == 0 and depth(sqs, pair.dead_letter_queue_url) == 0
