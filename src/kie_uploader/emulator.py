"""A faithful local emulator of kie.ai's ``POST /api/file-url-upload`` and ``POST /api/file-stream-upload``.

A real HTTP server (standard library only) that authenticates the Bearer key, validates the body,
downloads ``fileUrl`` itself, stores the bytes under ``{uploadPath}/{fileName}`` and answers with the
seed's success body. Stored files are served back at their ``downloadUrl`` until ``retention_seconds``
have passed.

The stream upload takes ``multipart/form-data`` (parts ``file``, ``uploadPath``, ``fileName``; RFC 7578)
of a declared ``Content-Length``, parsed as it arrives (the file part is never searched whole), with the
URL upload's rules for ``uploadPath`` and ``fileName``, an optional size limit (``max_file_bytes``: HTTP
413) and the same answer. A body that ends before its closing boundary (the client went away mid-body)
stores nothing.

Fault injection (random rates and a deterministic script) lets tests, benchmarks and soaks exercise the
client's retry and classification rules. Scripted outcomes also cover what a broken network or a wrong base
URL does: an answer trickled byte by byte (body or headers), a huge answer, an HTML page, 404/405, and an
error ``msg`` that echoes the fileUrl's secret query values. Admin endpoints under ``/_emulator/`` steer a
running emulator process.

Secrets never leave it: the Authorization header is never logged, and a URL is only ever named without
its query string (a presigned URL's signature lives there). The one exception is the "echo" outcome's answer,
which exists to prove that the client redacts what kie.ai might echo.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import mimetypes
import os
import random
import re
import secrets
import signal
import socket
import socketserver
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.parser import HeaderParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

__all__ = ["Call", "Faults", "KieEmulator", "main"]

UPLOAD_PATH = "/api/file-url-upload"
STREAM_UPLOAD_PATH = "/api/file-stream-upload"
FILES_PREFIX = "/files/"
ADMIN_PREFIX = "/_emulator/"
SUCCESS_MSG = "文件上传成功"  # the seed's literal success message
DEFAULT_RETENTION_SECONDS = 259_200  # the seed: files are deleted after 3 days
DEFAULT_DOWNLOAD_TIMEOUT = 30.0  # the seed: kie.ai's download timeout
MAX_REQUEST_BYTES = 1024 * 1024  # the upload body is a small JSON document
_CHUNK_BYTES = 256 * 1024
_PURGE_INTERVAL_SECONDS = 1.0
#: A multipart part's header block, and a text field's value, are at most this long.
_MAX_PART_HEADER_BYTES = 16 * 1024
_MAX_FIELD_BYTES = 64 * 1024
#: After an early answer (401, 413, a fault), at most this much of the unread body is drained before the
#: connection is closed, so that the client can read the answer rather than be reset mid-send.
_MAX_DRAIN_BYTES = 64 * 1024 * 1024
#: The multipart form's bytes around the file (boundaries, headers, fields): what a body may hold besides it.
_MAX_FORM_OVERHEAD_BYTES = 256 * 1024
_AUTH_FAILED_MSG = "Authentication failed: Invalid API Key"
# Content types that say nothing about the file: fall back to guessing from the name.
_GENERIC_MEDIA_TYPES = frozenset(
    {"application/octet-stream", "binary/octet-stream", "application/unknown", "application/x-download"}
)
# kie.ai's common API codes, used for fault bodies.
_CODE_MESSAGES = {
    400: "Bad request",
    401: _AUTH_FAILED_MSG,
    402: "Insufficient credits",
    404: "Not found",
    405: "Method not allowed",
    422: "Validation error",
    429: "Rate limited: too many requests",
    455: "Service unavailable: under maintenance",
    500: "Internal server error",
    505: "Feature disabled",
}
_SIMPLE_OUTCOMES = frozenset(
    {
        "ok",
        "500",
        "429",
        "455",
        "body-error",
        "timeout",
        "malformed",
        "400",
        "401",
        "402",
        "404",
        "405",
        "html",
        "huge",
        "trickle",
        "trickle-headers",
        "echo",
        "cut",
    }
)
#: What a wrong base URL (a web site rather than the API) answers.
_HTML_PAGE = b"<!DOCTYPE html><html><head><title>kie.ai</title></head><body><div id=app></div></body></html>"
#: Query parameters of a presigned URL that are secret: the "echo" outcome repeats their values.
_SECRET_QUERY_NAMES = (
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "signature",
    "awsaccesskeyid",
)
# Truncated mid-string: what a proxy cutting a response short would deliver.
_MALFORMED_BODY = '{"success": true, "code": 200, "msg": "文件上传成功", "data": {"fileName": "'.encode()
_QUERY_RE = re.compile(r"\?\S*")

logger = logging.getLogger("kie_uploader.emulator")


@dataclass(frozen=True)
class Faults:
    """Random faults applied to upload calls before auth, validation and download (all off by default).

    Rates are shares in [0, 1] drawn from one roll per call, so their sum should not exceed 1; the first
    matching fault in field order wins.
    """

    latency_seconds: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_seconds: int = 1
    maintenance_rate: float = 0.0
    body_error_rate: float = 0.0
    body_error_code: int = 500
    timeout_rate: float = 0.0
    timeout_seconds: float = 35.0
    malformed_rate: float = 0.0
    seed: int | None = None
    #: "trickle" / "trickle-headers": seconds between two bytes of the answer.
    trickle_interval_seconds: float = 0.5
    #: "huge": the answer's size in bytes and its HTTP status.
    huge_bytes: int = 256 * 1024 * 1024
    huge_status: int = 200

    def __post_init__(self) -> None:
        for name in (
            "error_rate",
            "rate_limit_rate",
            "maintenance_rate",
            "body_error_rate",
            "timeout_rate",
            "malformed_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        for name in (
            "latency_seconds",
            "timeout_seconds",
            "retry_after_seconds",
            "trickle_interval_seconds",
            "huge_bytes",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    def rolls(self) -> tuple[tuple[str, float], ...]:
        """The (outcome, rate) pairs in the order a roll is matched against them."""
        return (
            ("500", self.error_rate),
            ("429", self.rate_limit_rate),
            ("455", self.maintenance_rate),
            ("body-error", self.body_error_rate),
            ("timeout", self.timeout_rate),
            ("malformed", self.malformed_rate),
        )


@dataclass(frozen=True)
class Call:
    """One request to the upload endpoint, as the emulator saw it (fileUrl without its query string)."""

    time: float
    body: dict[str, Any] | None
    status: int
    fault: str | None
    file_path: str | None
    #: ``url`` (file-url-upload) or ``stream`` (file-stream-upload: ``body`` names its fields and the file
    #: part's name and size). ``status`` 0: no answer (the "cut" outcome).
    transfer: str = "url"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Hook:
    """A test's callable run around the next ``times`` downloads of fileUrls (None: every one)."""

    callback: Callable[[str], object]
    times: int | None


@dataclass(frozen=True)
class _Outcome:
    kind: str
    body_code: int | None = None


@dataclass(frozen=True)
class _StoredFile:
    data: bytes | bytearray  # a stream upload's bytes stay in the buffer they were received into
    mime_type: str
    stored_at: float


@dataclass
class _Response:
    status: int
    body: bytes | bytearray = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    fault: str | None = None
    #: Sent after the headers instead of ``body`` (whose Content-Length is ``length``), ``pause`` s apart.
    chunks: Iterator[bytes] | None = None
    length: int | None = None
    pause: float = 0.0
    #: Seconds between two bytes of the status line and headers.
    head_pause: float = 0.0
    #: Close the connection after answering (part of the request body was left unread); status 0: close
    #: without answering at all.
    close: bool = False


class _BadRequest(Exception):
    """A request kie.ai would refuse with HTTP 400 (or ``status``)."""

    def __init__(self, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.msg = msg
        self.status = status


def _json_response(status: int, payload: Any, **kwargs: Any) -> _Response:
    return _Response(status, json.dumps(payload, ensure_ascii=False).encode(), **kwargs)


def _error(status: int, msg: str, *, code: int | None = None, **kwargs: Any) -> _Response:
    payload = {"success": False, "code": status if code is None else code, "msg": msg}
    return _json_response(status, payload, **kwargs)


def _trickled(response: _Response, interval: float) -> _Response:
    body = bytes(response.body)
    chunks = (body[i : i + 1] for i in range(len(body)))
    return dataclasses.replace(response, body=b"", chunks=chunks, length=len(body), pause=interval)


def _huge_body(size: int) -> Iterator[bytes]:
    """``size`` bytes of an error answer that never closes its ``msg``, without holding them in memory."""
    head = b'{"success": false, "code": 500, "msg": "'
    block = b"x" * _CHUNK_BYTES
    yield head[:size]
    left = size - len(head[:size])
    while left > 0:
        yield block[:left]
        left -= len(block[:left])


def _echo_response(body: dict[str, Any] | None) -> _Response:
    """HTTP 400 whose msg repeats the fileUrl's secret query values, decoded, outside any URL."""
    file_url = body.get("fileUrl") if body else None
    try:
        query = urlsplit(file_url).query if isinstance(file_url, str) else ""
    except ValueError:
        query = ""
    values = [value for name, value in parse_qsl(query) if name.lower() in _SECRET_QUERY_NAMES]
    echoed = json.dumps({"sig": values[-1]}) if values else "{}"
    msg = f"Failed to download file: the origin refused {' and '.join(values)}; details {echoed}"
    return _error(400, msg, fault="echo")


def _parse_outcome(entry: str | int | dict[str, Any]) -> _Outcome:
    """Validate one script entry: a name from ``_SIMPLE_OUTCOMES`` or ``{"bodyCode": N}``."""
    if isinstance(entry, dict):
        code = entry.get("bodyCode")
        if set(entry) != {"bodyCode"} or not isinstance(code, int) or isinstance(code, bool):
            raise ValueError(f"a dict outcome must be {{'bodyCode': <int>}}, got {entry!r}")
        return _Outcome("body-error", code)
    kind = str(entry)
    if kind not in _SIMPLE_OUTCOMES:
        expected = ", ".join(sorted(_SIMPLE_OUTCOMES))
        raise ValueError(f"unknown outcome {entry!r}; expected one of {expected} or {{'bodyCode': N}}")
    return _Outcome(kind)


def strip_query(url: str) -> str:
    """The URL without query, fragment or credentials: safe to log or echo."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _redact_body(body: dict[str, Any] | None) -> dict[str, Any] | None:
    if body is None:
        return None
    redacted = dict(body)
    if isinstance(redacted.get("fileUrl"), str):
        redacted["fileUrl"] = strip_query(redacted["fileUrl"])
    return redacted


def _scrub(text: str) -> str:
    """Drop anything that looks like a query string from an error text (a presigned signature lives there)."""
    return _QUERY_RE.sub("", text)


def file_name_from_url(url: str) -> str:
    """The URL path's last segment, URL-decoded; ``file`` when there is none usable."""
    name = unquote(urlsplit(url).path.rpartition("/")[2])
    if not name or "/" in name or name in (".", ".."):
        return "file"
    return name


def mime_type_for(content_type: str | None, file_name: str) -> str:
    """The download's media type when specific, else a guess from the name, else octet-stream."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if "/" in media and media not in _GENERIC_MEDIA_TYPES:
        return media
    guessed, _ = mimetypes.guess_type(file_name)
    return guessed or "application/octet-stream"


def iso_utc_millis(epoch_seconds: float) -> str:
    """``2025-01-01T12:00:00.000Z``: the seed's uploadedAt format."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _validate_upload(body: dict[str, Any]) -> tuple[str, str, str | None]:
    """(fileUrl, uploadPath, fileName or None) of a valid body; raises _BadRequest with kie.ai's messages."""
    file_url = body.get("fileUrl")
    if file_url is None or file_url == "":
        raise _BadRequest("Missing required parameter: fileUrl")
    if not isinstance(file_url, str):
        raise _BadRequest("Invalid parameter: fileUrl must be a string")
    try:
        parts = urlsplit(file_url)
    except ValueError:
        raise _BadRequest("Invalid parameter: fileUrl is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _BadRequest("Invalid parameter: fileUrl must be an http or https URL")
    upload_path, file_name = _validate_path_and_name(body.get("uploadPath"), body.get("fileName"))
    return file_url, upload_path, file_name


def _validate_path_and_name(upload_path: Any, file_name: Any) -> tuple[str, str | None]:
    """(uploadPath, fileName or None), the rules both uploads share; raises _BadRequest like kie.ai."""
    if upload_path is None or upload_path == "":
        raise _BadRequest("Missing required parameter: uploadPath")
    if not isinstance(upload_path, str):
        raise _BadRequest("Invalid parameter: uploadPath must be a string")
    if upload_path.startswith("/") or upload_path.endswith("/"):
        raise _BadRequest("Invalid parameter: uploadPath must not start or end with '/'")
    if any(segment in ("", ".", "..") for segment in upload_path.split("/")):
        raise _BadRequest("Invalid parameter: uploadPath must not contain empty, '.' or '..' segments")
    if file_name is not None and not isinstance(file_name, str):
        raise _BadRequest("Invalid parameter: fileName must be a string")
    if file_name and ("/" in file_name or file_name in (".", "..")):
        raise _BadRequest("Invalid parameter: fileName must not contain '/'")
    return upload_path, file_name or None


def _describe_download_error(exc: BaseException) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return "timed out"
    text = str(reason) or type(reason).__name__
    return _scrub(text)


class _Incomplete(_BadRequest):
    """The request body ended before its ``Content-Length``: the client went away mid-body."""

    def __init__(self) -> None:
        super().__init__("Invalid request body: it ended before its Content-Length")


class _BodyReader:
    """Exactly ``length`` bytes of a request body, handed out as they arrive."""

    def __init__(self, rfile: Any, length: int) -> None:
        self._rfile = rfile
        self.left = length

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; ``b""`` once ``length`` bytes were read; :class:`_Incomplete` if the
        connection ends (or breaks) before."""
        if self.left <= 0:
            return b""
        want = min(size, self.left)
        try:
            chunk: bytes = self._rfile.read1(want)  # what has arrived, without waiting for all of it
        except OSError:
            raise _Incomplete() from None
        if not chunk:
            raise _Incomplete()
        self.left -= len(chunk)
        return chunk

    read1 = read  # a reader of a reader (the "cut" outcome reads the first part of a body)

    def drain(self, limit: int) -> bool:
        """Read and drop what is left, at most ``limit`` bytes; whether the body was read to its end."""
        dropped = 0
        try:
            while self.left > 0 and dropped < limit:
                dropped += len(self.read(min(_CHUNK_BYTES, limit - dropped)))
        except _Incomplete:
            return False
        return self.left <= 0


@dataclass
class _Part:
    """One part of a ``multipart/form-data`` body."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytearray


_EXTENSION_RE = re.compile(r"\.[A-Za-z0-9]{1,10}")
#: RFC 2046's boundary: 1 to 70 of these characters, not ending in a space.
_BOUNDARY_RE = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


class _Multipart:
    """A ``multipart/form-data`` body parsed as it arrives (RFC 7578 / RFC 2046): bytes are searched for
    the delimiter in a window of one chunk, so a large file part is never searched (nor held) twice."""

    def __init__(self, reader: _BodyReader, boundary: str, max_file_bytes: int | None) -> None:
        self._reader = reader
        self._delimiter = b"\r\n--" + boundary.encode("ascii")
        # A body may start with its first delimiter: reading it as one that follows a line break is RFC
        # 2046's own reading (the CRLF before a delimiter belongs to the delimiter).
        self._buf = bytearray(b"\r\n")
        self._max_file_bytes = max_file_bytes
        #: The parts read whole so far (what a body cut short had delivered).
        self.seen: dict[str, _Part] = {}

    def parts(self) -> dict[str, _Part]:
        """Every part by name; raises _BadRequest (413 for a file over the limit, _Incomplete for a cut)."""
        self._until(self._delimiter, None, _MAX_FORM_OVERHEAD_BYTES, "preamble")  # the preamble is ignored
        parts = self.seen
        while not self._closed():
            part = self._part()
            if part.name in parts:
                raise _BadRequest(f"Invalid multipart body: the part {part.name!r} is given twice")
            parts[part.name] = part
        while self._reader.read(_CHUNK_BYTES):  # the epilogue, up to Content-Length, is ignored
            pass
        return parts

    def _closed(self) -> bool:
        """After a delimiter: ``--`` closes the body; otherwise transport padding and CRLF start a part."""
        self._fill(2)
        if self._buf[:2] == b"--":
            return True
        while True:
            self._fill(2)
            if self._buf[:2] == b"\r\n":
                del self._buf[:2]
                return False
            if self._buf[:1] not in (b" ", b"\t"):
                raise _BadRequest("Invalid multipart body: a delimiter is not followed by a line break")
            del self._buf[:1]

    def _part(self) -> _Part:
        raw = bytearray()
        self._fill(2)
        if self._buf[:2] == b"\r\n":  # no header at all
            del self._buf[:2]
        else:
            self._until(b"\r\n\r\n", raw, _MAX_PART_HEADER_BYTES, "part headers")
        try:
            headers = HeaderParser().parsestr(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise _BadRequest("Invalid multipart body: part headers are not UTF-8") from None
        if headers.get_content_disposition() != "form-data":
            raise _BadRequest("Invalid multipart body: a part without Content-Disposition: form-data")
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise _BadRequest("Invalid multipart body: a part without a name")
        filename = headers.get_filename()
        data = bytearray()
        limit = _MAX_FIELD_BYTES if name != "file" else self._max_file_bytes
        self._until(self._delimiter, data, limit, name)
        return _Part(name, filename, headers.get("Content-Type"), data)

    def _fill(self, size: int) -> None:
        while len(self._buf) < size:
            chunk = self._reader.read(_CHUNK_BYTES)
            if not chunk:
                raise _BadRequest("Invalid multipart body: it ends before its closing boundary")
            self._buf += chunk

    def _until(self, marker: bytes, sink: bytearray | None, limit: int | None, what: str) -> None:
        """Move the bytes before ``marker`` into ``sink`` (or drop them), and consume ``marker``."""
        keep = len(marker) - 1  # a marker may straddle two chunks
        taken = 0
        while True:
            index = self._buf.find(marker)
            take = index if index >= 0 else max(0, len(self._buf) - keep)
            taken += take
            if limit is not None and taken > limit:
                if what == "file":
                    raise _BadRequest("File too large", 413)
                raise _BadRequest(f"Invalid multipart body: the {what} is too long")
            if take:
                if sink is not None:
                    sink += self._buf[:take]
                del self._buf[:take]
            if index >= 0:
                del self._buf[: len(marker)]
                return
            chunk = self._reader.read(_CHUNK_BYTES)
            if not chunk:
                raise _BadRequest("Invalid multipart body: it ends before its closing boundary")
            self._buf += chunk


def _text(part: _Part | None) -> str | None:
    """A text field's value (UTF-8), None when absent; _BadRequest when not text."""
    if part is None:
        return None
    try:
        return part.data.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadRequest(f"Invalid parameter: {part.name} must be UTF-8 text") from None


def _form_summary(parts: dict[str, _Part]) -> dict[str, Any]:
    """What a stream upload's call log keeps: the text fields, and of the file its name, type and size."""
    summary: dict[str, Any] = {}
    for name, part in parts.items():
        if name == "file":
            summary[name] = {
                "filename": part.filename,
                "contentType": part.content_type,
                "size": len(part.data),
            }
        else:
            summary[name] = part.data[:200].decode("utf-8", "replace")
    return summary


def _cut_short(headers: Message, reader: _BodyReader, size: int) -> dict[str, Any] | None:
    """Read ``size`` bytes of a multipart body (the "cut" outcome); the fields they held whole, if any."""
    try:
        multipart = _Multipart(
            _BodyReader(reader, size), _multipart_boundary(headers.get("Content-Type")), None
        )
    except _BadRequest:
        reader.drain(size)
        return None
    with contextlib.suppress(_BadRequest):
        multipart.parts()
    return _form_summary(multipart.seen) if multipart.seen else None


def _multipart_boundary(content_type: str | None) -> str:
    """The boundary of a ``multipart/form-data`` Content-Type; _BadRequest otherwise."""
    message = Message()
    message["Content-Type"] = content_type or ""
    boundary = message.get_param("boundary")
    if message.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise _BadRequest("Invalid Content-Type: expected multipart/form-data with a boundary")
    if not _BOUNDARY_RE.fullmatch(boundary):
        raise _BadRequest("Invalid Content-Type: the multipart boundary is malformed")
    return boundary


def _random_name(part_name: str | None) -> str:
    """kie.ai names a file without ``fileName`` at random (its quick-start); the part's extension is kept."""
    suffix = os.path.splitext(part_name or "")[1]
    if not _EXTENSION_RE.fullmatch(suffix):
        suffix = ""
    return secrets.token_hex(8) + suffix


class KieEmulator:
    """kie.ai's URL and stream upload endpoints on a loopback port, served from a daemon thread."""

    def __init__(
        self,
        *,
        api_key: str,
        host: str = "127.0.0.1",
        port: int = 0,
        retention_seconds: int = DEFAULT_RETENTION_SECONDS,
        download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
        public_base_url: str | None = None,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
        max_file_bytes: int | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        self.host = host
        self.port = port
        self.retention_seconds = retention_seconds
        self.download_timeout = download_timeout
        #: The stream upload refuses a larger file (HTTP 413); None: no limit (kie.ai publishes none).
        self.max_file_bytes = max_file_bytes
        self._api_key = api_key.encode()
        self._public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self._clock = clock
        # A short stable per-key folder, like the real service's `https://tempfile.redpandaai.co/xxx/...`.
        self.account = hashlib.sha256(self._api_key).hexdigest()[:12]
        self._lock = threading.Lock()
        self._faults = faults or Faults()
        self._rng = random.Random(self._faults.seed)
        self._script: deque[_Outcome] = deque()
        self._files: dict[str, _StoredFile] = {}
        self._calls: list[Call] = []
        self._upload_count = 0
        self._streamed: list[int] = []
        self._last_purge = 0.0
        self._stopping = threading.Event()
        # In-process test hooks (see on_fetch, after_fetch, refuse_hosts); cleared by reset().
        self._hooks: dict[str, list[_Hook]] = {
            "on_fetch": [],
            "after_fetch": [],
            "on_stream": [],
            "after_stream": [],
        }
        self._refused: set[str] = set()
        self.hook_errors: list[Exception] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # The emulator only downloads from loopback stand-ins: never through an environment proxy.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- lifecycle -------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def public_base_url(self) -> str:
        return self._public_base_url or self.base_url

    def start(self) -> KieEmulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server_class = _Server6 if ":" in self.host else _Server
        self._stopping.clear()
        self._server = server_class((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="kie-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; wakes handlers sleeping on an injected fault."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> KieEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- steering ------------------------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    def set_faults(self, faults: Faults | None = None, **fields: Any) -> None:
        """Replace the random faults (``fields`` override ``faults`` or the defaults) and reseed."""
        new = dataclasses.replace(faults or Faults(), **fields)
        with self._lock:
            self._faults = new
            self._rng = random.Random(new.seed)

    def script(self, *outcomes: str | dict[str, Any]) -> None:
        """Append forced outcomes for the next upload calls; they take precedence over random faults."""
        parsed = [_parse_outcome(entry) for entry in outcomes]
        with self._lock:
            self._script.extend(parsed)

    def reset(self) -> None:
        """Forget files, calls, faults and the script."""
        with self._lock:
            self._files.clear()
            self._calls.clear()
            self._script.clear()
            self._upload_count = 0
            self._streamed.clear()
            self._faults = Faults()
            self._rng = random.Random()
            for hooks in self._hooks.values():
                hooks.clear()
            self._refused.clear()
            self.hook_errors.clear()

    # -- in-process test hooks (no admin endpoint: a callable cannot cross a process boundary) -------------

    def on_fetch(self, callback: Callable[[str], object], times: int | None = 1) -> None:
        """Run ``callback(fileUrl)`` right before each of the next ``times`` downloads (None: every one).

        It runs in the handler thread, after authentication and validation, so a test can change the
        object between the client's presign and kie.ai's fetch. An exception it raises is kept in
        ``hook_errors`` and the call is answered 500, as any bug of the emulator is.
        """
        self._add_hook("on_fetch", callback, times)

    def after_fetch(self, callback: Callable[[str], object], times: int | None = 1) -> None:
        """Run ``callback(fileUrl)`` right after each of the next ``times`` downloads, before the answer.

        It runs whether the download succeeded or failed (a change between kie.ai's fetch and the client
        reading the answer).
        """
        self._add_hook("after_fetch", callback, times)

    def on_stream(self, callback: Callable[[str], object], times: int | None = 1) -> None:
        """Run ``callback(path)`` (the endpoint's path) when each of the next ``times`` stream uploads is
        authenticated, before its body is read (None: every one): a test can change the object while the
        function streams it. An exception it raises is kept in ``hook_errors``; the call is answered 500."""
        self._add_hook("on_stream", callback, times)

    def after_stream(self, callback: Callable[[str], object], times: int | None = 1) -> None:
        """Run ``callback(file_path)`` (``uploadPath/fileName``) once each of the next ``times`` stream
        uploads' body was read whole and found valid, before the file is stored and answered."""
        self._add_hook("after_stream", callback, times)

    def refuse_hosts(self, *hostports: str) -> None:
        """Fail downloads from these ``host:port`` (or bare ``host``: any port) as an unreachable origin.

        The upload call is answered like a refused connection: HTTP 500 with
        ``Failed to download file: [Errno 111] Connection refused``. Adds to the hosts refused before.
        """
        with self._lock:
            self._refused.update(hostport.strip().lower() for hostport in hostports)

    def _add_hook(self, kind: str, callback: Callable[[str], object], times: int | None) -> None:
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 or None, got {times!r}")
        with self._lock:
            self._hooks[kind].append(_Hook(callback, times))

    def _run_hooks(self, kind: str, url: str) -> None:
        """Run (outside the lock) the hooks of ``kind`` that are still due, consuming one use of each."""
        with self._lock:
            due = list(self._hooks[kind])
            for hook in due:
                if hook.times is not None:
                    hook.times -= 1
            self._hooks[kind] = [hook for hook in due if hook.times is None or hook.times > 0]
        for hook in due:
            try:
                hook.callback(url)
            except Exception as exc:
                with self._lock:
                    self.hook_errors.append(exc)
                raise

    def _refuses(self, url: str) -> bool:
        with self._lock:
            if not self._refused:
                return False
            refused = set(self._refused)
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError:
            return False
        host = (parts.hostname or "").lower()
        return host in refused or f"{host}:{port}" in refused

    # -- inspection ----------------------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    @property
    def streamed_bytes(self) -> list[int]:
        """Bytes really written of each trickled (head or body) or huge answer, once its writing has ended."""
        with self._lock:
            return list(self._streamed)

    def _note_streamed(self, sent: int) -> None:
        with self._lock:
            self._streamed.append(sent)

    @property
    def upload_count(self) -> int:
        with self._lock:
            return self._upload_count

    def stored(self, file_path: str) -> bytes | None:
        """The bytes stored under ``file_path`` (``uploadPath/fileName``), None when unknown or expired."""
        stored = self._lookup(file_path)
        return bytes(stored.data) if stored else None

    @property
    def stored_paths(self) -> list[str]:
        """Every file path stored now (``uploadPath/fileName``)."""
        with self._lock:
            return sorted(self._files)

    def download_url(self, file_path: str) -> str:
        segments = "/".join(quote(segment, safe="") for segment in file_path.split("/"))
        return f"{self.public_base_url}{FILES_PREFIX}{self.account}/{segments}"

    # -- request handling (called from handler threads) -----------------------------------------------------

    def handle(self, method: str, path: str, headers: Message, body: bytes) -> _Response:
        """Route one request; never raises."""
        try:
            if path == UPLOAD_PATH:
                if method != "POST":
                    return _error(405, "Method not allowed", headers={"Allow": "POST"})
                return self._upload(headers, body)
            if path.startswith(FILES_PREFIX):
                if method not in ("GET", "HEAD"):
                    return _error(405, "Method not allowed", headers={"Allow": "GET, HEAD"})
                return self._serve_file(path[len(FILES_PREFIX) :])
            if path.startswith(ADMIN_PREFIX):
                return self._admin(method, path[len(ADMIN_PREFIX) :], body)
            return _error(404, "Not found")
        except Exception:  # a bug here must still answer like a server would
            logger.exception("emulator error on %s %s", method, path)
            return _error(500, "Internal server error")

    def _upload(self, headers: Message, raw: bytes) -> _Response:
        body = _parse_json_object(raw)
        outcome, faults = self._next_outcome()
        self._sleep(faults.latency_seconds)
        fault = None if outcome.kind == "ok" else outcome.kind
        if outcome.kind == "timeout":
            # The gateway stalls past the client's timeout, then handles the call anyway.
            self._sleep(faults.timeout_seconds)
            response, file_path = self._process_upload(headers, body)
        elif outcome.kind in ("ok", "trickle", "trickle-headers"):
            # A trickled answer is a real one (the file is stored), sent a byte at a time.
            response, file_path = self._process_upload(headers, body)
            if outcome.kind == "trickle":
                response = _trickled(response, faults.trickle_interval_seconds)
            elif outcome.kind == "trickle-headers":
                response.head_pause = faults.trickle_interval_seconds
        elif outcome.kind == "echo":
            response, file_path = _echo_response(body), None
        elif outcome.kind == "cut":
            response, file_path = _Response(0, close=True), None  # the connection closes, no answer
        else:
            response, file_path = self._fault_response(outcome, faults), None
        response.fault = fault
        with self._lock:
            self._calls.append(Call(self._clock(), _redact_body(body), response.status, fault, file_path))
        return response

    def handle_stream(self, method: str, headers: Message, rfile: Any) -> _Response:
        """``POST /api/file-stream-upload``: reads the body from ``rfile`` itself, as it arrives; never
        raises. A response with ``close`` set left part of the body unread (an early answer, a cut)."""
        length_header = headers.get("Content-Length")
        try:
            length = int(length_header) if length_header is not None else -1
        except ValueError:
            length = -1
        reader = _BodyReader(rfile, max(length, 0))
        try:
            if method != "POST":
                response = _error(405, "Method not allowed", headers={"Allow": "POST"})
            else:
                response = self._stream_call(headers, reader, length)
        except Exception:  # a bug here must still answer like a server would
            logger.exception("emulator error on the stream upload")
            response = _error(500, "Internal server error")
        if reader.left > 0:
            # An answer before the body's end: drain a reasonable amount so that the client reads the
            # answer rather than a reset, and close unless the body was read to its end.
            drained = response.status != 0 and reader.drain(_MAX_DRAIN_BYTES)
            response.close = response.close or not drained
        return response

    def _stream_call(self, headers: Message, reader: _BodyReader, length: int) -> _Response:
        outcome, faults = self._next_outcome()
        self._sleep(faults.latency_seconds)
        fault = None if outcome.kind == "ok" else outcome.kind
        form: dict[str, Any] | None = None
        file_path: str | None = None
        if outcome.kind == "cut":
            # The connection goes away mid-body: half of it is read (the fields it holds are logged), then
            # closed without an answer.
            form = _cut_short(headers, reader, max(length, 0) // 2)
            response = _Response(0, close=True)
        elif outcome.kind in ("ok", "trickle", "trickle-headers", "timeout"):
            if outcome.kind == "timeout":
                self._sleep(faults.timeout_seconds)  # the gateway stalls, then handles the call anyway
            response, form, file_path = self._process_stream(headers, reader, length)
            if outcome.kind == "trickle":
                response = _trickled(response, faults.trickle_interval_seconds)
            elif outcome.kind == "trickle-headers":
                response.head_pause = faults.trickle_interval_seconds
        elif outcome.kind == "echo":
            response = _echo_response(None)  # a stream upload has no fileUrl to echo
        else:
            response = self._fault_response(outcome, faults)
        response.fault = fault
        with self._lock:
            self._calls.append(Call(self._clock(), form, response.status, fault, file_path, "stream"))
        return response

    def _process_stream(
        self, headers: Message, reader: _BodyReader, length: int
    ) -> tuple[_Response, dict[str, Any] | None, str | None]:
        """Authenticate, check the headers, read and parse the body, validate, store: (answer, what the
        form held, the stored file's path)."""
        if not self._authorized(headers.get("Authorization")):
            return _error(401, _AUTH_FAILED_MSG), None, None
        form: dict[str, Any] | None = None
        try:
            boundary = _multipart_boundary(headers.get("Content-Type"))
            if "chunked" in (headers.get("Transfer-Encoding") or "").lower() or length < 0:
                raise _BadRequest("Length Required: send the body with a Content-Length", 411)
            limit = self.max_file_bytes
            if limit is not None and length > limit + _MAX_FORM_OVERHEAD_BYTES:
                raise _BadRequest("File too large", 413)
            self._run_hooks("on_stream", STREAM_UPLOAD_PATH)
            parts = _Multipart(reader, boundary, limit).parts()
            form = _form_summary(parts)
            part = parts.get("file")
            if part is None:
                raise _BadRequest("Missing required parameter: file")
            upload_path, given_name = _validate_path_and_name(
                _text(parts.get("uploadPath")), _text(parts.get("fileName"))
            )
        except _BadRequest as exc:
            return _error(exc.status, exc.msg), form, None
        file_name = given_name or _random_name(part.filename)
        file_path = f"{upload_path}/{file_name}"
        self._run_hooks("after_stream", file_path)
        return self._store(file_path, file_name, part.data, part.content_type), form, file_path

    def _store(
        self, file_path: str, file_name: str, data: bytes | bytearray, content_type: str | None
    ) -> _Response:
        """Keep the file and answer the seed's success body (both uploads)."""
        mime_type = mime_type_for(content_type, file_name)
        now = self._clock()
        with self._lock:
            self._files[file_path] = _StoredFile(data, mime_type, now)
            self._upload_count += 1
        self._purge_expired(now)
        data_out = {
            "fileName": file_name,
            "filePath": file_path,
            "downloadUrl": self.download_url(file_path),
            "fileSize": len(data),
            "mimeType": mime_type,
            "uploadedAt": iso_utc_millis(now),
        }
        payload = {"success": True, "code": 200, "msg": SUCCESS_MSG, "data": data_out}
        return _json_response(200, payload)

    def _next_outcome(self) -> tuple[_Outcome, Faults]:
        with self._lock:
            faults = self._faults
            if self._script:
                return self._script.popleft(), faults
            rolls = faults.rolls()
            if not any(rate for _, rate in rolls):
                return _Outcome("ok"), faults
            roll, threshold = self._rng.random(), 0.0
            for kind, rate in rolls:
                threshold += rate
                if roll < threshold:
                    return _Outcome(kind, faults.body_error_code if kind == "body-error" else None), faults
            return _Outcome("ok"), faults

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    @staticmethod
    def _fault_response(outcome: _Outcome, faults: Faults) -> _Response:
        kind = outcome.kind
        if kind == "malformed":
            return _Response(200, _MALFORMED_BODY)
        if kind == "html":
            return _Response(200, _HTML_PAGE, content_type="text/html")
        if kind == "huge":
            size = faults.huge_bytes
            return _Response(faults.huge_status, chunks=_huge_body(size), length=size)
        if kind == "body-error":
            code = outcome.body_code if outcome.body_code is not None else faults.body_error_code
            return _error(200, _CODE_MESSAGES.get(code, f"Request failed with code {code}"), code=code)
        status = int(kind)
        headers = {"Retry-After": str(faults.retry_after_seconds)} if status == 429 else {}
        return _error(status, _CODE_MESSAGES[status], headers=headers)

    def _authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self._api_key)

    def _process_upload(self, headers: Message, body: dict[str, Any] | None) -> tuple[_Response, str | None]:
        if not self._authorized(headers.get("Authorization")):
            return _error(401, _AUTH_FAILED_MSG), None
        try:
            if body is None:
                raise _BadRequest("Invalid request body: expected a JSON object")
            file_url, upload_path, given_name = _validate_upload(body)
            self._run_hooks("on_fetch", file_url)
            try:
                data, content_type = self._download(file_url)
            finally:
                self._run_hooks("after_fetch", file_url)
        except _BadRequest as exc:
            return _error(exc.status, exc.msg), None
        file_name = given_name or file_name_from_url(file_url)
        file_path = f"{upload_path}/{file_name}"
        return self._store(file_path, file_name, data, content_type), file_path

    def _download(self, url: str) -> tuple[bytes, str | None]:
        """Fetch ``url`` into memory within ``download_timeout``; raises _BadRequest with a query-free msg."""
        if self._refuses(url):
            # What urllib reports for a closed port, as _describe_download_error words it.
            raise _BadRequest("Failed to download file: [Errno 111] Connection refused", 500)
        deadline = time.monotonic() + self.download_timeout
        request = urllib.request.Request(url, headers={"User-Agent": "kie-emulator/1.0"})
        try:
            with self._opener.open(request, timeout=self.download_timeout) as response:
                buffer = bytearray()
                while chunk := response.read(_CHUNK_BYTES):
                    buffer.extend(chunk)
                    if time.monotonic() > deadline:
                        raise TimeoutError("timed out")
                return bytes(buffer), response.headers.get("Content-Type")
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _BadRequest(f"Failed to download file: HTTP {exc.code}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _BadRequest(f"Failed to download file: {_describe_download_error(exc)}", 500) from None
        except ValueError:
            # urllib's messages quote the whole URL, query included: never echo them.
            raise _BadRequest("Failed to download file: invalid fileUrl") from None

    def _lookup(self, file_path: str) -> _StoredFile | None:
        with self._lock:
            stored = self._files.get(file_path)
            if stored is not None and self._clock() - stored.stored_at >= self.retention_seconds:
                del self._files[file_path]
                return None
            return stored

    def _purge_expired(self, now: float) -> None:
        with self._lock:
            if now - self._last_purge < _PURGE_INTERVAL_SECONDS:
                return
            self._last_purge = now
            expired = [p for p, f in self._files.items() if now - f.stored_at >= self.retention_seconds]
            for file_path in expired:
                del self._files[file_path]

    def _serve_file(self, rest: str) -> _Response:
        account, _, encoded_path = rest.partition("/")
        stored = self._lookup(unquote(encoded_path)) if account == self.account else None
        if stored is None:
            return _error(404, "File not found")
        return _Response(200, stored.data, content_type=stored.mime_type)

    def _admin(self, method: str, name: str, raw: bytes) -> _Response:
        routes: dict[tuple[str, str], Callable[[bytes], _Response]] = {
            ("GET", "health"): lambda _: _json_response(200, {"ok": True}),
            ("GET", "faults"): lambda _: _json_response(200, dataclasses.asdict(self.faults)),
            ("POST", "faults"): self._admin_faults,
            ("POST", "script"): self._admin_script,
            ("POST", "reset"): self._admin_reset,
            ("GET", "calls"): lambda _: _json_response(200, [call.to_dict() for call in self.calls]),
        }
        route = routes.get((method, name))
        if route is not None:
            return route(raw)
        if any(route_name == name for _, route_name in routes):
            return _error(405, "Method not allowed")
        return _error(404, "Not found")

    def _admin_faults(self, raw: bytes) -> _Response:
        fields = _parse_json_object(raw) if raw.strip() else {}
        if fields is None:
            return _error(400, "Invalid request body: expected a JSON object of Faults fields")
        try:
            faults = Faults(**fields)
        except (TypeError, ValueError) as exc:
            return _error(400, f"Invalid faults: {exc}")
        self.set_faults(faults)
        return _json_response(200, {"ok": True, "faults": dataclasses.asdict(faults)})

    def _admin_script(self, raw: bytes) -> _Response:
        body = _parse_json_object(raw)
        outcomes = body.get("outcomes") if body else None
        if not isinstance(outcomes, list):
            return _error(400, 'Invalid request body: expected {"outcomes": [...]}')
        try:
            self.script(*outcomes)
        except ValueError as exc:
            return _error(400, f"Invalid script: {exc}")
        with self._lock:
            queued = len(self._script)
        return _json_response(200, {"ok": True, "queued": queued})

    def _admin_reset(self, _raw: bytes) -> _Response:
        self.reset()
        return _json_response(200, {"ok": True})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so benchmarks measure the emulator rather than TCP setup
    server_version = "kie-emulator/1.0"
    timeout = 120  # idle keep-alive connections must not pin threads forever
    # Headers and body go out as two writes: with Nagle on, a keep-alive client's delayed ACK adds ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET  # noqa: N815

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        if path == STREAM_UPLOAD_PATH:  # its body can be large: the endpoint reads it as it arrives
            response = self.server.emulator.handle_stream(self.command, self.headers, self.rfile)
            logger.info("%s %s %d fault=%s", self.command, path, response.status, response.fault or "-")
            self._write(response)
            return
        try:
            body = self._read_body()
        except _BadRequest as exc:
            response = _error(exc.status, exc.msg)
            self.close_connection = True  # the rest of the body is still on the wire
        else:
            response = self.server.emulator.handle(self.command, path, self.headers, body)
        # Never the query string nor any header: one line per request, before answering so that a client
        # that has its answer can rely on the line being there.
        logger.info("%s %s %d fault=%s", self.command, path, response.status, response.fault or "-")
        self._write(response)

    def _read_body(self) -> bytes:
        """The whole request body; _BadRequest when unreadable or over MAX_REQUEST_BYTES."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_REQUEST_BYTES:
            # Drain a moderately large body so that closing does not reset the connection under the
            # client's feet before it has read the 413.
            remaining = length if length <= 16 * MAX_REQUEST_BYTES else 0
            while remaining > 0 and (chunk := self.rfile.read(min(remaining, _CHUNK_BYTES))):
                remaining -= len(chunk)
            raise _BadRequest("Request body too large", 413)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        # A client streaming its body (requests with a generator): read it all to keep keep-alive in step.
        body = bytearray()
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise _BadRequest("Invalid chunked request body") from None
            if size == 0 or len(body) + size > MAX_REQUEST_BYTES:
                break
            body.extend(self.rfile.read(size))
            self.rfile.readline(1024)  # the CRLF after each chunk
        if size:
            raise _BadRequest("Request body too large", 413)
        while self.rfile.readline(1024).strip():  # trailers, up to the blank line
            pass
        return bytes(body)

    def _write(self, response: _Response) -> None:
        if response.close:
            self.close_connection = True  # part of the request body is still on the wire
        if response.status == 0:
            return  # the "cut" outcome: no answer
        length = len(response.body) if response.length is None else response.length
        try:
            if response.head_pause:
                self._write_slowly(self._head(response, length), 1, response.head_pause)
            else:
                self.send_response(response.status, _reason(response.status))
                self.send_header("Content-Type", _with_charset(response.content_type))
                self.send_header("Content-Length", str(length))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
            if self.command != "HEAD":
                if response.chunks is not None:
                    self._write_chunks(response.chunks, response.pause)
                else:
                    self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. it timed out on an injected stall): nothing left to answer.
            self.close_connection = True

    def _head(self, response: _Response, length: int) -> bytes:
        lines = [
            f"HTTP/1.1 {response.status} {_reason(response.status)}",
            f"Server: {self.server_version}",
            f"Content-Type: {_with_charset(response.content_type)}",
            f"Content-Length: {length}",
        ]
        lines += [f"{name}: {value}" for name, value in response.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _write_slowly(self, data: bytes, step: int, pause: float) -> None:
        self._write_chunks((data[i : i + step] for i in range(0, len(data), step)), pause)

    def _write_chunks(self, chunks: Iterator[bytes], pause: float) -> None:
        """Write ``chunks`` ``pause`` s apart; the bytes written are counted even when the client leaves."""
        sent = 0
        try:
            for chunk in chunks:
                if pause and self.server.emulator._stopping.wait(pause):
                    self.close_connection = True
                    return
                self.wfile.write(chunk)
                sent += len(chunk)
        finally:
            self.server.emulator._note_streamed(sent)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # http.server's own lines quote the raw request line, query string included: keep them out.
        return


def _reason(status: int) -> str:
    return {455: "Service Maintenance"}.get(status) or BaseHTTPRequestHandler.responses.get(status, ("",))[0]


def _with_charset(content_type: str) -> str:
    return f"{content_type}; charset=utf-8" if content_type == "application/json" else content_type


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler stalled on an injected fault must not block shutdown
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: KieEmulator) -> None:
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End every open (keep-alive) connection: a stopped kie.ai must not go on answering on them."""
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can take seconds; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Server6(_Server):
    address_family = socket.AF_INET6


# -- command line ---------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kie_uploader.emulator", description="Run the kie.ai URL and stream upload emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("KIE_EMULATOR_API_KEY"),
        help="the accepted Bearer key (default: $KIE_EMULATOR_API_KEY)",
    )
    parser.add_argument("--retention-seconds", type=int, default=DEFAULT_RETENTION_SECONDS)
    parser.add_argument("--download-timeout", type=float, default=DEFAULT_DOWNLOAD_TIMEOUT)
    parser.add_argument("--public-base-url", default=None)
    parser.add_argument(
        "--max-file-bytes", type=int, default=None, help="the stream upload refuses larger files (413)"
    )
    parser.add_argument("--latency", type=float, default=0.0, dest="latency_seconds")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--rate-limit-rate", type=float, default=0.0)
    parser.add_argument("--retry-after-seconds", type=int, default=1)
    parser.add_argument("--maintenance-rate", type=float, default=0.0)
    parser.add_argument("--body-error-rate", type=float, default=0.0)
    parser.add_argument("--body-error-code", type=int, default=500)
    parser.add_argument("--timeout-rate", type=float, default=0.0)
    parser.add_argument("--timeout-seconds", type=float, default=35.0)
    parser.add_argument("--malformed-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback host")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then exit 0."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("--api-key or $KIE_EMULATOR_API_KEY is required")
    if not args.allow_remote and not _is_loopback(args.host):
        parser.error(f"refusing to bind non-loopback host {args.host!r} without --allow-remote")
    fault_fields = {f.name for f in dataclasses.fields(Faults)}
    try:
        faults = Faults(**{name: value for name, value in vars(args).items() if name in fault_fields})
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    emulator = KieEmulator(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        retention_seconds=args.retention_seconds,
        download_timeout=args.download_timeout,
        public_base_url=args.public_base_url,
        faults=faults,
        max_file_bytes=args.max_file_bytes,
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    emulator.start()
    print(f"kie.ai emulator listening on {emulator.base_url}", flush=True)
    while not stop.wait(0.5):
        pass
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
