"""The stream transfer's request body: ``multipart/form-data`` of a known length, fed from S3 in chunks.

kie.ai's ``POST /api/file-stream-upload`` takes the parts ``uploadPath``, ``fileName`` and ``file`` (the
bytes). :class:`MultipartBody` is a file-like object with a length: requests sends it with a
``Content-Length`` and reads it in blocks (urllib3's 16 KiB), and each block is cut from the one chunk of
the object held at a time (:data:`CHUNK_BYTES`, read from S3's GetObject). No whole object in memory, no
copy in ``/tmp``: memory stays flat whatever the object's size.

The body sends exactly the object's bytes or fails: a source that ends early, or holds more than its
length, raises :class:`~uploader.errors.TransientError` before the closing boundary goes out, so kie.ai
never receives a complete body of other bytes (S3's own checksum, when it sends one, is checked by botocore
on the last read, also before the closing boundary).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Protocol

from uploader.errors import TransientError
from uploader.models import ObjectHead

#: Bytes of the object read from S3 at a time (the most of it held in memory).
CHUNK_BYTES = 1024 * 1024
#: A part's media type when the object's own is missing or unusable in a header.
DEFAULT_MEDIA_TYPE = "application/octet-stream"


class SourceChanged(Exception):
    """S3's GetObject names other bytes than the reading the upload was for: nothing was sent; ``head`` is
    the new reading (to upload instead, as when the object changed while kie.ai fetched it)."""

    def __init__(self, head: ObjectHead) -> None:
        super().__init__("the object changed before it was streamed")
        self.head = head


class Source(Protocol):
    """Where the object's bytes come from (:class:`uploader.s3.ObjectStream`)."""

    def read(self, size: int) -> bytes: ...

    def abort(self) -> None: ...


class MultipartBody:
    """``uploadPath``, ``fileName``, then ``file`` with ``size`` bytes read from ``source``.

    Read it once: ``read(n)`` hands out at most ``n`` bytes (``b""`` at the end), iterating gives blocks;
    ``len()`` is the whole body's length. :meth:`abort` ends a read blocked on the source (another thread:
    the call's deadline).
    """

    def __init__(
        self,
        source: Source,
        size: int,
        *,
        upload_path: str,
        file_name: str,
        media_type: str | None = None,
        boundary: str | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        if size < 0:
            raise ValueError(f"size must not be negative, got {size}")
        self.boundary = boundary or f"kie-uploader-{secrets.token_hex(16)}"
        self.size = size
        self._source = source
        self._chunk_bytes = chunk_bytes
        self._head = b"".join(
            [
                self._field("uploadPath", upload_path),
                self._field("fileName", file_name),
                self._delimiter(),
                b'Content-Disposition: form-data; name="file"; filename="%s"\r\n' % _quoted(file_name),
                b"Content-Type: %s\r\n\r\n" % _media_type(media_type).encode("ascii"),
            ]
        )
        self._tail = b"\r\n--%s--\r\n" % self.boundary.encode("ascii")
        self._length = len(self._head) + size + len(self._tail)
        self._segments = self._generate()
        self._pending = b""
        self._offset = 0
        #: Bytes of the body handed out so far.
        self.sent = 0

    @property
    def content_type(self) -> str:
        """The request's ``Content-Type`` (with the boundary)."""
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(self._chunk_bytes):
            yield block

    def read(self, size: int | None = -1) -> bytes:
        """At most ``size`` bytes of the body (all that is left for ``-1``/``None``); ``b""`` at its end."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(self._chunk_bytes), b""))
        while self._offset >= len(self._pending):
            segment = next(self._segments, None)
            if segment is None:
                return b""
            self._pending, self._offset = segment, 0
        block = self._pending[self._offset : self._offset + size]
        self._offset += len(block)
        self.sent += len(block)
        return block

    def abort(self) -> None:
        """End a read blocked on the source (called from another thread)."""
        self._source.abort()

    def _generate(self) -> Iterator[bytes]:
        yield self._head
        received = 0
        while received < self.size:
            chunk = self._source.read(min(self._chunk_bytes, self.size - received))
            if not chunk:
                raise TransientError(f"the object's stream ended after {received} of its {self.size} bytes")
            received += len(chunk)
            yield chunk
        # The read at the end: the source checks its length (and checksum) and frees its connection.
        if self._source.read(self._chunk_bytes):
            raise TransientError(f"the object's stream holds more than its {self.size} bytes")
        yield self._tail

    def _delimiter(self) -> bytes:
        return b"--%s\r\n" % self.boundary.encode("ascii")

    def _field(self, name: str, value: str) -> bytes:
        disposition = b'Content-Disposition: form-data; name="%s"\r\n\r\n' % name.encode("ascii")
        return self._delimiter() + disposition + value.encode("utf-8") + b"\r\n"


def _quoted(name: str) -> bytes:
    """A file name for a quoted header parameter, as browsers write it (RFC 7578 §4.2, WHATWG): UTF-8, with
    ``"``, CR and LF percent-encoded."""
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A").encode("utf-8")


def _media_type(value: str | None) -> str:
    """The object's media type when it is fit for a header (printable ASCII), else octet-stream."""
    if not value or not value.isascii() or any(ch < " " or ch == "\x7f" for ch in value):
        return DEFAULT_MEDIA_TYPE
    return value
