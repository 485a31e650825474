"""The function's configuration: one frozen object parsed from the environment, validated once.

Every error names the variable at fault. AWS endpoints and the region are not here: boto3 reads
``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, ``AWS_REGION`` itself, so the same code runs against AWS and a
local emulator.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from uploader import watch
from uploader.errors import ConfigurationError
from uploader.models import Transfer

#: Variables read by :meth:`Config.from_env` (the handler rebuilds its runtime only when one changes).
VARIABLES = (
    "TABLE_NAME",
    "KIE_API_KEY_SECRET_ID",
    "KIE_API_KEY",
    "KIE_BASE_URL",
    "KIE_UPLOAD_PATH",
    "KIE_RETENTION_SECONDS",
    "PRESIGN_EXPIRES_SECONDS",
    "MAX_OBJECT_BYTES",
    "ALLOWED_BUCKETS",
    "WATCHED_OBJECTS",
    "MAX_CONCURRENCY",
    "SECRET_CACHE_SECONDS",
    "KIE_TIMEOUT_SECONDS",
    "KIE_MAX_ATTEMPTS",
    "RECORD_RETENTION_SECONDS",
    "KIE_VERIFY_AFTER_SECONDS",
    "TRANSFER",
    "URL_TRANSFER_MAX_BYTES",
    "KIE_STREAM_BASE_URL",
    "KIE_CANNOT_FETCH",
    "STREAM_BYTES_PER_SECOND",
)

#: Lambda's longest invocation (15 minutes): no stream upload can take longer.
LAMBDA_MAX_SECONDS = 900
#: Of those, what a stream upload may not use: the handler's safety margin and the record's reads and
#: writes around the upload (claim, HeadObject, GetObject's first byte, the final write).
STREAM_RESERVE_SECONDS = 15

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_UPLOAD_PATH = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
#: SigV4 presigned URLs live at most 7 days.
_MAX_PRESIGN_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Config:
    """Validated settings; see the README's table for meanings and defaults."""

    table_name: str
    api_key_secret_id: str | None = None
    #: Only for local runs; never shown by ``repr``.
    api_key: str | None = field(default=None, repr=False)
    kie_base_url: str = "https://api.kie.ai"
    kie_upload_path: str = "s3-uploads"
    kie_retention_seconds: int = 259_200
    presign_expires_seconds: int = 900
    #: The largest object handled, any transfer (None: no limit but what a stream upload can do within
    #: Lambda's 15 minutes; the default with ``TRANSFER`` stream or auto, 100 MiB with url).
    max_object_bytes: int | None = None
    #: The objects the stack watches (``WATCHED_OBJECTS``, else every key of ``ALLOWED_BUCKETS``); ``None``
    #: means any object (local runs only): see :mod:`uploader.watch`.
    watched: watch.Watched | None = None
    max_concurrency: int = 10
    secret_cache_seconds: int = 300
    #: Read timeout of one kie.ai call; kie.ai itself gives up downloading after 30 s.
    kie_timeout_seconds: float = 40.0
    #: kie.ai calls per object per delivery, the first included.
    kie_max_attempts: int = 4
    #: How long a record outlives its file at kie.ai (or its last change) before DynamoDB's TTL removes it.
    record_retention_seconds: int = 2_592_000
    #: A URL older than this is checked at kie.ai before it is handed out (``resolve``) and once by the
    #: keep-alive round: kie.ai documents 24 hours on one page and 3 days on another (0: never checked).
    kie_verify_after_seconds: int = 86_400
    #: url, stream, or auto (the URL upload, the stream upload when kie.ai cannot fetch: see Transfer).
    transfer: Transfer = Transfer.AUTO
    #: With auto, larger objects go by stream (kie.ai recommends at most 100 MB for its URL upload).
    url_transfer_max_bytes: int = 104_857_600
    #: The stream upload's server (None: ``kie_base_url``).
    kie_stream_base_url: str | None = None
    #: Buckets kie.ai cannot fetch from (doctor's finding the stack recorded): auto streams their objects.
    kie_cannot_fetch: frozenset[str] = frozenset()
    #: The throughput a stream upload is planned for (bytes/s): its deadline is the object's size at this
    #: rate plus ``kie_timeout_seconds`` for kie.ai's answer.
    stream_bytes_per_second: int = 8 * 1024 * 1024

    @property
    def stream_url(self) -> str:
        """The base URL of kie.ai's stream upload."""
        return self.kie_stream_base_url or self.kie_base_url

    def stream_seconds(self, size: int) -> float:
        """How long a stream upload of ``size`` bytes may take: the bytes at the planned throughput, then
        kie.ai's answer."""
        return size / self.stream_bytes_per_second + self.kie_timeout_seconds

    @property
    def stream_max_bytes(self) -> int:
        """The largest object a stream upload can carry within Lambda's 15 minutes at the planned rate."""
        seconds = LAMBDA_MAX_SECONDS - STREAM_RESERVE_SECONDS - self.kie_timeout_seconds
        return max(0, int(seconds * self.stream_bytes_per_second))

    @property
    def allowed_buckets(self) -> frozenset[str] | None:
        """The buckets the stack serves (``None``: any)."""
        return None if self.watched is None else self.watched.buckets

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Parse and validate; raises :class:`ConfigurationError` naming the variable."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        table_name = get("TABLE_NAME")
        if not table_name:
            raise ConfigurationError("TABLE_NAME is required (the DynamoDB table for the records)")
        secret_id, api_key = get("KIE_API_KEY_SECRET_ID"), get("KIE_API_KEY")
        if not secret_id and not api_key:
            raise ConfigurationError("KIE_API_KEY_SECRET_ID is required (or KIE_API_KEY for local runs)")
        transfer = _transfer(get("TRANSFER"))
        kie_base_url = _base_url(get("KIE_BASE_URL") or cls.kie_base_url)
        cannot_fetch = _buckets(get("KIE_CANNOT_FETCH"), "KIE_CANNOT_FETCH") or frozenset()
        if cannot_fetch and transfer is Transfer.URL:
            raise ConfigurationError(
                "KIE_CANNOT_FETCH names buckets kie.ai cannot fetch from, but TRANSFER=url: "
                "use auto or stream"
            )
        url_default = 104_857_600 if transfer is Transfer.URL else None
        stream_base = get("KIE_STREAM_BASE_URL")
        return cls(
            table_name=table_name,
            api_key_secret_id=secret_id,
            api_key=None if secret_id else api_key,
            kie_base_url=kie_base_url,
            kie_upload_path=_upload_path(get("KIE_UPLOAD_PATH") or cls.kie_upload_path),
            kie_retention_seconds=_int(env, "KIE_RETENTION_SECONDS", cls.kie_retention_seconds, 60, None),
            presign_expires_seconds=_int(
                env, "PRESIGN_EXPIRES_SECONDS", cls.presign_expires_seconds, 60, _MAX_PRESIGN_SECONDS
            ),
            max_object_bytes=_optional_int(env, "MAX_OBJECT_BYTES", url_default),
            watched=_watched(env, _buckets(get("ALLOWED_BUCKETS"), "ALLOWED_BUCKETS")),
            max_concurrency=_int(env, "MAX_CONCURRENCY", cls.max_concurrency, 1, 100),
            secret_cache_seconds=_int(env, "SECRET_CACHE_SECONDS", cls.secret_cache_seconds, 0, 86_400),
            kie_timeout_seconds=float(_int(env, "KIE_TIMEOUT_SECONDS", 40, 1, 900)),
            kie_max_attempts=_int(env, "KIE_MAX_ATTEMPTS", cls.kie_max_attempts, 1, 20),
            record_retention_seconds=_int(
                env, "RECORD_RETENTION_SECONDS", cls.record_retention_seconds, 0, 10 * 365 * 86_400
            ),
            kie_verify_after_seconds=_int(
                env, "KIE_VERIFY_AFTER_SECONDS", cls.kie_verify_after_seconds, 0, 10 * 365 * 86_400
            ),
            transfer=transfer,
            url_transfer_max_bytes=_int(env, "URL_TRANSFER_MAX_BYTES", cls.url_transfer_max_bytes, 1, None),
            kie_stream_base_url=_base_url(stream_base, "KIE_STREAM_BASE_URL") if stream_base else None,
            kie_cannot_fetch=cannot_fetch,
            stream_bytes_per_second=_int(
                env, "STREAM_BYTES_PER_SECOND", cls.stream_bytes_per_second, 65_536, None
            ),
        )


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw[:40]!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigurationError(f"{name} must be {bounds}, got {value}")
    return value


def _optional_int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    return _int(env, name, 0, 1, None) if env.get(name, "").strip() else default


def _transfer(raw: str | None) -> Transfer:
    if raw is None:
        return Transfer.AUTO
    try:
        return Transfer(raw.lower())
    except ValueError:
        choices = ", ".join(t.value for t in Transfer)
        raise ConfigurationError(f"TRANSFER must be one of {choices}, got {raw[:40]!r}") from None


def _base_url(raw: str | None, name: str = "KIE_BASE_URL") -> str:
    raw = raw or ""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError(f"{name} must be an http(s) URL without query, got {raw[:80]!r}")
    return raw.rstrip("/")


def _upload_path(raw: str) -> str:
    # kie.ai's spec: no leading or trailing slash; keep to characters that need no escaping anywhere.
    path = raw.strip("/")
    if not _UPLOAD_PATH.fullmatch(path) or ".." in path.split("/"):
        raise ConfigurationError(
            "KIE_UPLOAD_PATH must be folders of letters, digits, '.', '_' or '-' separated by '/', "
            f"got {raw!r}"
        )
    return path


def _buckets(raw: str | None, variable: str) -> frozenset[str] | None:
    if raw is None:
        return None
    names = [name.strip() for name in raw.split(",") if name.strip()]
    for name in names:
        if not _BUCKET.fullmatch(name):
            raise ConfigurationError(f"{variable} has an invalid bucket name: {name[:70]!r}")
    if not names:
        raise ConfigurationError(f"{variable} is set but names no bucket")
    return frozenset(names)


def _watched(env: Mapping[str, str], buckets: frozenset[str] | None) -> watch.Watched | None:
    raw = env.get(watch.VARIABLE, "").strip()
    if not raw:
        return None if buckets is None else watch.Watched.of_buckets(sorted(buckets))
    try:
        watched = watch.parse(raw)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    for name in watched.buckets:
        if not _BUCKET.fullmatch(name):
            raise ConfigurationError(f"{watch.VARIABLE} has an invalid bucket name: {name[:70]!r}")
    if buckets is not None and watched.buckets != buckets:
        raise ConfigurationError(f"{watch.VARIABLE} and ALLOWED_BUCKETS name different buckets")
    return watched
