"""The URL's life on a stack deployed into ministack: a ``keepAlive`` prefix refreshed by the schedule, and
every change announced on EventBridge to a consumer's queue (a rule with the stack's ``EventPattern``).

The stack runs beside the session's main one, on a bucket of its own, with a refresh round every minute.
Time is not waited out: the record's ``expiresAt`` is moved close to now, as three days would have done.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DeployedStack, deploy_beside

pytestmark = pytest.mark.slow

BUCKET = "live-e2e"
SCHEDULE_WAIT_SECONDS = 200.0


@pytest.fixture(scope="module")
def live_stack(deployed_stack: DeployedStack, tmp_path_factory: pytest.TempPathFactory) -> DeployedStack:
    deployed_stack.client("s3").create_bucket(Bucket=BUCKET)
    return deploy_beside(
        deployed_stack,
        "KieUploaderLive",
        {
            "bucketNames": BUCKET,
            "keepAlive": f"s3://{BUCKET}/keep/",
            "keepAliveScheduleMinutes": "1",
        },
        Path(tmp_path_factory.mktemp("e2e-live-cdk-out")),
    )


@pytest.fixture(scope="module")
def consumer(live_stack: DeployedStack) -> Iterator[str]:
    """A consumer's queue behind an EventBridge rule on the stack's own event pattern."""
    sqs, bridge = live_stack.client("sqs"), live_stack.client("events")
    url = sqs.create_queue(QueueName="record-changes")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = live_stack.outputs["EventBusName"]
    bridge.put_rule(Name="record-changes", EventPattern=live_stack.outputs["EventPattern"], EventBusName=bus)
    bridge.put_targets(Rule="record-changes", EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
    yield url


def received(
    live_stack: DeployedStack, queue_url: str, key: str, detail_type: str, url: str | None = None
) -> dict[str, Any]:
    """The first event of that kind about that key (with that ``downloadUrl``, when given)."""
    sqs = live_stack.client("sqs")
    deadline = time.monotonic() + 60
    seen: list[str] = []
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            event = json.loads(message["Body"])
            seen.append(f"{event['detail-type']} {event['detail'].get('key')}")
            detail = event["detail"]
            if (
                event["detail-type"] == detail_type
                and detail["key"] == key
                and (url is None or detail["downloadUrl"] == url)
            ):
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                return dict(event)
    raise AssertionError(f"no {detail_type!r} event for {key} within 60 s; seen: {seen}")


def serves(url: str, body: bytes) -> bool:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return bool(answer.read() == body)


def test_uploads_refreshes_and_deletions_reach_a_consumer_and_keep_alive_refreshes_what_is_due(
    live_stack: DeployedStack, consumer: str
) -> None:
    s3 = live_stack.client("s3")
    s3.put_object(Bucket=BUCKET, Key="keep/clip.mp4", Body=b"keep me alive")
    s3.put_object(Bucket=BUCKET, Key="other/clip.mp4", Body=b"not kept")
    first = live_stack.wait_for_record(BUCKET, "keep/clip.mp4", lambda r: r.get("status") == "UPLOADED")
    other = live_stack.wait_for_record(BUCKET, "other/clip.mp4", lambda r: r.get("status") == "UPLOADED")

    uploaded = received(live_stack, consumer, "keep/clip.mp4", "Object Uploaded")
    assert uploaded["source"] == "kie-uploader"
    assert uploaded["detail"]["downloadUrl"] == first["downloadUrl"]
    assert serves(uploaded["detail"]["downloadUrl"], b"keep me alive")

    # Three days later, as far as the records know: both files about to expire at kie.ai.
    soon = int(time.time()) + 120
    table = live_stack.outputs["TableName"]
    for key in ("keep/clip.mp4", "other/clip.mp4"):
        live_stack.client("dynamodb").update_item(
            TableName=table,
            Key={"pk": {"S": f"s3://{BUCKET}/{key}"}},
            UpdateExpression="SET expiresAt = :soon",
            ExpressionAttributeValues={":soon": {"N": str(soon)}},
        )

    refreshed = live_stack.wait_for_record(
        BUCKET,
        "keep/clip.mp4",
        lambda r: r.get("downloadUrl") != first["downloadUrl"],
        timeout=SCHEDULE_WAIT_SECONDS,
    )
    assert refreshed["status"] == "UPLOADED" and int(refreshed["expiresAt"]) > soon + 3600
    assert refreshed["uploadPath"] != first["uploadPath"]
    assert serves(refreshed["downloadUrl"], b"keep me alive")
    assert serves(first["downloadUrl"], b"keep me alive")  # kie.ai still has the old file until it expires
    # (Moving expiresAt by hand above was announced too, with the old URL: that one is passed over.)
    event = received(live_stack, consumer, "keep/clip.mp4", "Object URL Refreshed", refreshed["downloadUrl"])
    assert int(event["detail"]["expiresAt"]) == int(refreshed["expiresAt"])
    # Outside the keepAlive prefix: left alone.
    untouched = live_stack.record(BUCKET, "other/clip.mp4")
    assert untouched is not None and untouched["downloadUrl"] == other["downloadUrl"]

    s3.delete_object(Bucket=BUCKET, Key="keep/clip.mp4")
    live_stack.wait_for_record(BUCKET, "keep/clip.mp4", lambda r: r.get("status") == "DELETED")
    deleted = received(live_stack, consumer, "keep/clip.mp4", "Object Deleted")
    assert deleted["detail"]["downloadUrl"] is None and deleted["detail"]["status"] == "DELETED"
