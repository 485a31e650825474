"""Requests for a live URL: ``resolve`` (a synchronous invocation) and ``refresh`` (the keep-alive schedule).

Both run the same processor, under the same convergence rules, as every event and message; they only ask
for a URL that stays valid longer (``min_valid``), so a live upload with less time left is uploaded again
under a new ``uploadPath`` (the file someone may be using is never overwritten).

``{"resolve": ["s3://bucket/key", ...], "minValidSeconds": 3600}`` →
``{"results": [{"s3Uri", "status", "downloadUrl", "expiresAt", "uploaded", "error"}, ...]}`` in order.
A bad URI (``INVALID``), an object the stack does not watch (``NOT_WATCHED``), a key without an object
that never had one (``NOT_FOUND``: nothing is written), a deleted or too large object is a result with its
status and a readable ``error``; only a request that is not a resolve request at all gets ``{"error": ...}``
and no results. A ``downloadUrl`` is given only when this request confirmed, by reading S3, that the record
describes the object's current version (or wrote it).

``{"refresh": {"prefixes": ["s3://bucket/prefix", ...], "expiringWithinSeconds": 43200}}`` re-uploads the
live uploads under those prefixes whose file expires within that time, and retries the retryable failures
(due at once: they stay in the index), found through the sparse expiry index (no scan). It also checks,
once each, the URLs that became older than ``KIE_VERIFY_AFTER_SECONDS`` within the last
``verifyWindowSeconds`` (default 3600, the schedule's interval), and uploads again those kie.ai no longer
serves. It answers with counts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from uploader import liveness
from uploader.errors import UploaderError
from uploader.events import parse_s3_uri
from uploader.models import ObjectRef, Outcome, Status
from uploader.processor import Processor
from uploader.retry import Deadline

MAX_URIS = 10
DEFAULT_MIN_VALID_SECONDS = 3600
#: A URL is never promised for the whole retention: kie.ai counts from its own clock.
RETENTION_MARGIN_SECONDS = 300
#: A refresh round stops starting new uploads when less than this is left of the invocation.
REFRESH_RESERVE_SECONDS = 20.0
#: The keep-alive round checks, once, the URLs that crossed KIE_VERIFY_AFTER_SECONDS in the last window
#: (the schedule's interval: the construct passes it as ``verifyWindowSeconds``).
DEFAULT_VERIFY_WINDOW_SECONDS = 3600
#: Metrics: checks of a download URL at kie.ai, and URLs found gone (uploaded again).
METRIC_PROBES, METRIC_GONE = "UrlProbes", "UrlsGone"


class BadRequestError(ValueError):
    """The request as a whole cannot be read (the message says why)."""


def is_request(event: Any) -> bool:
    """Whether the invocation is a resolve or refresh request (not an S3/SQS/EventBridge event)."""
    return isinstance(event, Mapping) and ("resolve" in event or "refresh" in event)


Counter = Callable[[str, int], None]


def _uncounted(_name: str, _value: int) -> None:
    return None


def handle(
    event: Mapping[str, Any], processor: Processor, deadline: Deadline, count: Counter = _uncounted
) -> dict[str, Any]:
    """Answer a resolve or refresh request; ``count(metric, n)`` receives the URL checks made."""
    try:
        if "resolve" in event:
            return resolve(event, processor, deadline, count)
        return refresh(event.get("refresh"), processor, deadline, count)
    except BadRequestError as exc:
        return {"error": str(exc)}


def _count_probes(count: Counter, outcome: Outcome | None) -> None:
    if outcome is not None and outcome.probes:
        count(METRIC_PROBES, len(outcome.probes))
        count(METRIC_GONE, outcome.probes.count(False))


def _max_valid(processor: Processor) -> int:
    return processor.config.kie_retention_seconds - RETENTION_MARGIN_SECONDS


def _seconds(value: Any, name: str, default: int, high: int) -> int:
    if value is None:
        return min(default, high)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise BadRequestError(f"{name} must be a whole number of seconds from 0 to {high}")
    return value


# --- resolve --------------------------------------------------------------------------------------------


def resolve(
    event: Mapping[str, Any], processor: Processor, deadline: Deadline, count: Counter = _uncounted
) -> dict[str, Any]:
    uris = event.get("resolve")
    if isinstance(uris, str):
        uris = [uris]
    if not isinstance(uris, list) or not 1 <= len(uris) <= MAX_URIS:
        raise BadRequestError(f"resolve must be a list of 1 to {MAX_URIS} S3 URIs")
    min_valid = _seconds(
        event.get("minValidSeconds"), "minValidSeconds", DEFAULT_MIN_VALID_SECONDS, _max_valid(processor)
    )

    def one(index_uri: tuple[int, Any]) -> dict[str, Any]:
        index, uri = index_uri
        try:
            ref = ObjectRef(*parse_s3_uri(uri))
        except ValueError as exc:
            return _result(str(uri)[:1100], "INVALID", error=str(exc))
        outcome = processor.process(
            f"resolve-{index}", ref, deadline, min_valid=min_valid, waits=True, verify=True
        )
        _count_probes(count, outcome)
        return _answer(processor, ref, outcome, min_valid)

    workers = max(1, min(len(uris), processor.config.max_concurrency))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="resolve") as pool:
        results = list(pool.map(one, enumerate(uris)))
    return {"results": results}


def _answer(processor: Processor, ref: ObjectRef, outcome: Outcome, min_valid: int) -> dict[str, Any]:
    """A URL only when this request confirmed it: the record, read after processing, describes the S3
    reading this request made (or wrote) and stays valid ``min_valid`` seconds. Anything else is a status
    with a readable error and no URL (a live-looking URL this request could not confirm may serve older
    bytes)."""
    if outcome.status in (Status.NOT_WATCHED, Status.NOT_FOUND):
        return _result(ref.pk, outcome.status.value, error=outcome.error)
    try:
        record = processor.table.get(ref.pk) or {}
    except UploaderError as exc:  # an answer, never an exception: the URL just cannot be confirmed
        failed = Status.FAILED if outcome.status is Status.DUPLICATE else outcome.status
        return _result(ref.pk, failed.value, error=f"could not read the object's record: {exc}")
    status = str(record.get("status") or outcome.status.value)
    now = int(processor.now().timestamp())
    confirmed = outcome.confirmed if outcome.status in (Status.UPLOADED, Status.DUPLICATE) else None
    if confirmed is not None and liveness.is_live(
        record, now, min_valid, version_id=confirmed.version_id, etag=confirmed.etag
    ):
        return _result(
            ref.pk,
            status,
            download_url=record.get("downloadUrl"),
            expires_at=record.get("expiresAt"),
            uploaded=outcome.status is Status.UPLOADED,
        )
    error = outcome.error or record.get("error")
    if status == Status.DELETED:
        error = "the object does not exist (deleted)"
    elif outcome.status is Status.FAILED and liveness.is_live(record, now, min_valid):
        error = f"could not confirm the object's current version: {outcome.error}"
    elif status == Status.UPLOADED:
        error = error or f"no URL valid for {min_valid} s could be confirmed"
    return _result(ref.pk, status, error=str(error or f"no live URL ({status})"))


def _result(
    uri: str,
    status: str,
    *,
    download_url: Any = None,
    expires_at: Any = None,
    uploaded: bool = False,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "s3Uri": uri,
        "status": status,
        "downloadUrl": download_url,
        "expiresAt": expires_at,
        "uploaded": uploaded,
        "error": error,
    }


# --- refresh --------------------------------------------------------------------------------------------


def refresh(
    request: Any, processor: Processor, deadline: Deadline, count: Counter = _uncounted
) -> dict[str, Any]:
    locations, within, window = _refresh_request(request, processor)
    now = int(processor.now().timestamp())
    until = now + within
    due = _in_index(processor, locations, until=until)
    checks = [ref for pk, ref in _to_check(processor, locations, now, until, window).items() if pk not in due]

    counts = {"due": len(due), "refreshed": 0, "deleted": 0, "failed": 0, "unchanged": 0, "left": 0}
    counts |= {"checked": 0, "replaced": 0}
    # The refresh's own deadline keeps time for the last uploads to finish.
    reserve = Deadline(lambda: int(deadline.remaining_ms() - REFRESH_RESERVE_SECONDS * 1000), 0.0)

    def one(ref: ObjectRef) -> Outcome | None:
        if reserve.remaining() <= 0:
            return None
        return processor.process("refresh", ref, deadline, min_valid=within, precheck=False)

    def check(ref: ObjectRef) -> Outcome | None:
        """A URL that crossed the shortest documented retention: still served? If not, upload again."""
        if reserve.remaining() <= 0:
            return None
        served = processor.probe(processor.table.get(ref.pk), now)
        if served is not False:
            probes: list[bool] = [] if served is None else [served]
            return Outcome(ref=ref, message_id="check", status=Status.DUPLICATE, probes=probes)
        outcome = processor.process("check", ref, deadline, min_valid=_max_valid(processor), precheck=False)
        outcome.probes.insert(0, False)
        return outcome

    workers = max(1, min(len(due) + len(checks), processor.config.max_concurrency))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="refresh") as pool:
        for outcome in pool.map(one, due.values()):
            counts[_count(outcome)] += 1
        for outcome in pool.map(check, checks):
            _count_probes(count, outcome)
            if outcome is not None and outcome.probes:
                counts["checked"] += 1
                counts["replaced"] += outcome.status is Status.UPLOADED
    return counts


def _refresh_request(request: Any, processor: Processor) -> tuple[list[ObjectRef], int, int]:
    """The locations, ``expiringWithinSeconds`` and ``verifyWindowSeconds`` of a refresh request."""
    if not isinstance(request, Mapping):
        raise BadRequestError("refresh must be an object: {prefixes, expiringWithinSeconds}")
    prefixes = request.get("prefixes")
    if not isinstance(prefixes, list) or not prefixes:
        raise BadRequestError("refresh.prefixes must be a non-empty list of s3://bucket/prefix")
    try:
        locations = [ObjectRef(*parse_s3_uri(p, allow_prefix=True)) for p in prefixes]
    except ValueError as exc:
        raise BadRequestError(f"refresh.prefixes: {exc}") from exc
    within = _seconds(
        request.get("expiringWithinSeconds"),
        "refresh.expiringWithinSeconds",
        43_200,
        _max_valid(processor),
    )
    window = _seconds(
        request.get("verifyWindowSeconds"),
        "refresh.verifyWindowSeconds",
        DEFAULT_VERIFY_WINDOW_SECONDS,
        processor.config.kie_retention_seconds,
    )
    return locations, within, window


def _in_index(
    processor: Processor, locations: list[ObjectRef], *, until: int, since: int | None = None
) -> dict[str, ObjectRef]:
    """The records under ``locations`` in the expiry index with ``since < expiresAt <= until``, by pk."""
    found: dict[str, ObjectRef] = {}
    for location in locations:
        prefix = f"s3://{location.bucket}/"
        for item in processor.table.due(location.bucket, until=until, since=since, pk_prefix=location.pk):
            found[item["pk"]] = ObjectRef(location.bucket, item["pk"][len(prefix) :])
    return found


def _to_check(
    processor: Processor, locations: list[ObjectRef], now: int, until: int, window: int
) -> dict[str, ObjectRef]:
    """The live uploads, not due yet, whose URL became older than ``KIE_VERIFY_AFTER_SECONDS`` within the
    last ``window`` seconds: each URL is checked once in its life (by the round after it crossed)."""
    after = processor.config.kie_verify_after_seconds
    if not after or not window:
        return {}
    crossed_by = now + processor.config.kie_retention_seconds - after  # expiresAt of a URL `after` old
    since = max(crossed_by - window, until)
    if since >= crossed_by:
        return {}
    return _in_index(processor, locations, until=crossed_by, since=since)


def _count(outcome: Outcome | None) -> str:
    if outcome is None:
        return "left"  # due again at the next round
    if outcome.status is Status.UPLOADED:
        return "refreshed"
    if outcome.status is Status.DELETED:
        return "deleted"
    if outcome.status is Status.FAILED:
        return "failed"
    return "unchanged"
