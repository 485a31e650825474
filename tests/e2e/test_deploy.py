"""The real stack, deployed into ministack, turns S3 objects and queue messages into UPLOADED records."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest

from tests import factories as f
from tests.e2e.conftest import DeployedStack
from tests.factories import OUTPUT_KEYS

pytestmark = pytest.mark.slow


def uploaded(record: dict[str, object]) -> bool:
    return record.get("status") == "UPLOADED"


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


def test_deploy_returns_every_resource_the_cli_reads_from_the_stacks_only_output_its_discovery_record(
    deployed_stack: DeployedStack,
) -> None:
    from kie_uploader import discovery

    assert set(deployed_stack.outputs) == OUTPUT_KEYS
    assert {"deploy", "put_api_key"} <= set(deployed_stack.timings)
    # ministack rendered the record's Fn::Join; the stack writes no output of its own (issue 16).
    cloudformation = deployed_stack.client("cloudformation")
    [stack] = cloudformation.describe_stacks(StackName=deployed_stack.stack_name)["Stacks"]
    [output] = stack["Outputs"]
    assert output["Description"].startswith(discovery.DESCRIPTION_MARKER)
    assert json.loads(output["OutputValue"])["queueUrl"] == deployed_stack.outputs["QueueUrl"]


def test_an_object_put_into_the_bucket_is_recorded_uploaded_with_a_working_download_url(
    deployed_stack: DeployedStack,
) -> None:
    # Given the deployed stack with the key in its secret; when an object arrives in the bucket
    bucket, key = deployed_stack.bucket_name, f"incoming/photo {uuid.uuid4().hex[:8]}.png"
    body = b"\x89PNG\r\n\x1a\n" + uuid.uuid4().bytes * 64
    put = deployed_stack.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="image/png")

    # then the S3 notification invokes the function, which hands it to kie.ai and records the result
    record = deployed_stack.wait_for_record(bucket, key, uploaded)
    assert record["bucket"] == bucket and record["key"] == key
    assert record["versionId"] == put.get("VersionId")
    assert int(record["size"]) == len(body)
    assert download(str(record["downloadUrl"])) == body


def test_a_plain_queue_message_uploads_the_object_again_after_its_record_was_lost(
    deployed_stack: DeployedStack,
) -> None:
    # Given an object that was uploaded through its S3 notification
    bucket, key = deployed_stack.bucket_name, f"backfill/{uuid.uuid4().hex}.txt"
    body = f"backfilled {uuid.uuid4()}".encode()
    deployed_stack.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
    deployed_stack.wait_for_record(bucket, key, uploaded)
    calls_before = deployed_stack.emulator.upload_count
    # and whose record was then lost, so that only the queue can bring it back
    deployed_stack.client("dynamodb").delete_item(
        TableName=deployed_stack.outputs["TableName"], Key={"pk": {"S": f"s3://{bucket}/{key}"}}
    )

    # When a producer sends the plain {"bucket", "key"} message to the queue
    deployed_stack.client("sqs").send_message(
        QueueUrl=deployed_stack.outputs["QueueUrl"], MessageBody=json.dumps({"bucket": bucket, "key": key})
    )

    # Then the event source mapping delivers it, and the object is recorded UPLOADED again
    record = deployed_stack.wait_for_record(bucket, key, uploaded)
    assert deployed_stack.emulator.upload_count > calls_before
    assert download(str(record["downloadUrl"])) == body
    assert deployed_stack.queue_depth(deployed_stack.outputs["QueueUrl"]) == 0


def test_an_s3_batch_operations_job_invoking_the_deployed_function_gets_an_answer_per_task(
    deployed_stack: DeployedStack,
) -> None:
    # Given an object already uploaded through its notification (so no delivery races the job's task)
    bucket, key = deployed_stack.bucket_name, f"batch/{uuid.uuid4().hex} é.txt"
    deployed_stack.client("s3").put_object(Bucket=bucket, Key=key, Body=b"listed in a manifest")
    deployed_stack.wait_for_record(bucket, key, uploaded)
    calls_before = deployed_stack.emulator.upload_count
    event = f.batch_operations_event(
        "2.0",
        f.batch_task("2.0", bucket, key, task_id="listed"),
        f.batch_task("2.0", bucket, f"batch/{uuid.uuid4().hex}-never-put.txt", task_id="missing"),
    )

    # When Batch Operations invokes the deployed function synchronously, as a LambdaInvoke job does
    answer = deployed_stack.client("lambda").invoke(
        FunctionName=deployed_stack.outputs["FunctionName"], Payload=json.dumps(event).encode()
    )

    # Then the function answers every task (no function error), and the uploaded object is not sent again
    assert "FunctionError" not in answer
    payload = json.loads(answer["Payload"].read())
    assert payload["invocationSchemaVersion"] == "2.0" and payload["treatMissingKeysAs"] == "PermanentFailure"
    codes = [(r["taskId"], r["resultCode"]) for r in payload["results"]]
    assert codes == [("listed", "Succeeded"), ("missing", "PermanentFailure")]
    assert deployed_stack.emulator.upload_count == calls_before


def test_nothing_reached_the_dead_letter_queue(deployed_stack: DeployedStack) -> None:
    assert deployed_stack.queue_depth(deployed_stack.outputs["DeadLetterQueueUrl"]) == 0
