"""The source buckets: a new, locked-down bucket, or existing buckets imported by name (never replaced)."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from kie_uploader.cdk import checkov_skips

ACCESS_LOG_EXPIRATION = Duration.days(90)


class SourceBuckets(Construct):
    """``buckets``: the buckets whose objects go to kie.ai; ``kms_keys``: their customer managed keys."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        existing_bucket_names: Sequence[str],
        existing_kms_key_arns: Sequence[str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.kms_keys: list[kms.IKey] = [
            kms.Key.from_key_arn(self, f"BucketKey{index}", arn)
            for index, arn in enumerate(existing_kms_key_arns)
        ]
        self.buckets: list[s3.IBucket]
        self.access_logs_bucket: s3.IBucket | None = None
        self.created = not existing_bucket_names
        if existing_bucket_names:
            # Imported: the stack adds notifications and read grants; it never owns, replaces or empties them.
            self.buckets = [
                s3.Bucket.from_bucket_name(self, f"Existing{index}", name)
                for index, name in enumerate(existing_bucket_names)
            ]
            return
        access_logs = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=ACCESS_LOG_EXPIRATION)],
            removal_policy=RemovalPolicy.RETAIN,
        )
        source = s3.Bucket(
            self,
            "Source",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            # SSE-S3: kie.ai fetches objects through presigned URLs, which need no KMS grant with S3's key.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="source/",
            # The objects are the user's data: deleting the stack must not delete them.
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.buckets = [source]
        self.access_logs_bucket = access_logs
        # The access-log bucket logs nothing itself and is never overwritten (checkov_skips.REASONS).
        for check in ("CKV_AWS_18", "CKV_AWS_21"):
            checkov_skips.skip(access_logs, check, "access-logs")
