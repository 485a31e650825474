"""kie.ai adapter: ``POST {base}/api/file-url-upload`` over one keep-alive HTTP session.

Classification happens here, once. kie.ai may answer HTTP 200 with an error ``code`` in the body: the body
code is then treated exactly like an HTTP status.

* success: HTTP 200 and body ``success: true``, ``code`` 200 and a ``data.downloadUrl``;
* configuration (recorded FAILED, delivered again): 401, 402, 403;
* transient (retried): connection errors, timeouts, 408, 409, 425, 429, 455, 5xx, a body that is not the
  expected JSON (malformed, truncated, or 200 without a ``downloadUrl``);
* permanent (recorded FAILED, acknowledged): any other 4xx (400 bad request, 404, 405, 413, 422, …).

Error messages carry the status, kie.ai's code and its ``msg`` redacted: never the API key nor the
presigned ``fileUrl``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from uploader.errors import ConfigurationError, PermanentError, TransientError, UploaderError
from uploader.redact import redact
from uploader.retry import parse_retry_after

if TYPE_CHECKING:
    import requests

UPLOAD_PATH = "/api/file-url-upload"
_CONFIGURATION_CODES = frozenset({401, 402, 403})
_TRANSIENT_CODES = frozenset({408, 409, 425, 429, 455})
_CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class KieUpload:
    """kie.ai's ``data`` of a successful upload."""

    download_url: str
    file_path: str | None
    file_name: str | None
    file_size: int | None
    mime_type: str | None
    uploaded_at: str | None


def classify_code(code: int, summary: str, retry_after: float | None = None) -> UploaderError:
    """The error class for an HTTP status or a body ``code`` other than 200."""
    if code in _CONFIGURATION_CODES:
        return ConfigurationError(summary)
    if code in _TRANSIENT_CODES or code >= 500:
        return TransientError(summary, retry_after=retry_after)
    if 400 <= code < 500:
        return PermanentError(summary)
    # 1xx/3xx/other 2xx or a code kie.ai does not document: not the answer we expect; may be a proxy hiccup.
    return TransientError(summary, retry_after=retry_after)


class KieClient:
    """Calls kie.ai's URL upload. ``session`` defaults to a pooled ``requests.Session`` (keep-alive)."""

    def __init__(
        self, base_url: str, *, session: requests.Session | None = None, pool_size: int = 10
    ) -> None:
        self._url = base_url.rstrip("/") + UPLOAD_PATH
        self._session = session or _new_session(pool_size)

    def upload(
        self, *, api_key: str, file_url: str, upload_path: str, file_name: str, timeout: float
    ) -> KieUpload:
        """One call. ``timeout`` bounds the read (kie.ai downloads the file before it answers)."""
        import requests

        secrets = (api_key, file_url)
        try:
            response = self._session.post(
                self._url,
                json={"fileUrl": file_url, "uploadPath": upload_path, "fileName": file_name},
                headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
                timeout=(min(_CONNECT_TIMEOUT, timeout), timeout),
            )
        except requests.Timeout as exc:
            raise TransientError(f"kie.ai did not answer within {timeout:.0f} s") from exc
        except requests.RequestException as exc:
            # The exception text may hold the request URL; only the class name leaves this module.
            raise TransientError(f"kie.ai unreachable ({type(exc).__name__})") from exc
        # JSON is UTF-8 (RFC 8259): decode it ourselves rather than let requests guess a charset.
        text = response.content.decode("utf-8", "replace")
        return interpret_answer(
            response.status_code, text, response.headers.get("Retry-After"), secrets=secrets
        )


def interpret_answer(
    status: int, text: str, retry_after_header: str | None = None, *, secrets: tuple[str, ...] = ()
) -> KieUpload:
    """kie.ai's answer → its upload data, or the classified error (``secrets`` are kept out of it)."""
    retry_after = parse_retry_after(retry_after_header, time.time)
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        summary = f"kie.ai HTTP {status}: answer is not a JSON object"
        if status == 200:
            raise TransientError(summary, retry_after=retry_after)
        raise classify_code(status, summary, retry_after)
    code = _int_or_none(body.get("code"))
    msg = redact(str(body.get("msg", ""))[:500], secrets)
    summary = f"kie.ai HTTP {status} code {body.get('code')!r}: {msg}".rstrip(": ")
    if status != 200:
        raise classify_code(status, summary, retry_after)
    if code is None:
        raise TransientError(f"kie.ai HTTP 200 without a numeric code: {msg}", retry_after=retry_after)
    if code != 200:
        raise classify_code(code, summary, retry_after)
    data = body.get("data")
    if (
        body.get("success") is not True
        or not isinstance(data, dict)
        or not _str_or_none(data.get("downloadUrl"))
    ):
        raise TransientError("kie.ai HTTP 200 code 200 without success and a data.downloadUrl")
    return KieUpload(
        download_url=data["downloadUrl"],
        file_path=_str_or_none(data.get("filePath")),
        file_name=_str_or_none(data.get("fileName")),
        file_size=_int_or_none(data.get("fileSize")),
        mime_type=_str_or_none(data.get("mimeType")),
        uploaded_at=_str_or_none(data.get("uploadedAt")),
    )


def _new_session(pool_size: int) -> requests.Session:
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    # One pooled connection per worker thread; retries are ours (classified, deadline-aware), not urllib3's.
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(pool_size, 1), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
