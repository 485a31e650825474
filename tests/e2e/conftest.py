"""The real stack, deployed with the pinned CDK CLI into its own ministack, once per test session.

``deployed_stack`` is general on purpose: the end-to-end tests, the CLI's tests and the demo's tests use
it to reach the deployed bucket, queue, table and function, and the kie.ai emulator the function calls.
It has its own ministack (not the shared ``ministack`` fixture), because tests that reset that one would
wipe the deployment.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from kie_uploader import local
from kie_uploader.deploy import deploy_local, destroy_local, put_api_key
from kie_uploader.emulator import KieEmulator
from tests.conftest import KIE_TEST_KEY

logger = logging.getLogger(__name__)

RECORD_WAIT_SECONDS = 120.0


@dataclass
class DeployedStack:
    """A stack deployed into a local ministack, with the emulator its function calls."""

    stack_name: str
    #: The uploader's resources from its discovery record, under the older outputs' names (``QueueUrl``...).
    outputs: dict[str, str]
    endpoint_url: str
    emulator: KieEmulator
    api_key: str
    ministack: local.Server
    outdir: Path
    #: Seconds per step: ``bootstrap`` (when it ran), ``deploy``, ``put_api_key``; ``destroy`` after teardown.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def bucket_name(self) -> str:
        return self.outputs["BucketNames"].split(",")[0]

    @property
    def aws_env(self) -> dict[str, str]:
        return local.local_aws_env(self.endpoint_url)

    def client(self, service: str) -> Any:
        """A boto3 client for the local endpoint (``s3``, ``sqs``, ``dynamodb``, ``lambda``, ...)."""
        return local.local_client(service, self.endpoint_url)

    def record(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The object's record as plain Python values, or None."""
        answer = self.client("dynamodb").get_item(
            TableName=self.outputs["TableName"],
            Key={"pk": {"S": f"s3://{bucket}/{key}"}},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        if item is None:
            return None
        deserializer = TypeDeserializer()
        return {name: deserializer.deserialize(value) for name, value in item.items()}

    def wait_for_record(
        self,
        bucket: str,
        key: str,
        until: Callable[[dict[str, Any]], bool],
        *,
        timeout: float = RECORD_WAIT_SECONDS,
    ) -> dict[str, Any]:
        """Poll the table until the object's record satisfies ``until``; fail with what was seen."""
        deadline = time.monotonic() + timeout
        record: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            record = self.record(bucket, key)
            if record is not None and until(record):
                return record
            time.sleep(0.5)
        raise AssertionError(
            f"s3://{bucket}/{key}: record not as expected after {timeout:.0f} s: {redacted(record)}\n"
            f"dead-letter messages: {self.queue_depth(self.outputs['DeadLetterQueueUrl'])}\n"
            f"ministack log tail:\n{self.ministack.log_tail(40)}"
        )

    def queue_depth(self, queue_url: str) -> int:
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())


def redacted(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """A record fit for an assertion message (download URLs carry no AWS signature, but keep them short)."""
    if record is None:
        return None
    return {name: (str(value)[:80] if name == "downloadUrl" else value) for name, value in record.items()}


@pytest.fixture(scope="session")
def deployed_stack(local_state: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeployedStack]:
    """Bootstrap + deploy the stack into a fresh ministack, put the key; ``cdk destroy`` at the end."""
    # Under the session's local_state, so that the whole-run leak check scans ministack's log (and with
    # it the function's output) for the key.
    server = local.start_ministack(local_state / "e2e-ministack")
    emulator = KieEmulator(api_key=KIE_TEST_KEY, port=0).start()
    outdir = tmp_path_factory.mktemp("e2e-cdk-out")
    timings: dict[str, float] = {}
    try:
        outputs = deploy_local(
            endpoint_url=server.endpoint_url, kie_base_url=emulator.base_url, outdir=outdir, timings=timings
        )
        started = time.perf_counter()
        put_api_key(outputs["SecretArn"], KIE_TEST_KEY, endpoint_url=server.endpoint_url)
        timings["put_api_key"] = time.perf_counter() - started
        yield DeployedStack(
            stack_name="KieUploader",
            outputs=outputs,
            endpoint_url=server.endpoint_url,
            emulator=emulator,
            api_key=KIE_TEST_KEY,
            ministack=server,
            outdir=outdir,
            timings=timings,
        )
        destroy_local(endpoint_url=server.endpoint_url, outdir=outdir, timings=timings)
        logger.info("local deployment timings (s): %s", {k: round(v, 1) for k, v in timings.items()})
    finally:
        emulator.stop()
        server.stop()


def deploy_beside(
    base: DeployedStack, stack_name: str, context: dict[str, str], outdir: Path
) -> DeployedStack:
    """Another stack in ``base``'s ministack (its bootstrap reused), calling the same emulator, key put.

    ``outdir`` is its own (cloud assembly and settings file); deploying again with the same ``outdir`` is
    an update of the same stack.
    """
    timings: dict[str, float] = {}
    outputs = deploy_local(
        endpoint_url=base.endpoint_url,
        kie_base_url=base.emulator.base_url,
        context=context,
        stack_name=stack_name,
        outdir=outdir,
        timings=timings,
    )
    put_api_key(outputs["SecretArn"], base.api_key, endpoint_url=base.endpoint_url)
    return DeployedStack(
        stack_name=stack_name,
        outputs=outputs,
        endpoint_url=base.endpoint_url,
        emulator=base.emulator,
        api_key=base.api_key,
        ministack=base.ministack,
        outdir=outdir,
        timings=timings,
    )


@pytest.fixture(scope="session")
def direct_stack(deployed_stack: DeployedStack, tmp_path_factory: pytest.TempPathFactory) -> DeployedStack:
    """A second stack with ``notify=lambda`` (S3 invokes the function directly, asynchronously).

    Not destroyed: it goes with the session's ministack (saves a ``cdk destroy``).
    """
    return deploy_beside(
        deployed_stack,
        "KieUploaderDirect",
        {"notify": "lambda"},
        tmp_path_factory.mktemp("e2e-direct-cdk-out"),
    )


# --- an operator at the command line (the CLI's and the live URL's tests) ------------------------------


@dataclass
class Run:
    """What one ``kie-uploader`` command did."""

    code: int
    out: str
    err: str


@pytest.fixture
def cli_env(deployed_stack: DeployedStack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment an operator of the local stack has: the standard AWS variables only."""
    env = local.local_aws_env(deployed_stack.endpoint_url)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "KIE_UPLOADER_STACK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def cli(cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """Run ``kie-uploader ARGS`` in-process; returns the exit code and what it printed."""
    from kie_uploader.cli import main

    def run(*argv: str) -> Run:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def outputs(deployed_stack: DeployedStack) -> dict[str, str]:
    """The deployed stack's uploader's resources (its discovery record), named as the stack's outputs
    were before the records: ``BucketNames``, ``QueueUrl``, ``TableName``, ``SecretArn``, ..."""
    return dict(deployed_stack.outputs)


@pytest.fixture
def bucket(outputs: dict[str, str]) -> str:
    """The deployed stack's (first) source bucket."""
    return outputs["BucketNames"].split(",")[0]


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A fresh key prefix per test (named after its module), so tests never see each other's objects or
    records."""
    return f"{request.module.__name__.rsplit('.', 1)[-1].removeprefix('test_')}-{uuid.uuid4().hex[:8]}/"


@pytest.fixture
def aws(deployed_stack: DeployedStack) -> SimpleNamespace:
    """Clients of the local stack's S3, SQS, DynamoDB and Lambda (``aws.s3``, ``aws.lambda_``, ...)."""
    return SimpleNamespace(
        s3=deployed_stack.client("s3"),
        sqs=deployed_stack.client("sqs"),
        dynamodb=deployed_stack.client("dynamodb"),
        lambda_=deployed_stack.client("lambda"),
    )
