"""``KieUploader``: the whole uploader as one construct, on buckets the user already has.

```python
from aws_cdk import Stack, aws_s3 as s3
from kie_uploader.cdk import KieUploader

bucket = s3.Bucket.from_bucket_name(self, "Photos", "my-photos")
KieUploader(
    self,
    "KieUploader",
    buckets=[bucket],
    prefix="incoming/",
    accept_responsibility_for_imported_buckets=True,  # my-photos is not this stack's: see the prop
)
```
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jsii
from aws_cdk import Arn, ArnFormat, Duration, Fn, IListProducer, IStringProducer, Lazy, Token
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from kie_uploader.cdk import checkov_skips, discovery, encryption, notifications, watched
from kie_uploader.cdk.backfill import DistributedBackfill
from kie_uploader.cdk.bundling import function_package_dir
from kie_uploader.cdk.function import UploaderFunction, function_environment
from kie_uploader.cdk.monitoring import Monitoring
from kie_uploader.cdk.nag import acknowledge_findings
from kie_uploader.cdk.options import (
    BATCHING_WINDOW_SECONDS,
    MAX_CONCURRENCY_RANGE,
    SQS_BATCH_SIZE,
    FunctionOptions,
    KieUploaderPropsError,
    NotifyMode,
)
from kie_uploader.cdk.publisher import EventPublisher
from kie_uploader.cdk.queues import MAX_RECEIVE_COUNT, UploaderQueues
from kie_uploader.cdk.secret import ApiKeySecret
from kie_uploader.cdk.table import EXPIRY_INDEX, PARTITION_KEY, TTL_ATTRIBUTE, RecordsTable

# Messages older than this mean the function is failing or cannot keep up.
OLDEST_MESSAGE_AGE_ALARM = Duration.minutes(15)
# The function reads object metadata (HeadObject, also of a given version) and presigns GETs: of the watched
# objects only (bucket/prefix*suffix, see watched.py), since a presigned URL carries the role's permissions.
OBJECT_READ_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion"]
# HeadBucket (the bucket's region, for presigning) needs ListBucket; so does a 404 instead of a 403 for a
# missing key, which the function records as SKIPPED rather than as a permission problem. Neither request
# carries s3:prefix (a key of ListObjects requests), so ListBucket has no s3:prefix condition: it reveals key
# names, never an object's bytes.
BUCKET_READ_ACTIONS = ["s3:ListBucket"]
# Who may ask the function for uploads (grant_resolve / grant_send).
INVOKE_ACTIONS = ["lambda:InvokeFunction"]
# The function's record store reads one item and writes it with conditional updates (which also create it).
TABLE_ITEM_ACTIONS = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
# A refresh round queries the sparse expiry index.
TABLE_INDEX_ACTIONS = ["dynamodb:Query"]
TABLE_ACTIONS = TABLE_ITEM_ACTIONS + TABLE_INDEX_ACTIONS
#: How often the keep-alive schedule runs a refresh round, by default.
KEEP_ALIVE_SCHEDULE_MINUTES = 60
REFRESH_AHEAD_SECONDS = 43_200
#: Queue props the construct owns: S3 and the function rely on them.
QUEUE_PROPS_REFUSED = {
    "dead_letter_queue": "the construct wires its own dead-letter queue",
    "fifo": "S3 and EventBridge cannot send to a FIFO queue",
    "content_based_deduplication": "S3 and EventBridge cannot send to a FIFO queue",
    "encryption": "SSE-SQS by default; encryption_key encrypts the queues with a customer managed key",
    "encryption_master_key": "encryption_key encrypts the queues with a customer managed key",
    "enforce_ssl": "the queue refuses plain HTTP",
}
#: Dead-letter queue props the construct owns: the same encryption and SSL as the work queue, a standard queue
#: (the work queue, EventBridge's target and the function's on-failure destination are standard queues).
DEAD_LETTER_QUEUE_PROPS_REFUSED = {
    "dead_letter_queue": "a dead-letter queue has none of its own: its messages wait for redrive",
    "fifo": "the work queue is a standard queue, whose dead-letter queue must be standard too",
    "content_based_deduplication": "the dead-letter queue of a standard queue is a standard queue",
    "encryption": QUEUE_PROPS_REFUSED["encryption"],
    "encryption_master_key": QUEUE_PROPS_REFUSED["encryption_master_key"],
    "enforce_ssl": QUEUE_PROPS_REFUSED["enforce_ssl"],
}
#: SQS's bounds for a redrive policy's maxReceiveCount.
MAX_RECEIVE_COUNT_RANGE = (1, 1000)
#: Table props the construct owns: the function reads and writes exactly this key schema and TTL.
TABLE_PROPS_REFUSED = {
    "partition_key": f"the function's records are keyed by {PARTITION_KEY!r}",
    "sort_key": f"the function's records are keyed by {PARTITION_KEY!r} alone",
    "time_to_live_attribute": f"the function writes the record's TTL to {TTL_ATTRIBUTE!r}",
    "stream": "the event publisher reads the table's stream (turn events off with events=False)",
}
#: Table props that ``encryption_key`` decides when it is given.
TABLE_ENCRYPTION_PROPS = ("encryption", "encryption_key")
MAX_FILTER_LENGTH = 1024


def _props_dict(name: str, props: Any, refused: Mapping[str, str]) -> dict[str, Any]:
    if props is None:
        return {}
    if hasattr(props, "_values"):  # a jsii struct such as sqs.QueueProps
        props = dict(props._values)
    if not isinstance(props, Mapping):
        raise KieUploaderPropsError(
            f"{name}: expected a mapping of keyword arguments, got {type(props).__name__}"
        )
    for key in props:
        if key in refused:
            raise KieUploaderPropsError(f"{name}.{key}: may not be overridden: {refused[key]}")
    return dict(props)


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KieUploaderPropsError(f"{name}: expected an int, got {value!r}")
    if not low <= value <= high:
        raise KieUploaderPropsError(f"{name}={value} must be between {low} and {high}")
    return value


def _validate_buckets(buckets: Any) -> None:
    if isinstance(buckets, str | bytes) or not isinstance(buckets, Sequence) or not buckets:
        raise KieUploaderPropsError(
            "buckets: give at least one s3.IBucket, e.g. [s3.Bucket.from_bucket_name(self, 'B', 'name')]"
        )
    seen: set[str] = set()
    for index, bucket in enumerate(buckets):
        if not (hasattr(bucket, "bucket_arn") and hasattr(bucket, "bucket_name")):
            raise KieUploaderPropsError(
                f"buckets[{index}]: expected an s3.IBucket (s3.Bucket.from_bucket_name(...)), "
                f"got {type(bucket).__name__} {bucket!r}"
            )
        name = bucket.bucket_name
        if not Token.is_unresolved(name):
            if name in seen:
                raise KieUploaderPropsError(f"buckets[{index}]: {name!r} is given twice")
            seen.add(name)


def _validate_filters(prefix: Any, suffix: Any) -> None:
    for name, value in (("prefix", prefix), ("suffix", suffix)):
        if not isinstance(value, str):
            raise KieUploaderPropsError(f"{name}: expected a string, got {value!r}")
        if len(value) > MAX_FILTER_LENGTH:
            raise KieUploaderPropsError(f"{name}: at most {MAX_FILTER_LENGTH} characters (an S3 key's)")


@jsii.implements(IListProducer)
class _ListProducer:
    def __init__(self, produce: Callable[[], list[str]]) -> None:
        self._produce = produce

    def produce(self, context: Any) -> list[str]:
        return self._produce()


@jsii.implements(IStringProducer)
class _StringProducer:
    def __init__(self, produce: Callable[[], str]) -> None:
        self._produce = produce

    def produce(self, context: Any) -> str:
        return self._produce()


def _validate_secret(existing_secret: Any, existing_secret_kms_key: Any) -> None:
    if existing_secret is not None and not hasattr(existing_secret, "secret_arn"):
        raise KieUploaderPropsError(
            "existing_secret: expected a secretsmanager.ISecret "
            f"(secretsmanager.Secret.from_secret_complete_arn(...)), got {existing_secret!r}"
        )
    if existing_secret_kms_key is not None:
        if not hasattr(existing_secret_kms_key, "key_arn"):
            raise KieUploaderPropsError(
                f"existing_secret_kms_key: expected a kms.IKey, got {existing_secret_kms_key!r}"
            )
        if existing_secret is None:
            raise KieUploaderPropsError(
                "existing_secret_kms_key: given without existing_secret (the secret the construct "
                "creates is encrypted with the AWS managed key)"
            )


def _validate_encryption_key(encryption_key: Any) -> None:
    if encryption_key is None or isinstance(encryption_key, bool) or hasattr(encryption_key, "key_arn"):
        return
    raise KieUploaderPropsError(
        "encryption_key: expected a kms.IKey, or True for a key the construct creates, "
        f"got {encryption_key!r}"
    )


def _region_of(arn: str) -> str:
    """The region in an ARN, also when the ARN is a token (an import's, resolved by CloudFormation)."""
    if not Token.is_unresolved(arn):
        parts = arn.split(":")
        if len(parts) > 3 and parts[3]:
            return parts[3]
    return Arn.split(arn, ArnFormat.SLASH_RESOURCE_NAME).region or ""


class KieUploader(Construct):
    """S3 objects → (queue | EventBridge | direct) → the uploader function → kie.ai → the records table.

    Props (keyword-only):

    * ``buckets``: the buckets whose objects go to kie.ai, as ``s3.IBucket`` objects (imported with
      ``s3.Bucket.from_bucket_name`` or created in the same stack). Never replaced, emptied or re-configured
      beyond this construct's own notification entries. More with :meth:`add_bucket`.
    * ``accept_responsibility_for_imported_buckets``: must be ``True`` when a bucket is imported (not an
      ``s3.Bucket`` of this stack): the construct changes a bucket it does not own (its S3 notification
      entries with ``notify="queue"``/``"lambda"``, its EventBridge delivery with ``"eventbridge"``), and
      without it synth fails with a :class:`KieUploaderPropsError` saying what it would change on each one.
    * ``notify``: ``"queue"`` (default), ``"eventbridge"`` or ``"lambda"`` (see :class:`NotifyMode`).
    * ``prefix`` / ``suffix``: the watched keys, the only objects that may go to kie.ai: S3's key filters
      (an EventBridge pattern with ``notify="eventbridge"``), the function's ``WATCHED_OBJECTS`` (it refuses
      any other object, whatever asks for it), and the only objects its role may read
      (``bucket/{prefix}*{suffix}``).
    * ``max_concurrency``: at most this many invocations at once from the queue (2-1000); each one uploads
      up to 10 objects concurrently, so kie.ai sees at most ``max_concurrency`` x 10 uploads in flight.
    * ``reserved_concurrency``: the function's reserved concurrency; with ``notify="lambda"`` it defaults
      to ``max_concurrency``, the ceiling that keeps a burst of S3 events from storming kie.ai.
    * ``bucket_kms_keys``: the buckets' customer managed KMS keys (``kms:Decrypt`` via S3 only).
    * ``existing_secret`` / ``existing_secret_kms_key``: a secret already holding the kie.ai key, and its
      customer managed KMS key (``kms:Decrypt`` via Secrets Manager only). Without it, an empty secret.
    * ``queue_props``: ``sqs.QueueProps`` or keyword arguments of ``sqs.Queue`` that replace the work queue's
      defaults; not its dead-letter queue, encryption, SSL enforcement or FIFO, and a visibility timeout of
      at least 6 x the function's timeout.
    * ``table_props``: keyword arguments of ``dynamodb.Table`` that replace the records table's defaults; not
      its key schema, TTL attribute or stream (nor its encryption with ``encryption_key``).
    * ``max_receive_count``: receives of a message by the function before it moves to the dead-letter queue
      (1-1000).
    * ``dead_letter_queue_props``: keyword arguments of ``sqs.Queue`` that replace the dead-letter queue's
      defaults (say ``retention_period``); not its encryption, SSL enforcement or FIFO.
    * ``function_options``: :class:`FunctionOptions` (kie.ai URL, memory, architecture, timeouts, ...).
    * ``alarm_email``: subscribed to the alarm topic.
    * ``keep_alive``: ``s3://bucket/prefix`` URIs whose live URLs are kept alive: every
      ``keep_alive_schedule_minutes`` a refresh round re-uploads those expiring within
      ``refresh_ahead_seconds``, found through the table's sparse expiry index.
    * ``refresh_ahead_seconds``: with ``keep_alive``, a refresh round re-uploads the URLs that expire within
      this many seconds (60 to ``function_options.retention_seconds`` - 300).
    * ``keep_alive_schedule_minutes``: with ``keep_alive``, the minutes between refresh rounds (1-1440).
    * ``events_enabled`` / ``event_bus``: publish every change of a record's status or URL on EventBridge (the
      default bus, or ``event_bus``) from the table's stream (docs/events.md). On by default.
    * ``encryption_key``: a customer managed KMS key (``kms.IKey``, or ``True`` for one the construct
      creates) for the queue and both dead-letter queues, the table, the secret it creates, the alarm topic,
      the log groups and the functions' environment, with the key policy statements the AWS services need
      (see encryption.py). Default: SSE-SQS and the AWS managed keys.
    * ``vpc`` / ``vpc_subnets`` / ``security_groups``: run the uploader function in a VPC (for buckets that
      allow reads only through a VPC endpoint, with ``function_options.transfer`` ``"auto"`` or ``"stream"``:
      the README's "Buckets kie.ai cannot reach"). The subnets need the S3 endpoint, a route to kie.ai (a NAT
      gateway) and DynamoDB and Secrets Manager (endpoints or the NAT). Default: no VPC.

    * ``backfill``: a Step Functions state machine whose Distributed Map lists a prefix (or reads a CSV/JSON
      manifest) and enqueues the watched keys without a live upload, in batches
      (:class:`~kie_uploader.cdk.backfill.DistributedBackfill`; ``kie-uploader backfill --distributed``).
      kie.ai's load stays what ``max_concurrency`` promises: the state machine only enqueues. Default: off.

    Who may ask for uploads: :meth:`grant_resolve` (invoke the function), :meth:`grant_batch_operations` (an
    S3 Batch Operations job's role invokes it) and :meth:`grant_send` (send to its queue) are the only ways
    in; whoever holds one can publish any watched object, and only a watched one.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        buckets: Sequence[s3.IBucket],
        notify: NotifyMode | str = NotifyMode.QUEUE,
        prefix: str = "",
        suffix: str = "",
        max_concurrency: int = 2,
        reserved_concurrency: int | None = None,
        bucket_kms_keys: Sequence[kms.IKey] = (),
        existing_secret: secretsmanager.ISecret | None = None,
        existing_secret_kms_key: kms.IKey | None = None,
        queue_props: sqs.QueueProps | Mapping[str, Any] | None = None,
        max_receive_count: int = MAX_RECEIVE_COUNT,
        dead_letter_queue_props: sqs.QueueProps | Mapping[str, Any] | None = None,
        table_props: Mapping[str, Any] | None = None,
        function_options: FunctionOptions | None = None,
        alarm_email: str | None = None,
        keep_alive: Sequence[str] = (),
        refresh_ahead_seconds: int = REFRESH_AHEAD_SECONDS,
        keep_alive_schedule_minutes: int = KEEP_ALIVE_SCHEDULE_MINUTES,
        events_enabled: bool = True,
        event_bus: events.IEventBus | None = None,
        encryption_key: kms.IKey | bool | None = None,
        vpc: ec2.IVpc | None = None,
        vpc_subnets: ec2.SubnetSelection | None = None,
        security_groups: Sequence[ec2.ISecurityGroup] = (),
        accept_responsibility_for_imported_buckets: bool = False,
        backfill: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        if vpc is None and (vpc_subnets is not None or security_groups):
            raise KieUploaderPropsError("vpc_subnets / security_groups: given without vpc")
        self.vpc = vpc
        options = function_options if function_options is not None else FunctionOptions()
        self.notify = self._validate(
            buckets=buckets,
            notify=notify,
            prefix=prefix,
            suffix=suffix,
            max_concurrency=max_concurrency,
            bucket_kms_keys=bucket_kms_keys,
            existing_secret=existing_secret,
            existing_secret_kms_key=existing_secret_kms_key,
            options=options,
            alarm_email=alarm_email,
            encryption_key=encryption_key,
        )
        if not isinstance(accept_responsibility_for_imported_buckets, bool):
            raise KieUploaderPropsError(
                "accept_responsibility_for_imported_buckets: expected True or False, "
                f"got {accept_responsibility_for_imported_buckets!r}"
            )
        self.accept_responsibility_for_imported_buckets = accept_responsibility_for_imported_buckets
        self._check_imported([(bucket, prefix, suffix) for bucket in buckets])
        if reserved_concurrency is None and self.notify is NotifyMode.LAMBDA:
            reserved_concurrency = max_concurrency
        if reserved_concurrency is not None:
            _check_int("reserved_concurrency", reserved_concurrency, 1, 1000)
            if reserved_concurrency < max_concurrency:
                raise KieUploaderPropsError(
                    f"reserved_concurrency={reserved_concurrency} must be at least max_concurrency "
                    f"({max_concurrency}), or the queue's event source is throttled"
                )
        queue_overrides = _props_dict("queue_props", queue_props, QUEUE_PROPS_REFUSED)
        visibility = queue_overrides.get("visibility_timeout")
        if visibility is not None and visibility.to_seconds() < options.queue_visibility_timeout_seconds:
            raise KieUploaderPropsError(
                f"queue_props.visibility_timeout must be at least 6 x function_options.timeout_seconds "
                f"({options.queue_visibility_timeout_seconds} s), so that a message is not delivered twice"
            )
        _check_int("max_receive_count", max_receive_count, *MAX_RECEIVE_COUNT_RANGE)
        dead_letter_overrides = _props_dict(
            "dead_letter_queue_props", dead_letter_queue_props, DEAD_LETTER_QUEUE_PROPS_REFUSED
        )
        table_overrides = _props_dict("table_props", table_props, TABLE_PROPS_REFUSED)
        for name in TABLE_ENCRYPTION_PROPS:
            if encryption_key and name in table_overrides:
                raise KieUploaderPropsError(
                    f"table_props.{name}: may not be given with encryption_key, which encrypts the table"
                )

        self.buckets: list[s3.IBucket] = list(buckets)
        #: Each watched bucket with its prefix and suffix: the constructor's, then :meth:`add_bucket`'s.
        self.watched_buckets: list[tuple[s3.IBucket, str, str]] = [(b, prefix, suffix) for b in buckets]
        self.bucket_kms_keys: list[kms.IKey] = list(bucket_kms_keys)
        self.options = options
        self.prefix, self.suffix, self.max_concurrency = prefix, suffix, max_concurrency
        #: The customer managed key of the queues, table, secret, topic, logs and environment (or None).
        self.encryption_key: kms.IKey | None = (
            encryption.create_key(self, "Key") if encryption_key is True else encryption_key or None
        )
        key = self.encryption_key
        queues = UploaderQueues(
            self,
            "Queues",
            visibility_timeout=Duration.seconds(options.queue_visibility_timeout_seconds),
            queue_overrides=queue_overrides,
            dead_letter_queue_overrides=dead_letter_overrides,
            max_receive_count=max_receive_count,
            encryption_key=key,
        )
        self.queue, self.dead_letter_queue = queues.queue, queues.dead_letter_queue
        self.table: dynamodb.ITable = RecordsTable(
            self, "Records", table_overrides=table_overrides, stream=events_enabled, encryption_key=key
        ).table
        api_key = ApiKeySecret(self, "ApiKey", existing_secret=existing_secret, encryption_key=key)
        self.secret: secretsmanager.ISecret = api_key.secret
        self.secret_created = api_key.created
        bucket_names = [bucket.bucket_name for bucket in self.buckets]

        self.uploader = UploaderFunction(
            self,
            "Uploader",
            settings=options,
            package_dir=function_package_dir(),
            environment=function_environment(
                settings=options,
                table_name=self.table.table_name,
                secret_arn=self.secret.secret_arn,
                allowed_buckets=bucket_names,
                watched_objects=watched.rules_json(self, self.watched_buckets),
            ),
            dead_letter_queue=self.dead_letter_queue,
            reserved_concurrency=reserved_concurrency,
            encryption_key=key,
            vpc=vpc,
            vpc_subnets=vpc_subnets,
            security_groups=security_groups,
        )
        self.function: lambda_.Function = self.uploader.function
        self._grant(existing_secret_kms_key)

        self.function.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                batch_size=SQS_BATCH_SIZE,
                max_batching_window=Duration.seconds(BATCHING_WINDOW_SECONDS),
                report_batch_item_failures=True,
                max_concurrency=max_concurrency,
            )
        )
        self._wiring = notifications.BucketWiring(
            self,
            mode=self.notify.value,
            queue=self.queue,
            dead_letter_queue=self.dead_letter_queue,
            function=self.function,
            encryption_key=key,
        )
        for bucket in self.buckets:
            self._wiring.add(bucket, prefix, suffix)
        #: The custom resource that puts the notification entries on imported buckets (None without any).
        self.bucket_notifications = self._wiring.handler
        #: notify="eventbridge": the rule of the constructor's prefix and suffix (add_bucket may add others).
        self.event_rule: events.Rule | None = next(iter(self._wiring.rules.values()), None)

        self.monitoring = Monitoring(
            self,
            "Monitoring",
            function=self.function,
            queue=self.queue,
            dead_letter_queue=self.dead_letter_queue,
            alarm_email=alarm_email,
            oldest_message_age=OLDEST_MESSAGE_AGE_ALARM,
            encryption_key=key,
        )
        self.alarm_topic = self.monitoring.topic
        self.keep_alive_rule = self._keep_alive(
            keep_alive, refresh_ahead_seconds, keep_alive_schedule_minutes
        )
        self.publisher: EventPublisher | None = None
        if events_enabled:
            self.publisher = EventPublisher(
                self,
                "Events",
                table=self.table,
                bus=event_bus,
                code=self.uploader.code,
                architecture=self.function.architecture,
                alarm_topic=self.alarm_topic,
                encryption_key=key,
            )
        #: The distributed backfill's state machine, child function and bucket (None without ``backfill``).
        self.distributed_backfill = self._distributed_backfill(backfill, key)
        #: The buckets' names, comma-separated (also those of :meth:`add_bucket`).
        self.bucket_names_joined = Lazy.uncached_string(_StringProducer(lambda: Fn.join(",", self._names())))
        #: The key policy statements the AWS services need from ``encryption_key`` (added to a key the stack
        #: owns; a key it imports needs them in its own policy).
        self.encryption_key_statements: list[iam.PolicyStatement] = (
            encryption.allow_services(self, key, self.notify) if key is not None else []
        )
        #: The discovery record the CLI and ``live_url`` find this construct by (an output; cdk/discovery.py).
        self.discovery_output = discovery.publish(self)
        self._acknowledged: set[tuple[str, str]] = set()
        self._acknowledge()

    def _distributed_backfill(self, enabled: bool, key: kms.IKey | None) -> DistributedBackfill | None:
        if not isinstance(enabled, bool):
            raise KieUploaderPropsError(f"backfill: expected True or False, got {enabled!r}")
        if not enabled:
            return None
        return DistributedBackfill(
            self,
            "Backfill",
            watched_buckets=self.watched_buckets,
            queue=self.queue,
            table=self.table,
            code=self.uploader.code,
            watched_objects=watched.rules_json(self, self.watched_buckets),
            architecture=self.function.architecture,
            encryption_key=key,
        )

    def _names(self) -> list[str]:
        return [bucket.bucket_name for bucket in self.buckets]

    def _acknowledge(self) -> None:
        """cdk-nag's acknowledgments and checkov's skips, of what exists now (again after add_bucket)."""
        #: The cdk-nag findings acknowledged on this construct's children (each with its reason).
        self.acknowledged_findings = acknowledge_findings(self, self._acknowledged)
        #: checkov's findings skipped on this construct's resources: (resource path, check id), each with its
        #: reason in the template (``Metadata.checkov.skip``).
        self.checkov_skips = checkov_skips.skip_findings(self)

    def _check_imported(self, added: Sequence[tuple[s3.IBucket, str, str]]) -> None:
        """Imported buckets need ``accept_responsibility_for_imported_buckets``: say what changes on each."""
        changes = [
            notifications.imported_bucket_changes(self.notify.value, bucket, prefix, suffix)
            for bucket, prefix, suffix in added
            if not isinstance(bucket, s3.Bucket)
        ]
        if changes and not self.accept_responsibility_for_imported_buckets:
            raise KieUploaderPropsError(
                "accept_responsibility_for_imported_buckets: not given, and these buckets are imported (not "
                "owned by this stack). The construct will change each of them:\n"
                + "\n".join(f"* {change}" for change in changes)
                + "\nPass accept_responsibility_for_imported_buckets=True once their owners agree."
            )

    def add_bucket(
        self,
        bucket: s3.IBucket,
        *,
        prefix: str | None = None,
        suffix: str | None = None,
        kms_key: kms.IKey | None = None,
    ) -> None:
        """Watch ``bucket`` too, exactly as a bucket given to the constructor.

        ``prefix`` / ``suffix``: its watched keys (default: the construct's ``prefix`` / ``suffix``). It gets
        the same treatment as the constructor's buckets: a ``WATCHED_OBJECTS`` rule, ``s3:GetObject*`` on
        ``bucket/{prefix}*{suffix}`` only and ``s3:ListBucket``, its notifications in the ``notify`` mode (an
        EventBridge rule per distinct prefix and suffix), its ARN in the queue policy's ``aws:SourceArn``, and
        the cdk-nag acknowledgments and checkov skips. ``kms_key``: its customer managed KMS key, added to
        ``bucket_kms_keys`` (every bucket key decrypts the watched objects of every bucket, via S3 only). An
        imported bucket needs ``accept_responsibility_for_imported_buckets``.
        """
        prefix = self.prefix if prefix is None else prefix
        suffix = self.suffix if suffix is None else suffix
        _validate_buckets([*self.buckets, bucket])
        _validate_filters(prefix, suffix)
        if kms_key is not None and not hasattr(kms_key, "key_arn"):
            raise KieUploaderPropsError(
                f"kms_key: expected a kms.IKey (kms.Key.from_key_arn(...)), got {kms_key!r}"
            )
        self._check_imported([(bucket, prefix, suffix)])
        self.buckets.append(bucket)
        self.watched_buckets.append((bucket, prefix, suffix))
        self._grant_bucket(bucket, prefix, suffix)
        if kms_key is not None:
            self.bucket_kms_keys.append(kms_key)
            self._grant_bucket_key(kms_key)
        self.function.add_environment("ALLOWED_BUCKETS", Fn.join(",", self._names()))
        self.function.add_environment(watched.VARIABLE, watched.rules_json(self, self.watched_buckets))
        if self.distributed_backfill is not None:
            self.distributed_backfill.add_bucket(bucket, prefix, suffix)
            self.distributed_backfill.function.add_environment(
                watched.VARIABLE, watched.rules_json(self, self.watched_buckets)
            )
        self._wiring.add(bucket, prefix, suffix)
        self.bucket_notifications = self._wiring.handler
        self._acknowledge()

    def _keep_alive(self, uris: Sequence[str], ahead: int, minutes: int) -> events.Rule | None:
        """The schedule of refresh rounds for ``uris`` (none without them)."""
        if isinstance(uris, str):
            raise KieUploaderPropsError("keep_alive: expected a list of s3://bucket/prefix URIs")
        names = {b.bucket_name for b in self.buckets if not Token.is_unresolved(b.bucket_name)}
        for index, uri in enumerate(uris):
            if not isinstance(uri, str) or not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
                raise KieUploaderPropsError(f"keep_alive[{index}]={uri!r} is not an s3://bucket/prefix URI")
            bucket = uri[5:].split("/", 1)[0]
            if names and len(names) == len(self.buckets) and bucket not in names:
                raise KieUploaderPropsError(f"keep_alive[{index}]: bucket {bucket!r} is not one of buckets")
        if not uris:
            return None
        retention = self.options.retention_seconds
        _check_int("refresh_ahead_seconds", ahead, 60, max(60, retention - 300))
        _check_int("keep_alive_schedule_minutes", minutes, 1, 1440)
        rule = events.Rule(
            self,
            "KeepAlive",
            description="Refresh rounds: re-upload the live URLs under keep_alive before kie.ai deletes them",
            schedule=events.Schedule.rate(Duration.minutes(minutes)),
        )
        # verifyWindowSeconds = the interval: each URL is checked at kie.ai once, by the round after it
        # became older than the shortest retention kie.ai documents (functions/uploader/live.py).
        request = {
            "refresh": {
                "prefixes": list(uris),
                "expiringWithinSeconds": ahead,
                "verifyWindowSeconds": minutes * 60,
            }
        }
        # A missed round is made up by the next one (the records stay due): no retries, no dead letters.
        rule.add_target(
            targets.LambdaFunction(
                self.function, event=events.RuleTargetInput.from_object(request), retry_attempts=0
            )
        )
        return rule

    def _grant_bucket(self, bucket: s3.IBucket, prefix: str, suffix: str) -> None:
        (objects,) = watched.object_arns([(bucket, prefix, suffix)])
        iam.Grant.add_to_principal(
            grantee=self.function, actions=OBJECT_READ_ACTIONS, resource_arns=[objects]
        )
        iam.Grant.add_to_principal(
            grantee=self.function, actions=BUCKET_READ_ACTIONS, resource_arns=[bucket.bucket_arn]
        )

    def _grant_bucket_key(self, key: kms.IKey) -> None:
        # A bucket key decrypts only what S3 asks it to (kie.ai's GET of a presigned URL), in its region, for
        # a watched object (of every bucket: also those add_bucket adds later).
        contexts = Lazy.uncached_list(
            _ListProducer(lambda: watched.kms_encryption_contexts(self.watched_buckets))
        )
        iam.Grant.add_to_principal(
            grantee=self.function,
            actions=["kms:Decrypt"],
            resource_arns=[key.key_arn],
            conditions={
                "StringEquals": {"kms:ViaService": f"s3.{_region_of(key.key_arn)}.amazonaws.com"},
                "StringLike": {watched.S3_ARN_CONTEXT: contexts},
            },
        )

    # --- validation ------------------------------------------------------------------------------------

    @staticmethod
    def _validate(
        *,
        buckets: Any,
        notify: Any,
        prefix: Any,
        suffix: Any,
        max_concurrency: Any,
        bucket_kms_keys: Any,
        existing_secret: Any,
        existing_secret_kms_key: Any,
        options: Any,
        alarm_email: Any,
        encryption_key: Any,
    ) -> NotifyMode:
        _validate_buckets(buckets)
        try:
            mode = NotifyMode(notify)
        except ValueError:
            raise KieUploaderPropsError(
                f"notify={notify!r} must be one of {', '.join(m.value for m in NotifyMode)}"
            ) from None
        _validate_filters(prefix, suffix)
        _check_int("max_concurrency", max_concurrency, *MAX_CONCURRENCY_RANGE)
        if isinstance(bucket_kms_keys, str) or not isinstance(bucket_kms_keys, Sequence):
            raise KieUploaderPropsError("bucket_kms_keys: expected a list of kms.IKey")
        for index, key in enumerate(bucket_kms_keys):
            if not hasattr(key, "key_arn"):
                raise KieUploaderPropsError(
                    f"bucket_kms_keys[{index}]: expected a kms.IKey (kms.Key.from_key_arn(...)), got {key!r}"
                )
        _validate_secret(existing_secret, existing_secret_kms_key)
        if not isinstance(options, FunctionOptions):
            raise KieUploaderPropsError(f"function_options: expected FunctionOptions, got {options!r}")
        options.validate()
        if alarm_email is not None and (not isinstance(alarm_email, str) or "@" not in alarm_email):
            raise KieUploaderPropsError(f"alarm_email={alarm_email!r} is not an e-mail address")
        _validate_encryption_key(encryption_key)
        return mode

    # --- who may ask ----------------------------------------------------------------------------------

    def grant_resolve(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` invoke the function: ``lambda:InvokeFunction`` on the function's ARN, nothing else.

        For synchronous requests (``{"resolve": [...]}``, ``{"refresh": {...}}``, see docs/architecture.md).
        Anyone who may invoke the function can have any *watched* object uploaded to kie.ai and read its
        public URL in the answer (an object outside ``buckets``/``prefix``/``suffix`` is refused, and the role
        cannot read it). This, :meth:`grant_batch_operations` and :meth:`grant_send` are the only ways in the
        construct offers.

        The unqualified ARN only (not ``arn:*``, which ``Function.grant_invoke`` adds for versions and
        aliases: the construct publishes none), so the grantee's policy has no wildcard for cdk-nag to flag.
        A principal without a policy of its own (a service, another account) gets a resource-based
        permission on the function instead.
        """
        grant = iam.Grant.add_to_principal(
            grantee=grantee, actions=INVOKE_ACTIONS, resource_arns=[self.function.function_arn]
        )
        if grant.success:
            return grant
        return self.function.grant_invoke(grantee)

    def grant_batch_operations(self, role: iam.IRole) -> iam.Grant:
        """Let an S3 Batch Operations job's ``role`` invoke the function (``LambdaInvoke`` jobs, invocation
        schema 1.0 or 2.0): ``lambda:InvokeFunction`` on the function's ARN, the permission AWS documents for
        the job's role, nothing else.

        The job names ``uploader.function.function_arn`` as its ``FunctionArn`` (the grant covers that
        unqualified ARN, not a version or alias). The role must trust ``batchoperations.s3.amazonaws.com``,
        read the job's manifest and write its completion report: those are your buckets, granted by you
        (``manifest_bucket.grant_read(role)``, ``report_bucket.grant_put(role)``). Each task goes through
        the same rules as every delivery: a job can have any *watched* object uploaded to kie.ai, and only a
        watched one (the README's "S3 Batch Operations").
        """
        if not hasattr(role, "role_arn"):
            raise KieUploaderPropsError(f"grant_batch_operations: expected an iam.IRole, got {role!r}")
        return self.grant_resolve(role)

    def grant_send(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` send plain messages (``{"bucket", "key"}``, ``{"s3Uri"}``) to the work queue.

        ``sqs:SendMessage``, ``sqs:GetQueueUrl`` and ``sqs:GetQueueAttributes`` on the queue's ARN (and,
        with ``encryption_key``, ``kms:Encrypt``, ``kms:Decrypt``, ``kms:ReEncrypt*`` and
        ``kms:GenerateDataKey*`` on that key: the default queue is SSE-SQS and needs none). Anyone who
        may send to the queue can have any *watched* object uploaded to kie.ai (its URL lands in the record);
        an object outside ``buckets``/``prefix``/``suffix`` is refused. This, :meth:`grant_resolve` and
        :meth:`grant_batch_operations` are the only ways in the construct offers.
        """
        return self.queue.grant_send_messages(grantee)

    # --- grants ----------------------------------------------------------------------------------------

    def _grant(self, secret_kms_key: kms.IKey | None) -> None:
        """Least privilege: read the watched objects only, one table, one secret, one queue.

        * ``s3:GetObject``/``s3:GetObjectVersion`` on ``bucket/{prefix}*{suffix}`` of each bucket
          (:func:`watched.object_arns`): exactly the keys the function's ``WATCHED_OBJECTS`` rules match.
        * ``s3:ListBucket`` on each bucket, unconditioned (HeadBucket and the 404 of a missing key need it).
        * ``kms:Decrypt`` on each bucket key only via S3 in the key's region, and only for the watched
          objects: ``StringLike`` on ``kms:EncryptionContext:aws:s3:arn`` (S3's encryption context, the
          object's ARN) with the same ``bucket/{prefix}*{suffix}`` patterns, plus each bucket's ARN, which is
          the context of every object under an S3 Bucket Key (:func:`watched.kms_encryption_contexts`).
        """
        function = self.function
        for bucket, prefix, suffix in self.watched_buckets:
            self._grant_bucket(bucket, prefix, suffix)
        for key in self.bucket_kms_keys:
            self._grant_bucket_key(key)
        # Exact resources: the table for its items, the expiry index for Query (no index/* wildcard).
        iam.Grant.add_to_principal(
            grantee=function, actions=TABLE_ITEM_ACTIONS, resource_arns=[self.table.table_arn]
        )
        iam.Grant.add_to_principal(
            grantee=function,
            actions=TABLE_INDEX_ACTIONS,
            resource_arns=[f"{self.table.table_arn}/index/{EXPIRY_INDEX}"],
        )
        if self.table.encryption_key is not None:
            self.table.encryption_key.grant_encrypt_decrypt(function)
        self.secret.grant_read(function)
        if secret_kms_key is not None:
            iam.Grant.add_to_principal(
                grantee=function,
                actions=["kms:Decrypt"],
                resource_arns=[secret_kms_key.key_arn],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": f"secretsmanager.{_region_of(secret_kms_key.key_arn)}.amazonaws.com"
                    }
                },
            )
