"""checkov's skips: each finding the construct leaves on purpose, skipped on the resource it is about.

Teams gate deployments on checkov (``checkov -f template.json --framework cloudformation``). What checkov
flags and belongs in every deployment is fixed by default, not skipped (reserved concurrency with
``notify=lambda``, every encryption check with ``encryption_key``). What is left is written into the template
in checkov's own form, ``Metadata: {checkov: {skip: [{id, comment}]}}``, on the resource, with the reason it
holds there:

* **the user's choice**, made through a prop: a customer managed key (``encryption_key``), reserved
  concurrency (``reserved_concurrency``), placement in a VPC. The skip is decided from the resource's
  properties once the construct has built it, so a prop that satisfies the check leaves no skip behind;
* **not applicable**: a deploy-time custom resource handler, the access-log bucket;
* **fixed in a form checkov does not read**: the uploader's failed asynchronous invocations go to its
  dead-letter queue through an on-failure destination, while CKV_AWS_116 looks for ``DeadLetterConfig`` only.

The README's security section gives the same reasons (tests/infra/test_checkov.py holds them equal, runs
checkov on every variant and checks that each skip still matches a finding).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_cdk import CfnResource, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs

if TYPE_CHECKING:
    from constructs import IConstruct

# The same id as nag.py's: CDK's singleton that applies the notifications of a bucket the stack owns.
BUCKET_NOTIFICATIONS_HANDLER_ID = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"

_CMK = "A customer managed key is the user's choice: encryption_key (context encryptionKey) encrypts it."
_HANDLER = "A CloudFormation custom resource handler that runs only while the stack deploys"

#: checkov check id → (what the skip is about → its reason). The README's security section quotes them.
REASONS: dict[str, dict[str, str]] = {
    "CKV_AWS_27": {
        "queue": (
            "Encrypted at rest with SSE-SQS (SqsManagedSseEnabled: SQS-owned keys, no KMS requests, no key "
            "policy), which CKV_AWS_27 does not count: it looks for KmsMasterKeyId only. " + _CMK
        ),
    },
    "CKV_AWS_26": {
        "alarm-topic": (
            "The alarm topic carries CloudWatch alarm state changes only (alarm name, metric, threshold), "
            "no object data and no key. SNS's AWS managed key (alias/aws/sns) cannot be used: its key policy "
            "cannot allow cloudwatch.amazonaws.com, so alarms could not publish. "
            + _CMK
            + " Its key policy then allows CloudWatch (aws:SourceAccount)."
        ),
    },
    "CKV_AWS_119": {
        "table": (
            "Encrypted at rest with DynamoDB's AWS managed key (SSEEnabled, alias/aws/dynamodb); the records "
            "hold object keys and kie.ai's public download URLs. " + _CMK
        ),
    },
    "CKV_AWS_149": {
        "secret": (
            "Encrypted with Secrets Manager's AWS managed key (alias/aws/secretsmanager); only the "
            "function's role may read it. " + _CMK + " Or bring your own secret and its key "
            "(existing_secret, existing_secret_kms_key)."
        ),
    },
    "CKV_AWS_158": {
        "log-group": (
            "CloudWatch Logs encrypts every log group at rest with a service-owned key. These logs hold "
            "bucket names, object keys, statuses and durations, never the kie.ai key nor a presigned URL's "
            "signature (the test suite fails on any log line holding either). " + _CMK
        ),
    },
    "CKV_AWS_173": {
        "environment": (
            "Lambda encrypts environment variables at rest with its AWS managed key. They hold names and "
            "settings only (table name, secret ARN, kie.ai URL, limits, watched prefixes), never a secret: "
            "the kie.ai key is read from Secrets Manager at run time. " + _CMK
        ),
    },
    "CKV_AWS_115": {
        "backfill": (
            "Invoked only by the backfill state machine's Distributed Map, whose MaxConcurrency bounds its "
            "concurrent invocations; reserved concurrency would take capacity from the account's unreserved "
            "pool all year for a tool that runs now and then."
        ),

        "uploader": (
            "The queue's event source mapping caps concurrent invocations at max_concurrency "
            "(ScalingConfig.MaximumConcurrency), which is what bounds the load on kie.ai. Reserved "
            "concurrency would come out of the account's unreserved pool (a deployment fails where that "
            "would leave fewer than 10) and would throttle synchronous resolve requests beyond it: the "
            "user's choice, reserved_concurrency (context reservedConcurrency). notify=lambda sets it."
        ),
        "publisher": (
            "Invoked only by the table stream's event source mapping with ParallelizationFactor 1: at most "
            "one invocation per stream shard at a time, so the stream bounds its concurrency. Reserved "
            "concurrency would take capacity from the account's unreserved pool, and a value below the "
            "number of shards would delay events."
        ),
        "handler": (
            _HANDLER + ", a few invocations per deployment: reserved concurrency would take capacity from "
            "the account's unreserved pool all year for them."
        ),
    },
    "CKV_AWS_116": {
        "backfill": (
            "Invoked only synchronously, by the backfill state machine (lambda:invoke): Lambda never queues "
            "its invocations; a batch that fails its retries fails its child execution, which the Map Run "
            "counts and a redrive runs again."
        ),

        "uploader": (
            "Failed asynchronous invocations (S3 with notify=lambda, the keep-alive schedule) do go to the "
            "dead-letter queue, after 2 retries: through an on-failure destination "
            "(AWS::Lambda::EventInvokeConfig), whose record carries the request and the error that "
            "kie-uploader dlq peek shows and redrive replays. CKV_AWS_116 reads only DeadLetterConfig; "
            "having both would park every failed event twice."
        ),
        "publisher": (
            "Invoked only synchronously, by the table stream's event source mapping: Lambda never queues its "
            "invocations, so a function dead-letter queue would never receive anything. A batch that fails "
            "every retry is described in the publisher's own dead-letter queue by the mapping's OnFailure "
            "destination, which raises an alarm."
        ),
        "handler": (
            _HANDLER + ": CloudFormation waits for its answer and fails (and rolls back) the deployment "
            "when it fails. A dead-letter queue would keep an event no one can answer: its response URL "
            "expires."
        ),
    },
    "CKV_AWS_117": {
        "backfill": (
            "The backfill function calls SQS and DynamoDB at their public endpoints only and serves nothing "
            "inside a VPC."
        ),

        "uploader": (
            "The function reaches kie.ai on the internet, and S3, DynamoDB and Secrets Manager at their "
            "public endpoints; it serves nothing inside a VPC. Placing it in a VPC is the user's choice: it "
            "then needs a NAT gateway (kie.ai) and VPC endpoints or NAT for those services."
        ),
        "publisher": (
            "The publisher calls EventBridge's PutEvents only (Lambda's own poller reads the table's "
            "stream); it serves nothing inside a VPC. Placing it in a VPC is the user's choice: it then "
            "needs an EventBridge VPC endpoint or a NAT gateway."
        ),
        "handler": (
            _HANDLER + "; it calls S3's bucket notification API and CloudFormation's response URL only, "
            "and serves nothing inside a VPC."
        ),
    },
    "CKV_AWS_18": {
        "backfill": (
            "The backfill bucket holds only the manifests the CLI copies there and the Distributed Map's "
            "result files, both expired after 30 days; who started which backfill is in CloudTrail and the "
            "execution history."
        ),

        "access-logs": (
            "This is the access-log bucket: S3 writes the source bucket's server access logs into it. Its "
            "own access would need yet another log bucket (logging into itself would log its own log "
            "deliveries); only the S3 logging service writes to it."
        ),
    },
    "CKV_AWS_21": {
        "backfill": (
            "Manifests and result files are written once under keys that are never reused and expire after "
            "30 days: versioning would keep every expired one as a noncurrent version."
        ),

        "access-logs": (
            "It holds S3 server access logs, written by the S3 logging service under keys that are never "
            "reused and expired after 90 days: versioning would keep every expired log as a noncurrent "
            "version and protects nothing that is ever overwritten."
        ),
    },
}


def skip(construct: IConstruct, check_id: str, about: str) -> tuple[str, str]:
    """Skip ``check_id`` on ``construct``'s CloudFormation resource with ``REASONS[check_id][about]``."""
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to skip {check_id} on")
    comment = REASONS[check_id][about]
    current = resource.get_metadata("checkov")
    skips: list[dict[str, str]] = list(current.get("skip", [])) if isinstance(current, dict) else []
    if not any(entry.get("id") == check_id for entry in skips):
        skips.append({"id": check_id, "comment": comment})
        resource.add_metadata("checkov", {"skip": skips})
    return resource.node.path, check_id


def _function_skips(
    function: lambda_.Function, about: str, *, has_environment: bool
) -> list[tuple[str, str]]:
    """A function's concurrency, dead-letter queue, VPC and the key of its environment variables (if it has
    any), each skipped unless set."""
    cfn = function.node.default_child
    assert isinstance(cfn, lambda_.CfnFunction)
    done = []
    if cfn.reserved_concurrent_executions is None:
        done.append(skip(cfn, "CKV_AWS_115", about))
    if cfn.dead_letter_config is None:
        done.append(skip(cfn, "CKV_AWS_116", about))
    if cfn.vpc_config is None:
        done.append(skip(cfn, "CKV_AWS_117", about))
    if has_environment and cfn.kms_key_arn is None:
        done.append(skip(cfn, "CKV_AWS_173", "environment"))
    return done


def _unless(
    scope: IConstruct, check_id: str, about: str, satisfied: Callable[[Any], Any]
) -> list[tuple[str, str]]:
    cfn = scope.node.default_child
    return [] if satisfied(cfn) else [skip(scope, check_id, about)]


def _table_has_customer_key(table: dynamodb.ITable) -> bool:
    cfn = table.node.default_child
    assert isinstance(cfn, dynamodb.CfnTable)
    sse = Stack.of(table).resolve(cfn.sse_specification) or {}
    return bool(sse.get("kmsMasterKeyId") or sse.get("KMSMasterKeyId"))


def skip_findings(uploader: Any) -> list[tuple[str, str]]:  # a KieUploader (construct.py imports this module)
    """Skip the construct's deliberate checkov findings; returns (resource path, check id) of each skip."""
    done: list[tuple[str, str]] = []
    done += _function_skips(uploader.function, "uploader", has_environment=True)
    for queue in (uploader.queue, uploader.dead_letter_queue):
        done += _unless(
            queue, "CKV_AWS_27", "queue", lambda q: isinstance(q, sqs.CfnQueue) and q.kms_master_key_id
        )
    done += _unless(
        uploader.alarm_topic,
        "CKV_AWS_26",
        "alarm-topic",
        lambda t: isinstance(t, sns.CfnTopic) and t.kms_master_key_id,
    )
    if not _table_has_customer_key(uploader.table):
        done.append(skip(uploader.table, "CKV_AWS_119", "table"))
    if uploader.secret_created:
        done += _unless(
            uploader.secret,
            "CKV_AWS_149",
            "secret",
            lambda s: isinstance(s, secretsmanager.CfnSecret) and s.kms_key_id,
        )
    log_groups = [uploader.uploader.log_group]
    if uploader.publisher is not None:
        publisher = uploader.publisher
        done += _function_skips(publisher.function, "publisher", has_environment=True)
        done += _unless(
            publisher.dead_letter_queue,
            "CKV_AWS_27",
            "queue",
            lambda q: isinstance(q, sqs.CfnQueue) and q.kms_master_key_id,
        )
        log_groups.append(publisher.log_group)
    if uploader.bucket_notifications is not None:
        handler = uploader.bucket_notifications
        done += _function_skips(handler.function, "handler", has_environment=False)
        log_groups.append(handler.log_group)
    backfill = getattr(uploader, "distributed_backfill", None)
    if backfill is not None:
        done += _function_skips(backfill.function, "backfill", has_environment=True)
        log_groups += [backfill.function_log_group, backfill.log_group]
        done += [skip(backfill.bucket, check, "backfill") for check in ("CKV_AWS_18", "CKV_AWS_21")]
    for log_group in log_groups:
        done += _unless(
            log_group, "CKV_AWS_158", "log-group", lambda g: isinstance(g, logs.CfnLogGroup) and g.kms_key_id
        )
    # CDK's own handler of a created bucket's notifications: a plain CfnResource (no properties to read).
    cdk_handler = Stack.of(uploader).node.try_find_child(BUCKET_NOTIFICATIONS_HANDLER_ID)
    if cdk_handler is not None:
        resource = cdk_handler.node.find_child("Resource")
        done += [skip(resource, check, "handler") for check in ("CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117")]
    return done
