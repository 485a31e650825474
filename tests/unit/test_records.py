"""Record building: the attributes of each status, the ordering conditions, upload paths and names."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, TypedDict

import pytest

from uploader.kie import KieUpload
from uploader.models import ErrorKind, EventKind, ObjectHead, ObjectRef, Status
from uploader.processor import expires_at, file_name, upload_path
from uploader.table import RecordTable, Upload, is_live_upload, same_version, stored_is_newer

HEAD = ObjectHead(version_id="v1", etag="e1", size=10, content_type="image/png")
EVENT = ObjectRef(
    "photos",
    "dir/a b.png",
    version_id="v1",
    etag="e1",
    size=10,
    sequencer="0A",
    event_time="2025-01-01T12:00:00.000Z",
)
PLAIN = ObjectRef("photos", "dir/a b.png")
RESULT = KieUpload(
    download_url="https://tempfile.redpandaai.co/acc/s3-uploads/photos/abc/a b.png",
    file_path="s3-uploads/photos/abc/a b.png",
    file_name="a b.png",
    file_size=10,
    mime_type="image/png",
    uploaded_at="2025-01-01T12:00:01.000Z",
)
OBSERVED = "2025-01-01T12:00:00.500Z"
ARCHITECTURE_ALWAYS = {"bucket", "key", "versionId", "etag", "size", "attempts", "updatedAt", "status"}
UPLOADED_ONLY = {
    "downloadUrl",
    "uploadedAt",
    "expiresAt",
    "filePath",
    "fileName",
    "fileSize",
    "mimeType",
    "uploadPath",
}
FAILED_ONLY = {"error", "errorKind", "retryable"}


def table() -> RecordTable:
    return RecordTable("records", client=object())  # requests are only built, never sent


def attributes(expression: str, clause: str, names: dict[str, str]) -> set[str]:
    match = re.search(rf"{clause} (.*?)(?: (?:SET|REMOVE|ADD) |$)", expression)
    if not match:
        return set()
    return {names[part.strip().split(" ")[0]] for part in match.group(1).split(",")}


def test_uploaded_request_sets_exactly_the_documented_attributes() -> None:
    upload = Upload(result=RESULT, upload_path="s3-uploads/photos/abc", expires_at=1_736_000_000)

    request = table().uploaded_request(EVENT, HEAD, upload, observed_at=OBSERVED, attempts=2)

    names, values = request["ExpressionAttributeNames"], request["ExpressionAttributeValues"]
    expression = request["UpdateExpression"]
    assert request["Key"] == {"pk": {"S": "s3://photos/dir/a b.png"}}
    assert attributes(expression, "SET", names) == (ARCHITECTURE_ALWAYS - {"attempts"}) | UPLOADED_ONLY | {
        "sequencer"
    }
    assert attributes(expression, "REMOVE", names) == FAILED_ONLY
    assert attributes(expression, "ADD", names) == {"attempts"}
    assert {"S": "UPLOADED"} in values.values() and {"N": "1736000000"} in values.values()


def test_failed_request_sets_the_reason_and_drops_upload_attributes() -> None:
    request = table().failed_request(
        EVENT,
        Status.FAILED,
        error="kie.ai HTTP 400",
        kind=ErrorKind.PERMANENT,
        observed_at=OBSERVED,
        attempts=1,
        now=1_700_000_000,
        head=HEAD,
    )

    names, values = request["ExpressionAttributeNames"], request["ExpressionAttributeValues"]
    assert attributes(request["UpdateExpression"], "SET", names) >= FAILED_ONLY | {"status", "updatedAt"}
    assert attributes(request["UpdateExpression"], "REMOVE", names) == UPLOADED_ONLY
    assert {"BOOL": False} in values.values() and {"S": "permanent"} in values.values()
    # Rule 3: never hide a live upload of the same version.
    assert "AND NOT (" in request["ConditionExpression"]


def test_deleted_request_removes_the_download_url() -> None:
    removal = ObjectRef("photos", "k", kind=EventKind.REMOVED, sequencer="0B", event_time=OBSERVED)

    request = table().deleted_request(removal, observed_at=OBSERVED)

    names = request["ExpressionAttributeNames"]
    assert "downloadUrl" in attributes(request["UpdateExpression"], "REMOVE", names)
    assert {"S": "DELETED"} in request["ExpressionAttributeValues"].values()


def test_event_writes_are_ordered_by_sequencer() -> None:
    request = table().uploaded_request(EVENT, HEAD, Upload(RESULT, "p", 1), observed_at=OBSERVED, attempts=1)

    condition = request["ConditionExpression"]
    assert "attribute_not_exists(pk)" in condition and "#sequencer <=" in condition


def test_plain_writes_of_another_version_remove_the_stored_sequencer() -> None:
    request = table().uploaded_request(PLAIN, HEAD, Upload(RESULT, "p", 1), observed_at=OBSERVED, attempts=1)

    names = request["ExpressionAttributeNames"]
    assert "sequencer" in attributes(request["UpdateExpression"], "REMOVE", names)
    assert "#updatedAt <" in request["ConditionExpression"]


def test_plain_writes_of_the_same_version_keep_the_sequencer() -> None:
    request = table().uploaded_request(
        PLAIN, HEAD, Upload(RESULT, "p", 1), observed_at=OBSERVED, attempts=1, plain_same_version=True
    )

    names = request["ExpressionAttributeNames"]
    assert "sequencer" not in attributes(request["UpdateExpression"], "REMOVE", names)
    assert "sequencer" not in attributes(request["UpdateExpression"], "SET", names)


# --- pre-checks (the same rules as the conditions) ------------------------------------------------------

LIVE = {
    "status": "UPLOADED",
    "versionId": "v1",
    "etag": "e1",
    "expiresAt": 2_000_000_000,
    "sequencer": "0A",
    "updatedAt": OBSERVED,
}


def test_a_live_upload_of_the_same_version_is_recognised() -> None:
    assert is_live_upload(LIVE, "v1", "e1", now=1_900_000_000)
    assert is_live_upload(LIVE, "v1", None, now=1_900_000_000)
    assert not is_live_upload(LIVE, "v2", "e1", now=1_900_000_000)
    assert not is_live_upload(LIVE, "v1", "e1", now=2_000_000_001)  # expired at kie.ai
    assert not is_live_upload({**LIVE, "status": "FAILED"}, "v1", "e1", now=0)
    assert not is_live_upload(None, "v1", "e1", now=0)
    assert not is_live_upload(LIVE, None, None, now=0)


def test_unversioned_objects_are_identified_by_etag() -> None:
    record = {**LIVE, "versionId": "null"}

    assert same_version(record, "null", "e1") and same_version(record, None, "e1")
    assert not same_version(record, "null", "e2")


@pytest.mark.parametrize(
    ("stored", "incoming", "newer"),
    [
        ("0A", "0B", False),
        ("0B", "0A", True),
        ("0A", "0A", False),  # the same event again may write (e.g. after a transient failure)
        ("0A01", "0B", False),  # different lengths: padded comparison
        ("0B", "0A01", True),
    ],
)
def test_stored_sequencer_decides_for_events(stored: str, incoming: str, newer: bool) -> None:
    ref = ObjectRef("photos", "k", sequencer=incoming, event_time=OBSERVED)

    assert stored_is_newer({**LIVE, "sequencer": stored}, ref, OBSERVED) is newer


def test_a_record_from_a_plain_message_is_newer_than_an_event_that_happened_before_it_was_read() -> None:
    record = {**LIVE, "updatedAt": "2025-01-01T12:00:05.000Z"}
    del record["sequencer"]
    old = ObjectRef("photos", "k", sequencer="01", event_time="2025-01-01T12:00:04.999Z")
    new = ObjectRef("photos", "k", sequencer="01", event_time="2025-01-01T12:00:05.001Z")

    assert stored_is_newer(record, old, OBSERVED)
    assert not stored_is_newer(record, new, OBSERVED)


def test_plain_messages_never_overwrite_another_version_read_after_them() -> None:
    record = {**LIVE, "updatedAt": "2025-01-01T12:00:05.000Z"}
    other = ObjectHead("v0", "e0", 1)

    assert stored_is_newer(record, PLAIN, "2025-01-01T12:00:04.000Z", other)
    assert not stored_is_newer(record, PLAIN, "2025-01-01T12:00:06.000Z", other)
    assert not stored_is_newer(record, PLAIN, "2025-01-01T12:00:04.000Z", HEAD)  # same version


# --- names and paths --------------------------------------------------------------------------------------


def test_upload_path_is_unique_per_object_version_and_safe() -> None:
    paths = {
        upload_path("s3-uploads", "photos", "a.png", ObjectHead("v1", "e", 1)),
        upload_path("s3-uploads", "photos", "a.png", ObjectHead("v2", "e", 1)),
        upload_path("s3-uploads", "photos", "b.png", ObjectHead("v1", "e", 1)),
        upload_path("s3-uploads", "photos", "a.png", ObjectHead("null", "e1", 1)),
        upload_path("s3-uploads", "photos", "a.png", ObjectHead("null", "e2", 1)),
        upload_path("s3-uploads", "docs", "a.png", ObjectHead("v1", "e", 1)),
    }

    assert len(paths) == 6
    for path in paths:
        assert re.fullmatch(r"s3-uploads/[a-z0-9.-]+/[0-9a-f]{16}", path)


def test_upload_path_is_stable_for_the_same_version() -> None:
    head = ObjectHead("v1", "e", 1)

    assert upload_path("p", "b-1", "日本 語.png", head) == upload_path("p", "b-1", "日本 語.png", head)


@pytest.mark.parametrize(
    ("key", "name"),
    [("a/b/c.png", "c.png"), ("top.txt", "top.txt"), ("dir/", "object"), ("x/tab\there.txt", "tab_here.txt")],
)
def test_file_name_is_the_keys_base_name(key: str, name: str) -> None:
    assert file_name(key) == name


def test_expiry_counts_the_retention_from_kies_upload_time() -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)

    assert expires_at("2025-01-01T12:00:00.000Z", 259_200, now) == 1_735_732_800 + 259_200
    assert expires_at(None, 100, now) == int(now.timestamp()) + 100
    assert expires_at("garbage", 100, now) == int(now.timestamp()) + 100


class FailedArgs(TypedDict):
    """The keyword arguments ``RecordTable.failed_request`` requires, typed for ``**`` unpacking."""

    error: str
    kind: ErrorKind
    observed_at: str
    attempts: int
    now: int


def all_requests() -> list[dict[str, Any]]:
    t, up = table(), Upload(RESULT, "p", 1)
    removal = ObjectRef(
        "photos", "k", kind=EventKind.REMOVED, version_id="v1", sequencer="0B", permanent_delete=True
    )
    failed: FailedArgs = {
        "error": "e", "kind": ErrorKind.TRANSIENT, "observed_at": OBSERVED, "attempts": 0, "now": 0
    }
    return [
        t.uploaded_request(EVENT, HEAD, up, observed_at=OBSERVED, attempts=1),
        t.uploaded_request(PLAIN, HEAD, up, observed_at=OBSERVED, attempts=1),
        t.uploaded_request(PLAIN, HEAD, up, observed_at=OBSERVED, attempts=1, plain_same_version=True),
        t.failed_request(EVENT, Status.FAILED, head=HEAD, **failed),
        t.failed_request(PLAIN, Status.SKIPPED, **failed),
        t.failed_request(PLAIN, Status.FAILED, head=HEAD, plain_same_version=True, **failed),
        t.deleted_request(removal, observed_at=OBSERVED),
    ]


@pytest.mark.parametrize("request_index", range(7))
def test_every_placeholder_is_used_exactly_as_dynamodb_requires(request_index: int) -> None:
    # DynamoDB refuses a request with an unused name or value placeholder (ValidationException).
    request = all_requests()[request_index]
    text = request["UpdateExpression"] + " " + request["ConditionExpression"]

    for placeholder in [*request["ExpressionAttributeNames"], *request["ExpressionAttributeValues"]]:
        assert re.search(re.escape(placeholder) + r"\b", text), placeholder
    for used in re.findall(r"[#:][A-Za-z0-9]+", text):
        assert used in request["ExpressionAttributeNames"] or used in request["ExpressionAttributeValues"]
