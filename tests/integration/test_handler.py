"""The handler, called in-process, against ministack (S3, DynamoDB, Secrets Manager, SQS) and the kie.ai
emulator. ministack's S3 checks presigned signatures, so every upload proves the presigned URL works."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import boto3
import pytest

from tests import factories as f
from tests.conftest import KIE_TEST_KEY
from tests.factories import BUCKET, OTHER, SECRET, TABLE, VERSIONED, World, failures
from uploader import handler as handler_module
from uploader.errors import ConfigurationError

# --- trigger shapes -------------------------------------------------------------------------------------


def test_sqs_message_uploads_the_object_and_records_the_download_url(world: World) -> None:
    event, _ = world.sqs(f.s3_notification(world.created("in/a photo.jpg", b"\x89PNG bytes")))

    answer = world.invoke(event)

    assert answer == {"batchItemFailures": []}
    record = world.existing_record("in/a photo.jpg")
    assert record["status"] == "UPLOADED"
    assert record["fileName"] == "a photo.jpg" and record["attempts"] == "1"
    assert record["uploadPath"].startswith(f"s3-uploads/{BUCKET}/")
    assert world.kie.stored(record["filePath"]) == b"\x89PNG bytes"
    with urllib.request.urlopen(record["downloadUrl"], timeout=10) as response:
        assert response.read() == b"\x89PNG bytes"
    assert int(record["expiresAt"]) > time.time() + 259_000
    assert "X-Amz" not in json.dumps(record) and KIE_TEST_KEY not in json.dumps(record)


def test_direct_s3_event_with_several_records(world: World) -> None:
    event = f.s3_notification(world.created("one.txt", b"1"), world.created("two.txt", b"22"))

    assert world.invoke(event) is None

    assert [world.existing_record(k)["status"] for k in ("one.txt", "two.txt")] == ["UPLOADED", "UPLOADED"]
    assert world.kie.upload_count == 2


@pytest.mark.parametrize("shape", ["sns", "eventbridge", "plain", "s3Uri"])
def test_every_message_shape_is_uploaded(world: World, shape: str) -> None:
    key = "shapes/x y+z.txt"
    facts = world.put(key)
    body = {
        "sns": lambda: f.sns_wrapped(f.s3_notification(f.s3_record(BUCKET, key, **facts))),
        "eventbridge": lambda: f.eventbridge_object_created(
            BUCKET, key, size=facts["size"], etag=facts["etag"]
        ),
        "plain": lambda: f.plain_message(BUCKET, key),
        "s3Uri": lambda: {"s3Uri": f"s3://{BUCKET}/{key}"},
    }[shape]()
    event, _ = world.sqs(body)

    assert failures(world.invoke(event)) == []

    assert world.existing_record(key)["status"] == "UPLOADED"


def test_real_s3_notifications_through_sqs(world: World) -> None:
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="uploads")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    world.s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    key = "real notes/c++ (1).txt"
    world.put(key, b"from a real notification")
    messages: list[dict[str, Any]] = []
    for _ in range(10):
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        messages += got.get("Messages", [])
        if any("ObjectCreated" in m["Body"] for m in messages):
            break
    event = f.sqs_event(*[f.sqs_record(m["Body"], message_id=m["MessageId"]) for m in messages])

    assert failures(world.invoke(event)) == []

    assert world.existing_record(key)["status"] == "UPLOADED"
    assert world.kie.upload_count == 1  # the s3:TestEvent, if any, is acknowledged without an upload


# --- exactly-once effect ----------------------------------------------------------------------------------


def test_a_duplicate_event_does_not_call_kie_again(world: World) -> None:
    event, _ = world.sqs(f.s3_notification(world.created("dup.txt")))

    world.invoke(event)
    answer = world.invoke(event)

    assert failures(answer) == []
    assert world.kie.upload_count == 1
    assert world.existing_record("dup.txt")["attempts"] == "1"


def test_the_same_object_twice_in_one_batch_is_uploaded_once(world: World) -> None:
    record = world.created("twice.txt")
    event, _ = world.sqs(f.s3_notification(record), f.s3_notification(record))

    assert failures(world.invoke(event)) == []

    assert world.kie.upload_count == 1


def test_a_plain_message_for_an_uploaded_version_is_a_duplicate(world: World) -> None:
    world.invoke(f.s3_notification(world.created("backfilled.txt")))
    event, _ = world.sqs(f.plain_message(BUCKET, "backfilled.txt"))

    world.invoke(event)

    assert world.kie.upload_count == 1


def test_an_older_event_never_overwrites_a_newer_version(world: World) -> None:
    old = world.created("v.txt", b"version one", bucket=VERSIONED)
    new = world.created("v.txt", b"version two", bucket=VERSIONED)

    world.invoke(f.s3_notification(new))
    world.invoke(f.s3_notification(old))  # delivered late

    record = world.existing_record("v.txt", VERSIONED)
    assert record["versionId"] == new["s3"]["object"]["versionId"]
    assert world.kie.stored(record["filePath"]) == b"version two"
    assert world.kie.upload_count == 1


def test_out_of_order_events_in_one_batch_end_in_the_newest_state(world: World) -> None:
    old = world.created("ooo.txt", b"old", bucket=VERSIONED)
    new = world.created("ooo.txt", b"new", bucket=VERSIONED)
    event, _ = world.sqs(f.s3_notification(new), f.s3_notification(old))

    world.invoke(event)

    record = world.existing_record("ooo.txt", VERSIONED)
    assert record["versionId"] == new["s3"]["object"]["versionId"]
    assert world.kie.stored(record["filePath"]) == b"new"


def test_each_version_gets_its_own_upload_path(world: World) -> None:
    world.invoke(f.s3_notification(world.created("p.txt", b"one", bucket=VERSIONED)))
    first = world.existing_record("p.txt", VERSIONED)
    world.invoke(f.s3_notification(world.created("p.txt", b"two", bucket=VERSIONED)))
    second = world.existing_record("p.txt", VERSIONED)

    assert first["uploadPath"] != second["uploadPath"]
    assert world.kie.stored(first["filePath"]) == b"one"  # the older file was not overwritten
    assert world.kie.stored(second["filePath"]) == b"two"


def test_retry_failed_sends_a_plain_message_that_repairs_a_failed_record(world: World) -> None:
    world.kie.script("400")
    world.invoke(f.s3_notification(world.created("again.txt")))
    assert world.existing_record("again.txt")["status"] == "FAILED"
    event, _ = world.sqs(f.plain_message(BUCKET, "again.txt"))

    assert failures(world.invoke(event)) == []

    record = world.existing_record("again.txt")
    assert record["status"] == "UPLOADED" and record["attempts"] == "2"
    assert record["sequencer"]  # the same version's event sequencer is kept for later ordering


def test_an_unsupported_invocation_event_raises_a_clear_error(world: World) -> None:
    with pytest.raises(ValueError, match="unsupported event"):
        world.invoke({"hello": "world"})


# --- deletions and missing objects --------------------------------------------------------------------------


def test_a_deleted_object_is_recorded_deleted_without_its_download_url(world: World) -> None:
    world.invoke(f.s3_notification(world.created("bye.txt")))
    world.s3.delete_object(Bucket=BUCKET, Key="bye.txt")

    world.invoke(f.s3_notification(world.removed("bye.txt")))

    record = world.existing_record("bye.txt")
    assert record["status"] == "DELETED" and "downloadUrl" not in record


def test_a_late_created_event_after_the_deletion_is_superseded(world: World) -> None:
    created = world.created("late.txt")
    world.s3.delete_object(Bucket=BUCKET, Key="late.txt")
    removed = world.removed("late.txt")

    world.invoke(f.s3_notification(removed))
    world.invoke(f.s3_notification(created))

    assert world.existing_record("late.txt")["status"] == "DELETED"
    assert world.kie.upload_count == 0


def test_an_eventbridge_deletion_marks_the_record(world: World) -> None:
    world.invoke(f.s3_notification(world.created("eb-del.txt")))
    world.s3.delete_object(Bucket=BUCKET, Key="eb-del.txt")
    event, _ = world.sqs(f.eventbridge_object_deleted(BUCKET, "eb-del.txt", sequencer=world.next_sequencer()))

    world.invoke(event)

    assert world.existing_record("eb-del.txt")["status"] == "DELETED"


def test_a_message_about_a_key_that_never_existed_leaves_no_record_and_is_not_retried(world: World) -> None:
    """Issue 15: mistakes leave no records (was: a lasting SKIPPED record for any key anybody named)."""
    event, _ = world.sqs(f.plain_message(BUCKET, "never-existed.txt"))

    answer = world.invoke(event)

    assert failures(answer) == []
    assert world.record("never-existed.txt") is None
    assert world.kie.upload_count == 0


def test_a_legacy_skipped_record_of_a_key_without_object_is_removed_by_the_next_message(world: World) -> None:
    world.ddb.put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": f"s3://{BUCKET}/typo.txt"},
            "status": {"S": "SKIPPED"},
            "rev": {"N": "1"},
            "bucket": {"S": BUCKET},
            "key": {"S": "typo.txt"},
        },
    )
    event, _ = world.sqs(f.plain_message(BUCKET, "typo.txt"))

    assert failures(world.invoke(event)) == []
    assert world.record("typo.txt") is None


# --- refusals -----------------------------------------------------------------------------------------------


def test_a_bucket_outside_allowed_buckets_is_refused_without_presigning(world: World) -> None:
    """Issue 15, reproduction 4: the refusal is acknowledged and logged, and writes no record (was: a
    lasting FAILED record naming an internal variable)."""
    world.put("secret.txt", bucket=OTHER)
    event, _ = world.sqs(f.plain_message(OTHER, "secret.txt"))

    answer = world.invoke(event)

    assert failures(answer) == []
    assert world.record("secret.txt", OTHER) is None
    assert world.kie.calls == []


def test_an_object_over_the_size_limit_is_not_sent(world: World) -> None:
    event, _ = world.sqs(f.s3_notification(world.created("big.bin", b"x" * 1001)))

    answer = world.invoke(event)

    assert failures(answer) == []
    record = world.existing_record("big.bin")
    assert record["status"] == "FAILED" and record["errorKind"] == "permanent"
    assert "MAX_OBJECT_BYTES" in record["error"] and record["size"] == "1001"
    assert world.kie.calls == []


def test_a_batch_with_one_malformed_message_fails_only_that_message(world: World) -> None:
    event, ids = world.sqs(
        f.s3_notification(world.created("good-1.txt")),
        "{not json",
        f.plain_message(BUCKET, "good-2.txt") | {"key": "good-2.txt"},
        f.s3_test_event(BUCKET),
    )
    world.put("good-2.txt")

    answer = world.invoke(event)

    assert failures(answer) == [ids[1]]
    assert world.existing_record("good-1.txt")["status"] == "UPLOADED"
    assert world.existing_record("good-2.txt")["status"] == "UPLOADED"


# --- kie.ai faults ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["500", "429", "455", "body-error", "malformed", "timeout"])
def test_a_transient_kie_fault_is_retried_within_the_invocation(world: World, fault: str) -> None:
    world.env(KIE_TIMEOUT_SECONDS="1")
    world.kie.set_faults(retry_after_seconds=1, timeout_seconds=2)
    world.kie.script(fault, "ok")
    event, _ = world.sqs(f.s3_notification(world.created("flaky.txt")))

    answer = world.invoke(event)

    assert failures(answer) == []
    record = world.existing_record("flaky.txt")
    assert record["status"] == "UPLOADED" and record["attempts"] == "2"


@pytest.mark.parametrize(
    "switch",
    [
        "error_rate",
        "rate_limit_rate",
        "maintenance_rate",
        "body_error_rate",
        "timeout_rate",
        "malformed_rate",
    ],
)
def test_every_fault_switch_fails_the_delivery_then_a_redelivery_succeeds(world: World, switch: str) -> None:
    world.env(KIE_MAX_ATTEMPTS="1", KIE_TIMEOUT_SECONDS="1")
    rates: dict[str, Any] = {switch: 1.0}
    world.kie.set_faults(**rates, retry_after_seconds=0, timeout_seconds=1.5, body_error_code=503)
    event, ids = world.sqs(f.s3_notification(world.created("switch.txt")))

    first = world.invoke(event)
    failed = world.existing_record("switch.txt")
    world.kie.set_faults()
    second = world.invoke(event)

    assert failures(first) == ids
    assert failed["status"] == "FAILED" and failed["errorKind"] == "transient" and failed["retryable"] is True
    assert failures(second) == []
    record = world.existing_record("switch.txt")
    assert record["status"] == "UPLOADED" and record["attempts"] == "2"  # counted across deliveries
    assert "error" not in record


def test_added_latency_is_tolerated(world: World) -> None:
    world.kie.set_faults(latency_seconds=0.5)
    event, _ = world.sqs(f.s3_notification(world.created("slow.txt")))

    assert failures(world.invoke(event)) == []


@pytest.mark.parametrize("fault", ["400", {"bodyCode": 422}])
def test_a_permanent_kie_refusal_is_recorded_and_acknowledged(world: World, fault: Any) -> None:
    world.kie.script(fault)
    event, _ = world.sqs(f.s3_notification(world.created("refused.txt")))

    answer = world.invoke(event)

    assert failures(answer) == []
    record = world.existing_record("refused.txt")
    assert (
        record["status"] == "FAILED" and record["errorKind"] == "permanent" and record["retryable"] is False
    )
    assert len(world.kie.calls) == 1


@pytest.mark.parametrize("fault", ["401", "402", {"bodyCode": 402}])
def test_a_configuration_refusal_is_recorded_and_delivered_again(world: World, fault: Any) -> None:
    world.kie.script(fault)
    event, ids = world.sqs(f.s3_notification(world.created("config.txt")))

    answer = world.invoke(event)

    assert failures(answer) == ids
    record = world.existing_record("config.txt")
    assert record["status"] == "FAILED" and record["errorKind"] == "configuration"
    assert len(world.kie.calls) == 1  # not retried within the invocation


def test_a_persistent_transient_failure_of_a_direct_event_raises_after_all_records(world: World) -> None:
    world.env(KIE_MAX_ATTEMPTS="1")
    world.kie.script("ok", "500")
    event = f.s3_notification(world.created("first.txt"), world.created("second.txt", bucket=VERSIONED))
    world.env(MAX_CONCURRENCY="1")  # deterministic order: first.txt gets "ok"

    with pytest.raises(handler_module.RetryNeededError, match="1 of 2"):
        world.invoke(event)

    assert world.existing_record("first.txt")["status"] == "UPLOADED"
    assert world.existing_record("second.txt", VERSIONED)["status"] == "FAILED"


# --- configuration ------------------------------------------------------------------------------------------


def test_a_missing_secret_is_recorded_failed_and_delivered_again(world: World) -> None:
    world.env(KIE_API_KEY_SECRET_ID="kie/does-not-exist")
    event, ids = world.sqs(f.s3_notification(world.created("nokey.txt")))

    answer = world.invoke(event)

    assert failures(answer) == ids
    record = world.existing_record("nokey.txt")
    assert record["status"] == "FAILED" and record["errorKind"] == "configuration"
    assert "kie/does-not-exist" in record["error"]
    assert world.kie.calls == []


def test_a_wrong_key_in_the_secret_is_a_configuration_failure(world: World) -> None:
    world.secrets.put_secret_value(SecretId=SECRET, SecretString="wrong-key-value")
    world.env(SECRET_CACHE_SECONDS="0")
    event, ids = world.sqs(f.s3_notification(world.created("wrongkey.txt")))

    answer = world.invoke(event)

    assert failures(answer) == ids
    assert world.existing_record("wrongkey.txt")["errorKind"] == "configuration"


def test_a_raw_key_secret_works_too(world: World) -> None:
    world.secrets.put_secret_value(SecretId=SECRET, SecretString=KIE_TEST_KEY)
    world.env(SECRET_CACHE_SECONDS="0")
    event, _ = world.sqs(f.s3_notification(world.created("rawkey.txt")))

    assert failures(world.invoke(event)) == []


def test_an_invalid_environment_fails_the_invocation_naming_the_variable(world: World) -> None:
    world.env(MAX_CONCURRENCY="lots")
    event, _ = world.sqs(f.plain_message(BUCKET, "x.txt"))

    with pytest.raises(ConfigurationError, match="MAX_CONCURRENCY"):
        world.invoke(event)


def test_warm_invocations_reuse_the_runtime(world: World) -> None:
    event, _ = world.sqs(f.s3_notification(world.created("warm.txt")))
    world.invoke(event)
    first = handler_module._get_processor()

    world.invoke(event)

    assert handler_module._get_processor() is first


# --- logs and metrics -----------------------------------------------------------------------------------


def test_one_structured_log_line_per_object_and_emf_metrics(
    world: World, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    world.kie.script("500", "ok")
    event, ids = world.sqs(f.s3_notification(world.created("logged.txt")), "garbage")

    world.invoke(event)

    # Log lines as the function writes them: Powertools' JSON formatter applied to each record.
    formatter = handler_module.logger.registered_formatter
    lines = [
        json.loads(formatter.format(record)) for record in caplog.records if record.name == "kie-uploader"
    ]
    objects = [line for line in lines if line["message"] == "object processed"]
    assert len(objects) == 1
    assert {k: objects[0][k] for k in ("bucket", "key", "status", "attempts")} == {
        "bucket": BUCKET,
        "key": "logged.txt",
        "status": "UPLOADED",
        "attempts": 2,
    }
    assert objects[0]["durationMs"] > 0
    rejected = [line for line in lines if line["message"] == "message rejected"]
    assert rejected[0]["messageId"] == ids[1] and "not JSON" in rejected[0]["reason"]
    # Metrics: one EMF document on stdout.
    (emf,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    directive = emf["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "KieUploader"
    assert {m["Name"] for m in directive["Metrics"]} == {"UploadSucceeded", "KieLatency"}
    assert emf["UploadSucceeded"] == [1.0] and len(emf["KieLatency"]) == 2


# --- speed ----------------------------------------------------------------------------------------------


def test_a_batch_of_ten_with_one_second_kie_latency_runs_concurrently(world: World) -> None:
    bodies = [f.s3_notification(world.created(f"batch/{i}.txt", f"object {i}".encode())) for i in range(10)]
    event, _ = world.sqs(*bodies)
    world.invoke(
        f.s3_notification(world.created("warmup.txt"))
    )  # the container is warm, as in a steady state
    world.kie.set_faults(latency_seconds=1.0)

    started = time.perf_counter()
    answer = world.invoke(event)
    elapsed = time.perf_counter() - started

    assert failures(answer) == []
    assert all(world.existing_record(f"batch/{i}.txt")["status"] == "UPLOADED" for i in range(10))
    # A ratio, not a timing: ten 1 s calls one after the other would take at least 10 s.
    print(f"batch of 10 with 1 s kie.ai latency: {elapsed:.2f} s")
    assert elapsed / (10 * 1.0) < 0.5


def test_events_of_the_same_object_in_one_batch_upload_the_current_version_once(world: World) -> None:
    world.kie.set_faults(latency_seconds=0.3)
    first = world.created("lane.txt", b"first", bucket=VERSIONED)
    second = world.created("lane.txt", b"second", bucket=VERSIONED)
    event, _ = world.sqs(f.s3_notification(first), f.s3_notification(second))

    world.invoke(event)

    # The first event already finds the second version current; the second event is then reflected.
    assert len(world.kie.calls) == 1
    assert world.existing_record("lane.txt", VERSIONED)["versionId"] == second["s3"]["object"]["versionId"]
