"""S3 Batch Operations invocations (schema 1.0 and 2.0), through the handler in-process, against ministack
(S3, DynamoDB, Secrets Manager) and the kie.ai emulator.

The events are AWS's documented examples (tests/factories.py, ``batch_operations_event``: the S3 User
Guide's request for 1.0, Powertools' ``s3BatchOperationEventSchemaV2.json`` for 2.0) with this test's bucket
and key. ministack has no S3 Batch Operations (no ``s3control`` jobs), so the handler is invoked with the
event a job would send, as the Lambda runtime would.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import quote

import pytest

from tests import factories as f
from tests.conftest import KIE_TEST_KEY
from tests.factories import BUCKET, OTHER, TABLE, VERSIONED, World
from tests.leakcheck import LeakWatch
from uploader.batch_operations import BatchOperationsEventError

VERSIONS = ("1.0", "2.0")


def results(answer: dict[str, Any]) -> list[tuple[str, str]]:
    """``(taskId, resultCode)`` of each result, in order."""
    return [(r["taskId"], r["resultCode"]) for r in answer["results"]]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_task_uploads_its_object_and_answers_succeeded(world: World, version: str) -> None:
    world.put("in/photo.jpg", b"batch bytes")
    event = f.batch_operations_event(version, f.batch_task(version, BUCKET, "in/photo.jpg"))

    answer = world.invoke(event)

    assert answer["invocationSchemaVersion"] == version
    assert answer["invocationId"] == f.BATCH_INVOCATION_ID
    assert answer["treatMissingKeysAs"] == "PermanentFailure"
    assert results(answer) == [(f.BATCH_TASK_ID, "Succeeded")]
    assert answer["results"][0]["resultString"].startswith("UPLOADED")
    record = world.existing_record("in/photo.jpg")
    assert record["status"] == "UPLOADED"
    assert world.kie.upload_count == 1
    assert world.kie.stored(record["filePath"]) == b"batch bytes"
    # The public URL stays in the record: the completion report is not the place for it.
    assert record["downloadUrl"] not in json.dumps(answer)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_missing_object_is_a_permanent_failure_that_writes_no_record(world: World, version: str) -> None:
    event = f.batch_operations_event(version, f.batch_task(version, BUCKET, "in/never-there.jpg"))

    answer = world.invoke(event)

    assert results(answer) == [(f.BATCH_TASK_ID, "PermanentFailure")]
    assert answer["results"][0]["resultString"].startswith("NOT_FOUND")
    assert world.record("in/never-there.jpg") is None
    assert world.kie.upload_count == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_an_unwatched_object_is_refused_without_upload_or_record(world: World, version: str) -> None:
    # Watched: BUCKET's keys under in/ only, and VERSIONED. Both objects exist.
    world.env(WATCHED_OBJECTS=json.dumps([{"bucket": BUCKET, "prefix": "in/"}, {"bucket": VERSIONED}]))
    world.put("private/secret.pdf")
    world.put("any.txt", bucket=OTHER)
    event = f.batch_operations_event(
        version,
        f.batch_task(version, BUCKET, "private/secret.pdf", task_id="outside-prefix"),
        f.batch_task(version, OTHER, "any.txt", task_id="other-bucket"),
    )

    answer = world.invoke(event)

    assert results(answer) == [("outside-prefix", "PermanentFailure"), ("other-bucket", "PermanentFailure")]
    assert all(r["resultString"].startswith("NOT_WATCHED: ") for r in answer["results"])
    assert world.kie.upload_count == 0 and world.kie.calls == []
    assert world.record("private/secret.pdf") is None and world.record("any.txt", OTHER) is None


@pytest.mark.parametrize("version", VERSIONS)
def test_a_kie_outage_is_a_temporary_failure_and_the_retried_task_succeeds(
    world: World, version: str
) -> None:
    world.put("in/outage.jpg", b"waits for kie.ai")
    event = f.batch_operations_event(version, f.batch_task(version, BUCKET, "in/outage.jpg"))
    world.kie.set_faults(error_rate=1.0)  # every upload call answers HTTP 500

    first = world.invoke(event)

    assert results(first) == [(f.BATCH_TASK_ID, "TemporaryFailure")]
    assert first["results"][0]["resultString"].startswith("FAILED (transient)")
    failed = world.existing_record("in/outage.jpg")
    assert (failed["status"], failed["retryable"]) == ("FAILED", True)
    assert world.kie.upload_count == 0

    world.kie.set_faults()  # kie.ai is back; Batch Operations runs the task again
    second = world.invoke(event)

    assert results(second) == [(f.BATCH_TASK_ID, "Succeeded")]
    record = world.existing_record("in/outage.jpg")
    assert record["status"] == "UPLOADED"
    assert world.kie.stored(record["filePath"]) == b"waits for kie.ai"
    assert world.kie.upload_count == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_a_duplicate_task_uploads_once_and_every_copy_succeeds(world: World, version: str) -> None:
    world.put("in/dup.jpg")
    task = f.batch_task(version, BUCKET, "in/dup.jpg")
    twice = f.batch_operations_event(version, task, f.batch_task(version, BUCKET, "in/dup.jpg", task_id="t2"))

    in_one = world.invoke(twice)
    again = world.invoke(f.batch_operations_event(version, task, invocation_id="second-invocation"))

    assert results(in_one) == [(f.BATCH_TASK_ID, "Succeeded"), ("t2", "Succeeded")]
    assert results(again) == [(f.BATCH_TASK_ID, "Succeeded")]
    assert again["invocationId"] == "second-invocation"
    assert world.kie.upload_count == 1
    assert world.existing_record("in/dup.jpg")["attempts"] == "1"


def test_the_same_task_id_twice_is_answered_twice(world: World) -> None:
    world.put("in/same-id.jpg")
    task = f.batch_task("2.0", BUCKET, "in/same-id.jpg")

    answer = world.invoke(f.batch_operations_event("2.0", task, task))

    assert results(answer) == [(f.BATCH_TASK_ID, "Succeeded"), (f.BATCH_TASK_ID, "Succeeded")]
    assert world.kie.upload_count == 1


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("encode", ["quote_plus", "quote"])
def test_a_url_encoded_key_with_spaces_and_unicode_is_decoded(
    world: World, version: str, encode: str
) -> None:
    key = "in/Fotos 2026/été ü+€ (1).jpg"
    world.put(key, b"unicode key")
    raw = f.encode_key(key) if encode == "quote_plus" else quote(key, safe="/")
    assert raw != key and " " not in raw  # the task really carries an encoded key
    task = f.batch_task(version, BUCKET, raw, encoded=False)

    answer = world.invoke(f.batch_operations_event(version, task))

    assert results(answer) == [(f.BATCH_TASK_ID, "Succeeded")]
    record = world.existing_record(key)
    assert record["status"] == "UPLOADED" and record["fileName"] == "été ü+€ (1).jpg"
    assert world.kie.stored(record["filePath"]) == b"unicode key"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_task_version_id_is_a_hint_and_the_current_version_is_recorded(world: World, version: str) -> None:
    old = world.put("in/v.jpg", b"version one", bucket=VERSIONED)
    new = world.put("in/v.jpg", b"version two", bucket=VERSIONED)
    current = f.batch_task(version, VERSIONED, "in/v.jpg", version_id=new["version_id"], task_id="current")
    older = f.batch_task(version, VERSIONED, "in/v.jpg", version_id=old["version_id"], task_id="older")

    answer = world.invoke(f.batch_operations_event(version, current, older))

    # As for any message with a versionId: the record describes the key's current version, uploaded once.
    assert results(answer) == [("current", "Succeeded"), ("older", "Succeeded")]
    record = world.existing_record("in/v.jpg", VERSIONED)
    assert record["versionId"] == new["version_id"]
    assert world.kie.stored(record["filePath"]) == b"version two"
    assert world.kie.upload_count == 1


def test_a_task_whose_object_another_delivery_holds_is_a_temporary_failure(world: World) -> None:
    world.put("in/held.jpg")
    now_ms = int(time.time() * 1000)
    world.ddb.put_item(  # another invocation's live claim on a first upload (docs/architecture.md, rule 4)
        TableName=TABLE,
        Item={
            "pk": {"S": f"s3://{BUCKET}/in/held.jpg"},
            "bucket": {"S": BUCKET},
            "key": {"S": "in/held.jpg"},
            "rev": {"N": "1"},
            "generation": {"S": f"{now_ms}-0000abcd"},
            "attempts": {"N": "0"},
            "claimOwner": {"S": "another-invocation"},
            "claimUntil": {"N": str(now_ms + 120_000)},
        },
    )

    answer = world.invoke(f.batch_operations_event("2.0", f.batch_task("2.0", BUCKET, "in/held.jpg")))

    assert results(answer) == [(f.BATCH_TASK_ID, "TemporaryFailure")]
    assert answer["results"][0]["resultString"].startswith("IN_PROGRESS")
    assert world.kie.upload_count == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_the_answer_never_holds_the_api_key_or_a_presigned_signature(world: World, version: str) -> None:
    # kie.ai answers 400 with a msg that repeats the presigned URL's signature and credential, decoded and
    # outside any URL: the worst case for the result string Batch Operations writes into its report.
    world.env(TRANSFER="url")
    world.put("in/echo.jpg")
    world.kie.script("echo")

    answer = world.invoke(f.batch_operations_event(version, f.batch_task(version, BUCKET, "in/echo.jpg")))

    assert results(answer) == [(f.BATCH_TASK_ID, "PermanentFailure")]
    assert answer["results"][0]["resultString"].startswith("FAILED (permanent)")
    text = json.dumps(answer)
    watch = LeakWatch(secrets={KIE_TEST_KEY})
    watch.scan("the Batch Operations answer", text)
    assert watch.leaks == []
    # The echoed values themselves: a SigV4 signature (64 hex digits) and the credential's scope.
    assert not re.search(r"[0-9a-f]{64}", text) and "aws4_request" not in text
    assert world.kie.calls, "kie.ai was called (the echo happened)"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_malformed_task_fails_alone(world: World, version: str) -> None:
    world.put("in/fine.jpg")
    bad = f.batch_task(version, BUCKET, "in/fine.jpg", task_id="bad")
    bad.pop("s3BucketArn" if version == "1.0" else "s3Bucket")
    event = f.batch_operations_event(version, bad, f.batch_task(version, BUCKET, "in/fine.jpg", task_id="ok"))

    answer = world.invoke(event)

    assert results(answer) == [("bad", "PermanentFailure"), ("ok", "Succeeded")]
    assert answer["results"][0]["resultString"].startswith("INVALID: ")


def test_a_malformed_invocation_raises_a_clear_error(world: World) -> None:
    event = f.batch_operations_event("3.0", f.batch_task("2.0", BUCKET, "in/x.jpg"))

    with pytest.raises(BatchOperationsEventError, match=r"invocationSchemaVersion '3.0' is not supported"):
        world.invoke(event)

    assert world.kie.calls == []
