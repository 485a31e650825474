"""The optional customer managed key (``encryption_key``) and what its key policy must allow.

One key encrypts the work queue and both dead-letter queues, the records table (and its stream), the secret
the construct creates, the alarm topic, the log groups and the functions' environment. Principals with
credentials of their own (the functions' roles, an operator) get the key through IAM: CDK's grants add
``kms:*`` actions on this key's ARN to the roles, which the key policy's account statement lets IAM decide.
AWS services that act without a role of ours need a statement in the key policy itself:

* ``cloudwatch.amazonaws.com``: alarms publish to the encrypted alarm topic (``kms:Decrypt``,
  ``kms:GenerateDataKey*``);
* ``logs.<region>.amazonaws.com``: CloudWatch Logs encrypts the log groups, only those of this account and
  region (``kms:EncryptionContext:aws:logs:arn``);
* ``s3.amazonaws.com`` with ``notify=queue``: S3 sends object events to the encrypted queue
  (``kms:GenerateDataKey``, ``kms:Decrypt``);
* ``events.amazonaws.com`` with ``notify=eventbridge``: the rule delivers to the encrypted queue, and what
  it cannot deliver to the encrypted dead-letter queue.

Each service statement is limited to this account with ``aws:SourceAccount`` (the confused-deputy guard);
which buckets may send stays decided by the queue's own policy (``aws:SourceArn``), which the key does not
replace. A key the construct does not own (``kms.Key.from_key_arn``) cannot be changed from here: its
policy needs the same statements (:func:`service_statements`), and the construct says so in a warning.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Annotations, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from kie_uploader.cdk.options import NotifyMode

#: What S3 and EventBridge need to put a message on an encrypted queue.
QUEUE_SENDER_ACTIONS = ["kms:GenerateDataKey", "kms:Decrypt"]
#: What CloudWatch needs to publish to an encrypted topic.
TOPIC_PUBLISHER_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey*"]
#: What CloudWatch Logs needs for an encrypted log group (its documented key policy statement).
LOGS_ACTIONS = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]


def create_key(scope: Construct, construct_id: str) -> kms.Key:
    """A symmetric key with yearly rotation, retained with the stack's deletion like the table it encrypts
    (a deleted key would leave the retained table, and messages in the queues, unreadable)."""
    return kms.Key(
        scope,
        construct_id,
        description="kie-uploader: queues, records table, secret, alarm topic, logs, function settings",
        enable_key_rotation=True,
        removal_policy=RemovalPolicy.RETAIN,
    )


def service_statements(scope: Construct, notify: NotifyMode) -> list[iam.PolicyStatement]:
    """The key policy statements the AWS services need, for the construct at ``scope``."""
    stack = Stack.of(scope)
    this_account: dict[str, Any] = {"StringEquals": {"aws:SourceAccount": stack.account}}

    def allow(sid: str, service: str, actions: list[str], conditions: dict[str, Any]) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid=sid,
            principals=[iam.ServicePrincipal(service)],
            actions=actions,
            resources=["*"],  # in a key policy, "*" is this key
            conditions=conditions,
        )

    statements = [
        allow(
            "CloudWatchAlarmsPublishToTheAlarmTopic",
            "cloudwatch.amazonaws.com",
            TOPIC_PUBLISHER_ACTIONS,
            this_account,
        ),
        allow(
            "CloudWatchLogsEncryptTheLogGroups",
            f"logs.{stack.region}.amazonaws.com",
            LOGS_ACTIONS,
            {
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": (
                        f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:*"
                    )
                }
            },
        ),
    ]
    if notify is NotifyMode.QUEUE:
        statements.append(
            allow("S3SendsObjectEventsToTheQueue", "s3.amazonaws.com", QUEUE_SENDER_ACTIONS, this_account)
        )
    elif notify is NotifyMode.EVENTBRIDGE:
        statements.append(
            allow(
                "EventBridgeDeliversToTheQueues", "events.amazonaws.com", QUEUE_SENDER_ACTIONS, this_account
            )
        )
    return statements


def allow_services(scope: Construct, key: kms.IKey, notify: NotifyMode) -> list[iam.PolicyStatement]:
    """Add :func:`service_statements` to ``key``'s policy; warn when the key is not ours to change."""
    statements = service_statements(scope, notify)
    added = [key.add_to_resource_policy(statement).statement_added for statement in statements]
    if not all(added):
        Annotations.of(scope).add_warning_v2(
            "kie-uploader:encryption-key-policy",
            "encryption_key is a key this stack does not own: its key policy must have the statements "
            + ", ".join(str(statement.sid) for statement in statements)
            + " (KieUploader.encryption_key_statements; the README's security section lists them), or "
            "alarms, logs and S3/EventBridge deliveries fail.",
        )
    return statements
