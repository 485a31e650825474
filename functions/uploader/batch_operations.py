"""S3 Batch Operations (``LambdaInvoke``): each task of a job is one object for the same processor, under the
same rules as every other delivery (watched objects only, the record's invariant, retries).

Batch Operations invokes the function synchronously (AWS S3 User Guide, "Invoke AWS Lambda function"):

* ``invocationSchemaVersion`` ``"1.0"``: ``{"invocationId", "job": {"id"}, "tasks": [{"taskId", "s3Key",
  "s3VersionId", "s3BucketArn"}]}``;
* ``"2.0"``: the same with ``tasks[].s3Bucket`` (a bucket name) instead of ``s3BucketArn``, and
  ``job.userArguments`` (accepted and ignored: a job cannot change what the stack watches or how).

``s3Key`` is URL-encoded in both versions (the user guide: "keys from S3 Batch Operations are URL
encoded"; Powertools' ``S3BatchOperationTask.s3_key`` applies ``unquote_plus`` whatever the version), so it
is decoded as an S3 notification's key is. ``s3VersionId`` goes into the message's ``versionId`` as any
message's: a hint, the processor reads the key's current version and records that one.

The answer names every task: ``{"invocationSchemaVersion", "treatMissingKeysAs": "PermanentFailure",
"invocationId", "results": [{"taskId", "resultCode", "resultString"}]}``; see :func:`result_of` for how an
outcome maps to ``Succeeded``, ``TemporaryFailure`` (Batch Operations runs the task again before the job
completes) or ``PermanentFailure``. A task that cannot be read fails alone (``PermanentFailure``); only an
invocation that is not a readable Batch Operations event as a whole raises :class:`BatchOperationsEventError`.
Result strings go into the job's completion report: short, and passed through :func:`uploader.redact.redact`
(no URL query, no credential), never a download URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from uploader.events import object_message
from uploader.models import ErrorKind, Message, Outcome, Status
from uploader.redact import redact

SCHEMA_VERSIONS = ("1.0", "2.0")
SUCCEEDED, TEMPORARY_FAILURE, PERMANENT_FAILURE = "Succeeded", "TemporaryFailure", "PermanentFailure"
#: Result strings land in a CSV report a person reads: kept short.
MAX_RESULT_STRING = 200


class BatchOperationsEventError(ValueError):
    """The invocation looks like S3 Batch Operations' but cannot be answered (the message says why)."""


@dataclass(frozen=True)
class Task:
    """One task: its id as Batch Operations sent it, and the message it became (``problem`` if unreadable)."""

    task_id: str
    message: Message


@dataclass(frozen=True)
class Invocation:
    schema_version: str
    invocation_id: str
    job_id: str | None
    tasks: tuple[Task, ...]

    @property
    def messages(self) -> list[Message]:
        return [task.message for task in self.tasks]


def is_invocation(event: Any) -> bool:
    """Whether the event is an S3 Batch Operations invocation (its envelope is checked by :func:`parse`)."""
    return isinstance(event, Mapping) and "invocationSchemaVersion" in event


def parse(event: Mapping[str, Any]) -> Invocation:
    """The invocation's tasks as messages; raises :class:`BatchOperationsEventError` for a bad envelope."""
    version = event.get("invocationSchemaVersion")
    if version not in SCHEMA_VERSIONS:
        raise BatchOperationsEventError(
            f"S3 Batch Operations event: invocationSchemaVersion {str(version)[:20]!r} is not supported "
            f"(expected one of {', '.join(SCHEMA_VERSIONS)})"
        )
    invocation_id = event.get("invocationId")
    if not isinstance(invocation_id, str) or not invocation_id:
        raise BatchOperationsEventError("S3 Batch Operations event: invocationId is missing or not a string")
    job = event.get("job")
    if not isinstance(job, Mapping):
        raise BatchOperationsEventError("S3 Batch Operations event: job is missing or not an object")
    arguments = job.get("userArguments")
    if arguments is not None and not isinstance(arguments, Mapping):
        raise BatchOperationsEventError("S3 Batch Operations event: job.userArguments is not an object")
    tasks = event.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise BatchOperationsEventError("S3 Batch Operations event: tasks is missing or empty")
    parsed: list[Task] = []
    seen: dict[str, int] = {}
    for index, task in enumerate(tasks):
        task_id = task.get("taskId") if isinstance(task, Mapping) else None
        if not isinstance(task_id, str) or not task_id:
            raise BatchOperationsEventError(
                f"S3 Batch Operations event: tasks[{index}] has no taskId (a task without one cannot be "
                "answered)"
            )
        # Outcomes are matched to tasks by message id: a repeated taskId gets a distinct one.
        seen[task_id] = seen.get(task_id, 0) + 1
        message_id = task_id if seen[task_id] == 1 else f"{task_id}#{seen[task_id]}"
        parsed.append(Task(task_id, _message(message_id, version, task)))
    job_id = job.get("id")
    return Invocation(version, invocation_id, job_id if isinstance(job_id, str) else None, tuple(parsed))


def _message(message_id: str, version: str, task: Mapping[str, Any]) -> Message:
    if version == "1.0":
        arn = task.get("s3BucketArn")
        bucket = _bucket_of_arn(arn)
        if bucket is None:
            return Message(message_id, problem=f"s3BucketArn is not an S3 bucket ARN: {str(arn)[:80]!r}")
    else:
        bucket = task.get("s3Bucket")
        if not isinstance(bucket, str):
            return Message(message_id, problem="a schema 2.0 task needs s3Bucket (a bucket name)")
    raw_key = task.get("s3Key")
    key = unquote_plus(raw_key) if isinstance(raw_key, str) else raw_key
    return object_message(message_id, bucket, key, task.get("s3VersionId"))


def _bucket_of_arn(arn: Any) -> str | None:
    # ``arn:aws:s3:::bucket``; AWS's own example request writes ``arn:aws:s3:us-east-1:0123456788:bucket``.
    # A bucket name holds no ':', so the bucket is what follows the last one.
    if not isinstance(arn, str) or not arn.startswith("arn:"):
        return None
    parts = arn.split(":")
    if len(parts) < 6 or parts[2] != "s3" or "/" in parts[-1] or not parts[-1]:
        return None
    return parts[-1]


def result_of(outcome: Outcome) -> tuple[str, str]:
    """``(resultCode, resultString)`` of one object's outcome.

    * ``Succeeded``: uploaded now, or the record already holds a live upload of the current version;
    * ``TemporaryFailure``: a retryable failure (kie.ai down or throttling, S3 or DynamoDB errors, the
      invocation's time ran out) or another delivery holding the object: Batch Operations runs the task
      again, which then finds the record current (no second upload) or does the work;
    * ``PermanentFailure``: not watched, no such object (or deleted), a permanent refusal (too large, kie.ai
      400), or a configuration error (bad API key, no credits: it needs an operator; the record stays a
      retryable ``FAILED`` that the keep-alive round retries, and the report's failed tasks can be run again).
    """
    status = outcome.status
    if status is Status.UPLOADED:
        return SUCCEEDED, "UPLOADED: uploaded to kie.ai; the record holds the download URL"
    if status is Status.DUPLICATE:
        return SUCCEEDED, "UPLOADED: already uploaded (the record's URL is live for the current version)"
    if status is Status.SUPERSEDED:
        return SUCCEEDED, "UPLOADED: the record already reflects a newer reading of the object"
    if status is Status.IN_PROGRESS:
        return TEMPORARY_FAILURE, "IN_PROGRESS: another delivery is processing the object"
    if status is Status.NOT_WATCHED:
        return PERMANENT_FAILURE, _text(f"NOT_WATCHED: {outcome.error or 'not watched by this stack'}")
    if status is Status.NOT_FOUND:
        return PERMANENT_FAILURE, "NOT_FOUND: no such object (nothing recorded)"
    if status in (Status.DELETED, Status.SKIPPED):
        return PERMANENT_FAILURE, f"{status.value}: the object no longer exists"
    kind = outcome.error_kind or ErrorKind.TRANSIENT
    text = _text(f"FAILED ({kind.value}): {outcome.error or 'unknown error'}")
    if outcome.retry and kind is ErrorKind.TRANSIENT:
        return TEMPORARY_FAILURE, text
    return PERMANENT_FAILURE, text


def answer(invocation: Invocation, outcomes: list[Outcome]) -> dict[str, Any]:
    """The function's answer to Batch Operations: one result per task, in the tasks' order."""
    by_message = {outcome.message_id: outcome for outcome in outcomes}
    results = []
    for task in invocation.tasks:
        message = task.message
        outcome = by_message.get(message.message_id)
        if message.problem is not None:
            code, text = PERMANENT_FAILURE, _text(f"INVALID: {message.problem}")
        elif outcome is None:  # every readable task names one object: a bug, so let Batch Operations retry
            code, text = TEMPORARY_FAILURE, "FAILED (transient): the task was not processed"
        else:
            code, text = result_of(outcome)
        results.append({"taskId": task.task_id, "resultCode": code, "resultString": text})
    return {
        "invocationSchemaVersion": invocation.schema_version,
        "treatMissingKeysAs": PERMANENT_FAILURE,
        "invocationId": invocation.invocation_id,
        "results": results,
    }


def _text(text: str) -> str:
    return redact(text, limit=MAX_RESULT_STRING)
