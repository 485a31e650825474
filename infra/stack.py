"""The stack: composes one construct per concern, does the grants, wires the triggers and the outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Duration, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3_notifications
from constructs import Construct

from infra.constructs.buckets import SourceBuckets
from infra.constructs.function import UploaderFunction, function_environment
from infra.constructs.monitoring import Monitoring
from infra.constructs.queues import UploaderQueues
from infra.constructs.secret import ApiKeySecret
from infra.constructs.table import RecordsTable
from infra.nag import acknowledge_findings
from infra.settings import SQS_BATCH_SIZE, StackSettings

FUNCTIONS_ROOT = Path(__file__).resolve().parent.parent / "functions"
# A short wait fills batches during a backfill without delaying a single message noticeably.
BATCHING_WINDOW = Duration.seconds(2)
# Messages older than this mean the function is failing or cannot keep up.
OLDEST_MESSAGE_AGE_ALARM = Duration.minutes(15)
# The function reads object metadata (HeadObject, also of a given version) and presigns GETs.
OBJECT_READ_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion"]
# HeadBucket (the bucket's region, for presigning) needs ListBucket; so does a 404 instead of a 403 for a
# missing key, which the function records as SKIPPED rather than as a permission problem.
BUCKET_READ_ACTIONS = ["s3:ListBucket"]
# The function's record store reads one item and writes it with conditional updates (which also create it).
TABLE_ACTIONS = ["dynamodb:GetItem", "dynamodb:UpdateItem"]


class KieUploaderStack(Stack):
    """S3 objects → (notification | queue) → the uploader function → kie.ai → the records table."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StackSettings,
        functions_root: Path = FUNCTIONS_ROOT,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings

        sources = SourceBuckets(
            self,
            "Sources",
            existing_bucket_names=settings.bucket_names,
            existing_kms_key_arns=settings.bucket_kms_key_arns,
        )
        queues = UploaderQueues(
            self, "Queues", visibility_timeout=Duration.seconds(settings.queue_visibility_timeout_seconds)
        )
        table = RecordsTable(self, "Records").table
        api_key = ApiKeySecret(self, "ApiKey", existing_secret_arn=settings.api_key_secret_arn)
        secret = api_key.secret
        bucket_names = [bucket.bucket_name for bucket in sources.buckets]

        uploader = UploaderFunction(
            self,
            "Uploader",
            settings=settings,
            source_root=functions_root,
            environment=function_environment(
                settings=settings,
                table_name=table.table_name,
                secret_arn=secret.secret_arn,
                allowed_buckets=bucket_names,
            ),
            dead_letter_queue=queues.dead_letter_queue,
        )
        function = uploader.function

        # Least privilege: read objects of the source buckets only, one table, one secret, one queue.
        for bucket in sources.buckets:
            iam.Grant.add_to_principal(
                grantee=function, actions=OBJECT_READ_ACTIONS, resource_arns=[bucket.arn_for_objects("*")]
            )
            iam.Grant.add_to_principal(
                grantee=function, actions=BUCKET_READ_ACTIONS, resource_arns=[bucket.bucket_arn]
            )
        for kms_key in sources.kms_keys:
            kms_key.grant_decrypt(function)
        table.grant(function, *TABLE_ACTIONS)
        secret.grant_read(function)

        function.add_event_source(
            event_sources.SqsEventSource(
                queues.queue,
                batch_size=SQS_BATCH_SIZE,
                max_batching_window=BATCHING_WINDOW,
                report_batch_item_failures=True,
                max_concurrency=settings.max_concurrency,
            )
        )
        destination: s3.IBucketNotificationDestination = (
            s3_notifications.SqsDestination(queues.queue)
            if settings.notify == "queue"
            else s3_notifications.LambdaDestination(function)
        )
        filters = [s3.NotificationKeyFilter(prefix=settings.prefix or None, suffix=settings.suffix or None)]
        if not (settings.prefix or settings.suffix):
            filters = []
        for bucket in sources.buckets:
            for event in (s3.EventType.OBJECT_CREATED, s3.EventType.OBJECT_REMOVED):
                bucket.add_event_notification(event, destination, *filters)

        monitoring = Monitoring(
            self,
            "Monitoring",
            function=function,
            queue=queues.queue,
            dead_letter_queue=queues.dead_letter_queue,
            alarm_email=settings.alarm_email,
            oldest_message_age=OLDEST_MESSAGE_AGE_ALARM,
        )

        outputs = {
            "BucketNames": (Fn.join(",", bucket_names), "Source buckets (comma-separated)"),
            "QueueUrl": (queues.queue.queue_url, 'Send {"bucket", "key"} messages here'),
            "DeadLetterQueueUrl": (queues.dead_letter_queue.queue_url, "Failed deliveries wait here"),
            "TableName": (table.table_name, "One record per object"),
            "SecretArn": (secret.secret_arn, "Put the kie.ai API key here"),
            "FunctionName": (function.function_name, "The uploader function"),
            "AlarmTopicArn": (monitoring.topic.topic_arn, "Alarms are published here"),
        }
        for key, (value, description) in outputs.items():
            CfnOutput(self, key, value=value, description=description)

        self.acknowledged_findings = acknowledge_findings(
            self, uploader=uploader, sources=sources, secret=secret, created_secret=api_key.created
        )
