"""The work queue and the dead-letter queue behind both triggers: encrypted (SSE-SQS, or the customer managed
key), SSL-only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

MAX_RECEIVE_COUNT = 5
# Long enough for an operator to notice the alarm, fix the key or kie.ai's outage, and redrive.
DLQ_RETENTION = Duration.days(14)
QUEUE_RETENTION = Duration.days(4)


class UploaderQueues(Construct):
    """``queue`` takes messages from S3 (notify=queue), other producers, the backfill tool and redrives."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        visibility_timeout: Duration,
        queue_overrides: Mapping[str, Any] | None = None,
        dead_letter_queue_overrides: Mapping[str, Any] | None = None,
        max_receive_count: int = MAX_RECEIVE_COUNT,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        """``queue_overrides`` / ``dead_letter_queue_overrides``: keyword arguments of ``sqs.Queue`` that
        replace the work queue's / the dead-letter queue's defaults (validated by the caller: never a
        dead-letter queue of its own, encryption, SSL enforcement or FIFO). ``max_receive_count``: receives
        of a message before it moves to the dead-letter queue. ``encryption_key``: a customer managed key for
        both queues instead of SSE-SQS."""
        super().__init__(scope, construct_id)
        self.dead_letter_queue = dead_letter_queue(
            self, "DeadLetterQueue", encryption_key=encryption_key, overrides=dead_letter_queue_overrides
        )
        queue_props: dict[str, Any] = {
            **encryption(encryption_key),
            "enforce_ssl": True,
            "retention_period": QUEUE_RETENTION,
            "visibility_timeout": visibility_timeout,
            **(queue_overrides or {}),
            "dead_letter_queue": sqs.DeadLetterQueue(
                max_receive_count=max_receive_count, queue=self.dead_letter_queue
            ),
        }
        self.queue = sqs.Queue(self, "Queue", **queue_props)


def encryption(key: kms.IKey | None) -> dict[str, Any]:
    """``sqs.Queue``'s encryption props: SSE-SQS, or SSE-KMS with ``key``."""
    if key is None:
        return {"encryption": sqs.QueueEncryption.SQS_MANAGED}
    return {"encryption": sqs.QueueEncryption.KMS, "encryption_master_key": key}


def dead_letter_queue(
    scope: Construct,
    construct_id: str,
    *,
    encryption_key: kms.IKey | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> sqs.Queue:
    """A dead-letter queue: SQS-managed encryption (or ``encryption_key``), TLS only, messages kept 14 days
    (the maximum); ``overrides`` replace the other defaults."""
    props: dict[str, Any] = {"retention_period": DLQ_RETENTION, **(overrides or {})}
    return sqs.Queue(scope, construct_id, **encryption(encryption_key), enforce_ssl=True, **props)
