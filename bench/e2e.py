"""6. End to end: the stack deployed into its own ministack with the pinned CDK CLI (``deploy_local``),
objects put into its bucket, and the time until each one's record is ``UPLOADED``.

By default the stack is deployed with ``notify=queue`` (the stack's default: S3 → SQS → the function in
batches of 10, the event source's maximum concurrency bounding the containers); ``notify=eventbridge`` goes
S3 → EventBridge → the same queue. With ``notify=lambda`` (S3 invoking the function directly) ministack
does not apply the function's reserved concurrency and starts one worker process per concurrent asynchronous
invocation: 300 objects at once would mean ~300 Python processes on this machine.

Latency is measured two ways, both from the moment the client's PutObject returned:
* to the record's ``uploadedAt`` (kie.ai's own timestamp of the stored file; the record is written right
  after): the pipeline's latency, independent of how often the table is polled;
* to the poll that first saw the record ``UPLOADED`` (an upper bound, within the poll interval).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3

from bench.common import Report, progress, scoped_env, spread
from bench.context import Context
from bench.world import API_KEY, FUNCTION_VARIABLES, OBJECT_BYTES
from kie_uploader import local
from kie_uploader.deploy import DeployError, deploy_local, destroy_local, put_api_key

POLL_SECONDS = 0.5
#: Give up when no object reached UPLOADED for this long (something is stuck: say so, keep the figures).
STALL_SECONDS = 180.0


def _client(endpoint_url: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=local.LOCAL_REGION,
        aws_access_key_id=local.LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=local.LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _scan(ddb: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        answer = ddb.scan(**request)
        items += answer.get("Items", [])
        if "LastEvaluatedKey" not in answer:
            return items
        request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def _queue_depth(sqs: Any, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(value) for value in attributes.values())


def _deploy_failure(exc: DeployError, ministack: local.Server) -> str:
    """The lines that say why a deployment failed: CloudFormation's FAILED events and ministack's errors
    (the exception's own text is only the tail of cdk's output, mostly the rollback)."""
    failed = [line.strip() for line in exc.output.splitlines() if "FAILED" in line][:5]
    errors = [line.strip()[:400] for line in ministack.log_tail(400).splitlines() if " ERROR " in line][:5]
    return "\n".join([f"cdk {exc.step} failed (exit {exc.returncode})", *failed, *errors])


def _settings_summary(context: dict[str, str]) -> dict[str, Any]:
    """The deployed function's settings that shape the figures (as the stack derives them)."""
    from kie_uploader.cdk.options import BATCHING_WINDOW_SECONDS, SQS_BATCH_SIZE
    from kie_uploader.settings import StackSettings

    settings = StackSettings.from_context(context.get)
    return {
        "notify": settings.notify,
        "sqs_batch_size": SQS_BATCH_SIZE,
        "sqs_batching_window_seconds": BATCHING_WINDOW_SECONDS,
        "event_source_max_concurrency": settings.max_concurrency,
        "memory_mb": settings.memory_size,
        "architecture": settings.architecture,
    }


def _measure(ctx: Context, report: Report, endpoint_url: str, outputs: dict[str, str]) -> None:
    count = ctx.count(full=300, quick=30)
    bucket, table = outputs["BucketNames"].split(",")[0], outputs["TableName"]
    s3, ddb = _client(endpoint_url, "s3"), _client(endpoint_url, "dynamodb")
    prefix = f"bench/{int(time.time())}"
    keys = [f"{prefix}/object {i:05d}.bin" for i in range(count)]
    put_done: dict[str, float] = {}

    def put(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=os.urandom(OBJECT_BYTES))
        put_done[key] = time.time()

    progress(f"e2e: putting {count} objects into {bucket}")
    started = time.time()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(put, keys))
    puts_seconds = time.time() - started

    seen: dict[str, tuple[float, float]] = {}  # key -> (poll time, uploadedAt epoch)
    statuses: dict[str, str] = {}
    last_progress = time.time()
    wanted = {f"s3://{bucket}/{key}": key for key in keys}
    while len(seen) < count and time.time() - last_progress < STALL_SECONDS:
        time.sleep(POLL_SECONDS)
        polled = time.time()
        for item in _scan(ddb, table):
            key = wanted.get(item["pk"]["S"])
            if key is None:
                continue
            # A record is claimed (no status yet) before it is settled: not done, not failed either.
            statuses[key] = item["status"]["S"] if "status" in item else "CLAIMED"
            if key not in seen and statuses[key] == "UPLOADED":
                seen[key] = (polled, _epoch(item["uploadedAt"]["S"]))
                last_progress = polled
    if not seen:
        raise RuntimeError(f"no object reached UPLOADED within {STALL_SECONDS:.0f} s")

    by_record = [uploaded - put_done[key] for key, (_, uploaded) in seen.items()]
    by_poll = [polled - put_done[key] for key, (polled, _) in seen.items()]
    last = max(uploaded for _, uploaded in seen.values())
    rate = len(seen) / (last - started)
    others: dict[str, int] = {}
    for key in keys:
        if key not in seen:
            status = statuses.get(key, "MISSING")
            others[status] = others.get(status, 0) + 1
    dlq = _queue_depth(_client(endpoint_url, "sqs"), outputs["DeadLetterQueueUrl"])
    latency = spread(by_record)
    report.figures.update(
        {
            "objects": count,
            "uploaded": len(seen),
            "not_uploaded": others,
            "dead_letter_messages": dlq,
            "puts_seconds": round(puts_seconds, 2),
            "latency_to_uploaded_seconds": latency,
            "latency_to_poll_seconds": spread(by_poll),
            "poll_interval_seconds": POLL_SECONDS,
            "objects_per_second": round(rate, 2),
            "wall_seconds_first_put_to_last_upload": round(last - started, 2),
        }
    )
    report.row(f"{count} objects put, {len(seen)} UPLOADED", f"{rate:.1f} objects/s overall")
    report.row(
        "put -> UPLOADED p50 / p95 / max",
        f"{latency['p50']:.2f} / {latency['p95']:.2f} / {latency['max']:.2f} s",
    )
    if others or dlq:
        report.notes.append(f"not uploaded: {others}; dead-letter messages: {dlq}")
        raise RuntimeError(f"{count - len(seen)} objects did not reach UPLOADED ({others}), DLQ {dlq}")


@contextmanager
def deployed_stack(
    name: str, state: Path, report: Report, context: dict[str, str] | None = None
) -> Iterator[tuple[str, dict[str, str]]]:
    """A ministack and a kie.ai emulator of their own, the repository's stack deployed into them (with
    ``context``) and its API key set: yields (ministack's endpoint, the stack's outputs); destroys the stack
    and stops both servers after, noting a failed destroy in ``report`` (the run goes on)."""
    shutil.rmtree(state, ignore_errors=True)
    progress(f"{name}: starting a ministack and a kie.ai emulator for the deployment")
    # ministack passes its environment on to the functions it runs (AWS_ENDPOINT_URL first of all):
    # start it without any endpoint or function setting an in-process section may have left behind.
    clean: dict[str, str | None] = {name: None for name in os.environ if name.startswith("AWS_ENDPOINT_URL")}
    clean.update({name: None for name in FUNCTION_VARIABLES})
    with scoped_env(clean):
        ministack = local.start_ministack(state / "ministack")
    emulator: local.Server | None = None
    deployed = False
    timings: dict[str, float] = {}
    outdir = state / "cdk.out"
    try:
        emulator = local.start_emulator(api_key=API_KEY, state_dir=state / "kie-emulator")
        progress(f"{name}: cdk bootstrap + deploy into ministack (a minute or more)")
        try:
            outputs = deploy_local(
                endpoint_url=ministack.endpoint_url,
                kie_base_url=emulator.endpoint_url,
                outdir=outdir,
                timings=timings,
                context=context,
            )
        except DeployError as exc:
            raise RuntimeError(_deploy_failure(exc, ministack)) from exc
        deployed = True
        put_api_key(outputs["SecretArn"], API_KEY, endpoint_url=ministack.endpoint_url)
        yield ministack.endpoint_url, outputs
    finally:
        if deployed:
            progress(f"{name}: cdk destroy")
            try:
                destroy_local(
                    endpoint_url=ministack.endpoint_url, outdir=outdir, timings=timings, context=context
                )
            except Exception as exc:  # the servers still stop below; the run goes on
                report.notes.append(f"cdk destroy failed: {type(exc).__name__}: {str(exc)[:300]}")
        report.figures["cdk_seconds"] = {step: round(seconds, 1) for step, seconds in timings.items()}
        if emulator is not None:
            emulator.stop()
        ministack.stop()


def run(ctx: Context, report: Report) -> None:
    context = {"notify": ctx.e2e_notify}
    with deployed_stack("e2e", ctx.state_dir / "e2e", report, context) as (endpoint_url, outputs):
        report.figures["stack_context"] = context
        report.figures["stack_settings"] = _settings_summary(context)
        _measure(ctx, report, endpoint_url, outputs)
