"""The operator's day-to-day commands (``info``, ``stats``, ``set-key``, ``dlq peek``, ``redrive``) against
the real stack deployed into ministack.

Records are written straight into the stack's table and messages straight onto its queues (the function is
not what these tests are about); the queue's event source is disabled (``paused_queue``) while messages
must stay on it to be counted.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kie_uploader.cli.errors import EXIT_ERROR, EXIT_OK
from tests.conftest import LEAK_WATCH
from tests.e2e.conftest import Run
from tests.e2e.test_cli import drain, keys_under, paused_queue


def put_record(aws: SimpleNamespace, table: str, uri: str, status: str | None, **extra: Any) -> None:
    """A record as the function writes it (only what the commands read)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    item: dict[str, Any] = {
        "pk": {"S": uri},
        "bucket": {"S": bucket},
        "key": {"S": key},
        "rev": {"N": "1"},
        "updatedAt": {"S": "2026-12-01T00:00:00.000Z"},
    }
    if status is not None:
        item["status"] = {"S": status}
    for name, value in extra.items():
        item[name] = {"BOOL": value} if isinstance(value, bool) else {"S": str(value)}
    aws.dynamodb.put_item(TableName=table, Item=item)


# --- info ------------------------------------------------------------------------------------------


def test_info_lists_the_uploaders_resources_its_dashboard_and_the_functions_settings(
    cli: Callable[..., Run], aws: SimpleNamespace, outputs: dict[str, str]
) -> None:
    run = cli("info")
    assert run.code == EXIT_OK, run.err
    for name, value in outputs.items():
        assert f"  {name}  " in run.out and value in run.out, name
    config = aws.lambda_.get_function_configuration(FunctionName=outputs["FunctionName"])
    assert re.search(rf"\n  memory +{config['MemorySize']} MB\n", run.out), run.out
    assert re.search(rf"\n  timeout +{config['Timeout']} s\n", run.out), run.out
    assert re.search(rf"\n    KIE_API_KEY_SECRET_ID +{re.escape(outputs['SecretArn'])}\n", run.out), run.out
    assert f"queue: visibility timeout {6 * config['Timeout']} s" in run.out  # 6 x the function's timeout

    info = json.loads(cli("info", "--json").out)
    assert {name: o["value"] for name, o in info["resources"].items()} == outputs
    assert (info["uploader"], info["uploaders"]) == ("KieUploader", ["KieUploader"])
    assert info["function"]["timeoutSeconds"] == config["Timeout"]
    assert info["function"]["reservedConcurrency"] is None  # notify=queue reserves none
    # The construct's dashboard, named by its discovery record; no console link for a local endpoint.
    [dashboard] = info["dashboards"]
    assert dashboard["name"] and dashboard["url"] is None
    assert f"dashboard: {dashboard['name']}  (no console link" in run.out


# --- stats -----------------------------------------------------------------------------------------


def test_stats_counts_records_by_status_and_the_queues_depth(
    cli: Callable[..., Run], aws: SimpleNamespace, outputs: dict[str, str], bucket: str, prefix: str
) -> None:
    table = outputs["TableName"]
    wanted = {"UPLOADED": 3, "FAILED": 2, "SKIPPED": 1, "DELETED": 0, "IN_PROGRESS": 1}
    for status, count in wanted.items():
        for i in range(count):
            extra = {"errorKind": "configuration" if i == 0 else "permanent"} if status == "FAILED" else {}
            put_record(
                aws,
                table,
                f"s3://{bucket}/{prefix}{status}-{i}",
                None if status == "IN_PROGRESS" else status,
                **extra,
            )

    run = cli("stats", "--prefix", f"s3://{bucket}/{prefix}", "--json")
    assert run.code == EXIT_OK, run.err
    records = json.loads(run.out)["records"]
    assert records["byStatus"] == wanted
    assert records["total"] == 7
    assert records["failedByKind"] == {"configuration": 1, "permanent": 1}

    queue, dlq = outputs["QueueUrl"], outputs["DeadLetterQueueUrl"]
    with paused_queue(aws, outputs):
        drain(aws.sqs, dlq)
        for i in range(4):
            aws.sqs.send_message(
                QueueUrl=queue, MessageBody=json.dumps({"bucket": bucket, "key": f"{prefix}q{i}"})
            )
        for i in range(2):
            aws.sqs.send_message(
                QueueUrl=dlq, MessageBody=json.dumps({"bucket": bucket, "key": f"{prefix}d{i}"})
            )
        received = aws.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, VisibilityTimeout=60)
        assert len(received["Messages"]) == 1
        try:
            run = cli("stats", "--no-records", "--json")
            assert run.code == EXIT_OK, run.err
            stats = json.loads(run.out)
            assert stats["records"] is None
            assert (stats["queue"]["visible"], stats["queue"]["inFlight"]) == (3, 1)
            assert (stats["deadLetterQueue"]["visible"], stats["deadLetterQueue"]["inFlight"]) == (2, 0)
            # ministack's CloudWatch has no SQS metrics: the age is unknown, not made up.
            assert stats["queue"]["oldestMessageAgeSeconds"] is None
            assert "no datapoint" in stats["queue"]["oldestMessageAgeSource"]

            text = cli("stats", "--prefix", f"s3://{bucket}/{prefix}")
            assert text.code == EXIT_OK, text.err
            lines = text.out.splitlines()
            assert any(
                line.split()[:2] == ["FAILED", "2"] and "1 configuration, 1 permanent" in line
                for line in lines
            )
            assert any(line.split()[:2] == ["total", "7"] for line in lines)
            assert any(
                line.startswith("queue ") and line.split()[1:4] == ["3", "1", "0"] and "unknown" in line
                for line in lines
            )
            assert any(
                line.startswith("dead-letter queue ") and line.split()[2:4] == ["2", "0"] for line in lines
            )
        finally:
            aws.sqs.delete_message(QueueUrl=queue, ReceiptHandle=received["Messages"][0]["ReceiptHandle"])
            drain(aws.sqs, queue)
            drain(aws.sqs, dlq)


# --- set-key ---------------------------------------------------------------------------------------


def test_set_key_from_stdin_updates_the_secret_and_never_prints_the_key(
    cli_env: dict[str, str], deployed_stack: Any, outputs: dict[str, str]
) -> None:
    secretsmanager = deployed_stack.client("secretsmanager")
    arn = outputs["SecretArn"]
    original = secretsmanager.get_secret_value(SecretId=arn)["SecretString"]
    key = f"ops-test-{secrets.token_hex(16)}"
    LEAK_WATCH.secrets.add(key)  # the whole run's leak check looks for this key too
    script = Path(sys.executable).parent / "kie-uploader"
    env = {**os.environ, **cli_env}

    def set_key(stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [script, "set-key"], input=stdin, env=env, capture_output=True, text=True, timeout=60
        )

    try:
        done = set_key(f"{key}\n")
        assert done.returncode == EXIT_OK, done.stderr
        assert json.loads(secretsmanager.get_secret_value(SecretId=arn)["SecretString"]) == {"apiKey": key}
        assert key not in done.stdout and key not in done.stderr
        assert f"put the kie.ai key into {arn}" in done.stdout
        assert "kie-uploader retry-failed" in done.stdout  # what to do next

        again = set_key(key)  # the same key: nothing written
        assert again.returncode == EXIT_OK, again.stderr
        assert "already holds this key" in again.stdout and key not in again.stdout + again.stderr

        bad = set_key(f"{key}\nsecond line\n")
        assert bad.returncode == EXIT_ERROR
        assert bad.stdout == "" and "one line" in bad.stderr and key not in bad.stderr
        empty = set_key("\n")
        assert empty.returncode == EXIT_ERROR and "no key" in empty.stderr
        assert json.loads(secretsmanager.get_secret_value(SecretId=arn)["SecretString"]) == {"apiKey": key}
    finally:
        secretsmanager.put_secret_value(SecretId=arn, SecretString=original)


# --- dlq peek --------------------------------------------------------------------------------------


def test_dlq_peek_shows_the_objects_and_why_and_leaves_every_message_in_place(
    cli: Callable[..., Run], aws: SimpleNamespace, outputs: dict[str, str], bucket: str, prefix: str
) -> None:
    dlq, table = outputs["DeadLetterQueueUrl"], outputs["TableName"]
    failed_key, s3_key, sns_key = f"{prefix}failed.txt", f"{prefix}été 2025.jpg", f"{prefix}via-sns.txt"
    put_record(
        aws, table, f"s3://{bucket}/{failed_key}", "FAILED", errorKind="configuration", retryable=True,
        error="kie.ai 401 for https://example.com/x?X-Amz-Signature=notarealsignature&X-Amz-Credential=AKIA",
    )  # fmt: skip
    encoded = s3_key.replace(" ", "+").replace("é", "%C3%A9")  # as S3 writes keys into notifications
    record = {"bucket": {"name": bucket}, "object": {"key": encoded}}
    notification = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": record}]}
    bodies = [
        json.dumps({"bucket": bucket, "key": failed_key}),
        json.dumps(notification),
        json.dumps({"Type": "Notification", "Message": json.dumps({"bucket": bucket, "key": sns_key})}),
    ]
    drain(aws.sqs, dlq)
    try:
        for body in bodies:
            aws.sqs.send_message(QueueUrl=dlq, MessageBody=body)

        run = cli("dlq", "peek")
        assert run.code == EXIT_OK, run.err
        assert "3 messages peeked; all left in the dead-letter queue" in run.out
        lines = run.out.splitlines()
        assert len([line for line in lines if line.startswith("message ")]) == 3
        assert sum(1 for line in lines if line.startswith(f"  s3://{bucket}/{prefix}")) == 3
        failed_line = next(line for line in lines if failed_key in line)
        assert failed_line.startswith(f"  s3://{bucket}/{failed_key}  message  FAILED  ")
        assert "[configuration, retryable] kie.ai 401" in failed_line
        # Decoded as S3 sends keys (+ and %XX), and without a record: said so.
        assert f"  s3://{bucket}/{s3_key}  ObjectCreated:Put  -  no record" in lines
        assert "notarealsignature" not in run.out and "AKIA" not in run.out  # through redact

        peeked = json.loads(cli("dlq", "peek", "--max", "10", "--json").out)
        uris = sorted(o["uri"] for entry in peeked for o in entry["objects"])
        assert uris == sorted(f"s3://{bucket}/{k}" for k in (failed_key, s3_key, sns_key))
        assert {entry["earlierReceives"] for entry in peeked} == {1}  # the first peek's receive
        shapes = sorted(entry["shape"] for entry in peeked)
        assert shapes == ["plain", "s3-notification", "sns/plain"]

        tsv = cli("dlq", "peek", "--output", "tsv").out.splitlines()  # one line per object
        assert tsv[0].split("\t")[:2] == ["messageId", "sentAt"] and len(tsv) == 4
        assert sum(line.split("\t")[5] == f"s3://{bucket}/{failed_key}" for line in tsv[1:]) == 1
    finally:
        left = drain(aws.sqs, dlq)
    # Nothing was moved or consumed: the same three messages are still there, visible.
    assert sorted(json.dumps(b, sort_keys=True) for b in left) == sorted(
        json.dumps(json.loads(b), sort_keys=True) for b in bodies
    )


# --- redrive ---------------------------------------------------------------------------------------


def test_redrive_moves_every_dead_letter_message_back_to_the_queue(
    cli: Callable[..., Run], aws: SimpleNamespace, outputs: dict[str, str], bucket: str, prefix: str
) -> None:
    dlq, queue = outputs["DeadLetterQueueUrl"], outputs["QueueUrl"]
    with paused_queue(aws, outputs):
        drain(aws.sqs, dlq)
        bodies = [{"bucket": bucket, "key": f"{prefix}dead {i}.txt"} for i in range(13)]
        for body in bodies:
            aws.sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(body))

        run = cli("redrive")

        assert run.code == EXIT_OK, run.err
        # ministack has no message move task (InvalidAction, measured): the loop moved them.
        assert "no SQS message move task here (InvalidAction)" in run.err
        assert run.out.strip() == "moved 13 messages from the dead-letter queue to the queue"
        assert drain(aws.sqs, dlq) == []
        assert keys_under(drain(aws.sqs, queue), bucket, prefix) == sorted(b["key"] for b in bodies)


def test_redrive_max_moves_exactly_that_many_with_the_loop(
    cli: Callable[..., Run], aws: SimpleNamespace, outputs: dict[str, str], bucket: str, prefix: str
) -> None:
    dlq, queue = outputs["DeadLetterQueueUrl"], outputs["QueueUrl"]
    with paused_queue(aws, outputs):
        drain(aws.sqs, dlq)
        for i in range(7):
            aws.sqs.send_message(
                QueueUrl=dlq, MessageBody=json.dumps({"bucket": bucket, "key": f"{prefix}{i}"})
            )

        run = cli("redrive", "--max", "5", "--json")

        assert run.code == EXIT_OK, run.err
        assert json.loads(run.out) == {"moved": 5, "failed": 0, "method": "loop", "errors": []}
        assert "move task" not in run.err  # --max never tries the task
        assert len(keys_under(drain(aws.sqs, queue), bucket, prefix)) == 5
        assert len(keys_under(drain(aws.sqs, dlq), bucket, prefix)) == 2
