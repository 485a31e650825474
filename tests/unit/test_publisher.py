"""The publisher's pure part (stream record → event or nothing) and its PutEvents loop, without a network."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.streams import (
    CREATED,
    STREAM_ARN,
    failed_item,
    inserted,
    modified,
    removed,
    stream_record,
    uploaded_item,
)
from uploader import publisher
from uploader.publisher import Kind, MalformedRecordError, Publisher, change_of, entry_of, event_id_of

SIGNATURE = "0f" * 32
PRESIGNED = (
    "https://photos.s3.us-east-1.amazonaws.com/a.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=ASIAXXXX%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20250101T000000Z"
    f"&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token=IQoJb3JpZ2lu&X-Amz-Signature={SIGNATURE}"
)
DETAIL_FIELDS = {
    "eventId",
    "s3Uri",
    "bucket",
    "key",
    "versionId",
    "etag",
    "size",
    "status",
    "previousStatus",
    "downloadUrl",
    "expiresAt",
    "uploadPath",
    "error",
    "errorKind",
    "retryable",
    "rev",
    "generation",
    "updatedAt",
}


def claimed(item: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The item after a claim write: claim attributes, rev, attempts and updatedAt change, nothing else."""
    return {
        **item,
        "claimOwner": "req-1",
        "claimUntil": 1_764_626_460,
        "rev": item["rev"] + 1,
        "attempts": item.get("attempts", 0) + 1,
        "updatedAt": "2025-12-01T22:00:05.000Z",
        **changes,
    }


# --- which change publishes which kind ------------------------------------------------------------------


def test_a_new_uploaded_record_is_announced_with_its_url() -> None:
    item = uploaded_item()

    change = change_of(inserted(item))

    assert change is not None and change.kind is Kind.UPLOADED
    assert set(change.detail) == DETAIL_FIELDS
    assert change.detail == {
        "eventId": change.detail["eventId"],
        "s3Uri": "s3://photos/incoming/a b.png",
        "bucket": "photos",
        "key": "incoming/a b.png",
        "versionId": item["versionId"],
        "etag": item["etag"],
        "size": 1024,
        "status": "UPLOADED",
        "previousStatus": None,
        "downloadUrl": item["downloadUrl"],
        "expiresAt": item["expiresAt"],
        "uploadPath": "kie-uploader",
        "error": None,
        "errorKind": None,
        "retryable": None,
        "rev": 2,
        "generation": None,
        "updatedAt": item["updatedAt"],
    }
    assert change.time == datetime.fromtimestamp(CREATED, tz=UTC)


def test_failed_to_uploaded_is_an_upload() -> None:
    change = change_of(modified(failed_item(rev=3), uploaded_item(rev=4)))

    assert change is not None and change.kind is Kind.UPLOADED
    assert change.detail["previousStatus"] == "FAILED" and change.detail["error"] is None


def test_a_new_url_of_the_same_version_is_a_refresh() -> None:
    old = uploaded_item(rev=5)
    new = uploaded_item(rev=6, url="https://tempfile.redpandaai.co/yyy/kie-uploader/a%20b.png", expires_at=2)

    change = change_of(modified(old, new))

    assert change is not None and change.kind is Kind.REFRESHED
    assert change.detail["downloadUrl"] == new["downloadUrl"] and change.detail["expiresAt"] == 2


def test_a_longer_life_of_the_same_url_is_a_refresh() -> None:
    change = change_of(modified(uploaded_item(rev=5), uploaded_item(rev=6, expires_at=1_800_000_000)))

    assert change is not None and change.kind is Kind.REFRESHED


def test_another_version_uploaded_over_an_uploaded_one_is_an_upload() -> None:
    new = uploaded_item(rev=6, version_id="v2", etag="e2")

    change = change_of(modified(uploaded_item(rev=5), new))

    assert change is not None and change.kind is Kind.UPLOADED and change.detail["versionId"] == "v2"


@pytest.mark.parametrize(
    ("status", "kind"), [("FAILED", Kind.FAILED), ("SKIPPED", Kind.SKIPPED), ("DELETED", Kind.DELETED)]
)
def test_each_status_has_its_kind_and_withdraws_the_url(status: str, kind: Kind) -> None:
    new = failed_item(rev=7, status=status, error="object is gone", kind="permanent")

    change = change_of(modified(uploaded_item(rev=6), new))

    assert change is not None and change.kind is kind
    assert change.detail["status"] == status and change.detail["previousStatus"] == "UPLOADED"
    assert change.detail["downloadUrl"] is None and change.detail["expiresAt"] is None
    assert change.detail["error"] == "object is gone" and change.detail["errorKind"] == "permanent"
    assert change.detail["retryable"] is False


def test_a_deleted_record_as_the_uploader_writes_it() -> None:
    """deleted_request keeps expiresAt and the version, removes downloadUrl and the error."""
    old = uploaded_item(rev=3)
    new = {k: v for k, v in old.items() if k != "downloadUrl"} | {"status": "DELETED", "rev": 4}

    change = change_of(modified(old, new))

    assert change is not None and change.kind is Kind.DELETED
    assert change.detail["downloadUrl"] is None and change.detail["expiresAt"] is None


def test_another_version_failing_again_is_announced_but_the_same_one_is_not() -> None:
    old = failed_item(rev=3, error="kie.ai HTTP 500", kind="transient")
    same_version = failed_item(rev=4, error="kie.ai HTTP 422", kind="permanent")
    other_version = failed_item(rev=4, version_id="v2", etag="e2")

    assert change_of(modified(old, same_version)) is None
    other = change_of(modified(old, other_version))
    assert other is not None and other.kind is Kind.FAILED


@pytest.mark.parametrize("item", [uploaded_item(rev=5), failed_item(rev=5)], ids=["uploaded", "failed"])
def test_claim_rev_attempts_and_updated_at_changes_publish_nothing(item: dict[str, Any]) -> None:
    taken = claimed(item)
    released = {k: v for k, v in taken.items() if k not in ("claimOwner", "claimUntil")} | {"rev": 7}

    assert change_of(modified(item, taken)) is None
    assert change_of(modified(taken, released)) is None


def test_a_claim_on_a_new_object_publishes_nothing_until_it_has_a_status() -> None:
    claim = {"pk": "s3://photos/new.png", "claimOwner": "req-1", "claimUntil": 1, "rev": 1}

    assert change_of(inserted(claim)) is None
    change = change_of(modified(claim, uploaded_item(key="new.png", rev=2)))
    assert change is not None and change.kind is Kind.UPLOADED and change.detail["previousStatus"] is None


def test_removals_publish_nothing_ttl_or_not() -> None:
    ttl = removed(uploaded_item(), ttl=True)
    manual = removed(uploaded_item())

    assert publisher.is_ttl_removal(ttl) and not publisher.is_ttl_removal(manual)
    assert change_of(ttl) is None and change_of(manual) is None


# --- what never leaves ------------------------------------------------------------------------------------


def test_no_presigned_url_nor_unlisted_attribute_reaches_the_event() -> None:
    item = failed_item(error=f"kie.ai HTTP 422: could not fetch {PRESIGNED}") | {
        "apiKey": "sk-live-secret",
        "claimOwner": "req-1",
        "sequencer": "0055AED6DCD90281E5",
    }
    change = change_of(inserted(item))
    assert change is not None

    text = json.dumps(entry_of(change, "default"), default=str)

    assert set(change.detail) == DETAIL_FIELDS
    for secret in (SIGNATURE, "ASIAXXXX", "IQoJb3JpZ2lu", "sk-live-secret", "req-1", "0055AED6DCD90281E5"):
        assert secret not in text
    assert change.detail["error"].startswith("kie.ai HTTP 422: could not fetch https://photos.s3.")


def test_a_presigned_download_url_is_withheld() -> None:
    change = change_of(inserted(uploaded_item(url=PRESIGNED)))

    assert change is not None and change.detail["downloadUrl"] is None
    assert SIGNATURE not in json.dumps(change.detail)


# --- eventId ----------------------------------------------------------------------------------------------


def test_event_id_is_the_same_for_a_redelivered_record_and_differs_per_revision() -> None:
    record = modified(failed_item(rev=3), uploaded_item(rev=4))
    again = json.loads(json.dumps(record)) | {"eventID": "another-delivery-id"}
    next_rev = modified(uploaded_item(rev=4), failed_item(rev=5))

    first, second, third = change_of(record), change_of(again), change_of(next_rev)

    assert first and second and third
    assert first.detail["eventId"] == second.detail["eventId"] != third.detail["eventId"]


def test_without_rev_the_event_id_comes_from_the_sequence_number() -> None:
    item = {k: v for k, v in uploaded_item().items() if k != "rev"}

    a = change_of(inserted(item, sequence_number="111"))
    b = change_of(inserted(item, sequence_number="111"))
    c = change_of(inserted(item, sequence_number="222"))

    assert a and b and c and a.detail["eventId"] == b.detail["eventId"] != c.detail["eventId"]


def test_event_ids_of_two_tables_differ() -> None:
    other_arn = STREAM_ARN.replace("table/records/", "table/records-staging/")

    a = change_of(inserted(uploaded_item()))
    b = change_of(inserted(uploaded_item(), stream_arn=other_arn))

    assert a and b and a.detail["eventId"] != b.detail["eventId"]


# --- unreadable records ------------------------------------------------------------------------------------


@pytest.mark.parametrize("view_type", ["KEYS_ONLY", "NEW_IMAGE"])
def test_a_stream_without_both_images_is_refused(view_type: str) -> None:
    with pytest.raises(MalformedRecordError, match="NEW_AND_OLD_IMAGES"):
        change_of(modified(failed_item(), uploaded_item(), view_type=view_type))


# --- the PutEvents loop -----------------------------------------------------------------------------------


class FakeEvents:
    """Answers PutEvents from a script: per call, the error codes of its entries (None: published), or an
    exception for the whole call."""

    def __init__(self, *script: list[str | None] | Exception | str) -> None:
        self.script = list(script)
        self.calls: list[list[dict[str, Any]]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        self.calls.append(Entries)
        step = self.script.pop(0) if self.script else [None] * len(Entries)
        if isinstance(step, Exception):
            raise step
        if step == "all-ok":
            step = [None] * len(Entries)
        assert isinstance(step, list) and len(step) == len(Entries)
        results = [
            {"EventId": f"id-{i}"} if code is None else {"ErrorCode": code, "ErrorMessage": "no"}
            for i, code in enumerate(step)
        ]
        return {"FailedEntryCount": sum(code is not None for code in step), "Entries": results}


def run(client: FakeEvents, *records: dict[str, Any], remaining_ms: int = 60_000) -> dict[str, Any]:
    sleeps: list[float] = []
    answer = Publisher(client=client, bus_name="kie-events", sleep=sleeps.append).publish(
        records, lambda: remaining_ms
    )
    return answer


def uploads(count: int, *, prefix: str = "k") -> list[dict[str, Any]]:
    return [inserted(uploaded_item(key=f"{prefix}{i}.png")) for i in range(count)]


def test_entries_name_the_source_bus_kind_and_time() -> None:
    client = FakeEvents()
    record = inserted(uploaded_item())

    assert run(client, record) == {"batchItemFailures": []}

    [[entry]] = client.calls
    assert entry["Source"] == "kie-uploader" and entry["EventBusName"] == "kie-events"
    assert entry["DetailType"] == "Object Uploaded" and entry["Time"] == datetime.fromtimestamp(CREATED, UTC)
    assert json.loads(entry["Detail"])["s3Uri"] == "s3://photos/incoming/a b.png"


def test_batches_of_ten_without_an_object_twice_in_one_call() -> None:
    client = FakeEvents()
    records = uploads(13)
    again = modified(uploaded_item(key="k1.png", rev=2), failed_item(key="k1.png", rev=3))
    records.insert(3, again)  # k1 changes twice: its second change must wait for the next call

    assert run(client, *records) == {"batchItemFailures": []}

    keys = [[json.loads(e["Detail"])["key"] for e in call] for call in client.calls]
    assert keys == [
        ["k0.png", "k1.png", "k2.png"],
        ["k1.png"] + [f"k{i}.png" for i in range(3, 12)],
        ["k12.png"],
    ]
    assert json.loads(client.calls[1][0]["Detail"])["status"] == "FAILED"


def test_nothing_to_publish_makes_no_call() -> None:
    client = FakeEvents()
    item = uploaded_item()

    assert run(client, modified(item, claimed(item)), removed(item, ttl=True)) == {"batchItemFailures": []}
    assert client.calls == []


def test_failed_entries_are_retried_alone_until_published() -> None:
    client = FakeEvents([None, "ThrottlingException", None], ["InternalFailure"], "all-ok")
    records = uploads(3)

    assert run(client, *records) == {"batchItemFailures": []}

    assert [len(call) for call in client.calls] == [3, 1, 1]
    assert client.calls[1] == client.calls[2] == [client.calls[0][1]]


def test_entries_still_failing_report_the_first_of_them_and_stop() -> None:
    retries: list[list[str | None]] = [["InternalFailure"]] * 9
    client = FakeEvents([None, "InternalFailure", None] + [None] * 7, *retries)
    records = uploads(14)

    answer = run(client, *records)

    # The 2nd record is where Lambda resumes; nothing of the second chunk was attempted.
    assert answer == {"batchItemFailures": [{"itemIdentifier": records[1]["dynamodb"]["SequenceNumber"]}]}
    assert len(client.calls) == publisher.MAX_ATTEMPTS and len(client.calls[0]) == 10


def test_a_missing_bus_is_not_retried() -> None:
    error = ClientError(
        {"Error": {"Code": "ResourceNotFoundException", "Message": "Event bus kie-events does not exist."}},
        "PutEvents",
    )
    client = FakeEvents(error)
    records = uploads(2)

    answer = run(client, *records)

    assert answer == {"batchItemFailures": [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]}
    assert len(client.calls) == 1


def test_a_malformed_entry_is_not_retried() -> None:
    client = FakeEvents(["MalformedDetail"])

    answer = run(client, inserted(uploaded_item()))

    assert len(answer["batchItemFailures"]) == 1 and len(client.calls) == 1


def test_no_retry_when_the_invocation_is_about_to_end() -> None:
    client = FakeEvents(["InternalFailure"])

    answer = run(client, inserted(uploaded_item()), remaining_ms=2_500)

    assert len(answer["batchItemFailures"]) == 1 and len(client.calls) == 1


def test_an_unreadable_record_is_reported_after_the_ones_before_it_are_published() -> None:
    client = FakeEvents()
    good = inserted(uploaded_item(key="before.png"))
    keys_only = stream_record("MODIFY", new=uploaded_item(), old=failed_item(), view_type="KEYS_ONLY")
    after = inserted(uploaded_item(key="after.png"))

    answer = run(client, good, keys_only, after)

    assert answer == {"batchItemFailures": [{"itemIdentifier": keys_only["dynamodb"]["SequenceNumber"]}]}
    assert [json.loads(e["Detail"])["key"] for e in client.calls[0]] == ["before.png"]


def test_the_handler_uses_the_bus_of_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.factories import LambdaContext

    client = FakeEvents()
    monkeypatch.setenv("EVENT_BUS_NAME", "kie-events")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setattr(publisher, "_publisher", None)
    built = publisher._get_publisher()
    monkeypatch.setattr(built, "client", client)

    answer = publisher.handler({"Records": [inserted(uploaded_item())]}, LambdaContext())

    assert answer == {"batchItemFailures": []} and client.calls[0][0]["EventBusName"] == "kie-events"


def test_a_call_stays_under_put_events_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publisher, "MAX_CALL_BYTES", 2_000)
    client = FakeEvents()
    records = uploads(6)  # each entry is a bit under 700 bytes

    assert run(client, *records) == {"batchItemFailures": []}

    sizes = [sum(publisher.entry_size(e) for e in call) for call in client.calls]
    assert len(client.calls) > 1 and all(size <= 2_000 for size in sizes)
    assert sum(len(call) for call in client.calls) == 6


def test_a_record_without_a_sequence_number_fails_the_whole_invocation() -> None:
    client = FakeEvents()
    broken = {"eventID": "1", "eventName": "MODIFY", "eventSource": "aws:dynamodb"}

    with pytest.raises(MalformedRecordError):
        run(client, inserted(uploaded_item()), broken)
    assert client.calls == []


def test_a_re_created_record_never_repeats_an_earlier_lifes_event_id() -> None:
    """Issue 21, defect 5: after a TTL purge (or a removal) and a new upload, the new record's rev 2 had the
    same eventId as the old record's rev 2; a record's generation now tells its lives apart."""
    first = event_id_of("records", "s3://photos/a.png", 2, "1", generation="1733300000000-aaaa0000")
    again = event_id_of("records", "s3://photos/a.png", 2, "9", generation="1733400000000-bbbb1111")
    assert first != again
    assert first == event_id_of("records", "s3://photos/a.png", 2, "5", generation="1733300000000-aaaa0000")
