"""When a record's kie.ai URL may be handed out: the one rule the function and the operator's CLI share.

A record's ``downloadUrl`` is *live* when the record is ``UPLOADED`` and kie.ai's file outlives ``now`` by
more than ``min_valid`` seconds (kie.ai deletes uploads after its retention; ``expiresAt`` is when, in epoch
seconds). Given the object's current version (S3's version id and/or ETag), the record must also describe
that version: a URL of older bytes is not the object's URL.

Pure Python with no imports from the function's other modules: the CLI imports it from the wheel
(``kie_uploader.function.liveness``), the function as ``uploader.liveness``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

UPLOADED = "UPLOADED"


def expires_at(record: Mapping[str, Any] | None) -> float | None:
    """The record's ``expiresAt`` as a number, or ``None`` when it has none (or not a number)."""
    if not record:
        return None
    value = record.get("expiresAt")
    if isinstance(value, bool):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def strip_etag(etag: Any) -> str:
    """An ETag without its quotes (S3 answers ``"abc"``; events and the table carry ``abc``)."""
    return str(etag or "").strip('"')


def describes(record: Mapping[str, Any], *, version_id: str | None = None, etag: str | None = None) -> bool:
    """The record describes the object version given (each of ``version_id``, ``etag`` when given)."""
    if version_id is not None and record.get("versionId") != version_id:
        return False
    if etag is not None and strip_etag(record.get("etag")) != strip_etag(etag):
        return False
    return True


def is_live(
    record: Mapping[str, Any] | None,
    now: float,
    min_valid: float = 0,
    *,
    version_id: str | None = None,
    etag: str | None = None,
) -> bool:
    """The record's URL may be handed out at ``now`` and stays valid ``min_valid`` seconds longer."""
    if not record or record.get("status") != UPLOADED:
        return False
    expires = expires_at(record)
    if expires is None or expires <= now + min_valid:
        return False
    return describes(record, version_id=version_id, etag=etag)
