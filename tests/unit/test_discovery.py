"""Finding a stack's uploaders: the construct's discovery records, an older stack's named outputs, and the
choice among several (``--uploader``, ``live_url(uploader=...)``), as DescribeStacks returns them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kie_uploader import discovery, live
from kie_uploader.cli.aws import StackResources
from kie_uploader.cli.errors import EXIT_ERROR, CliError
from kie_uploader.live import LiveUrlError

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/"


def record(name: str, **extra: Any) -> dict[str, Any]:
    """A discovery output as DescribeStacks returns it (CloudFormation has joined the record's JSON)."""
    value = {
        "schema": discovery.SCHEMA_VERSION,
        "name": name,
        "buckets": [f"{name.lower()}-bucket"],
        "queueUrl": f"{QUEUE}{name}-queue",
        "deadLetterQueueUrl": f"{QUEUE}{name}-dlq",
        "tableName": f"{name}-records",
        "secretArn": f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-key",
        "functionName": f"{name}-function",
        "alarmTopicArn": f"arn:aws:sns:us-east-1:123456789012:{name}-alarms",
        "notify": "queue",
        "dashboardName": f"{name}-dashboard",
        **extra,
    }
    return {
        "OutputKey": f"{name}DiscoveryA1B2C3D4",
        "OutputValue": json.dumps(value, separators=(",", ":")),
        "Description": discovery.record_description(name),
    }


LEGACY = {
    "BucketNames": "photos,videos",
    "QueueUrl": f"{QUEUE}q",
    "DeadLetterQueueUrl": f"{QUEUE}dlq",
    "TableName": "records",
    "SecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:kie",
    "FunctionName": "uploader",
}


def legacy_outputs() -> list[dict[str, str]]:
    return [{"OutputKey": k, "OutputValue": v, "Description": "x"} for k, v in LEGACY.items()]


def test_a_stack_with_one_construct_is_its_only_uploader_without_a_name() -> None:
    # The reproduction: a construct-built stack (no named outputs) is a kie-uploader stack.
    stack = StackResources.from_described("MyImported", [record("KieUploader")])
    assert (stack.uploader, stack.table_name, stack.bucket_names) == (
        "KieUploader",
        "KieUploader-records",
        ("kieuploader-bucket",),
    )
    assert stack.outputs["FunctionName"] == "KieUploader-function"
    assert (stack.notify, stack.dashboard_name) == ("queue", "KieUploader-dashboard")


def test_of_several_uploaders_the_named_one_is_chosen_by_its_path_or_the_stacks() -> None:
    outputs = [record("Reports"), record("Incoming"), {"OutputKey": "Other", "OutputValue": "x"}]
    assert StackResources.from_described("Photos", outputs, "Reports").queue_url == f"{QUEUE}Reports-queue"
    chosen = StackResources.from_described("Photos", outputs, "Photos/Incoming")
    assert (chosen.uploader, chosen.uploaders) == ("Incoming", ("Incoming", "Reports"))


def test_of_several_uploaders_without_a_name_the_error_lists_them() -> None:
    with pytest.raises(CliError) as error:
        StackResources.from_described("Photos", [record("Reports"), record("Incoming")])
    assert error.value.exit_code == EXIT_ERROR
    assert str(error.value) == (
        "stack Photos has 2 uploaders: Incoming, Reports; choose one with --uploader NAME"
    )
    with pytest.raises(CliError, match=r"has no uploader Nope \(its uploaders: Incoming, Reports\)$"):
        StackResources.from_described("Photos", [record("Reports"), record("Incoming")], "Nope")


def test_an_older_stacks_named_outputs_are_its_one_uploader() -> None:
    stack = StackResources.from_described("KieUploader", legacy_outputs())
    assert (stack.uploader, stack.bucket_names, stack.queue_url) == (
        "KieUploader",
        ("photos", "videos"),
        f"{QUEUE}q",
    )
    assert stack.outputs == LEGACY and (stack.notify, stack.dashboard_name) == ("", "")


def test_a_stack_without_records_or_outputs_is_not_a_kie_uploader_stack() -> None:
    with pytest.raises(CliError, match="^stack Other has no kie-uploader: .*is it a kie-uploader stack"):
        StackResources.from_described("Other", [{"OutputKey": "QueueUrl", "OutputValue": "q"}])


def test_a_record_of_a_newer_schema_says_to_upgrade_instead_of_guessing() -> None:
    newer = record("KieUploader", schema=discovery.SCHEMA_VERSION + 1)
    with pytest.raises(CliError, match="newer than this kie-uploader reads.*upgrade kie-s3-uploader$"):
        StackResources.from_described("S", [newer])


def test_the_records_event_pattern_object_is_the_outputs_json_text() -> None:
    pattern = {"source": ["kie-uploader"]}
    [uploader] = discovery.uploaders_of([record("U", eventBusName="default", eventPattern=pattern)], "S")
    assert uploader.as_outputs()["EventBusName"] == "default"
    assert json.loads(uploader.as_outputs()["EventPattern"]) == pattern


class Stacks:
    """DescribeStacks of one stack with the given outputs."""

    def __init__(self, outputs: list[dict[str, Any]]) -> None:
        self.outputs = outputs

    def describe_stacks(self, StackName: str) -> dict[str, Any]:  # noqa: N803 (boto3's naming)
        return {"Stacks": [{"StackName": StackName, "Outputs": self.outputs}]}


def test_live_url_finds_the_function_of_the_named_uploader_or_the_only_one() -> None:
    several = Stacks([record("Incoming"), record("Reports")])
    assert live.function_name_of(several, "Photos", "Reports") == "Reports-function"
    assert live.function_name_of(Stacks([record("Media")]), "MediaStack") == "Media-function"
    assert live.function_name_of(Stacks(legacy_outputs()), "KieUploader") == "uploader"
    with pytest.raises(LiveUrlError, match="2 uploaders: Incoming, Reports; choose one with uploader=NAME$"):
        live.function_name_of(several, "Photos")


def test_a_record_with_the_distributed_backfill_names_its_state_machine_and_bucket() -> None:
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:KieUploaderBackfill1A2B"
    with_backfill = record("KieUploader", backfillStateMachineArn=arn, backfillBucketName="bf-bucket")
    stack = StackResources.from_described("S", [with_backfill])
    assert (stack.backfill_state_machine_arn, stack.backfill_bucket_name) == (arn, "bf-bucket")
    # without backfill=True (or from an older stack) there is none: the CLI says so
    assert StackResources.from_described("S", [record("KieUploader")]).backfill_state_machine_arn == ""
