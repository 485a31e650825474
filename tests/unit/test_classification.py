"""kie.ai answers → success or a classified error; a body ``code`` counts exactly like an HTTP status."""

from __future__ import annotations

import json

import pytest

from uploader.errors import ConfigurationError, PermanentError, TransientError
from uploader.kie import interpret_answer

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


@pytest.mark.parametrize(("code", "kind"), sorted(EXPECTED.items()))
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
