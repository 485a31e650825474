"""11. Distributed backfill: enqueue throughput of the local ``kie-uploader backfill`` and of the distributed
one (``--distributed``: the stack's Step Functions Distributed Map) on the same prefix, as a ratio.

The repository's stack (``backfill=True``) is deployed into its own ministack; objects are put under one
prefix with the queue's event source disabled and their S3 notifications drained, so the figures are the
enqueueing alone (listing, the watched filter, the record check, SendMessageBatch), not the uploads. Each
backfill runs on the same prefix with no record under it (the queue is drained between the two): both
enqueue every object.

* local: the CLI's ``backfill`` in this process (ListObjectsV2 pages of 1,000, a BatchGetItem per 100 keys,
  SendMessageBatch of 10), from the call to its return;
* local at a 20 ms round trip: the same, every request delayed 20 ms by a proxy in front of ministack
  (tests/faultproxy.py), the round trip of an operator's machine to an AWS region nearby: the local backfill
  makes its requests one after the other, so this is what its rate becomes away from loopback, and what the
  threshold at which it suggests ``--distributed`` rests on (README, "Distributed backfill");
* distributed: from ``StartExecution`` to the execution's ``SUCCEEDED``, read every 0.2 s (DescribeExecution).

What ministack does not model: it ignores ``ItemBatcher`` (one child execution and one function invocation
per key instead of one per 100), runs the children in threads of its own process, and runs the child
function as a local process: on AWS the distributed figure is of another shape (README, "Distributed
backfill").
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import Report, progress, scoped_env
from bench.context import Context
from bench.e2e import _client, _queue_depth, deployed_stack
from kie_uploader import distributed, local

STACK = "KieUploader"
POLL_SECONDS = 0.2
#: The round trip the proxy adds to each request of the second local run.
ROUND_TRIP_SECONDS = 0.020
#: The local backfill's threshold (cli/moving.py's DISTRIBUTED_SUGGESTION_OBJECTS): its time is projected.
SUGGESTION_OBJECTS = 100_000


def _drain(sqs: Any, url: str) -> int:
    """Delete every message on the queue; how many there were."""
    count, empty = 0, 0
    while empty < 2:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not messages:
            empty += 1
            time.sleep(0.2)
            continue
        empty = 0
        count += len(messages)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    return count


def _pause_consumer(endpoint_url: str, outputs: dict[str, str]) -> None:
    lambda_ = _client(endpoint_url, "lambda")
    queue_name = outputs["QueueUrl"].rsplit("/", 1)[-1]
    for mapping in lambda_.list_event_source_mappings(FunctionName=outputs["FunctionName"])[
        "EventSourceMappings"
    ]:
        if mapping["EventSourceArn"].endswith(f":{queue_name}"):
            lambda_.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)


def _measure(ctx: Context, report: Report, endpoint_url: str, outputs: dict[str, str]) -> None:
    from kie_uploader.cli.args import S3Uri
    from kie_uploader.cli.aws import Aws
    from kie_uploader.cli.moving import backfill

    count = ctx.count(full=2000, quick=200)
    bucket, queue = outputs["BucketNames"].split(",")[0], outputs["QueueUrl"]
    s3, sqs = _client(endpoint_url, "s3"), _client(endpoint_url, "sqs")
    _pause_consumer(endpoint_url, outputs)
    prefix = f"bench-backfill/{int(time.time())}/"
    keys = [f"{prefix}{i:06d}.bin" for i in range(count)]
    progress(f"distributed: putting {count} objects (the queue's consumer paused)")
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=b"x" * 64), keys))
    time.sleep(1.0)
    _drain(sqs, queue)  # their S3 notifications

    env = {**local.local_aws_env(endpoint_url), "AWS_PROFILE": None}
    with scoped_env(env):
        aws = Aws(stack_name=STACK)
        assert aws.watching.rules  # the stack's discovery and rules, read before the clock starts (both runs)
        progress("distributed: the local backfill")
        started = time.perf_counter()
        done = backfill(aws, S3Uri(bucket, prefix))
        local_seconds = time.perf_counter() - started
        local_enqueued = _drain(sqs, queue)
    far_seconds, far_enqueued = _local_far_away(endpoint_url, bucket, prefix)
    _drain(sqs, queue)
    with scoped_env(env):
        aws = Aws(stack_name=STACK)

        progress("distributed: the distributed backfill")
        state_machine = aws.stack.backfill_state_machine_arn
        started = time.perf_counter()
        arn = distributed.start(aws.sfn, state_machine, distributed.RunInput(bucket=bucket, prefix=prefix))
        while (status := aws.sfn.describe_execution(executionArn=arn)["status"]) == "RUNNING":
            time.sleep(POLL_SECONDS)
        distributed_seconds = time.perf_counter() - started
        state = distributed.describe(aws.sfn, arn)
        distributed_enqueued = _queue_depth(sqs, queue)
        _drain(sqs, queue)
    if status != "SUCCEEDED" or {done.enqueued, distributed_enqueued, far_enqueued} != {count}:
        raise RuntimeError(
            f"local enqueued {done.enqueued} (queue {local_enqueued}), distributed run {status} enqueued "
            f"{distributed_enqueued} of {count}: {state.to_json()}"
        )
    local_rate, distributed_rate = count / local_seconds, count / distributed_seconds
    far_rate = count / far_seconds
    ratio = distributed_rate / local_rate
    report.figures.update(
        {
            "objects": count,
            "local_seconds": round(local_seconds, 2),
            "local_objects_per_second": round(local_rate, 1),
            "distributed_seconds": round(distributed_seconds, 2),
            "distributed_objects_per_second": round(distributed_rate, 1),
            "distributed_to_local_ratio": round(ratio, 3),
            "local_at_round_trip_seconds": ROUND_TRIP_SECONDS,
            "local_far_seconds": round(far_seconds, 2),
            "local_far_objects_per_second": round(far_rate, 1),
            "suggestion_objects": SUGGESTION_OBJECTS,
            "suggestion_local_minutes_loopback": round(SUGGESTION_OBJECTS / local_rate / 60, 1),
            "suggestion_local_minutes_at_round_trip": round(SUGGESTION_OBJECTS / far_rate / 60, 1),
            "map_run_items": state.items,
            "child_max_concurrency": _max_concurrency(),
        }
    )
    report.row(
        f"local backfill, {count} objects enqueued", f"{local_rate:,.0f} objects/s ({local_seconds:.1f} s)"
    )
    report.row(
        f"distributed backfill, {count} objects enqueued",
        f"{distributed_rate:,.0f} objects/s ({distributed_seconds:.1f} s)",
    )
    report.row(
        f"local backfill, every request +{ROUND_TRIP_SECONDS * 1000:.0f} ms",
        f"{far_rate:,.0f} objects/s ({far_seconds:.1f} s)",
    )
    report.row("distributed / local (ministack: no ItemBatcher)", f"{ratio:.2f}")
    report.row(
        f"local backfill of {SUGGESTION_OBJECTS:,} objects (the --distributed threshold)",
        f"{SUGGESTION_OBJECTS / local_rate / 60:.1f} min on loopback, "
        f"{SUGGESTION_OBJECTS / far_rate / 60:.1f} min at +{ROUND_TRIP_SECONDS * 1000:.0f} ms",
    )


def _local_far_away(endpoint_url: str, bucket: str, prefix: str) -> tuple[float, int]:
    """The local backfill with every request delayed by ROUND_TRIP_SECONDS: its seconds and enqueued."""
    from kie_uploader.cli.args import S3Uri
    from kie_uploader.cli.aws import Aws
    from kie_uploader.cli.moving import backfill
    from tests.faultproxy import FaultProxy, Rule, delay

    with FaultProxy(endpoint_url) as proxy:
        env = {**local.local_aws_env(proxy.endpoint_url), "AWS_PROFILE": None}
        with scoped_env(env):
            aws = Aws(stack_name=STACK)
            assert aws.watching.rules
            proxy.add(Rule(None, None, delay(ROUND_TRIP_SECONDS), times=None))
            progress(f"distributed: the local backfill, every request +{ROUND_TRIP_SECONDS * 1000:.0f} ms")
            started = time.perf_counter()
            done = backfill(aws, S3Uri(bucket, prefix))
            return time.perf_counter() - started, done.enqueued


def _max_concurrency() -> int:
    from kie_uploader.cdk.backfill import MAX_CONCURRENCY

    return MAX_CONCURRENCY


def run(ctx: Context, report: Report) -> None:
    with deployed_stack("distributed", ctx.state_dir / "distributed", report) as (endpoint_url, outputs):
        _measure(ctx, report, endpoint_url, outputs)
