"""The function's deadline hits while a batch is half done.

A Lambda context whose remaining time really runs down, a batch of objects processed two at a time, and
kie.ai answering after 0.5 s: the invocation has time for only part of the batch. The objects it could not
start are reported for another delivery (SQS: ``batchItemFailures``; direct S3: the handler raises), their
records say why, and once they are delivered again every object is ``UPLOADED`` — each uploaded exactly
once (the emulator's calls are counted per file).

The latency stays below the retrier's minimum call budget (1 s): a call is only started when it can finish,
so no call is cut in flight (a cut call would still be completed by kie.ai: an upload done twice).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from tests import factories as f
from tests.factories import CountdownContext, World, failures
from uploader import handler as handler_module

OBJECTS = 10
LATENCY_SECONDS = 0.5
#: Work time after the handler's safety margin: room for two or three rounds of two calls, not five.
WORK_SECONDS = 1.8


def short_lived_context() -> CountdownContext:
    return CountdownContext(remaining_ms=int((handler_module.SAFETY_MARGIN_SECONDS + WORK_SECONDS) * 1000))


def put_batch(w: World) -> tuple[list[dict[str, Any]], list[str]]:
    """``OBJECTS`` objects and their S3 event records; a warm container with concurrency 2."""
    w.env(MAX_CONCURRENCY="2", KIE_TIMEOUT_SECONDS="5")
    handler_module._get_processor()  # a warm container: the deadline is spent on objects, not on clients
    keys = [f"deadline/{i:02d}.txt" for i in range(OBJECTS)]
    records = [w.created(key, f"object {key}".encode()) for key in keys]
    # Handled after their write second: no presign wait (docs/architecture.md, rule 8), so the deadline is
    # spent on kie.ai's latency alone.
    time.sleep(1.1)
    w.kie.set_faults(latency_seconds=LATENCY_SECONDS)
    return records, keys


def uploads_per_object(w: World) -> Counter[str]:
    """Successful upload calls per object, by the object's upload path (one folder per object version)."""
    return Counter(
        str(call.body["uploadPath"]) for call in w.kie.calls if call.status == 200 and call.body is not None
    )


def assert_all_uploaded_once(w: World, keys: list[str]) -> None:
    paths = []
    for key in keys:
        record = w.record(key)
        assert record is not None and record["status"] == "UPLOADED", (key, record)
        assert w.kie.stored(record["filePath"]) == f"object {key}".encode()
        paths.append(record["uploadPath"])
    assert uploads_per_object(w) == Counter(paths)  # each object once, and nothing else
    assert w.kie.upload_count == len(keys)


def test_an_sqs_batch_cut_by_the_deadline_reports_the_rest_and_redelivery_uploads_each_once(
    world: World,
) -> None:
    records, keys = put_batch(world)
    event, ids = world.sqs(*[f.s3_notification(r) for r in records])

    answer = handler_module.handler(event, short_lived_context())

    retry = failures(answer)
    assert 0 < len(retry) < OBJECTS  # the deadline hit half-way
    done = [key for key, message_id in zip(keys, ids, strict=True) if message_id not in retry]
    for key, message_id in zip(keys, ids, strict=True):
        record = world.record(key)
        assert record is not None
        if message_id in retry:
            assert record["status"] == "FAILED" and record["errorKind"] == "transient"
            assert record["retryable"] is True and "no time left" in record["error"]
            assert record["attempts"] == "0"  # never started: kie.ai was not called for it
        else:
            assert record["status"] == "UPLOADED"
    assert len(uploads_per_object(world)) == len(done)

    # The event source mapping delivers the reported messages again (with a fresh invocation).
    redelivery = f.sqs_event(*[r for r in event["Records"] if r["messageId"] in retry])
    assert failures(world.invoke(redelivery)) == []

    assert_all_uploaded_once(world, keys)


def test_a_direct_event_cut_by_the_deadline_raises_and_its_retry_uploads_each_remaining_object_once(
    world: World,
) -> None:
    records, keys = put_batch(world)
    event = f.s3_notification(*records)

    with pytest.raises(handler_module.RetryNeededError, match=rf"of {OBJECTS} records need another try"):
        handler_module.handler(event, short_lived_context())
    uploaded_first = len(uploads_per_object(world))
    assert 0 < uploaded_first < OBJECTS

    # Lambda's asynchronous retry delivers the whole event again: the uploaded objects are duplicates.
    assert world.invoke(event) is None

    assert_all_uploaded_once(world, keys)
