"""The table adapter's conditional writes against DynamoDB Local, AWS's own engine."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from kie_uploader import local
from uploader.kie import KieUpload
from uploader.models import ErrorKind, ObjectHead, ObjectRef, Status
from uploader.table import RecordTable, Settle, Upload

T1, T2 = "2025-01-01T12:00:01.000Z", "2025-01-01T12:00:02.000Z"
NOW = 1_735_732_800  # 2025-01-01T12:00:00Z
KEY = "dir/a b.png"


@pytest.fixture
def table(dynamodb_local: local.Server) -> RecordTable:
    client = local.local_client("dynamodb", dynamodb_local.endpoint_url)
    name = f"records-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return RecordTable(name, client=client)


EVENT = ObjectRef("photos", KEY, version_id="v1", etag="e1", sequencer="0A")
PK = f"s3://photos/{KEY}"
HEAD = ObjectHead(version_id="v1", etag="e1", size=3, content_type="image/png")


def upload(name: str = "a b.png", expires: int = NOW + 259_200) -> Upload:
    result = KieUpload(f"https://kie/{name}", f"p/{name}", name, 3, "image/png", T1)
    return Upload(result=result, upload_path="p", expires_at=expires)


def settle(table: RecordTable, rev: int, state: Settle, attempts: int = 1) -> bool:
    return table.settle(EVENT, rev, state, observed_at=T1, now=NOW, attempts=attempts)


def stored(table: RecordTable) -> dict[str, Any]:
    """The object's record, which the test expects to exist."""
    record = table.get(PK)
    assert record is not None, f"no record for {PK}"
    return record


def test_a_first_claim_creates_a_record_without_status(table: RecordTable) -> None:
    assert table.claim(EVENT, 0, owner="a", until_ms=10, now=NOW)

    record = stored(table)
    assert record["rev"] == 1 and record["claimOwner"] == "a" and "status" not in record
    assert record["purgeAt"] == NOW + 2_592_000


def test_only_one_of_two_claims_at_the_same_revision_lands(table: RecordTable) -> None:
    assert table.claim(EVENT, 0, owner="a", until_ms=10, now=NOW)
    assert not table.claim(EVENT, 0, owner="b", until_ms=10, now=NOW)
    assert table.claim(EVENT, 1, owner="b", until_ms=10, now=NOW)  # after reading again

    assert stored(table)["claimOwner"] == "b"


def test_settling_at_the_claimed_revision_writes_and_releases_the_claim(table: RecordTable) -> None:
    table.claim(EVENT, 0, owner="a", until_ms=10, now=NOW)

    assert settle(table, 1, Settle(Status.UPLOADED, head=HEAD, upload=upload(), sequencer="0A"))

    record = stored(table)
    assert record["status"] == "UPLOADED" and record["rev"] == 2 and record["sequencer"] == "0A"
    assert "claimOwner" not in record and "claimUntil" not in record
    assert record["purgeAt"] == NOW + 259_200 + 2_592_000


def test_a_bumped_claim_cannot_settle(table: RecordTable) -> None:
    table.claim(EVENT, 0, owner="a", until_ms=10, now=NOW)
    assert table.bump(EVENT, 1)  # another delivery saw the claim: the holder must read S3 again

    assert not settle(table, 1, Settle(Status.UPLOADED, head=HEAD, upload=upload()))
    assert stored(table)["rev"] == 2 and "status" not in stored(table)


def test_a_write_of_a_stale_revision_is_refused_whatever_it_says(table: RecordTable) -> None:
    table.claim(EVENT, 0, owner="a", until_ms=10, now=NOW)
    settle(table, 1, Settle(Status.DELETED))

    assert not settle(table, 1, Settle(Status.UPLOADED, head=HEAD, upload=upload()))
    assert stored(table)["status"] == "DELETED"


def test_deleted_removes_the_download_url(table: RecordTable) -> None:
    table.claim(EVENT, 0, owner="a", until_ms=10, now=NOW)
    settle(table, 1, Settle(Status.UPLOADED, head=HEAD, upload=upload()))
    table.claim(EVENT, 2, owner="b", until_ms=10, now=NOW)

    assert settle(table, 3, Settle(Status.DELETED))

    record = stored(table)
    assert record["status"] == "DELETED" and "downloadUrl" not in record and "expiresAt" not in record


def test_release_keeps_the_state_and_notes_a_newer_sequencer(table: RecordTable) -> None:
    table.claim(EVENT, 0, owner="a", until_ms=10, now=NOW)
    settle(table, 1, Settle(Status.UPLOADED, head=HEAD, upload=upload(), sequencer="0A"))
    table.claim(EVENT, 2, owner="b", until_ms=10, now=NOW)

    assert table.release(EVENT, 3, sequencer="0B")

    record = stored(table)
    assert record["status"] == "UPLOADED" and record["sequencer"] == "0B" and "claimOwner" not in record


def test_a_record_written_before_revisions_existed_is_claimed_at_revision_zero(table: RecordTable) -> None:
    table._client.put_item(
        TableName=table._table, Item={"pk": {"S": PK}, "status": {"S": "UPLOADED"}, "versionId": {"S": "v0"}}
    )

    assert table.claim(EVENT, 0, owner="a", until_ms=10, now=NOW)
    assert stored(table)["rev"] == 1 and stored(table)["status"] == "UPLOADED"


def test_forget_removes_only_the_record_its_own_claim_created(table: RecordTable) -> None:
    plain = ObjectRef(EVENT.bucket, EVENT.key)  # a plain message: no event seen
    assert table.claim(plain, 0, owner="a", until_ms=10, now=NOW)
    assert not table.forget(plain, 2)  # not at the claimed revision
    assert table.forget(plain, 1)
    assert table.get(PK) is None


def test_forget_keeps_a_record_an_event_was_seen_for_or_one_with_a_status(table: RecordTable) -> None:
    plain = ObjectRef(EVENT.bucket, EVENT.key)
    assert table.claim(plain, 0, owner="a", until_ms=10, now=NOW)
    assert table.bump(EVENT, 1)  # an S3 event's delivery found the claim
    assert not table.forget(plain, 2)
    assert stored(table)["eventSeen"] is True
    settle(table, 2, Settle(Status.DELETED), attempts=0)
    assert not table.forget(plain, 3)  # a settled record is never forgotten


def test_forget_removes_a_skipped_record_of_an_older_version(table: RecordTable) -> None:
    table._client.put_item(
        TableName=table._table, Item={"pk": {"S": PK}, "status": {"S": "SKIPPED"}, "rev": {"N": "4"}}
    )
    assert table.forget(ObjectRef(EVENT.bucket, EVENT.key), 4)
    assert table.get(PK) is None


def test_attempts_accumulate_across_deliveries(table: RecordTable) -> None:
    table.claim(EVENT, 0, owner="a", until_ms=10, now=NOW)
    transient = Settle(Status.FAILED, head=HEAD, error="kie.ai HTTP 500", error_kind=ErrorKind.TRANSIENT)
    settle(table, 1, transient, attempts=3)
    table.claim(EVENT, 2, owner="b", until_ms=10, now=NOW)
    settle(table, 3, Settle(Status.UPLOADED, head=HEAD, upload=upload()), attempts=1)

    assert stored(table)["attempts"] == 4


def test_a_missing_table_is_a_configuration_error(dynamodb_local: local.Server) -> None:
    from uploader.errors import ConfigurationError

    client = local.local_client("dynamodb", dynamodb_local.endpoint_url)

    with pytest.raises(ConfigurationError, match="ResourceNotFoundException"):
        RecordTable("no-such-table", client=client).get(PK)
