"""How S3 tells the uploader about objects: S3 notifications to the queue or the function, or EventBridge.

* A bucket this stack owns (``s3.Bucket``) gets CDK's own notifications (CDK manages its whole
  configuration, so an update replaces it cleanly).
* An imported bucket (``s3.Bucket.from_bucket_name`` ...) gets :class:`ImportedBucketNotifications`, a
  custom resource whose entries have ids fixed in the template (``<owner>-ObjectCreated`` ...), derived from
  the construct's path and never from Python's ``hash()`` (aws-cdk issue 31303): changing ``prefix`` or
  ``notify`` updates the same entries, and the bucket's other entries stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import CustomResource, Duration, IListProducer, Lazy, Stack, Token
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IConstruct

from kie_uploader.cdk import bundling

HANDLER_ROOT = Path(__file__).resolve().parent / "handlers" / "bucket_notifications"
#: S3 event types → the suffix of the entry's id.
EVENTS = {"s3:ObjectCreated:*": "ObjectCreated", "s3:ObjectRemoved:*": "ObjectRemoved"}
#: S3's EventBridge detail types for the same events.
EVENTBRIDGE_DETAIL_TYPES = ["Object Created", "Object Deleted"]


def key_filter_rules(prefix: str, suffix: str) -> list[dict[str, str]]:
    rules = []
    if prefix:
        rules.append({"Name": "prefix", "Value": prefix})
    if suffix:
        rules.append({"Name": "suffix", "Value": suffix})
    return rules


def eventbridge_key_pattern(prefix: str, suffix: str) -> list[dict[str, str]] | None:
    """The EventBridge pattern for ``detail.object.key``: prefix, suffix, or both (a wildcard)."""
    if prefix and suffix:

        def escape(text: str) -> str:
            return text.replace("\\", "\\\\").replace("*", "\\*")

        return [{"wildcard": f"{escape(prefix)}*{escape(suffix)}"}]
    if prefix:
        return [{"prefix": prefix}]
    if suffix:
        return [{"suffix": suffix}]
    return None


def owner_id(construct: IConstruct) -> str:
    """Stable, short and unique per construct path: the prefix of every entry id this construct puts."""
    return f"kie-uploader-{construct.node.addr[:12]}"


@jsii.implements(s3.IBucketNotificationDestination)
class _Destination:
    """A queue or function ARN whose resource policy the construct writes itself (with aws:SourceAccount)."""

    def __init__(
        self, arn: str, kind: s3.BucketNotificationDestinationType, dependencies: Sequence[IConstruct]
    ) -> None:
        self._arn, self._kind, self._dependencies = arn, kind, list(dependencies)

    def bind(self, scope: Construct, bucket: Any) -> s3.BucketNotificationDestinationConfig:
        return s3.BucketNotificationDestinationConfig(
            arn=self._arn, type=self._kind, dependencies=self._dependencies
        )


class ImportedBucketNotifications(Construct):
    """One custom resource per imported bucket, and the one handler function they share."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.owner = owner_id(self)
        self.log_group = logs.LogGroup(
            self, "Logs", retention=logs.RetentionDays.ONE_MONTH, encryption_key=encryption_key
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="kie-uploader: puts its own S3 notification entries on the imported source buckets",
        )
        self.log_group.grant_write(self.role)
        # The buckets' ARNs are added by add().
        self._statement = iam.PolicyStatement(
            actions=["s3:GetBucketNotification", "s3:PutBucketNotification"]
        )
        self.role.add_to_policy(self._statement)
        self.function = lambda_.Function(
            self,
            "Handler",
            description="kie-uploader: this stack's S3 notification entries on imported buckets",
            runtime=bundling.RUNTIME,
            handler="index.handler",
            code=lambda_.Code.from_asset(str(HANDLER_ROOT), exclude=["__pycache__", "*.pyc"]),
            timeout=Duration.minutes(2),
            role=self.role,
            log_group=self.log_group,
        )
        self.resources: list[CustomResource] = []

    def add(self, bucket: s3.IBucket, configuration: dict[str, Any], *, depends_on: Sequence[Any]) -> None:
        self._statement.add_resources(bucket.bucket_arn)
        name = bucket.bucket_name
        # Keyed by the bucket's name where it is known, so that reordering the buckets changes nothing.
        key = str(len(self.resources)) if Token.is_unresolved(name) else name
        resource = CustomResource(
            self,
            f"Bucket-{key}",
            service_token=self.function.function_arn,
            resource_type="Custom::KieUploaderBucketNotifications",
            properties={"BucketName": name, "Owner": self.owner, "Configuration": configuration},
        )
        for dependency in depends_on:
            resource.node.add_dependency(dependency)
        resource.node.add_dependency(self.role)
        self.resources.append(resource)


def _queue_policy(queue: sqs.IQueue, source_arns: list[str], account: str) -> list[IConstruct]:
    # Only S3, only for these buckets, and only in this account (a deleted bucket's name may be taken by
    # another account: aws:SourceAccount keeps its events out).
    result = queue.add_to_resource_policy(
        iam.PolicyStatement(
            sid="S3SendsObjectEvents",
            principals=[iam.ServicePrincipal("s3.amazonaws.com")],
            actions=["sqs:SendMessage"],
            resources=[queue.queue_arn],
            conditions={
                "ArnLike": {"aws:SourceArn": source_arns},
                "StringEquals": {"aws:SourceAccount": account},
            },
        )
    )
    return [result.policy_dependable] if result.policy_dependable is not None else []  # type: ignore[list-item]


def _invoke_permission(
    function: lambda_.IFunction, bucket: s3.IBucket, index: int, account: str
) -> IConstruct:
    function.add_permission(
        f"S3Invokes{index}",
        principal=iam.ServicePrincipal("s3.amazonaws.com"),
        action="lambda:InvokeFunction",
        source_arn=bucket.bucket_arn,
        source_account=account,
    )
    return function.permissions_node.find_child(f"S3Invokes{index}")


def _eventbridge_rule(
    scope: Construct,
    construct_id: str,
    prefix: str,
    suffix: str,
    queue: sqs.IQueue,
    dead_letter_queue: sqs.IQueue,
) -> events.Rule:
    """A rule for the buckets whose keys match ``prefix``/``suffix``: each bucket is added to its pattern."""
    detail: dict[str, Any] = {}
    key_pattern = eventbridge_key_pattern(prefix, suffix)
    if key_pattern is not None:
        detail["object"] = {"key": key_pattern}
    rule = events.Rule(
        scope,
        construct_id,
        description="kie-uploader: S3 Object Created/Deleted events of the source buckets to the queue",
        event_pattern=events.EventPattern(
            source=["aws.s3"], detail_type=EVENTBRIDGE_DETAIL_TYPES, detail=detail or None
        ),
    )
    # An event EventBridge cannot deliver (say, the queue's policy was changed by hand) waits in the DLQ.
    rule.add_target(targets.SqsQueue(queue, dead_letter_queue=dead_letter_queue))
    return rule


def imported_configuration(
    mode: str, owner: str, destination_arn: str, rules: list[dict[str, str]]
) -> dict[str, Any]:
    """The custom resource's ``Configuration``: this owner's entries; their ids never depend on filters."""
    if mode == "eventbridge":
        return {"EventBridge": "true"}
    arn_key, list_key = (
        ("QueueArn", "QueueConfigurations")
        if mode == "queue"
        else ("LambdaFunctionArn", "LambdaFunctionConfigurations")
    )
    entries = []
    for event, name in EVENTS.items():
        entry: dict[str, Any] = {"Id": f"{owner}-{name}", arn_key: destination_arn, "Events": [event]}
        if rules:
            entry["Filter"] = {"Key": {"FilterRules": rules}}
        entries.append(entry)
    return {list_key: entries}


def imported_bucket_changes(mode: str, bucket: s3.IBucket, prefix: str, suffix: str) -> str:
    """What the construct changes on a bucket it imports (the acknowledgment's error says it per bucket)."""
    if mode == "eventbridge":
        return (
            f"{bucket.bucket_name}: turns on its EventBridge delivery (S3 then sends every object event of "
            "the bucket to the default event bus; left on when the construct is deleted: others may use it)"
        )
    target = "the construct's SQS queue" if mode == "queue" else "the uploader function"
    filters = " and ".join(f"{rule['Name']} {rule['Value']!r}" for rule in key_filter_rules(prefix, suffix))
    return (
        f"{bucket.bucket_name}: adds two entries to its S3 event notification configuration, ids "
        f"'kie-uploader-<id>-ObjectCreated' and '-ObjectRemoved' (s3:ObjectCreated:*, s3:ObjectRemoved:* of "
        f"{'the keys with ' + filters if filters else 'every key'}, to {target}), keeping its other entries "
        "and removing these when the construct is deleted; S3 refuses the configuration, and the deployment "
        "fails, if an entry of its own already sends these events of overlapping keys elsewhere"
    )


class BucketWiring:
    """Connects buckets one at a time to the queue (``queue``, ``eventbridge``) or the function (``lambda``).

    Whatever names every bucket (the queue policy's ``aws:SourceArn``, the imported buckets' handler's role,
    an EventBridge rule's bucket names) is extended by :meth:`add`, so that a bucket added after construction
    is wired exactly as one given to the constructor.
    """

    def __init__(
        self,
        scope: Construct,
        *,
        mode: str,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        function: lambda_.IFunction,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        """``encryption_key`` encrypts the log group of the imported buckets' handler."""
        self._scope, self.mode = scope, mode
        self._queue, self._dead_letter_queue, self._function = queue, dead_letter_queue, function
        self._encryption_key = encryption_key
        self._account = Stack.of(scope).account
        self._source_arns: list[str] = []
        self._invoke_permissions = 0
        self._queue_dependencies: list[IConstruct] = []
        if mode == "queue":
            source_arns = Lazy.uncached_list(_Produce(lambda: list(self._source_arns)))
            self._queue_dependencies = _queue_policy(queue, source_arns, self._account)
        #: The custom resource of the imported buckets (created with the first one).
        self.handler: ImportedBucketNotifications | None = None
        #: The EventBridge rules (``eventbridge``), one per distinct prefix and suffix.
        self.rules: dict[tuple[str, str], events.Rule] = {}

    def add(self, bucket: s3.IBucket, prefix: str, suffix: str) -> None:
        mode = self.mode
        self._source_arns.append(bucket.bucket_arn)
        dependencies, destination_arn = self._queue_dependencies, self._queue.queue_arn
        kind = s3.BucketNotificationDestinationType.QUEUE
        if mode == "lambda":
            kind = s3.BucketNotificationDestinationType.LAMBDA
            permission = _invoke_permission(self._function, bucket, self._invoke_permissions, self._account)
            self._invoke_permissions += 1
            dependencies, destination_arn = [permission], self._function.function_arn
        elif mode == "eventbridge":
            rule = self.rules.get((prefix, suffix))
            if rule is None:
                construct_id = "ObjectEvents" if not self.rules else f"ObjectEvents{len(self.rules)}"
                rule = _eventbridge_rule(
                    self._scope, construct_id, prefix, suffix, self._queue, self._dead_letter_queue
                )
                self.rules[(prefix, suffix)] = rule
            rule.add_event_pattern(detail={"bucket": {"name": [bucket.bucket_name]}})
        rules = key_filter_rules(prefix, suffix)
        if not isinstance(bucket, s3.Bucket):
            if self.handler is None:
                self.handler = ImportedBucketNotifications(
                    self._scope, "BucketNotifications", encryption_key=self._encryption_key
                )
            configuration = imported_configuration(mode, self.handler.owner, destination_arn, rules)
            self.handler.add(bucket, configuration, depends_on=dependencies)
        elif mode == "eventbridge":
            bucket.enable_event_bridge_notification()
        else:
            filters = (
                [s3.NotificationKeyFilter(prefix=prefix or None, suffix=suffix or None)] if rules else []
            )
            target = _Destination(destination_arn, kind, dependencies)
            for event in (s3.EventType.OBJECT_CREATED, s3.EventType.OBJECT_REMOVED):
                bucket.add_event_notification(event, target, *filters)


@jsii.implements(IListProducer)
class _Produce:
    def __init__(self, produce: Callable[[], list[str]]) -> None:
        self._produce = produce

    def produce(self, context: Any) -> list[str]:
        return self._produce()
