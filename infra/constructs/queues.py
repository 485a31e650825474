"""The work queue and the dead-letter queue behind both triggers: encrypted, SSL-only."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

MAX_RECEIVE_COUNT = 5
# Long enough for an operator to notice the alarm, fix the key or kie.ai's outage, and redrive.
DLQ_RETENTION = Duration.days(14)
QUEUE_RETENTION = Duration.days(4)


class UploaderQueues(Construct):
    """``queue`` takes messages from S3 (notify=queue), other producers, the backfill tool and redrives."""

    def __init__(self, scope: Construct, construct_id: str, *, visibility_timeout: Duration) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DLQ_RETENTION,
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=QUEUE_RETENTION,
            visibility_timeout=visibility_timeout,
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=MAX_RECEIVE_COUNT, queue=self.dead_letter_queue
            ),
        )
