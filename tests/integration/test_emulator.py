"""The kie.ai emulator against real HTTP: a real emulator on an ephemeral port downloading from a tiny origin.

The origin stands in for S3: it serves test bytes, answers 403 for "expired" presigned URLs, stalls on demand
and can hold requests at a barrier to prove the emulator handles uploads concurrently.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from kie_uploader.emulator import Faults, KieEmulator, main

KEY = "test-kie-key-6f1d0c"
SIGNATURE = "X-Amz-Signature=deadbeefcafe0123456789"
QUERY = f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE&{SIGNATURE}"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
PDF = b"%PDF-1.7\n" + b"x" * 1000
UPLOADED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
REPO_ROOT = Path(__file__).resolve().parents[2]


# -- the origin (stands in for S3 presigned URLs) ----------------------------------------------------------


@dataclass
class Origin:
    base_url: str
    barrier: threading.Barrier | None = None
    routes: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)

    def url(self, path: str, *, query: str = QUERY) -> str:
        return f"{self.base_url}{path}{query}"


class _OriginHandler(BaseHTTPRequestHandler):
    server: _OriginServer

    def do_GET(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        origin = self.server.origin
        if path.startswith("/slow/"):
            time.sleep(1.0)
        if path.startswith("/barrier/") and origin.barrier is not None:
            try:
                origin.barrier.wait()
            except threading.BrokenBarrierError:
                self._answer(500, "text/plain", b"not concurrent")
                return
        status, content_type, body = origin.routes.get(path, (404, "text/plain", b"no such object"))
        if path.startswith("/expired/"):
            status, content_type, body = 403, "application/xml", b"<Error><Code>AccessDenied</Code></Error>"
        self._answer(status, content_type, body)

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


class _OriginServer(ThreadingHTTPServer):
    daemon_threads = True
    origin: Origin


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    server = _OriginServer(("127.0.0.1", 0), _OriginHandler)
    server.origin = Origin(f"http://127.0.0.1:{server.server_address[1]}")
    server.origin.routes.update(
        {
            "/bucket/images/photo.png": (200, "image/png", PNG),
            "/bucket/docs/report%20final.pdf": (200, "binary/octet-stream", PDF),
            "/bucket/notes": (200, "text/plain; charset=utf-8", b"plain words"),
            "/bucket/blob.unknownext": (200, "application/octet-stream", b"\x00\x01"),
            "/": (200, "image/png", PNG),
            "/slow/photo.png": (200, "image/png", PNG),
            "/barrier/photo.png": (200, "image/png", PNG),
        }
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.origin
    server.shutdown()
    server.server_close()


# -- the emulator ----------------------------------------------------------------------------------


class FakeClock:
    """Epoch seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1_735_732_800.0  # 2025-01-01T12:00:00Z, the seed's example uploadedAt

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., KieEmulator]]:
    started: list[KieEmulator] = []

    def _make(**kwargs: Any) -> KieEmulator:
        emulator = KieEmulator(api_key=KEY, **kwargs).start()
        started.append(emulator)
        return emulator

    yield _make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(make_emulator: Callable[..., KieEmulator], clock: FakeClock) -> KieEmulator:
    return make_emulator(clock=clock)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False  # loopback only, whatever proxies the environment names
    yield session
    session.close()


def upload(
    http: requests.Session, emulator: KieEmulator, body: Any, *, key: str | None = KEY, timeout: float = 10
) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return http.post(f"{emulator.base_url}/api/file-url-upload", json=body, headers=headers, timeout=timeout)


def photo_body(origin: Origin, **overrides: Any) -> dict[str, Any]:
    url = origin.url("/bucket/images/photo.png")
    return {"fileUrl": url, "uploadPath": "images/user-uploads", **overrides}


# -- success ---------------------------------------------------------------------------------------


def test_given_a_reachable_file_when_uploaded_then_the_answer_is_the_seeds_success_body(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    response = upload(http, emulator, photo_body(origin, fileName="uploaded-image.png"))

    assert response.status_code == 200
    body = response.json()
    assert (body["success"], body["code"], body["msg"]) == (True, 200, "文件上传成功")
    data = body["data"]
    assert set(data) == {"fileName", "filePath", "downloadUrl", "fileSize", "mimeType", "uploadedAt"}
    assert data["fileName"] == "uploaded-image.png"
    assert data["filePath"] == "images/user-uploads/uploaded-image.png"
    assert data["fileSize"] == len(PNG)
    assert data["mimeType"] == "image/png"
    assert data["uploadedAt"] == "2025-01-01T12:00:00.000Z"
    assert UPLOADED_AT.match(data["uploadedAt"])
    assert data["downloadUrl"] == (
        f"{emulator.base_url}/files/{emulator.account}/images/user-uploads/uploaded-image.png"
    )
    assert emulator.upload_count == 1
    assert emulator.stored("images/user-uploads/uploaded-image.png") == PNG


def test_given_a_keep_alive_client_when_the_emulator_stops_then_its_next_call_fails(
    make_emulator: Callable[..., KieEmulator], origin: Origin, http: requests.Session
) -> None:
    emulator = make_emulator()
    assert upload(http, emulator, photo_body(origin)).status_code == 200  # the connection is now pooled
    emulator.stop()
    with pytest.raises(requests.ConnectionError):
        upload(http, emulator, photo_body(origin), timeout=5)


def test_given_an_uploaded_file_when_its_download_url_is_fetched_then_the_bytes_are_identical(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    download_url = upload(http, emulator, photo_body(origin)).json()["data"]["downloadUrl"]

    got = http.get(download_url, timeout=5)
    head = http.head(download_url, timeout=5)

    assert got.status_code == 200
    assert got.content == PNG
    assert got.headers["Content-Type"] == "image/png"
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(PNG))
    assert head.content == b""


def test_given_no_file_name_when_uploaded_then_the_name_is_the_decoded_last_url_segment(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    body = {"fileUrl": origin.url("/bucket/docs/report%20final.pdf"), "uploadPath": "docs"}

    data = upload(http, emulator, body).json()["data"]

    assert data["fileName"] == "report final.pdf"
    assert data["filePath"] == "docs/report final.pdf"
    assert data["downloadUrl"].endswith("/docs/report%20final.pdf")
    assert http.get(data["downloadUrl"], timeout=5).content == PDF


def test_given_a_url_without_a_path_segment_when_uploaded_then_the_name_is_file(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    data = upload(http, emulator, {"fileUrl": origin.url("/"), "uploadPath": "root"}).json()["data"]

    assert data["fileName"] == "file"
    assert data["filePath"] == "root/file"


@pytest.mark.parametrize(
    ("path", "file_name", "expected"),
    [
        ("/bucket/docs/report%20final.pdf", None, "application/pdf"),  # generic type: guessed from the name
        ("/bucket/notes", None, "text/plain"),  # specific type: taken, parameters dropped
        ("/bucket/blob.unknownext", None, "application/octet-stream"),  # nothing better known
        ("/bucket/images/photo.png", "renamed.txt", "image/png"),  # the download's type beats the name
    ],
)
def test_given_a_download_content_type_when_uploaded_then_the_mime_type_follows_the_rules(
    emulator: KieEmulator, origin: Origin, http: requests.Session,
    path: str, file_name: str | None, expected: str,
) -> None:
    body = {"fileUrl": origin.url(path), "uploadPath": "m", **({"fileName": file_name} if file_name else {})}

    assert upload(http, emulator, body).json()["data"]["mimeType"] == expected


def test_given_the_same_path_and_name_when_uploaded_twice_then_the_bytes_are_replaced_under_the_same_url(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    first = upload(http, emulator, photo_body(origin, fileName="same.bin")).json()["data"]
    pdf_url = origin.url("/bucket/docs/report%20final.pdf")
    second_body = photo_body(origin, fileName="same.bin", fileUrl=pdf_url)

    second = upload(http, emulator, second_body).json()["data"]

    assert second["downloadUrl"] == first["downloadUrl"]
    assert http.get(second["downloadUrl"], timeout=5).content == PDF
    assert emulator.stored("images/user-uploads/same.bin") == PDF
    assert emulator.upload_count == 2


def test_given_many_uploads_at_once_when_the_origin_needs_them_all_together_then_all_succeed(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    # The origin holds each download until four are in flight: a serial emulator would break the barrier.
    origin.barrier = threading.Barrier(4, timeout=5)
    url = origin.url("/barrier/photo.png")

    def one_upload(i: int) -> requests.Response:
        with requests.Session() as session:
            session.trust_env = False
            return upload(session, emulator, {"fileUrl": url, "uploadPath": "c", "fileName": f"{i}.png"})

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            responses = list(pool.map(one_upload, range(4)))
    finally:
        origin.barrier = None

    assert [r.status_code for r in responses] == [200] * 4
    assert emulator.upload_count == 4


# -- auth, validation, method ----------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "wrong-key", ""], ids=["missing", "wrong", "empty"])
def test_given_a_missing_or_wrong_key_when_uploading_then_401_and_nothing_is_stored(
    emulator: KieEmulator, origin: Origin, http: requests.Session, key: str | None
) -> None:
    response = upload(http, emulator, photo_body(origin), key=key)

    assert response.status_code == 401
    assert response.json() == {"success": False, "code": 401, "msg": "Authentication failed: Invalid API Key"}
    assert emulator.upload_count == 0


@pytest.mark.parametrize(
    ("body", "msg_part"),
    [
        ("not json at all", "JSON object"),
        (["a", "list"], "JSON object"),
        ({"uploadPath": "x"}, "Missing required parameter: fileUrl"),
        ({"fileUrl": "ftp://example.com/a.png", "uploadPath": "x"}, "http or https"),
        ({"fileUrl": "not a url", "uploadPath": "x"}, "http or https"),
        ({"fileUrl": "https://example.com/a.png"}, "Missing required parameter: uploadPath"),
        ({"fileUrl": "https://example.com/a.png", "uploadPath": ""}, "Missing required parameter"),
        ({"fileUrl": "https://example.com/a.png", "uploadPath": "/images"}, "must not start or end with '/'"),
        ({"fileUrl": "https://example.com/a.png", "uploadPath": "images/"}, "must not start or end with '/'"),
        ({"fileUrl": "https://example.com/a.png", "uploadPath": "a//b"}, "segments"),
        ({"fileUrl": "https://example.com/a.png", "uploadPath": "x", "fileName": "a/b.png"}, "fileName"),
    ],
    ids=["not-json", "json-list", "no-fileUrl", "ftp-url", "no-scheme", "no-uploadPath", "empty-uploadPath",
         "leading-slash", "trailing-slash", "empty-segment", "slash-in-fileName"],
)
def test_given_an_invalid_body_when_uploading_then_400_with_a_readable_msg(
    emulator: KieEmulator, http: requests.Session, body: Any, msg_part: str
) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    data = body if isinstance(body, str) else json.dumps(body)

    response = http.post(f"{emulator.base_url}/api/file-url-upload", data=data, headers=headers, timeout=5)

    assert response.status_code == 400
    assert response.json()["success"] is False
    assert response.json()["code"] == 400
    assert msg_part in response.json()["msg"]
    assert emulator.upload_count == 0


def test_given_a_chunked_body_when_uploading_then_it_is_read_whole_and_the_connection_stays_usable(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    raw = json.dumps(photo_body(origin)).encode()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    url = f"{emulator.base_url}/api/file-url-upload"

    first = http.post(url, data=iter([raw[:10], raw[10:]]), headers=headers, timeout=5)
    second = http.post(url, data=iter([raw]), headers=headers, timeout=5)

    assert (first.status_code, second.status_code) == (200, 200)
    assert emulator.upload_count == 2


def test_given_a_body_over_one_mebibyte_when_uploading_then_413(
    emulator: KieEmulator, http: requests.Session
) -> None:
    response = http.post(f"{emulator.base_url}/api/file-url-upload", data=b"x" * (1024 * 1024 + 1),
                         headers={"Authorization": f"Bearer {KEY}"}, timeout=5)

    assert response.status_code == 413
    assert emulator.calls == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_given_another_method_when_calling_the_upload_endpoint_then_405(
    emulator: KieEmulator, http: requests.Session, method: str
) -> None:
    response = http.request(method, f"{emulator.base_url}/api/file-url-upload", timeout=5)

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.json()["code"] == 405


# -- download failures -----------------------------------------------------------------------------


def test_given_an_expired_presigned_url_when_uploading_then_400_without_echoing_the_signature(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    response = upload(http, emulator, {"fileUrl": origin.url("/expired/photo.png"), "uploadPath": "x"})

    assert response.status_code == 400
    assert response.json()["msg"] == "Failed to download file: HTTP 403"
    assert "X-Amz" not in response.text
    assert emulator.upload_count == 0


def test_given_an_unreachable_source_when_uploading_then_500_failed_to_download(
    emulator: KieEmulator, http: requests.Session
) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    body = {"fileUrl": f"http://127.0.0.1:{closed_port}/a.png{QUERY}", "uploadPath": "x"}

    response = upload(http, emulator, body)

    assert response.status_code == 500
    assert response.json()["msg"].startswith("Failed to download file: ")
    assert "X-Amz" not in response.text


def test_given_a_source_slower_than_the_download_timeout_when_uploading_then_500_timed_out(
    make_emulator: Callable[..., KieEmulator], origin: Origin, http: requests.Session
) -> None:
    emulator = make_emulator(download_timeout=0.3)

    response = upload(http, emulator, {"fileUrl": origin.url("/slow/photo.png"), "uploadPath": "x"})

    assert response.status_code == 500
    assert response.json()["msg"] == "Failed to download file: timed out"


# -- retention -------------------------------------------------------------------------------------


def test_given_a_stored_file_when_the_retention_has_passed_then_its_url_answers_404(
    make_emulator: Callable[..., KieEmulator], clock: FakeClock, origin: Origin, http: requests.Session
) -> None:
    emulator = make_emulator(clock=clock, retention_seconds=60)
    download_url = upload(http, emulator, photo_body(origin)).json()["data"]["downloadUrl"]
    clock.advance(59)
    assert http.get(download_url, timeout=5).status_code == 200

    clock.advance(1)

    assert http.get(download_url, timeout=5).status_code == 404
    assert emulator.stored("images/user-uploads/photo.png") is None


def test_given_an_unknown_file_or_account_when_fetched_then_404(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    download_url = upload(http, emulator, photo_body(origin)).json()["data"]["downloadUrl"]

    assert http.get(f"{emulator.base_url}/files/{emulator.account}/nope/x.png", timeout=5).status_code == 404
    assert http.get(download_url.replace(emulator.account, "someoneelse"), timeout=5).status_code == 404


def test_given_the_default_retention_when_created_then_it_is_the_seeds_three_days() -> None:
    assert KieEmulator(api_key=KEY).retention_seconds == 3 * 24 * 3600


# -- faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "status", "code"),
    [("500", 500, 500), ("429", 429, 429), ("455", 455, 455), ("400", 400, 400), ("401", 401, 401),
     ("402", 402, 402)],
)
def test_given_a_scripted_http_fault_when_uploading_then_that_status_and_nothing_is_stored(
    emulator: KieEmulator, origin: Origin, http: requests.Session, outcome: str, status: int, code: int
) -> None:
    emulator.script(outcome)

    response = upload(http, emulator, photo_body(origin))

    assert response.status_code == status
    assert response.json()["success"] is False
    assert response.json()["code"] == code
    assert emulator.upload_count == 0
    assert emulator.calls[-1].fault == outcome
    assert emulator.calls[-1].status == status


def test_given_a_scripted_rate_limit_when_uploading_then_429_carries_retry_after(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    emulator.set_faults(retry_after_seconds=7)
    emulator.script("429")

    response = upload(http, emulator, photo_body(origin))

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"


@pytest.mark.parametrize(("outcome", "code"), [("body-error", 500), ({"bodyCode": 402}, 402)])
def test_given_a_scripted_body_error_when_uploading_then_http_200_carries_the_error_code(
    emulator: KieEmulator, origin: Origin, http: requests.Session, outcome: str | dict[str, int], code: int
) -> None:
    emulator.script(outcome)

    response = upload(http, emulator, photo_body(origin))

    assert response.status_code == 200
    assert response.json()["success"] is False
    assert response.json()["code"] == code
    assert emulator.upload_count == 0


def test_given_a_scripted_malformed_answer_when_uploading_then_http_200_is_not_json(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    emulator.script("malformed")

    response = upload(http, emulator, photo_body(origin))

    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    assert emulator.upload_count == 0


def test_given_a_scripted_timeout_when_the_client_gives_up_first_then_the_upload_still_happens_later(
    make_emulator: Callable[..., KieEmulator], origin: Origin, http: requests.Session
) -> None:
    emulator = make_emulator(faults=Faults(timeout_seconds=0.5))
    emulator.script("timeout")

    with pytest.raises(requests.Timeout):
        upload(http, emulator, photo_body(origin), timeout=0.1)

    deadline = time.monotonic() + 5
    while not emulator.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(c.status, c.fault) for c in emulator.calls] == [(200, "timeout")]
    assert emulator.stored("images/user-uploads/photo.png") == PNG


def test_given_scripted_outcomes_when_random_faults_are_on_then_the_script_wins_then_the_rates_apply(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    emulator.set_faults(error_rate=1.0)
    emulator.script("ok", "455")

    statuses = [upload(http, emulator, photo_body(origin)).status_code for _ in range(3)]

    assert statuses == [200, 455, 500]
    assert emulator.upload_count == 1


def test_given_an_unknown_script_entry_when_scripted_then_value_error(emulator: KieEmulator) -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        emulator.script("503")


@pytest.mark.parametrize(
    ("rate", "status", "body_code"),
    [("error_rate", 500, 500), ("rate_limit_rate", 429, 429), ("maintenance_rate", 455, 455),
     ("body_error_rate", 200, 500), ("malformed_rate", 200, None)],
)
def test_given_a_fault_rate_of_one_when_uploading_then_every_call_gets_that_fault_before_auth(
    emulator: KieEmulator, origin: Origin, http: requests.Session,
    rate: str, status: int, body_code: int | None,
) -> None:
    emulator.set_faults(Faults(seed=1), **{rate: 1.0})

    # A wrong key proves the fault answers before authentication, like an overloaded gateway.
    responses = [upload(http, emulator, photo_body(origin), key="wrong") for _ in range(3)]

    assert [r.status_code for r in responses] == [status] * 3
    if body_code is not None:
        assert [r.json()["code"] for r in responses] == [body_code] * 3
    assert emulator.upload_count == 0


def test_given_the_same_seed_when_faults_are_random_then_the_sequence_repeats(
    make_emulator: Callable[..., KieEmulator], origin: Origin, http: requests.Session
) -> None:
    sequences = []
    for _ in range(2):
        emulator = make_emulator(faults=Faults(error_rate=0.5, seed=42))
        # No key: unfaulted calls answer 401 at once, so the sequence is cheap to draw.
        statuses = [upload(http, emulator, photo_body(origin), key=None).status_code for _ in range(20)]
        sequences.append(statuses)

    assert sequences[0] == sequences[1]
    assert set(sequences[0]) == {401, 500}


def test_given_latency_when_uploading_then_the_answer_waits_at_least_that_long(
    make_emulator: Callable[..., KieEmulator], origin: Origin, http: requests.Session
) -> None:
    emulator = make_emulator(faults=Faults(latency_seconds=0.2))

    started = time.monotonic()
    response = upload(http, emulator, photo_body(origin))

    assert time.monotonic() - started >= 0.2
    assert response.status_code == 200


def test_given_an_invalid_rate_when_building_faults_then_value_error() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        Faults(error_rate=1.5)


# -- steering, call log, logs ----------------------------------------------------------------------


def test_given_a_running_emulator_when_steered_over_http_then_faults_script_calls_and_reset_apply(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    admin = f"{emulator.base_url}/_emulator"
    assert http.get(f"{admin}/health", timeout=5).json() == {"ok": True}

    assert http.post(f"{admin}/script", json={"outcomes": ["429", {"bodyCode": 455}]}, timeout=5).ok
    assert http.post(f"{admin}/faults", json={"error_rate": 1.0, "seed": 3}, timeout=5).ok
    statuses = [upload(http, emulator, photo_body(origin)).status_code for _ in range(3)]
    calls = http.get(f"{admin}/calls", timeout=5).json()

    assert statuses == [429, 200, 500]
    assert [c["fault"] for c in calls] == ["429", "body-error", "500"]
    assert all(c["body"]["fileUrl"] == origin.url("/bucket/images/photo.png", query="") for c in calls)

    assert http.post(f"{admin}/reset", timeout=5).json() == {"ok": True}
    assert http.get(f"{admin}/calls", timeout=5).json() == []
    assert upload(http, emulator, photo_body(origin)).status_code == 200


@pytest.mark.parametrize(
    ("endpoint", "payload"),
    [("script", {"outcomes": ["nope"]}), ("script", {"outcomes": "500"}), ("faults", {"error_rate": 2}),
     ("faults", {"no_such_field": 1})],
)
def test_given_bad_admin_input_when_posted_then_400(
    emulator: KieEmulator, http: requests.Session, endpoint: str, payload: dict[str, Any]
) -> None:
    response = http.post(f"{emulator.base_url}/_emulator/{endpoint}", json=payload, timeout=5)

    assert response.status_code == 400
    assert response.json()["success"] is False


def test_given_reset_when_files_were_stored_then_they_are_forgotten(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    download_url = upload(http, emulator, photo_body(origin)).json()["data"]["downloadUrl"]
    emulator.set_faults(error_rate=1.0)
    emulator.script("500")

    emulator.reset()

    assert http.get(download_url, timeout=5).status_code == 404
    assert (emulator.calls, emulator.upload_count, emulator.faults) == ([], 0, Faults())


def test_given_uploads_with_presigned_urls_when_logged_then_no_line_or_call_holds_the_key_or_the_query(
    emulator: KieEmulator, origin: Origin, http: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kie_uploader.emulator")

    upload(http, emulator, photo_body(origin))
    upload(http, emulator, {"fileUrl": origin.url("/expired/photo.png"), "uploadPath": "x"})
    upload(http, emulator, photo_body(origin), key="wrong")

    lines = [r.getMessage() for r in caplog.records if r.name == "kie_uploader.emulator"]
    assert len(lines) == 3
    assert lines[0] == "POST /api/file-url-upload 200 fault=-"
    assert not [line for line in lines if KEY in line or "X-Amz" in line or "?" in line]
    assert not [c for c in emulator.calls if "X-Amz" in json.dumps(c.to_dict())]


def test_given_a_stopped_emulator_when_started_again_on_its_port_then_it_binds(
    make_emulator: Callable[..., KieEmulator], http: requests.Session
) -> None:
    first = make_emulator()
    port = first.port
    first.stop()

    second = make_emulator(port=port)

    assert http.get(f"{second.base_url}/_emulator/health", timeout=5).ok


def test_given_a_public_base_url_when_uploaded_then_the_download_url_uses_it(
    make_emulator: Callable[..., KieEmulator], origin: Origin, http: requests.Session
) -> None:
    emulator = make_emulator(public_base_url="https://tempfile.example.test/")

    data = upload(http, emulator, photo_body(origin)).json()["data"]

    assert data["downloadUrl"] == (
        f"https://tempfile.example.test/files/{emulator.account}/images/user-uploads/photo.png"
    )


# -- the process -----------------------------------------------------------------------------------


def test_given_the_module_run_as_a_process_when_sent_sigterm_then_it_served_and_exits_zero(
    origin: Origin, http: requests.Session
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "KIE_EMULATOR_API_KEY": KEY}
    process = subprocess.Popen(
        [sys.executable, "-m", "kie_uploader.emulator", "--port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline().strip() if process.stdout else ""
        match = re.fullmatch(r"kie\.ai emulator listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        base_url = match.group(1)
        assert http.get(f"{base_url}/_emulator/health", timeout=5).json() == {"ok": True}
        response = http.post(f"{base_url}/api/file-url-upload", json=photo_body(origin),
                             headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        assert response.status_code == 200

        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0
    assert "POST /api/file-url-upload 200" in stderr
    assert KEY not in stderr
    assert "X-Amz" not in stderr


def test_given_a_non_loopback_host_when_started_without_allow_remote_then_it_refuses() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--host", "0.0.0.0", "--api-key", KEY])

    assert exit_info.value.code == 2


def test_given_no_api_key_when_started_then_it_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KIE_EMULATOR_API_KEY", raising=False)

    with pytest.raises(SystemExit) as exit_info:
        main(["--port", "0"])

    assert exit_info.value.code == 2


# -- fault modes of a broken network or a wrong base URL (issue 8, items 6, 7, 8 and 13) --------------------


@pytest.mark.parametrize(("outcome", "status"), [("404", 404), ("405", 405)])
def test_given_a_scripted_404_or_405_when_uploading_then_that_status_with_kies_error_body(
    emulator: KieEmulator, origin: Origin, http: requests.Session, outcome: str, status: int
) -> None:
    emulator.script(outcome)

    response = upload(http, emulator, photo_body(origin))

    assert response.status_code == status
    assert response.json()["code"] == status
    assert emulator.upload_count == 0


def test_given_a_scripted_html_page_when_uploading_then_http_200_with_an_html_page(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    emulator.script("html")

    response = upload(http, emulator, photo_body(origin))

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")
    assert emulator.upload_count == 0


def test_given_a_scripted_huge_answer_when_read_whole_then_it_has_the_size_and_status_asked_and_is_counted(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    emulator.set_faults(huge_bytes=3 * 1024 * 1024 + 5, huge_status=502)
    emulator.script("huge")

    response = upload(http, emulator, photo_body(origin))

    assert response.status_code == 502
    assert int(response.headers["Content-Length"]) == len(response.content) == 3 * 1024 * 1024 + 5
    assert response.content.startswith(b'{"success": false, "code": 500, "msg": "xxx')
    deadline = time.monotonic() + 5
    while not emulator.streamed_bytes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert emulator.streamed_bytes == [3 * 1024 * 1024 + 5]


@pytest.mark.parametrize("outcome", ["trickle", "trickle-headers"])
def test_given_a_scripted_trickle_when_waited_for_then_the_whole_real_answer_arrives_slowly(
    emulator: KieEmulator, origin: Origin, http: requests.Session, outcome: str
) -> None:
    emulator.set_faults(trickle_interval_seconds=0.002)
    emulator.script(outcome)

    started = time.monotonic()
    response = upload(http, emulator, photo_body(origin, fileName="slow.png"))
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert response.json()["data"]["filePath"] == "images/user-uploads/slow.png"
    assert emulator.stored("images/user-uploads/slow.png") == PNG
    # One byte at a time: at least (answer bytes) × interval, the head alone being over 80 bytes.
    assert elapsed >= 80 * 0.002
    assert [call.fault for call in emulator.calls] == [outcome]


def test_given_a_scripted_echo_when_uploading_then_400_repeats_the_secret_query_values_outside_the_url(
    emulator: KieEmulator, origin: Origin, http: requests.Session
) -> None:
    emulator.script("echo")

    response = upload(http, emulator, photo_body(origin))

    assert response.status_code == 400
    msg = response.json()["msg"]
    assert "deadbeefcafe0123456789" in msg and "AKIDEXAMPLE" in msg  # decoded, not as name=value
    assert SIGNATURE not in msg and "?" not in msg
    assert emulator.upload_count == 0


@pytest.mark.parametrize("field", ["trickle_interval_seconds", "huge_bytes"])
def test_given_a_negative_size_or_interval_when_building_faults_then_value_error(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Faults(**{field: -1})
