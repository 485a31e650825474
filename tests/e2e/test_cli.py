"""``kie-uploader`` against the real stack deployed into ministack, with the kie.ai emulator behind it.

Messages the CLI sends are counted by reading them off the queue while the function's SQS event source
mapping is disabled (``paused_queue``); everything else runs the deployed function for real. FAILED and
expired records are made by editing real records (the function's own failure paths are its tests' job).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kie_uploader import local
from kie_uploader.cli.errors import EXIT_ERROR, EXIT_NO, EXIT_OK
from tests.e2e.conftest import Run

RECORD_TIMEOUT = 120.0


@contextmanager
def paused_queue(aws: SimpleNamespace, outputs: dict[str, str]) -> Iterator[None]:
    """Disable the function's SQS event source, so messages stay on the queue to be counted."""
    mappings = aws.lambda_.list_event_source_mappings(FunctionName=outputs["FunctionName"])[
        "EventSourceMappings"
    ]
    queue_name = outputs["QueueUrl"].rsplit("/", 1)[-1]
    uuids = [m["UUID"] for m in mappings if m["EventSourceArn"].endswith(f":{queue_name}")]
    assert uuids, f"no SQS event source mapping for {queue_name}"
    for mapping in uuids:
        aws.lambda_.update_event_source_mapping(UUID=mapping, Enabled=False)
    try:
        drain(aws.sqs, outputs["QueueUrl"])  # start from an empty queue
        yield
    finally:
        for mapping in uuids:
            aws.lambda_.update_event_source_mapping(UUID=mapping, Enabled=True)


def drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Receive and delete every message on the queue; returns their JSON bodies."""
    bodies: list[dict[str, Any]] = []
    empty = 0
    while empty < 2:  # one empty short receive can be a false empty
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        if not messages:
            empty += 1
            continue
        empty = 0
        for message in messages:
            bodies.append(json.loads(message["Body"]))
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    return bodies


def keys_under(bodies: list[dict[str, Any]], bucket: str, prefix: str) -> list[str]:
    return sorted(
        b["key"] for b in bodies if b.get("bucket") == bucket and b.get("key", "").startswith(prefix)
    )


def wait_for_status(
    aws: SimpleNamespace,
    table: str,
    pks: list[str],
    status: str = "UPLOADED",
    timeout: float = RECORD_TIMEOUT,
) -> dict[str, dict[str, Any]]:
    """Wait until every pk has a record with ``status``; fails naming the ones that did not."""
    deadline = time.monotonic() + timeout
    found: dict[str, dict[str, Any]] = {}
    while True:
        for pk in pks:
            if pk in found:
                continue
            item = aws.dynamodb.get_item(TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True).get(
                "Item"
            )
            if item and item.get("status", {}).get("S") == status:  # a first claim has no status yet
                found[pk] = item
        missing = [pk for pk in pks if pk not in found]
        if not missing:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{len(missing)} records did not reach {status}: {missing[:5]}")
        time.sleep(0.5)


def put_uploaded(aws: SimpleNamespace, outputs: dict[str, str], bucket: str, keys: list[str]) -> None:
    """Put objects and wait until the deployed function has uploaded every one (via its S3 notification)."""
    for key in keys:
        aws.s3.put_object(Bucket=bucket, Key=key, Body=f"body of {key}".encode())
    wait_for_status(aws, outputs["TableName"], [f"s3://{bucket}/{k}" for k in keys])


# --- backfill --------------------------------------------------------------------------------------


def test_backfill_enqueues_the_objects_without_a_live_upload_and_force_enqueues_all(
    cli: Callable[..., Run], aws: SimpleNamespace, outputs: dict[str, str], bucket: str, prefix: str
) -> None:
    # Given 25 objects, of which only 3 still have their UPLOADED record
    keys = [f"{prefix}object {i:02d}.txt" for i in range(25)]
    put_uploaded(aws, outputs, bucket, keys)
    for key in keys[3:]:
        aws.dynamodb.delete_item(TableName=outputs["TableName"], Key={"pk": {"S": f"s3://{bucket}/{key}"}})
    uri = f"s3://{bucket}/{prefix}"

    with paused_queue(aws, outputs):
        # When backfilling the prefix
        run = cli("backfill", uri)
        # Then the 22 objects without a record are enqueued, in the plain message form
        assert run.code == EXIT_OK, run.err
        assert run.out.strip() == f"{uri}: 25 objects listed, 3 already uploaded, 22 enqueued, 0 failed"
        bodies = drain(aws.sqs, outputs["QueueUrl"])
        assert keys_under(bodies, bucket, prefix) == keys[3:]
        assert {json.dumps(b, sort_keys=True) for b in bodies} == {
            json.dumps({"bucket": bucket, "key": k}, sort_keys=True) for k in keys[3:]
        }

        # And with --force every object is enqueued, each message asking for a new upload under its own
        # requestId (a redelivery of the message is then a duplicate, not another upload)
        run = cli("--json", "backfill", uri, "--force")
        assert run.code == EXIT_OK, run.err
        summary = json.loads(run.out)
        assert (summary["listed"], summary["alreadyUploaded"], summary["enqueued"], summary["failed"]) == (
            25,
            0,
            25,
            0,
        )
        forced = drain(aws.sqs, outputs["QueueUrl"])
        assert keys_under(forced, bucket, prefix) == keys
        assert all(b["force"] is True for b in forced)
        assert len({uuid.UUID(b["requestId"]) for b in forced}) == len(forced)


def test_backfilled_objects_are_uploaded_by_the_deployed_function(
    cli: Callable[..., Run], aws: SimpleNamespace, outputs: dict[str, str], bucket: str, prefix: str
) -> None:
    # Given objects whose records are gone (as for objects that predate the stack)
    keys = [f"{prefix}a.txt", f"{prefix}sub/b.txt"]
    put_uploaded(aws, outputs, bucket, keys)
    for key in keys:
        aws.dynamodb.delete_item(TableName=outputs["TableName"], Key={"pk": {"S": f"s3://{bucket}/{key}"}})
    # When backfilling them with the function consuming the queue
    run = cli("backfill", f"s3://{bucket}/{prefix}")
    assert run.code == EXIT_OK, run.err
    # Then each gets its UPLOADED record again
    wait_for_status(aws, outputs["TableName"], [f"s3://{bucket}/{k}" for k in keys])


# --- status and list -------------------------------------------------------------------------------


@pytest.fixture
def uploaded(aws: SimpleNamespace, outputs: dict[str, str], bucket: str, prefix: str) -> str:
    """One object the deployed function has uploaded; returns its S3 URI."""
    key = f"{prefix}photos/été 2025.txt"
    put_uploaded(aws, outputs, bucket, [key])
    return f"s3://{bucket}/{key}"


def test_status_of_an_uploaded_object_shows_its_record_and_exits_0(
    cli: Callable[..., Run], uploaded: str
) -> None:
    run = cli("status", uploaded)
    assert run.code == EXIT_OK, run.err
    lines = dict(line.split(None, 1) for line in run.out.splitlines())
    assert lines["pk"] == uploaded
    assert lines["status"] == "UPLOADED"
    assert lines["state"].startswith("live, 2 d 23 h left")
    assert lines["downloadUrl"].startswith("http://127.0.0.1:")
    assert "(in " in lines["expiresAt"]

    data = json.loads(cli("--json", "status", uploaded).out)
    assert (data["pk"], data["status"]) == (uploaded, "UPLOADED")
    assert isinstance(data["expiresAt"], int)


def test_status_exits_1_when_the_upload_has_expired(
    cli: Callable[..., Run], aws: SimpleNamespace, outputs: dict[str, str], uploaded: str
) -> None:
    aws.dynamodb.update_item(
        TableName=outputs["TableName"],
        Key={"pk": {"S": uploaded}},
        UpdateExpression="SET expiresAt = :t",
        ExpressionAttributeValues={":t": {"N": str(int(time.time()) - 60)}},
    )
    run = cli("status", uploaded)
    assert run.code == EXIT_NO
    lines = dict(line.split(None, 1) for line in run.out.splitlines())
    assert lines["state"].startswith("expired 1 min ago")
    assert "(expired 1m " in lines["expiresAt"]
    # The URL is not shown as if it could still be used
    assert lines["downloadUrl"] == "(not served: expired 1 min ago)"
    assert json.loads(cli("--json", "status", uploaded).out)["state"] == "EXPIRED"


def test_status_exits_1_for_an_object_without_a_record(
    cli: Callable[..., Run], bucket: str, prefix: str
) -> None:
    uri = f"s3://{bucket}/{prefix}never-put.txt"
    run = cli("status", uri)
    assert (run.code, run.out.strip(), run.err) == (
        EXIT_NO,
        f"{uri}: no such object in S3, and no record of one",
        "",
    )
    assert json.loads(cli("status", uri, "--json").out) == {
        "pk": uri,
        "state": "NOT_IN_S3",
        "stateDescription": "no such object in S3, and no record of one",
    }


def test_status_exits_1_for_a_failed_object(
    cli: Callable[..., Run], aws: SimpleNamespace, outputs: dict[str, str], uploaded: str
) -> None:
    mark_failed(aws, outputs, uploaded, retryable=False)
    run = cli("status", uploaded)
    assert run.code == EXIT_NO
    assert "FAILED" in run.out and "permanent" in run.out


def mark_failed(aws: SimpleNamespace, outputs: dict[str, str], uri: str, *, retryable: bool) -> None:
    """Turn a real record into a FAILED one, as the function writes them."""
    aws.dynamodb.update_item(
        TableName=outputs["TableName"],
        Key={"pk": {"S": uri}},
        UpdateExpression="SET #s = :s, #e = :e, errorKind = :k, retryable = :r REMOVE downloadUrl, expiresAt",
        ExpressionAttributeNames={"#s": "status", "#e": "error"},
        ExpressionAttributeValues={
            ":s": {"S": "FAILED"},
            ":e": {"S": "kie.ai answered 500" if retryable else "kie.ai answered 400"},
            ":k": {"S": "transient" if retryable else "permanent"},
            ":r": {"BOOL": retryable},
        },
    )


def test_list_filters_by_prefix_and_status(
    cli: Callable[..., Run],
    aws: SimpleNamespace,
    outputs: dict[str, str],
    bucket: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = [f"{prefix}one.txt", f"{prefix}two.txt", f"{prefix}three.txt"]
    put_uploaded(aws, outputs, bucket, keys)
    mark_failed(aws, outputs, f"s3://{bucket}/{keys[2]}", retryable=True)
    uri = f"s3://{bucket}/{prefix}"

    run = cli("list", "--prefix", uri, "--json")
    assert run.code == EXIT_OK, run.err
    # In the table's order (sorted within each page of the scan): the same records, whatever the order.
    assert sorted(r["pk"] for r in json.loads(run.out)) == sorted(f"s3://{bucket}/{k}" for k in keys)

    monkeypatch.setenv("COLUMNS", "200")
    run = cli("list", "--status", "failed", "--prefix", uri)
    assert run.code == EXIT_OK, run.err
    lines = run.out.splitlines()
    assert lines[0] == f"keys in s3://{bucket}/"
    assert lines[1].split()[:3] == ["KEY", "STATUS", "STATE"]
    assert len(lines) == 5 and lines[-1] == "1 record"
    assert lines[3].startswith(f"{keys[2]}  FAILED  waiting for a retry")  # relative to the bucket
    assert "[transient, retryable] kie.ai answered 500" in lines[3]


# --- retry-failed (redrive: test_cli_ops.py) -----------------------------------------------------


def test_retry_failed_enqueues_only_retryable_failures(
    cli: Callable[..., Run], aws: SimpleNamespace, outputs: dict[str, str], bucket: str, prefix: str
) -> None:
    keys = [f"{prefix}transient.txt", f"{prefix}permanent.txt", f"{prefix}fine.txt"]
    put_uploaded(aws, outputs, bucket, keys)
    mark_failed(aws, outputs, f"s3://{bucket}/{keys[0]}", retryable=True)
    mark_failed(aws, outputs, f"s3://{bucket}/{keys[1]}", retryable=False)
    with paused_queue(aws, outputs):
        run = cli("retry-failed", "--prefix", f"s3://{bucket}/{prefix}")
        assert run.code == EXIT_OK, run.err
        assert run.out.strip() == "1 retryable FAILED record: 1 enqueued, 0 failed"
        assert drain(aws.sqs, outputs["QueueUrl"]) == [{"bucket": bucket, "key": keys[0]}]


# --- errors a user meets ---------------------------------------------------------------------------


def one_line_error(run: Run, text: str) -> None:
    assert run.code == EXIT_ERROR
    assert run.out == ""
    assert run.err.count("\n") == 1 and "Traceback" not in run.err
    assert text in run.err


def test_no_such_stack(cli: Callable[..., Run]) -> None:
    one_line_error(cli("--stack", "NoSuchStack", "list"), "no such stack: NoSuchStack in us-east-1")


def test_no_such_bucket(cli: Callable[..., Run]) -> None:
    name = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    one_line_error(cli("backfill", f"s3://{name}/x/"), f"no such bucket: {name}")


def test_a_bucket_the_stack_does_not_watch_is_refused(cli: Callable[..., Run], aws: SimpleNamespace) -> None:
    name = f"other-bucket-{uuid.uuid4().hex[:8]}"
    aws.s3.create_bucket(Bucket=name)
    one_line_error(cli("backfill", f"s3://{name}/"), f"bucket {name} is not watched by stack KieUploader")


def test_malformed_s3_uri(cli: Callable[..., Run]) -> None:
    run = cli("status", "s3:/bucket/key")
    assert run.code == EXIT_ERROR
    assert "malformed S3 URI 's3:/bucket/key'" in run.err and "Traceback" not in run.err


def test_no_credentials(cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    one_line_error(cli("list"), "no AWS credentials found")


def test_an_endpoint_that_is_not_running(cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch) -> None:
    port = local.free_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    one_line_error(cli("list"), f"cannot connect to http://127.0.0.1:{port}")


# --- the installed console script ------------------------------------------------------------------


def test_the_installed_console_script_runs_and_reports_exit_codes(
    cli_env: dict[str, str], uploaded: str
) -> None:
    script = Path(sys.executable).parent / "kie-uploader"
    assert script.exists(), "run `.venv/bin/pip install -e .` to install the console script"
    env = {**os.environ, **cli_env}

    ok = subprocess.run(
        [script, "--json", "status", uploaded], env=env, capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] == "UPLOADED"

    bad = subprocess.run(
        [script, "--stack", "Nope", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == EXIT_ERROR
    assert bad.stderr.startswith("kie-uploader: error: no such stack: Nope") and "Traceback" not in bad.stderr
