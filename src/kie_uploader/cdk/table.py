"""The records table: one item per S3 object, keyed by its ``s3://bucket/key`` URI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

PARTITION_KEY = "pk"
#: The record's TTL: ``RECORD_RETENTION_SECONDS`` after kie.ai's file expired (or after its last change).
TTL_ATTRIBUTE = "purgeAt"
#: The sparse index of live uploads: ``liveBucket`` is set only on ``UPLOADED`` records.
EXPIRY_INDEX = "byExpiry"
EXPIRY_INDEX_KEY = "liveBucket"
EXPIRY_SORT_KEY = "expiresAt"


class RecordsTable(Construct):
    """On-demand, PITR, encrypted, kept when the stack is deleted; a record outlives kie.ai's file by the
    retention the function writes into ``purgeAt``. ``stream``: the change stream the event publisher reads
    (the outbox)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        table_overrides: Mapping[str, Any] | None = None,
        stream: bool = True,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        """``table_overrides``: keyword arguments of ``dynamodb.Table`` that replace the defaults below
        (validated by the caller: never the key schema or the TTL attribute, which the function relies on).
        ``encryption_key``: a customer managed key instead of DynamoDB's AWS managed key."""
        super().__init__(scope, construct_id)
        defaults: dict[str, Any] = dict(
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            # The records are the only place the download URLs live: never lose them with the stack.
            removal_policy=RemovalPolicy.RETAIN,
        )
        if encryption_key is not None:
            defaults["encryption"] = dynamodb.TableEncryption.CUSTOMER_MANAGED
            defaults["encryption_key"] = encryption_key
        if stream:
            defaults["stream"] = dynamodb.StreamViewType.NEW_AND_OLD_IMAGES
        self.table = dynamodb.Table(self, "Table", **{**defaults, **(table_overrides or {})})
        # Keys only: a keep-alive round reads which records are due, then processes each one by its key.
        self.table.add_global_secondary_index(
            index_name=EXPIRY_INDEX,
            partition_key=dynamodb.Attribute(name=EXPIRY_INDEX_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=EXPIRY_SORT_KEY, type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
