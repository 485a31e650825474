"""The stack's settings, parsed once from CDK context (``-c name=value`` or cdk.json) and validated.

Every option has a default that deploys a working stack; a malformed value fails synth with an error
that names the context key, before anything reaches CloudFormation. The model lives in the package (no
aws_cdk import): the repository's CDK app (``infra/``) builds the stack from it, and ``kie-uploader
configure`` and ``doctor`` refuse what it refuses (:func:`problems`), so that a setting the command line
accepts is one the deploy accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

from kie_uploader import settings_file

DEFAULT_STACK_NAME = "KieUploader"

# kie.ai's own download of the presigned URL may take up to 30 s; the function's HTTP timeout (40 s)
# and its retries (KIE_MAX_ATTEMPTS) need room on top of that within one invocation.
FUNCTION_TIMEOUT_SECONDS = 120
KIE_TIMEOUT_SECONDS = 40
KIE_MAX_ATTEMPTS = 4
SECRET_CACHE_SECONDS = 300
# One SQS batch: the function processes the objects of one invocation concurrently up to this number.
SQS_BATCH_SIZE = 10

NOTIFY_TARGETS = ("queue", "eventbridge", "lambda")
#: How the bytes reach kie.ai (issue 19): the URL upload, the stream upload, or the URL upload with the stream
#: for what kie.ai cannot fetch.
TRANSFERS = ("auto", "url", "stream")
ARCHITECTURES = ("arm64", "x86_64")
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[\w-]+$")
#: ``encryptionKey``: ``true`` (the stack creates the key), ``false`` (none), or an existing key's ARN.
_ENCRYPTION_KEY = re.compile(r"^(true|false|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[\w-]+)$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_S3_PREFIX_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?$")
_EVENT_BUS = re.compile(r"^(arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:event-bus/)?[\w.\-/]{1,256}$")
#: Characters S3 matches only URL-encoded in a filter value (keys appear URL-encoded in events).
MUST_ENCODE = frozenset(' "#$&,:;=?@[]^`{|}<>\\')
#: Characters whose encoding in events is not certain: worth a look, not a refusal.
MAY_ENCODE = frozenset("!'()*")
_HEX2 = re.compile(r"%[0-9A-Fa-f]{2}")


class SettingsError(ValueError):
    """A context value is missing or malformed; the message names the context key."""


@dataclass(frozen=True, kw_only=True)
class StackSettings:
    """Everything the stack can be told through context. See the README's table of context options."""

    stack_name: str = DEFAULT_STACK_NAME
    bucket_names: tuple[str, ...] = ()
    bucket_kms_key_arns: tuple[str, ...] = ()
    notify: str = "queue"
    prefix: str = ""
    suffix: str = ""
    max_concurrency: int = 2
    api_key_secret_arn: str | None = None
    #: The customer managed KMS key of that secret (the function gets kms:Decrypt via Secrets Manager).
    api_key_secret_kms_key_arn: str | None = None
    #: The function's reserved concurrency (notify=lambda: defaults to max_concurrency, its ceiling).
    reserved_concurrency: int | None = None
    alarm_email: str | None = None
    kie_base_url: str = "https://api.kie.ai"
    kie_upload_path: str = "s3-uploads"
    retention_seconds: int = 259_200
    #: None: 100 MiB with transfer=url, else what a stream upload carries within the function's timeout.
    max_object_bytes: int | None = None
    presign_expires_seconds: int = 900
    memory_size: int = 256
    architecture: str = "arm64"
    log_retention_days: int = 30

    #: Keep-alive: ``s3://bucket/prefix`` URIs whose live URLs are refreshed before kie.ai deletes them.
    keep_alive: tuple[str, ...] = ()
    refresh_ahead_seconds: int = 43_200
    keep_alive_schedule_minutes: int = 60
    #: Days a record is kept after its file expired at kie.ai (the table's TTL).
    record_retention_days: int = 30
    #: Publish record changes on EventBridge (the default bus, or ``event_bus_name``).
    events: bool = True
    event_bus_name: str | None = None
    #: A customer managed key for the queues, table, secret, alarm topic, logs and the functions' settings:
    #: ``"true"`` (the stack creates one) or an existing key's ARN; None: SSE-SQS and AWS managed keys.
    encryption_key: str | None = None

    #: None: the construct sizes it (120 s with transfer=url; else for maxObjectBytes at the stream rate,
    #: 900 s without it).
    function_timeout_seconds: int | None = None
    #: The function's ``KIE_TIMEOUT_SECONDS``: how long one kie.ai call may take (< the function's timeout).
    kie_timeout_seconds: int = KIE_TIMEOUT_SECONDS
    #: ``TRANSFER``: auto, url or stream; ``KIE_CANNOT_FETCH``: buckets doctor found kie.ai cannot fetch from;
    #: ``STREAM_BYTES_PER_SECOND``: the planned stream throughput (None: the construct's default).
    transfer: str = "auto"
    kie_cannot_fetch: tuple[str, ...] = ()
    stream_bytes_per_second: int | None = None

    @property
    def queue_visibility_timeout_seconds(self) -> int | None:
        # AWS's guidance for an SQS event source: at least 6 x the function timeout, so that a message is
        # not handed to a second invocation while the first one still retries it.
        return None if self.function_timeout_seconds is None else 6 * self.function_timeout_seconds

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> StackSettings:
        """Build the settings from a context getter such as ``app.node.try_get_context``."""
        reader = _ContextReader(get)
        defaults = cls()
        transfer = reader.choice("transfer", defaults.transfer, TRANSFERS)
        given_timeout = reader.optional_integer("functionTimeoutSeconds", low=5, high=900)
        # Without it: 120 s for the URL upload; the construct sizes a stream's (never below 120 s).
        function_timeout = given_timeout or FUNCTION_TIMEOUT_SECONDS
        # Without the option, a function timeout shorter than the default call timeout shortens the call too.
        kie_timeout = reader.integer(
            "kieTimeoutSeconds", min(defaults.kie_timeout_seconds, function_timeout - 1), low=1, high=900
        )
        if kie_timeout >= function_timeout and (given_timeout is not None or transfer == "url"):
            raise SettingsError(
                f"context kieTimeoutSeconds={kie_timeout} must be less than functionTimeoutSeconds "
                f"({function_timeout}): one kie.ai call must end before the function times out"
            )
        cannot_fetch = reader.names("kieCannotFetch", _BUCKET_NAME, "an S3 bucket name")
        if cannot_fetch and transfer == "url":
            raise SettingsError(
                "context kieCannotFetch names buckets kie.ai cannot fetch from, but transfer=url never "
                "streams: use transfer=auto or stream"
            )
        encryption_key = reader.optional("encryptionKey", _ENCRYPTION_KEY, "true, false or a KMS key ARN")
        return cls(
            stack_name=reader.text(
                "stackName", defaults.stack_name, pattern=r"^[A-Za-z][A-Za-z0-9-]{0,127}$"
            ),
            bucket_names=reader.names("bucketNames", _BUCKET_NAME, "an S3 bucket name"),
            bucket_kms_key_arns=reader.names("bucketKmsKeyArns", _KMS_KEY_ARN, "a KMS key ARN"),
            notify=reader.choice("notify", defaults.notify, NOTIFY_TARGETS),
            prefix=reader.key_filter("prefix", defaults.prefix),
            suffix=reader.key_filter("suffix", defaults.suffix),
            max_concurrency=reader.integer("maxConcurrency", defaults.max_concurrency, low=2, high=1000),
            api_key_secret_arn=reader.optional(
                "apiKeySecretArn", _SECRET_ARN, "a Secrets Manager secret ARN"
            ),
            api_key_secret_kms_key_arn=reader.optional(
                "apiKeySecretKmsKeyArn", _KMS_KEY_ARN, "a KMS key ARN"
            ),
            reserved_concurrency=(
                None
                if reader.optional("reservedConcurrency", re.compile(r".*"), "") is None
                else reader.integer("reservedConcurrency", 0, low=1, high=1000)
            ),
            alarm_email=reader.optional("alarmEmail", _EMAIL, "an e-mail address"),
            kie_base_url=reader.text(
                "kieBaseUrl", defaults.kie_base_url, pattern=r"^https?://[^\s/]+(/\S*)?$"
            ),
            kie_upload_path=reader.text(
                "kieUploadPath", defaults.kie_upload_path, pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"
            ),
            retention_seconds=reader.integer("retentionSeconds", defaults.retention_seconds, low=60),
            max_object_bytes=reader.optional_integer("maxObjectBytes", low=1),
            presign_expires_seconds=reader.integer(
                "presignExpiresSeconds", defaults.presign_expires_seconds, low=60, high=604_800
            ),
            memory_size=reader.integer("memorySize", defaults.memory_size, low=128, high=10_240),
            architecture=reader.choice("architecture", defaults.architecture, ARCHITECTURES),
            log_retention_days=reader.choice_int(
                "logRetentionDays", defaults.log_retention_days, LOG_RETENTION_DAYS
            ),
            keep_alive=reader.names("keepAlive", _S3_PREFIX_URI, "an s3://bucket/prefix URI"),
            refresh_ahead_seconds=reader.integer(
                "refreshAheadSeconds", defaults.refresh_ahead_seconds, low=60, high=31_536_000
            ),
            keep_alive_schedule_minutes=reader.integer(
                "keepAliveScheduleMinutes", defaults.keep_alive_schedule_minutes, low=1, high=1440
            ),
            record_retention_days=reader.integer(
                "recordRetentionDays", defaults.record_retention_days, low=0, high=3650
            ),
            events=reader.choice("events", "true", ("true", "false")) == "true",
            event_bus_name=reader.optional("eventBusName", _EVENT_BUS, "an EventBridge bus name or ARN"),
            encryption_key=None if encryption_key == "false" else encryption_key,
            function_timeout_seconds=given_timeout,
            kie_timeout_seconds=kie_timeout,
            transfer=transfer,
            kie_cannot_fetch=cannot_fetch,
            stream_bytes_per_second=reader.optional_integer("streamBytesPerSecond", low=65_536),
        )


class _ContextReader:
    """Reads context values, which arrive as strings from ``-c`` and as JSON values from cdk.json."""

    def __init__(self, get: Callable[[str], Any]) -> None:
        self._get = get

    def _raw(self, key: str) -> str | None:
        value = self._get(key)
        if value is None:
            return None
        if isinstance(value, list | tuple):
            return ",".join(str(item) for item in value)
        if isinstance(value, bool):  # cdk.json's true/false
            return "true" if value else "false"
        text = str(value).strip()
        return text or None

    def text(self, key: str, default: str, *, pattern: str | None = None) -> str:
        value = self._raw(key)
        if value is None:
            return default
        if pattern is not None and not re.match(pattern, value):
            raise SettingsError(f"context {key}={value!r} is malformed (expected to match {pattern})")
        return value

    def key_filter(self, key: str, default: str) -> str:
        """A prefix or suffix as S3 matches it: URL-encoded, as keys appear in its events."""
        value = self.text(key, default)
        must = unencoded(value)
        if must:
            raise SettingsError(
                f"context {key}={value!r} holds {', '.join(repr(c) for c in must)}, which S3 matches only "
                f"URL-encoded (as keys appear in its events): as written it matches nothing; write "
                f"{key}={encode_filter(value)}"
            )
        return value

    def optional(self, key: str, pattern: re.Pattern[str], what: str) -> str | None:
        value = self._raw(key)
        if value is not None and not pattern.match(value):
            raise SettingsError(f"context {key}={value!r} is not {what}")
        return value

    def names(self, key: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
        value = self._raw(key)
        if value is None:
            return ()
        names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
        for name in names:
            if not pattern.match(name):
                raise SettingsError(f"context {key}: {name!r} is not {what}")
        return names

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self._raw(key)
        if value is None:
            return default
        if value not in choices:
            raise SettingsError(f"context {key}={value!r} must be one of {', '.join(choices)}")
        return value

    def integer(self, key: str, default: int, *, low: int, high: int | None = None) -> int:
        value = self._raw(key)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(f"context {key}={value!r} is not an integer") from None
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise SettingsError(f"context {key}={number} must be {bound}")
        return number

    def optional_integer(self, key: str, *, low: int, high: int | None = None) -> int | None:
        return None if self._raw(key) is None else self.integer(key, 0, low=low, high=high)

    def choice_int(self, key: str, default: int, choices: tuple[int, ...]) -> int:
        number = self.integer(key, default, low=min(choices), high=max(choices))
        if number not in choices:
            raise SettingsError(f"context {key}={number} must be one of {', '.join(map(str, choices))}")
        return number


def from_context_and_file(
    get: Callable[[str], Any], path: Any, *, remember: bool = False
) -> StackSettings:
    """The settings from ``kie-uploader.settings.json`` with the context (``-c``) on top.

    The file's logic lives in ``kie_uploader.settings_file``: a ``-c`` value overrides the file's, except
    that a changed ``bucketNames``/``apiKeySecretArn`` is refused without ``-c acceptSettingsChange=true``.
    With ``remember``, the options given with ``-c`` are written back to the file (the CDK CLI's runs).
    """
    try:
        layers = settings_file.layered_context(get, path)
        settings = StackSettings.from_context(layers)
        if remember:
            layers.remember()
    except settings_file.SettingsFileError as exc:
        raise SettingsError(str(exc)) from None
    return settings


def problems(values: Mapping[str, str | None]) -> list[str]:
    """What the deploy would refuse in these settings (strings, as the file and ``-c`` give them): unknown
    names, then the first malformed value (one line each). ``configure`` refuses them; ``doctor`` reports
    them."""
    known = settings_file.known_keys(StackSettings.from_context) | {settings_file.ACCEPT_KEY}
    unknown = sorted(set(values) - known)
    found = []
    if unknown:
        found.append(f"unknown setting {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        StackSettings.from_context(lambda key: values.get(key))
    except SettingsError as exc:
        found.append(str(exc))
    return found


# --- S3 key filters ------------------------------------------------------------------------------------


def unencoded(value: str) -> list[str]:
    """The characters of a prefix/suffix that S3 matches only URL-encoded (a space, ``#``, non-ASCII...)."""
    plain = _HEX2.sub("", value)
    return sorted({c for c in plain if c in MUST_ENCODE or not c.isascii()})


def may_be_encoded(value: str) -> list[str]:
    """The characters S3 may write encoded in events (``!'()*``): a filter holding them is worth a test."""
    return sorted({c for c in _HEX2.sub("", value) if c in MAY_ENCODE})


def encode_filter(value: str) -> str:
    """The value as S3 wants it in a filter: what S3 writes in events (a space as ``+``), ``%XX`` kept."""
    out, i = [], 0
    while i < len(value):
        if _HEX2.match(value, i):
            out.append(value[i : i + 3])
            i += 3
            continue
        c = value[i]
        out.append(c if c in "+/" or c in MAY_ENCODE else quote_plus(c))
        i += 1
    return "".join(out)
