"""S3 Batch Operations: the documented events → messages, outcomes → the answer Batch Operations reads."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from uploader import batch_operations as bo
from uploader.events import UnsupportedEventError, parse_event
from uploader.models import ErrorKind, ObjectRef, Outcome, Status

# Verbatim: the example request of AWS's S3 User Guide, "Invoke AWS Lambda function"
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/batch-ops-invoke-lambda.html; source
# github.com/awsdocs/amazon-s3-userguide, doc_source/batch-ops-invoke-lambda.md). Its bucket ARN carries a
# region and an account, as no real S3 bucket ARN does.
AWS_EXAMPLE_V1: dict[str, Any] = {
    "invocationSchemaVersion": "1.0",
    "invocationId": "YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo",
    "job": {"id": "f3cc4f60-61f6-4a2b-8a21-d07600c373ce"},
    "tasks": [
        {
            "taskId": "dGFza2lkZ29lc2hlcmUK",
            "s3Key": "customerImage1.jpg",
            "s3VersionId": "1",
            "s3BucketArn": "arn:aws:s3:us-east-1:0123456788:awsexamplebucket1",
        }
    ],
}
# Verbatim: Powertools for AWS Lambda (Python)'s test events s3BatchOperationEventSchemaV1.json and
# s3BatchOperationEventSchemaV2.json, in github.com/aws-powertools/powertools-lambda-python's test events
# folder (tests/events there).
POWERTOOLS_V1: dict[str, Any] = {
    "invocationSchemaVersion": "1.0",
    "invocationId": "YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo",
    "job": {"id": "f3cc4f60-61f6-4a2b-8a21-d07600c373ce"},
    "tasks": [
        {
            "taskId": "dGFza2lkZ29lc2hlcmUK",
            "s3Key": "prefix/dataset/dataset.20231222.json.gz",
            "s3VersionId": "1",
            "s3BucketArn": "arn:aws:s3:::powertools-dataset",
        }
    ],
}
POWERTOOLS_V2: dict[str, Any] = {
    "invocationSchemaVersion": "2.0",
    "invocationId": "YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo",
    "job": {"id": "f3cc4f60-61f6-4a2b-8a21-d07600c373ce", "userArguments": {"k1": "v1", "k2": "v2"}},
    "tasks": [
        {
            "taskId": "dGFza2lkZ29lc2hlcmUK",
            "s3Key": "prefix/dataset/dataset.20231222.json.gz",
            "s3VersionId": None,
            "s3Bucket": "powertools-dataset",
        }
    ],
}


def only_ref(event: dict[str, Any]) -> ObjectRef:
    invocation = bo.parse(event)
    (task,) = invocation.tasks
    assert task.message.problem is None, task.message.problem
    (ref,) = task.message.objects
    return ref


@pytest.mark.parametrize(
    ("event", "bucket", "key", "version_id"),
    [
        (AWS_EXAMPLE_V1, "awsexamplebucket1", "customerImage1.jpg", "1"),
        (POWERTOOLS_V1, "powertools-dataset", "prefix/dataset/dataset.20231222.json.gz", "1"),
        (POWERTOOLS_V2, "powertools-dataset", "prefix/dataset/dataset.20231222.json.gz", None),
    ],
    ids=["aws-user-guide-1.0", "powertools-1.0", "powertools-2.0"],
)
def test_the_documented_events_name_their_object(
    event: dict[str, Any], bucket: str, key: str, version_id: str | None
) -> None:
    assert bo.is_invocation(event)
    ref = only_ref(event)

    assert (ref.bucket, ref.key, ref.version_id) == (bucket, key, version_id)
    assert ref.sequencer is None and not ref.force  # a message, not an event: rules 5 and 6 apply as such


def test_the_invocation_keeps_its_ids() -> None:
    invocation = bo.parse(POWERTOOLS_V2)

    assert invocation.schema_version == "2.0"
    assert invocation.invocation_id == "YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo"
    assert invocation.job_id == "f3cc4f60-61f6-4a2b-8a21-d07600c373ce"
    assert [t.task_id for t in invocation.tasks] == ["dGFza2lkZ29lc2hlcmUK"]


@pytest.mark.parametrize("event", [POWERTOOLS_V1, POWERTOOLS_V2], ids=["1.0", "2.0"])
def test_keys_are_url_decoded_in_both_versions(event: dict[str, Any]) -> None:
    encoded = copy.deepcopy(event)
    encoded["tasks"][0]["s3Key"] = "in/a+b%2Bc/%C3%A9t%C3%A9%20%281%29.jpg"

    assert only_ref(encoded).key == "in/a b+c/été (1).jpg"


def test_a_batch_operations_event_is_not_taken_for_another_shape() -> None:
    with pytest.raises(UnsupportedEventError):
        parse_event(POWERTOOLS_V2)
    assert not bo.is_invocation({"Records": []}) and not bo.is_invocation({"resolve": ["s3://b/k"]})


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"invocationSchemaVersion": "3.0"}, "invocationSchemaVersion '3.0' is not supported"),
        ({"invocationId": None}, "invocationId is missing"),
        ({"job": "job-1"}, "job is missing or not an object"),
        ({"job": {"id": "j", "userArguments": ["k1"]}}, "job.userArguments is not an object"),
        ({"tasks": []}, "tasks is missing or empty"),
        ({"tasks": [{"s3Key": "a.jpg", "s3Bucket": "photos"}]}, r"tasks\[0\] has no taskId"),
    ],
)
def test_a_malformed_invocation_raises_a_clear_error(change: dict[str, Any], reason: str) -> None:
    event = {**POWERTOOLS_V2, **change}

    with pytest.raises(bo.BatchOperationsEventError, match=reason):
        bo.parse(event)


@pytest.mark.parametrize(
    ("version", "task", "problem"),
    [
        ("1.0", {"s3Key": "a.jpg", "s3BucketArn": "photos"}, "s3BucketArn is not an S3 bucket ARN"),
        ("1.0", {"s3Key": "a.jpg", "s3BucketArn": "arn:aws:sqs:us-east-1:1:q"}, "not an S3 bucket ARN"),
        ("1.0", {"s3Key": "a.jpg", "s3Bucket": "photos"}, "s3BucketArn is not an S3 bucket ARN"),
        ("2.0", {"s3Key": "a.jpg", "s3BucketArn": "arn:aws:s3:::photos"}, "needs s3Bucket"),
        ("2.0", {"s3Key": "a.jpg", "s3Bucket": "Not_A_Bucket"}, "invalid bucket name"),
        ("2.0", {"s3Bucket": "photos"}, "object key is missing"),
        ("2.0", {"s3Key": "", "s3Bucket": "photos"}, "object key is empty"),
        ("2.0", {"s3Key": "a.jpg", "s3Bucket": "photos", "s3VersionId": 7}, "version id must be a string"),
    ],
)
def test_an_unreadable_task_becomes_a_permanent_failure_naming_why(
    version: str, task: dict[str, Any], problem: str
) -> None:
    event = {**POWERTOOLS_V2, "invocationSchemaVersion": version, "tasks": [{"taskId": "t", **task}]}
    invocation = bo.parse(event)

    (result,) = bo.answer(invocation, [])["results"]

    assert invocation.tasks[0].message.problem is not None and problem in invocation.tasks[0].message.problem
    assert result["taskId"] == "t" and result["resultCode"] == "PermanentFailure"
    assert result["resultString"].startswith("INVALID: ") and problem in result["resultString"]


def test_a_repeated_task_id_gets_its_own_message_and_result() -> None:
    task = POWERTOOLS_V2["tasks"][0]
    invocation = bo.parse({**POWERTOOLS_V2, "tasks": [task, task]})
    ids = [t.message.message_id for t in invocation.tasks]
    outcomes = [
        Outcome(ref=t.message.objects[0], message_id=mid, status=status)
        for t, mid, status in zip(invocation.tasks, ids, (Status.UPLOADED, Status.DUPLICATE), strict=True)
    ]

    answer = bo.answer(invocation, outcomes)

    assert len(set(ids)) == 2
    assert [r["taskId"] for r in answer["results"]] == ["dGFza2lkZ29lc2hlcmUK"] * 2
    assert [r["resultString"][:25] for r in answer["results"]] == [
        "UPLOADED: uploaded to kie",
        "UPLOADED: already uploade",
    ]


def test_the_answer_has_the_documented_shape() -> None:
    invocation = bo.parse(AWS_EXAMPLE_V1)
    ref = invocation.tasks[0].message.objects[0]
    uploaded = Outcome(ref=ref, message_id="dGFza2lkZ29lc2hlcmUK", status=Status.UPLOADED)

    answer = bo.answer(invocation, [uploaded])

    assert set(answer) == {"invocationSchemaVersion", "treatMissingKeysAs", "invocationId", "results"}
    assert answer["invocationSchemaVersion"] == "1.0" and answer["treatMissingKeysAs"] == "PermanentFailure"
    assert answer["invocationId"] == AWS_EXAMPLE_V1["invocationId"]
    assert answer["results"] == [
        {
            "taskId": "dGFza2lkZ29lc2hlcmUK",
            "resultCode": "Succeeded",
            "resultString": "UPLOADED: uploaded to kie.ai; the record holds the download URL",
        }
    ]


REF = ObjectRef("photos", "a.jpg")


@pytest.mark.parametrize(
    ("status", "retry", "kind", "code", "starts"),
    [
        (Status.UPLOADED, False, None, "Succeeded", "UPLOADED"),
        (Status.DUPLICATE, False, None, "Succeeded", "UPLOADED"),
        (Status.SUPERSEDED, False, None, "Succeeded", "UPLOADED"),
        (Status.IN_PROGRESS, False, None, "TemporaryFailure", "IN_PROGRESS"),
        (Status.NOT_WATCHED, False, None, "PermanentFailure", "NOT_WATCHED"),
        (Status.NOT_FOUND, False, None, "PermanentFailure", "NOT_FOUND"),
        (Status.DELETED, False, None, "PermanentFailure", "DELETED"),
        (Status.FAILED, True, ErrorKind.TRANSIENT, "TemporaryFailure", "FAILED (transient)"),
        (Status.FAILED, False, ErrorKind.PERMANENT, "PermanentFailure", "FAILED (permanent)"),
        (Status.FAILED, True, ErrorKind.CONFIGURATION, "PermanentFailure", "FAILED (configuration)"),
    ],
)
def test_each_outcome_maps_to_a_result_code(
    status: Status, retry: bool, kind: ErrorKind | None, code: str, starts: str
) -> None:
    outcome = Outcome(ref=REF, message_id="t", status=status, retry=retry, error="why", error_kind=kind)

    assert bo.result_of(outcome)[0] == code
    assert bo.result_of(outcome)[1].startswith(starts)


def test_a_result_string_is_short_and_carries_no_url_query() -> None:
    error = "kie.ai answered 400: could not fetch https://photos.s3.amazonaws.com/a.jpg?X-Amz-Signature=" + (
        "ab" * 32
    ) + " " + "x" * 500
    outcome = Outcome(REF, "t", Status.FAILED, error=error, error_kind=ErrorKind.PERMANENT)

    _, text = bo.result_of(outcome)

    assert len(text) <= bo.MAX_RESULT_STRING
    assert "ab" * 32 not in text and "X-Amz" not in text
    assert "https://photos.s3.amazonaws.com/a.jpg" in text
