"""The uploader function: bundled without Docker, its own role and log group, async failures to the DLQ."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

from aws_cdk import AssetHashType, Duration, Fn
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from kie_uploader.cdk import bundling
from kie_uploader.cdk.options import (
    KIE_MAX_ATTEMPTS,
    SECRET_CACHE_SECONDS,
    SQS_BATCH_SIZE,
    FunctionOptions,
)
from kie_uploader.cdk.watched import VARIABLE as WATCHED_VARIABLE

HANDLER = "uploader.handler.handler"
#: The shortest retention kie.ai documents (functions/uploader/config.py's default).
KIE_VERIFY_AFTER_SECONDS = 86_400
SERVICE_NAME = "kie-uploader"
METRICS_NAMESPACE = "KieUploader"
# Lambda's own retries of a direct (asynchronous) S3 invocation, and how long an event may wait for them.
ASYNC_RETRY_ATTEMPTS = 2
ASYNC_MAX_EVENT_AGE = Duration.hours(6)


def function_environment(
    *,
    settings: FunctionOptions,
    table_name: str,
    secret_arn: str,
    allowed_buckets: Sequence[str],
    watched_objects: str,
) -> dict[str, str]:
    """Exactly the variables the function reads (its configuration contract), and no others.

    ``watched_objects`` is ``WATCHED_OBJECTS`` (:func:`kie_uploader.cdk.watched.rules_json`): the objects the
    function may hand to kie.ai. ``ALLOWED_BUCKETS`` stays for a function that does not read it yet (it then
    falls back to every key of those buckets; the role's object reads are scoped to the rules either way).
    """
    return {
        "TABLE_NAME": table_name,
        "KIE_API_KEY_SECRET_ID": secret_arn,
        "KIE_BASE_URL": settings.kie_base_url,
        "KIE_UPLOAD_PATH": settings.kie_upload_path,
        "KIE_RETENTION_SECONDS": str(settings.retention_seconds),
        "PRESIGN_EXPIRES_SECONDS": str(settings.presign_expires_seconds),
        # Empty: none (with stream/auto the function refuses what cannot stream within 15 minutes).
        "MAX_OBJECT_BYTES": str(settings.effective_max_object_bytes or ""),
        "ALLOWED_BUCKETS": Fn.join(",", list(allowed_buckets)),
        WATCHED_VARIABLE: watched_objects,
        "MAX_CONCURRENCY": str(SQS_BATCH_SIZE),
        "SECRET_CACHE_SECONDS": str(SECRET_CACHE_SECONDS),
        "KIE_TIMEOUT_SECONDS": str(settings.effective_kie_timeout_seconds),
        "KIE_MAX_ATTEMPTS": str(KIE_MAX_ATTEMPTS),
        "RECORD_RETENTION_SECONDS": str(settings.record_retention_days * 86_400),
        # kie.ai documents 24 hours on one page: older URLs are checked there before they are handed out.
        "KIE_VERIFY_AFTER_SECONDS": str(KIE_VERIFY_AFTER_SECONDS),
        "TRANSFER": settings.transfer,
        "URL_TRANSFER_MAX_BYTES": str(settings.url_transfer_max_bytes),
        "KIE_STREAM_BASE_URL": settings.kie_stream_base_url or settings.kie_base_url,
        "KIE_CANNOT_FETCH": ",".join(settings.kie_cannot_fetch),
        "STREAM_BYTES_PER_SECOND": str(settings.stream_bytes_per_second),
        "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
        "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }


class UploaderFunction(Construct):
    """The Lambda function that hands S3 objects to kie.ai; permissions to data are granted by the stack."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: FunctionOptions,
        package_dir: Path,
        environment: dict[str, str],
        dead_letter_queue: sqs.IQueue,
        reserved_concurrency: int | None = None,
        encryption_key: kms.IKey | None = None,
        vpc: ec2.IVpc | None = None,
        vpc_subnets: ec2.SubnetSelection | None = None,
        security_groups: Sequence[ec2.ISecurityGroup] = (),
    ) -> None:
        """``encryption_key``: a customer managed key for the log group and the environment variables.
        ``vpc``: the function runs in it (CDK adds AWSLambdaVPCAccessExecutionRole to the role)."""
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(self, "Logs", encryption_key=encryption_key)
        # LogGroup takes an enum; the context gives days, already checked against the allowed values.
        cast(
            logs.CfnLogGroup, self.log_group.node.default_child
        ).retention_in_days = settings.log_retention_days

        # Our own role instead of CDK's default, which attaches AWSLambdaBasicExecutionRole (logs:* on every
        # log group): this one may write to its own log group only.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="kie.ai uploader: reads source objects, writes records, reads the kie.ai key",
        )
        self.log_group.grant_write(self.role)

        architecture = (
            lambda_.Architecture.ARM_64 if settings.architecture == "arm64" else lambda_.Architecture.X86_64
        )
        #: The function's code, also run by the event publisher (one asset for both).
        self.code = lambda_.Code.from_asset(
            str(package_dir),
            # Hash the sources, so that an unchanged function is not bundled (pip) again.
            asset_hash_type=AssetHashType.SOURCE,
            exclude=["**/__pycache__", "**/*.pyc", "**/.pytest_cache"],
            bundling=bundling.bundling_options(package_dir, architecture=settings.architecture),
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description="Hands S3 objects to kie.ai (URL or stream upload) and records the result",
            runtime=bundling.RUNTIME,
            architecture=architecture,
            handler=HANDLER,
            code=self.code,
            memory_size=settings.memory_size,
            timeout=Duration.seconds(settings.function_timeout_seconds),
            # The ceiling on concurrent invocations (notify=lambda): S3 cannot fan out beyond it.
            reserved_concurrent_executions=reserved_concurrency,
            environment=environment,
            environment_encryption=encryption_key,
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            vpc=vpc,
            vpc_subnets=vpc_subnets,
            security_groups=list(security_groups) or None,
        )
        # Direct S3 notifications and the keep-alive schedule invoke asynchronously: Lambda retries an event,
        # then parks it in the DLQ as an on-failure destination record (the request and the error, which
        # `kie-uploader dlq peek` shows and `redrive` replays). Not also a DeadLetterConfig, the only form
        # checkov's CKV_AWS_116 reads: Lambda would park every failed event twice (checkov_skips.py).
        self.function.configure_async_invoke(
            retry_attempts=ASYNC_RETRY_ATTEMPTS,
            max_event_age=ASYNC_MAX_EVENT_AGE,
            on_failure=destinations.SqsDestination(dead_letter_queue),
        )
