"""A fault-injecting HTTP reverse proxy in front of ministack: real servers, real boto3, real faults.

Every request is forwarded verbatim (method, path and query, headers in order including ``Host``, body)
so that SigV4 signatures, presigned URLs' included, still verify upstream. Each request is named
(service, operation, bucket/table/secret, key/pk) and the first matching :class:`Rule` with uses left
decides what happens to it::

    with FaultProxy(ministack.endpoint_url) as proxy:
        proxy.add(Rule("s3", "HeadObject", fail(503), times=4))        # S3 SlowDown, 4 times
        proxy.add(Rule("dynamodb", "UpdateItem", after(reset_after=True), key="k1"))  # lands, answer lost
        ... point AWS_ENDPOINT_URL at proxy.endpoint_url ...
        assert proxy.count("s3", "HeadObject") == 4

Mind botocore's counting: ``retries={"max_attempts": 3}`` in a client's Config means 3 *retries*, 4 attempts
(the function's S3 client); ``total_max_attempts`` counts them all. botocore 1.44's default is the standard
mode, where a client without retry settings (the function's DynamoDB and Secrets Manager clients) makes
4 attempts at DynamoDB (3 elsewhere); throttling backs off for seconds, 5xx and resets for milliseconds.

Callbacks receive the :class:`Request`; an exception they raise is kept in ``proxy.errors`` and the client
is answered 502. Stdlib only; one upstream connection per forwarded request (no stale keep-alive to retry).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import socketserver
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

LOOPBACK = "127.0.0.1"
_TARGET_SERVICES = {"DynamoDB_20120810": "dynamodb", "secretsmanager": "secretsmanager", "AmazonSQS": "sqs"}
#: Query names that turn an S3 call into a sub-resource's: ``?versioning`` → GetBucketVersioning, ...
_S3_SUBRESOURCES = {
    name: name.title() for name in ("acl", "cors", "location", "policy", "tagging", "versioning")
}
_S3_SUBRESOURCES |= {"notification": "NotificationConfiguration", "lifecycle": "LifecycleConfiguration"}
_VERBS = {"GET": "Get", "PUT": "Put", "DELETE": "Delete", "HEAD": "Head", "POST": "Post"}
_DEFAULT_CODES = {
    ("s3", 500): "InternalError",
    ("s3", 503): "SlowDown",
    ("dynamodb", 400): "ProvisionedThroughputExceededException",
    ("dynamodb", 500): "InternalServerError",
    ("dynamodb", 503): "ServiceUnavailable",
}


@dataclass
class Request:
    """One request the proxy received, as named by :func:`identify`."""

    method: str
    target: str  # path and query, as sent
    headers: Message
    body: bytes
    service: str  # s3, dynamodb, secretsmanager, sqs, ... (the SigV4 scope's), or "ministack" (admin)
    operation: str  # HeadObject, GetObject, UpdateItem, GetSecretValue, ...
    resource: str | None = None  # bucket, table or secret id
    key: str | None = None  # object key, or the item's pk
    presigned: bool = False  # credentials in the query (X-Amz-Signature)
    status: int | None = None  # what the client was answered; None while in flight or when dropped
    upstream_status: int | None = None  # what ministack answered, when forwarded
    client_port: int = 0  # the client's end of the connection: one per kept-alive connection


class Seen(NamedTuple):
    service: str
    operation: str
    resource: str | None
    key: str | None
    status: int | None


Callback = Callable[[Request], object]


@dataclass(frozen=True)
class Action:
    """What happens to a matched request, in this order: wait, before, forward, after, then answer
    ``fail`` (an AWS-shaped error), drop the connection (``reset``), or relay ministack's answer."""

    delay: float = 0.0
    before: Callback | None = None
    forward: bool = True
    after: Callback | None = None
    fail: tuple[int, str | None, str] | None = None
    reset: bool = False


def fail(status: int = 503, code: str | None = None, message: str = "Injected by the fault proxy") -> Action:
    """Answer an AWS error without forwarding (code: SlowDown, ProvisionedThroughputExceededException...)."""
    return Action(forward=False, fail=(status, code, message))


def reset() -> Action:
    """Close the client's connection with a TCP reset, without forwarding nor answering."""
    return Action(forward=False, reset=True)


def delay(seconds: float) -> Action:
    """Wait, then forward."""
    return Action(delay=seconds)


def before(callback: Callback) -> Action:
    """Run ``callback(request)``, then forward (e.g. change S3 while a request is in flight)."""
    return Action(before=callback)


def after(callback: Callback | None = None, *, reset_after: bool = False) -> Action:
    """Forward, run ``callback(request)``, then answer; ``reset_after``: the request lands upstream but its
    answer is lost (connection reset), which is how a write's retry after success is produced."""
    return Action(after=callback, reset=reset_after)


def fail_after_forward(
    status: int = 500, code: str | None = None, message: str = "Injected by the fault proxy"
) -> Action:
    """Forward (the request takes effect), then answer an error instead of ministack's answer."""
    return Action(fail=(status, code, message))


@dataclass
class Rule:
    """Applies ``action`` to the next ``times`` requests (None: all) that match every given field;
    ``key`` is a substring of the object key or pk, ``when`` any predicate on the :class:`Request`."""

    service: str | None
    operation: str | None
    action: Action
    resource: str | None = None
    key: str | None = None
    when: Callable[[Request], bool] | None = None
    times: int | None = 1
    hits: int = 0

    def matches(self, request: Request) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        fits = _fits(request, self.service, self.operation, self.resource, self.key)
        return fits and (self.when is None or self.when(request))


def _fits(
    r: Request, service: str | None, operation: str | None, resource: str | None, key: str | None
) -> bool:
    return (
        service in (None, r.service)
        and operation in (None, r.operation)
        and resource in (None, r.resource)
        and (key is None or (r.key is not None and key in r.key))
    )


# --- naming requests -----------------------------------------------------------------------------------


def identify(
    method: str, target: str, headers: Message, body: bytes
) -> tuple[str, str, str | None, str | None]:
    """(service, operation, resource, key) of one request to ministack."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    amz_target = headers.get("X-Amz-Target")
    if amz_target:  # the JSON protocols: DynamoDB, Secrets Manager, SQS, ...
        prefix, _, operation = amz_target.partition(".")
        return (_TARGET_SERVICES.get(prefix, prefix.lower()), operation, *_json_names(body))
    if parts.path.startswith(("/_ministack/", "/_localstack/")):
        return "ministack", parts.path.split("/", 2)[2], None, None
    credential = query.get("X-Amz-Credential", [""])[0] or (headers.get("Authorization") or "")
    scope = credential.split("/aws4_request")[0].rsplit("/", 1)[-1] if "aws4_request" in credential else "s3"
    if scope != "s3":  # the query protocols (CloudFormation, SNS...): the Action parameter
        form = parse_qs(body.decode("utf-8", "replace")) if method == "POST" else query
        return scope, (form.get("Action") or query.get("Action") or [method])[0], None, None
    return ("s3", *_s3_names(method, parts.path, query, headers))


def _json_names(body: bytes) -> tuple[str | None, str | None]:
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    for entry in doc.get("TransactItems") or ():  # a transaction: its first item's table and pk
        doc = next(iter(entry.values()), doc)
        break
    resource = doc.get("TableName") or doc.get("SecretId") or doc.get("QueueUrl")
    item = doc.get("Key") or doc.get("Item") or {}
    pk = item.get("pk") if isinstance(item, dict) else None
    key = next(iter(pk.values()), None) if isinstance(pk, dict) else None
    return resource, key if isinstance(key, str) else None


def _s3_names(
    method: str, path: str, query: dict[str, list[str]], headers: Message
) -> tuple[str, str | None, str | None]:
    """Path-style S3: ``/bucket/key``."""
    raw_bucket, _, raw_key = path[1:].partition("/")
    bucket, key = unquote(raw_bucket) or None, unquote(raw_key) or None
    verb = _VERBS.get(method, method.title())
    sub = next((_S3_SUBRESOURCES[name] for name in query if name in _S3_SUBRESOURCES), None)
    if bucket is None:
        return "ListBuckets", None, None
    if key is not None:
        if "uploadId" in query:
            names = {"PUT": "UploadPart", "POST": "CompleteMultipartUpload", "DELETE": "AbortMultipartUpload"}
            return names.get(method, "ListParts"), bucket, key
        if "uploads" in query:
            return "CreateMultipartUpload", bucket, key
        if method == "PUT" and not sub and "x-amz-copy-source" in headers:
            return "CopyObject", bucket, key
        return f"{verb}Object{sub or ''}", bucket, key
    if sub:
        return f"{verb}Bucket{sub}", bucket, None
    if method == "GET":
        listing = query.get("list-type") == ["2"]
        return (
            ("ListObjectVersions" if "versions" in query else "ListObjectsV2" if listing else "ListObjects"),
            bucket,
            None,
        )
    if method == "POST" and "delete" in query:
        return "DeleteObjects", bucket, None
    names = {"HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}
    return names.get(method, f"{verb}Bucket"), bucket, None


def error_answer(request: Request, status: int, code: str | None, message: str) -> _Answer:
    """The error AWS would send: S3's XML (no body for HEAD), the JSON protocols' ``__type``."""
    default = "InternalError" if status >= 500 else "ThrottlingException"
    code = code or _DEFAULT_CODES.get((request.service, status), default)
    if request.service == "s3":
        xml = (
            f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>FAULTPROXY</RequestId></Error>"
        )
        body = b"" if request.method == "HEAD" else b'<?xml version="1.0" encoding="UTF-8"?>\n' + xml.encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", "FAULTPROXY")]
    else:
        dynamodb = request.service == "dynamodb"
        kind = f"com.amazonaws.dynamodb.v20120810#{code}" if dynamodb else code
        body = json.dumps({"__type": kind, "message": message}).encode()
        content_type = "application/x-amz-json-1.0" if dynamodb else "application/x-amz-json-1.1"
        headers = [("Content-Type", content_type), ("x-amzn-RequestId", "FAULTPROXY")]
    reason = BaseHTTPRequestHandler.responses.get(status, ("Error",))[0]
    return _Answer(status, reason, [*headers, ("Content-Length", str(len(body)))], body)


# --- the proxy -----------------------------------------------------------------------------------------


@dataclass
class _Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    chunked: bool = False  # re-frame the (de-chunked) body as one chunk, keeping the headers verbatim


def _one_chunk(body: bytes) -> bytes:
    """A whole (de-chunked) body framed again as chunked encoding: one chunk, then the last."""
    return (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") + b"0\r\n\r\n"


class FaultProxy:
    """A reverse proxy on a free loopback port; ``rules`` decide each request's fate, ``requests`` keep it."""

    def __init__(self, upstream_url: str, *, upstream_timeout: float = 60.0) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or LOOPBACK, parts.port or 80)
        self.upstream_timeout = upstream_timeout
        self.rules: list[Rule] = []
        self.requests: list[Request] = []
        self.errors: list[Exception] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fault proxy is not started")
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        if self._server is None:
            self._stopping.clear()
            self._server = _Server((LOOPBACK, 0), self)
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            self._stopping.set()  # wakes delayed requests
            server.shutdown()
            server.server_close()
            server.close_connections()
            if self._thread is not None:
                self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def add(self, rule: Rule) -> Rule:
        """Add a rule after the others (the first matching rule with uses left wins); returns it."""
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Forget the rules, the requests seen and the errors."""
        with self._lock:
            self.rules.clear()
            self.requests.clear()
            self.errors.clear()

    @property
    def log(self) -> list[Seen]:
        with self._lock:
            return [Seen(r.service, r.operation, r.resource, r.key, r.status) for r in self.requests]

    def count(
        self,
        service: str | None = None,
        operation: str | None = None,
        resource: str | None = None,
        key: str | None = None,
        *,
        presigned: bool | None = None,
    ) -> int:
        """Requests seen that fit every given field (``key``: a substring)."""
        with self._lock:
            return sum(
                _fits(r, service, operation, resource, key) and presigned in (None, r.presigned)
                for r in self.requests
            )

    def _admit(self, request: Request) -> Action:
        with self._lock:
            self.requests.append(request)
            for rule in self.rules:
                if rule.matches(request):
                    rule.hits += 1
                    return rule.action
        return Action()

    def _forward(self, request: Request) -> _Answer:
        connection = http.client.HTTPConnection(*self.upstream, timeout=self.upstream_timeout)
        try:
            connection.putrequest(request.method, request.target, skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers.items():
                if name.lower() != "expect":  # the proxy answered 100-continue itself and has the body
                    connection.putheader(name, value)
            chunked = "chunked" in (request.headers.get("Transfer-Encoding") or "").lower()
            connection.endheaders((_one_chunk(request.body) if chunked else request.body) or None)
            response = connection.getresponse()
            framed = response.chunked or response.getheader("Content-Length") is not None
            answer = _Answer(response.status, response.reason, response.getheaders(), response.read())
            answer.chunked = response.chunked
            if not framed and request.method != "HEAD":  # close-delimited upstream: frame it for keep-alive
                answer.headers.append(("Content-Length", str(len(answer.body))))
            return answer
        finally:
            connection.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # an idle keep-alive connection does not pin its thread forever
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        proxy = self.server.proxy
        body = self._read_body()
        request = Request(
            self.command,
            self.path,
            self.headers,
            body,
            *identify(self.command, self.path, self.headers, body),
        )
        request.presigned = "X-Amz-Signature=" in urlsplit(self.path).query
        request.client_port = self.client_address[1]
        action = proxy._admit(request)
        try:
            if action.delay:
                proxy._stopping.wait(action.delay)
            if action.before:
                action.before(request)
            answer = proxy._forward(request) if action.forward else None
            request.upstream_status = answer.status if answer else None
            if action.after:
                action.after(request)
        except Exception as exc:  # a callback's bug or no upstream: say so, loudly
            with proxy._lock:
                proxy.errors.append(exc)
            answer = error_answer(request, 502, "FaultProxyError", f"{type(exc).__name__} in the fault proxy")
        else:
            if action.reset:
                self._drop()
                return
            if action.fail:
                answer = error_answer(request, *action.fail)
        assert answer is not None
        request.status = answer.status  # before answering: a client that has its answer finds it logged
        try:
            self._write(answer)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its own timeout)
            self.close_connection = True

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET  # noqa: N815

    def _read_body(self) -> bytes:
        if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = bytearray()
        while size := int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16):
            body += self.rfile.read(size)
            self.rfile.readline(1024)  # the CRLF closing the chunk
        while self.rfile.readline(1024).strip():  # trailers, up to the blank line
            pass
        return bytes(body)

    def _write(self, answer: _Answer) -> None:
        self.send_response_only(answer.status, answer.reason)  # no Server/Date of our own: verbatim
        for name, value in answer.headers:
            self.send_header(name, value)  # "Connection: close" also closes ours
        self.end_headers()
        if self.command != "HEAD" and answer.status not in (204, 304):
            self.wfile.write(_one_chunk(answer.body) if answer.chunked else answer.body)

    def _drop(self) -> None:
        """Close with RST (SO_LINGER 0): the client sees a connection reset, never an answer."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()  # really closed when finish() closes rfile
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return  # request lines carry presigned signatures: never log them


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:  # skip HTTPServer's FQDN lookup, which can take seconds
        socketserver.TCPServer.server_bind(self)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
