"""The repository's stack: a thin app around :class:`kie_uploader.cdk.KieUploader`.

It turns the context options (infra/settings.py) into the construct's props: buckets imported by name (or
one new, locked-down bucket), KMS keys and the secret imported by ARN; and it writes the outputs the
``kie-uploader`` command line reads.
"""

from __future__ import annotations

from typing import Any, cast

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.settings import StackSettings
from kie_uploader.cdk import FunctionOptions, KieUploader, SourceBuckets

#: The records table's logical id before the construct existed (the table is retained: a new logical id
#: would create a second, empty table and leave the first one orphaned).
RECORDS_TABLE_LOGICAL_ID = "RecordsTableC9B7A30B"


def function_options(settings: StackSettings) -> FunctionOptions:
    return FunctionOptions(
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
    )


class KieUploaderStack(Stack):
    """One ``KieUploader`` on the context's buckets, and the stack outputs."""

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
        )
        cast(dynamodb.CfnTable, self.uploader.table.node.default_child).override_logical_id(
            RECORDS_TABLE_LOGICAL_ID
        )
        uploader = self.uploader
        outputs = {
            "BucketNames": (uploader.bucket_names_joined, "Source buckets (comma-separated)"),
            "QueueUrl": (uploader.queue.queue_url, 'Send {"bucket", "key"} messages here'),
            "DeadLetterQueueUrl": (uploader.dead_letter_queue.queue_url, "Failed deliveries wait here"),
            "TableName": (uploader.table.table_name, "One record per object"),
            "SecretArn": (uploader.secret.secret_arn, "Put the kie.ai API key here"),
            "FunctionName": (uploader.function.function_name, "The uploader function"),
            "AlarmTopicArn": (uploader.alarm_topic.topic_arn, "Alarms are published here"),
        }
        for key, (value, description) in outputs.items():
            CfnOutput(self, key, value=value, description=description)
        self.acknowledged_findings = uploader.acknowledged_findings
