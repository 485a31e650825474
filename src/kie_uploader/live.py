"""The live URL from the operator's side: ask the deployed function for it, and say what a record means.

``live_url("s3://bucket/key")`` invokes the stack's function synchronously (``RequestResponse``) with a
resolve request and returns kie.ai's ``downloadUrl``, valid for at least ``min_valid``; the function
uploads the object again when the URL it has would expire sooner. ``describe_record`` turns a record
into one of the object's states and a sentence (``live, 2 d 3 h left``, ``expired 3 h ago``, ...).

Only boto3 here (no CDK, no terminal libraries): ``from kie_uploader import live_url`` is cheap. When a
URL is live is the function's own rule (``kie_uploader.function.liveness``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from kie_uploader.function import liveness

DEFAULT_STACK = "KieUploader"
DEFAULT_MIN_VALID = timedelta(hours=1)
#: The function's own limit on one resolve request.
MAX_URIS = 10
#: Longer than the function may run (its timeout is at most 900 s): a synchronous invoke waits for it.
INVOKE_READ_TIMEOUT = 910

# --- states -----------------------------------------------------------------------------------------

NEVER_SEEN = "NEVER_SEEN"
IN_PROGRESS = "IN_PROGRESS"
RETRY_PENDING = "RETRY_PENDING"
LIVE = "LIVE"
EXPIRED = "EXPIRED"
FAILED = "FAILED"
SKIPPED = "SKIPPED"
DELETED = "DELETED"
UNKNOWN = "UNKNOWN"
# What only the object's own reading (S3, the stack's buckets) can tell beside its record:
NOT_WATCHED = "NOT_WATCHED"
WAITING = "WAITING"
NOT_IN_S3 = "NOT_IN_S3"
#: An object put this recently without a record is taken to be on its way, not forgotten.
WAITING_WINDOW_SECONDS = 900


class LiveUrlError(RuntimeError):
    """No live URL: the message is the reason (one line)."""


@dataclass(frozen=True)
class RecordState:
    """What a record says about its object.

    ``state`` is one of ``NEVER_SEEN``, ``IN_PROGRESS``, ``RETRY_PENDING``, ``LIVE``, ``EXPIRED``,
    ``FAILED``, ``SKIPPED``, ``DELETED`` (``UNKNOWN`` for a status this version does not know);
    ``label`` is short (a table cell), ``sentence`` is the whole reason.
    """

    state: str
    label: str
    sentence: str


def human_duration(seconds: float) -> str:
    """``2 d 3 h``, ``5 h 10 min``, ``4 min``, ``42 s``: the two largest units, rounded down."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def describe_record(record: Mapping[str, Any] | None, now: float) -> RecordState:
    """The object's state from its record (``None``: no record) at ``now`` (epoch seconds)."""
    if not record:
        return RecordState(NEVER_SEEN, "never seen", "no record (the object was never processed)")
    status = record.get("status")
    claimed = bool(record.get("claimOwner"))
    claim_live = claimed and _number(record.get("claimUntil"), 0) / 1000 > now
    if not status:
        return RecordState(IN_PROGRESS, "in progress", "in progress: its first upload is being processed")
    settled = _settled(record, str(status), now)
    if claim_live:
        return RecordState(
            IN_PROGRESS,
            f"being processed; {settled.label}",
            f"being processed; until then {settled.sentence}",
        )
    return settled


def _settled(record: Mapping[str, Any], status: str, now: float) -> RecordState:
    error = one_line(record.get("error")) or "no reason recorded"
    kind = record.get("errorKind")
    if status == "UPLOADED":
        expires = liveness.expires_at(record)
        if expires is None:
            return RecordState(EXPIRED, "no expiry", "uploaded, but the record has no expiry: not served")
        if liveness.is_live(record, now):
            left = human_duration(expires - now)
            return RecordState(LIVE, f"live, {left} left", f"live, {left} left")
        ago = human_duration(now - expires)
        return RecordState(
            EXPIRED,
            f"expired {ago} ago",
            f"expired {ago} ago: kie.ai no longer serves the file (`kie-uploader url` uploads it again)",
        )
    if status == "FAILED":
        tag = f"[{kind}] " if kind else ""
        if record.get("retryable") is True:
            return RecordState(
                RETRY_PENDING,
                "waiting for a retry",
                f"failed, waiting for a retry: {tag}{error} (a message is on its way, or in the dead-letter "
                "queue: `kie-uploader redrive`)",
            )
        return RecordState(FAILED, "failed", f"failed: {tag}{error}")
    if status == "SKIPPED":
        return RecordState(
            SKIPPED,
            "skipped",
            f"skipped: {error} (a record only older versions wrote, for a key without an object: "
            "`kie-uploader forget --status SKIPPED` removes them)",
        )
    if status == "DELETED":
        return RecordState(
            DELETED, "deleted", "deleted: the object no longer exists in S3 (its URL is withdrawn)"
        )
    return RecordState(UNKNOWN, status.lower(), f"status {status}")


def _number(value: Any, default: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def one_line(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


@dataclass(frozen=True)
class S3Reading:
    """What HeadObject said about the object: ``exists`` False for a 404 (or a delete marker)."""

    exists: bool
    etag: str | None = None
    last_modified: float | None = None  # epoch seconds


def describe_object(
    record: Mapping[str, Any] | None,
    now: float,
    *,
    reading: S3Reading | None = None,
    watched: bool = True,
    stack: str = DEFAULT_STACK,
    outside: str | None = None,
) -> RecordState:
    """The object's state from its record and, when given, S3's reading of it: beside
    :func:`describe_record`'s states, ``NOT_WATCHED`` (the stack does not serve its bucket: ``watched``
    False; or the key is outside its prefix/suffix rules: ``outside`` says how, ``outside prefix
    incoming/``), ``WAITING`` (put moments ago, or changed since its record was written: its event is on its
    way) and ``NOT_IN_S3`` (no object, no record); ``NEVER_SEEN`` then means an object that was put a while
    ago and never handled."""
    if not watched:
        return RecordState(
            NOT_WATCHED, "not watched", f"not watched by stack {stack}: its bucket is not one of the stack's"
        )
    if outside is not None:
        # No event ever comes for it and the function refuses it: a record (an older version's) is history.
        return RecordState(NOT_WATCHED, "not watched", f"not watched: {outside}")
    if record is None and reading is not None:
        if not reading.exists:
            return RecordState(NOT_IN_S3, "not in S3", "no such object in S3, and no record of one")
        age = max(0.0, now - reading.last_modified) if reading.last_modified is not None else None
        if age is not None and age < WAITING_WINDOW_SECONDS:
            return RecordState(
                WAITING,
                "waiting",
                f"waiting: put {human_duration(age)} ago, its event has not been handled yet",
            )
        put = f"put {human_duration(age)} ago and " if age is not None else ""
        return RecordState(
            NEVER_SEEN,
            "never seen",
            f"never seen: {put}never handled by this stack (from before the stack, or its record was "
            "removed after the retention): `kie-uploader backfill` or `kie-uploader url` hands it over",
        )
    state = describe_record(record, now)
    if record is None or reading is None or record.get("status") != "UPLOADED":
        return state
    if not reading.exists:
        return RecordState(
            WAITING,
            f"deleted in S3; {state.label}",
            "deleted in S3, its record not updated yet (its event is on its way); until then "
            f"{state.sentence}",
        )
    if reading.etag is not None and not liveness.describes(record, etag=reading.etag):
        return RecordState(
            WAITING,
            f"changed in S3; {state.label}",
            "changed in S3 since this upload (its new version is on its way): the URL is of the older "
            f"bytes; {state.sentence}",
        )
    return state


# --- durations --------------------------------------------------------------------------------------


def _seconds(value: timedelta | int | float) -> int:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError("a duration may not be negative")
    return int(seconds)


# --- invoking the function --------------------------------------------------------------------------


def session(region: str | None = None, profile: str | None = None) -> Any:
    """A boto3 session for ``region`` (else ``AWS_REGION``, else the standard chain) and ``profile``.

    boto3 reads only ``AWS_DEFAULT_REGION``; the AWS CLI and the other SDKs (and Lambda itself) also read
    ``AWS_REGION``, and it wins over ``AWS_DEFAULT_REGION`` there: so it does here.
    """
    import os

    import boto3

    return boto3.Session(region_name=region or os.environ.get("AWS_REGION") or None, profile_name=profile)


def lambda_client(session: Any) -> Any:
    """A Lambda client that waits as long as the function may run, and never retries an invoke that
    timed out on the way back (the function would run twice)."""
    from botocore.config import Config

    return session.client(
        "lambda",
        config=Config(
            connect_timeout=5,
            read_timeout=INVOKE_READ_TIMEOUT,
            retries={"mode": "standard", "max_attempts": 3},
            tcp_keepalive=True,
        ),
    )


def invoke(lambda_: Any, function_name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Invoke synchronously; the answer, or ``LiveUrlError`` for a function error or a refused request."""
    response = lambda_.invoke(
        FunctionName=function_name,
        InvocationType="RequestResponse",
        Payload=json.dumps(payload).encode(),
    )
    raw = response["Payload"].read()
    try:
        answer = json.loads(raw) if raw else None
    except ValueError:
        answer = None
    if response.get("FunctionError"):
        if isinstance(answer, Mapping):
            kind = one_line(answer.get("errorType")) or "error"
            message = one_line(answer.get("errorMessage")) or "no message"
        else:
            kind, message = str(response["FunctionError"]), one_line(raw.decode("utf-8", "replace"))[:300]
        raise LiveUrlError(f"the function {function_name} failed: {kind}: {message[:500]}")
    if not isinstance(answer, dict):
        raise LiveUrlError(f"the function {function_name} gave no answer (is it a kie-uploader function?)")
    if "error" in answer and "results" not in answer:
        raise LiveUrlError(f"the function refused the request: {one_line(answer['error'])}")
    return answer


def resolve(
    lambda_: Any, function_name: str, uris: Sequence[str], min_valid: timedelta | int = DEFAULT_MIN_VALID
) -> list[dict[str, Any]]:
    """The function's results for up to 10 S3 URIs, in order (``s3Uri, status, downloadUrl, expiresAt,
    uploaded, error``)."""
    if not 1 <= len(uris) <= MAX_URIS:
        raise LiveUrlError(f"resolve takes 1 to {MAX_URIS} S3 URIs")
    answer = invoke(lambda_, function_name, {"resolve": list(uris), "minValidSeconds": _seconds(min_valid)})
    results = answer.get("results")
    if not isinstance(results, list) or len(results) != len(uris):
        raise LiveUrlError(f"the function {function_name} answered without a result per URI")
    return results


def refresh(
    lambda_: Any, function_name: str, prefixes: Sequence[str], expiring_within: timedelta | int
) -> dict[str, int]:
    """Re-upload the live uploads under ``prefixes`` that expire within ``expiring_within``: counts
    ``due, refreshed, deleted, failed, unchanged, left``."""
    answer = invoke(
        lambda_,
        function_name,
        {"refresh": {"prefixes": list(prefixes), "expiringWithinSeconds": _seconds(expiring_within)}},
    )
    return {
        name: int(answer.get(name, 0))
        for name in ("due", "refreshed", "deleted", "failed", "unchanged", "left")
    }


def url_of(result: Mapping[str, Any]) -> str:
    """The result's URL, or ``LiveUrlError`` with the function's reason."""
    url = result.get("downloadUrl")
    if isinstance(url, str) and url:
        return url
    reason = one_line(result.get("error")) or f"no live URL ({result.get('status') or 'no status'})"
    raise LiveUrlError(f"{result.get('s3Uri', '')}: {reason}")


def function_name_of(cloudformation: Any, stack: str, uploader: str | None = None) -> str:
    """The function of the stack's uploader ``uploader`` (else its only one), from the construct's discovery
    record (or an older stack's ``FunctionName`` output)."""
    from botocore.exceptions import ClientError

    from kie_uploader import discovery

    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationError" and "does not exist" in str(error.get("Message", "")):
            raise LiveUrlError(f"no such stack: {stack}") from exc
        raise
    if not stacks:
        raise LiveUrlError(f"no such stack: {stack}")
    try:
        uploaders = discovery.uploaders_of(stacks[0].get("Outputs", []), stack)
        found = discovery.choose(uploaders, stack, uploader, option="uploader=NAME")
    except discovery.DiscoveryError as exc:
        raise LiveUrlError(str(exc)) from None
    if not found.function_name:
        raise LiveUrlError(f"uploader {found.name} of stack {stack} names no function")
    return found.function_name


def live_url(
    s3_uri: str,
    min_valid: timedelta | int = DEFAULT_MIN_VALID,
    stack: str = DEFAULT_STACK,
    region: str | None = None,
    uploader: str | None = None,
) -> str:
    """A kie.ai ``downloadUrl`` of the object that stays valid at least ``min_valid`` (a timedelta or
    seconds), from the function of the stack's uploader ``uploader`` (the construct's path in the stack; may
    be left out when the stack has one), which uploads the object when it must. Raises ``LiveUrlError``
    whose message is the reason: the object is deleted, refused, too large, kie.ai failed, no such
    stack, no credentials, ..."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    from kie_uploader.aws_errors import describe_aws_error, endpoint_problem

    problem = endpoint_problem()
    if problem is not None:  # botocore would say only "Invalid endpoint"
        raise LiveUrlError(problem)
    try:
        seconds = _seconds(min_valid)
        aws = session(region)
        name = function_name_of(aws.client("cloudformation"), stack, uploader)
        [result] = resolve(lambda_client(aws), name, [s3_uri], seconds)
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        raise LiveUrlError(describe_aws_error(exc)) from exc
    except ValueError as exc:
        raise LiveUrlError(str(exc)) from exc
    return url_of(result)
