"""The table adapter's conditional writes against DynamoDB Local, AWS's own engine."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from kie_uploader import local
from uploader.kie import KieUpload
from uploader.models import ErrorKind, EventKind, ObjectHead, ObjectRef, Status
from uploader.table import RecordTable, Upload

T0, T1, T2, T3 = (f"2025-01-01T12:00:0{i}.000Z" for i in range(4))
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


def event(sequencer: str, version: str = "v1", etag: str = "e1", time: str = T1, **kw: Any) -> ObjectRef:
    return ObjectRef("photos", KEY, version_id=version, etag=etag, sequencer=sequencer, event_time=time, **kw)


def head(version: str = "v1", etag: str = "e1") -> ObjectHead:
    return ObjectHead(version_id=version, etag=etag, size=3, content_type="image/png")


def upload(name: str = "a b.png", expires: int = NOW + 259_200) -> Upload:
    result = KieUpload(f"https://kie/{name}", f"p/{name}", name, 3, "image/png", T1)
    return Upload(result=result, upload_path="p", expires_at=expires)


def uploaded(
    table: RecordTable, ref: ObjectRef, h: ObjectHead | None = None, at: str = T1, **kw: Any
) -> bool:
    return table.put_uploaded(
        ref, h or head(ref.version_id or "v1", ref.etag or "e1"), upload(), observed_at=at, attempts=1, **kw
    )


def failed(table: RecordTable, ref: ObjectRef, at: str = T2, h: ObjectHead | None = None) -> bool:
    return table.put_failed(
        ref,
        Status.FAILED,
        error="kie.ai HTTP 500",
        kind=ErrorKind.TRANSIENT,
        observed_at=at,
        attempts=1,
        now=NOW,
        head=h,
    )


PLAIN = ObjectRef("photos", KEY)
PK = f"s3://photos/{KEY}"


def stored(table: RecordTable) -> dict[str, Any]:
    """The object's record, which the test expects to exist."""
    record = table.get(PK)
    assert record is not None, f"no record for {PK}"
    return record


def test_the_first_write_creates_the_record(table: RecordTable) -> None:
    assert uploaded(table, event("0A"))

    record = stored(table)
    assert record["status"] == "UPLOADED" and record["sequencer"] == "0A" and record["attempts"] == 1
    assert record["downloadUrl"] == "https://kie/a b.png" and record["expiresAt"] == NOW + 259_200


def test_a_newer_event_overwrites_and_an_older_one_is_superseded(table: RecordTable) -> None:
    uploaded(table, event("0B", "v2", "e2"))

    assert not uploaded(table, event("0A", "v1", "e1"))
    assert uploaded(table, event("0C", "v3", "e3"))
    assert stored(table)["versionId"] == "v3"


def test_sequencers_of_different_lengths_are_ordered_by_padding(table: RecordTable) -> None:
    uploaded(table, event("0A01"))  # canonical forms: what the event parser stores

    assert not uploaded(table, event("0A", "v0", "e0"))  # 0A00 < 0A01
    assert uploaded(table, event("0B", "v2", "e2"))  # 0B00 > 0A01


def test_the_same_event_again_may_write(table: RecordTable) -> None:
    assert failed(table, event("0A"), h=head())

    assert uploaded(table, event("0A"))
    record = stored(table)
    assert record["status"] == "UPLOADED" and "error" not in record and record["attempts"] == 2


def test_a_failure_never_hides_a_live_upload_of_the_same_version(table: RecordTable) -> None:
    uploaded(table, event("0A"))

    assert not failed(table, event("0A"), h=head())
    assert stored(table)["status"] == "UPLOADED"


def test_a_failure_of_a_newer_version_replaces_the_older_upload(table: RecordTable) -> None:
    uploaded(table, event("0A"))

    assert failed(table, event("0B", "v2", "e2"), h=head("v2", "e2"))
    record = stored(table)
    assert record["status"] == "FAILED" and record["errorKind"] == "transient" and record["retryable"] is True
    assert "downloadUrl" not in record and "filePath" not in record


def test_deleted_removes_the_download_url_and_blocks_older_events(table: RecordTable) -> None:
    uploaded(table, event("0A"))

    assert table.put_deleted(event("0B", kind=EventKind.REMOVED), observed_at=T2)
    assert not uploaded(table, event("0A"))
    record = stored(table)
    assert record["status"] == "DELETED" and "downloadUrl" not in record and record["sequencer"] == "0B"


def test_an_older_deletion_is_superseded(table: RecordTable) -> None:
    uploaded(table, event("0B"))

    assert not table.put_deleted(event("0A", kind=EventKind.REMOVED), observed_at=T2)
    assert stored(table)["status"] == "UPLOADED"


def test_a_deletion_of_an_unknown_object_is_recorded(table: RecordTable) -> None:
    assert table.put_deleted(event("0A", kind=EventKind.REMOVED), observed_at=T2)

    assert stored(table)["status"] == "DELETED"


def test_deleting_an_old_version_leaves_the_current_one(table: RecordTable) -> None:
    uploaded(table, event("0B", "v2", "e2"))

    removal = event("0C", "v1", kind=EventKind.REMOVED, permanent_delete=True)
    assert not table.put_deleted(removal, observed_at=T2)
    assert table.put_deleted(event("0D", "v2", kind=EventKind.REMOVED, permanent_delete=True), observed_at=T3)


def test_a_plain_message_creates_a_record_without_sequencer(table: RecordTable) -> None:
    assert uploaded(table, PLAIN, head(), at=T1)

    assert "sequencer" not in stored(table)


def test_a_plain_message_of_the_same_version_keeps_the_sequencer(table: RecordTable) -> None:
    failed(table, event("0A"), h=head())

    assert uploaded(table, PLAIN, head(), at=T0, plain_same_version=True)
    assert stored(table)["sequencer"] == "0A"


def test_a_plain_message_never_overwrites_another_version_read_after_it(table: RecordTable) -> None:
    uploaded(table, event("0B", "v2", "e2"), at=T2)

    assert not uploaded(table, PLAIN, head("v1", "e1"), at=T1)  # read at T1, before v2's record
    assert stored(table)["versionId"] == "v2"


def test_a_plain_message_read_later_replaces_another_version_and_drops_its_sequencer(
    table: RecordTable,
) -> None:
    uploaded(table, event("0B", "v1", "e1"), at=T1)

    assert uploaded(table, PLAIN, head("v2", "e2"), at=T2)
    record = stored(table)
    assert record["versionId"] == "v2" and "sequencer" not in record


def test_an_event_over_a_plain_record_is_ordered_by_time(table: RecordTable) -> None:
    uploaded(table, PLAIN, head("v2", "e2"), at=T2)

    assert not uploaded(table, event("01", "v1", "e1", time=T1))  # happened before the record was read
    assert uploaded(table, event("02", "v3", "e3", time=T3))  # happened after
    assert stored(table)["versionId"] == "v3"


def test_attempts_accumulate_across_deliveries(table: RecordTable) -> None:
    failed(table, event("0A"), h=head())
    failed(table, event("0A"), h=head())
    uploaded(table, event("0A"))

    assert stored(table)["attempts"] == 3


def test_a_missing_table_is_a_configuration_error(dynamodb_local: local.Server) -> None:
    from uploader.errors import ConfigurationError

    client = local.local_client("dynamodb", dynamodb_local.endpoint_url)

    with pytest.raises(ConfigurationError, match="ResourceNotFoundException"):
        RecordTable("no-such-table", client=client).get(PK)
