"""``EventPublisher`` deployed with the pinned CDK CLI into a ministack of its own: the table's stream, the
event source mapping, the function and a consumer's rule, then one record change → one event on SQS."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kie_uploader import local
from kie_uploader.deploy import cdk_env, cdk_executable
from tests.e2e.publisher_app import STACK_NAME

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def ministack_asset(target: Path) -> Path:
    """The function's folder as ministack runs it (on its own interpreter, which has boto3): the uploader
    package and the publisher's pure-Python dependencies, copied from this virtualenv."""
    import aws_lambda_powertools
    import typing_extensions

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "functions" / "uploader", target / "uploader", ignore=ignore)
    powertools = Path(str(aws_lambda_powertools.__file__)).parent
    shutil.copytree(powertools, target / "aws_lambda_powertools", ignore=ignore)
    shutil.copy(str(typing_extensions.__file__), target)
    return target


def cdk(args: list[str], *, endpoint_url: str, asset: Path, outdir: Path) -> None:
    env = cdk_env(endpoint_url) | {"PUBLISHER_ASSET": str(asset), "PYTHONPATH": f"{REPO}/src:{REPO}"}
    result = subprocess.run(
        [str(cdk_executable()), *args, "--no-notices", "--output", str(outdir)]
        + ["--app", f"{sys.executable} -m tests.e2e.publisher_app"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def deployed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, str], str, dict[str, float]]]:
    state = tmp_path_factory.mktemp("publisher-e2e")
    asset = ministack_asset(state / "asset")
    server = local.start_ministack(state / "ministack")
    timings: dict[str, float] = {}
    try:
        started = time.monotonic()
        cdk(
            ["bootstrap", f"aws://{local.LOCAL_ACCOUNT}/{local.LOCAL_REGION}"],
            endpoint_url=server.endpoint_url,
            asset=asset,
            outdir=state / "bootstrap.out",
        )
        timings["bootstrap"] = time.monotonic() - started
        started = time.monotonic()
        cdk(
            ["deploy", "--require-approval", "never"],
            endpoint_url=server.endpoint_url,
            asset=asset,
            outdir=state / "cdk.out",
        )
        timings["deploy"] = time.monotonic() - started
        cfn = local.local_client("cloudformation", server.endpoint_url)
        stack = cfn.describe_stacks(StackName=STACK_NAME)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        yield outputs, server.endpoint_url, timings
    finally:
        server.stop()


def test_the_deployed_mapping_has_the_constructs_settings(
    deployed: tuple[dict[str, str], str, dict[str, float]],
) -> None:
    outputs, endpoint_url, _ = deployed
    lam = local.local_client("lambda", endpoint_url)

    [mapping] = lam.list_event_source_mappings(FunctionName=outputs["PublisherFunctionName"])[
        "EventSourceMappings"
    ]

    assert f":table/{outputs['TableName']}/stream/" in mapping["EventSourceArn"]
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True and mapping["MaximumRetryAttempts"] == 10
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"].endswith(
        outputs["PublisherDeadLetterQueueUrl"].rsplit("/", 1)[1]
    )
    assert outputs["EventBusName"] == "default"
    assert json.loads(outputs["EventPattern"])["source"] == ["kie-uploader"]


def test_a_record_change_reaches_the_consumers_queue(
    deployed: tuple[dict[str, str], str, dict[str, float]],
) -> None:
    outputs, endpoint_url, timings = deployed
    ddb = local.local_client("dynamodb", endpoint_url)
    sqs = local.local_client("sqs", endpoint_url)
    item: dict[str, Any] = {
        "pk": {"S": "s3://photos/deployed.png"},
        "bucket": {"S": "photos"},
        "key": {"S": "deployed.png"},
        "status": {"S": "UPLOADED"},
        "downloadUrl": {"S": "https://tempfile.redpandaai.co/xxx/deployed.png"},
        "expiresAt": {"N": "1900000000"},
        "rev": {"N": "1"},
    }
    started = time.monotonic()
    ddb.put_item(TableName=outputs["TableName"], Item=item)

    messages: list[dict[str, Any]] = []
    while time.monotonic() - started < 30 and not messages:
        answer = sqs.receive_message(QueueUrl=outputs["ConsumerQueueUrl"], WaitTimeSeconds=1)
        messages = answer.get("Messages", [])
    timings["write_to_event"] = time.monotonic() - started

    assert messages, "no event reached the consumer's queue within 30 s"
    event = json.loads(messages[0]["Body"])
    assert event["source"] == "kie-uploader" and event["detail-type"] == "Object Uploaded"
    assert event["detail"]["downloadUrl"] == "https://tempfile.redpandaai.co/xxx/deployed.png"
    print(f"timings: {json.dumps({k: round(v, 2) for k, v in timings.items()})}")
