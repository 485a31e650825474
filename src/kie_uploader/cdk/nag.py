"""cdk-nag acknowledgments: each one scoped to the construct it is about, with the reason it holds here.

Only ``aws_cdk.Validations`` is used: a user's app needs cdk-nag only if it runs cdk-nag itself.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aws_cdk import Acknowledgment, Stack, Validations

from kie_uploader.cdk import watched

if TYPE_CHECKING:
    from constructs import IConstruct

# CDK's singleton that applies S3 notifications (it merges with a bucket's existing ones).
BUCKET_NOTIFICATIONS_HANDLER_ID = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"

REASONS = {
    "SMG4": (
        "The secret holds an API key issued by kie.ai; kie.ai offers no API to issue a new key, so a "
        "rotation function could not rotate it. An operator replaces the key by putting a new value "
        "(see the README); the function re-reads it after SECRET_CACHE_SECONDS."
    ),
    "L1": (
        "The runtime is pinned to python3.12 on purpose: the function's dependencies are bundled as CPython "
        "3.12 wheels (pip --python-version 3.12) and tested on that version; runtime and bundling target "
        "move together in one change."
    ),
    "IAM5-xray": (
        "Active X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level "
        "permissions, so '*' is the only possible resource. No data action has a wildcard resource."
    ),
    "IAM5-objects": (
        "The function reads objects whose keys are known only at run time (any watched key, also sent by the "
        "backfill tool): the object ARN is the watched pattern bucket/prefix*suffix, exactly the keys the "
        "function's WATCHED_OBJECTS rules accept ('*' alone without a prefix or suffix). Actions are only "
        "s3:GetObject and s3:GetObjectVersion, on the source buckets only."
    ),
    "IAM5-kms": (
        "CDK's grants on the customer managed key (encryption_key) for the queues, the records table and its "
        "stream: kms:GenerateDataKey* and kms:ReEncrypt* are the KMS action families those grants name, on "
        "this one key's ARN only (never '*'); the key encrypts this construct's own resources."
    ),
    "IAM5-notifications-logs": (
        "The notifications handler writes its logs to its own log group only; CloudWatch Logs needs the "
        "log group's ARN with ':*' for its log streams, which are created at run time."
    ),
    "IAM4-vpc": (
        "The function runs in the VPC the construct was given (vpc): Lambda needs the AWS managed "
        "AWSLambdaVPCAccessExecutionRole to create and delete its network interfaces there; CDK attaches it "
        "to the function's own role, and it grants no access to any data."
    ),
    "IAM4-notifications": (
        "CDK's own BucketNotificationsHandler (runs only during deployment to set the buckets' "
        "notifications) uses the AWS managed AWSLambdaBasicExecutionRole to write its logs; CDK scopes "
        "its S3 permission (s3:PutBucketNotification) to the source buckets."
    ),
}


def _ack(rule: str, reason: str) -> Acknowledgment:
    return Acknowledgment(id=f"AwsSolutions::{rule}", reason=reason)


def _flatten(value: Any) -> str:
    """cdk-nag's rendering of a resolved CloudFormation value in a finding id (its ``flattenCfnReference``).

    ``Fn::Join`` joined, ``{"Fn::GetAtt": [id, attr]}`` as ``<id.attr>``, ``{"Ref": id}`` as ``<id>``, and in
    a literal string ``${`` as ``<`` and ``}`` as ``>`` (as Fn::Sub's syntax).
    """
    if isinstance(value, str):
        return value.replace("${", "<").replace("}", ">")
    if isinstance(value, dict) and "Fn::Join" in value:
        delimiter, items = value["Fn::Join"]
        return str(delimiter).join(_flatten(item) for item in items)
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        resource, attribute = value["Fn::GetAtt"]
        return f"<{_flatten(resource)}.{_flatten(attribute)}>"
    if isinstance(value, dict) and "Ref" in value:
        return f"<{_flatten(value['Ref'])}>"
    return json.dumps(value, separators=(",", ":"))


def _resource_finding(stack: Stack, arn: str) -> str:
    """The IAM5 finding id of a statement's resource ``arn`` (as the stack renders it: a bucket of the stack
    as ``<Logical.Arn>``, an imported one with the partition as a literal or as ``<AWS::Partition>``)."""
    return f"AwsSolutions-IAM5[Resource::{_flatten(stack.resolve(arn))}]"


def acknowledge_findings(
    uploader: Any,  # a KieUploader (construct.py imports this module)
    done: set[tuple[str, str]],
) -> list[str]:
    """Acknowledge the AwsSolutions findings that are deliberate in the construct, each where it arises.

    Run again after ``add_bucket``: ``done`` holds the (construct path, id) pairs already acknowledged, which
    are not acknowledged twice. Returns every acknowledged id, so that a test can check that each one still
    matches a finding.
    """
    stack = Stack.of(uploader)
    acknowledged: list[str] = []

    def acknowledge(scope: IConstruct, *acks: Acknowledgment) -> None:
        new = [ack for ack in acks if (scope.node.path, ack.id) not in done]
        if new:
            Validations.of(scope).acknowledge(*new)
        done.update((scope.node.path, ack.id) for ack in new)
        acknowledged.extend(ack.id for ack in acks)

    if uploader.secret_created:
        acknowledge(uploader.secret, _ack("AwsSolutions-SMG4", REASONS["SMG4"]))
    acknowledge(uploader.function, _ack("AwsSolutions-L1", REASONS["L1"]))
    # The watched objects of each bucket, exactly as the construct grants them (bucket/prefix*suffix).
    acknowledge(
        uploader.uploader.role,
        _ack("AwsSolutions-IAM5[Resource::*]", REASONS["IAM5-xray"]),
        *(
            _ack(_resource_finding(stack, arn), REASONS["IAM5-objects"])
            for arn in watched.object_arns(uploader.watched_buckets)
        ),
    )
    if uploader.vpc is not None:
        acknowledge(
            uploader.uploader.role,
            _ack(
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaVPCAccessExecutionRole]",
                REASONS["IAM4-vpc"],
            ),
        )
    if uploader.encryption_key is not None:
        kms_families = [
            _ack(f"AwsSolutions-IAM5[Action::kms:{family}*]", REASONS["IAM5-kms"])
            for family in ("GenerateDataKey", "ReEncrypt")
        ]
        acknowledge(uploader.uploader.role, *kms_families)
        if uploader.publisher is not None:
            acknowledge(uploader.publisher.role, *kms_families)
    handler = stack.node.try_find_child(BUCKET_NOTIFICATIONS_HANDLER_ID)
    if handler is not None:
        acknowledge(
            handler,
            _ack(
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]",
                REASONS["IAM4-notifications"],
            ),
        )
    # The event publisher's and the distributed backfill's own (each says why).
    for part in (uploader.publisher, getattr(uploader, "distributed_backfill", None)):
        for scope, findings in (part.acknowledgments() if part is not None else {}).items():
            acknowledge(scope, *(_ack(rule, why) for rule, why in findings))
    if uploader.bucket_notifications is not None:
        acknowledge(uploader.bucket_notifications.function, _ack("AwsSolutions-L1", REASONS["L1"]))
    return acknowledged
