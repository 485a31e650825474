"""The distributed backfill (issue 18) deployed into ministack: ``kie-uploader backfill --distributed`` runs
the stack's state machine (a Distributed Map over ``listObjectsV2`` or a manifest, the child function
enqueueing in batches), the deployed uploader consumes the queue, and the kie.ai emulator counts uploads.

A stack of its own beside the session's (``suffix=.jpg``, so a prefix holds keys it does not watch;
``maxConcurrency=10`` so that a few thousand uploads take seconds, not minutes). Its objects are put while
the queue's event source is paused and their S3 notifications drained: only the backfill enqueues them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import pytest

from kie_uploader import distributed
from kie_uploader.cli.errors import EXIT_INTERRUPTED, EXIT_OK
from tests.e2e.conftest import DeployedStack, Run, deploy_beside
from tests.e2e.test_cli import drain, paused_queue

STACK = "KieUploaderBackfill"
SUFFIX = ".jpg"
#: Watched objects of the big run, and keys beside them the stack does not watch.
MANY, UNWATCHED = 2000, 40
UPLOAD_WAIT_SECONDS = 240.0


@pytest.fixture(scope="module")
def stack(deployed_stack: DeployedStack, tmp_path_factory: pytest.TempPathFactory) -> DeployedStack:
    outdir: Path = tmp_path_factory.mktemp("e2e-backfill-cdk-out")
    return deploy_beside(deployed_stack, STACK, {"suffix": SUFFIX, "maxConcurrency": "10"}, outdir)


@pytest.fixture
def clients(stack: DeployedStack) -> SimpleNamespace:
    return SimpleNamespace(
        s3=stack.client("s3"),
        sqs=stack.client("sqs"),
        dynamodb=stack.client("dynamodb"),
        lambda_=stack.client("lambda"),
        sfn=stack.client("stepfunctions"),
    )


@pytest.fixture
def stack_cli(cli: Callable[..., Run]) -> Callable[..., Run]:
    def run(*argv: str) -> Run:
        return cli("--stack", STACK, *argv)

    return run


def put_objects(clients: SimpleNamespace, bucket: str, keys: list[str]) -> None:
    """Put the objects (8 at a time) while the queue is paused, then drop their notifications."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: clients.s3.put_object(Bucket=bucket, Key=key, Body=key.encode()), keys))


@pytest.fixture
def quiet_objects(stack: DeployedStack, clients: SimpleNamespace) -> Iterator[Callable[[list[str]], None]]:
    """Put objects with the queue paused and their S3 notifications drained (only a backfill sends them);
    the queue's consumer resumes when the test's body is done with it (``resume()``) or at the end."""
    resumed: list[bool] = []
    context = paused_queue(clients, stack.outputs)
    context.__enter__()

    def put(keys: list[str]) -> None:
        put_objects(clients, stack.bucket_name, keys)
        time.sleep(1.0)  # ministack sends notifications from threads of their own
        drain(clients.sqs, stack.outputs["QueueUrl"])

    def resume() -> None:
        if not resumed:
            resumed.append(True)
            context.__exit__(None, None, None)

    put.resume = resume  # type: ignore[attr-defined]
    try:
        yield put
    finally:
        resume()


def uploads_under(stack: DeployedStack, prefix: str) -> Counter[str]:
    """Successful kie.ai uploads per key under ``prefix``, as the emulator saw them (the fileUrl names the
    object)."""
    counts: Counter[str] = Counter()
    for call in stack.emulator.calls:
        url = str((call.body or {}).get("fileUrl") or "")
        if call.status == 200 and f"/{prefix}" in url:
            counts[prefix + unquote(url.split(f"/{prefix}", 1)[1].split("?", 1)[0])] += 1
    return counts


def statuses_under(clients: SimpleNamespace, table: str, bucket: str, prefix: str) -> dict[str, str]:
    """Each record's status under the prefix (a scan: the table is small)."""
    found: dict[str, str] = {}
    paginator = clients.dynamodb.get_paginator("scan")
    start = f"s3://{bucket}/{prefix}"
    for page in paginator.paginate(
        TableName=table,
        FilterExpression="begins_with(pk, :p)",
        ExpressionAttributeValues={":p": {"S": start}},
        ProjectionExpression="pk, #s",
        ExpressionAttributeNames={"#s": "status"},
    ):
        for item in page.get("Items", []):
            found[item["pk"]["S"][len(f"s3://{bucket}/") :]] = item.get("status", {}).get("S", "")
    return found


def wait_all_uploaded(
    clients: SimpleNamespace, stack: DeployedStack, prefix: str, keys: list[str]
) -> dict[str, str]:
    deadline = time.monotonic() + UPLOAD_WAIT_SECONDS
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        statuses = statuses_under(clients, stack.outputs["TableName"], stack.bucket_name, prefix)
        if sum(1 for key in keys if statuses.get(key) == "UPLOADED") == len(keys):
            return statuses
        time.sleep(2)
    missing = [key for key in keys if statuses.get(key) != "UPLOADED"]
    raise AssertionError(f"{len(missing)} of {len(keys)} not UPLOADED, e.g. {missing[:3]}: "
                         f"{Counter(statuses.get(k, 'no record') for k in missing)}")  # fmt: skip


def test_a_distributed_run_enqueues_every_watched_object_once_and_each_is_uploaded_once(
    stack: DeployedStack,
    clients: SimpleNamespace,
    stack_cli: Callable[..., Run],
    quiet_objects: Any,
    prefix: str,
) -> None:
    watched = [f"{prefix}{i:05}{SUFFIX}" for i in range(MANY)]
    unwatched = [f"{prefix}other-{i:03}.png" for i in range(UNWATCHED)]
    started = time.perf_counter()
    quiet_objects(watched + unwatched)
    put_seconds = time.perf_counter() - started

    # When the prefix is backfilled through the state machine, progress as JSON lines
    run = stack_cli(
        "backfill", f"s3://{stack.bucket_name}/{prefix}", "--distributed", "--output", "jsonl",
        "--interval", "0.5",
    )  # fmt: skip
    run_seconds = time.perf_counter() - started - put_seconds

    # Then the run succeeded, its Map Run read every listed key, and the progress lines moved
    assert run.code == EXIT_OK, run.err
    lines = [json.loads(line) for line in run.out.splitlines()]
    last = lines[-1]
    assert last["status"] == "SUCCEEDED", last
    assert last["total"] == last["succeeded"] == MANY + UNWATCHED
    assert last["failed"] == 0 and last["mapRunArn"]
    assert len(lines) >= 2 and lines[0]["succeeded"] < last["succeeded"]
    # only the watched keys are on the queue, each once
    bodies = drain(clients.sqs, stack.outputs["QueueUrl"])
    assert sorted(body["key"] for body in bodies) == watched
    for start in range(0, len(bodies), 10):  # back on the queue for the uploader
        clients.sqs.send_message_batch(
            QueueUrl=stack.outputs["QueueUrl"],
            Entries=[
                {"Id": str(i), "MessageBody": json.dumps(body)}
                for i, body in enumerate(bodies[start : start + 10])
            ],
        )

    # When the uploader consumes them
    quiet_objects.resume()
    statuses = wait_all_uploaded(clients, stack, prefix, watched)

    # Then every watched object is UPLOADED, uploaded exactly once; no unwatched one has a record or upload
    uploads = uploads_under(stack, prefix)
    assert {key: n for key, n in uploads.items() if n != 1} == {}
    assert sorted(uploads) == watched
    assert not any(key in statuses for key in unwatched)
    uploaded_seconds = time.perf_counter() - started - put_seconds - run_seconds
    print(f"\nput {MANY + UNWATCHED} objects: {put_seconds:.1f} s; distributed run: {run_seconds:.1f} s; "
          f"all uploaded {uploaded_seconds:.1f} s later")  # fmt: skip


def test_a_stopped_run_resumed_uploads_each_object_once(
    stack: DeployedStack,
    clients: SimpleNamespace,
    stack_cli: Callable[..., Run],
    quiet_objects: Any,
    prefix: str,
) -> None:
    keys = [f"{prefix}{i:04}{SUFFIX}" for i in range(400)]
    quiet_objects(keys)
    quiet_objects.resume()  # the uploader consumes while the run enqueues

    # Given a run stopped mid-way (StopExecution) after part of its batches succeeded
    run = stack_cli("--json", "backfill", f"s3://{stack.bucket_name}/{prefix}", "--distributed", "--no-wait")
    assert run.code == EXIT_OK, run.err
    execution_arn = json.loads(run.out)["executionArn"]
    deadline = time.monotonic() + 60
    while distributed.describe(clients.sfn, execution_arn).items.get("succeeded", 0) < 50:
        assert time.monotonic() < deadline, "the run did not start its children"
        time.sleep(0.1)
    distributed.stop(clients.sfn, execution_arn)
    assert distributed.describe(clients.sfn, execution_arn).status == "ABORTED"
    # (ministack's Map Run keeps running the children it started: wait until it is quiet)
    wait_all_uploaded(clients, stack, prefix, keys)
    before = uploads_under(stack, prefix)

    # When it is redriven
    redriven = stack_cli("backfill", "--redrive", execution_arn, "--interval", "0.5")

    # Then ministack refuses RedriveExecution and the CLI says it started the same input again
    assert redriven.code == EXIT_OK, redriven.err
    assert "RedriveExecution is not available here (InvalidAction)" in " ".join(redriven.err.split())
    assert " ".join(redriven.out.split()).startswith(
        "backfill run SUCCEEDED: 400 of 400 objects handled (enqueued, or skipped as not watched or already "
        "uploaded), 0 failed, 0 pending"
    ), redriven.out
    time.sleep(3)  # anything the new run enqueued would be handled by now
    wait_all_uploaded(clients, stack, prefix, keys)
    after = uploads_under(stack, prefix)
    # and nothing that succeeded was uploaded again: each object exactly once, before and after
    assert after == before
    assert sorted(after) == keys and set(after.values()) == {1}


def test_status_reattaches_to_a_finished_run(
    stack: DeployedStack, clients: SimpleNamespace, stack_cli: Callable[..., Run], prefix: str
) -> None:
    clients.s3.put_object(Bucket=stack.bucket_name, Key=f"{prefix}a.png", Body=b"not watched")
    started = stack_cli("--json", "backfill", f"s3://{stack.bucket_name}/{prefix}", "--distributed")
    arn = json.loads(started.out)["executionArn"]

    status = stack_cli("--json", "backfill", "--status", arn)

    assert status.code == EXIT_OK, status.err
    shown = json.loads(status.out)
    assert shown["status"] == "SUCCEEDED" and shown["total"] == shown["succeeded"] == 1
    assert shown == json.loads(started.out)


def test_a_manifest_run_enqueues_only_the_watched_keys_it_names(
    stack: DeployedStack,
    clients: SimpleNamespace,
    stack_cli: Callable[..., Run],
    quiet_objects: Any,
    prefix: str,
) -> None:
    keys = [f"{prefix}{i}{SUFFIX}" for i in range(5)] + [f"{prefix}x.png"]
    quiet_objects(keys)
    for name, body in (
        ("m.csv", "Key\n" + "\n".join(keys[:2] + keys[-1:]) + "\n"),
        ("m.json", json.dumps([{"Key": key} for key in keys[2:4]])),
    ):
        clients.s3.put_object(Bucket=stack.bucket_name, Key=f"lists/{prefix}{name}", Body=body.encode())
        run = stack_cli(
            "--json", "backfill", f"s3://{stack.bucket_name}/", "--manifest",
            f"s3://{stack.bucket_name}/lists/{prefix}{name}",
        )  # fmt: skip
        assert run.code == EXIT_OK, run.err
        assert json.loads(run.out)["status"] == "SUCCEEDED"
    assert sorted(body["key"] for body in drain(clients.sqs, stack.outputs["QueueUrl"])) == keys[:4]


def test_ctrl_c_stops_watching_not_the_run(
    stack: DeployedStack, clients: SimpleNamespace, quiet_objects: Any, prefix: str, cli_env: dict[str, str]
) -> None:
    quiet_objects([f"{prefix}{i:04}{SUFFIX}" for i in range(1500)])
    arn = distributed.start(
        clients.sfn,
        _state_machine_arn(stack),
        distributed.RunInput(bucket=stack.bucket_name, prefix=prefix),
    )
    # the console script, as an operator runs it, interrupted as Ctrl-C does (SIGINT to its process). A
    # long --interval: after its first reading (a JSON line) it waits, whatever the run's pace, so the
    # signal always meets a watcher that is watching (under load the run may end within seconds).
    watcher = subprocess.Popen(
        [str(Path(sys.executable).parent / "kie-uploader"), "--stack", STACK, "backfill", "--status", arn,
         "--output", "jsonl", "--interval", "60"],
        env={**os.environ, **cli_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as on a terminal: a run started in the background (`make test &`) has SIGINT ignored, and a
        # Python started so never turns SIGINT into KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        assert watcher.stdout is not None
        first = json.loads(watcher.stdout.readline())  # the watcher read the run once
        assert first["status"] == "RUNNING", first
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == EXIT_INTERRUPTED, err
    assert f"stopped watching; the run goes on: kie-uploader backfill --status {arn}" in " ".join(err.split())
    deadline = time.monotonic() + 120
    while (state := distributed.describe(clients.sfn, arn)).status == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert state.status == "SUCCEEDED" and state.items["succeeded"] == 1500


def test_the_local_backfill_suggests_the_distributed_one_above_its_threshold(
    stack: DeployedStack, stack_cli: Callable[..., Run], quiet_objects: Any, prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from kie_uploader.cli import moving

    quiet_objects([f"{prefix}{i}{SUFFIX}" for i in range(3)])
    monkeypatch.setattr(moving, "DISTRIBUTED_SUGGESTION_OBJECTS", 2)  # 3 listed: over it
    over = stack_cli("backfill", f"s3://{stack.bucket_name}/{prefix}")
    assert over.code == EXIT_OK, over.err
    assert f"`kie-uploader backfill s3://{stack.bucket_name}/{prefix} --distributed`" in " ".join(
        over.err.split()
    )
    monkeypatch.setattr(moving, "DISTRIBUTED_SUGGESTION_OBJECTS", 3)  # 3 listed: not over it
    assert "--distributed" not in stack_cli("backfill", f"s3://{stack.bucket_name}/{prefix}").err


def _state_machine_arn(stack: DeployedStack) -> str:
    """The stack's backfill state machine, from its discovery record (as the CLI finds it)."""
    from kie_uploader.cli.aws import StackResources

    described = stack.client("cloudformation").describe_stacks(StackName=stack.stack_name)["Stacks"][0]
    return StackResources.from_described(stack.stack_name, described["Outputs"]).backfill_state_machine_arn
