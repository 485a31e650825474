"""Lambda entry point ``uploader.handler.handler``: read the event, run the processor, shape the answer.

* SQS event → ``{"batchItemFailures": [...]}`` naming exactly the messages to deliver again: a transient
  or configuration failure of one of its objects, or a malformed message (so that it lands in the DLQ
  instead of being lost).
* ``resolve`` / ``refresh`` request (a synchronous invocation, the keep-alive schedule) → the answer of
  :mod:`uploader.live`.
* S3 Batch Operations invocation (schema 1.0 or 2.0) → one result per task (:mod:`uploader.batch_operations`):
  never raises for a task's failure; an invocation that is not readable as a whole raises
  :class:`~uploader.batch_operations.BatchOperationsEventError`.
* Direct S3 (or EventBridge) event → raises :class:`RetryNeededError` after every object is done when any
  of them needs another try; Lambda's asynchronous retry then delivers the event again.

The runtime (configuration, clients, HTTP session, key cache) is built at the first invocation of a
container and reused by warm ones.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from uploader import batch_operations, live
from uploader.config import VARIABLES, Config
from uploader.errors import ConfigurationError
from uploader.events import ParsedEvent, parse_event
from uploader.models import Outcome, Status
from uploader.processor import Processor
from uploader.retry import Deadline

SERVICE = "kie-uploader"
NAMESPACE = "KieUploader"
#: Kept free at the end of an invocation for writing records and answering.
SAFETY_MARGIN_SECONDS = 3.0
#: When there is no Lambda context (a local call), the Lambda maximum.
_DEFAULT_REMAINING_MS = 900_000
#: Variables outside :class:`Config` that change how clients are built.
_CLIENT_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)

# A batch of deletions or test events has no metric to publish: that is normal here, not worth a warning.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

_SKIPPED = frozenset(
    {Status.SKIPPED, Status.DUPLICATE, Status.SUPERSEDED, Status.IN_PROGRESS, Status.NOT_FOUND}
)


class RetryNeededError(RuntimeError):
    """Some objects of a direct event need another try (the message names how many, not which keys)."""


@dataclass
class _Runtime:
    fingerprint: tuple[str | None, ...]
    processor: Processor


_runtime: _Runtime | None = None


def _get_processor() -> Processor:
    """The container's processor, built once; rebuilt only if the environment changed (tests do that)."""
    global _runtime
    fingerprint = tuple(os.environ.get(name) for name in VARIABLES + _CLIENT_VARIABLES)
    if _runtime is None or _runtime.fingerprint != fingerprint:
        from uploader.runtime import build_processor

        _runtime = _Runtime(fingerprint, build_processor(Config.from_env()))
    return _runtime.processor


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any] | None:
    """Process every object named by the event; see the module docstring for the answer."""
    batch = batch_operations.parse(event) if batch_operations.is_invocation(event) else None
    request = batch is None and live.is_request(event)
    if batch is not None:
        parsed: ParsedEvent | None = ParsedEvent("batch-operations", batch.messages)
    else:
        parsed = None if request else parse_event(event)
    try:
        processor = _get_processor()
    except ConfigurationError:
        # Nothing can be recorded without a valid configuration: fail the invocation, lose nothing.
        logger.exception("invalid configuration")
        raise
    remaining = getattr(context, "get_remaining_time_in_millis", lambda: _DEFAULT_REMAINING_MS)
    deadline = Deadline(remaining, SAFETY_MARGIN_SECONDS)
    if parsed is None:
        answer = live.handle(event, processor, deadline, _count)
        logger.info(
            "request answered",
            extra={"request": "resolve" if "resolve" in event else "refresh", "answer": _summary(answer)},
        )
        return answer
    outcomes = processor.process_messages(parsed.messages, deadline)
    retry_ids = _report(parsed, outcomes)
    if batch is not None:
        answer = batch_operations.answer(batch, outcomes)
        codes = [result["resultCode"] for result in answer["results"]]
        logger.info(
            "batch operations tasks answered",
            extra={"jobId": batch.job_id, "invocationId": batch.invocation_id, "resultCodes": codes},
        )
        return answer
    if parsed.source == "sqs":
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in retry_ids]}
    if retry_ids:
        raise RetryNeededError(f"{len(retry_ids)} of {len(parsed.messages)} records need another try")
    return None


def _count(name: str, value: int) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def _summary(answer: dict[str, Any]) -> dict[str, Any]:
    """What a request's log line says: counts and statuses, never a download URL."""
    if "results" in answer:
        return {
            "statuses": [r["status"] for r in answer["results"]],
            "uploaded": sum(1 for r in answer["results"] if r["uploaded"]),
        }
    return answer


def _report(parsed: ParsedEvent, outcomes: list[Outcome]) -> list[str]:
    """Log one line per object and per unreadable/ignored message, add metrics; the ids to deliver again."""
    retry: set[str] = set()
    for message in parsed.messages:
        if message.problem is not None:
            retry.add(message.message_id)
            logger.warning(
                "message rejected", extra={"messageId": message.message_id, "reason": message.problem}
            )
        elif message.note is not None:
            logger.info("message ignored", extra={"messageId": message.message_id, "reason": message.note})
    for outcome in outcomes:
        if outcome.retry:
            retry.add(outcome.message_id)
        _log_outcome(outcome)
        if outcome.status is Status.UPLOADED:
            metrics.add_metric(name="UploadSucceeded", unit=MetricUnit.Count, value=1)
        elif outcome.status is Status.FAILED:
            metrics.add_metric(name="UploadFailed", unit=MetricUnit.Count, value=1)
        elif outcome.status is Status.NOT_WATCHED:
            metrics.add_metric(name="ObjectsRefused", unit=MetricUnit.Count, value=1)
        elif outcome.status in _SKIPPED:
            metrics.add_metric(name="ObjectsSkipped", unit=MetricUnit.Count, value=1)
        if outcome.probes:
            _count(live.METRIC_PROBES, len(outcome.probes))
            _count(live.METRIC_GONE, outcome.probes.count(False))
        for latency in outcome.kie_latencies_ms:
            metrics.add_metric(name="KieLatency", unit=MetricUnit.Milliseconds, value=latency)
    # Answer in delivery order (the ids of messages that were not read are synthetic: record-N).
    return [m.message_id for m in parsed.messages if m.message_id in retry]


def _log_outcome(outcome: Outcome) -> None:
    ref = outcome.ref
    fields: dict[str, Any] = {
        "messageId": outcome.message_id,
        "bucket": ref.bucket,
        "key": ref.key,
        "versionId": ref.version_id,
        "event": ref.kind.value,
        "status": outcome.status.value,
        "durationMs": outcome.duration_ms,
        "attempts": outcome.attempts,
        "retry": outcome.retry,
    }
    if outcome.error:
        fields["error"], fields["errorKind"] = outcome.error, outcome.error_kind
    if outcome.status is Status.NOT_WATCHED:
        logger.warning("object refused: not watched", extra=fields)
        return
    level = logger.warning if outcome.status is Status.FAILED else logger.info
    level("object processed", extra=fields)
