"""Soak: many objects through the stack deployed into ministack while kie.ai misbehaves.

The emulator answers 20 % of upload calls with a transient error (HTTP 500) and stalls 5 % past the
function's kie.ai timeout. Objects arrive the way the stack is deployed by default (``notify=queue``): S3
notifications go to the queue, whose event source hands them to the function in batches; an object that
fails all of one invocation's attempts is reported as a batch item failure and delivered again once its
visibility timeout ends (after 5 receives it would go to the DLQ).

Every object must end with exactly one record, ``UPLOADED``, whose downloadUrl serves the object's bytes;
the DLQ and the queue must be empty.

``SOAK_OBJECTS`` sets the number of objects (60 in ``make test``, 1,000 in ``make soak``). At most
``SOAK_IN_FLIGHT`` (default 20) objects wait for their record at a time: ministack runs each asynchronous
invocation in its own subprocess without a concurrency limit, and a 2-core machine must not hold a thousand
at once. ``SOAK_SEED`` replays the emulator's fault sequence.

The deployed function's ``KIE_TIMEOUT_SECONDS`` (40 s) is lowered to 2 s for the soak through Lambda's
UpdateFunctionConfiguration, and the queue's visibility timeout (6 x the function's 120 s) to
``SOAK_VISIBILITY_SECONDS`` through SetQueueAttributes; both are restored afterwards: with 40 s, every
stalled call would cost 40 s, and a redelivery would wait 12 minutes.
"""

from __future__ import annotations

import os
import random
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.conftest import DeployedStack

pytestmark = pytest.mark.slow

SOAK_OBJECTS = int(os.environ.get("SOAK_OBJECTS", "60"))
SOAK_IN_FLIGHT = int(os.environ.get("SOAK_IN_FLIGHT", "20"))
KIE_TIMEOUT_SECONDS = 2
#: The emulator stalls longer than the function waits.
STALL_SECONDS = KIE_TIMEOUT_SECONDS + 1.0
OBJECT_WAIT_SECONDS = 120.0
#: Longer than one invocation with KIE_TIMEOUT_SECONDS=2 can take (4 attempts with backoff, ~12 s).
SOAK_VISIBILITY_SECONDS = 30


@pytest.fixture
def short_kie_timeout(deployed_stack: DeployedStack) -> Iterator[None]:
    """The deployed function with ``KIE_TIMEOUT_SECONDS=2`` and its queue with a visibility timeout of
    ``SOAK_VISIBILITY_SECONDS`` for this test; the originals afterwards."""
    lambda_, sqs = deployed_stack.client("lambda"), deployed_stack.client("sqs")
    name, queue_url = deployed_stack.outputs["FunctionName"], deployed_stack.outputs["QueueUrl"]
    original = lambda_.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    visibility = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])[
        "Attributes"
    ]
    set_environment(lambda_, name, {**original, "KIE_TIMEOUT_SECONDS": str(KIE_TIMEOUT_SECONDS)})
    sqs.set_queue_attributes(
        QueueUrl=queue_url, Attributes={"VisibilityTimeout": str(SOAK_VISIBILITY_SECONDS)}
    )
    try:
        yield
    finally:
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=visibility)
        set_environment(lambda_, name, original)
        deployed_stack.emulator.set_faults()


def set_environment(lambda_: Any, name: str, variables: dict[str, str]) -> None:
    lambda_.update_function_configuration(FunctionName=name, Environment={"Variables": variables})
    lambda_.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


def test_soak_every_object_ends_uploaded_once_while_kie_fails_a_quarter_of_calls(
    deployed_stack: DeployedStack, short_kie_timeout: None
) -> None:
    seed = int(os.environ.get("SOAK_SEED", str(random.randrange(2**32))))
    emulator = deployed_stack.emulator
    emulator.set_faults(error_rate=0.20, timeout_rate=0.05, timeout_seconds=STALL_SECONDS, seed=seed)
    calls_before = len(emulator.calls)
    bucket = deployed_stack.bucket_name
    run = uuid.uuid4().hex[:8]
    objects = {
        f"soak-{run}/{i:04d}.bin": f"soak {run} object {i} ".encode() * (1 + i % 7)
        for i in range(SOAK_OBJECTS)
    }
    keys = list(objects)
    started = time.perf_counter()

    records = put_and_wait(deployed_stack, bucket, objects, seed)
    elapsed = time.perf_counter() - started

    table = deployed_stack.client("dynamodb")
    items = [
        item["pk"]["S"]
        for page in table.get_paginator("scan").paginate(
            TableName=deployed_stack.outputs["TableName"], ProjectionExpression="pk"
        )
        for item in page["Items"]
        if item["pk"]["S"].startswith(f"s3://{bucket}/soak-{run}/")
    ]
    assert sorted(items) == sorted(f"s3://{bucket}/{key}" for key in keys)  # exactly one item each
    with ThreadPoolExecutor(max_workers=8) as pool:
        contents = pool.map(lambda k: download(str(records[k]["downloadUrl"])), keys)
        served = dict(zip(keys, contents, strict=True))
    wrong = [key for key in keys if served[key] != objects[key]]
    assert not wrong, f"downloadUrl serves other bytes for {wrong[:5]} (seed {seed})"
    assert deployed_stack.queue_depth(deployed_stack.outputs["DeadLetterQueueUrl"]) == 0
    assert deployed_stack.queue_depth(deployed_stack.outputs["QueueUrl"]) == 0

    calls = emulator.calls[calls_before:]
    faults = sum(1 for call in calls if call.fault)
    retried = sum(1 for record in records.values() if int(record["attempts"]) > 1)
    assert faults > 0 and retried > 0  # the faults really happened, and were retried
    print(
        f"soak: {SOAK_OBJECTS} objects in {elapsed:.1f} s, {len(calls)} kie.ai calls, {faults} faults, "
        f"{retried} objects retried, seed {seed}"
    )


def put_and_wait(
    stack: DeployedStack, bucket: str, objects: dict[str, bytes], seed: int
) -> dict[str, dict[str, Any]]:
    """Put the objects, at most ``SOAK_IN_FLIGHT`` without an UPLOADED record at a time; their records."""
    s3 = stack.client("s3")
    waiting = list(objects)
    in_flight: dict[str, float] = {}  # key -> when it was put
    done: dict[str, dict[str, Any]] = {}
    while waiting or in_flight:
        while waiting and len(in_flight) < SOAK_IN_FLIGHT:
            key = waiting.pop(0)
            s3.put_object(Bucket=bucket, Key=key, Body=objects[key])
            in_flight[key] = time.monotonic()
        for key, put_at in list(in_flight.items()):
            record = stack.record(bucket, key)
            if record is not None and record.get("status") == "UPLOADED":
                done[key] = record
                del in_flight[key]
            elif time.monotonic() - put_at > OBJECT_WAIT_SECONDS:
                dlq = stack.queue_depth(stack.outputs["DeadLetterQueueUrl"])
                raise AssertionError(
                    f"s3://{bucket}/{key} not UPLOADED {OBJECT_WAIT_SECONDS:.0f} s after its put "
                    f"(seed {seed}): {record}; DLQ depth {dlq}\n"
                    f"ministack log tail:\n{stack.ministack.log_tail(30)}"
                )
        time.sleep(0.2)
    return done
