"""The command line knows what the stack watches (issue 21), against stacks deployed into ministack: one
with ``prefix="incoming/"`` (deployed by this module beside the session's stack) for the reproductions about
keys outside the prefix, the session's stack (every key of its bucket) for the mistakes that must leave no
record.

Each test is one reproduction of the issue, as reported on the previous version:

2. ``backfill s3://my-photos/`` enqueued ``other/x.txt`` (outside ``incoming/``): it became UPLOADED.
3. ``status`` on an object outside the prefix said "waiting: put 0 s ago, its event has not been handled
   yet"; ``info`` showed neither the notify mode nor the prefix/suffix.
4. ``url s3://wrong-bucket/a`` left a FAILED record ("not in ALLOWED_BUCKETS"), ``url s3://$B/nope.txt`` a
   SKIPPED one; the records older versions wrote that way are listed and removed with ``forget``.
5. ``list s3://wrong-bucket/`` printed "0 records" and exited 0.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from kie_uploader import live
from kie_uploader.cli.errors import EXIT_NO, EXIT_OK
from tests.e2e.conftest import DeployedStack, Run, deploy_beside
from tests.e2e.test_cli import drain, one_line_error, paused_queue

PREFIXED = "KieUploaderPrefixed"
WATCHED_PREFIX = "incoming/"


@pytest.fixture(scope="module")
def prefixed(deployed_stack: DeployedStack, tmp_path_factory: pytest.TempPathFactory) -> DeployedStack:
    """A stack that watches only ``incoming/`` of its bucket (S3 notifications to the queue), beside the
    session's; not destroyed: it goes with the session's ministack."""
    outdir: Path = tmp_path_factory.mktemp("e2e-prefixed-cdk-out")
    return deploy_beside(deployed_stack, PREFIXED, {"prefix": WATCHED_PREFIX}, outdir)


def uploads_of(stack: DeployedStack, key: str) -> int:
    """Upload calls the kie.ai emulator received for an object of this key (its fileUrl names it)."""
    return sum(1 for call in stack.emulator.calls if key in json.dumps(call.body or {}))


def wait_until_drained(aws: SimpleNamespace, queue_url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attributes = aws.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        if not sum(int(value) for value in attributes.values()):
            return
        time.sleep(0.5)
    pytest.fail(f"the queue still holds messages after {timeout} s")


# --- 2. backfill enqueues only watched keys ---------------------------------------------------------


def test_backfill_enqueues_only_the_keys_the_stack_watches_and_says_how_many_it_skipped(
    cli: Callable[..., Run], aws: SimpleNamespace, prefixed: DeployedStack
) -> None:
    bucket, outputs = prefixed.bucket_name, prefixed.outputs
    tag = uuid.uuid4().hex[:8]
    watched, outside = f"{WATCHED_PREFIX}{tag}/a.txt", f"other/{tag}/x.txt"
    with paused_queue(aws, outputs):
        for key in (watched, outside):
            aws.s3.put_object(Bucket=bucket, Key=key, Body=f"body of {key}".encode())
        drain(aws.sqs, outputs["QueueUrl"])  # the watched object's own event: only the backfill's count

        run = cli("--stack", PREFIXED, "backfill", f"s3://{bucket}/")

        assert run.code == EXIT_OK, run.err
        # (other tests of this module leave objects in the bucket too: the counts are at least ours)
        line = run.out.strip()
        assert line.startswith(f"s3://{bucket}/: ") and line.endswith(" enqueued, 0 failed"), line
        assert " skipped as not watched (outside prefix incoming/), " in line, line
        keys = [body["key"] for body in drain(aws.sqs, outputs["QueueUrl"])]
        assert watched in keys and outside not in keys
        assert all(key.startswith(WATCHED_PREFIX) for key in keys), keys

        summary = json.loads(cli("--stack", PREFIXED, "backfill", f"s3://{bucket}/", "--force", "--json").out)
        assert summary["notWatched"] >= 1 and summary["notWatchedReason"] == "outside prefix incoming/"
        assert summary["enqueued"] == summary["listed"] - summary["notWatched"]
        forced = [body["key"] for body in drain(aws.sqs, outputs["QueueUrl"])]
        assert watched in forced and outside not in forced

    # And with the function consuming the queue: the watched object is uploaded, the other never is
    run = cli("--stack", PREFIXED, "backfill", f"s3://{bucket}/other/{tag}/")
    one_line_error(run, f"s3://{bucket}/other/{tag}/: not watched: outside prefix incoming/")
    run = cli("--stack", PREFIXED, "backfill", f"s3://{bucket}/{WATCHED_PREFIX}{tag}/")
    assert run.code == EXIT_OK, run.err
    prefixed.wait_for_record(bucket, watched, lambda r: r.get("status") == "UPLOADED")
    wait_until_drained(aws, outputs["QueueUrl"])
    assert prefixed.record(bucket, outside) is None and uploads_of(prefixed, outside) == 0


# --- 3. status and info say what is watched -----------------------------------------------------------


def test_status_of_a_key_outside_the_prefix_says_not_watched(
    cli: Callable[..., Run], aws: SimpleNamespace, prefixed: DeployedStack
) -> None:
    bucket = prefixed.bucket_name
    uri = f"s3://{bucket}/other/{uuid.uuid4().hex[:8]}/x.txt"
    aws.s3.put_object(Bucket=bucket, Key=uri.split("/", 3)[3], Body=b"outside")

    run = cli("--stack", PREFIXED, "status", uri)

    assert (run.code, run.out, run.err) == (EXIT_NO, f"{uri}: not watched: outside prefix incoming/\n", "")
    data = json.loads(cli("--stack", PREFIXED, "status", uri, "--json").out)
    assert data == {
        "pk": uri,
        "state": "NOT_WATCHED",
        "stateDescription": "not watched: outside prefix incoming/",
    }


def test_info_shows_the_notify_mode_and_each_buckets_prefix_and_suffix(
    cli: Callable[..., Run], prefixed: DeployedStack, bucket: str
) -> None:
    run = cli("--stack", PREFIXED, "info", "--wide")
    assert run.code == EXIT_OK, run.err
    lines = run.out.splitlines()
    start = lines.index("notify: queue (S3 notifications to the queue)")
    assert lines[start + 1 : start + 3] == [
        "watched objects (from the function's WATCHED_OBJECTS)",
        f"  {prefixed.bucket_name}  prefix incoming/",
    ]
    info = json.loads(cli("--stack", PREFIXED, "info", "--json").out)
    assert info["notify"]["mode"] == "queue"
    assert info["watched"] == [{"bucket": prefixed.bucket_name, "prefix": "incoming/", "suffix": ""}]
    header, *rows = (
        line.split("\t") for line in cli("--stack", PREFIXED, "info", "--output", "tsv").out.splitlines()
    )
    values = dict(rows)  # one row per value: no JSON in a cell
    assert header == ["name", "value"]
    assert values["watched.0.prefix"] == "incoming/" and values["notify.mode"] == "queue"

    # The session's stack watches every key of its bucket
    assert f"  {bucket}  every key" in cli("info", "--wide").out.splitlines()


# --- 4. mistakes leave no records; older versions' are removed with forget --------------------------


def test_url_of_a_bucket_the_stack_does_not_serve_or_of_a_missing_key_leaves_no_record(
    cli: Callable[..., Run], aws: SimpleNamespace, deployed_stack: DeployedStack, bucket: str, prefix: str
) -> None:
    wrong = f"wrong-bucket-{uuid.uuid4().hex[:8]}"
    run = cli("url", f"s3://{wrong}/a")
    one_line_error(run, f"bucket {wrong} is not watched by stack KieUploader (its buckets: {bucket})")
    # The function itself, asked directly (any invoker can): refused, nothing written
    function = deployed_stack.outputs["FunctionName"]
    [answer] = live.resolve(aws.lambda_, function, [f"s3://{wrong}/a"], 0)
    assert answer["status"] == "NOT_WATCHED" and answer["downloadUrl"] is None
    assert deployed_stack.record(wrong, "a") is None

    missing = f"s3://{bucket}/{prefix}nope.txt"
    run = cli("url", missing)
    one_line_error(run, f"{missing}: ")
    assert deployed_stack.record(bucket, f"{prefix}nope.txt") is None
    assert json.loads(cli("url", missing, "--json").out)["status"] == "NOT_FOUND"
    assert deployed_stack.record(bucket, f"{prefix}nope.txt") is None
    # Nothing shows in list or stats either
    assert cli("list", f"s3://{bucket}/{prefix}").out.strip() == "0 records"
    stats = json.loads(cli("stats", "--prefix", f"s3://{wrong}/", "--json").out)
    assert stats["records"]["total"] == 0


def legacy_record(aws: SimpleNamespace, table: str, uri: str, status: str, error: str, **extra: str) -> None:
    """A record as older versions wrote them for a mistake."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    item = {
        "pk": {"S": uri}, "bucket": {"S": bucket}, "key": {"S": key}, "rev": {"N": "1"},
        "status": {"S": status}, "error": {"S": error}, "errorKind": {"S": "permanent"},
        "retryable": {"BOOL": False}, "updatedAt": {"S": "2026-11-01T00:00:00.000Z"},
    }  # fmt: skip
    item.update({name: {"S": value} for name, value in extra.items()})
    aws.dynamodb.put_item(TableName=table, Item=item)


def test_records_older_versions_wrote_for_mistakes_are_listed_and_forgotten(
    cli: Callable[..., Run], aws: SimpleNamespace, outputs: dict[str, str], bucket: str, prefix: str
) -> None:
    table = outputs["TableName"]
    skipped = [f"s3://{bucket}/{prefix}nope-{i}.txt" for i in range(3)]
    for uri in skipped:
        legacy_record(aws, table, uri, "SKIPPED", "the object does not exist")
    busy = f"s3://{bucket}/{prefix}busy.txt"  # a delivery holds it: kept
    legacy_record(aws, table, busy, "SKIPPED", "the object does not exist", claimOwner="delivery-1")
    wrong = f"wrong-bucket-{uuid.uuid4().hex[:8]}"
    refused = f"s3://{wrong}/a"
    legacy_record(aws, table, refused, "FAILED", f"bucket '{wrong}' is not in ALLOWED_BUCKETS")
    uri = f"s3://{bucket}/{prefix}"

    listed = json.loads(cli("list", "--status", "SKIPPED", uri, "--json").out)
    assert sorted(r["pk"] for r in listed) == sorted([*skipped, busy])
    assert "kie-uploader forget --status SKIPPED" in listed[0]["stateDescription"]

    dry = cli("forget", "--status", "SKIPPED", uri)
    assert dry.code == EXIT_OK, dry.err
    assert dry.out.startswith("would forget 3 records: 3 SKIPPED (keys without an object); nothing removed")
    assert len(json.loads(cli("list", "--status", "SKIPPED", uri, "--json").out)) == 4

    done = cli("forget", "--status", "SKIPPED", uri, "--yes")
    assert (done.code, done.out) == (EXIT_OK, "forgot 3 records of 3: 3 SKIPPED (keys without an object)\n")
    assert [r["pk"] for r in json.loads(cli("list", "--status", "SKIPPED", uri, "--json").out)] == [busy]

    done = cli("forget", "--unserved", f"s3://{wrong}/", "--yes", "--json")
    assert json.loads(done.out)["removed"] == 1 and json.loads(done.out)["unservedBuckets"] == [wrong]
    assert cli("list", "--status", "FAILED", "--json").out.count(refused) == 0


# --- 5. a bucket the stack does not serve is an error, not "0 records" ---------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ("list", "s3://{wrong}/"),
        ("list", "--status", "FAILED", "--prefix", "s3://{wrong}/a/"),
        ("status", "s3://{wrong}/a"),
        ("refresh", "s3://{wrong}/"),
    ],
)
def test_a_bucket_the_stack_does_not_serve_is_one_line_naming_its_buckets(
    cli: Callable[..., Run], bucket: str, argv: tuple[str, ...]
) -> None:
    wrong = f"wrong-bucket-{uuid.uuid4().hex[:8]}"
    run = cli(*(arg.format(wrong=wrong) for arg in argv))
    one_line_error(run, f"bucket {wrong} is not watched by stack KieUploader (its buckets: {bucket})")
