"""The live URL against the real stack deployed into ministack: ``kie-uploader url`` / ``live_url()``
invoke the deployed function synchronously; ``list --expiring-within`` queries the table's expiry index
and ``refresh`` asks the function to upload again what expires soon.

Objects are put while the function's queue is paused and their S3 notifications drained, so the only
upload is the one the test asks for; the emulator's call log counts kie.ai uploads per object.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import kie_uploader
from kie_uploader.cli.errors import EXIT_ERROR, EXIT_NO, EXIT_OK
from tests.e2e.conftest import DeployedStack, Run
from tests.e2e.test_cli import drain, paused_queue

pytestmark = pytest.mark.slow

#: A short retention for the deployed function (the function promises at most retention - 300 s).
SHORT_RETENTION = 4000


@contextmanager
def quiet_bucket(aws: Any, outputs: dict[str, str]) -> Iterator[None]:
    """Objects put inside are not uploaded through their notification (drained before the queue resumes)."""
    with paused_queue(aws, outputs):
        try:
            yield
        finally:
            drain(aws.sqs, outputs["QueueUrl"])


def put_quietly(aws: Any, outputs: dict[str, str], bucket: str, objects: dict[str, bytes]) -> None:
    with quiet_bucket(aws, outputs):
        for key, body in objects.items():
            aws.s3.put_object(Bucket=bucket, Key=key, Body=body)


def uploads_of(deployed_stack: DeployedStack, key: str) -> int:
    """kie.ai upload calls the emulator received for this key (successful or not)."""
    quoted = urllib.parse.quote(key)
    return sum(
        1
        for call in deployed_stack.emulator.calls
        if call.body
        and (key in str(call.body.get("fileUrl", "")) or quoted in str(call.body.get("fileUrl", "")))
    )


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


def set_environment(lambda_: Any, name: str, variables: dict[str, str]) -> None:
    lambda_.update_function_configuration(FunctionName=name, Environment={"Variables": variables})
    lambda_.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})


@contextmanager
def retention(deployed_stack: DeployedStack, seconds: int) -> Iterator[None]:
    """The deployed function with ``KIE_RETENTION_SECONDS=seconds``; the original afterwards."""
    lambda_, name = deployed_stack.client("lambda"), deployed_stack.outputs["FunctionName"]
    original = lambda_.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    set_environment(lambda_, name, {**original, "KIE_RETENTION_SECONDS": str(seconds)})
    try:
        yield
    finally:
        set_environment(lambda_, name, original)


def url_json(cli: Callable[..., Run], uri: str, *options: str) -> dict[str, Any]:
    run = cli("url", uri, "--json", *options)
    assert run.code == EXIT_OK, run.err or run.out
    answer: dict[str, Any] = json.loads(run.out)
    return answer


# --- url ----------------------------------------------------------------------------------------------


def test_url_uploads_a_new_object_once_then_reuses_its_live_url(
    cli: Callable[..., Run], aws: Any, deployed_stack: DeployedStack, prefix: str
) -> None:
    bucket, outputs = deployed_stack.bucket_name, deployed_stack.outputs
    key, body = f"{prefix}photo.txt", b"the live url's bytes"
    put_quietly(aws, outputs, bucket, {key: body})
    uri = f"s3://{bucket}/{key}"
    assert deployed_stack.record(bucket, key) is None and uploads_of(deployed_stack, key) == 0

    # When asking for its URL: the function uploads it, and the URL alone is printed
    run = cli("url", uri)
    assert run.code == EXIT_OK, run.err
    url = run.out.strip()
    assert run.out == url + "\n" and url.startswith("http://127.0.0.1:") and run.err == ""
    assert uploads_of(deployed_stack, key) == 1
    assert download(url) == body
    record = deployed_stack.record(bucket, key)
    assert record is not None and (record["status"], record["downloadUrl"]) == ("UPLOADED", url)

    # Again: the live URL is reused, kie.ai is not called
    again = url_json(cli, uri)
    assert (again["downloadUrl"], again["uploaded"], again["status"]) == (url, False, "UPLOADED")
    assert again["expiresAt"] == int(record["expiresAt"]) and again["error"] is None
    assert uploads_of(deployed_stack, key) == 1

    # And status says it is live
    status = cli("status", uri)
    assert status.code == EXIT_OK and "live, 2 d 23 h left" in status.out


def test_url_valid_longer_than_what_is_left_uploads_again_and_the_old_url_keeps_serving(
    cli: Callable[..., Run], aws: Any, deployed_stack: DeployedStack, prefix: str
) -> None:
    bucket, outputs = deployed_stack.bucket_name, deployed_stack.outputs
    key, body = f"{prefix}short.txt", b"uploaded with a short retention"
    put_quietly(aws, outputs, bucket, {key: body})
    uri = f"s3://{bucket}/{key}"
    # Given an upload made while kie.ai's retention was short (4000 s)
    with retention(deployed_stack, SHORT_RETENTION):
        first = url_json(cli, uri, "--min-valid", "1m")
    assert first["uploaded"] is True
    assert first["expiresAt"] - time.time() < SHORT_RETENTION

    # When asking for a URL valid longer than what is left of it
    second = url_json(cli, uri, "--min-valid", "2h")

    # Then it is uploaded again, under a new URL that lives the whole (restored) retention
    assert second["uploaded"] is True and second["downloadUrl"] != first["downloadUrl"]
    assert second["expiresAt"] - time.time() > 2 * 86_400
    assert uploads_of(deployed_stack, key) == 2
    # And the old URL still serves the object's bytes (someone may be using it), as does the new one
    assert download(first["downloadUrl"]) == body
    assert download(second["downloadUrl"]) == body


def test_live_url_from_python(
    cli_env: dict[str, str], aws: Any, deployed_stack: DeployedStack, prefix: str
) -> None:
    bucket, outputs = deployed_stack.bucket_name, deployed_stack.outputs
    key, body = f"{prefix}from python.txt", b"from python"
    put_quietly(aws, outputs, bucket, {key: body})

    url = kie_uploader.live_url(f"s3://{bucket}/{key}", min_valid=timedelta(minutes=30))

    assert download(url) == body
    assert kie_uploader.live_url(f"s3://{bucket}/{key}", timedelta(hours=1), stack="KieUploader") == url
    assert uploads_of(deployed_stack, key) == 1
    with pytest.raises(kie_uploader.LiveUrlError, match="^no such stack: NoSuchStack$"):
        kie_uploader.live_url(f"s3://{bucket}/{key}", stack="NoSuchStack")


def test_url_of_a_deleted_object_exits_non_zero_with_the_reason(
    cli: Callable[..., Run], aws: Any, deployed_stack: DeployedStack, prefix: str
) -> None:
    bucket, outputs = deployed_stack.bucket_name, deployed_stack.outputs
    key = f"{prefix}gone.txt"
    with quiet_bucket(aws, outputs):
        aws.s3.put_object(Bucket=bucket, Key=key, Body=b"soon gone")
        aws.s3.delete_object(Bucket=bucket, Key=key)
    uri = f"s3://{bucket}/{key}"

    run = cli("url", uri)

    # No record was ever written for it (its events were never delivered): NOT_FOUND, a mistake (exit 2).
    assert (run.code, run.out) == (EXIT_ERROR, "")
    assert run.err.startswith(f"kie-uploader: error: {uri}: the object does not exist"), run.err
    assert run.err.count("\n") == 1
    with pytest.raises(kie_uploader.LiveUrlError, match="does not exist"):
        kie_uploader.live_url(uri)
    status = cli("status", uri)
    assert status.code == EXIT_NO, status.out
    assert "no such object in S3, and no record of one" in status.out, status.out  # nothing was written
    assert uploads_of(deployed_stack, key) == 0


# --- list --expiring-within and refresh (the table's byExpiry index) -----------------------------------


@pytest.fixture
def expiry_index(deployed_stack: DeployedStack) -> None:
    """The deployed table's ``byExpiry`` index; ``LIVE_URL_ADD_INDEX=1`` adds it (as the stack defines it)
    to a stack deployed without it, otherwise the test is skipped."""
    dynamodb, name = deployed_stack.client("dynamodb"), deployed_stack.outputs["TableName"]
    indexes = [
        i["IndexName"]
        for i in dynamodb.describe_table(TableName=name)["Table"].get("GlobalSecondaryIndexes", [])
    ]
    if "byExpiry" in indexes:
        return
    if os.environ.get("LIVE_URL_ADD_INDEX") != "1":
        pytest.skip(f"the deployed table has no byExpiry index yet (its indexes: {indexes})")
    dynamodb.update_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "liveBucket", "AttributeType": "S"},
            {"AttributeName": "expiresAt", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexUpdates=[
            {
                "Create": {
                    "IndexName": "byExpiry",
                    "KeySchema": [
                        {"AttributeName": "liveBucket", "KeyType": "HASH"},
                        {"AttributeName": "expiresAt", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            }
        ],
    )


def test_list_expiring_within_and_refresh_of_a_prefix(
    expiry_index: None, cli: Callable[..., Run], aws: Any, deployed_stack: DeployedStack, prefix: str
) -> None:
    bucket, outputs = deployed_stack.bucket_name, deployed_stack.outputs
    short = {f"{prefix}soon/{i}.txt": f"soon {i}".encode() for i in range(2)}
    late = {f"{prefix}later.txt": b"later"}
    put_quietly(aws, outputs, bucket, {**short, **late})
    # Given two uploads that expire within 2 h and one that lives 3 days
    with retention(deployed_stack, SHORT_RETENTION):
        for key in short:
            url_json(cli, f"s3://{bucket}/{key}", "--min-valid", "1m")
    old_urls = {key: deployed_stack.record(bucket, key)["downloadUrl"] for key in short}  # type: ignore[index]
    url_json(cli, f"s3://{bucket}/{next(iter(late))}")
    uri = f"s3://{bucket}/{prefix}"

    # list --expiring-within shows the two, soonest first, with their state
    run = cli("list", "--expiring-within", "2h", uri, "--json")
    assert run.code == EXIT_OK, run.err
    listed = json.loads(run.out)
    assert sorted(r["pk"] for r in listed) == sorted(f"s3://{bucket}/{k}" for k in short)
    assert {r["state"] for r in listed} == {"LIVE"} and all("downloadUrl" in r for r in listed)
    table = cli("list", "--expiring-within", "2h", uri)
    assert table.code == EXIT_OK and table.out.splitlines()[-1] == "2 records" and "live, 1 h" in table.out
    assert cli("list", "--expiring-within", "2h", f"s3://{bucket}/{prefix}none/").out.strip() == "0 records"

    # refresh uploads them again
    run = cli("--json", "refresh", uri, "--expiring-within", "2h")
    assert run.code == EXIT_OK, run.err
    assert json.loads(run.out) == {
        "due": 2,
        "refreshed": 2,
        "deleted": 0,
        "failed": 0,
        "unchanged": 0,
        "left": 0,
    }
    for key, old in old_urls.items():
        record = deployed_stack.record(bucket, key)
        assert (
            record is not None and record["downloadUrl"] != old and record["expiresAt"] > time.time() + 86_400
        )
        assert download(record["downloadUrl"]) == short[key]

    # and nothing is due any more
    assert json.loads(cli("list", "--expiring-within", "2h", uri, "--json").out) == []
    run = cli("refresh", uri, "--expiring-within", "2h")
    assert run.code == EXIT_OK and run.out.startswith(f"{uri}: 0 due within 2 h, 0 refreshed")


# --- latency ------------------------------------------------------------------------------------------


def test_url_latency_when_live_and_when_it_must_upload(
    cli_env: dict[str, str], aws: Any, deployed_stack: DeployedStack, prefix: str
) -> None:
    """``kie-uploader url`` as a process (what a shell script pays), with the emulator's default latency."""
    script = Path(sys.executable).parent / "kie-uploader"
    bucket, outputs = deployed_stack.bucket_name, deployed_stack.outputs
    rounds = int(os.environ.get("LIVE_URL_ROUNDS", "5"))
    keys = [f"{prefix}latency-{i}.txt" for i in range(rounds)]
    put_quietly(aws, outputs, bucket, {key: f"latency {key}".encode() for key in keys})
    environment = {**os.environ, **cli_env}

    def timed(key: str) -> float:
        started = time.perf_counter()
        done = subprocess.run(
            [script, "url", f"s3://{bucket}/{key}"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        elapsed = time.perf_counter() - started
        assert done.returncode == 0, done.stderr
        return elapsed

    uploading = [timed(key) for key in keys]
    reusing = [timed(key) for key in keys]
    assert all(uploads_of(deployed_stack, key) == 1 for key in keys)
    figures = {
        "upload": (statistics.median(uploading), max(uploading)),
        "live": (statistics.median(reusing), max(reusing)),
    }
    print(
        "kie-uploader url latency (s, median/max of "
        f"{rounds}): " + ", ".join(f"{name} {med:.2f}/{top:.2f}" for name, (med, top) in figures.items())
    )
    assert figures["live"][0] < 30 and figures["upload"][0] < 60
