"""How the CLI and ``live_url`` find the uploaders of a stack: the construct's discovery records.

Every ``KieUploader`` construct writes one CloudFormation output, its *discovery record*: a logical id made
from the construct's path (so two constructs in one stack never collide), the description
:data:`DESCRIPTION_MARKER` and, as its value, a JSON object with the construct's name and the resources the
CLI needs (:class:`Uploader`). Outputs, because reading them needs only ``cloudformation:DescribeStacks``,
which the CLI already calls to find a stack, works the same in ministack and on AWS, and goes away with the
stack (an SSM parameter would need ``ssm:GetParameter`` and outlive a stack's rename; tags are per stack,
not per construct, and limited to 256 characters).

A stack deployed by an older version has no record but the named outputs ``BucketNames``, ``QueueUrl``, ...
(:data:`LEGACY_OUTPUTS`): it is read as one uploader, so existing deployments keep working.

This module knows nothing of the command line: it raises :class:`DiscoveryError`, which the CLI and
``live_url`` put in their own words.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: The record's format; a reader refuses a newer one instead of guessing (and says to upgrade).
SCHEMA_VERSION = 1
#: How a discovery record is recognized among a stack's outputs (the start of its description).
DESCRIPTION_MARKER = "kie-uploader discovery record"
#: The outputs of a stack from before the discovery records, and what each says.
LEGACY_OUTPUTS = {
    "BucketNames": "Source buckets (comma-separated)",
    "QueueUrl": 'Send {"bucket", "key"} messages here',
    "DeadLetterQueueUrl": "Failed deliveries wait here",
    "TableName": "One record per object",
    "SecretArn": "Put the kie.ai API key here",
    "FunctionName": "The uploader function",
    "AlarmTopicArn": "Alarms are published here",
    "EventBusName": "Record changes are published here",
    "EventPattern": "An EventBridge rule pattern matching every record change",
}
#: Without these an older stack is not a kie-uploader stack.
LEGACY_REQUIRED = ("BucketNames", "QueueUrl", "DeadLetterQueueUrl", "TableName")
#: The name of the one uploader of a stack from before the records (the construct id it always had).
LEGACY_NAME = "KieUploader"


class DiscoveryError(Exception):
    """The stack has no uploader, or several and none (or an unknown one) was named."""


@dataclass(frozen=True)
class Uploader:
    """One ``KieUploader`` of a deployed stack: its name (the construct's path within the stack) and the
    resources the CLI drives. ``legacy``: read from an older stack's named outputs."""

    name: str
    bucket_names: tuple[str, ...]
    queue_url: str
    dead_letter_queue_url: str
    table_name: str
    secret_arn: str = ""
    function_name: str = ""
    alarm_topic_arn: str = ""
    event_bus_name: str = ""
    event_pattern: str = ""
    notify: str = ""
    dashboard_name: str = ""
    #: The distributed backfill's state machine and bucket (``backfill=True``), else "".
    backfill_state_machine_arn: str = ""
    backfill_bucket_name: str = ""
    legacy: bool = False

    def as_outputs(self) -> dict[str, str]:
        """The resources under the names of the older stacks' outputs (``BucketNames``, ``QueueUrl``, ...):
        one vocabulary for the CLI, the demo and the tests, whichever way the stack published them."""
        values = {
            "BucketNames": ",".join(self.bucket_names),
            "QueueUrl": self.queue_url,
            "DeadLetterQueueUrl": self.dead_letter_queue_url,
            "TableName": self.table_name,
            "SecretArn": self.secret_arn,
            "FunctionName": self.function_name,
            "AlarmTopicArn": self.alarm_topic_arn,
            "EventBusName": self.event_bus_name,
            "EventPattern": self.event_pattern,
        }
        return {name: value for name, value in values.items() if value}


def record_description(name: str) -> str:
    """The description of a construct's discovery output: the marker first, then what it is for."""
    return f"{DESCRIPTION_MARKER} (schema {SCHEMA_VERSION}) of {name}: read by the kie-uploader CLI"


def uploaders_of(outputs: Iterable[Mapping[str, Any]], stack: str) -> list[Uploader]:
    """The stack's uploaders from its outputs (``DescribeStacks``' ``Outputs``), in the order of their names:
    one per discovery record, else the one of an older stack's named outputs, else none."""
    outputs = list(outputs)
    found = [
        _from_record(output, stack)
        for output in outputs
        if str(output.get("Description", "")).startswith(DESCRIPTION_MARKER)
    ]
    if found:
        return sorted(found, key=lambda uploader: uploader.name)
    named = {str(o.get("OutputKey", "")): str(o.get("OutputValue", "")) for o in outputs}
    legacy = _from_legacy_outputs(named)
    return [legacy] if legacy is not None else []


def choose(
    uploaders: list[Uploader], stack: str, name: str | None = None, *, option: str = "--uploader NAME"
) -> Uploader:
    """The uploader ``name`` (the construct's path within the stack, or the whole path), else the only
    one; ``DiscoveryError`` naming the stack's uploaders when that is not one of them. ``option`` is how the
    caller names one (the CLI's ``--uploader NAME``, ``live_url``'s ``uploader=NAME``)."""
    if not uploaders:
        raise DiscoveryError(
            f"stack {stack} has no kie-uploader: no KieUploader construct's discovery record and no output "
            f"{', '.join(LEGACY_REQUIRED)}: is it a kie-uploader stack?"
        )
    names = ", ".join(uploader.name for uploader in uploaders)
    if name is None:
        if len(uploaders) == 1:
            return uploaders[0]
        raise DiscoveryError(
            f"stack {stack} has {len(uploaders)} uploaders: {names}; choose one with {option}"
        )
    for uploader in uploaders:
        if name in (uploader.name, f"{stack}/{uploader.name}"):
            return uploader
    raise DiscoveryError(f"stack {stack} has no uploader {name} (its uploaders: {names})")


def _from_record(output: Mapping[str, Any], stack: str) -> Uploader:
    key = output.get("OutputKey", "")
    try:
        record = json.loads(str(output.get("OutputValue", "")))
    except ValueError:
        raise DiscoveryError(f"stack {stack}: the discovery record {key} is not JSON") from None
    if not isinstance(record, dict):
        raise DiscoveryError(f"stack {stack}: the discovery record {key} is not a JSON object")
    schema = record.get("schema")
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise DiscoveryError(
            f"stack {stack}: the discovery record {key} has schema {schema!r}, newer than this "
            f"kie-uploader reads ({SCHEMA_VERSION}): upgrade kie-s3-uploader"
        )
    missing = [name for name in ("name", "buckets", "queueUrl", "deadLetterQueueUrl", "tableName")
               if not record.get(name)]
    if missing:
        raise DiscoveryError(f"stack {stack}: the discovery record {key} lacks {', '.join(missing)}")
    pattern = record.get("eventPattern")
    return Uploader(
        name=str(record["name"]),
        bucket_names=tuple(str(bucket) for bucket in record["buckets"]),
        queue_url=str(record["queueUrl"]),
        dead_letter_queue_url=str(record["deadLetterQueueUrl"]),
        table_name=str(record["tableName"]),
        secret_arn=str(record.get("secretArn") or ""),
        function_name=str(record.get("functionName") or ""),
        alarm_topic_arn=str(record.get("alarmTopicArn") or ""),
        event_bus_name=str(record.get("eventBusName") or ""),
        event_pattern=json.dumps(pattern) if isinstance(pattern, dict) else str(pattern or ""),
        notify=str(record.get("notify") or ""),
        dashboard_name=str(record.get("dashboardName") or ""),
        backfill_state_machine_arn=str(record.get("backfillStateMachineArn") or ""),
        backfill_bucket_name=str(record.get("backfillBucketName") or ""),
    )


def _from_legacy_outputs(outputs: Mapping[str, str]) -> Uploader | None:
    if not all(outputs.get(name) for name in LEGACY_REQUIRED):
        return None
    return Uploader(
        name=LEGACY_NAME,
        bucket_names=tuple(name.strip() for name in outputs["BucketNames"].split(",") if name.strip()),
        queue_url=outputs["QueueUrl"],
        dead_letter_queue_url=outputs["DeadLetterQueueUrl"],
        table_name=outputs["TableName"],
        secret_arn=outputs.get("SecretArn", ""),
        function_name=outputs.get("FunctionName", ""),
        alarm_topic_arn=outputs.get("AlarmTopicArn", ""),
        event_bus_name=outputs.get("EventBusName", ""),
        event_pattern=outputs.get("EventPattern", ""),
        legacy=True,
    )
