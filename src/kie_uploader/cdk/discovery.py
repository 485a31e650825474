"""The construct's discovery record: one CloudFormation output per ``KieUploader`` that the CLI and
``live_url`` read (:mod:`kie_uploader.discovery` says why an output, and reads it).

Its logical id comes from the construct's path (``<path>Discovery<hash>``, unique in the stack as CDK makes
every id), its description starts with :data:`~kie_uploader.discovery.DESCRIPTION_MARKER`, and its value is
the JSON of the construct's name and resources (CDK renders the tokens in it as ``Fn::Join``). The user
writes no output: a stack with two constructs has two records.
"""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import CfnOutput, IStableAnyProducer, Lazy, Stack

from kie_uploader import discovery

#: A ``KieUploader`` (not imported: the construct imports this module).
KieUploader = Any


@jsii.implements(IStableAnyProducer)
class _BucketNames:
    """The construct's bucket names when the template is written, not when the record is: a bucket added
    after construction is in the record too."""

    def __init__(self, uploader: KieUploader) -> None:
        self.uploader = uploader

    def produce(self) -> Any:
        return [bucket.bucket_name for bucket in self.uploader.buckets]


def name_of(uploader: KieUploader) -> str:
    """The construct's path within its stack (``Incoming``, ``Media/Uploader``): what ``--uploader`` takes."""
    stack_path = Stack.of(uploader).node.path
    path = uploader.node.path
    return path[len(stack_path) + 1 :] if stack_path and path.startswith(stack_path + "/") else path


def publish(uploader: KieUploader) -> CfnOutput:
    """The construct's discovery record, as an output of its stack."""
    name = name_of(uploader)
    record: dict[str, Any] = {
        "schema": discovery.SCHEMA_VERSION,
        "name": name,
        "buckets": Lazy.any(_BucketNames(uploader)),
        "queueUrl": uploader.queue.queue_url,
        "deadLetterQueueUrl": uploader.dead_letter_queue.queue_url,
        "tableName": uploader.table.table_name,
        "secretArn": uploader.secret.secret_arn,
        "functionName": uploader.function.function_name,
        "alarmTopicArn": uploader.alarm_topic.topic_arn,
        "notify": uploader.notify.value,
        "dashboardName": uploader.monitoring.dashboard.dashboard_name,
    }
    backfill = getattr(uploader, "distributed_backfill", None)
    if backfill is not None:
        record["backfillStateMachineArn"] = backfill.state_machine.state_machine_arn
        record["backfillBucketName"] = backfill.bucket.bucket_name
    if uploader.publisher is not None:
        record["eventBusName"] = uploader.publisher.bus_name
        record["eventPattern"] = uploader.publisher.event_pattern
    return CfnOutput(
        uploader,
        "Discovery",
        value=Stack.of(uploader).to_json_string(record),
        description=discovery.record_description(name),
    )
