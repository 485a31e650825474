"""8. What the record's convergence rules cost: AWS requests and kie.ai calls per object, counted on the
function's own clients (botocore's ``before-call`` events), in the common case and the cheap paths.

* one event per new object, no race (batches of 10 distinct objects);
* the same events delivered again (duplicates);
* a plain message per object whose record is live (what retry-failed or another producer may send), and
  one per object never seen (what backfill sends);
* a resolve request for a live record, and one that must upload;
* one keep-alive round, per 1,000 due records (the round reads the sparse expiry index: the table's
  other records cost nothing).
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3

from bench.common import Report, progress, stdout_to
from bench.context import Context
from bench.world import BUCKET, VERSIONED_BUCKET, LocalWorld, import_handler, lambda_context, sqs_batches
from tests import factories

#: Before the convergence rules: GetItem + HeadObject + UpdateItem per new object (bench of 2026-11-23).
BEFORE = {"dynamodb": 2, "s3": 1, "kie": 1}
#: What checking URLs at kie.ai costs (functions/uploader/live.py): the keep-alive round checks each upload
#: once, in the round after it became KIE_VERIFY_AFTER_SECONDS old (one GetItem of the record, one ranged GET
#: of one byte at kie.ai, no S3 request); an upload lives 3 days, so at most one check per object per day.
URL_CHECK = {"dynamodb": 1, "s3": 0, "kie_get": 1, "per": "upload (at most one a day per object)"}


@contextmanager
def counted() -> Iterator[Counter[str]]:
    """Count the AWS calls of clients created inside the block (the handler's runtime is rebuilt in it)."""
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[f"{model.service_model.service_name}:{model.name}"] += 1

    session = boto3.Session()
    previous = boto3.DEFAULT_SESSION
    session.events.register("before-call.*.*", count)
    boto3.DEFAULT_SESSION = session
    try:
        yield calls
    finally:
        boto3.DEFAULT_SESSION = previous


def _per(calls: Counter[str], n: int, kie_calls: int) -> dict[str, float]:
    figures = {name: round(count / n, 2) for name, count in sorted(calls.items())}
    figures["dynamodb"] = round(sum(c for k, c in calls.items() if k.startswith("dynamodb:")) / n, 2)
    figures["s3"] = round(sum(c for k, c in calls.items() if k.startswith("s3:")) / n, 2)
    figures["kie"] = round(kie_calls / n, 2)
    return figures


def _uploads(world: LocalWorld) -> int:
    """kie.ai calls the emulator has served so far."""
    with urllib.request.urlopen(f"{world.emulator.endpoint_url}/_emulator/calls", timeout=10) as answer:
        return len(json.loads(answer.read()))


def _plain_events(objects: list[Any]) -> list[dict[str, Any]]:
    """SQS events of plain ``{"bucket", "key"}`` messages, 10 per event."""
    return [
        factories.sqs_event(*[factories.sqs_record(factories.plain_message(BUCKET, o.key)) for o in chunk])
        for chunk in (objects[i : i + 10] for i in range(0, len(objects), 10))
    ]


def run(ctx: Context, report: Report) -> None:
    world = ctx.world()
    handler = import_handler()
    count = ctx.count(full=100, quick=20)
    with stdout_to(ctx.function_log), world.function_env(KIE_RETENTION_SECONDS="3600"):
        world.reset_emulator()
        world.set_latency(0.0)
        # Warm: the secret read and the clients are per container, not per object.
        handler.handler(sqs_batches(world.put_objects(1, "requests/warm"))[0], lambda_context())
        objects = world.put_objects(count, "requests/new")
        events = sqs_batches(objects)
        before = _uploads(world)
        progress(f"requests: {count} new objects, one event each")
        with counted() as calls:
            handler._runtime = None  # clients created inside the counting session
            for event in events:
                handler.handler(event, lambda_context())
        new = _per(calls, count, _uploads(world) - before)

        versioned_events = sqs_batches(world.put_objects(count, "requests/versioned", VERSIONED_BUCKET))
        before = _uploads(world)
        with counted() as calls:
            handler._runtime = None
            for event in versioned_events:
                handler.handler(event, lambda_context())
        new_versioned = _per(calls, count, _uploads(world) - before)

        before = _uploads(world)
        with counted() as calls:
            handler._runtime = None
            for event in events:
                handler.handler(event, lambda_context())
        duplicate = _per(calls, count, _uploads(world) - before)

        before = _uploads(world)
        with counted() as calls:
            handler._runtime = None
            for event in _plain_events(objects):
                handler.handler(event, lambda_context())
        plain_live = _per(calls, count, _uploads(world) - before)

        fresh = world.put_objects(count, "requests/backfill")  # what a backfill sends: keys never seen
        before = _uploads(world)
        with counted() as calls:
            handler._runtime = None
            for event in _plain_events(fresh):
                handler.handler(event, lambda_context())
        plain_new = _per(calls, count, _uploads(world) - before)

        uris = [f"s3://{BUCKET}/{o.key}" for o in objects[:10]]
        before = _uploads(world)
        with counted() as calls:
            handler._runtime = None
            handler.handler({"resolve": uris, "minValidSeconds": 60}, lambda_context())
        resolve_live = _per(calls, len(uris), _uploads(world) - before)

    # Uploaded with a 1 h retention: every one of them is due within 2 h; refresh them with a 3 h one.
    with stdout_to(ctx.function_log), world.function_env(KIE_RETENTION_SECONDS="10800"):
        before = _uploads(world)
        with counted() as calls:
            handler._runtime = None
            answer = handler.handler(
                {"refresh": {"prefixes": [f"s3://{BUCKET}/requests/new/"], "expiringWithinSeconds": 7200}},
                lambda_context(),
            )
        due = answer["due"]
        refresh = _per(calls, max(due, 1), _uploads(world) - before)
    if answer["refreshed"] != count:
        raise RuntimeError(f"refresh round did not refresh every due record: {answer}")

    report.figures.update(
        {
            "objects": count,
            "new_object_one_event": new,
            "new_object_one_event_versioned": new_versioned,
            "url_check_per_object_per_day": URL_CHECK,
            "duplicate_event": duplicate,
            "plain_message_live_record": plain_live,
            "plain_message_new_object": plain_new,
            "resolve_live_record": resolve_live,
            "refresh_per_due_record": refresh,
            "refresh_dynamodb_requests_per_1000_due": round(refresh["dynamodb"] * 1000),
            "before_new_object": BEFORE,
        }
    )
    report.row(
        "new object, one event: DynamoDB / S3 / kie.ai per object",
        f"{new['dynamodb']:g} / {new['s3']:g} / {new['kie']:g} (before: 2 / 1 / 1)",
    )
    report.row(
        "new object, one event, versioned bucket",
        f"{new_versioned['dynamodb']:g} / {new_versioned['s3']:g} / {new_versioned['kie']:g}",
    )
    report.row(
        "URL check at kie.ai (a day after each upload; keep-alive round)",
        "1 GetItem + 1 ranged GET per upload, i.e. at most 1 / 0 / 1 per object per day",
    )
    report.row("duplicate event", f"{duplicate['dynamodb']:g} / {duplicate['s3']:g} / {duplicate['kie']:g}")
    report.row(
        "plain message, live record",
        f"{plain_live['dynamodb']:g} / {plain_live['s3']:g} / {plain_live['kie']:g}",
    )
    report.row(
        "plain message, new object (backfill)",
        f"{plain_new['dynamodb']:g} / {plain_new['s3']:g} / {plain_new['kie']:g}",
    )
    report.row(
        "resolve, live record",
        f"{resolve_live['dynamodb']:g} / {resolve_live['s3']:g} / {resolve_live['kie']:g}",
    )
    report.row(
        "keep-alive round: DynamoDB requests per 1,000 due records",
        f"{round(refresh['dynamodb'] * 1000):,} (+ {refresh['s3']:g} S3, {refresh['kie']:g} kie.ai each)",
    )
