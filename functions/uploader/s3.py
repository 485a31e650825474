"""S3 adapter: the object's metadata (HeadObject), a presigned GET URL in the bucket's own region, and the
object's bytes as a stream (GetObject, for the stream transfer).

A bucket's region is learned once from HeadBucket's ``x-amz-bucket-region`` and cached; after an answer
that does not name it (a throttle, a 5xx, no connection) the default region serves that call only, and the
next call asks again.

The only module that talks to S3. botocore errors are classified here: 404 → :class:`ObjectNotFoundError`,
403 → :class:`ConfigurationError` (the role may not read the object), throttling/5xx/connection →
:class:`TransientError`, anything else → :class:`PermanentError`.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from uploader.errors import ConfigurationError, ObjectNotFoundError, PermanentError, TransientError
from uploader.models import ObjectHead

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_NOT_FOUND = {"404", "NoSuchKey", "NoSuchVersion", "NotFound", "NoSuchBucket"}
_DENIED = {"403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
_TRANSIENT = {"429", "500", "502", "503", "504", "SlowDown", "Throttling", "RequestTimeout", "InternalError"}
#: A GetObject stream that sends nothing for this long is stalled: the read fails (and the upload is retried).
STREAM_READ_TIMEOUT_SECONDS = 20.0


class S3Objects:
    """Reads object metadata and presigns GET URLs (SigV4) with a client of the bucket's region."""

    def __init__(self, client: S3Client | None = None) -> None:
        self._client = client or _new_client(None)
        self._default_region: str = self._client.meta.region_name or "us-east-1"
        self._regions: dict[str, str] = {}
        self._clients: dict[str, Any] = {self._default_region: self._client}
        # Worker threads share this adapter; boto3 client creation is not thread-safe.
        self._lock = threading.Lock()

    def head(self, bucket: str, key: str, version_id: str | None) -> ObjectHead:
        """The object's version id (``"null"`` when unversioned), ETag, size and content type."""
        from botocore.exceptions import BotoCoreError, ClientError

        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        try:
            answer = self._client_for(bucket).head_object(**params)
        except ClientError as exc:
            raise _classify(exc, f"S3 HeadObject s3://{bucket}/{key}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"S3 HeadObject failed: {type(exc).__name__}") from exc
        return _reading(answer)

    def open(self, bucket: str, key: str, version_id: str | None) -> ObjectStream:
        """The object's bytes (of this version, when given) as a stream: GetObject, whose ``reading`` names
        exactly the bytes it streams (ETag, size, Last-Modified). Close it (``with``)."""
        from botocore.exceptions import BotoCoreError, ClientError

        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id and version_id != "null":
            params["VersionId"] = version_id
        try:
            answer = self._client_for(bucket).get_object(**params)
        except ClientError as exc:
            raise _classify(exc, f"S3 GetObject s3://{bucket}/{key}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"S3 GetObject failed: {type(exc).__name__}") from exc
        return ObjectStream(answer["Body"], _reading(answer))

    def presign_get(self, bucket: str, key: str, version_id: str | None, expires_seconds: int) -> str:
        """A SigV4 presigned GET URL of this exact version (local computation, no network call)."""
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id and version_id != "null":
            params["VersionId"] = version_id
        url: str = self._client_for(bucket).generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expires_seconds
        )
        return url

    def _client_for(self, bucket: str) -> Any:
        with self._lock:
            region = self._regions.get(bucket)
            if region is None:
                learned = self._bucket_region(bucket)
                if learned is not None:
                    self._regions[bucket] = learned
                region = learned or self._default_region
            client = self._clients.get(region)
            if client is None:
                client = self._clients[region] = _new_client(region)
            return client

    def _bucket_region(self, bucket: str) -> str | None:
        """The bucket's region when an answer says it, else None (not known yet: ask again next time).

        S3 names it in x-amz-bucket-region, on success and on most errors (403/301); a successful answer
        without it comes from an S3 without regions, where the default is right.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._client.head_bucket(Bucket=bucket)
            headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        except ClientError as exc:
            named = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
            return str(named) if named else None
        except BotoCoreError:
            return None
        return str(headers.get("x-amz-bucket-region") or self._default_region)


class ObjectStream:
    """One GetObject's body, read in chunks; every read failure is a :class:`TransientError`.

    :meth:`abort` (from another thread: a call's deadline) shuts the connection down, so that a read blocked
    on S3 ends at once instead of after :data:`STREAM_READ_TIMEOUT_SECONDS`.
    """

    def __init__(self, body: Any, reading: ObjectHead) -> None:
        self.reading = reading
        self._body = body
        self._read = 0
        self._lock = threading.Lock()
        self._finished = False
        self._aborted = False
        self._socket = _socket_of(body)
        try:
            body.set_socket_timeout(STREAM_READ_TIMEOUT_SECONDS)
        except Exception:  # a body without a socket of its own: the client's read timeout holds
            pass

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (``b""`` at the end); S3's checksum, if it sent one, is checked at the end."""
        try:
            chunk: bytes = self._body.read(size)
        except Exception as exc:
            why = "the call's deadline passed" if self._aborted else type(exc).__name__
            raise TransientError(f"S3 GetObject stream failed after {self._read} bytes: {why}") from exc
        self._read += len(chunk)
        if not chunk:
            with self._lock:
                self._finished = True  # the connection is back in botocore's pool: never shut it down now
        return chunk

    def abort(self) -> None:
        """End a read blocked on S3 (called from another thread); nothing once the body was read whole."""
        with self._lock:
            if self._finished or self._socket is None:
                return
            self._aborted = True
            try:
                socket.socket.shutdown(self._socket, socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        with self._lock:
            self._finished = True
        try:
            self._body.close()
        except Exception:  # closing a broken stream: nothing left to do
            pass

    def __enter__(self) -> ObjectStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _reading(answer: Mapping[str, Any]) -> ObjectHead:
    """What a HeadObject or GetObject answer says of the object."""
    headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    modified = answer.get("LastModified")
    return ObjectHead(
        version_id=answer.get("VersionId") or "null",
        etag=str(answer.get("ETag", "")).strip('"'),
        size=int(answer.get("ContentLength", 0)),
        content_type=answer.get("ContentType"),
        last_modified=int(modified.timestamp()) if modified is not None else None,
        s3_time=_http_date(headers.get("date")),
    )


def _socket_of(body: Any) -> socket.socket | None:
    """The socket a botocore StreamingBody reads from (urllib3's connection), or None when not found."""
    raw = getattr(body, "_raw_stream", None)
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _http_date(value: Any) -> int | None:
    """An HTTP date (S3's ``Date`` header) as epoch seconds, or None when absent or unreadable."""
    if not value:
        return None
    try:
        return int(parsedate_to_datetime(str(value)).timestamp())
    except (TypeError, ValueError, IndexError):
        return None


def _new_client(region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    # SigV4 always (presigned URLs of SigV2 are refused in newer regions); standard retries for throttling.
    config = Config(signature_version="s3v4", retries={"mode": "standard", "max_attempts": 3})
    return boto3.client("s3", region_name=region or os.environ.get("AWS_REGION") or None, config=config)


def _classify(exc: Any, what: str) -> Exception:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    summary = f"{what}: {code or status}"
    if code in _NOT_FOUND or status == "404":
        return ObjectNotFoundError(summary)
    if code in _DENIED or status == "403":
        return ConfigurationError(f"{summary} (the function's role may not read this object)")
    if code in _TRANSIENT or status in _TRANSIENT or status.startswith("5"):
        return TransientError(summary)
    return PermanentError(summary)
