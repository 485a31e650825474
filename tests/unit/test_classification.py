"""kie.ai answers → success or a classified error; a body ``code`` counts exactly like an HTTP status."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from uploader.errors import ConfigurationError, PermanentError, TransientError
from uploader.kie import classify_status, interpret_answer, is_download_url

SUCCESS = {
    "success": True,
    "code": 200,
    "msg": "文件上传成功",
    "data": {
        "fileName": "uploaded-image.png",
        "filePath": "images/user-uploads/uploaded-image.png",
        "downloadUrl": "https://tempfile.redpandaai.co/xxx/images/user-uploads/uploaded-image.png",
        "fileSize": 154832,
        "mimeType": "image/png",
        "uploadedAt": "2025-01-01T12:00:00.000Z",
    },
}


def error_body(code: int, msg: str = "boom") -> str:
    return json.dumps({"success": False, "code": code, "msg": msg})


def test_the_seeds_success_answer_is_read() -> None:
    upload = interpret_answer(200, json.dumps(SUCCESS))

    assert upload.download_url.endswith("/uploaded-image.png")
    assert upload.file_path == "images/user-uploads/uploaded-image.png"
    assert (upload.file_name, upload.file_size, upload.mime_type) == (
        "uploaded-image.png",
        154832,
        "image/png",
    )
    assert upload.uploaded_at == "2025-01-01T12:00:00.000Z"


#: Body codes under HTTP 200, and HTTP statuses except 404/405 (see below).
EXPECTED = {
    400: PermanentError,
    401: ConfigurationError,
    402: ConfigurationError,
    403: ConfigurationError,
    404: PermanentError,
    405: PermanentError,
    408: TransientError,
    413: PermanentError,
    422: PermanentError,
    429: TransientError,
    455: TransientError,
    500: TransientError,
    502: TransientError,
    503: TransientError,
    505: TransientError,
}


#: HTTP 404/405 say the URL is not kie.ai's upload endpoint: a wrong KIE_BASE_URL (issue 8, item 6).
EXPECTED_HTTP = {**EXPECTED, 404: ConfigurationError, 405: ConfigurationError}


@pytest.mark.parametrize(("code", "kind"), sorted(EXPECTED_HTTP.items()))
def test_http_status_is_classified(code: int, kind: type[Exception]) -> None:
    with pytest.raises(kind, match=f"HTTP {code}"):
        interpret_answer(code, error_body(code))


@pytest.mark.parametrize(("code", "kind"), sorted(EXPECTED.items()))
def test_a_body_code_under_http_200_is_classified_like_the_same_http_status(
    code: int, kind: type[Exception]
) -> None:
    with pytest.raises(kind, match=f"code {code}"):
        interpret_answer(200, error_body(code))


@pytest.mark.parametrize(
    ("code", "kind"), [(401, ConfigurationError), (500, TransientError), (400, PermanentError)]
)
def test_error_statuses_without_json_are_classified_by_status(code: int, kind: type[Exception]) -> None:
    with pytest.raises(kind):
        interpret_answer(code, "<html>Bad Gateway</html>")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        '{"success": true, "code": 200, "data": {"downloadUrl": "https://x/y"',  # truncated
        "[]",
        json.dumps({"success": True, "code": 200, "data": {}}),  # no downloadUrl
        json.dumps({"success": True, "code": 200}),
        json.dumps({"success": False, "code": 200, "data": SUCCESS["data"]}),
        json.dumps({"success": True, "code": "two hundred", "data": SUCCESS["data"]}),
        json.dumps({"success": True, "data": SUCCESS["data"]}),  # no code at all
    ],
)
def test_malformed_or_incomplete_success_answers_are_transient(text: str) -> None:
    with pytest.raises(TransientError):
        interpret_answer(200, text)


@pytest.mark.parametrize("status", [404, 405])
def test_http_404_and_405_name_a_wrong_base_url_even_without_json(status: int) -> None:
    with pytest.raises(ConfigurationError, match="KIE_BASE_URL"):
        interpret_answer(status, "Cannot POST /v1/api/file-url-upload", content_type="text/plain")


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_a_configuration_error(status: int) -> None:
    assert isinstance(classify_status(status, f"kie.ai HTTP {status}"), ConfigurationError)


@pytest.mark.parametrize("status", [200, 400, 401, 404])
@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "TEXT/HTML", "application/xhtml+xml"])
def test_an_html_page_is_a_configuration_error(status: int, content_type: str) -> None:
    with pytest.raises(ConfigurationError, match="HTML"):
        interpret_answer(status, "<!DOCTYPE html><html><body>kie.ai</body></html>", content_type=content_type)


@pytest.mark.parametrize("status", [429, 455, 500, 502, 503])
def test_an_html_page_with_a_transient_status_stays_transient(status: int) -> None:
    # Gateways answer their own outages with HTML pages: that is not a wrong base URL.
    with pytest.raises(TransientError):
        interpret_answer(status, "<html>Bad Gateway</html>", content_type="text/html")


def test_json_served_as_html_is_still_read() -> None:
    assert interpret_answer(200, json.dumps(SUCCESS), content_type="text/html").download_url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.cookie)",
        "file:///etc/passwd",
        "not a url",
        "ftp://tempfile.redpandaai.co/x.png",
        "data:text/html,<script>alert(1)</script>",
        "//tempfile.redpandaai.co/x.png",  # not absolute
        "https://",
        "https:///x.png",  # no host
        "/files/x.png",
        "https://tempfile.redpandaai.co/a b.png",
        "https://tempfile.redpandaai.co/x.png\nSet-Cookie: a=b",
        "https://tempfile.redpandaai.co:99999/x.png",
        "http://[::1/x.png",
        "",
        42,
        None,
        ["https://tempfile.redpandaai.co/x.png"],
    ],
)
def test_a_download_url_that_is_not_an_absolute_http_url_is_a_malformed_answer(url: object) -> None:
    body = {**SUCCESS, "data": {**SUCCESS["data"], "downloadUrl": url}}  # type: ignore[dict-item]

    assert not is_download_url(url)
    with pytest.raises(TransientError):
        interpret_answer(200, json.dumps(body))


@pytest.mark.parametrize(
    "url",
    [
        "https://tempfile.redpandaai.co/xxx/images/a.png",
        "HTTP://127.0.0.1:8080/files/abc/r%C3%A9sum%C3%A9.txt",
        "http://[::1]:8080/files/x",
    ],
)
def test_absolute_http_and_https_download_urls_are_accepted(url: str) -> None:
    body = {**SUCCESS, "data": {**SUCCESS["data"], "downloadUrl": url}}  # type: ignore[dict-item]

    assert interpret_answer(200, json.dumps(body)).download_url == url


def test_a_string_code_counts_like_a_number() -> None:
    with pytest.raises(ConfigurationError):
        interpret_answer(200, json.dumps({"success": False, "code": "402", "msg": "Insufficient credits"}))


def test_retry_after_is_carried_by_transient_errors() -> None:
    with pytest.raises(TransientError) as caught:
        interpret_answer(429, error_body(429), "12")

    assert caught.value.retry_after == 12.0


def test_error_messages_keep_status_code_and_msg_but_no_url_query_nor_key() -> None:
    file_url = "https://b.s3.amazonaws.com/k.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=" + "a" * 64
    msg = f"Failed to download {file_url} with key sk-secret-123"

    with pytest.raises(PermanentError) as caught:
        interpret_answer(400, error_body(400, msg), secrets=("sk-secret-123", file_url))

    text = str(caught.value)
    assert "HTTP 400" in text and "code 400" in text and "Failed to download" in text
    assert "X-Amz-Signature" not in text and "a" * 64 not in text and "sk-secret-123" not in text


def test_secret_parts_of_the_presigned_url_are_redacted_in_any_shape() -> None:
    signature = "9c" * 32
    token = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ=="
    file_url = (
        "https://b.s3.amazonaws.com/k.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=ASIAEXAMPLEKEY123%2F20250101%2Fus-east-1%2Fs3%2Faws4_request"
        f"&X-Amz-Security-Token={quote(token, safe='')}&X-Amz-Signature={signature}"
    )
    msg = (
        f'origin refused: {{"sig": "{signature}"}}; the signature {signature} was computed by '
        f"ASIAEXAMPLEKEY123/20250101/us-east-1/s3/aws4_request with token {token}"
    )

    with pytest.raises(PermanentError) as caught:
        interpret_answer(400, error_body(400, msg), secrets=("sk-secret-123", file_url))

    text = str(caught.value)
    assert "origin refused" in text
    for part in (signature, "ASIAEXAMPLEKEY123", token, token[:20]):
        assert part not in text
