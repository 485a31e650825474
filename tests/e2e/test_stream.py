"""The deployed stack streams an object over kie.ai's URL limit (issue 19).

A 300 MB object put into the bucket goes S3 → the queue → the function (ministack runs it as a process of
its own) → GetObject → kie.ai's stream upload, with the stack's defaults (``transfer=auto``: objects over
100 MiB go by stream; the function's timeout sized for a stream). ``E2E_STREAM_MB`` changes the size.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.request
import uuid

import pytest

from tests.e2e.conftest import DeployedStack

pytestmark = pytest.mark.slow

SIZE = int(os.environ.get("E2E_STREAM_MB", "300")) * 1024 * 1024
_BLOCK = 1024 * 1024


def body_blocks(seed: bytes) -> list[bytes]:
    """The object's bytes as 1 MiB blocks that all differ (a shifted or repeated block would be noticed)."""
    count = SIZE // _BLOCK
    return [hashlib.sha256(seed + i.to_bytes(4, "big")).digest() * (_BLOCK // 32) for i in range(count)]


def sha256_of_url(url: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with urllib.request.urlopen(url, timeout=120) as response:
        while chunk := response.read(_BLOCK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def test_an_object_over_the_url_limit_is_streamed_and_its_url_serves_exactly_its_bytes(
    deployed_stack: DeployedStack,
) -> None:
    # Given an object of 300 MB, three times kie.ai's recommended maximum for its URL upload
    bucket, key = deployed_stack.bucket_name, f"stream/{uuid.uuid4().hex[:8]}/video.mp4"
    blocks = body_blocks(uuid.uuid4().bytes)
    expected = hashlib.sha256(b"".join(blocks)).hexdigest()
    started = time.monotonic()
    put = deployed_stack.client("s3").put_object(Bucket=bucket, Key=key, Body=b"".join(blocks))
    del blocks

    # When its event reaches the deployed function
    record = deployed_stack.wait_for_record(
        bucket, key, lambda r: r.get("status") in ("UPLOADED", "FAILED"), timeout=300
    )
    took = time.monotonic() - started

    # Then it went by stream, in one call, and the record's URL serves exactly the object's bytes
    assert record["status"] == "UPLOADED", record.get("error")
    assert record["transfer"] == "stream" and int(record["attempts"]) == 1
    assert record["etag"] == put["ETag"].strip('"') and int(record["size"]) == int(record["fileSize"]) == SIZE
    calls = [c for c in deployed_stack.emulator.calls if c.file_path == record["filePath"]]
    assert [(c.transfer, c.status) for c in calls] == [("stream", 200)]
    assert sha256_of_url(str(record["downloadUrl"])) == (expected, SIZE)
    print(f"{SIZE >> 20} MiB streamed through the deployed stack in {took:.1f} s (put to UPLOADED)")
