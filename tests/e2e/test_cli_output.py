"""``kie-uploader``'s output against the deployed local stack: tables that fit the terminal, streams that
parse line by line, ``--limit``, and a pipe closed by its reader (``| head -1``).

The records are written straight into the stack's table (3,000 of them, under a fresh prefix, with long
keys and URLs), deleted at the end: what is tested is how the CLI reads and prints them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.cells import cell_len

from kie_uploader.cli.errors import EXIT_OK
from tests.e2e.conftest import Run

RECORDS = 3_000
KIE_URL = (
    "http://127.0.0.1:9/files/kieai/market/2025/01/04/{n:05d}-abcdef0123456789abcdef/été photo {n:05d}.jpg"
)


@pytest.fixture(scope="module")
def many(deployed_stack: Any) -> Iterator[SimpleNamespace]:
    """3,000 records under a fresh prefix of the stack's bucket (a tenth of them FAILED, none retryable:
    no other command picks them up); deleted afterwards."""
    dynamodb = deployed_stack.client("dynamodb")
    table = deployed_stack.outputs["TableName"]
    bucket = deployed_stack.bucket_name
    prefix = f"out-{uuid.uuid4().hex[:8]}/"
    now = int(time.time())
    pks = []
    started = time.perf_counter()
    for start in range(0, RECORDS, 25):  # BatchWriteItem's limit
        requests = []
        for n in range(start, min(start + 25, RECORDS)):
            key = f"{prefix}photos/2025/summer holidays/à la plage, jour {n:05d}.jpg"
            pks.append(f"s3://{bucket}/{key}")
            requests.append({"PutRequest": {"Item": _item(bucket, key, n, now)}})
        write_all(dynamodb, table, requests)
    seconds = time.perf_counter() - started
    try:
        yield SimpleNamespace(
            bucket=bucket, prefix=prefix, uri=f"s3://{bucket}/{prefix}", pks=pks, seconds=seconds
        )
    finally:
        for start in range(0, len(pks), 25):
            deletes = [{"DeleteRequest": {"Key": {"pk": {"S": pk}}}} for pk in pks[start : start + 25]]
            write_all(dynamodb, table, deletes)


def _item(bucket: str, key: str, n: int, now: int) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": f"s3://{bucket}/{key}"},
        "bucket": {"S": bucket},
        "key": {"S": key},
        "etag": {"S": f"etag{n}"},
        "size": {"N": str(1000 + n * 37)},
        "updatedAt": {"S": "2025-01-04T12:00:00Z"},
    }
    if n % 10 == 9:
        item.update(
            status={"S": "FAILED"},
            error={"S": f"kie.ai answered 400: file {n} is not an accepted type, see the documentation"},
            errorKind={"S": "permanent"},
            retryable={"BOOL": False},
        )
    else:
        item.update(
            status={"S": "UPLOADED"},
            downloadUrl={"S": KIE_URL.format(n=n)},
            expiresAt={"N": str(now + 2 * 86_400 + n)},
        )
    return item


def write_all(dynamodb: Any, table: str, requests: list[dict[str, Any]]) -> None:
    pending: dict[str, Any] = {table: requests}
    while pending:
        pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


@pytest.mark.parametrize("columns", [80, 120])
def test_list_fits_the_terminal_width(
    cli: Callable[..., Run], many: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    run = cli("list", many.uri, "--limit", "200")
    assert run.code == EXIT_OK, run.err
    lines = run.out.splitlines()
    # A line per record; an error too long for its cell wraps on the lines below its row (never cut).
    rows = [line for line in lines[3:-1] if not line.startswith(" ")]
    assert len(rows) == 200 and lines[-1].startswith("200 records")
    assert lines[0] == f"keys in s3://{many.bucket}/" and lines[1].startswith("KEY ")
    assert max(cell_len(line) for line in lines) <= columns
    assert all(row.startswith(many.prefix[:4]) for row in rows)  # keys relative to the bucket
    assert any("http://127" in row and row.rstrip().endswith(".jpg") for row in rows)  # URL's both ends
    assert any("permanent" in row for row in rows)

    wide = cli("list", many.uri, "--limit", "5", "--status", "UPLOADED", "--wide")
    assert any(KIE_URL.split("{")[0] in line and "été photo" in line for line in wide.out.splitlines())
    assert max(cell_len(line) for line in wide.out.splitlines()) > columns


def test_list_streams_jsonl_and_limit_stops_after_n(cli: Callable[..., Run], many: SimpleNamespace) -> None:
    run = cli("list", many.uri, "--output", "jsonl")
    assert run.code == EXIT_OK, run.err
    records = [json.loads(line) for line in run.out.splitlines()]  # every line is one object
    assert len(records) == RECORDS
    assert sorted(r["pk"] for r in records) == sorted(many.pks)
    assert {r["state"] for r in records} == {"LIVE", "FAILED"}

    limited = cli("list", many.uri, "--output", "jsonl", "--limit", "10")
    assert limited.code == EXIT_OK, limited.err
    lines = limited.out.splitlines()
    assert len(lines) == 10 and all(json.loads(line)["pk"] in set(many.pks) for line in lines)

    array = cli("list", many.uri, "--json", "--limit", "1500")
    assert len(json.loads(array.out)) == 1500
    assert len(array.out.splitlines()) == 1 + 1500 + 1  # "[", one compact item a line, "]"

    tsv = cli("list", many.uri, "--output", "tsv", "--status", "FAILED").out.splitlines()
    assert tsv[0].split("\t")[:3] == ["pk", "status", "state"] and len(tsv) == 1 + RECORDS // 10


@pytest.mark.parametrize("output", ["table", "jsonl"])
def test_a_pipe_closed_by_its_reader_ends_the_listing_quietly(
    cli_env: dict[str, str], many: SimpleNamespace, output: str
) -> None:
    script = Path(sys.executable).parent / "kie-uploader"
    env = {**os.environ, **cli_env, "COLUMNS": "100"}
    # pipefail: the pipeline's status is kie-uploader's when it fails; head exits after one line.
    command = f"set -o pipefail; '{script}' list '{many.uri}' --output {output} | head -1"
    result = subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert len(result.stdout.splitlines()) == 1
    if output == "jsonl":
        assert json.loads(result.stdout)["pk"] in set(many.pks)
    else:
        assert result.stdout == f"keys in s3://{many.bucket}/\n"
