"""``DistributedBackfill``: a Step Functions Distributed Map that hands a prefix's keys to the work queue.

``KieUploader(..., backfill=True)`` builds it. An execution's input is ``{"bucket", "prefix", "source":
"list" | "csv" | "json", "manifestKey", "force"}`` (the CLI's ``backfill --distributed`` writes it): the keys
come from S3 ``listObjectsV2`` over ``bucket/prefix``, or from a manifest (a CSV with a ``Key`` header, or a
JSON array of ``{"Key": ...}``) that the CLI copied under ``manifests/`` of the construct's backfill bucket.

Design (the throughput and cost argument, README "Distributed backfill"):

* **The child is a small function** (``uploader.backfill.handler``, in the uploader's asset) fed batches of
  :data:`BATCH_SIZE` keys (``ItemBatcher``): it drops the keys the stack does not watch (the uploader's own
  ``WATCHED_OBJECTS`` rules) and those with a live upload of the listed ETag, and sends the rest with
  ``SendMessageBatch``, 10 per request. Per 100 keys: 1 child execution, 1 invocation, 1 ``BatchGetItem``,
  10 SQS requests. The SQS SDK integration instead needs a state (a transition, a request) per 10 keys, a
  second definition of "watched" in Choice states, and no record check; ministack refuses its
  ``SendMessageBatch`` parameters, so it could not be tested either.
* **Express children**: a child runs for well under a second; Express bills $1.00 per million executions
  plus duration, a Standard child about 4 state transitions ($25 per million each): Express is cheaper for
  this shape at any batch size. The parent is Standard (a Distributed Map needs it).
* **kie.ai's load is unchanged**: children only enqueue; the queue's consumer (``max_concurrency``
  invocations) makes every kie.ai call. ``MaxConcurrency`` (:data:`MAX_CONCURRENCY`) bounds the enqueueing
  (child invocations, SQS requests), not kie.ai.
* ``ToleratedFailurePercentage`` (:data:`TOLERATED_FAILURE_PERCENTAGE`): a few batches that SQS kept
  refusing do not fail a run of millions; they are redriven (``RedriveExecution``) or sent by a new run.
* ``ResultWriter`` writes the children's results (their counts) under ``results/`` of the backfill bucket.

Least privilege: ``s3:ListBucket`` on each watched bucket only for ``s3:prefix`` under its watched prefix,
``s3:GetObject`` on ``manifests/*`` and the ResultWriter's object actions on ``results/*`` of the backfill
bucket, ``lambda:InvokeFunction`` on the child, and the Distributed Map's own ``states:StartExecution`` /
``DescribeExecution`` / ``StopExecution`` / ``RedriveExecution`` on this state machine and its executions.
The child may send to the queue and ``BatchGetItem`` the records table, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from kie_uploader.cdk import watched

HANDLER = "uploader.backfill.handler"
#: Keys per child execution (``ItemBatcher``): one invocation, one BatchGetItem, 10 SendMessageBatch.
BATCH_SIZE = 100
#: Child executions at once: at most this many concurrent invocations of the child and SQS senders.
MAX_CONCURRENCY = 10
#: Batches that may fail (after their retries) before the Map Run fails.
TOLERATED_FAILURE_PERCENTAGE = 5
#: Manifests (copied there by the CLI) and the ResultWriter's results, expired after this.
OBJECT_EXPIRATION = Duration.days(30)
MANIFEST_PREFIX = "manifests/"
RESULTS_PREFIX = "results/"
#: What the ResultWriter does with its result files (a multipart upload per file).
RESULT_WRITER_ACTIONS = [
    "s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"
]  # fmt: skip
#: The execution input's ``source`` values and the Map state that reads each.
SOURCES = {"list": "ListPrefix", "csv": "ReadCsvManifest", "json": "ReadJsonManifest"}

NAG_REASONS = {
    "AwsSolutions-L1": (
        "The runtime is pinned to python3.12 on purpose: the function shares the uploader's asset, whose "
        "dependencies are bundled as CPython 3.12 wheels; runtime and bundling target move together."
    ),
    "AwsSolutions-S1": (
        "The backfill bucket holds only the manifests the CLI copies there and the Distributed Map's result "
        "files, both expired after 30 days; who started which backfill is in CloudTrail and the execution "
        "history. Access logs would need another bucket for no object data."
    ),
    "IAM5-executions": (
        "A Distributed Map starts its child executions itself and needs states:DescribeExecution, "
        "StopExecution and RedriveExecution on them: their names are made at run time, under this state "
        "machine's execution ARN prefix (execution:<name>/*), the only resource the statement names."
    ),
    "IAM5-backfill-objects": (
        "Manifests and results have keys made at run time (a manifest per backfill, result files per Map "
        "Run): the resources are the backfill bucket's manifests/* (read) and results/* (write) only."
    ),
    "IAM5-kms": (
        "CDK's grants on the customer managed key (encryption_key) for the queue and the backfill bucket: "
        "kms:GenerateDataKey* and kms:ReEncrypt* are the KMS action families those grants name, on this one "
        "key's ARN only."
    ),
    "IAM5-logs": (
        "Step Functions' log delivery (logs:CreateLogDelivery, ...) and X-Ray (xray:PutTraceSegments, ...) "
        "support no resource-level permission: '*' is the only resource; no data action has a wildcard."
    ),
}


class DistributedBackfill(Construct):
    """The backfill state machine, its child function and the backfill bucket (manifests, results).

    Attributes: ``state_machine``, ``function`` (the child), ``bucket``, ``role`` (the state machine's),
    ``function_role``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        watched_buckets: Sequence[watched.WatchedBucket],
        queue: sqs.IQueue,
        table: dynamodb.ITable,
        code: lambda_.Code,
        watched_objects: str,
        architecture: lambda_.Architecture = lambda_.Architecture.ARM_64,
        encryption_key: kms.IKey | None = None,
        max_concurrency: int = MAX_CONCURRENCY,
        batch_size: int = BATCH_SIZE,
        tolerated_failure_percentage: int = TOLERATED_FAILURE_PERCENTAGE,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.encryption_key = encryption_key
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.KMS if encryption_key else s3.BucketEncryption.S3_MANAGED,
            encryption_key=encryption_key,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=OBJECT_EXPIRATION)],
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.function_role = iam.Role(
            self,
            "FunctionRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="kie-uploader backfill child: sends watched keys to the work queue",
        )
        self.function_log_group = logs.LogGroup(
            self, "FunctionLogs", retention=logs.RetentionDays.ONE_MONTH, encryption_key=encryption_key
        )
        self.function_log_group.grant_write(self.function_role)
        self.function = lambda_.Function(
            self,
            "Function",
            description="kie-uploader distributed backfill: a batch of keys -> the work queue (watched only)",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=architecture,
            handler=HANDLER,
            code=code,
            memory_size=256,
            timeout=Duration.seconds(60),
            environment={
                "QUEUE_URL": queue.queue_url,
                "TABLE_NAME": table.table_name,
                watched.VARIABLE: watched_objects,
                "POWERTOOLS_SERVICE_NAME": "kie-uploader-backfill",
            },
            environment_encryption=encryption_key,
            role=self.function_role,
            log_group=self.function_log_group,
        )
        queue.grant_send_messages(self.function_role)
        iam.Grant.add_to_principal(
            grantee=self.function_role, actions=["dynamodb:BatchGetItem"], resource_arns=[table.table_arn]
        )
        if table.encryption_key is not None:
            table.encryption_key.grant_decrypt(self.function_role)

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="kie-uploader backfill state machine: lists watched keys, runs the child batches",
        )
        for bucket, prefix, suffix in watched_buckets:
            self.add_bucket(bucket, prefix, suffix)
        iam.Grant.add_to_principal(
            grantee=self.role,
            actions=["s3:GetObject"],
            resource_arns=[self.bucket.arn_for_objects(f"{MANIFEST_PREFIX}*")],
        )
        iam.Grant.add_to_principal(
            grantee=self.role,
            actions=RESULT_WRITER_ACTIONS,
            resource_arns=[self.bucket.arn_for_objects(f"{RESULTS_PREFIX}*")],
        )
        if encryption_key is not None:
            encryption_key.grant_encrypt_decrypt(self.role)
        # The unqualified ARN only (grant_invoke adds ":*" for versions: the child has none).
        iam.Grant.add_to_principal(
            grantee=self.role, actions=["lambda:InvokeFunction"], resource_arns=[self.function.function_arn]
        )

        definition = self._definition(max_concurrency, batch_size, tolerated_failure_percentage)
        self.log_group = logs.LogGroup(
            self, "Logs", retention=logs.RetentionDays.ONE_MONTH, encryption_key=encryption_key
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_string(stack.to_json_string(definition)),
            state_machine_type=sfn.StateMachineType.STANDARD,
            role=self.role,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL),
            comment="kie-uploader distributed backfill: keys of a prefix or manifest -> the work queue",
        )
        # In a policy of its own: the role's default policy naming the state machine would be a cycle.
        name = self.state_machine.state_machine_name
        self.execution_arns = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{name}/*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.map_run_policy = iam.Policy(
            self,
            "MapRunPolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    actions=["states:StartExecution"], resources=[self.state_machine.state_machine_arn]
                ),
                iam.PolicyStatement(
                    actions=["states:DescribeExecution", "states:StopExecution", "states:RedriveExecution"],
                    resources=[self.execution_arns],
                ),
            ],
        )

    def add_bucket(self, bucket: s3.IBucket, prefix: str, suffix: str) -> None:
        """Let the state machine list ``bucket`` under its watched ``prefix`` (``s3:prefix`` condition)."""
        conditions: dict[str, Any] | None = None
        text = watched.key_text(prefix)
        if text:
            conditions = {"StringLike": {"s3:prefix": [f"{watched.iam_literal(text)}*"]}}
        iam.Grant.add_to_principal(
            grantee=self.role,
            actions=["s3:ListBucket"],
            resource_arns=[bucket.bucket_arn],
            conditions=conditions,
        )

    def _definition(self, max_concurrency: int, batch_size: int, tolerated: int) -> dict[str, Any]:
        child = {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
            "StartAt": "EnqueueBatch",
            "States": {
                "EnqueueBatch": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": self.function.function_arn, "Payload.$": "$"},
                    "OutputPath": "$.Payload",
                    "Retry": [
                        {
                            "ErrorEquals": [
                                "Lambda.ServiceException",
                                "Lambda.AWSLambdaException",
                                "Lambda.SdkClientException",
                                "Lambda.TooManyRequestsException",
                                "BackfillError",
                            ],
                            "IntervalSeconds": 2,
                            "MaxAttempts": 4,
                            "BackoffRate": 2,
                        }
                    ],
                    "End": True,
                }
            },
        }
        common_selector = {"bucket.$": "$.bucket", "force.$": "$.force"}

        def distributed_map(reader: dict[str, Any], selector: dict[str, str]) -> dict[str, Any]:
            return {
                "Type": "Map",
                "ItemReader": reader,
                "ItemSelector": {**common_selector, **selector},
                "ItemBatcher": {"MaxItemsPerBatch": batch_size},
                "MaxConcurrency": max_concurrency,
                "ToleratedFailurePercentage": tolerated,
                "ItemProcessor": child,
                "ResultWriter": {
                    "Resource": "arn:aws:states:::s3:putObject",
                    "Parameters": {"Bucket": self.bucket.bucket_name, "Prefix": RESULTS_PREFIX.rstrip("/")},
                },
                "End": True,
            }

        def manifest(input_type: str) -> dict[str, Any]:
            config: dict[str, Any] = {"InputType": input_type}
            if input_type == "CSV":
                config["CSVHeaderLocation"] = "FIRST_ROW"
            return {
                "Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": config,
                "Parameters": {"Bucket": self.bucket.bucket_name, "Key.$": "$.manifestKey"},
            }

        key_only = {"key.$": "$$.Map.Item.Value.Key"}
        return {
            "Comment": "kie-uploader distributed backfill",
            "StartAt": "Source",
            "States": {
                "Source": {
                    "Type": "Choice",
                    "Choices": [
                        {"Variable": "$.source", "StringEquals": "csv", "Next": SOURCES["csv"]},
                        {"Variable": "$.source", "StringEquals": "json", "Next": SOURCES["json"]},
                    ],
                    "Default": SOURCES["list"],
                },
                SOURCES["list"]: distributed_map(
                    {
                        "Resource": "arn:aws:states:::s3:listObjectsV2",
                        "Parameters": {"Bucket.$": "$.bucket", "Prefix.$": "$.prefix"},
                    },
                    {
                        "key.$": "$$.Map.Item.Value.Key",
                        "etag.$": "$$.Map.Item.Value.Etag",
                        "size.$": "$$.Map.Item.Value.Size",
                    },
                ),
                SOURCES["csv"]: distributed_map(manifest("CSV"), key_only),
                SOURCES["json"]: distributed_map(manifest("JSON"), key_only),
            },
        }

    def acknowledgments(self) -> dict[Construct, list[tuple[str, str]]]:
        """The cdk-nag findings this construct makes on purpose: scope → [(rule, reason)]."""
        stack = Stack.of(self)
        from kie_uploader.cdk.nag import _flatten

        executions = f"AwsSolutions-IAM5[Resource::{_flatten(stack.resolve(self.execution_arns))}]"
        objects = [
            f"AwsSolutions-IAM5[Resource::{_flatten(stack.resolve(self.bucket.arn_for_objects(p + '*')))}]"
            for p in (MANIFEST_PREFIX, RESULTS_PREFIX)
        ]
        kms_families = [
            (f"AwsSolutions-IAM5[Action::kms:{family}*]", NAG_REASONS["IAM5-kms"])
            for family in ("GenerateDataKey", "ReEncrypt")
            if self.encryption_key is not None
        ]
        return {
            self.function: [("AwsSolutions-L1", NAG_REASONS["AwsSolutions-L1"])],
            self.function_role: list(kms_families),
            self.bucket: [("AwsSolutions-S1", NAG_REASONS["AwsSolutions-S1"])],
            self.map_run_policy: [(executions, NAG_REASONS["IAM5-executions"])],
            self.role: [
                *((finding, NAG_REASONS["IAM5-backfill-objects"]) for finding in objects),
                ("AwsSolutions-IAM5[Resource::*]", NAG_REASONS["IAM5-logs"]),
                *kms_families,
            ],
        }
