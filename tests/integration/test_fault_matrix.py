"""The fault matrix: each trigger (SQS, direct S3) x each fault -> the expected outcome.

One table, :data:`MATRIX`, drives both the tests and the table of ``docs/reliability.md``
(:func:`test_the_reliability_doc_shows_this_matrix` fails when they differ; regenerate the doc's table with
``PYTHONPATH=functions .venv/bin/python -m tests.integration.test_fault_matrix``).

Every case runs the handler in-process against ministack (S3, DynamoDB, Secrets Manager) and the kie.ai
emulator. A case whose message is delivered again is then delivered again with the fault gone, and must
end ``UPLOADED``: nothing is lost. Every case also checks that no log line and no record holds the API key
or a presigned URL's signature (the whole-run leak check of ``tests/leakcheck.py`` sees these logs too).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kie_uploader import local
from tests import factories as f
from tests.conftest import KIE_TEST_KEY
from tests.factories import BUCKET, SECRET, TABLE, World, failures
from uploader import handler as handler_module

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
DOC_START, DOC_END = "<!-- fault-matrix:start -->", "<!-- fault-matrix:end -->"
TRIGGERS = ("sqs", "s3")


@dataclass(frozen=True)
class Expectation:
    """What one fault does to one object, whatever the trigger."""

    fault: str
    title: str
    provoked_by: str
    #: Upload calls the emulator answers during the first delivery.
    kie_calls: int
    #: The handler's outcome for the object: a record status, or SUPERSEDED (the newer record stays).
    status: str
    error_kind: str | None
    #: Whether the message is delivered again (SQS: batchItemFailures; direct S3: the handler raises).
    redelivered: bool
    #: kie.ai calls counted on the record by the first delivery (refused connections count too).
    attempts: int = 0


MATRIX: tuple[Expectation, ...] = (
    Expectation("kie-500", "kie.ai HTTP 500", "emulator script `500`, `ok`", 2, "UPLOADED", None, False, 2),
    Expectation(
        "kie-429",
        "kie.ai HTTP 429 with `Retry-After: 1`",
        "emulator script `429`, `ok`; the retry waits at least the Retry-After",
        2,
        "UPLOADED",
        None,
        False,
        2,
    ),
    Expectation("kie-455", "kie.ai HTTP 455 (maintenance)", "emulator script `455`, `ok`", 2, "UPLOADED",
                None, False, 2),
    Expectation(
        "kie-body-error",
        "kie.ai HTTP 200 with `code: 500` in the body",
        "emulator script `{bodyCode: 500}`, `ok`",
        2,
        "UPLOADED",
        None,
        False,
        2,
    ),
    Expectation(
        "kie-timeout",
        "kie.ai does not answer in time",
        "`KIE_TIMEOUT_SECONDS=1`, emulator stalls 2 s (script `timeout`, `ok`)",
        2,
        "UPLOADED",
        None,
        False,
        2,
    ),
    Expectation(
        "kie-refused",
        "kie.ai connection refused",
        "`KIE_BASE_URL` points at a closed port, `KIE_MAX_ATTEMPTS=2`",
        0,
        "FAILED",
        "transient",
        True,
        2,
    ),
    Expectation(
        "kie-malformed",
        "kie.ai answers malformed JSON",
        "emulator script `malformed` (a truncated body), `ok`",
        2,
        "UPLOADED",
        None,
        False,
        2,
    ),
    Expectation("kie-400", "kie.ai HTTP 400", "emulator script `400`", 1, "FAILED", "permanent", False, 1),
    Expectation(
        "kie-401",
        "kie.ai HTTP 401 (wrong key)",
        "emulator script `401`",
        1,
        "FAILED",
        "configuration",
        True,
        1,
    ),
    Expectation(
        "kie-402",
        "kie.ai HTTP 402 (no credits)",
        "emulator script `402`",
        1,
        "FAILED",
        "configuration",
        True,
        1,
    ),
    Expectation(
        "ddb-conflict",
        "DynamoDB conditional check fails (concurrent writer)",
        "while the kie.ai call is in flight, another writer records a newer sequencer",
        1,
        "SUPERSEDED",
        None,
        False,
        1,
    ),
    Expectation(
        "secret-missing",
        "Secrets Manager secret missing",
        "`KIE_API_KEY_SECRET_ID` names no secret",
        0,
        "FAILED",
        "configuration",
        True,
        0,
    ),
    Expectation(
        "object-deleted",
        "object deleted before processing",
        "the object is deleted after its event was sent",
        0,
        "DELETED",
        None,
        False,
        0,
    ),
    Expectation(
        "object-too-large",
        "object over `MAX_OBJECT_BYTES`",
        "a 1,001-byte object with `MAX_OBJECT_BYTES=1000`",
        0,
        "FAILED",
        "permanent",
        False,
        0,
    ),
)

_SIGNATURE = re.compile(r"X-Amz-Signature=|X-Amz-Credential=|X-Amz-Security-Token=")


# --- provoking each fault -------------------------------------------------------------------------------


@dataclass
class Provoked:
    """The object's event record and what to do around the first delivery."""

    key: str
    record: dict[str, Any]
    #: Runs in a thread during the first delivery (the concurrent writer).
    during: Callable[[], None] | None = None
    #: Removes the fault before the second delivery of a redelivered message.
    recover: Callable[[], None] | None = None


def provoke(w: World, fault: str) -> Provoked:  # noqa: C901 (one branch per fault, read as a table)
    key = f"matrix/{fault}.txt"
    body = b"x" * 1001 if fault == "object-too-large" else f"bytes of {fault}".encode()
    record = w.created(key, body)
    provoked = Provoked(key, record)
    kie = w.kie
    if fault == "kie-500":
        kie.script("500", "ok")
    elif fault == "kie-429":
        kie.set_faults(retry_after_seconds=1)
        kie.script("429", "ok")
    elif fault == "kie-455":
        kie.script("455", "ok")
    elif fault == "kie-body-error":
        kie.script({"bodyCode": 500}, "ok")
    elif fault == "kie-timeout":
        w.env(KIE_TIMEOUT_SECONDS="1")
        kie.set_faults(timeout_seconds=2)
        kie.script("timeout", "ok")
    elif fault == "kie-refused":
        w.env(KIE_BASE_URL=f"http://127.0.0.1:{local.free_port()}", KIE_MAX_ATTEMPTS="2")
        provoked.recover = lambda: w.env(KIE_BASE_URL=kie.base_url)
    elif fault == "kie-malformed":
        kie.script("malformed", "ok")
    elif fault == "kie-400":
        kie.script("400")
    elif fault in ("kie-401", "kie-402"):
        kie.script(fault.removeprefix("kie-"))  # consumed by the first call: the "fixed key" afterwards
    elif fault == "ddb-conflict":
        kie.set_faults(latency_seconds=2.5)
        handler_module._get_processor()  # a warm container: the call starts well before the writer
        provoked.during = lambda: _newer_writer(w, key, delay=1.0)
    elif fault == "secret-missing":
        w.env(KIE_API_KEY_SECRET_ID="kie/does-not-exist")
        provoked.recover = lambda: w.env(KIE_API_KEY_SECRET_ID=SECRET)
    elif fault == "object-deleted":
        w.s3.delete_object(Bucket=BUCKET, Key=key)
    elif fault != "object-too-large":
        raise AssertionError(f"no way to provoke {fault}")
    return provoked


NEWER_SEQUENCER = "00FFFFFFFFFFFFFFFF"


def _newer_writer(w: World, key: str, *, delay: float) -> None:
    """Another invocation that handled a newer event of the same object records it first."""
    time.sleep(delay)
    w.ddb.put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": f"s3://{BUCKET}/{key}"},
            "bucket": {"S": BUCKET},
            "key": {"S": key},
            "status": {"S": "UPLOADED"},
            "sequencer": {"S": NEWER_SEQUENCER},
            "versionId": {"S": "null"},
            "etag": {"S": "newer-etag"},
            "updatedAt": {"S": "2099-01-01T00:00:00.000Z"},
            "downloadUrl": {"S": "https://example.invalid/newer"},
            "expiresAt": {"N": str(int(time.time()) + 3600)},
            "attempts": {"N": "1"},
        },
    )


# --- delivering -----------------------------------------------------------------------------------------


def deliver(w: World, trigger: str, record: dict[str, Any]) -> bool:
    """One delivery through the trigger; whether the message is to be delivered again."""
    if trigger == "sqs":
        event, ids = w.sqs(f.s3_notification(record))
        retry = failures(w.invoke(event))
        assert retry in ([], ids)
        return retry == ids
    try:
        assert w.invoke(f.s3_notification(record)) is None
    except handler_module.RetryNeededError:
        return True
    return False


def outcome_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = handler_module.logger.registered_formatter
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "kie-uploader"]
    return [line for line in lines if line["message"] == "object processed"]


def wait_for_calls(w: World, count: int, timeout: float = 10.0) -> None:
    """The emulator records a stalled call only when it finishes: wait for it (and keep tests apart)."""
    deadline = time.monotonic() + timeout
    while len(w.kie.calls) < count and time.monotonic() < deadline:
        time.sleep(0.05)


# --- the matrix -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("trigger", TRIGGERS)
@pytest.mark.parametrize("expected", MATRIX, ids=[e.fault for e in MATRIX])
def test_fault_outcome(
    world: World,
    caplog: pytest.LogCaptureFixture,
    trigger: str,
    expected: Expectation,
) -> None:
    provoked = provoke(world, expected.fault)
    writer = threading.Thread(target=provoked.during) if provoked.during else None
    if writer:
        writer.start()

    redelivered = deliver(world, trigger, provoked.record)

    if writer:
        writer.join()
    wait_for_calls(world, expected.kie_calls)
    calls = world.kie.calls
    assert len(calls) == expected.kie_calls
    (line,) = outcome_lines(caplog)
    assert line["status"] == expected.status
    assert redelivered is expected.redelivered
    record = world.record(provoked.key)
    assert record is not None
    if expected.status == "SUPERSEDED":
        assert record["sequencer"] == NEWER_SEQUENCER and record["etag"] == "newer-etag"
    else:
        assert record["status"] == expected.status
        assert int(record["attempts"]) == expected.attempts
        assert record.get("errorKind") == expected.error_kind
        if expected.error_kind:
            assert record["retryable"] is expected.redelivered and record["error"]
    if expected.status == "UPLOADED":
        assert world.kie.stored(record["filePath"]) == f"bytes of {expected.fault}".encode()
    if expected.fault == "kie-429":
        assert calls[1].time - calls[0].time >= 1.0  # Retry-After was honoured
    secrets_free = caplog.text + json.dumps(record)
    assert KIE_TEST_KEY not in secrets_free and not _SIGNATURE.search(secrets_free)

    if expected.redelivered:
        # Nothing lost: with the fault gone (key fixed, kie.ai back), the next delivery uploads it.
        if provoked.recover:
            provoked.recover()
        assert deliver(world, trigger, provoked.record) is False
        again = world.record(provoked.key)
        assert again is not None and again["status"] == "UPLOADED"
        assert "error" not in again and "errorKind" not in again


# --- the doc --------------------------------------------------------------------------------------------


def _outcome(e: Expectation) -> str:
    if e.status == "UPLOADED":
        return "retried in the invocation, then `UPLOADED`"
    if e.status == "SUPERSEDED":
        return "conditional write refused: superseded, the newer record stays"
    if e.status == "SKIPPED":
        return "`SKIPPED` record (not retryable)"
    if e.status == "DELETED":
        return "`DELETED` record (the object is gone), no download link"
    return f"`FAILED` record, `errorKind={e.error_kind}`, `retryable={str(e.redelivered).lower()}`"


def render_matrix() -> str:
    """The markdown table of :data:`MATRIX`, as ``docs/reliability.md`` shows it."""
    rows = [
        "| fault | how the test provokes it | kie.ai calls | outcome | SQS trigger | direct S3 trigger "
        "| afterwards |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in MATRIX:
        sqs = "in `batchItemFailures`" if e.redelivered else "acknowledged"
        direct = "raises `RetryNeededError`" if e.redelivered else "returns"
        after = (
            "redelivered; with the fault gone the next delivery ends `UPLOADED` (tested); "
            "if it persists: the DLQ, then `kie-uploader redrive`"
            if e.redelivered
            else "done"
        )
        rows.append(
            f"| {e.title} | {e.provoked_by} | {e.kie_calls} | {_outcome(e)} | {sqs} | {direct} | {after} |"
        )
    return "\n".join(rows)


def test_the_reliability_doc_shows_this_matrix() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert DOC_START in text and DOC_END in text, f"{DOC} lacks the fault-matrix markers"
    shown = text.split(DOC_START, 1)[1].split(DOC_END, 1)[0].strip()
    assert shown == render_matrix(), (
        "docs/reliability.md's fault matrix differs from MATRIX: "
        "run `PYTHONPATH=functions .venv/bin/python -m tests.integration.test_fault_matrix`"
    )


def write_doc() -> None:
    """Replace the table between the markers of ``docs/reliability.md`` with :func:`render_matrix`."""
    text = DOC.read_text(encoding="utf-8")
    head, rest = text.split(DOC_START, 1)
    _, tail = rest.split(DOC_END, 1)
    DOC.write_text(f"{head}{DOC_START}\n{render_matrix()}\n{DOC_END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    write_doc()
    sys.stdout.write(f"wrote the fault matrix into {DOC}\n")
