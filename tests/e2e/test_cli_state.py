"""``kie-uploader`` against the deployed local stack: what ``status`` says of an object in each state it can
be in, one-line errors for an endpoint that is not AWS, and what an interrupted backfill says it did."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kie_uploader.cli.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_NO, EXIT_OK
from tests.e2e.conftest import Run
from tests.e2e.test_cli import drain, paused_queue, put_uploaded

CLI = Path(sys.executable).with_name("kie-uploader")


def status(cli: Callable[..., Run], uri: str) -> tuple[int, str, dict[str, Any]]:
    """Exit code, the text answer and the JSON answer of ``status``."""
    run = cli("status", uri)
    assert run.err == "", run.err
    return run.code, run.out, json.loads(cli("status", uri, "--output", "json").out)


# --- status: every state in words of its own ---------------------------------------------------------


def test_status_of_a_bucket_the_stack_does_not_serve_says_so(
    cli: Callable[..., Run], aws: SimpleNamespace, bucket: str
) -> None:
    # Reported: "no record (the object was never processed)", the words of a pending or expired object.
    # Then (issue 21): a bucket the stack does not serve is a mistake, as for list: one line, exit 2.
    other = f"not-served-{uuid.uuid4().hex[:8]}"
    aws.s3.create_bucket(Bucket=other)
    aws.s3.put_object(Bucket=other, Key="a.txt", Body=b"a")

    for argv in (("status", f"s3://{other}/a.txt"), ("status", f"s3://{other}/a.txt", "--output", "json")):
        run = cli(*argv)
        assert (run.code, run.out) == (EXIT_ERROR, ""), argv
        assert run.err == (
            f"kie-uploader: error: bucket {other} is not watched by stack KieUploader "
            f"(its buckets: {bucket})\n"
        )


def test_status_tells_waiting_not_in_s3_and_changed_apart(
    cli: Callable[..., Run], aws: SimpleNamespace, outputs: dict[str, str], bucket: str, prefix: str
) -> None:
    uploaded = f"{prefix}uploaded.txt"
    put_uploaded(aws, outputs, bucket, [uploaded])
    with paused_queue(aws, outputs):
        # An object just put, whose event waits on the (paused) queue
        aws.s3.put_object(Bucket=bucket, Key=f"{prefix}new.txt", Body=b"new")
        code, out, data = status(cli, f"s3://{bucket}/{prefix}new.txt")
        assert (code, data["state"]) == (EXIT_NO, "WAITING")
        assert out.startswith(f"s3://{bucket}/{prefix}new.txt: waiting: put ")
        assert out.rstrip().endswith("ago, its event has not been handled yet")

        # A key that is in neither S3 nor the table
        code, out, data = status(cli, f"s3://{bucket}/{prefix}never-put.txt")
        assert (code, data["state"]) == (EXIT_NO, "NOT_IN_S3")
        assert out == f"s3://{bucket}/{prefix}never-put.txt: no such object in S3, and no record of one\n"

        # An uploaded object overwritten since: its live record describes the older bytes
        aws.s3.put_object(Bucket=bucket, Key=uploaded, Body=b"other bytes")
        code, out, data = status(cli, f"s3://{bucket}/{uploaded}")
        assert (code, data["state"], data["status"]) == (EXIT_NO, "WAITING", "UPLOADED")
        lines = dict(line.split(None, 1) for line in out.splitlines())
        assert lines["state"].startswith("changed in S3 since this upload")
        drain(aws.sqs, outputs["QueueUrl"])


def test_status_of_a_live_object_is_live_and_exits_0(
    cli: Callable[..., Run], aws: SimpleNamespace, outputs: dict[str, str], bucket: str, prefix: str
) -> None:
    put_uploaded(aws, outputs, bucket, [f"{prefix}live.txt"])
    code, _, data = status(cli, f"s3://{bucket}/{prefix}live.txt")
    assert (code, data["state"]) == (EXIT_OK, "LIVE")


# --- errors --------------------------------------------------------------------------------------------


def test_an_endpoint_that_is_not_aws_is_one_line(
    cli: Callable[..., Run], deployed_stack: Any, monkeypatch: pytest.MonkeyPatch, bucket: str
) -> None:
    # Reported: AWS_ENDPOINT_URL at the wrong port (here: the kie.ai emulator's) gave a 40-line
    # botocore.parsers.ResponseParserError traceback and exit 1.
    wrong = deployed_stack.emulator.base_url.rstrip("/")
    monkeypatch.setenv("AWS_ENDPOINT_URL", wrong)
    for argv in (("list",), ("status", f"s3://{bucket}/a.txt"), ("backfill", f"s3://{bucket}/")):
        run = cli(*argv)
        assert run.code == EXIT_ERROR, (argv, run)
        assert run.err.count("\n") == 1 and "Traceback" not in run.err, run.err
        assert run.err.startswith("kie-uploader: error: "), run.err
        assert wrong in run.err, run.err


def test_status_piped_into_head_exits_quietly(cli_env: dict[str, str], bucket: str) -> None:
    # Reported: `kie-uploader status ... | head` and `list | head -3` died with a BrokenPipeError traceback.
    result = subprocess.run(
        f"'{CLI}' status s3://{bucket}/x.txt --output json | head -c 1",
        shell=True,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout == "{"
    assert result.stderr == ""


def ctrl_c_once_the_queue_fills(
    cli: Callable[..., Run], deployed_stack: Any, outputs: dict[str, str], *argv: str
) -> Run:
    """Run the command in this process and press Ctrl-C (a real SIGINT) as soon as the stack's queue holds
    a message, seen by a watcher that reads the queue's depth through its own client."""
    watcher_sqs = deployed_stack.client("sqs")
    stop = threading.Event()

    def ctrl_c_after_the_first_batch() -> None:
        while not stop.is_set():
            depth = watcher_sqs.get_queue_attributes(
                QueueUrl=outputs["QueueUrl"], AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
            if int(depth) > 0:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=ctrl_c_after_the_first_batch, daemon=True)
    watcher.start()
    try:
        return cli(*argv)
    finally:
        stop.set()
        watcher.join()


def test_an_interrupted_backfill_says_how_many_it_enqueued(
    cli: Callable[..., Run],
    aws: SimpleNamespace,
    deployed_stack: Any,
    outputs: dict[str, str],
    bucket: str,
    prefix: str,
) -> None:
    # Reported: Ctrl-C during backfill did not say how many were enqueued.
    keys = [f"{prefix}{i:04d}.txt" for i in range(300)]
    with paused_queue(aws, outputs):
        for key in keys:
            aws.s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        drain(aws.sqs, outputs["QueueUrl"])  # the objects' own events: only the backfill's are counted

        # Ctrl-C once the first messages reached the queue
        started = time.monotonic()
        run = ctrl_c_once_the_queue_fills(cli, deployed_stack, outputs, "backfill", f"s3://{bucket}/{prefix}")
        elapsed = time.monotonic() - started
        enqueued = len(drain(aws.sqs, outputs["QueueUrl"]))

    assert run.code == EXIT_INTERRUPTED, (run, elapsed)
    assert run.err.count("\n") == 1, run.err
    assert run.err.startswith(f"kie-uploader: error: backfill interrupted: {enqueued} of "), run.err
    assert enqueued < len(keys)


# --- every command's words fit the terminal --------------------------------------------------------


@pytest.mark.parametrize("columns", [80, 120])
def test_every_command_fits_the_terminals_width_in_table_mode(
    cli: Callable[..., Run],
    aws: SimpleNamespace,
    outputs: dict[str, str],
    bucket: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    columns: int,
) -> None:
    # A long key (its S3 URI is wider than either terminal) in the table, in a record and in the DLQ
    long_key = f"{prefix}{'deeply/nested/' * 6}a file with a rather long name.txt"
    put_uploaded(aws, outputs, bucket, [long_key])
    uri = f"s3://{bucket}/{long_key}"
    aws.sqs.send_message(
        QueueUrl=outputs["DeadLetterQueueUrl"], MessageBody=json.dumps({"bucket": bucket, "key": long_key})
    )
    monkeypatch.setenv("COLUMNS", str(columns))
    runs = {
        "list": cli("list", f"s3://{bucket}/{prefix}"),
        "status": cli("status", uri),
        "status (no record)": cli("status", f"{uri}.missing"),
        "stats": cli("stats", "--prefix", f"s3://{bucket}/{prefix}"),
        "info": cli("info"),
        "dlq peek": cli("dlq", "peek", "--max", "10"),
        "backfill": cli("backfill", f"s3://{bucket}/{prefix}"),
        "retry-failed": cli("retry-failed", "--prefix", f"s3://{bucket}/{prefix}"),
        "refresh": cli("refresh", f"s3://{bucket}/{prefix}", "--expiring-within", "1h"),
        "redrive": cli("redrive"),
    }
    for name, run in runs.items():
        assert run.code in (EXIT_OK, EXIT_NO), (name, run)
        assert run.out.strip(), name
        too_long = [line for line in run.out.splitlines() if len(line) > columns]
        assert not too_long, (name, too_long)
    # Nothing was lost to the width: --wide and the JSON output still show the whole URI
    assert uri in cli("status", uri, "--wide").out
    assert json.loads(cli("status", uri, "--output", "json").out)["pk"] == uri


def test_an_interrupted_redrive_says_how_many_it_moved(
    cli: Callable[..., Run], aws: SimpleNamespace, deployed_stack: Any, outputs: dict[str, str], bucket: str
) -> None:
    dlq = outputs["DeadLetterQueueUrl"]
    drain(aws.sqs, dlq)
    for start in range(0, 200, 10):
        aws.sqs.send_message_batch(
            QueueUrl=dlq,
            Entries=[
                {"Id": str(i), "MessageBody": json.dumps({"bucket": bucket, "key": f"gone/{start + i}.txt"})}
                for i in range(10)
            ],
        )
    with paused_queue(aws, outputs):
        run = ctrl_c_once_the_queue_fills(cli, deployed_stack, outputs, "redrive")
        moved = len(drain(aws.sqs, outputs["QueueUrl"]))
    left = len(drain(aws.sqs, dlq))

    assert run.code == EXIT_INTERRUPTED, run
    # (ministack has no message move task: the batch loop runs, and says so first)
    assert run.err.splitlines()[-1] == (
        f"kie-uploader: error: redrive interrupted: {moved} messages moved to the queue, 0 failed; the rest "
        "is still in the dead-letter queue"
    )
    assert moved + left == 200 and 0 < moved < 200
