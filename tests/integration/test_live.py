"""The live URL: ``resolve`` requests (a synchronous invocation) and ``refresh`` rounds, through the handler,
against ministack and the kie.ai emulator."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from tests import factories as f
from tests.factories import BUCKET, OTHER, TABLE, VERSIONED, World
from uploader.config import Config
from uploader.runtime import build_processor
from uploader.table import RecordTable

RETENTION = 259_200


def serves(url: str, body: bytes) -> bool:
    return requests.get(url, timeout=10).content == body


def resolve(world: World, *uris: str, min_valid: Any = None) -> list[dict[str, Any]]:
    payload: dict[str, Any] = {"resolve": list(uris)}
    if min_valid is not None:
        payload["minValidSeconds"] = min_valid
    answer = world.invoke(payload)
    assert "error" not in answer, answer
    results: list[dict[str, Any]] = answer["results"]
    assert [r["s3Uri"] for r in results] == list(uris)
    return results


def test_a_new_object_is_uploaded_then_reused_without_calling_kie(world: World) -> None:
    world.put("new.png", b"bytes of new")

    (first,) = resolve(world, f"s3://{BUCKET}/new.png")
    (again,) = resolve(world, f"s3://{BUCKET}/new.png")

    assert first["status"] == "UPLOADED" and first["uploaded"] is True and first["error"] is None
    assert serves(first["downloadUrl"], b"bytes of new")
    assert first["expiresAt"] > time.time() + RETENTION - 60
    assert again == {**first, "uploaded": False}
    assert world.kie.upload_count == 1


def test_a_url_with_less_time_left_than_asked_is_uploaded_again_and_the_old_one_still_serves(
    world: World,
) -> None:
    world.env(KIE_RETENTION_SECONDS="3600")  # kie.ai kept files 1 h when this URL was made
    world.put("short.png", b"short")
    (first,) = resolve(world, f"s3://{BUCKET}/short.png")
    world.env(KIE_RETENTION_SECONDS="7200")

    (longer,) = resolve(world, f"s3://{BUCKET}/short.png", min_valid=5000)

    assert longer["uploaded"] is True and longer["downloadUrl"] != first["downloadUrl"]
    assert serves(longer["downloadUrl"], b"short") and serves(first["downloadUrl"], b"short")
    assert world.kie.upload_count == 2


@pytest.mark.parametrize("min_valid", [-1, RETENTION - 299, "3600", 1.5, True])
def test_min_valid_seconds_out_of_range_is_a_clear_error(world: World, min_valid: Any) -> None:
    answer = world.invoke({"resolve": [f"s3://{BUCKET}/x"], "minValidSeconds": min_valid})

    expected = f"minValidSeconds must be a whole number of seconds from 0 to {RETENTION - 300}"
    assert answer == {"error": expected}
    assert world.kie.upload_count == 0


def test_min_valid_zero_and_the_maximum_are_accepted(world: World) -> None:
    world.put("edge.png")

    (zero,) = resolve(world, f"s3://{BUCKET}/edge.png", min_valid=0)
    (most,) = resolve(world, f"s3://{BUCKET}/edge.png", min_valid=RETENTION - 300)

    assert zero["status"] == most["status"] == "UPLOADED"
    assert most["uploaded"] is False  # the fresh upload has the whole retention left


def test_every_kind_of_result_comes_back_in_order_with_a_readable_error(world: World) -> None:
    world.put("ok.txt", b"ok")
    world.put("big.bin", b"x" * 1001)
    world.put("gone.txt")
    world.invoke(f.s3_notification(world.created("gone.txt")))
    world.s3.delete_object(Bucket=BUCKET, Key="gone.txt")
    world.put("elsewhere.txt", bucket=OTHER)

    results = resolve(
        world,
        f"s3://{BUCKET}/ok.txt",
        f"s3://{BUCKET}/gone.txt",
        f"s3://{BUCKET}/big.bin",
        f"s3://{OTHER}/elsewhere.txt",
        "https://not-s3/x",
        f"s3://{BUCKET}/never-existed.txt",
    )

    statuses = [(r["status"], r["uploaded"]) for r in results]
    assert statuses == [
        ("UPLOADED", True),
        ("DELETED", False),
        ("FAILED", False),
        ("NOT_WATCHED", False),
        ("INVALID", False),
        ("NOT_FOUND", False),
    ]
    errors = [r["error"] for r in results]
    assert errors[0] is None
    assert "deleted" in errors[1]
    assert "MAX_OBJECT_BYTES" in errors[2]
    assert "not watched" in errors[3] and "ALLOWED_BUCKETS" not in errors[3]
    assert "not an S3 URI" in errors[4]
    assert "does not exist" in errors[5]
    assert all(r["downloadUrl"] is None for r in results[1:])


def test_ten_uris_are_resolved_concurrently_and_eleven_are_refused(world: World) -> None:
    world.kie.set_faults(latency_seconds=1.0)
    uris = []
    for i in range(10):
        world.put(f"many/{i}.txt", f"file {i}".encode())
        uris.append(f"s3://{BUCKET}/many/{i}.txt")

    started = time.monotonic()
    results = resolve(world, *uris)
    elapsed = time.monotonic() - started

    assert all(r["status"] == "UPLOADED" and r["uploaded"] for r in results)
    assert all(serves(r["downloadUrl"], f"file {i}".encode()) for i, r in enumerate(results))
    assert elapsed < 10 * 1.0 * 0.5  # together, not one after the other
    assert "error" in world.invoke({"resolve": [*uris, f"s3://{BUCKET}/eleven"]})


def test_a_resolve_racing_an_event_of_the_same_key_waits_and_reuses_its_upload(world: World) -> None:
    world.kie.set_faults(latency_seconds=1.0)
    event = f.s3_notification(world.created("race.txt", b"raced"))
    processor = build_processor(Config.from_env())  # the event runs in another container
    from uploader.events import parse_event
    from uploader.retry import Deadline

    def deliver() -> None:
        processor.process_messages(parse_event(event).messages, Deadline(lambda: 60_000, 3.0))

    thread = threading.Thread(target=deliver)
    thread.start()
    time.sleep(0.3)  # the event holds the claim, its kie.ai call in flight
    (result,) = resolve(world, f"s3://{BUCKET}/race.txt")
    thread.join(30)

    assert result["status"] == "UPLOADED" and serves(result["downloadUrl"], b"raced")
    assert world.kie.upload_count == 1


def test_a_request_that_is_not_a_resolve_request_is_refused_clearly(world: World) -> None:
    assert world.invoke({"resolve": "s3://photos/a", "minValidSeconds": 10})["results"][0]["status"]
    assert world.invoke({"resolve": []}) == {"error": "resolve must be a list of 1 to 10 S3 URIs"}
    assert "refresh" in world.invoke({"refresh": "everything"})["error"]


# --- refresh ----------------------------------------------------------------------------------------------


def fake_live_record(world: World, key: str, expires_at: int, bucket: str = BUCKET) -> None:
    """A live UPLOADED record as the function writes it (many of them are cheaper written directly)."""
    world.ddb.put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": f"s3://{bucket}/{key}"},
            "bucket": {"S": bucket},
            "key": {"S": key},
            "status": {"S": "UPLOADED"},
            "versionId": {"S": "null"},
            "etag": {"S": "0"},
            "downloadUrl": {"S": "https://kie.invalid/old"},
            "expiresAt": {"N": str(expires_at)},
            "liveBucket": {"S": bucket},
            "rev": {"N": "1"},
        },
    )


def test_the_due_query_reads_only_what_is_due_however_large_the_table(world: World) -> None:
    now = int(time.time())
    for i in range(200):  # far from expiry: never read by a round
        fake_live_record(world, f"keep/fresh-{i}", now + RETENTION)
    for i in range(5):
        fake_live_record(world, f"keep/due-{i}", now + 600)
    fake_live_record(world, "other/due", now + 600)
    scanned: list[int] = []
    table = RecordTable(TABLE)
    table._client.meta.events.register(
        "after-call.dynamodb.Query", lambda parsed, **_: scanned.append(parsed.get("ScannedCount", 0))
    )

    due = list(table.due(BUCKET, until=now + 3600, pk_prefix=f"s3://{BUCKET}/keep/"))

    assert sorted(item["pk"] for item in due) == [f"s3://{BUCKET}/keep/due-{i}" for i in range(5)]
    assert sum(scanned) == 6  # the due records of the bucket: not the 206 records of the table


def test_a_refresh_round_uploads_what_is_due_and_records_deleted_objects(world: World) -> None:
    world.env(KIE_RETENTION_SECONDS="3600")  # uploaded when kie.ai kept files 1 h: due within 1 h
    for key in ("keep/a.txt", "keep/b.txt", "keep/gone.txt", "other/c.txt"):
        world.put(key, key.encode())
        world.invoke(f.s3_notification(world.created(key, key.encode())))
    before = {key: world.existing_record(key) for key in ("keep/a.txt", "keep/b.txt", "other/c.txt")}
    world.s3.delete_object(Bucket=BUCKET, Key="keep/gone.txt")
    calls = world.kie.upload_count
    world.env(KIE_RETENTION_SECONDS="7200")

    answer = world.invoke({"refresh": {"prefixes": [f"s3://{BUCKET}/keep/"], "expiringWithinSeconds": 3700}})

    expected = {"due": 3, "refreshed": 2, "deleted": 1, "failed": 0, "unchanged": 0, "left": 0}
    assert answer == {**expected, "checked": 0, "replaced": 0}
    assert world.kie.upload_count == calls + 2
    for key in ("keep/a.txt", "keep/b.txt"):
        after = world.existing_record(key)
        assert after["downloadUrl"] != before[key]["downloadUrl"]
        assert serves(after["downloadUrl"], key.encode())
        assert int(after["expiresAt"]) > int(before[key]["expiresAt"]) + 3000
    assert world.existing_record("keep/gone.txt")["status"] == "DELETED"
    assert world.existing_record("other/c.txt")["downloadUrl"] == before["other/c.txt"]["downloadUrl"]
    # Nothing is due right after: the next round uploads nothing.
    quiet = world.invoke({"refresh": {"prefixes": [f"s3://{BUCKET}/keep/"], "expiringWithinSeconds": 3600}})
    assert quiet["due"] == 0 and world.kie.upload_count == calls + 2


def test_a_record_leaves_the_expiry_index_when_it_is_no_longer_uploaded(world: World) -> None:
    world.invoke(f.s3_notification(world.created("idx.txt", bucket=VERSIONED)))
    assert world.existing_record("idx.txt", VERSIONED)["liveBucket"] == VERSIONED
    world.s3.delete_object(Bucket=VERSIONED, Key="idx.txt")

    world.invoke(f.s3_notification(world.removed("idx.txt", bucket=VERSIONED)))

    assert "liveBucket" not in world.existing_record("idx.txt", VERSIONED)
