"""The stack on a bucket the user already has, with a notification rule of its own, through EventBridge.

A second stack (``KieUploaderExisting``) in the deployed stack's ministack (its bootstrap is reused):
``bucketNames=<the user's bucket>``, ``notify=eventbridge``, ``prefix=incoming/``. The user's own rule
(every ObjectCreated → the user's queue) overlaps the stack's events: with S3 notifications S3 would refuse
the stack's rule; with EventBridge both fire. Then the prefix changes, and the stack is deployed again.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kie_uploader.deploy import deploy_local, destroy_local
from tests.e2e.conftest import DeployedStack, deploy_beside

pytestmark = pytest.mark.slow

STACK_NAME = "KieUploaderExisting"
USERS_RULE_ID = "users-own-thumbnailer"


@dataclass
class ExistingBucketStack:
    stack: DeployedStack
    bucket: str
    users_queue_url: str
    context: dict[str, str]

    def redeploy(self, **changes: str) -> None:
        self.context.update(changes)
        self.stack.outputs = deploy_local(
            endpoint_url=self.stack.endpoint_url,
            kie_base_url=self.stack.emulator.base_url,
            context=self.context,
            stack_name=STACK_NAME,
            outdir=self.stack.outdir,
            timings=self.stack.timings,
        )

    def our_rules(self) -> list[dict[str, Any]]:
        """The EventBridge rules (on the default bus) that target the stack's queue."""
        events = self.stack.client("events")
        queue_arn = self.stack.client("sqs").get_queue_attributes(
            QueueUrl=self.stack.outputs["QueueUrl"], AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        found = []
        for rule in events.list_rules()["Rules"]:
            targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
            if any(target["Arn"] == queue_arn for target in targets):
                found.append(rule)
        return found

    def users_messages(self, key: str, *, timeout: float = 60.0) -> list[dict[str, Any]]:
        """The S3 records for ``key`` that reached the user's own queue."""
        sqs = self.stack.client("sqs")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = sqs.receive_message(
                QueueUrl=self.users_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            records = []
            for message in answer.get("Messages", []):
                records += json.loads(message["Body"]).get("Records", [])
            matching = [r for r in records if r["s3"]["object"]["key"] == key]
            if matching:
                return matching
        return []


@pytest.fixture(scope="module")
def existing(
    deployed_stack: DeployedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExistingBucketStack]:
    s3, sqs = deployed_stack.client("s3"), deployed_stack.client("sqs")
    bucket = f"users-bucket-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    users_queue = sqs.create_queue(QueueName=f"users-events-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    users_queue_arn = sqs.get_queue_attributes(QueueUrl=users_queue, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"Id": USERS_RULE_ID, "QueueArn": users_queue_arn, "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    )
    context = {"bucketNames": bucket, "notify": "eventbridge", "prefix": "incoming/"}
    outdir: Path = tmp_path_factory.mktemp("e2e-existing-cdk-out")
    stack = deploy_beside(deployed_stack, STACK_NAME, dict(context), outdir)
    yield ExistingBucketStack(stack, bucket, users_queue, context)
    destroy_local(endpoint_url=deployed_stack.endpoint_url, stack_name=STACK_NAME, outdir=outdir)
    # Destroying the stack takes its own entries off the bucket, and leaves the user's.
    left = s3.get_bucket_notification_configuration(Bucket=bucket)
    assert [rule["Id"] for rule in left.get("QueueConfigurations", [])] == [USERS_RULE_ID]


def uploaded(record: dict[str, Any]) -> bool:
    return record.get("status") == "UPLOADED"


def test_the_deploy_turns_on_eventbridge_and_keeps_the_buckets_own_rule(
    existing: ExistingBucketStack,
) -> None:
    config = existing.stack.client("s3").get_bucket_notification_configuration(Bucket=existing.bucket)
    assert [rule["Id"] for rule in config.get("QueueConfigurations", [])] == [USERS_RULE_ID]
    assert "EventBridgeConfiguration" in config
    assert not config.get("LambdaFunctionConfigurations")
    assert existing.stack.outputs["BucketNames"] == existing.bucket
    (rule,) = existing.our_rules()
    assert json.loads(rule["EventPattern"])["detail"]["object"]["key"] == [{"prefix": "incoming/"}]


def test_an_object_goes_to_kie_through_eventbridge_and_the_buckets_own_rule_still_fires(
    existing: ExistingBucketStack,
) -> None:
    key = f"incoming/photo-{uuid.uuid4().hex[:8]}.png"
    body = uuid.uuid4().bytes * 32
    existing.stack.client("s3").put_object(Bucket=existing.bucket, Key=key, Body=body)
    record = existing.stack.wait_for_record(existing.bucket, key, uploaded)
    assert int(record["size"]) == len(body)
    assert existing.users_messages(key), "the bucket's own notification did not fire"


def test_changing_the_prefix_updates_the_one_rule_and_leaves_no_stale_one(
    existing: ExistingBucketStack,
) -> None:
    existing.redeploy(prefix="other/")
    rules = existing.our_rules()
    assert len(rules) == 1, [rule["Name"] for rule in rules]
    assert json.loads(rules[0]["EventPattern"])["detail"]["object"]["key"] == [{"prefix": "other/"}]
    config = existing.stack.client("s3").get_bucket_notification_configuration(Bucket=existing.bucket)
    assert [rule["Id"] for rule in config.get("QueueConfigurations", [])] == [USERS_RULE_ID]

    s3 = existing.stack.client("s3")
    old_key, new_key = f"incoming/{uuid.uuid4().hex}.txt", f"other/{uuid.uuid4().hex}.txt"
    s3.put_object(Bucket=existing.bucket, Key=old_key, Body=b"under the old prefix")
    s3.put_object(Bucket=existing.bucket, Key=new_key, Body=b"under the new prefix")
    existing.stack.wait_for_record(existing.bucket, new_key, uploaded)
    time.sleep(2.0)  # the older object's event, had a stale rule matched it, would have arrived by now
    assert existing.stack.record(existing.bucket, old_key) is None
    assert existing.stack.queue_depth(existing.stack.outputs["DeadLetterQueueUrl"]) == 0


def test_switching_to_queue_and_changing_the_prefix_replaces_the_stacks_own_s3_rules_in_place(
    existing: ExistingBucketStack,
) -> None:
    # The user narrows their rule so that S3 notifications of the stack no longer overlap it.
    s3 = existing.stack.client("s3")
    config = s3.get_bucket_notification_configuration(Bucket=existing.bucket)
    config.pop("ResponseMetadata", None)
    (users_rule,) = config["QueueConfigurations"]
    users_rule["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": "thumbs/"}]}}
    s3.put_bucket_notification_configuration(Bucket=existing.bucket, NotificationConfiguration=config)

    existing.redeploy(notify="queue", prefix="queued/")
    assert existing.our_rules() == []  # the EventBridge rule went with the mode
    existing.redeploy(prefix="queued-v2/")
    config = s3.get_bucket_notification_configuration(Bucket=existing.bucket)
    entries = {rule["Id"]: rule for rule in config["QueueConfigurations"]}
    ours = sorted(rule_id for rule_id in entries if rule_id != USERS_RULE_ID)
    # Two entries of the stack's (created, removed) with the new prefix, the same ids as before, no stale one.
    assert [rule_id.rsplit("-", 1)[-1] for rule_id in ours] == ["ObjectCreated", "ObjectRemoved"]
    for rule_id in ours:
        (rule,) = entries[rule_id]["Filter"]["Key"]["FilterRules"]
        assert rule["Value"] == "queued-v2/"
    assert USERS_RULE_ID in entries

    key = f"queued-v2/{uuid.uuid4().hex}.txt"
    s3.put_object(Bucket=existing.bucket, Key=key, Body=b"through the queue")
    existing.stack.wait_for_record(existing.bucket, key, uploaded)
