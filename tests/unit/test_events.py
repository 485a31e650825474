"""Event parsing: every accepted shape → messages; garbage → a readable reason, never an exception."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests import factories as f
from uploader.events import UnsupportedEventError, event_time, parse_body, parse_event
from uploader.models import EventKind, ObjectRef


def only_object(event: dict[str, Any]) -> ObjectRef:
    parsed = parse_event(event)
    assert len(parsed.messages) == 1
    (message,) = parsed.messages
    assert message.problem is None, message.problem
    (ref,) = message.objects
    return ref


def test_direct_s3_event_gives_one_message_per_record() -> None:
    event = f.s3_notification(f.s3_record("photos", "a.jpg"), f.s3_record("photos", "b.jpg"))

    parsed = parse_event(event)

    assert parsed.source == "s3"
    assert [m.message_id for m in parsed.messages] == ["record-0", "record-1"]
    assert [m.objects[0].key for m in parsed.messages] == ["a.jpg", "b.jpg"]


def test_s3_notification_fields_are_read() -> None:
    record = f.s3_record("photos", "x/y.png", size=42, etag="abc", version_id="v1", sequencer="00AB")

    ref = only_object(f.s3_notification(record))

    assert (ref.bucket, ref.key, ref.size, ref.etag, ref.version_id) == ("photos", "x/y.png", 42, "abc", "v1")
    assert ref.kind is EventKind.CREATED
    assert ref.sequencer == "00AB"
    assert ref.event_time == "2025-01-01T12:00:00.000Z"
    assert ref.pk == "s3://photos/x/y.png"


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("hello+world.jpg", "hello world.jpg"),
        ("c%2B%2B/notes%20%281%29.txt", "c++/notes (1).txt"),
        ("%E6%97%A5%E6%9C%AC/%C3%A9t%C3%A9.pdf", "日本/été.pdf"),
        ("a%25b", "a%b"),
    ],
)
def test_keys_in_s3_notifications_are_url_decoded(encoded: str, decoded: str) -> None:
    record = f.s3_record("photos", encoded, encoded=False)

    assert only_object(f.s3_notification(record)).key == decoded


def test_factory_encoding_round_trips_through_the_parser() -> None:
    key = "dir with space/a+b=c&d?.txt"

    assert only_object(f.s3_notification(f.s3_record("photos", key))).key == key


def test_sqs_body_with_s3_notification() -> None:
    event = f.sqs_event(f.sqs_record(f.s3_notification(f.s3_record("photos", "a b.jpg")), message_id="m1"))

    parsed = parse_event(event)

    assert parsed.source == "sqs"
    assert parsed.messages[0].message_id == "m1"
    assert parsed.messages[0].objects[0].key == "a b.jpg"


def test_sqs_body_with_sns_wrapped_s3_notification() -> None:
    body = f.sns_wrapped(f.s3_notification(f.s3_record("photos", "in+sns.jpg", encoded=False)))

    ref = only_object(f.sqs_event(f.sqs_record(body)))

    assert (ref.bucket, ref.key) == ("photos", "in sns.jpg")


def test_sns_wrapped_test_event_is_ignored() -> None:
    message = parse_body("m", json.dumps(f.sns_wrapped(f.s3_test_event("photos"))))

    assert message.objects == () and message.problem is None and message.note == "s3:TestEvent"


def test_eventbridge_object_created_in_sqs() -> None:
    body = f.eventbridge_object_created("photos", "eb key.jpg", size=7, etag="e1", version_id="v9")

    ref = only_object(f.sqs_event(f.sqs_record(body)))

    assert (ref.key, ref.size, ref.etag, ref.version_id) == ("eb key.jpg", 7, "e1", "v9")
    assert ref.kind is EventKind.CREATED
    assert ref.sequencer == "617F08299329D189"
    assert ref.event_time == "2025-01-01T12:00:00.000Z"


def test_eventbridge_object_deleted_marks_a_removal() -> None:
    ref = only_object(f.sqs_event(f.sqs_record(f.eventbridge_object_deleted("photos", "gone.jpg"))))

    assert ref.kind is EventKind.REMOVED
    assert ref.permanent_delete is False


def test_eventbridge_permanent_deletion_of_a_version() -> None:
    body = f.eventbridge_object_deleted("photos", "k", version_id="v1", deletion_type="Permanently Deleted")

    ref = only_object(f.sqs_event(f.sqs_record(body)))

    assert ref.permanent_delete is True and ref.version_id == "v1"


def test_eventbridge_event_delivered_directly() -> None:
    parsed = parse_event(f.eventbridge_object_created("photos", "direct.jpg"))

    assert parsed.source == "eventbridge"
    assert parsed.messages[0].objects[0].key == "direct.jpg"


def test_plain_message_keys_are_taken_as_written() -> None:
    ref = only_object(f.sqs_event(f.sqs_record(f.plain_message("photos", "a+b%20c.txt", "v2"))))

    assert (ref.bucket, ref.key, ref.version_id) == ("photos", "a+b%20c.txt", "v2")
    assert ref.sequencer is None and ref.event_time is None


def test_plain_message_with_s3_uri() -> None:
    ref = only_object(f.sqs_event(f.sqs_record({"s3Uri": "s3://photos/dir/x y.txt"})))

    assert (ref.bucket, ref.key) == ("photos", "dir/x y.txt")


def test_s3_test_event_is_acknowledged_without_objects() -> None:
    message = parse_body("m", json.dumps(f.s3_test_event("photos")))

    assert message.objects == () and message.problem is None and message.note == "s3:TestEvent"


def test_removed_record_is_a_removal() -> None:
    ref = only_object(f.s3_notification(f.s3_removed_record("photos", "old.jpg")))

    assert ref.kind is EventKind.REMOVED
    assert ref.size is None and ref.etag is None


def test_delete_marker_is_not_a_permanent_delete() -> None:
    record = f.s3_removed_record(
        "photos", "k", event_name="ObjectRemoved:DeleteMarkerCreated", version_id="marker"
    )

    assert only_object(f.s3_notification(record)).permanent_delete is False


def test_event_types_that_are_not_handled_are_noted() -> None:
    event = f.s3_notification(f.s3_record("photos", "k", event_name="ObjectTagging:Put"))

    (message,) = parse_event(event).messages

    assert message.objects == () and message.problem is None
    assert "ObjectTagging:Put" in (message.note or "")


def test_unversioned_null_version_id_is_no_version() -> None:
    record = f.s3_record("photos", "k")
    record["s3"]["object"]["versionId"] = "null"

    assert only_object(f.s3_notification(record)).version_id is None


# --- Lambda destination records (what a failed direct invocation leaves in the DLQ) ---------------------


def test_a_destination_record_in_the_dlq_is_unwrapped_to_the_objects_of_its_s3_event() -> None:
    notification = f.s3_notification(
        f.s3_record("photos", "dlq/a b.jpg", version_id="v1", sequencer="00AB"),
        f.s3_removed_record("photos", "dlq/gone.txt"),
    )
    body = f.lambda_destination_record(notification)

    (message,) = parse_event(f.sqs_event(f.sqs_record(body, message_id="redriven"))).messages

    assert message.message_id == "redriven" and message.problem is None and message.note is None
    created, removed = message.objects
    assert (created.bucket, created.key, created.version_id) == ("photos", "dlq/a b.jpg", "v1")
    assert created.kind is EventKind.CREATED and created.sequencer == "00AB"
    assert created.event_time == "2025-01-01T12:00:00.000Z"
    assert (removed.key, removed.kind) == ("dlq/gone.txt", EventKind.REMOVED)


def test_a_destination_record_of_a_direct_eventbridge_event_is_unwrapped_too() -> None:
    body = f.lambda_destination_record(f.eventbridge_object_created("photos", "eb dlq.jpg", version_id="v2"))

    ref = only_object(f.sqs_event(f.sqs_record(body)))

    assert (ref.bucket, ref.key, ref.version_id) == ("photos", "eb dlq.jpg", "v2")
    assert ref.kind is EventKind.CREATED and ref.sequencer == "617F08299329D189"


NOT_AN_S3_EVENT = "Lambda destination record's requestPayload is not an S3 or EventBridge event"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"hello": "world"}, NOT_AN_S3_EVENT),
        (f.lambda_destination_record(f.s3_notification(f.s3_record("photos", "k"))), NOT_AN_S3_EVENT),
        # Records, but of SQS: read as an S3 notification, whose records must come from S3.
        (
            f.sqs_event(f.sqs_record(f.plain_message("photos", "k"))),
            "S3 notification record is not from aws:s3",
        ),
    ],
    ids=["not-an-event", "destination-record-in-a-destination-record", "sqs-event"],
)
def test_a_destination_record_of_anything_but_an_s3_event_is_a_problem(
    payload: dict[str, Any], reason: str
) -> None:
    message = parse_body("m", json.dumps(f.lambda_destination_record(payload)))

    assert message.objects == () and message.problem == reason


# --- bodies json cannot read ----------------------------------------------------------------------------

TOO_DEEP = "[" * 100_000


def test_a_body_nested_too_deeply_for_json_is_rejected_alone() -> None:
    event = f.sqs_event(
        f.sqs_record(f.plain_message("photos", "before.txt"), message_id="before"),
        f.sqs_record(TOO_DEEP, message_id="deep"),
        f.sqs_record(f.plain_message("photos", "after.txt"), message_id="after"),
    )

    before, deep, after = parse_event(event).messages

    assert deep.message_id == "deep" and deep.objects == ()
    assert deep.problem == "body is JSON nested too deeply"
    assert [m.objects[0].key for m in (before, after)] == ["before.txt", "after.txt"]
    assert before.problem is None and after.problem is None


def test_an_sns_message_nested_too_deeply_for_json_is_rejected_alone() -> None:
    envelope = f.sns_wrapped({}) | {"Message": TOO_DEEP}
    event = f.sqs_event(
        f.sqs_record(envelope, message_id="deep"),
        f.sqs_record(f.sns_wrapped(f.s3_notification(f.s3_record("photos", "ok.txt"))), message_id="ok"),
    )

    deep, ok = parse_event(event).messages

    assert deep.objects == ()
    assert deep.problem == "SNS notification's Message is JSON nested too deeply"
    assert ok.problem is None and ok.objects[0].key == "ok.txt"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json at all", "not JSON"),
        ("[1, 2]", "not an object"),
        ('"a string"', "not an object"),
        ("{}", "no S3 notification"),
        ('{"Records": []}', "no Records"),
        ('{"Records": [{"eventSource": "aws:sqs"}]}', "not from aws:s3"),
        ('{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}', "'s3'"),
        ('{"bucket": "photos"}', "'key'"),
        ('{"bucket": "Not_A_Bucket", "key": "k"}', "invalid bucket"),
        ('{"bucket": "photos", "key": ""}', "empty"),
        ('{"bucket": "photos", "key": "k", "versionId": 5}', "versionId"),
        ('{"s3Uri": "https://photos/k"}', "s3://"),
        ('{"s3Uri": "s3://photos"}', "no key"),
        ('{"Type": "Notification", "Message": "nope"}', "not JSON"),
        ('{"Type": "Notification", "Message": 3}', "not a string"),
    ],
)
def test_garbage_bodies_become_readable_problems(body: str, reason: str) -> None:
    message = parse_body("m1", body)

    assert message.objects == ()
    assert message.problem is not None and reason in message.problem


def test_a_bad_sequencer_is_a_problem() -> None:
    record = f.s3_record("photos", "k", sequencer="not-hex!")

    (message,) = parse_event(f.s3_notification(record)).messages

    assert message.problem is not None and "sequencer" in message.problem


def test_key_longer_than_s3_allows_is_a_problem() -> None:
    message = parse_body("m", json.dumps(f.plain_message("photos", "k" * 1025)))

    assert message.problem is not None and "1024" in message.problem


def test_one_malformed_sqs_message_does_not_spoil_the_others() -> None:
    event = f.sqs_event(
        f.sqs_record(f.plain_message("photos", "ok.txt"), message_id="good"),
        f.sqs_record("{broken", message_id="bad"),
    )

    good, bad = parse_event(event).messages

    assert good.objects[0].key == "ok.txt" and good.problem is None
    assert bad.message_id == "bad" and bad.problem is not None


def test_sqs_record_without_body_is_a_problem() -> None:
    record = f.sqs_record("x", message_id="m")
    del record["body"]

    (message,) = parse_event(f.sqs_event(record)).messages

    assert message.message_id == "m" and "no body" in (message.problem or "")


@pytest.mark.parametrize("event", [{}, {"Records": []}, {"foo": 1}, [], "text", None])
def test_unsupported_invocation_events_raise_a_clear_error(event: object) -> None:
    with pytest.raises(UnsupportedEventError, match="unsupported event"):
        parse_event(event)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("2025-01-01T12:00:00Z", "2025-01-01T12:00:00.000Z"),
        ("2025-01-01T12:00:00.5Z", "2025-01-01T12:00:00.500Z"),
        ("2025-01-01T13:00:00.123+01:00", "2025-01-01T12:00:00.123Z"),
        ("garbage", None),
        (None, None),
    ],
)
def test_event_times_are_normalised_to_fixed_width_utc(raw: str | None, normalised: str | None) -> None:
    assert event_time(raw) == normalised
