"""The stream transfer (issue 19), against ministack and the kie.ai emulator: the function streams the object
from S3's GetObject to kie.ai's ``POST /api/file-stream-upload`` when kie.ai cannot fetch the presigned URL
(``TRANSFER=auto``), or always (``TRANSFER=stream``).

Every test ends on what the record says and what its ``downloadUrl`` serves: exactly the object's bytes.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import pytest

from kie_uploader import local
from tests import factories as f
from tests.factories import BUCKET, VERSIONED, World, failures
from tests.faultproxy import FaultProxy, Rule, before, delay, fail

#: Objects over this go by stream under ``auto`` (the tests' URL limit; kie.ai's is 100 MB).
URL_LIMIT = 4096


@pytest.fixture
def streaming(world: World) -> World:
    """The world without ``MAX_OBJECT_BYTES`` (auto's default: what 15 minutes allow), a small URL limit."""
    world.env(MAX_OBJECT_BYTES=None, URL_TRANSFER_MAX_BYTES=str(URL_LIMIT))
    return world


def served(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


def deliver(world: World, key: str, body: bytes, bucket: str = BUCKET, **invoke: Any) -> dict[str, Any]:
    """Put the object, deliver its S3 event through SQS; the SQS answer."""
    event, _ = world.sqs(f.s3_notification(world.created(key, body, bucket)))
    answer: dict[str, Any] = world.invoke(event, **invoke)
    return answer


def uploaded_by(world: World, key: str, body: bytes, transfer: str, bucket: str = BUCKET) -> dict[str, Any]:
    """The record, checked: UPLOADED by ``transfer``, its URL serving exactly ``body``."""
    record = world.existing_record(key, bucket)
    assert record["status"] == "UPLOADED", record
    assert record["transfer"] == transfer
    assert int(record["size"]) == len(body) and int(record["fileSize"]) == len(body)
    assert hashlib.sha256(served(record["downloadUrl"])).digest() == hashlib.sha256(body).digest()
    return record


def transfers(world: World) -> list[tuple[str, int]]:
    """(transfer, status) of every call kie.ai received, in order."""
    return [(call.transfer, call.status) for call in world.kie.calls]


def s3_host(ministack: local.Server) -> str:
    """``host:port`` of the S3 endpoint a presigned URL names (ministack's)."""
    return urlsplit(ministack.endpoint_url).netloc


# --- auto: when the stream serves ------------------------------------------------------------------------


def test_an_object_over_the_url_limit_goes_by_stream_without_a_url_upload(streaming: World) -> None:
    body = os.urandom(URL_LIMIT + 1)

    assert deliver(streaming, "big/video.mp4", body) == {"batchItemFailures": []}

    record = uploaded_by(streaming, "big/video.mp4", body, "stream")
    assert record["fileName"] == "video.mp4" and record["uploadPath"].startswith(f"s3-uploads/{BUCKET}/")
    assert transfers(streaming) == [("stream", 200)]
    assert streaming.kie.calls[0].body == {
        "uploadPath": record["uploadPath"],
        "fileName": "video.mp4",
        "file": {"filename": "video.mp4", "contentType": "application/octet-stream", "size": len(body)},
    }


def test_an_object_at_the_url_limit_still_goes_by_url(streaming: World) -> None:
    body = os.urandom(URL_LIMIT)

    deliver(streaming, "small.bin", body)

    uploaded_by(streaming, "small.bin", body, "url")
    assert transfers(streaming) == [("url", 200)]


def test_a_bucket_kie_cannot_fetch_from_falls_back_to_the_stream(
    streaming: World, ministack: local.Server
) -> None:
    # Given kie.ai cannot reach the bucket (a bucket policy allowing only a VPC endpoint, say)
    streaming.kie.refuse_hosts(s3_host(ministack))
    body = b"enterprise bytes"

    # When a small object arrives
    assert deliver(streaming, "doc.pdf", body) == {"batchItemFailures": []}

    # Then kie.ai's answer that it could not fetch the URL is followed at once by a stream upload
    uploaded_by(streaming, "doc.pdf", body, "stream")
    assert transfers(streaming) == [("url", 500), ("stream", 200)]
    assert streaming.existing_record("doc.pdf")["attempts"] == "2"


def test_a_kie_fetch_timeout_falls_back_to_the_stream(
    streaming: World, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given kie.ai's download of the presigned URL takes longer than kie.ai waits (its 30 s, here 0.5 s)
    monkeypatch.setattr(streaming.kie, "download_timeout", 0.5)
    fault_proxy.add(Rule("s3", "GetObject", delay(1.5), when=lambda r: r.presigned, times=None))
    body = b"slow origin"

    deliver(streaming, "slow.txt", body)

    uploaded_by(streaming, "slow.txt", body, "stream")
    assert transfers(streaming) == [("url", 500), ("stream", 200)]
    assert "timed out" not in streaming.existing_record("slow.txt").get("error", "")


def test_buckets_recorded_as_unreachable_go_by_stream_from_the_start(streaming: World) -> None:
    streaming.env(KIE_CANNOT_FETCH=BUCKET)
    body = b"never fetched by URL"

    deliver(streaming, "direct.txt", body)
    deliver(streaming, "pinned.txt", body, bucket=VERSIONED)

    uploaded_by(streaming, "direct.txt", body, "stream")
    uploaded_by(streaming, "pinned.txt", body, "url", bucket=VERSIONED)
    assert sorted(transfers(streaming)) == [("stream", 200), ("url", 200)]


def test_transfer_url_keeps_failing_when_kie_cannot_fetch(streaming: World, ministack: local.Server) -> None:
    # TRANSFER=url: no stream, the URL upload's behaviour is unchanged (a 500 is retried, then FAILED)
    streaming.env(TRANSFER="url")
    streaming.kie.refuse_hosts(s3_host(ministack))

    answer = deliver(streaming, "refused.txt", b"x")

    assert failures(answer) == ["m0"]
    record = streaming.existing_record("refused.txt")
    assert record["status"] == "FAILED" and record["retryable"] is True
    assert "Failed to download file" in record["error"] and "transfer" not in record
    assert transfers(streaming) == [("url", 500)] * 3


def test_transfer_stream_streams_every_object_of_a_versioned_bucket_by_its_version(
    streaming: World, fault_proxy: FaultProxy
) -> None:
    streaming.env(TRANSFER="stream")
    first = streaming.put("v.txt", b"first", VERSIONED)
    streaming.put("v.txt", b"second", VERSIONED)
    # The event of the first version: HeadObject reads the current (second) version, GetObject pins it.
    event, _ = streaming.sqs(
        f.s3_notification(f.s3_record(VERSIONED, "v.txt", sequencer=streaming.next_sequencer(), **first))
    )

    streaming.invoke(event)

    record = uploaded_by(streaming, "v.txt", b"second", "stream", bucket=VERSIONED)
    gets = [r for r in fault_proxy.requests if r.operation == "GetObject"]
    assert len(gets) == 1 and f"versionId={record['versionId']}" in gets[0].target
    assert fault_proxy.count("s3", "HeadObject") == 1  # the GetObject's own reading confirms: no second read


# --- the stream's own rules -------------------------------------------------------------------------------


def test_a_stream_cut_mid_body_is_retried_under_a_new_upload_path_and_leaves_no_partial_file(
    streaming: World,
) -> None:
    # Given kie.ai's connection goes away after half of the first stream's body
    streaming.kie.script("cut")
    body = os.urandom(256 * 1024)

    assert deliver(streaming, "cut.bin", body) == {"batchItemFailures": []}

    # Then the retry starts over under a new uploadPath; only its file exists, and it is the one recorded
    record = uploaded_by(streaming, "cut.bin", body, "stream")
    cut, done = streaming.kie.calls
    assert (cut.status, cut.fault, done.status) == (0, "cut", 200)
    assert cut.body is not None and cut.body["uploadPath"] != record["uploadPath"]
    assert streaming.kie.stored_paths == [record["filePath"]]
    assert record["attempts"] == "2"


def test_an_overwrite_between_head_and_get_uploads_the_new_bytes_only(
    streaming: World, fault_proxy: FaultProxy
) -> None:
    # Given the unversioned object is overwritten after the function's HeadObject, before its GetObject
    old, new = os.urandom(URL_LIMIT + 10), os.urandom(URL_LIMIT + 20)
    overwrite = before(lambda _: streaming.put("race.bin", new))
    fault_proxy.add(Rule("s3", "GetObject", overwrite, when=lambda r: not r.presigned))

    deliver(streaming, "race.bin", old)

    # Then GetObject's reading differs from the HeadObject's: nothing of the old object was sent
    uploaded_by(streaming, "race.bin", new, "stream")
    assert transfers(streaming) == [("stream", 200)]


def test_an_overwrite_during_a_stream_converges_on_the_new_object_with_its_event(streaming: World) -> None:
    # Given an object overwritten while the function streams it (kie.ai has started receiving it)
    old, new = os.urandom(URL_LIMIT + 10), os.urandom(URL_LIMIT + 20)
    overwrite: list[dict[str, Any]] = []
    streaming.kie.on_stream(lambda _: overwrite.append(streaming.created("during.bin", new)))

    deliver(streaming, "during.bin", old)

    # Then the record names the bytes that were streamed (the old object's, its ETag)
    record = uploaded_by(streaming, "during.bin", old, "stream")
    assert record["etag"] == hashlib.md5(old).hexdigest()  # noqa: S324 (S3's ETag)
    # and the overwrite's own event makes it describe the new object
    event, _ = streaming.sqs(f.s3_notification(*overwrite))
    streaming.invoke(event)
    record = uploaded_by(streaming, "during.bin", new, "stream")
    assert record["etag"] == hashlib.md5(new).hexdigest()  # noqa: S324


def test_an_object_that_cannot_stream_within_lambdas_15_minutes_fails_for_good(streaming: World) -> None:
    # Given the slowest planned rate (64 KiB/s): 15 minutes carry about 57 MB
    streaming.env(STREAM_BYTES_PER_SECOND="65536")
    body = b"\0" * 58_000_000

    answer = deliver(streaming, "huge.bin", body)

    assert failures(answer) == []
    record = streaming.existing_record("huge.bin")
    assert record["status"] == "FAILED" and record["retryable"] is False
    assert "Lambda's 15-minute limit" in record["error"] and "STREAM_BYTES_PER_SECOND" in record["error"]
    assert streaming.kie.calls == []


def test_a_stream_that_does_not_fit_in_the_time_left_is_tried_again_later(streaming: World) -> None:
    # 1 MiB at 64 KiB/s needs 16 s (+ kie.ai's 5 s): more than an invocation with 15 s left has
    streaming.env(STREAM_BYTES_PER_SECOND="65536")

    answer = deliver(streaming, "later.bin", os.urandom(1024 * 1024), remaining_ms=15_000)

    assert failures(answer) == ["m0"]
    record = streaming.existing_record("later.bin")
    assert record["status"] == "FAILED" and record["retryable"] is True
    assert "s left" in record["error"] and streaming.kie.calls == []


def test_a_url_upload_after_a_stream_is_recorded_as_url(streaming: World) -> None:
    deliver(streaming, "grows.bin", os.urandom(URL_LIMIT + 1))
    small = b"now small"

    deliver(streaming, "grows.bin", small)

    uploaded_by(streaming, "grows.bin", small, "url")


def test_a_get_object_that_keeps_failing_is_retried_later_and_then_streamed(
    streaming: World, fault_proxy: FaultProxy
) -> None:
    # Given S3 answers the function's GetObject 500, more often than botocore retries it (one kie.ai attempt)
    streaming.env(KIE_MAX_ATTEMPTS="1")
    body = os.urandom(URL_LIMIT + 1)
    slow = Rule("s3", "GetObject", fail(500, "InternalError"), when=lambda r: not r.presigned, times=None)
    fault_proxy.add(slow)

    answer = deliver(streaming, "slowdown.bin", body)

    # Then nothing reached kie.ai, the record says why, and the message comes back
    assert failures(answer) == ["m0"] and streaming.kie.calls == []
    record = streaming.existing_record("slowdown.bin")
    assert record["status"] == "FAILED" and record["retryable"] is True and "GetObject" in record["error"]
    # and once S3 recovers, its redelivery streams the object
    slow.times = slow.hits
    event, _ = streaming.sqs(f.plain_message(BUCKET, "slowdown.bin"))
    assert streaming.invoke(event) == {"batchItemFailures": []}
    uploaded_by(streaming, "slowdown.bin", body, "stream")
