"""kie.ai adapter: ``POST {base}/api/file-url-upload`` (kie.ai fetches a presigned URL) and
``POST {base}/api/file-stream-upload`` (the function sends the bytes), over one keep-alive HTTP session.

Classification happens here, once. kie.ai may answer HTTP 200 with an error ``code`` in the body: the body
code is then treated like an HTTP status.

* success: HTTP 200 and body ``success: true``, ``code`` 200 and a ``data.downloadUrl`` that is an absolute
  http(s) URL with a host;
* configuration (recorded FAILED, delivered again, alarmed): 401, 402, 403; and a wrong ``KIE_BASE_URL``:
  HTTP 404 or 405 (not the endpoint), a redirect (3xx, never followed), or an HTML page that is not JSON
  (unless its status is itself transient: gateways answer their outages with HTML);
* transient (retried): connection errors, the call's deadline, 408, 409, 425, 429, 455, 5xx, an answer
  over :data:`MAX_ANSWER_BYTES` to a 200, a body that is not the expected JSON (malformed, truncated, or
  200 without a valid ``downloadUrl``);
* permanent (recorded FAILED, acknowledged): any other 4xx (400 bad request, 413, 422, …) and body codes
  404/405 under HTTP 200.

A transient or permanent error whose ``msg`` says kie.ai could not download/fetch the file (``Failed to
download file: …``: the origin answered an HTTP error, refused or reset the connection, or did not send the
bytes within kie.ai's 30 s) is also a :class:`KieCouldNotFetch`: the ``auto`` transfer streams the object
instead. kie.ai documents no code for it; the wording is its emulator's and the contract's (see
:func:`says_fetch_failed`). A call that kie.ai does not answer in time is not one: kie.ai itself is slow.

The stream upload's answer is read and classified exactly like the URL upload's.

One call ends within its ``timeout`` whatever the server does: a watchdog shuts the socket down when the
time is up (a trickling answer cannot stretch it), and at most :data:`MAX_ANSWER_BYTES` are read.

Error messages carry the status, kie.ai's code and its ``msg`` redacted: never the API key nor the
presigned ``fileUrl`` or any of its secret parts.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from uploader.errors import ConfigurationError, PermanentError, TransientError, UploaderError
from uploader.redact import redact, url_secrets
from uploader.retry import parse_retry_after

if TYPE_CHECKING:
    import requests

    from uploader.stream import MultipartBody

UPLOAD_PATH = "/api/file-url-upload"
STREAM_UPLOAD_PATH = "/api/file-stream-upload"
#: kie.ai's answers are small JSON documents: more than this is not read (the status classifies it).
MAX_ANSWER_BYTES = 1024 * 1024
_CHUNK_BYTES = 64 * 1024
_CONFIGURATION_CODES = frozenset({401, 402, 403})
_WRONG_ENDPOINT_CODES = frozenset({404, 405})
_TRANSIENT_CODES = frozenset({408, 409, 425, 429, 455})
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_CONNECT_TIMEOUT = 5.0
#: While a stream upload sends its body, one send may wait this long for kie.ai to read (then it fails).
_SEND_STALL_SECONDS = 30.0
#: A stream body is read and sent in blocks of this size (urllib3's default, 16 KiB, costs a Python read and
#: a send per 16 KiB: twice the CPU per GiB).
_SEND_BLOCK_BYTES = 256 * 1024
_WRONG_ENDPOINT_HINT = "not kie.ai's upload endpoint: check KIE_BASE_URL"
_WRONG_STREAM_ENDPOINT_HINT = "not kie.ai's stream upload endpoint: check KIE_STREAM_BASE_URL"
#: What kie.ai's ``msg`` says when it could not get the file at ``fileUrl`` (English or Chinese).
_FETCH_FAILED = re.compile(r"download|fetch|retriev|下载", re.IGNORECASE)


class KieCouldNotFetch(Exception):
    """Marks an error whose answer says kie.ai could not fetch the URL (see the module's docstring)."""


class KieFetchTransientError(TransientError, KieCouldNotFetch):
    """kie.ai could not fetch the URL this time (unreachable, refused, timed out: HTTP 500)."""


class KieFetchPermanentError(PermanentError, KieCouldNotFetch):
    """kie.ai could not fetch the URL: the origin answered an HTTP error (HTTP 400 ``HTTP 403``)."""


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
    """The error class for a body ``code`` other than 200 (HTTP statuses: :func:`classify_status`)."""
    if code in _CONFIGURATION_CODES:
        return ConfigurationError(summary)
    if _is_transient(code):
        return TransientError(summary, retry_after=retry_after)
    if 400 <= code < 500:
        return PermanentError(summary)
    # 1xx/other 2xx or a code kie.ai does not document: not the answer we expect; may be a proxy hiccup.
    return TransientError(summary, retry_after=retry_after)


def classify_status(
    status: int, summary: str, retry_after: float | None = None, *, hint: str = _WRONG_ENDPOINT_HINT
) -> UploaderError:
    """The error class for an HTTP status, or for HTTP 200 whose answer could not be used (transient)."""
    if status in _WRONG_ENDPOINT_CODES or 300 <= status < 400:
        return ConfigurationError(f"{summary} ({hint})")
    if status == 200:
        return TransientError(summary, retry_after=retry_after)
    return classify_code(status, summary, retry_after)


#: A probe of a download URL gives up after this long (then it says nothing either way).
PROBE_TIMEOUT_SECONDS = 3.0
#: Statuses of a download URL whose file kie.ai no longer serves.
_GONE = frozenset({403, 404, 410})


class KieClient:
    """Calls kie.ai's URL upload. ``session`` defaults to a pooled ``requests.Session`` (keep-alive) whose
    connections the per-call watchdog can shut down; a session of your own keeps only the deadline checked
    between reads."""

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session | None = None,
        pool_size: int = 10,
        stream_base_url: str | None = None,
    ) -> None:
        self._url = base_url.rstrip("/") + UPLOAD_PATH
        self._stream_url = (stream_base_url or base_url).rstrip("/") + STREAM_UPLOAD_PATH
        self._session = session or _new_session(pool_size)

    def upload(
        self, *, api_key: str, file_url: str, upload_path: str, file_name: str, timeout: float
    ) -> KieUpload:
        """One call, over within ``timeout`` seconds (kie.ai downloads the file before it answers)."""
        return self._call(
            self._url,
            api_key=api_key,
            timeout=timeout,
            too_late=f"kie.ai did not answer within {timeout:g} s",
            secrets=(api_key, file_url),
            payload={"fileUrl": file_url, "uploadPath": upload_path, "fileName": file_name},
        )

    def stream_upload(self, *, api_key: str, body: MultipartBody, timeout: float) -> KieUpload:
        """One stream upload of ``body`` (:class:`uploader.stream.MultipartBody`), over within ``timeout``
        seconds: the bytes are sent, then kie.ai answers. At the deadline the watchdog also ends a read of
        the body's source (S3) that is blocked."""
        return self._call(
            self._stream_url,
            api_key=api_key,
            timeout=timeout,
            too_late=f"the stream upload of {len(body)} bytes did not end within {timeout:g} s",
            secrets=(api_key,),
            data=body,
            content_type=body.content_type,
            on_expire=body.abort,
            send_timeout=_SEND_STALL_SECONDS,
            hint=_WRONG_STREAM_ENDPOINT_HINT,
        )

    def _call(
        self,
        url: str,
        *,
        api_key: str,
        timeout: float,
        too_late: str,
        secrets: tuple[str, ...],
        payload: dict[str, Any] | None = None,
        data: Any = None,
        content_type: str | None = None,
        on_expire: Callable[[], None] | None = None,
        send_timeout: float = _CONNECT_TIMEOUT,
        hint: str = _WRONG_ENDPOINT_HINT,
    ) -> KieUpload:
        """POST to ``url`` under the watchdog, read at most :data:`MAX_ANSWER_BYTES`, classify the answer.
        ``send_timeout`` bounds the connect and each send (urllib3 uses the connect timeout for both)."""
        import requests
        from urllib3.exceptions import HTTPError

        headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "Accept-Encoding": "identity",  # what is read is what the server sent
        }
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            with _Watchdog(timeout, on_expire) as watchdog:
                response = self._session.post(
                    url,
                    json=payload,
                    data=data,
                    headers=headers,
                    timeout=(min(send_timeout, timeout), timeout),
                    stream=True,
                    allow_redirects=False,  # requests would read a redirect's body whole
                )
                try:
                    raw, complete = _read_at_most(response, MAX_ANSWER_BYTES, watchdog)
                finally:
                    response.close()  # an answer not read to its end closes the connection
        except Exception as exc:
            if watchdog.expired or isinstance(exc, (requests.Timeout, TimeoutError)):
                raise TransientError(too_late) from exc
            if isinstance(exc, (requests.RequestException, HTTPError, http.client.HTTPException, OSError)):
                # The exception text may hold the request URL; only the class name leaves this module.
                raise TransientError(f"kie.ai unreachable ({type(exc).__name__})") from exc
            raise  # the body's own failure (S3 mid-stream): already classified
        if watchdog.expired:
            raise TransientError(too_late)
        retry_after = response.headers.get("Retry-After")
        if not complete:
            summary = f"kie.ai HTTP {response.status_code}: answer over {MAX_ANSWER_BYTES} bytes, not read"
            raise classify_status(
                response.status_code, summary, parse_retry_after(retry_after, time.time), hint=hint
            )
        # JSON is UTF-8 (RFC 8259): decode it ourselves rather than let requests guess a charset.
        return interpret_answer(
            response.status_code,
            raw.decode("utf-8", "replace"),
            retry_after,
            secrets=secrets,
            content_type=response.headers.get("Content-Type"),
            hint=hint,
        )


    def probe(self, download_url: str, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool | None:
        """Whether kie.ai still serves ``download_url``: a ranged GET of its first byte within ``timeout``.

        ``True`` for 200/206, ``False`` for 403/404/410 (the file is gone), ``None`` when the answer says
        neither (another status, no answer in time, no connection): a probe never condemns a URL on a doubt.
        """
        import requests
        from urllib3.exceptions import HTTPError

        try:
            with _Watchdog(timeout):
                response = self._session.get(
                    download_url,
                    headers={"Range": "bytes=0-0", "Accept-Encoding": "identity"},
                    timeout=(min(_CONNECT_TIMEOUT, timeout), timeout),
                    stream=True,
                    allow_redirects=True,
                )
                response.close()
        except (requests.RequestException, HTTPError, http.client.HTTPException, OSError):
            return None
        if response.status_code in (200, 206):
            return True
        if response.status_code in _GONE:
            return False
        return None


def interpret_answer(
    status: int,
    text: str,
    retry_after_header: str | None = None,
    *,
    secrets: tuple[str, ...] = (),
    content_type: str | None = None,
    hint: str = _WRONG_ENDPOINT_HINT,
) -> KieUpload:
    """kie.ai's answer → its upload data, or the classified error. ``secrets`` (and, for a URL among them,
    its secret query values) are kept out of the error. ``hint`` names the setting a wrong endpoint means."""
    retry_after = parse_retry_after(retry_after_header, time.time)
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        summary = f"kie.ai HTTP {status}: answer is not a JSON object"
        if _is_html(content_type) and not _is_transient(status):
            raise ConfigurationError(f"{summary} but an HTML page ({hint})")
        raise classify_status(status, summary, retry_after, hint=hint)
    hidden = [*secrets, *(part for secret in secrets for part in url_secrets(secret))]
    code = _int_or_none(body.get("code"))
    msg = redact(str(body.get("msg", ""))[:500], hidden)
    summary = f"kie.ai HTTP {status} code {body.get('code')!r}: {msg}".rstrip(": ")
    if status != 200:
        raise _fetch_failure(classify_status(status, summary, retry_after, hint=hint), msg)
    if code is None:
        raise TransientError(f"kie.ai HTTP 200 without a numeric code: {msg}", retry_after=retry_after)
    if code != 200:
        raise _fetch_failure(classify_code(code, summary, retry_after), msg)
    data = body.get("data")
    if body.get("success") is not True or not isinstance(data, dict) or "downloadUrl" not in data:
        raise TransientError("kie.ai HTTP 200 code 200 without success and a data.downloadUrl")
    if not is_download_url(data["downloadUrl"]):
        raise TransientError("kie.ai HTTP 200 code 200 with a downloadUrl that is not an http(s) URL")
    return KieUpload(
        download_url=data["downloadUrl"],
        file_path=_str_or_none(data.get("filePath")),
        file_name=_str_or_none(data.get("fileName")),
        file_size=_int_or_none(data.get("fileSize")),
        mime_type=_str_or_none(data.get("mimeType")),
        uploaded_at=_str_or_none(data.get("uploadedAt")),
    )


def says_fetch_failed(msg: str) -> bool:
    """Whether kie.ai's error ``msg`` says it could not download (fetch, retrieve) the file at ``fileUrl``.

    kie.ai documents no code for this: the emulator answers ``Failed to download file: HTTP 403`` (HTTP 400:
    the origin refused) and ``Failed to download file: timed out`` / ``[Errno 111] Connection refused``
    (HTTP 500), and kie.ai's pages describe the download and its 30 s timeout in those words.
    """
    return bool(_FETCH_FAILED.search(msg))


def _fetch_failure(error: UploaderError, msg: str) -> UploaderError:
    """``error`` marked :class:`KieCouldNotFetch` when ``msg`` says the fetch failed (the same kind)."""
    if not says_fetch_failed(msg):
        return error
    if isinstance(error, TransientError):
        return KieFetchTransientError(str(error), retry_after=error.retry_after)
    if isinstance(error, PermanentError):
        return KieFetchPermanentError(str(error))
    return error  # a configuration error (401, 402, 403, a wrong endpoint) is about us, not the origin


def is_download_url(value: Any) -> bool:
    """Whether ``value`` is an absolute http or https URL with a host (no spaces nor control characters)."""
    if not isinstance(value, str) or any(ch <= " " or ch == "\x7f" for ch in value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _read_at_most(response: requests.Response, limit: int, watchdog: _Watchdog) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the body, and whether that was all of it; stops at the deadline."""
    buffer = bytearray()
    for chunk in response.iter_content(_CHUNK_BYTES):
        buffer += chunk
        if len(buffer) > limit:
            return bytes(buffer[:limit]), False
        if watchdog.overdue():
            raise TimeoutError("the call's deadline passed while the answer was read")
    return bytes(buffer), True


class _Watchdog:
    """A call's total deadline: when ``seconds`` have passed, the sockets the call uses are shut down, so a
    blocked connect, write or read (headers or body, however slowly they trickle) ends at once."""

    _current = threading.local()

    def __init__(self, seconds: float, on_expire: Callable[[], None] | None = None) -> None:
        self.deadline = time.monotonic() + seconds
        self.expired = False
        #: Also run when the time is up (a stream body's source, read on this call's thread, ends too).
        self._on_expire = on_expire
        self._sockets: list[socket.socket] = []
        self._done = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        _Watchdog._current.watchdog = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        _Watchdog._current.watchdog = None
        with self._lock:
            self._done = True
            self._sockets.clear()

    def overdue(self) -> bool:
        return self.expired or time.monotonic() >= self.deadline

    @classmethod
    def attach(cls, sock: socket.socket | None) -> None:
        """Watch ``sock`` for the call running on this thread, if any (called by the connections)."""
        watchdog: _Watchdog | None = getattr(cls._current, "watchdog", None)
        if watchdog is None or sock is None:
            return
        with watchdog._lock:
            if watchdog._done:
                return
            watchdog._sockets.append(sock)
            if watchdog.expired:
                _shut_down(sock)

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets:
                _shut_down(sock)
        if self._on_expire is not None:
            self._on_expire()


def _shut_down(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also for an SSLSocket: wakes a thread blocked on it, without unwrapping.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed, or not connected yet


def _new_session(pool_size: int) -> requests.Session:
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class WatchedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            _Watchdog.attach(sock)
            return sock

        def request(self, *args: Any, **kwargs: Any) -> None:
            _Watchdog.attach(self.sock)  # a kept-alive connection
            super().request(*args, **kwargs)

    class WatchedHTTPSConnection(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            _Watchdog.attach(self.sock)  # the TLS socket (the TCP one was attached while connecting)

        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            _Watchdog.attach(sock)
            return sock

        def request(self, *args: Any, **kwargs: Any) -> None:
            _Watchdog.attach(self.sock)
            super().request(*args, **kwargs)

    class WatchedHTTPPool(HTTPConnectionPool):
        ConnectionCls = WatchedHTTPConnection

    class WatchedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = WatchedHTTPSConnection

    watched_pools = {"http": WatchedHTTPPool, "https": WatchedHTTPSPool}

    class WatchedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("blocksize", _SEND_BLOCK_BYTES)
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = watched_pools

        def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
            if not proxy.lower().startswith("socks"):  # SOCKS has pools of its own
                manager.pool_classes_by_scheme = watched_pools
            return manager

    session = requests.Session()
    # One pooled connection per worker thread; retries are ours (classified, deadline-aware), not urllib3's.
    adapter = WatchedAdapter(pool_connections=2, pool_maxsize=max(pool_size, 1), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _is_transient(status: int) -> bool:
    return status in _TRANSIENT_CODES or status >= 500


def _is_html(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() in _HTML_TYPES


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
