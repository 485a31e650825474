"""The repository's stack: a thin app around :class:`kie_uploader.cdk.KieUploader`.

It turns the context options (kie_uploader.settings) into the construct's props: buckets imported by name (or
one new, locked-down bucket), KMS keys and the secret imported by ARN. It writes no outputs of its own: the
``kie-uploader`` command line finds the uploader by the construct's discovery record, as in any user's stack.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aws_cdk import CfnResource, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct, IConstruct

from kie_uploader.cdk import FunctionOptions, KieUploader, SourceBuckets
from kie_uploader.settings import StackSettings

#: Logical ids the stack's stateful resources had before the construct existed (0.1). Kept, so that an
#: upgrade updates them in place: a new logical id would create a second, empty table (the first one is
#: retained, orphaned), a new empty secret (the key gone), new queues (the waiting and dead-letter messages
#: gone), a new alarm topic (the e-mail subscription to confirm again); and a QueuePolicy or TopicPolicy
#: under a new id is created before the old one is deleted, which then clears the policy.
LEGACY_LOGICAL_IDS = {
    "table": "RecordsTableC9B7A30B",
    "secret": "ApiKeySecret5E0E1F3C",
    "queue": "QueuesQueueD811C857",
    "queue_policy": "QueuesQueuePolicyA91E61E7",
    "dead_letter_queue": "QueuesDeadLetterQueue82AA3FB7",
    "dead_letter_queue_policy": "QueuesDeadLetterQueuePolicyCCAD37A7",
    "alarm_topic": "MonitoringAlarmTopicAF62D4F1",
    "alarm_topic_policy": "MonitoringAlarmTopicPolicyCB9CCFB0",
}


def function_options(settings: StackSettings) -> FunctionOptions:
    options = FunctionOptions(
        kie_base_url=settings.kie_base_url,
        kie_upload_path=settings.kie_upload_path,
        retention_seconds=settings.retention_seconds,
        max_object_bytes=settings.max_object_bytes,
        presign_expires_seconds=settings.presign_expires_seconds,
        memory_size=settings.memory_size,
        architecture=settings.architecture,
        log_retention_days=settings.log_retention_days,
        timeout_seconds=settings.function_timeout_seconds,
        kie_timeout_seconds=settings.kie_timeout_seconds,
        record_retention_days=settings.record_retention_days,
        transfer=settings.transfer,
        kie_cannot_fetch=settings.kie_cannot_fetch,
    )
    if settings.stream_bytes_per_second is None:
        return options
    return dataclasses.replace(options, stream_bytes_per_second=settings.stream_bytes_per_second)


def keep_legacy_logical_ids(uploader: KieUploader) -> None:
    def keep(construct: IConstruct | None, name: str) -> None:
        resource = construct.node.default_child if construct is not None else None
        if resource is None and construct is not None and isinstance(construct, CfnResource):
            resource = construct
        if not isinstance(resource, CfnResource):
            raise RuntimeError(f"no CloudFormation resource for {name}")
        resource.override_logical_id(LEGACY_LOGICAL_IDS[name])

    keep(uploader.table, "table")
    if uploader.secret_created:
        keep(uploader.secret, "secret")
    keep(uploader.queue, "queue")
    keep(uploader.queue.node.try_find_child("Policy"), "queue_policy")
    keep(uploader.dead_letter_queue, "dead_letter_queue")
    keep(uploader.dead_letter_queue.node.try_find_child("Policy"), "dead_letter_queue_policy")
    keep(uploader.alarm_topic, "alarm_topic")
    keep(uploader.alarm_topic.node.try_find_child("Policy"), "alarm_topic_policy")


def _encryption_key(scope: Construct, value: str | None) -> kms.IKey | bool:
    """``encryptionKey``: ``true`` → a key the construct creates; an ARN → that key (its policy is the
    owner's to extend: the construct warns); unset → none."""
    if value is None:
        return False
    if value == "true":
        return True
    return kms.Key.from_key_arn(scope, "EncryptionKey", value)


def _event_bus(scope: Construct, name: str | None) -> events.IEventBus | None:
    if name is None:
        return None
    if name.startswith("arn:"):
        return events.EventBus.from_event_bus_arn(scope, "EventBus", name)
    return events.EventBus.from_event_bus_name(scope, "EventBus", name)


class KieUploaderStack(Stack):
    """One ``KieUploader`` on the context's buckets (found by the CLI through its discovery record)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: StackSettings, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        # "Sources" keeps the logical ids the created buckets have always had (they are retained, too).
        sources = SourceBuckets(
            self,
            "Sources",
            existing_bucket_names=settings.bucket_names,
            existing_kms_key_arns=settings.bucket_kms_key_arns,
        )
        secret = (
            secretsmanager.Secret.from_secret_complete_arn(self, "ApiKeySecret", settings.api_key_secret_arn)
            if settings.api_key_secret_arn
            else None
        )
        secret_key = (
            kms.Key.from_key_arn(self, "ApiKeySecretKey", settings.api_key_secret_kms_key_arn)
            if settings.api_key_secret_kms_key_arn
            else None
        )
        self.uploader = KieUploader(
            self,
            "KieUploader",
            buckets=sources.buckets,
            # bucketNames imports the user's buckets: the README says what the construct changes on them.
            accept_responsibility_for_imported_buckets=bool(settings.bucket_names),
            notify=settings.notify,
            prefix=settings.prefix,
            suffix=settings.suffix,
            max_concurrency=settings.max_concurrency,
            reserved_concurrency=settings.reserved_concurrency,
            bucket_kms_keys=sources.kms_keys,
            existing_secret=secret,
            existing_secret_kms_key=secret_key,
            function_options=function_options(settings),
            alarm_email=settings.alarm_email,
            keep_alive=settings.keep_alive,
            refresh_ahead_seconds=settings.refresh_ahead_seconds,
            keep_alive_schedule_minutes=settings.keep_alive_schedule_minutes,
            events_enabled=settings.events,
            event_bus=_event_bus(self, settings.event_bus_name),
            encryption_key=_encryption_key(self, settings.encryption_key),
            # kie-uploader backfill --distributed: a Distributed Map for buckets too large to list locally.
            backfill=True,
        )
        keep_legacy_logical_ids(self.uploader)
        self.acknowledged_findings = self.uploader.acknowledged_findings
