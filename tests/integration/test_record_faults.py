"""The record stays true under faults: each reproduction of issue 21, against ministack (through the fault
proxy of tests/faultproxy.py where S3 or DynamoDB must fail) and the kie.ai emulator.

Every test here failed on the code before the fix (322d5b3); the docstrings say how.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import requests

from tests import factories as f
from tests.factories import BUCKET, TABLE, VERSIONED, World, failures
from tests.faultproxy import FaultProxy, Rule, before, fail, reset
from uploader.config import Config
from uploader.events import parse_event
from uploader.models import Outcome
from uploader.retry import Deadline
from uploader.runtime import build_processor

#: The emulator's (and the function's) retention in the integration world: kie.ai's 3 days.
RETENTION = 259_200


def serves(record: dict[str, Any], body: bytes) -> bool:
    return requests.get(record["downloadUrl"], timeout=10).content == body


def run(event: dict[str, Any]) -> list[Outcome]:
    """One invocation in a container of its own."""
    processor = build_processor(Config.from_env())
    return processor.process_messages(parse_event(event).messages, Deadline(lambda: 60_000, 3.0))


def set_attributes(world: World, key: str, bucket: str = BUCKET, **values: Any) -> None:
    """Change a record by hand (a clock that moved on, a claim left behind)."""
    names = {f"#{name}": name for name in values}
    av = {f":{name}": ({"N": str(v)} if isinstance(v, int) else {"S": str(v)}) for name, v in values.items()}
    world.ddb.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"s3://{bucket}/{key}"}},
        UpdateExpression="SET " + ", ".join(f"#{n} = :{n}" for n in values),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=av,
    )


def refresh(world: World, bucket: str = BUCKET) -> dict[str, Any]:
    answer: dict[str, Any] = world.invoke(
        {"refresh": {"prefixes": [f"s3://{bucket}/"], "expiringWithinSeconds": RETENTION - 300}}
    )
    return answer


# 1 ---------------------------------------------------------------------------------------------------------


def test_a_failed_head_object_never_stores_the_events_sequencer(
    world: World, fault_proxy: FaultProxy
) -> None:
    """Before: the failure path stored the delete event's sequencer although S3 was never read, so the
    redelivery was judged covered (SUPERSEDED) and the record stayed UPLOADED for a deleted object."""
    world.invoke(f.s3_notification(world.created("gone.txt")))
    assert world.existing_record("gone.txt")["status"] == "UPLOADED"
    world.s3.delete_object(Bucket=BUCKET, Key="gone.txt")
    delete, _ = world.sqs(f.s3_notification(world.removed("gone.txt")))

    fault_proxy.add(Rule("s3", "HeadObject", fail(503, "SlowDown"), key="gone.txt", times=None))
    assert failures(world.invoke(delete)) == ["m0"]  # delivered again
    fault_proxy.clear()
    assert failures(world.invoke(delete)) == []

    record = world.existing_record("gone.txt")
    assert record["status"] == "DELETED" and "downloadUrl" not in record


def test_a_failed_head_object_during_an_overwrite_still_ends_with_the_new_bytes(
    world: World, fault_proxy: FaultProxy
) -> None:
    world.invoke(f.s3_notification(world.created("over.txt", b"old bytes")))
    overwrite, _ = world.sqs(f.s3_notification(world.created("over.txt", b"new bytes")))

    fault_proxy.add(Rule("s3", "HeadObject", fail(500, "InternalError"), key="over.txt", times=None))
    assert failures(world.invoke(overwrite)) == ["m0"]
    fault_proxy.clear()
    world.invoke(overwrite)

    record = world.existing_record("over.txt")
    assert record["status"] == "UPLOADED" and serves(record, b"new bytes")


# 2 ---------------------------------------------------------------------------------------------------------


def test_unversioned_a_b_a_while_kie_fetches_never_records_bs_bytes_under_as_etag(world: World) -> None:
    """Before: kie.ai fetched B (put between the presign and the fetch), A's bytes were put back (same
    ETag), and the record said UPLOADED with A's ETag and a URL serving B."""
    event = f.s3_notification(world.created("aba.txt", b"A bytes"))
    world.kie.on_fetch(lambda _url: world.put("aba.txt", b"B bytes other"))
    world.kie.after_fetch(lambda _url: world.put("aba.txt", b"A bytes"))

    world.invoke(event)

    record = world.existing_record("aba.txt")
    current = world.s3.head_object(Bucket=BUCKET, Key="aba.txt")
    assert record["status"] == "UPLOADED" and record["etag"] == current["ETag"].strip('"')
    assert serves(record, b"A bytes")
    assert world.kie.upload_count == 2  # the first upload (of B's bytes) was never recorded


def test_unversioned_overwrite_between_presign_and_fetch_is_uploaded_again(world: World) -> None:
    event = f.s3_notification(world.created("b.txt", b"first"))
    world.kie.on_fetch(lambda _url: world.put("b.txt", b"second, longer"))

    world.invoke(event)

    record = world.existing_record("b.txt")
    assert record["status"] == "UPLOADED" and serves(record, b"second, longer")
    assert record["size"] == str(len(b"second, longer"))


def test_a_versioned_object_is_pinned_and_needs_no_second_read(world: World, fault_proxy: FaultProxy) -> None:
    event = f.s3_notification(world.created("v.txt", b"version one", bucket=VERSIONED))
    world.kie.on_fetch(lambda _url: world.put("v.txt", b"version two", bucket=VERSIONED))

    run(event)

    record = world.existing_record("v.txt", VERSIONED)
    assert record["status"] == "UPLOADED" and serves(record, b"version one")  # the version it names
    assert fault_proxy.count("s3", "HeadObject") == 1


# 3 ---------------------------------------------------------------------------------------------------------


def test_resolve_gives_no_url_it_could_not_confirm(world: World, fault_proxy: FaultProxy) -> None:
    """Before: status UPLOADED, uploaded false, error null, and a URL serving the old bytes."""
    world.invoke(f.s3_notification(world.created("r.txt", b"old")))
    world.put("r.txt", b"new")  # its event is not delivered yet
    fault_proxy.add(Rule("s3", "HeadObject", fail(503, "SlowDown"), key="r.txt", times=None))

    (result,) = world.invoke({"resolve": [f"s3://{BUCKET}/r.txt"], "minValidSeconds": 0})["results"]

    assert result["downloadUrl"] is None and result["uploaded"] is False
    assert "could not confirm the object's current version" in result["error"]
    assert "503" in result["error"]  # S3 answers a HEAD without a body: the status is all there is


def test_resolve_behind_a_dead_holders_claim_gives_no_url(world: World) -> None:
    """Before: the resolve waited out its 6 s, then handed out the record's URL with error null."""
    world.invoke(f.s3_notification(world.created("held.txt", b"old")))
    world.put("held.txt", b"new")
    until = int(time.time() * 1000) + 120_000
    set_attributes(world, "held.txt", claimOwner="dead-holder", claimUntil=until, claimWaits="x")

    from uploader import handler as handler_module

    request = {"resolve": [f"s3://{BUCKET}/held.txt"], "minValidSeconds": 0}
    started = time.monotonic()
    answer = handler_module.handler(request, f.CountdownContext(remaining_ms=9_000))  # 6 s to work

    assert time.monotonic() - started < 9

    (result,) = answer["results"]
    assert result["downloadUrl"] is None and result["error"]


# 4 ---------------------------------------------------------------------------------------------------------


def test_keep_alive_retries_a_refresh_that_failed_across_the_expiry(world: World) -> None:
    """Before: round 2 wrote FAILED and dropped the record from the expiry index; round 3, with kie.ai back,
    found nothing due and the record stayed FAILED forever."""
    world.invoke(f.s3_notification(world.created("ka.txt", b"keep me")))
    set_attributes(world, "ka.txt", expiresAt=int(time.time()) + 120)  # due, still live
    world.kie.set_faults(error_rate=1.0)

    first = refresh(world)
    assert (first["due"], first["failed"]) == (1, 1)
    assert world.existing_record("ka.txt")["status"] == "UPLOADED"  # still live: kept

    set_attributes(world, "ka.txt", expiresAt=int(time.time()) - 1)  # kie.ai deleted the file
    second = refresh(world)
    assert (second["due"], second["failed"]) == (1, 1)
    failed = world.existing_record("ka.txt")
    assert failed["status"] == "FAILED" and "downloadUrl" not in failed

    world.kie.set_faults()  # kie.ai is back
    third = refresh(world)
    assert (third["due"], third["refreshed"]) == (1, 1)
    record = world.existing_record("ka.txt")
    assert record["status"] == "UPLOADED" and serves(record, b"keep me")


def test_a_refresh_bumped_by_an_event_whose_upload_fails_is_finished_by_the_next_round(world: World) -> None:
    """Before: the event was acknowledged (IN_PROGRESS), the refresh wrote FAILED for the new version, and
    nothing anywhere would retry it."""
    world.invoke(f.s3_notification(world.created("bump.txt", b"v1", bucket=VERSIONED)))
    set_attributes(world, "bump.txt", VERSIONED, expiresAt=int(time.time()) + 120)
    new_version = f.s3_notification(world.created("bump.txt", b"v2", bucket=VERSIONED))
    world.kie.set_faults(error_rate=1.0, latency_seconds=0.8)

    refresher = threading.Thread(target=refresh, args=(world, VERSIONED))
    refresher.start()
    time.sleep(0.4)  # the refresh holds the claim and waits for kie.ai
    (bumped,) = run(new_version)
    refresher.join(60)
    assert bumped.status.value == "IN_PROGRESS"
    assert world.existing_record("bump.txt", VERSIONED)["status"] == "FAILED"

    world.kie.set_faults()
    refresh(world, VERSIONED)

    record = world.existing_record("bump.txt", VERSIONED)
    assert record["status"] == "UPLOADED" and serves(record, b"v2")


def test_a_refresh_bumped_by_a_delete_that_then_cannot_read_s3_keeps_no_live_url(
    world: World, fault_proxy: FaultProxy
) -> None:
    """Found by `make model` (2026-12-05, history 153 of a shard at 13:14; first seen at 07:38 as history
    190, then without a trace): a refresh held the claim, the object was deleted and its event, finding the
    claim, bumped it and was acknowledged; the refresh's next HeadObject failed, and the failure kept the
    record's upload as live: UPLOADED, with a URL, for a deleted object, and no message left to retry it."""
    world.invoke(f.s3_notification(world.created("bumped.txt", b"soon gone")))
    set_attributes(world, "bumped.txt", expiresAt=int(time.time()) + 120)  # due, still live
    bumps: list[str] = []

    def delete_and_deliver(_request: Any) -> None:
        world.s3.delete_object(Bucket=BUCKET, Key="bumped.txt")
        (outcome,) = run(f.s3_notification(world.removed("bumped.txt")))
        bumps.append(outcome.status.value)

    fault_proxy.add(Rule("s3", "HeadObject", before(delete_and_deliver), key="bumped.txt", times=1))
    fault_proxy.add(Rule("s3", "HeadObject", fail(503, "SlowDown"), key="bumped.txt", times=None))
    answer = refresh(world)
    fault_proxy.clear()

    assert bumps == ["IN_PROGRESS"]  # acknowledged: the refresh promised to read S3 again
    assert (answer["due"], answer["failed"]) == (1, 1)
    record = world.existing_record("bumped.txt")
    assert record["status"] == "FAILED" and "downloadUrl" not in record and record["retryable"] is True
    assert refresh(world)["deleted"] == 1  # the next keep-alive round finishes the work
    assert world.existing_record("bumped.txt")["status"] == "DELETED"


def test_a_kie_attempt_that_timed_out_never_overwrites_the_recorded_file(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by `make model` (2026-12-05, history 135 of a shard, `uploaded-bytes`): kie.ai stalled past the
    client's timeout and handled the call anyway (as a gateway does); the retry, under the same uploadPath,
    uploaded A and was recorded; then B was put, and the stalled attempt fetched the unversioned URL (B's
    bytes) and stored them under that same path: the record named A, its URL served B."""
    monkeypatch.setenv("KIE_TIMEOUT_SECONDS", "1")
    world.kie.set_faults(timeout_seconds=3.0)
    world.kie.script("timeout")

    (outcome,) = run(f.s3_notification(world.created("late.txt", b"A bytes")))
    world.put("late.txt", b"B bytes, newer")  # its event is not delivered yet
    assert outcome.status.value == "UPLOADED" and outcome.attempts == 2
    deadline = time.monotonic() + 10
    while len(world.kie.stored_paths) < 2 and time.monotonic() < deadline:  # the stalled attempt lands
        time.sleep(0.1)

    assert len(world.kie.stored_paths) == 2  # each attempt under a path of its own
    record = world.existing_record("late.txt")
    assert serves(record, b"A bytes")


# 5 ---------------------------------------------------------------------------------------------------------


def test_a_re_created_record_starts_a_new_generation(world: World) -> None:
    """Before: a record re-created after a removal counted rev from 1 again under the same identity, so two
    different changes shared an eventId."""
    world.invoke(f.s3_notification(world.created("life.txt")))
    first = world.existing_record("life.txt")
    world.ddb.delete_item(TableName=TABLE, Key={"pk": {"S": f"s3://{BUCKET}/life.txt"}})  # TTL purge
    world.invoke(f.s3_notification(world.created("life.txt", b"again")))
    second = world.existing_record("life.txt")

    assert first["rev"] == second["rev"]
    assert first["generation"] < second["generation"]  # time-ordered


# 6 ---------------------------------------------------------------------------------------------------------


def test_a_key_with_a_lone_surrogate_is_a_malformed_message(
    world: World, fault_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: it passed parsing, failed at DynamoDB on every receive, and its log line was lost to a
    UnicodeEncodeError."""
    body = '{"bucket": "photos", "key": "\\ud800lone"}'
    assert json.loads(body)["key"] == "\ud800lone"
    event, _ = world.sqs(body)

    answer = world.invoke(event)

    assert failures(answer) == ["m0"]  # malformed: to the DLQ, never lost
    assert fault_proxy.count("dynamodb") == 0 and fault_proxy.count("s3") == 0
    rejected = [r for r in caplog.records if r.getMessage() == "message rejected"]
    assert len(rejected) == 1 and "lone surrogate" in rejected[0].__dict__["reason"]


# 7 ---------------------------------------------------------------------------------------------------------


def test_a_key_gone_after_its_events_were_seen_is_deleted_not_skipped(world: World) -> None:
    """Before: the plain message's holder, bumped by the put's and the delete's events, found the object
    gone and wrote SKIPPED ("does not exist") although events had been seen for the key."""
    put_event = f.s3_notification(world.created("race.txt"))
    plain, _ = world.sqs(f.plain_message(BUCKET, "race.txt"))
    world.kie.set_faults(latency_seconds=1.0)
    holder = threading.Thread(target=run, args=(plain,))
    holder.start()
    time.sleep(0.3)
    run(put_event)
    world.s3.delete_object(Bucket=BUCKET, Key="race.txt")
    run(f.s3_notification(world.removed("race.txt")))
    holder.join(60)

    record = world.existing_record("race.txt")
    assert record["status"] == "DELETED" and "downloadUrl" not in record


# The write-free check of a message reads the record again after reading S3 (docs/architecture.md, rule 6) --


def test_a_message_handled_after_the_last_change_leaves_the_record_true(
    world: World, fault_proxy: FaultProxy
) -> None:
    """Between the message's first read of the record (UPLOADED A) and its HeadObject, B is put and handled
    (the record says B), then A's bytes are put back (A's ETag again; that event is not delivered: the
    message, a backfill, is the last word). A check that compared S3's reading with the record read *before*
    it would find "A, as recorded" and write nothing, leaving B's URL for A's bytes."""
    world.invoke(f.s3_notification(world.created("c.txt", b"A bytes")))

    def overwrite_twice(_request: Any) -> None:
        run(f.s3_notification(world.created("c.txt", b"B bytes, other")))
        assert world.existing_record("c.txt")["size"] == str(len(b"B bytes, other"))
        world.put("c.txt", b"A bytes")

    fault_proxy.add(Rule("s3", "HeadObject", before(overwrite_twice), key="c.txt", times=1))
    plain, _ = world.sqs(f.plain_message(BUCKET, "c.txt"))
    assert failures(world.invoke(plain)) == []

    record = world.existing_record("c.txt")
    assert record["status"] == "UPLOADED" and serves(record, b"A bytes")
    assert record["size"] == str(len(b"A bytes"))


# URLs are verified, not assumed (kie.ai documents 3 days on one page and 24 hours on another) -------------


def _age(world: World, key: str, seconds: int) -> None:
    """Make the record's upload ``seconds`` old, as if time had passed (kie.ai's emulator keeps its file)."""
    uploaded = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - seconds))
    set_attributes(world, key, uploadedAt=uploaded, expiresAt=int(time.time()) - seconds + RETENTION)


def test_resolve_checks_a_url_older_than_a_day_and_uploads_again_when_kie_lost_it(world: World) -> None:
    world.invoke(f.s3_notification(world.created("old.txt", b"old bytes")))
    _age(world, "old.txt", 25 * 3600)
    url = world.existing_record("old.txt")["downloadUrl"]

    (kept,) = world.invoke({"resolve": [f"s3://{BUCKET}/old.txt"], "minValidSeconds": 0})["results"]
    assert kept["downloadUrl"] == url and kept["uploaded"] is False  # checked: still served

    world.kie.reset()  # kie.ai deleted its files after 24 hours
    assert requests.get(url, timeout=5).status_code == 404
    (fresh,) = world.invoke({"resolve": [f"s3://{BUCKET}/old.txt"], "minValidSeconds": 0})["results"]

    assert fresh["uploaded"] is True and fresh["downloadUrl"] != url
    assert requests.get(fresh["downloadUrl"], timeout=5).content == b"old bytes"


def test_a_url_younger_than_a_day_is_not_checked(world: World) -> None:
    world.invoke(f.s3_notification(world.created("young.txt", b"young")))
    world.kie.reset()  # even if kie.ai lost it, nothing asks kie.ai before a day has passed
    (result,) = world.invoke({"resolve": [f"s3://{BUCKET}/young.txt"], "minValidSeconds": 0})["results"]
    assert result["uploaded"] is False and world.kie.calls == []


def test_the_keep_alive_round_checks_each_url_once_after_a_day(world: World) -> None:
    for key in ("crossed.txt", "not-yet.txt", "checked-before.txt"):
        world.invoke(f.s3_notification(world.created(key, key.encode())))
    _age(world, "crossed.txt", 24 * 3600 + 600)  # crossed a day within the last hour's window
    _age(world, "not-yet.txt", 23 * 3600)
    _age(world, "checked-before.txt", 26 * 3600)  # an earlier round's window
    world.kie.reset()  # kie.ai deleted every file

    request = {"prefixes": [f"s3://{BUCKET}/"], "expiringWithinSeconds": 3600, "verifyWindowSeconds": 3600}
    answer = world.invoke({"refresh": request})

    assert (answer["due"], answer["checked"], answer["replaced"]) == (0, 1, 1)
    assert serves(world.existing_record("crossed.txt"), b"crossed.txt")


def test_a_failed_head_object_for_a_key_that_never_existed_leaves_no_record(
    world: World, fault_proxy: FaultProxy
) -> None:
    """Found by the model test: the failure wrote FAILED for a key nothing said had an object, and a later
    404 turned it into DELETED ("Object Deleted" published for an object that never existed)."""
    plain, _ = world.sqs(f.plain_message(BUCKET, "never.txt"))
    fault_proxy.add(Rule("s3", "HeadObject", fail(503, "SlowDown"), key="never.txt", times=None))

    assert failures(world.invoke(plain)) == ["m0"]  # delivered again: nothing lost
    assert world.record("never.txt") is None
    fault_proxy.clear()
    assert failures(world.invoke(plain)) == []
    assert world.record("never.txt") is None


def test_a_delete_marker_on_a_key_that_never_had_an_object_leaves_no_record(
    world: World, fault_proxy: FaultProxy
) -> None:
    """Found by `make model` (history 597 of a shard, 2026-12-05): on a versioned bucket, deleting a key that
    never had an object creates a delete marker and S3 announces it; its delivery (HeadObject failing, then
    answering 404) and the removal of the marker wrote DELETED, a record for an object that never existed.
    A removal event proves nothing; only a creation event says an object was there."""
    key = "never-put.txt"
    marker = world.s3.delete_object(Bucket=VERSIONED, Key=key)
    assert marker.get("DeleteMarker") is True  # S3 (ministack) made a delete marker for a key with no object
    created_marker = f.s3_notification(
        world.removed(
            key, VERSIONED, event_name="ObjectRemoved:DeleteMarkerCreated", version_id=marker["VersionId"]
        )
    )
    fault_proxy.add(Rule("s3", "HeadObject", fail(503, "SlowDown"), key=key, times=None))
    run(created_marker)
    assert world.record(key, VERSIONED) is None
    fault_proxy.clear()
    run(created_marker)
    assert world.record(key, VERSIONED) is None
    world.s3.delete_object(Bucket=VERSIONED, Key=key, VersionId=marker["VersionId"])
    run(f.s3_notification(world.removed(key, VERSIONED, version_id=marker["VersionId"])))
    assert world.record(key, VERSIONED) is None


def test_a_resolve_that_cannot_read_s3_leaves_a_permanent_refusal_as_it_was(
    world: World, fault_proxy: FaultProxy
) -> None:
    """Found by `make model` (history 701 of a shard, 2026-12-05): a resolve whose HeadObject failed
    (connection reset) wrote FAILED/transient over a permanent refusal (the object over MAX_OBJECT_BYTES),
    so the record said less than it knew, and the next keep-alive round retried the object and counted a
    failure. A failure that read nothing of S3, with no event bringing news, leaves the verdict alone."""
    world.invoke(f.s3_notification(world.created("big.txt", b"x" * 1216)))
    before_ = world.existing_record("big.txt")
    assert before_["status"] == "FAILED" and before_["errorKind"] == "permanent"
    fault_proxy.add(Rule("s3", "HeadObject", reset(), key="big.txt", times=None))

    (result,) = world.invoke({"resolve": [f"s3://{BUCKET}/big.txt"], "minValidSeconds": 0})["results"]
    plain, _ = world.sqs(f.plain_message(BUCKET, "big.txt"))
    assert failures(world.invoke(plain)) == ["m0"]  # the message is delivered again: nothing lost
    fault_proxy.clear()

    assert result["downloadUrl"] is None and "HeadObject" in result["error"]
    after = world.existing_record("big.txt")
    assert (after["status"], after["errorKind"], after["error"]) == ("FAILED", "permanent", before_["error"])
    assert refresh(world)["due"] == 0


def test_an_event_that_cannot_read_s3_marks_a_refused_object_for_a_retry(
    world: World, fault_proxy: FaultProxy
) -> None:
    """The other side of the rule above: an overwrite's event brings news, so its failure is recorded as
    transient and due, and a keep-alive round uploads the new bytes even if the message is lost."""
    world.invoke(f.s3_notification(world.created("shrunk.txt", b"x" * 1216)))
    overwrite, _ = world.sqs(f.s3_notification(world.created("shrunk.txt", b"small now")))
    fault_proxy.add(Rule("s3", "HeadObject", fail(503, "SlowDown"), key="shrunk.txt", times=None))
    assert failures(world.invoke(overwrite)) == ["m0"]
    fault_proxy.clear()

    assert world.existing_record("shrunk.txt")["errorKind"] == "transient"
    assert refresh(world)["refreshed"] == 1
    record = world.existing_record("shrunk.txt")
    assert record["status"] == "UPLOADED" and serves(record, b"small now")


def test_a_resolve_whose_record_read_fails_answers_without_a_url(
    world: World, fault_proxy: FaultProxy
) -> None:
    """Found by the model test: the read of the record after processing raised out of the request."""
    world.invoke(f.s3_notification(world.created("answer.txt")))
    # The resolve reads the record (GetItem) before and after S3: fail every read after the first.
    fault_proxy.add(Rule("dynamodb", "GetItem", fail(500), key="answer.txt", times=None, when=_after_first()))

    (result,) = world.invoke({"resolve": [f"s3://{BUCKET}/answer.txt"], "minValidSeconds": 0})["results"]

    assert result["downloadUrl"] is None and "could not" in result["error"]


def _after_first() -> Any:
    seen = {"n": 0}

    def when(_request: Any) -> bool:
        seen["n"] += 1
        return seen["n"] > 1

    return when


def test_a_version_deleted_while_kie_fetches_it_leaves_the_key_with_its_previous_version(
    world: World,
) -> None:
    """Found by the model test: kie.ai could not fetch the deleted version, the stream fallback's GetObject by
    version id answered 404, and the delivery wrote DELETED although the key still had a version."""
    world.put("ver.txt", b"version one", bucket=VERSIONED)
    second = world.created("ver.txt", b"version two", bucket=VERSIONED)
    v2 = second["s3"]["object"]["versionId"]
    world.kie.on_fetch(lambda _url: world.s3.delete_object(Bucket=VERSIONED, Key="ver.txt", VersionId=v2))

    run(f.s3_notification(second))

    record = world.existing_record("ver.txt", VERSIONED)
    assert record["status"] == "UPLOADED" and serves(record, b"version one")
