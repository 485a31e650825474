"""``EventPublisher``: the records table's stream → a small function → EventBridge (docs/events.md).

The outbox pattern: the uploader writes only its record; this construct's function reads the table's
DynamoDB stream (``NEW_AND_OLD_IMAGES``) and puts one event per change of a record's status or download URL
on an event bus. The event source mapping retries a failing batch (bisecting it), and after
``retry_attempts`` sends the batch's description (shard and sequence numbers) to ``dead_letter_queue``,
which raises an alarm: nothing is dropped silently.

```python
publisher = EventPublisher(self, "Events", table=table, bus=None, code=uploader_code, alarm_topic=topic)
```

It can be wired into any stack that has a table with a stream and the function's asset (the folder holding
the ``uploader`` package); its alarms and dead-letter queue are built like the uploader's
(:func:`~kie_uploader.cdk.monitoring.threshold_alarm`, :func:`~kie_uploader.cdk.queues.dead_letter_queue`).
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from kie_uploader.cdk.monitoring import threshold_alarm
from kie_uploader.cdk.queues import dead_letter_queue

HANDLER = "uploader.publisher.handler"
#: The events' ``source`` (functions/uploader/publisher.py's SOURCE).
EVENT_SOURCE = "kie-uploader"
DETAIL_TYPES = (
    "Object Uploaded",
    "Object URL Refreshed",
    "Object Upload Failed",
    "Object Skipped",
    "Object Deleted",
)
DEFAULT_BUS_NAME = "default"
#: Lambda's retries of a failing batch before its description goes to the dead-letter queue.
RETRY_ATTEMPTS = 10
#: Records older than this are not retried any more (the stream keeps them 24 h: half is left for a replay).
MAX_RECORD_AGE = Duration.hours(12)
BATCH_SIZE = 100
#: A batch is at most 100 records: 10 PutEvents calls, each retried a few times within seconds.
TIMEOUT = Duration.seconds(60)
#: Stream records read while the function is behind: more than this is an outage, not a burst.
ITERATOR_AGE_ALARM = Duration.minutes(5)
ALARM_PERIOD = Duration.minutes(5)
#: cdk-nag findings this construct makes on purpose (see ``acknowledgments``).
NAG_REASONS = {
    "AwsSolutions-SQS3": (
        "This queue is itself a dead-letter queue: the on-failure destination of the stream's event source "
        "mapping, watched by an alarm."
    ),
    "AwsSolutions-IAM5[Resource::*]": (
        "Only dynamodb:ListStreams, which CDK's stream read grant (of the event source mapping) adds: it "
        "supports no resource-level permission. Reading the records is scoped to the table's stream ARN, and "
        "events:PutEvents to one bus."
    ),
    "AwsSolutions-L1": (
        "The runtime is pinned to python3.12 on purpose: the function shares the uploader's asset, whose "
        "dependencies are bundled as CPython 3.12 wheels; runtime and bundling target move together."
    ),
}


class EventPublisherError(ValueError):
    """The construct cannot be built as asked (e.g. the table has no stream)."""


class EventPublisher(Construct):
    """The publisher function, its stream mapping, dead-letter queue and alarms.

    Attributes: ``function``, ``role``, ``log_group``, ``dead_letter_queue``, ``bus`` (the bus events go to),
    ``bus_name``, ``event_source_mapping_id``, ``alarms``, ``event_pattern`` (every event of this
    publisher, as a dict) and ``event_pattern_json`` (the same as a JSON string, for an output).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        table: dynamodb.ITable,
        bus: events.IEventBus | None,
        code: lambda_.Code,
        handler: str = HANDLER,
        runtime: lambda_.Runtime = lambda_.Runtime.PYTHON_3_12,
        architecture: lambda_.Architecture = lambda_.Architecture.ARM_64,
        memory_size: int = 256,
        timeout: Duration = TIMEOUT,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        batch_size: int = BATCH_SIZE,
        retry_attempts: int = RETRY_ATTEMPTS,
        max_record_age: Duration = MAX_RECORD_AGE,
        starting_position: lambda_.StartingPosition = lambda_.StartingPosition.TRIM_HORIZON,
        alarm_topic: sns.ITopic | None = None,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        """``encryption_key``: a customer managed key for the dead-letter queue, the log group and the
        function's environment (the table's own key, if any, is granted with the stream read)."""
        super().__init__(scope, construct_id)
        if table.table_stream_arn is None:
            raise EventPublisherError(
                "the table has no stream: create it with stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES "
                "(or import it with table_stream_arn=...)"
            )
        self.bus: events.IEventBus = bus or events.EventBus.from_event_bus_name(
            self, "DefaultBus", DEFAULT_BUS_NAME
        )
        self.bus_name = self.bus.event_bus_name

        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, encryption_key=encryption_key)
        # Its own role: it may write its own logs, read the stream, put events on one bus, and nothing else.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="kie-uploader publisher: reads the records table's stream, puts events on one bus",
        )
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            description="Announces changes of kie-uploader records (the table's stream) on EventBridge",
            runtime=runtime,
            architecture=architecture,
            handler=handler,
            code=code,
            memory_size=memory_size,
            timeout=timeout,
            environment={
                "EVENT_BUS_NAME": self.bus_name,
                "POWERTOOLS_SERVICE_NAME": "kie-uploader-publisher",
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
            environment_encryption=encryption_key,
            role=self.role,
            log_group=self.log_group,
        )
        self.bus.grant_put_events_to(self.role)

        self.dead_letter_queue = dead_letter_queue(self, "DeadLetterQueue", encryption_key=encryption_key)
        source = event_sources.DynamoEventSource(
            table,
            starting_position=starting_position,
            batch_size=batch_size,
            # The function names the first record it could not publish; Lambda resumes there.
            report_batch_item_failures=True,
            # An error of the whole invocation (a poison record, a timeout) halves the batch until it is
            # isolated, so the records before it still go out.
            bisect_batch_on_error=True,
            retry_attempts=retry_attempts,
            max_record_age=max_record_age,
            on_failure=event_sources.SqsDlq(self.dead_letter_queue),
            # One batch per shard at a time: records of one object are published in their stream order.
            parallelization_factor=1,
        )
        self.function.add_event_source(source)
        self.event_source_mapping_id = source.event_source_mapping_id

        self.alarms = [
            threshold_alarm(
                self,
                "DeadLetterAlarm",
                self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=ALARM_PERIOD, statistic=cloudwatch.Stats.MAXIMUM
                ),
                threshold=0,
                description="Record changes were not announced on EventBridge: their stream batches are "
                "described in the publisher's dead-letter queue (docs/events.md, replay)",
                topic=alarm_topic,
            ),
            threshold_alarm(
                self,
                "IteratorAgeAlarm",
                self.function.metric("IteratorAge", period=ALARM_PERIOD, statistic=cloudwatch.Stats.MAXIMUM),
                threshold=ITERATOR_AGE_ALARM.to_milliseconds(),
                description="The publisher is behind the records table's stream: events are late",
                topic=alarm_topic,
            ),
        ]

        self.event_pattern: dict[str, Any] = {"source": [EVENT_SOURCE], "detail-type": list(DETAIL_TYPES)}
        self.event_pattern_json = json.dumps(self.event_pattern)

    def rule(self, construct_id: str, *, detail_types: list[str] | None = None, **props: Any) -> events.Rule:
        """A rule on this publisher's bus matching its events (all kinds, or ``detail_types``)."""
        pattern = events.EventPattern(source=[EVENT_SOURCE], detail_type=list(detail_types or DETAIL_TYPES))
        return events.Rule(self, construct_id, event_bus=self.bus, event_pattern=pattern, **props)

    def acknowledgments(self) -> dict[Construct, list[tuple[str, str]]]:
        """The cdk-nag (AwsSolutions) findings this construct makes on purpose: scope → [(rule, reason)]."""
        return {
            self.dead_letter_queue: [("AwsSolutions-SQS3", NAG_REASONS["AwsSolutions-SQS3"])],
            self.function: [("AwsSolutions-L1", NAG_REASONS["AwsSolutions-L1"])],
            self.role: [("AwsSolutions-IAM5[Resource::*]", NAG_REASONS["AwsSolutions-IAM5[Resource::*]"])],
        }
