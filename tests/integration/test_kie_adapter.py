"""The kie.ai adapter (``uploader.kie.KieClient``) against the real emulator over loopback: what a wrong base
URL, a slow or huge answer and an echoing answer do to one call (issue 8, items 6, 7, 8 and 13).

A tiny origin stands in for S3: it serves a few bytes at any path, so the emulator's uploads are real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kie_uploader.emulator import KieEmulator
from tests.conftest import KIE_TEST_KEY
from uploader.errors import ConfigurationError, PermanentError, TransientError, UploaderError
from uploader.kie import MAX_ANSWER_BYTES, KieClient, KieUpload

CONTENT = b"object bytes for kie.ai"
SIGNATURE = "5e" * 32
CREDENTIAL = "ASIAORIGINKEY0001/20250101/us-east-1/s3/aws4_request"
QUERY = (
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAORIGINKEY0001%2F20250101%2Fus-east-1%2Fs3%2F"
    "aws4_request&X-Amz-Date=20250101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host"
    f"&X-Amz-Signature={SIGNATURE}"
)
#: The deadline of one call in the timing tests, and what the issue allows on top of it.
TIMEOUT = 2.0
MARGIN = 1.5


class _OriginHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(CONTENT)))
        self.end_headers()
        self.wfile.write(CONTENT)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OriginHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def upload(client: KieClient, origin: str, *, timeout: float = 10.0, name: str = "a.txt") -> KieUpload:
    return client.upload(
        api_key=KIE_TEST_KEY,
        file_url=f"{origin}/bucket/{name}{QUERY}",
        upload_path="s3-uploads/bucket/0123456789abcdef",
        file_name=name,
        timeout=timeout,
    )


def timed_upload(client: KieClient, origin: str, timeout: float) -> tuple[BaseException | KieUpload, float]:
    """The call's outcome and wall time; fails as soon as it runs past ``timeout`` + MARGIN (without
    waiting for a call that might never end)."""
    outcome: list[BaseException | KieUpload] = []

    def call() -> None:
        try:
            outcome.append(upload(client, origin, timeout=timeout))
        except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout + MARGIN)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"one call with timeout={timeout} s still running after {elapsed:.1f} s"
    return outcome[0], elapsed


def streamed_bytes(kie: KieEmulator, wait: float = 5.0) -> int:
    """Bytes the emulator managed to write of its one slow or huge answer, once it stopped writing."""
    until = time.monotonic() + wait
    while not kie.streamed_bytes:
        assert time.monotonic() < until, f"the emulator was still writing its answer {wait} s later"
        time.sleep(0.02)
    (sent,) = kie.streamed_bytes
    return sent


@pytest.fixture
def client(kie: KieEmulator) -> KieClient:
    return KieClient(kie.base_url)


def test_the_client_uploads_through_the_emulator(kie: KieEmulator, client: KieClient, origin: str) -> None:
    result = upload(client, origin)

    assert result.file_path == "s3-uploads/bucket/0123456789abcdef/a.txt"
    assert kie.stored(result.file_path) == CONTENT
    assert result.download_url.startswith(kie.base_url + "/files/")


# -- item 6: a wrong endpoint is a configuration failure ----------------------------------------------------


@pytest.mark.parametrize("wrong_path", ["/v1", "/api", "/api/file-url-upload"])
def test_a_base_url_with_a_wrong_path_is_a_configuration_error(
    kie: KieEmulator, origin: str, wrong_path: str
) -> None:
    client = KieClient(kie.base_url + wrong_path)

    with pytest.raises(ConfigurationError, match="HTTP 404.*KIE_BASE_URL"):
        upload(client, origin)
    assert kie.calls == []  # the upload endpoint was never reached


def test_a_405_from_the_endpoint_is_a_configuration_error(
    kie: KieEmulator, client: KieClient, origin: str
) -> None:
    kie.script("405")

    with pytest.raises(ConfigurationError, match="HTTP 405") as caught:
        upload(client, origin)
    assert caught.value.retryable


def test_a_base_url_that_answers_an_html_page_is_a_configuration_error(
    kie: KieEmulator, client: KieClient, origin: str
) -> None:
    kie.script("html")

    with pytest.raises(ConfigurationError, match="HTML"):
        upload(client, origin)


def test_other_classification_is_unchanged(kie: KieEmulator, client: KieClient, origin: str) -> None:
    kie.script("400", "500", {"bodyCode": 404}, "malformed")
    expected: list[type[UploaderError]] = [PermanentError, TransientError, PermanentError, TransientError]

    for kind in expected:
        with pytest.raises(UploaderError) as caught:
            upload(client, origin)
        assert type(caught.value) is kind, caught.value


# -- item 7: one call ends within its timeout, whatever the server does ------------------------------------


@pytest.mark.parametrize("fault", ["trickle", "trickle-headers", "timeout"])
def test_one_call_ends_within_its_timeout_whatever_the_server_does(
    kie: KieEmulator, client: KieClient, origin: str, fault: str
) -> None:
    # A byte every 0.2 s: no socket read ever waits TIMEOUT seconds, but the whole answer takes a minute.
    interval = 0.2
    kie.set_faults(trickle_interval_seconds=interval, timeout_seconds=60.0)
    kie.script(fault)

    outcome, elapsed = timed_upload(client, origin, TIMEOUT)

    assert isinstance(outcome, TransientError), outcome
    assert f"within {TIMEOUT:g} s" in str(outcome)
    assert elapsed <= TIMEOUT + MARGIN
    if fault != "timeout":
        # The connection was really closed: the emulator stopped trickling within seconds, not a minute.
        assert streamed_bytes(kie) <= (TIMEOUT + MARGIN) / interval + 2


def test_the_connection_pool_works_after_a_call_was_cut(
    kie: KieEmulator, client: KieClient, origin: str
) -> None:
    kie.set_faults(trickle_interval_seconds=0.2)
    kie.script("trickle")
    outcome, _ = timed_upload(client, origin, 1.0)
    assert isinstance(outcome, TransientError)

    result = upload(client, origin, name="after.txt")

    assert kie.stored(result.file_path or "") == CONTENT


# -- item 8: the answer is read up to a limit -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [(200, TransientError), (500, TransientError), (400, PermanentError), (404, ConfigurationError)],
)
def test_a_huge_answer_is_not_read_beyond_the_limit_and_is_classified_by_status(
    kie: KieEmulator, client: KieClient, origin: str, status: int, kind: type[UploaderError]
) -> None:
    size = 256 * 1024 * 1024 if status == 200 else 64 * 1024 * 1024
    kie.set_faults(huge_bytes=size, huge_status=status)
    kie.script("huge")

    with pytest.raises(UploaderError) as caught:
        upload(client, origin)

    assert type(caught.value) is kind, caught.value
    assert f"HTTP {status}: answer over {MAX_ANSWER_BYTES} bytes" in str(caught.value)
    # What the server managed to write: the limit read by the adapter plus what the kernel's socket buffers
    # held when it closed the connection (a few MiB on loopback), never the whole answer.
    sent = streamed_bytes(kie)
    assert MAX_ANSWER_BYTES < sent < 32 * 1024 * 1024 < size


# -- item 13: an echoed secret never reaches the error -------------------------------------------------------


def test_an_answer_echoing_the_signature_outside_the_url_is_redacted(
    kie: KieEmulator, client: KieClient, origin: str
) -> None:
    kie.script("echo")

    with pytest.raises(PermanentError) as caught:
        upload(client, origin)

    text = str(caught.value)
    assert "HTTP 400" in text and "the origin refused" in text
    assert SIGNATURE not in text and CREDENTIAL not in text and "ASIAORIGINKEY0001" not in text
    assert KIE_TEST_KEY not in text
