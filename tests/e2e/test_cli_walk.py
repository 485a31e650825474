"""Every ``kie-uploader`` command at 80 and at 120 columns on the deployed local stack (issue 17): its
``--help`` and a representative run. No line is wider than the terminal (display width: a CJK character
counts two), no identifier is cut to fewer than 12 characters, no traceback; and the reproductions 1, 2, 4 and
5 of the issue, each as it was reported.

Cheap on purpose: it reuses the session's deployed stack, runs every command in-process (``main(argv)`` with
``COLUMNS`` set) once per width in one module fixture, and the tests read what those runs printed. The fixture
first puts what the commands have to show: an object with a long key (CJK characters in it) that the function
uploads, a record FAILED with kie.ai's 401 (written into the table), a dead-letter message naming the long key
(``redrive`` moves it back to the queue: it is parked again after). Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from types import SimpleNamespace
from unittest import mock

import pytest
from rich.cells import cell_len

from kie_uploader.cli import main
from kie_uploader.cli.console import MIN_IDENTIFIER
from kie_uploader.cli.entry import build_parser
from kie_uploader.cli.errors import EXIT_NO, EXIT_OK
from kie_uploader.cli.output import format_duration
from tests.e2e.conftest import DeployedStack, Run
from tests.e2e.test_cli import drain, wait_for_status

COLUMNS = (80, 120)
#: kie.ai's answer to a bad key, as the function records it (the 401 that explains the failure).
ERROR_401 = (
    "kie.ai answered 401 Unauthorized: You do not have access permissions, check that the API key in the "
    "stack's secret is the one of your kie.ai account"
)


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command's words (``dlq peek`` included)."""
    found: list[tuple[str, ...]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += leaves(sub, (*path, name))
    return found or [path]


COMMANDS = leaves(build_parser())


@pytest.fixture(scope="module")
def walk(
    deployed_stack: DeployedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimpleNamespace]:
    """The objects, record and dead-letter message the commands show; removed afterwards."""
    s3, dynamodb, sqs = (deployed_stack.client(name) for name in ("s3", "dynamodb", "sqs"))
    outputs, bucket = deployed_stack.outputs, deployed_stack.bucket_name
    prefix = f"walk-{uuid.uuid4().hex[:8]}/"
    key = f"{prefix}photos/2025/vacances d'été à la plage/日本語の写真とても長い名前 {uuid.uuid4().hex}.jpg"
    failed_key = f"{prefix}reports/quarterly report with a long name, final version.pdf"
    s3.put_object(Bucket=bucket, Key=key, Body=b"a photo")
    aws = SimpleNamespace(dynamodb=dynamodb)
    wait_for_status(aws, outputs["TableName"], [f"s3://{bucket}/{key}"])
    now = int(time.time())
    dynamodb.put_item(
        TableName=outputs["TableName"],
        Item={
            "pk": {"S": f"s3://{bucket}/{failed_key}"}, "bucket": {"S": bucket}, "key": {"S": failed_key},
            "status": {"S": "FAILED"}, "errorKind": {"S": "configuration"}, "retryable": {"BOOL": True},
            "error": {"S": ERROR_401}, "attempts": {"N": "3"}, "rev": {"N": "1"},
            "updatedAt": {"S": "2025-01-04T12:00:00Z"}, "purgeAt": {"N": str(now + 30 * 86_400)},
        },
    )  # fmt: skip
    dlq = outputs["DeadLetterQueueUrl"]

    drain(sqs, dlq)

    def park() -> None:
        """One dead-letter message, naming the long key (the fixture's first; again after redrive)."""
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"bucket": bucket, "key": key}))

    park()

    settings = tmp_path_factory.mktemp("walk") / "kie-uploader.settings.json"
    settings.write_text(json.dumps({"settings": {"bucketNames": bucket, "prefix": prefix}}))
    try:
        yield SimpleNamespace(
            bucket=bucket, prefix=prefix, key=key, failed_key=failed_key, uri=f"s3://{bucket}/{key}",
            settings=settings, api_key=deployed_stack.api_key, park=park, env=deployed_stack.aws_env,
        )  # fmt: skip
    finally:
        drain(sqs, dlq)
        for pk in (f"s3://{bucket}/{key}", f"s3://{bucket}/{failed_key}"):
            dynamodb.delete_item(TableName=outputs["TableName"], Key={"pk": {"S": pk}})
        s3.delete_object(Bucket=bucket, Key=key)


def runs(walk: SimpleNamespace) -> dict[tuple[str, ...], tuple[str, ...]]:
    """A representative run of every command (its words → its arguments)."""
    prefix_uri = f"s3://{walk.bucket}/{walk.prefix}"
    return {
        ("backfill",): ("backfill", prefix_uri),
        ("status",): ("status", walk.uri),
        ("list",): ("list", prefix_uri),
        ("url",): ("url", walk.uri),
        ("refresh",): ("refresh", prefix_uri, "--expiring-within", "1h"),
        ("retry-failed",): ("retry-failed", "--prefix", f"{prefix_uri}nothing-here/"),
        ("forget",): ("forget", "--status", "SKIPPED", prefix_uri),
        ("doctor",): ("doctor", "--settings-file", str(walk.settings)),
        ("configure",): ("configure", "--settings-file", str(walk.settings)),
        ("info",): ("info",),
        ("stats",): ("stats", "--prefix", prefix_uri),
        ("set-key",): ("set-key",),
        ("dlq", "peek"): ("dlq", "peek", "--max", "10"),
        ("redrive",): ("redrive",),
    }


def run(walk: SimpleNamespace, *argv: str, columns: int | None = None) -> Run:
    """``kie-uploader ARGV`` in-process, an operator's environment (the local stack's AWS variables, and
    ``COLUMNS``); stdin holds the key ``set-key`` reads (the one the stack's secret already has)."""
    env = {**walk.env, "KIE_UPLOADER_SETTINGS_FILE": str(walk.settings)}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, env),
        mock.patch("sys.stdin", io.StringIO(walk.api_key + "\n")),
        redirect_stdout(out),
        redirect_stderr(err),
    ):
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "KIE_UPLOADER_STACK"):  # as the cli_env fixture
            os.environ.pop(name, None)
        code = main(list(argv))
    return Run(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def walked(walk: SimpleNamespace) -> dict[int, dict[tuple[str, ...], Run]]:
    """Every command's help (the top level's and ``dlq``'s too) and its representative run, at each width:
    ``{columns: {("list",): Run, ("list", "--help"): Run, ...}}``. The dead-letter message is parked again
    after ``redrive`` moved it."""
    argvs = runs(walk)
    assert set(argvs) == set(COMMANDS), "a command without a representative run"
    walked: dict[int, dict[tuple[str, ...], Run]] = {}
    for columns in COLUMNS:
        done = walked[columns] = {}
        for words in [(), ("dlq",), *COMMANDS]:
            done[(*words, "--help")] = run(walk, *words, "--help", columns=columns)
        for words, argv in argvs.items():  # dlq peek before redrive
            done[words] = run(walk, *argv, columns=columns)
        walk.park()
    return walked


def check(run: Run, columns: int, what: str, *, answer_alone: bool = False) -> None:
    """No line wider than the terminal, no identifier cut shorter than 12 characters, no traceback.
    ``answer_alone``: the output is one identifier alone on its line, whole (``url``'s answer: a URL cut
    would break ``$(kie-uploader url ...)``; the issue: "or put on their own line")."""
    assert run.code in (EXIT_OK, EXIT_NO), (what, run.code, run.err)
    for stream in (run.out, run.err):
        lines = stream.splitlines()
        if answer_alone and stream is run.out:
            assert len(lines) == 1 and re.fullmatch(r"https?://\S+", lines[0]), (what, lines)
            continue
        too_wide = [line for line in lines if cell_len(line) > columns]
        assert not too_wide, (what, columns, too_wide)
        cut = [token for token in re.findall(r"\S*…\S*", stream) if len(token) - 1 < MIN_IDENTIFIER]
        assert not cut, (what, columns, cut)
    assert "Traceback" not in run.err and "internal error" not in run.err, (what, run.err)


def joined(text: str) -> str:
    """The words of a fitted output, its wrapping undone."""
    return " ".join(text.split())


@pytest.mark.parametrize("columns", COLUMNS)
def test_every_command_fits_the_terminal(
    walked: dict[int, dict[tuple[str, ...], Run]], walk: SimpleNamespace, columns: int
) -> None:
    for words, done in walked[columns].items():
        check(done, columns, " ".join(words), answer_alone=words == ("url",))
    # Nothing lost to the width: what was said is all there with --wide (and once the wrapping is undone).
    assert walk.uri in run(walk, "status", walk.uri, "--wide", columns=columns).out
    assert walked[columns][("list",)].out.rstrip().endswith("2 records")


@pytest.mark.parametrize("columns", COLUMNS)
def test_info_wraps_its_sentences(
    walked: dict[int, dict[tuple[str, ...], Run]], walk: SimpleNamespace, columns: int
) -> None:
    # Reproduction 1: `queue: visibility timeout 720 s (a faile…dead-letter queue keeps messages 14d 0h`,
    # `dashboard: KieUploader-KieUploaderMonito…ENDPOINT_URL is …`.
    words = joined(walked[columns][("info",)].out)
    info = json.loads(run(walk, "info", "--json").out)
    queue = info["queue"]
    assert (
        f"queue: visibility timeout {queue['visibilityTimeoutSeconds']} s (a failed delivery comes back "
        f"after it), into the dead-letter queue after {queue['maxReceiveCount']} receives; the dead-letter "
        f"queue keeps messages {format_duration(queue['deadLetterRetentionSeconds'])}"
    ) in words
    [dashboard] = info["dashboards"]
    assert f"dashboard: {dashboard['name']} (no console link: AWS_ENDPOINT_URL is http://" in words


@pytest.mark.parametrize("columns", COLUMNS)
def test_dlq_peek_shows_the_objects_key(
    walked: dict[int, dict[tuple[str, ...], Run]], walk: SimpleNamespace, columns: int
) -> None:
    # Reproduction 2: `s3://kieuploader-sourcessourceffea7c30… bytes, over MAX_OBJECT_BYTES` (the key
    # gone); at 120 columns still `incom…t]`.
    [line] = [line for line in walked[columns][("dlq", "peek")].out.splitlines() if line.startswith("  s3://")]
    uri = line.strip()  # on a line of its own, cut in the middle only as far as the terminal needs
    start, _, end = uri.partition("…")
    assert walk.uri.startswith(start) and walk.uri.endswith(end) and cell_len(uri) >= columns - 4, line
    # Both ends: the URI's start and the key's end (its file name's), never the bucket alone.
    assert start.startswith("s3://kieuploader") and end.endswith(".jpg") and cell_len(end) >= 30, uri


@pytest.mark.parametrize("columns", COLUMNS)
def test_list_wraps_the_error_that_explains_a_failure(
    walked: dict[int, dict[tuple[str, ...], Run]], columns: int
) -> None:
    # Reproduction 4: `list` at 80 columns cut the error to `[configuration, retryable] kie.ai…`: the 401
    # that explains it needed --wide.
    assert f"[configuration, retryable] {ERROR_401}" in joined(walked[columns][("list",)].out)


def flat(value: object, path: str = "") -> list[tuple[str, object]]:
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in flat(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list) and value:
        return [leaf for i, v in enumerate(value) for leaf in flat(v, f"{path}.{i}")]
    return [(path, value)]


def tsv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    header, *lines = (line.split("\t") for line in text.splitlines())
    return header, [dict(zip(header, line, strict=True)) for line in lines]


def test_tsv_is_one_format(walked: dict[int, dict[tuple[str, ...], Run]], walk: SimpleNamespace) -> None:
    # Reproduction 5: `stats` and `info` put JSON blobs in cells, `doctor` printed its table, `status`
    # gave expiresAt as epoch seconds where `list` gave ISO 8601.
    for argv in (("info",), ("stats", "--prefix", f"s3://{walk.bucket}/{walk.prefix}")):
        header, rows = tsv(run(walk, *argv, "--output", "tsv").out)
        assert header == ["name", "value"], argv
        # A row per plain value of the JSON answer, named by its path: no part of it as JSON in a cell.
        leaves = {name: value for name, value in flat(json.loads(run(walk, *argv, "--json").out))}
        assert {r["name"] for r in rows} == set(leaves), argv
    doctor = ("doctor", "--settings-file", str(walk.settings), "-c", "suffix=(1).jpg", "--output", "tsv")
    header, rows = tsv(run(walk, *doctor).out)  # "(" may be written encoded in events: a warning, a row
    assert header == ["severity", "subject", "what", "todo"] and [r["subject"] for r in rows] == ["suffix"]
    [listed] = tsv(run(walk, "list", f"s3://{walk.bucket}/{walk.prefix}photos/", "--output", "tsv").out)[1]
    [status] = tsv(run(walk, "status", walk.uri, "--output", "tsv").out)[1]
    assert status == listed and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", status["expiresAt"])
    [peeked] = json.loads(run(walk, "dlq", "peek", "--json").out)  # walked parked it again
    assert isinstance(peeked["ageSeconds"], int)  # durations rounded, numbers as numbers
