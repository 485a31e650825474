"""The demo's sample objects: small, valid files of a few types, generated in code (no binary fixtures).

Each sample says where it goes, how it reaches the function (an S3 notification; ``backfill``, for an
object put before the stack; a plain message on the queue) and which status its record must end in
(``NOT_WATCHED``: outside the stack's prefix, the function refuses it and nothing is written).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Literal

#: Samples the S3 notification covers live under this prefix; the demo deploys with ``prefix`` set to it.
NOTIFIED_PREFIX = "incoming/"
#: Under the notified prefix, put before the stack existed: no event ever came for it, ``backfill`` hands
#: it over.
EXISTING_PREFIX = f"{NOTIFIED_PREFIX}existing/"
#: Outside the watched prefix: ``backfill`` skips it, and the function refuses any message about it.
OUTSIDE_PREFIX = "archive/"
#: The status of an object the stack does not watch: no record, the function answers ``NOT_WATCHED``.
NOT_WATCHED = "NOT_WATCHED"

#: ``notification``: put after the deploy, its S3 event does it; ``backfill``: put before the deploy,
#: ``kie-uploader backfill`` enqueues it; ``queue``: a plain message (against a real stack); ``refused``:
#: outside what the stack watches: a plain message and a resolve request are refused, nothing is written.
Route = Literal["notification", "backfill", "queue", "refused"]


@dataclass(frozen=True)
class Sample:
    """One object the demo puts into the bucket."""

    key: str
    body: bytes
    content_type: str
    expected_status: str = "UPLOADED"
    route: Route = "notification"
    note: str = ""


def png(width: int = 32, height: int = 32) -> bytes:
    """A valid RGB PNG with a colour gradient (signature, IHDR, zlib-compressed IDAT, IEND)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = b"".join(
        b"\x00"  # filter type "none" for each scanline
        + bytes(v for x in range(width) for v in (x * 255 // width, y * 255 // height, 160))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def pdf(text: str = "Hello from kie-uploader") -> bytes:
    """A one-page PDF 1.4 with a correct cross-reference table, so strict readers open it."""
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 24 Tf 72 720 Td ({safe}) Tj ET".encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def demo_samples(max_object_bytes: int, *, root: str = "", outside_root: str = "") -> list[Sample]:
    """The demo's objects; ``root`` puts the watched ones under one more prefix, ``outside_root`` the one
    outside it (against a real bucket: under the stack's prefix, and outside it)."""
    big = b"x" * (max_object_bytes + 1)
    text = "kie-uploader demo\nS3 → kie.ai → DynamoDB\n".encode()
    return [
        Sample(f"{root}{NOTIFIED_PREFIX}images/gradient.png", png(), "image/png", note="an image"),
        Sample(f"{root}{NOTIFIED_PREFIX}docs/hello.pdf", pdf(), "application/pdf", note="a PDF"),
        Sample(
            f"{root}{NOTIFIED_PREFIX}notes/readme.txt", text, "text/plain; charset=utf-8", note="a text file"
        ),
        Sample(
            f"{root}{NOTIFIED_PREFIX}My Documents/résumé – été ü 東京.txt",
            "Spaces and non-ASCII characters in the key: résumé, été, 東京.\n".encode(),
            "text/plain; charset=utf-8",
            note="a key with spaces and non-ASCII characters",
        ),
        Sample(
            f"{root}{NOTIFIED_PREFIX}nested/2025/11/23/report.json",
            b'{"report": "nested prefix", "ok": true}\n',
            "application/json",
            note="a nested prefix",
        ),
        Sample(
            f"{root}{NOTIFIED_PREFIX}large/too-large.bin",
            big,
            "application/octet-stream",
            expected_status="FAILED",
            note=f"over the size limit ({max_object_bytes} bytes)",
        ),
        Sample(
            f"{root}{EXISTING_PREFIX}existing-object.txt",
            b"This object was here before the stack: no event came for it, kie-uploader backfill sent it.\n",
            "text/plain; charset=utf-8",
            route="backfill",
            note="put before the stack, handed over by kie-uploader backfill",
        ),
        Sample(
            f"{outside_root}{OUTSIDE_PREFIX}outside-the-prefix.txt",
            b"This object is outside the watched prefix: kie.ai must never get it.\n",
            "text/plain; charset=utf-8",
            expected_status=NOT_WATCHED,
            route="refused",
            note="outside the watched prefix: skipped by backfill, refused by the function",
        ),
    ]
