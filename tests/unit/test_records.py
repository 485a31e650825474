"""Record building: the attributes of each state, the revision conditions, upload paths and names."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from uploader.kie import KieUpload
from uploader.models import ErrorKind, ObjectHead, ObjectRef, Status
from uploader.processor import expires_at, file_name, upload_path
from uploader.table import (
    RecordTable,
    Settle,
    Upload,
    claimed_by_other,
    covers_sequencer,
    is_live_upload,
    is_settled_refusal,
    newest_sequencer,
    revision,
)

HEAD = ObjectHead(version_id="v1", etag="e1", size=10, content_type="image/png")
EVENT = ObjectRef("photos", "dir/a b.png", version_id="v1", etag="e1", size=10, sequencer="0A")
RESULT = KieUpload(
    download_url="https://tempfile.redpandaai.co/acc/s3-uploads/photos/abc/a b.png",
    file_path="s3-uploads/photos/abc/a b.png",
    file_name="a b.png",
    file_size=10,
    mime_type="image/png",
    uploaded_at="2025-01-01T12:00:01.000Z",
)
OBSERVED = "2025-01-01T12:00:00.500Z"
NOW = 1_735_732_800
IDENTITY = {"bucket", "key", "versionId", "etag", "size", "updatedAt", "status", "rev", "purgeAt"}
UPLOADED_ONLY = {
    "downloadUrl",
    "uploadedAt",
    "expiresAt",
    "filePath",
    "fileName",
    "fileSize",
    "mimeType",
    "uploadPath",
    "transfer",  # url or stream (issue 19)
}
FAILED_ONLY = {"error", "errorKind", "retryable"}
CLAIM = {"claimOwner", "claimUntil", "claimWaits"}


def table() -> RecordTable:
    return RecordTable("records", client=object(), retention_seconds=1000)  # requests are built, never sent


def attributes(expression: str, clause: str, names: dict[str, str]) -> set[str]:
    match = re.search(rf"{clause} (.*?)(?: (?:SET|REMOVE|ADD) |$)", expression)
    if not match:
        return set()
    # Split at the commas between assignments, not inside if_not_exists(#a, :v).
    return {names[part.strip().split(" ")[0]] for part in re.split(r",\s*(?=#)", match.group(1))}


def settle(state: Settle, rev: int = 3) -> dict[str, Any]:
    return table().settle_request(EVENT, rev, state, observed_at=OBSERVED, now=NOW, attempts=2)


def test_an_uploaded_record_sets_exactly_the_documented_attributes() -> None:
    upload = Upload(result=RESULT, upload_path="s3-uploads/photos/abc", expires_at=1_736_000_000)

    request = settle(Settle(Status.UPLOADED, head=HEAD, upload=upload, sequencer="0A"))

    names, values = request["ExpressionAttributeNames"], request["ExpressionAttributeValues"]
    expression = request["UpdateExpression"]
    assert request["Key"] == {"pk": {"S": "s3://photos/dir/a b.png"}}
    assert attributes(expression, "SET", names) == IDENTITY | UPLOADED_ONLY | {"sequencer", "liveBucket"}
    assert attributes(expression, "REMOVE", names) == FAILED_ONLY | CLAIM
    assert attributes(expression, "ADD", names) == {"attempts"}
    assert {"S": "UPLOADED"} in values.values() and {"N": "1736000000"} in values.values()
    assert {"N": str(1_736_000_000 + 1000)} in values.values()  # purgeAt: the record outlives the file


def test_a_failed_record_sets_the_reason_and_drops_upload_attributes() -> None:
    request = settle(
        Settle(Status.FAILED, head=HEAD, error="kie.ai HTTP 400", error_kind=ErrorKind.PERMANENT)
    )

    names, values = request["ExpressionAttributeNames"], request["ExpressionAttributeValues"]
    assert attributes(request["UpdateExpression"], "SET", names) >= FAILED_ONLY | {"status", "updatedAt"}
    assert attributes(request["UpdateExpression"], "REMOVE", names) == UPLOADED_ONLY | CLAIM | {"liveBucket"}
    assert {"BOOL": False} in values.values() and {"S": "permanent"} in values.values()


def test_a_deleted_record_has_no_download_url_nor_error() -> None:
    request = settle(Settle(Status.DELETED, sequencer="0B"))

    names = request["ExpressionAttributeNames"]
    assert attributes(request["UpdateExpression"], "REMOVE", names) == UPLOADED_ONLY | FAILED_ONLY | CLAIM | {
        "liveBucket"
    }
    assert {"S": "DELETED"} in request["ExpressionAttributeValues"].values()


def test_every_write_is_conditional_on_the_revision_read_and_increments_it() -> None:
    request = settle(Settle(Status.DELETED), rev=7)

    values = request["ExpressionAttributeValues"]
    assert re.fullmatch(r"#rev = :v\d+", request["ConditionExpression"])
    assert values[request["ConditionExpression"].split(" = ")[1]] == {"N": "7"}
    assert {"N": "8"} in values.values()


def test_the_first_claim_creates_the_record_or_takes_one_without_revision() -> None:
    request = table().claim_request(EVENT, 0, owner="me", until_ms=5, now=NOW)

    assert request["ConditionExpression"] == "attribute_not_exists(#rev)"
    names = request["ExpressionAttributeNames"]
    assert attributes(request["UpdateExpression"], "SET", names) == {
        "bucket",
        "key",
        "rev",
        "purgeAt",
        "claimOwner",
        "claimUntil",
        "generation",  # if_not_exists: set once, by the claim that creates the record
        "eventSeen",  # EVENT is an S3 event
    }
    assert "status" not in names.values()  # a claim never changes what the record says
    assert "if_not_exists(#generation" in request["UpdateExpression"]


def test_a_plain_message_claim_or_bump_does_not_say_an_event_was_seen() -> None:
    plain = ObjectRef("photos", "a.png")
    for request in (
        table().claim_request(plain, 3, owner="me", until_ms=5, now=NOW),
        table().bump_request(plain, 3),
    ):
        assert "eventSeen" not in request["ExpressionAttributeNames"].values()
    assert "eventSeen" in table().bump_request(EVENT, 3)["ExpressionAttributeNames"].values()


def test_a_retryable_failure_stays_due_in_the_expiry_index_and_a_permanent_one_leaves_it() -> None:
    names_values = settle(
        Settle(Status.FAILED, error="kie.ai 503", error_kind=ErrorKind.TRANSIENT, due_at=NOW), rev=3
    )
    names = names_values["ExpressionAttributeNames"]
    assert {"liveBucket", "expiresAt"} <= attributes(names_values["UpdateExpression"], "SET", names)
    assert {"N": str(NOW)} in names_values["ExpressionAttributeValues"].values()
    assert "downloadUrl" in attributes(names_values["UpdateExpression"], "REMOVE", names)
    permanent = settle(Settle(Status.FAILED, error="400", error_kind=ErrorKind.PERMANENT), rev=3)
    assert "liveBucket" in attributes(
        permanent["UpdateExpression"], "REMOVE", permanent["ExpressionAttributeNames"]
    )


# --- reading --------------------------------------------------------------------------------------------

LIVE = {"status": "UPLOADED", "versionId": "v1", "etag": "e1", "expiresAt": 2_000_000_000, "sequencer": "0A"}


def test_a_live_upload_of_the_same_version_is_recognised() -> None:
    assert is_live_upload(LIVE, HEAD, now=1_900_000_000)
    assert not is_live_upload(LIVE, ObjectHead("v2", "e1", 1), now=1_900_000_000)
    assert not is_live_upload(LIVE, ObjectHead("v1", "e2", 1), now=1_900_000_000)
    assert not is_live_upload(LIVE, HEAD, now=2_000_000_001)  # expired at kie.ai
    assert not is_live_upload(LIVE, HEAD, now=1_900_000_000, min_valid=100_000_001)  # not long enough
    assert not is_live_upload({**LIVE, "status": "FAILED"}, HEAD, now=0)
    assert not is_live_upload(None, HEAD, now=0)


def test_only_a_permanent_refusal_of_the_same_version_is_settled() -> None:
    refused = {"status": "FAILED", "errorKind": "permanent", "versionId": "v1", "etag": "e1"}

    assert is_settled_refusal(refused, HEAD)
    assert not is_settled_refusal({**refused, "errorKind": "transient"}, HEAD)
    assert not is_settled_refusal(refused, ObjectHead("v1", "e2", 1))


@pytest.mark.parametrize(
    ("stored", "incoming", "covered"),
    [
        ("0A", "0B", False),
        ("0B", "0A", True),
        ("0A", "0A", True),  # the same event again
        ("0A01", "0B", False),  # different lengths: padded comparison
        ("0B", "0A01", True),
    ],
)
def test_a_stored_sequencer_covers_older_events(stored: str, incoming: str, covered: bool) -> None:
    assert covers_sequencer({**LIVE, "sequencer": stored}, incoming) is covered
    assert newest_sequencer({"sequencer": stored}, incoming) == (stored if covered else incoming)


def test_a_retryable_failure_covers_nothing() -> None:
    failed = {"status": "FAILED", "retryable": True, "sequencer": "0F"}

    assert not covers_sequencer(failed, "0A")
    assert covers_sequencer({**failed, "retryable": False}, "0A")
    assert not covers_sequencer(LIVE, None) and not covers_sequencer(None, "0A")


def test_claims_of_others_count_only_while_their_lease_runs() -> None:
    claimed = {"claimOwner": "other", "claimUntil": 1000}

    assert claimed_by_other(claimed, "me", now_ms=999)
    assert not claimed_by_other(claimed, "me", now_ms=1000)  # lease over: may be taken over
    assert not claimed_by_other(claimed, "other", now_ms=0)  # its own claim
    assert not claimed_by_other(LIVE, "me", now_ms=0)
    assert revision(None) == 0 and revision({"rev": 4}) == 4 and revision(LIVE) == 0


# --- names and paths --------------------------------------------------------------------------------------


def test_every_upload_gets_a_new_safe_path() -> None:
    paths = {upload_path("s3-uploads", "photos") for _ in range(50)}

    assert len(paths) == 50  # a file someone may be using is never overwritten
    for path in paths:
        assert re.fullmatch(r"s3-uploads/photos/[0-9a-f]{16}", path)


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("a/b/c.png", "c.png"),
        ("top.txt", "top.txt"),
        ("dir/", "object"),
        ("x/tab\there.txt", "tab_here.txt"),
        ("a/.", "object"),  # kie.ai refuses "." and ".." as file names
        ("a/..", "object"),
        ("..", "object"),
        ("a/...", "..."),
    ],
)
def test_file_name_is_the_keys_base_name(key: str, name: str) -> None:
    assert file_name(key) == name


def test_expiry_counts_the_retention_from_kies_upload_time() -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)

    assert expires_at("2025-01-01T12:00:00.000Z", 259_200, now) == 1_735_732_800 + 259_200
    assert expires_at(None, 100, now) == int(now.timestamp()) + 100
    assert expires_at("garbage", 100, now) == int(now.timestamp()) + 100


def all_requests() -> list[dict[str, Any]]:
    t, up = table(), Upload(RESULT, "p", 1)
    return [
        settle(Settle(Status.UPLOADED, head=HEAD, upload=up, sequencer="0A", request_id="r")),
        settle(Settle(Status.FAILED, head=HEAD, error="e", error_kind=ErrorKind.TRANSIENT)),
        settle(Settle(Status.SKIPPED, error="gone", error_kind=ErrorKind.PERMANENT), rev=0),
        settle(Settle(Status.DELETED)),
        t.claim_request(EVENT, 0, owner="o", until_ms=1, now=NOW),
        t.claim_request(EVENT, 2, owner="o", until_ms=1, now=NOW),
        t.bump_request(EVENT, 2),
    ]


@pytest.mark.parametrize("request_index", range(7))
def test_every_placeholder_is_used_exactly_as_dynamodb_requires(request_index: int) -> None:
    # DynamoDB refuses a request with an unused name or value placeholder (ValidationException).
    request = all_requests()[request_index]
    text = request["UpdateExpression"] + " " + request["ConditionExpression"]

    for placeholder in [*request["ExpressionAttributeNames"], *request.get("ExpressionAttributeValues", {})]:
        assert re.search(re.escape(placeholder) + r"\b", text), placeholder
    for used in re.findall(r"[#:][A-Za-z0-9]+", text):
        assert used in request["ExpressionAttributeNames"] or used in request["ExpressionAttributeValues"]
