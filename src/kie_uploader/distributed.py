"""The distributed backfill's runs: start one, read its progress, redrive it (boto3 only).

A run is an execution of a ``KieUploader``'s backfill state machine (``backfill=True``,
:mod:`kie_uploader.cdk.backfill`): its Distributed Map reads the keys (S3 ``listObjectsV2``, or a manifest
under ``manifests/`` of the construct's backfill bucket) and its child function enqueues the watched ones.
Its progress is the Map Run's (``DescribeMapRun``: items succeeded, failed, pending, running).

Redrive: ``RedriveExecution`` resumes a failed, stopped or timed-out run where it stopped: the Map Run runs
again only the child executions that did not succeed. Where the engine has no ``RedriveExecution``
(ministack answers ``InvalidAction``), :func:`redrive` starts a new execution with the run's own input
instead. That re-sends nothing that succeeded *and was uploaded since*: the child skips every key whose
record is a live upload of the listed ETag; a key enqueued by the first run and not handled yet may be sent
again, which the uploader handles idempotently (a record already current is not uploaded again).

This module knows nothing of the command line: it raises :class:`RunError`.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

#: The execution statuses after which nothing moves any more.
FINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
#: The ones ``RedriveExecution`` takes.
REDRIVABLE = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
#: The error codes of an engine without ``RedriveExecution``.
_NO_REDRIVE = frozenset({"InvalidAction", "UnknownOperation", "UnknownOperationException", "NotImplemented"})
#: The Map Run's item counts the CLI shows, in this order.
COUNTS = ("total", "succeeded", "failed", "pending", "running", "aborted", "timedOut")


class RunError(Exception):
    """The run cannot be started, found or redriven as asked (the message says why)."""


@dataclass(frozen=True)
class RunInput:
    """An execution's input: the state machine's ``source`` (``list``, ``csv``, ``json``) and its keys."""

    bucket: str
    prefix: str = ""
    source: str = "list"
    manifest_key: str = ""
    force: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket, "prefix": self.prefix, "source": self.source,
            "manifestKey": self.manifest_key, "force": self.force,
        }  # fmt: skip


@dataclass
class RunState:
    """A run as the engine describes it now: the execution's status and its Map Run's item counts."""

    execution_arn: str
    status: str
    map_run_arn: str = ""
    map_run_status: str = ""
    items: dict[str, int] = field(default_factory=dict)
    error: str = ""
    input: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def done(self) -> int:
        """Items that will not move any more (succeeded or failed, aborted, timed out)."""
        return sum(self.items.get(name, 0) for name in ("succeeded", "failed", "aborted", "timedOut"))

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"executionArn": self.execution_arn, "status": self.status}
        value["mapRunArn"] = self.map_run_arn or None
        value["mapRunStatus"] = self.map_run_status or None
        value.update({name: self.items.get(name, 0) for name in COUNTS})
        if self.error:
            value["error"] = self.error
        return value


@dataclass(frozen=True)
class Redriven:
    """What :func:`redrive` did: ``method`` ``redrive`` (RedriveExecution: the same execution ARN) or
    ``restart`` (a new execution with the same input, where the engine cannot redrive)."""

    execution_arn: str
    method: str
    reason: str = ""


def run_name(now: float | None = None) -> str:
    """An execution name: ``backfill-20261205T051500-1a2b3c4d`` (unique, sortable, 80 characters at most)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"backfill-{stamp}-{uuid.uuid4().hex[:8]}"


def start(
    sfn: Any, state_machine_arn: str, run: RunInput | dict[str, Any], *, name: str | None = None
) -> str:
    """Start a run; its execution ARN."""
    payload = run.to_json() if isinstance(run, RunInput) else run
    answer = sfn.start_execution(
        stateMachineArn=state_machine_arn, name=name or run_name(), input=json.dumps(payload)
    )
    return str(answer["executionArn"])


def describe(sfn: Any, execution_arn: str) -> RunState:
    """The run's status and its (latest) Map Run's item counts."""
    try:
        execution = sfn.describe_execution(executionArn=execution_arn)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            raise RunError(f"no such backfill run: {execution_arn}") from None
        raise
    state = RunState(execution_arn=execution_arn, status=str(execution.get("status", "")))
    state.error = " ".join(str(execution.get(k) or "") for k in ("error", "cause")).strip()[:300]
    try:
        state.input = json.loads(execution.get("input") or "{}")
    except ValueError:
        state.input = {}
    runs = sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
    if runs:
        latest = max(runs, key=lambda run: str(run.get("startDate", "")))
        state.map_run_arn = str(latest["mapRunArn"])
        described = sfn.describe_map_run(mapRunArn=state.map_run_arn)
        state.map_run_status = str(described.get("status", ""))
        counts = described.get("itemCounts", {})
        state.items = {name: int(counts.get(name, 0) or 0) for name in COUNTS}
    return state


def stop(sfn: Any, execution_arn: str, *, cause: str = "stopped by kie-uploader") -> None:
    """Stop a run (StopExecution): its Map Run stops starting children; a redrive resumes it."""
    sfn.stop_execution(executionArn=execution_arn, cause=cause)


def redrive(sfn: Any, execution_arn: str) -> Redriven:
    """Resume a failed, stopped or timed-out run: ``RedriveExecution`` (only what did not succeed runs
    again), else, where the engine has none, a new execution with the run's input (:mod:`module doc
    <kie_uploader.distributed>` says why that re-sends nothing that was uploaded)."""
    state = describe(sfn, execution_arn)
    if state.status not in REDRIVABLE:
        raise RunError(
            f"backfill run {execution_arn} is {state.status}: only a FAILED, ABORTED or TIMED_OUT run can be "
            "redriven" + (" (watch it with --status)" if state.status == "RUNNING" else "")
        )
    try:
        sfn.redrive_execution(executionArn=execution_arn)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in _NO_REDRIVE:
            raise
        state_machine_arn = str(sfn.describe_execution(executionArn=execution_arn)["stateMachineArn"])
        new_arn = start(sfn, state_machine_arn, state.input)
        return Redriven(new_arn, "restart", reason=f"RedriveExecution is not available here ({code})")
    return Redriven(execution_arn, "redrive")
