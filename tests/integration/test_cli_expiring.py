"""``kie-uploader list --expiring-within`` against DynamoDB in ministack: a table with the sparse ``byExpiry``
index (``liveBucket``, ``expiresAt``, KEYS_ONLY) as the stack makes it. The index is queried per bucket of
the stack (never a scan), then the records are read for their details."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any

import boto3
import pytest

from kie_uploader.cli import aws as cli_aws
from kie_uploader.cli import entry, main
from kie_uploader.cli.aws import StackResources
from kie_uploader.cli.errors import EXIT_ERROR, EXIT_OK


@pytest.fixture
def table(aws_env: dict[str, str]) -> Iterator[str]:
    name = f"records-{uuid.uuid4().hex[:8]}"
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "liveBucket", "AttributeType": "S"},
            {"AttributeName": "expiresAt", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "byExpiry",
                "KeySchema": [
                    {"AttributeName": "liveBucket", "KeyType": "HASH"},
                    {"AttributeName": "expiresAt", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    try:
        yield name
    finally:
        dynamodb.delete_table(TableName=name)


def put(table: str, bucket: str, key: str, status: str, expires_in: int | None = None, **extra: Any) -> None:
    item: dict[str, Any] = {
        "pk": {"S": f"s3://{bucket}/{key}"},
        "bucket": {"S": bucket},
        "key": {"S": key},
        "status": {"S": status},
        "size": {"N": "5"},
    }
    if status == "UPLOADED" and expires_in is not None:
        item["liveBucket"] = {"S": bucket}
        item["expiresAt"] = {"N": str(int(time.time()) + expires_in)}  # now: the module loads long before
        item["downloadUrl"] = {"S": f"https://tempfile.example/{key}"}
    for name, value in extra.items():
        item[name] = {"S": value} if isinstance(value, str) else {"N": str(value)}
    boto3.client("dynamodb").put_item(TableName=table, Item=item)


@pytest.fixture
def run(
    table: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str, list[str]]]:
    """``main`` against a stack whose outputs name ``table`` and the buckets b-one and b-two; returns the
    DynamoDB operations it made too."""
    operations: list[str] = []

    class LocalAws(cli_aws.Aws):
        @cached_property
        def stack(self) -> StackResources:
            return StackResources.from_outputs(
                self.stack_name,
                {
                    "BucketNames": "b-one,b-two",
                    "QueueUrl": "q",
                    "DeadLetterQueueUrl": "d",
                    "TableName": table,
                },
            )

        @cached_property
        def dynamodb(self) -> Any:
            client = self.client("dynamodb")
            client.meta.events.register(
                "before-call.dynamodb.*", lambda model, **_: operations.append(model.name)
            )
            return client

    monkeypatch.setattr(entry, "Aws", LocalAws)

    def invoke(*argv: str) -> tuple[int, str, str, list[str]]:
        operations.clear()
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err, list(operations)

    return invoke


def test_list_expiring_within_queries_the_index_per_bucket_and_shows_the_records(
    table: str, run: Callable[..., tuple[int, str, str, list[str]]]
) -> None:
    put(table, "b-one", "p/soon.txt", "UPLOADED", 3600)
    put(table, "b-one", "p/expired.txt", "UPLOADED", -7200)
    put(table, "b-one", "p/later.txt", "UPLOADED", 3 * 86_400)
    put(table, "b-one", "q/soon.txt", "UPLOADED", 600)
    put(table, "b-two", "soonest.txt", "UPLOADED", 60)
    put(table, "b-one", "p/failed.txt", "FAILED", error="kie.ai answered 500")

    code, out, err, operations = run("list", "--expiring-within", "12h", "--json")
    assert (code, err) == (EXIT_OK, "")
    listed = json.loads(out)
    # Soonest first, expired ones included (their state says so), nothing that is not UPLOADED
    assert [r["pk"] for r in listed] == [
        "s3://b-one/p/expired.txt",
        "s3://b-two/soonest.txt",
        "s3://b-one/q/soon.txt",
        "s3://b-one/p/soon.txt",
    ]
    assert [r["state"] for r in listed] == ["EXPIRED", "LIVE", "LIVE", "LIVE"]
    assert listed[1]["downloadUrl"] == "https://tempfile.example/soonest.txt"  # the details, from the record
    assert "Scan" not in operations and operations.count("Query") == 2 and "BatchGetItem" in operations

    code, out, _, operations = run("list", "--expiring-within", "12h", "s3://b-one/p/")
    assert code == EXIT_OK
    lines = out.splitlines()
    # One bucket: named above the header, keys relative to it
    assert lines[0] == "keys in s3://b-one/"
    assert [line.split()[0] for line in lines[3:-1]] == ["p/expired.txt", "p/soon.txt"]
    assert "expired 2 h ago" in lines[3] and "tempfile.example" not in lines[3]
    assert "live, 59 min left" in lines[4] or "live, 1 h left" in lines[4]
    assert lines[-1] == "2 records"
    assert operations.count("Query") == 1 and "Scan" not in operations


def test_list_expiring_within_refuses_what_it_cannot_answer(
    table: str, run: Callable[..., tuple[int, str, str, list[str]]]
) -> None:
    code, _, err, operations = run("list", "--expiring-within", "1h", "s3://other-bucket/")
    assert code == EXIT_ERROR and "bucket other-bucket is not watched by stack KieUploader" in err
    code, _, err, _ = run("list", "--expiring-within", "1h", "--status", "FAILED")
    assert code == EXIT_ERROR and "--expiring-within lists UPLOADED records only" in err
