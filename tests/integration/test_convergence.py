"""The record tells the truth about the object: each reproduction of the record issue, against ministack and
the kie.ai emulator. Every test failed before the record converged to S3's current state.

Concurrent deliveries run as separate processors (two warm containers), built from the same environment as
the handler's; the events are parsed by the function's own parser.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests

from tests import factories as f
from tests.factories import BUCKET, TABLE, VERSIONED, World, failures
from uploader.config import Config
from uploader.events import parse_event
from uploader.models import Outcome, Status
from uploader.retry import Deadline
from uploader.runtime import build_processor


def serves(record: dict[str, Any], body: bytes) -> bool:
    """The record's downloadUrl serves exactly these bytes."""
    return requests.get(record["downloadUrl"], timeout=10).content == body


def run(event: dict[str, Any]) -> list[Outcome]:
    """One invocation in a container of its own (a processor of its own)."""
    processor = build_processor(Config.from_env())
    return processor.process_messages(parse_event(event).messages, Deadline(lambda: 60_000, 3.0))


def in_parallel(*events: dict[str, Any], stagger: float = 0.0) -> list[list[Outcome]]:
    results: list[list[Outcome]] = [[] for _ in events]

    def target(i: int, event: dict[str, Any]) -> None:
        results[i] = run(event)

    threads = [threading.Thread(target=target, args=(i, e)) for i, e in enumerate(events)]
    for thread in threads:
        thread.start()
        time.sleep(stagger)
    for thread in threads:
        thread.join(60)
    return results


# 1 ---------------------------------------------------------------------------------------------------------


def test_delete_then_identical_reput_delivered_out_of_order_ends_uploaded(world: World) -> None:
    e1 = world.created("k1", b"same bytes")
    world.invoke(f.s3_notification(e1))
    world.s3.delete_object(Bucket=BUCKET, Key="k1")
    e2 = world.removed("k1")
    e3 = world.created("k1", b"same bytes")

    world.invoke(f.s3_notification(e3))
    world.invoke(f.s3_notification(e2))

    record = world.existing_record("k1")
    assert record["status"] == "UPLOADED" and serves(record, b"same bytes")


# 2 ---------------------------------------------------------------------------------------------------------


def test_a_plain_message_racing_a_delete_never_resurrects_the_object(world: World) -> None:
    world.kie.script("400")
    world.invoke(f.s3_notification(world.created("k2")))
    assert world.existing_record("k2")["status"] == "FAILED"
    world.kie.set_faults(latency_seconds=1.5)
    retry, _ = world.sqs(f.plain_message(BUCKET, "k2"))  # what retry-failed sends

    def delete_while_in_flight() -> None:
        time.sleep(0.5)
        world.s3.delete_object(Bucket=BUCKET, Key="k2")
        run(f.s3_notification(world.removed("k2")))

    deleter = threading.Thread(target=delete_while_in_flight)
    deleter.start()
    run(retry)
    deleter.join(30)

    record = world.existing_record("k2")
    assert record["status"] == "DELETED" and "downloadUrl" not in record


# 3 ---------------------------------------------------------------------------------------------------------


def test_an_object_replaced_before_its_event_is_handled_gets_the_current_bytes(world: World) -> None:
    first = world.created("k3", b"first write")
    world.put("k3", b"second write")  # S3 may send one notification for both writes: the first's

    world.invoke(f.s3_notification(first))

    record = world.existing_record("k3")
    assert record["status"] == "UPLOADED" and serves(record, b"second write")


# 4 ---------------------------------------------------------------------------------------------------------


def test_a_version_put_right_after_a_backfill_message_is_uploaded(world: World) -> None:
    world.put("k4", b"old", bucket=VERSIONED)
    plain, _ = world.sqs(f.plain_message(VERSIONED, "k4"))
    world.invoke(plain)
    # The new version's event: same second as the backfill, and S3's clock a little behind the function's.
    facts = world.put("k4", b"new", bucket=VERSIONED)
    event_time = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 2))
    record_of_event = f.s3_record(
        VERSIONED, "k4", sequencer=world.next_sequencer(), event_time=event_time, **facts
    )

    world.invoke(f.s3_notification(record_of_event))

    record = world.existing_record("k4", VERSIONED)
    assert record["versionId"] == facts["version_id"] and serves(record, b"new")


# 5, 5b, 5c -------------------------------------------------------------------------------------------------


def test_a_redriven_old_event_after_ttl_never_records_the_old_version(world: World) -> None:
    old = world.created("k5", b"old", bucket=VERSIONED)
    world.invoke(f.s3_notification(old))
    new = world.created("k5", b"new", bucket=VERSIONED)
    world.invoke(f.s3_notification(new))
    world.ddb.delete_item(TableName=TABLE, Key={"pk": {"S": f"s3://{VERSIONED}/k5"}})  # what TTL does

    world.invoke(f.s3_notification(old))  # redriven from the DLQ

    record = world.existing_record("k5", VERSIONED)
    assert record["versionId"] == new["s3"]["object"]["versionId"] and serves(record, b"new")


def test_deleting_a_noncurrent_version_never_hides_the_current_one(world: World) -> None:
    v1 = world.created("k5b", b"v1", bucket=VERSIONED)
    world.invoke(f.s3_notification(v1))
    v2 = world.created("k5b", b"v2", bucket=VERSIONED)
    v1_id = v1["s3"]["object"]["versionId"]
    world.s3.delete_object(Bucket=VERSIONED, Key="k5b", VersionId=v1_id)
    removal = world.removed("k5b", bucket=VERSIONED, version_id=v1_id)

    world.invoke(f.s3_notification(removal))  # delivered before V2's event
    world.invoke(f.s3_notification(v2))

    record = world.existing_record("k5b", VERSIONED)
    assert record["status"] == "UPLOADED" and record["versionId"] == v2["s3"]["object"]["versionId"]
    assert serves(record, b"v2")


def test_a_plain_message_after_a_delete_keeps_deleted(world: World) -> None:
    world.invoke(f.s3_notification(world.created("k5c")))
    world.s3.delete_object(Bucket=BUCKET, Key="k5c")
    world.invoke(f.s3_notification(world.removed("k5c")))
    plain, _ = world.sqs(f.plain_message(BUCKET, "k5c"))

    world.invoke(plain)

    assert world.existing_record("k5c")["status"] == "DELETED"


def test_a_delete_marker_counts_as_gone(world: World) -> None:
    world.invoke(f.s3_notification(world.created("marker", bucket=VERSIONED)))
    world.s3.delete_object(Bucket=VERSIONED, Key="marker")  # versioned: a delete marker becomes current
    plain, _ = world.sqs(f.plain_message(VERSIONED, "marker"))

    world.invoke(plain)

    record = world.existing_record("marker", VERSIONED)
    assert record["status"] == "DELETED" and "downloadUrl" not in record


# 10 --------------------------------------------------------------------------------------------------------


def test_a_key_named_dot_or_dot_dot_is_uploaded(world: World) -> None:
    world.invoke(f.s3_notification(world.created("dir/."), world.created("dir/..")))

    for key in ("dir/.", "dir/.."):
        record = world.existing_record(key)
        assert record["status"] == "UPLOADED" and record["fileName"] == "object"


# 11 --------------------------------------------------------------------------------------------------------


def test_a_forced_message_uploads_again_under_a_new_path_and_the_old_url_still_serves(world: World) -> None:
    world.invoke(f.s3_notification(world.created("k11", b"payload")))
    before = world.existing_record("k11")
    forced, _ = world.sqs({**f.plain_message(BUCKET, "k11"), "force": True, "requestId": "r-1"})

    assert failures(world.invoke(forced)) == []

    after = world.existing_record("k11")
    assert world.kie.upload_count == 2
    assert after["uploadPath"] != before["uploadPath"] and after["downloadUrl"] != before["downloadUrl"]
    assert serves(after, b"payload") and serves(before, b"payload")
    # The same force message delivered again is a duplicate: no third upload.
    world.invoke(forced)
    assert world.kie.upload_count == 2


# 12 --------------------------------------------------------------------------------------------------------


def test_concurrent_deliveries_of_the_same_event_call_kie_once(world: World) -> None:
    world.kie.set_faults(latency_seconds=1.0)
    event = f.s3_notification(world.created("k12", b"once"))

    first, second = in_parallel(event, event, stagger=0.2)

    assert world.kie.upload_count == 1
    assert {first[0].status, second[0].status} == {Status.UPLOADED, Status.IN_PROGRESS}
    record = world.existing_record("k12")
    assert record["status"] == "UPLOADED" and "claimOwner" not in record and serves(record, b"once")


def test_a_crashed_holder_never_blocks_the_object(world: World) -> None:
    # A claim left by an invocation that died, its lease over: the next delivery takes the object over.
    world.put("k12b", b"after a crash")
    world.ddb.put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": f"s3://{BUCKET}/k12b"},
            "rev": {"N": "1"},
            "claimOwner": {"S": "dead-invocation"},
            "claimUntil": {"N": str(int(time.time() * 1000) - 1)},
        },
    )
    plain, _ = world.sqs(f.plain_message(BUCKET, "k12b"))

    assert failures(world.invoke(plain)) == []

    record = world.existing_record("k12b")
    assert record["status"] == "UPLOADED" and serves(record, b"after a crash")


def test_a_failed_forced_upload_keeps_the_live_url(world: World) -> None:
    world.invoke(f.s3_notification(world.created("keep")))
    before = world.existing_record("keep")
    world.kie.script("500", "500", "500")
    forced, ids = world.sqs({**f.plain_message(BUCKET, "keep"), "force": True})

    assert failures(world.invoke(forced)) == ids  # delivered again

    after = world.existing_record("keep")
    assert after["status"] == "UPLOADED" and after["downloadUrl"] == before["downloadUrl"]
    assert "claimOwner" not in after
