"""The construct's options and their validation: plain Python, no aws_cdk import.

Every error is a :class:`KieUploaderPropsError` whose message starts with the name of the prop it is about
(``buckets``, ``notify``, ``function_options.memory_size``, ...), the way AWS Solutions Constructs name
``existingBucketObj`` and friends.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

# kie.ai's own download of the presigned URL may take up to 30 s; the function's HTTP timeout (40 s)
# and its retries (KIE_MAX_ATTEMPTS) need room on top of that within one invocation.
FUNCTION_TIMEOUT_SECONDS = 120
KIE_TIMEOUT_SECONDS = 40
#: How the bytes reach kie.ai (the function's ``TRANSFER``): ``auto`` streams what kie.ai cannot fetch.
TRANSFERS = ("auto", "url", "stream")
#: Lambda's longest timeout: with ``stream``/``auto`` and no ``max_object_bytes`` the function gets it, so
#: that any object a stream upload can carry within 15 minutes at ``stream_bytes_per_second`` goes through.
LAMBDA_MAX_TIMEOUT_SECONDS = 900
#: kie.ai recommends at most 100 MB for its URL upload: ``auto`` streams larger objects.
URL_TRANSFER_MAX_BYTES = 104_857_600
#: The throughput a stream upload is planned for (the function's ``STREAM_BYTES_PER_SECOND``).
STREAM_BYTES_PER_SECOND = 8 * 1024 * 1024
#: Of a function's time, what a stream upload may not use (the function's ``STREAM_RESERVE_SECONDS``).
STREAM_RESERVE_SECONDS = 15
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
KIE_MAX_ATTEMPTS = 4
SECRET_CACHE_SECONDS = 300
#: One SQS batch; the function uploads the objects of one invocation concurrently, up to this many at once
#: (its ``MAX_CONCURRENCY``). kie.ai therefore sees at most ``max_concurrency`` x 10 uploads in flight.
SQS_BATCH_SIZE = 10
#: Seconds the queue's event source waits to fill a batch. 0: a lone object is handed over at once, and a
#: full batch never waits anyway (Lambda invokes as soon as 10 messages are gathered). During a backlog
#: every receive returns up to 10 messages regardless; the cost of 0 is only more, smaller invocations when
#: objects trickle in, and those stay bounded by ``max_concurrency``.
BATCHING_WINDOW_SECONDS = 0
#: AWS's bounds for an SQS event source's maximum concurrency.
MAX_CONCURRENCY_RANGE = (2, 1000)
ARCHITECTURES = ("arm64", "x86_64")
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS: tuple[int, ...] = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731)
LOG_RETENTION_DAYS += (1096, 1827, 2192, 2557, 2922, 3288, 3653)


class KieUploaderPropsError(ValueError):
    """A prop of :class:`~kie_uploader.cdk.KieUploader` is missing or malformed; the message names it."""


class NotifyMode(enum.StrEnum):
    """How S3 tells the construct about new and deleted objects."""

    #: S3 event notifications → the SQS queue → the function (maximum concurrency ``max_concurrency``).
    QUEUE = "queue"
    #: S3's EventBridge integration → a rule for these buckets (and prefix/suffix) → the queue → the function.
    #: Leaves the bucket's own notification configuration alone: no overlap with what is already there.
    EVENTBRIDGE = "eventbridge"
    #: S3 invokes the function directly (lowest latency), capped by reserved concurrency.
    LAMBDA = "lambda"


@dataclass(frozen=True, kw_only=True)
class FunctionOptions:
    """The uploader function's settings (its environment, memory, architecture, timeouts, logs)."""

    #: kie.ai's API (the function's ``KIE_BASE_URL``).
    kie_base_url: str = "https://api.kie.ai"
    #: The folder of kie.ai's upload the files go to (``KIE_UPLOAD_PATH``).
    kie_upload_path: str = "s3-uploads"
    #: How long kie.ai keeps a file, in seconds (``KIE_RETENTION_SECONDS``): a record's URL expires then.
    retention_seconds: int = 259_200
    #: The largest object handled; None: 100 MiB with ``transfer="url"``, else what a stream upload can
    #: carry within the function's timeout.
    max_object_bytes: int | None = None
    #: The lifetime of the presigned URL kie.ai downloads an object from (60-604,800 s).
    presign_expires_seconds: int = 900
    #: The function's memory in MB (128-10,240).
    memory_size: int = 256
    #: The function's architecture: ``arm64`` or ``x86_64``.
    architecture: str = "arm64"
    #: Days the function's log group keeps its logs (a CloudWatch Logs retention).
    log_retention_days: int = 30
    #: The function's timeout; None: 120 s with ``transfer="url"``, else sized for ``max_object_bytes`` at
    #: ``stream_bytes_per_second`` (900 s, Lambda's maximum, without ``max_object_bytes``).
    timeout_seconds: int | None = None
    #: One kie.ai call's timeout; None: 40 s, or 1 s less than a shorter ``timeout_seconds``.
    kie_timeout_seconds: int | None = None
    #: Days a record is kept after its file expired at kie.ai (or after its last change): the TTL.
    record_retention_days: int = 30
    #: ``auto`` (the URL upload, and the stream upload for what kie.ai cannot fetch), ``url`` or ``stream``.
    transfer: str = "auto"
    #: With ``auto``, larger objects go by stream.
    url_transfer_max_bytes: int = URL_TRANSFER_MAX_BYTES
    #: The stream upload's server; None: ``kie_base_url``.
    kie_stream_base_url: str | None = None
    #: Buckets kie.ai cannot fetch from (doctor's finding: a VPC-endpoint or IP condition): ``auto``
    #: streams their objects from the start.
    kie_cannot_fetch: tuple[str, ...] = ()
    #: The throughput a stream upload is planned for (bytes/s): its deadline, and the function's timeout.
    stream_bytes_per_second: int = STREAM_BYTES_PER_SECOND

    @property
    def function_timeout_seconds(self) -> int:
        """The function's timeout: ``timeout_seconds``, else 120 s for the URL upload, else what a stream
        upload of ``max_object_bytes`` needs at ``stream_bytes_per_second`` (120 s to 900 s)."""
        if self.timeout_seconds is not None:
            return self.timeout_seconds
        if self.transfer == "url":
            return FUNCTION_TIMEOUT_SECONDS
        if self.max_object_bytes is None:
            return LAMBDA_MAX_TIMEOUT_SECONDS
        call = self.kie_timeout_seconds or KIE_TIMEOUT_SECONDS
        needed = STREAM_RESERVE_SECONDS + call + self.max_object_bytes / self.stream_bytes_per_second
        return min(LAMBDA_MAX_TIMEOUT_SECONDS, max(FUNCTION_TIMEOUT_SECONDS, math.ceil(needed)))

    @property
    def effective_max_object_bytes(self) -> int | None:
        """``MAX_OBJECT_BYTES``: ``max_object_bytes``, else 100 MiB for the URL upload, else none (the
        function refuses what a stream cannot carry within Lambda's 15 minutes)."""
        if self.max_object_bytes is None and self.transfer == "url":
            return URL_TRANSFER_MAX_BYTES
        return self.max_object_bytes

    @property
    def effective_kie_timeout_seconds(self) -> int:
        if self.kie_timeout_seconds is not None:
            return self.kie_timeout_seconds
        return min(KIE_TIMEOUT_SECONDS, self.function_timeout_seconds - 1)

    @property
    def queue_visibility_timeout_seconds(self) -> int:
        # AWS's guidance for an SQS event source: at least 6 x the function timeout, so that a message is
        # not handed to a second invocation while the first one still retries it.
        return 6 * self.function_timeout_seconds

    def validate(self, name: str = "function_options") -> None:
        def integer(field: str, low: int, high: int | None = None) -> int:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                raise KieUploaderPropsError(f"{name}.{field}: expected an int, got {value!r}")
            if value < low or (high is not None and value > high):
                bound = f"between {low} and {high}" if high is not None else f"at least {low}"
                raise KieUploaderPropsError(f"{name}.{field}={value} must be {bound}")
            return value

        for field in ("kie_base_url", "kie_upload_path", "architecture"):
            if not isinstance(getattr(self, field), str) or not getattr(self, field):
                raise KieUploaderPropsError(f"{name}.{field}: expected a non-empty string")
        if not self.kie_base_url.startswith(("https://", "http://")):
            raise KieUploaderPropsError(f"{name}.kie_base_url={self.kie_base_url!r} must be an http(s) URL")
        if self.architecture not in ARCHITECTURES:
            raise KieUploaderPropsError(
                f"{name}.architecture={self.architecture!r} must be one of {', '.join(ARCHITECTURES)}"
            )
        integer("retention_seconds", 60)
        integer("record_retention_days", 0, 3650)
        integer("presign_expires_seconds", 60, 604_800)
        integer("memory_size", 128, 10_240)
        self._validate_transfer(name, integer)
        if self.timeout_seconds is not None:
            integer("timeout_seconds", 5, 900)
        timeout = self.function_timeout_seconds
        if integer("log_retention_days", 1, 3653) not in LOG_RETENTION_DAYS:
            raise KieUploaderPropsError(
                f"{name}.log_retention_days={self.log_retention_days} is not a CloudWatch Logs retention "
                f"({', '.join(map(str, LOG_RETENTION_DAYS))})"
            )
        if self.kie_timeout_seconds is not None:
            integer("kie_timeout_seconds", 1, 900)
        if self.effective_kie_timeout_seconds >= timeout:
            raise KieUploaderPropsError(
                f"{name}.kie_timeout_seconds={self.effective_kie_timeout_seconds} must be less than "
                f"{name}.timeout_seconds ({timeout}): one kie.ai call must end before the function times out"
            )

    def _validate_transfer(self, name: str, integer: Callable[[str, int], int]) -> None:
        if self.transfer not in TRANSFERS:
            choices = ", ".join(TRANSFERS)
            raise KieUploaderPropsError(f"{name}.transfer={self.transfer!r} must be one of {choices}")
        if self.max_object_bytes is not None:
            integer("max_object_bytes", 1)
        integer("url_transfer_max_bytes", 1)
        integer("stream_bytes_per_second", 65_536)
        stream_url = self.kie_stream_base_url
        if stream_url is not None and not (isinstance(stream_url, str) and stream_url.startswith("http")):
            raise KieUploaderPropsError(f"{name}.kie_stream_base_url={stream_url!r} must be an http(s) URL")
        if isinstance(self.kie_cannot_fetch, str) or not all(
            isinstance(bucket, str) and _BUCKET_NAME.fullmatch(bucket) for bucket in self.kie_cannot_fetch
        ):
            given = self.kie_cannot_fetch
            raise KieUploaderPropsError(f"{name}.kie_cannot_fetch: expected bucket names, got {given!r}")
        if self.kie_cannot_fetch and self.transfer == "url":
            raise KieUploaderPropsError(
                f"{name}.kie_cannot_fetch names buckets kie.ai cannot fetch from, but transfer='url' never "
                "streams: use 'auto' or 'stream'"
            )
