"""The distributed backfill's child (``uploader.backfill.handler``) against ministack: a real queue, the real
records table written by the real uploader, the kie.ai emulator. What it enqueues is read back from SQS."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from tests.factories import BUCKET, OTHER, VERSIONED, LambdaContext, World, failures
from uploader import backfill

WATCHED = [{"bucket": b, "prefix": "incoming/", "suffix": ".jpg"} for b in (BUCKET, VERSIONED)]


@pytest.fixture
def queue(world: World) -> str:
    url = boto3.client("sqs").create_queue(QueueName="backfill-work")["QueueUrl"]
    world.env(QUEUE_URL=url, WATCHED_OBJECTS=json.dumps(WATCHED))
    backfill._enqueuer = None  # the environment changed: the next call builds its clients again
    return str(url)


def drain(queue_url: str) -> list[dict[str, Any]]:
    """Every message body on the queue (each deleted once read)."""
    sqs = boto3.client("sqs")
    bodies: list[dict[str, Any]] = []
    while True:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = answer.get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def batch(*items: dict[str, Any]) -> dict[str, Any]:
    """The child's input as an ItemBatcher hands it over (AWS)."""
    return {"Items": list(items)}


def item(key: str, etag: str | None = None, bucket: str = BUCKET, **extra: Any) -> dict[str, Any]:
    return {"bucket": bucket, "key": key, "etag": etag or "", "size": 9, "force": False, **extra}


def test_only_watched_keys_are_enqueued_and_the_others_counted(world: World, queue: str) -> None:
    keys = ["incoming/a.jpg", "incoming/b.jpg", "incoming/c.png", "other/d.jpg", "incoming/"]
    answer = backfill.handler(
        batch(*(item(k) for k in keys[:4]), item(keys[4], size=0), item("incoming/e.jpg", bucket=OTHER)),
        LambdaContext(),
    )
    assert answer == {
        "items": 6, "folders": 1, "notWatched": 3, "alreadyUploaded": 0, "enqueued": 2
    }  # fmt: skip
    assert sorted(body["key"] for body in drain(queue)) == ["incoming/a.jpg", "incoming/b.jpg"]


def test_one_item_without_a_batcher_is_a_batch_of_one(world: World, queue: str) -> None:
    # ministack ignores ItemBatcher: each child gets the ItemSelector's object itself.
    answer = backfill.handler(item("incoming/solo.jpg"), LambdaContext())
    assert answer["enqueued"] == 1
    assert drain(queue) == [{"bucket": BUCKET, "key": "incoming/solo.jpg"}]


def test_a_key_uploaded_since_is_not_sent_again_unless_its_bytes_changed_or_forced(
    world: World, queue: str
) -> None:
    # Given an object the uploader has uploaded (through the real handler and the emulator)
    facts = world.put("incoming/done.jpg")
    answer = world.invoke(world.sqs({"bucket": BUCKET, "key": "incoming/done.jpg"})[0])
    assert failures(answer) == []
    assert world.existing_record("incoming/done.jpg")["status"] == "UPLOADED"
    uploads = len(world.kie.calls)
    listed_etag = f'"{facts["etag"]}"'  # as listObjectsV2 lists it, with quotes

    # when a new run lists it again with the same ETag, it is counted, not sent
    again = backfill.handler(batch(item("incoming/done.jpg", listed_etag)), LambdaContext())
    assert again["alreadyUploaded"] == 1 and again["enqueued"] == 0
    assert drain(queue) == []

    # with another ETag (the object changed since), it is sent
    changed = backfill.handler(batch(item("incoming/done.jpg", '"0123abcd"')), LambdaContext())
    assert changed["enqueued"] == 1
    # and --force sends it whatever the record says, with a requestId of its own
    forced = backfill.handler(batch(item("incoming/done.jpg", listed_etag, force=True)), LambdaContext())
    assert forced["enqueued"] == 1
    bodies = drain(queue)
    assert bodies[0] == {"bucket": BUCKET, "key": "incoming/done.jpg"}
    assert bodies[1]["force"] is True and bodies[1]["requestId"]
    assert len(world.kie.calls) == uploads  # the child itself never calls kie.ai


def test_enqueued_messages_are_uploaded_by_the_uploader(world: World, queue: str) -> None:
    for name in ("x", "y", "z"):
        world.put(f"incoming/{name}.jpg")
    backfill.handler(batch(*(item(f"incoming/{n}.jpg") for n in "xyz")), LambdaContext())
    bodies = drain(queue)
    answer = world.invoke(world.sqs(*bodies)[0])
    assert failures(answer) == []
    assert {world.existing_record(f"incoming/{n}.jpg")["status"] for n in "xyz"} == {"UPLOADED"}


def test_a_batch_sqs_refuses_fails_the_child(world: World, queue: str) -> None:
    # A queue that does not exist refuses every send: the child fails (the Map Run counts it, a redrive
    # runs it again) instead of reporting keys as enqueued.
    world.env(QUEUE_URL=queue + "-gone")
    backfill._enqueuer = None
    with pytest.raises(Exception) as raised:
        backfill.handler(batch(item("incoming/a.jpg")), LambdaContext())
    assert "NonExistentQueue" in repr(raised.value) or "QueueDoesNotExist" in repr(raised.value)


def test_an_item_without_a_key_is_refused(world: World, queue: str) -> None:
    with pytest.raises(ValueError, match="needs a bucket and a key"):
        backfill.handler(batch({"bucket": BUCKET}), LambdaContext())
