"""The kie.ai API key: from Secrets Manager (cached with a TTL) or, for local runs, from the environment.

The secret's value is the raw key or JSON ``{"apiKey": "..."}``. Missing, unreadable or empty secrets are
:class:`ConfigurationError`; throttling and network trouble are :class:`TransientError`. The key itself
never appears in an error message.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from uploader.errors import ConfigurationError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

_CONFIGURATION_CODES = {
    "ResourceNotFoundException",
    "AccessDeniedException",
    "DecryptionFailure",
    "InvalidRequestException",  # e.g. the secret is scheduled for deletion
    "InvalidParameterException",
    "UnrecognizedClientException",
}


def parse_secret(value: str) -> str:
    """The key in a secret string: JSON ``{"apiKey": ...}`` or the raw key."""
    text = value.strip()
    if text.startswith("{"):
        try:
            payload = json.loads(text)
        except ValueError:
            raise ConfigurationError("the kie.ai secret looks like JSON but cannot be parsed") from None
        key = payload.get("apiKey") if isinstance(payload, dict) else None
        if not isinstance(key, str) or not key.strip():
            raise ConfigurationError('the kie.ai secret is JSON without a non-empty "apiKey"')
        text = key.strip()
    if not text:
        raise ConfigurationError("the kie.ai secret is empty")
    if any(c.isspace() for c in text):
        raise ConfigurationError("the kie.ai secret's key contains whitespace")
    return text


class StaticApiKey:
    """A key given in the environment (``KIE_API_KEY``, local runs only)."""

    def __init__(self, key: str) -> None:
        self._key = parse_secret(key)

    def get(self) -> str:
        return self._key

    def invalidate(self) -> None:
        """Nothing to re-read."""


class SecretApiKey:
    """Reads the key from Secrets Manager, at most once per ``ttl_seconds`` (and again after a 401)."""

    def __init__(
        self,
        secret_id: str,
        *,
        client: SecretsManagerClient | None = None,
        ttl_seconds: float = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret_id = secret_id
        self._client: Any = client or _new_client()
        self._ttl = ttl_seconds
        self._clock = clock
        self._key: str | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> str:
        """The cached key, re-read when older than the TTL. Worker threads share one read."""
        with self._lock:
            if self._key is None or self._clock() - self._read_at >= self._ttl:
                self._key = self._read()
                self._read_at = self._clock()
            return self._key

    def invalidate(self) -> None:
        """Forget the key (kie.ai refused it: it may have been rotated)."""
        with self._lock:
            self._key = None

    def _read(self) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._client.get_secret_value(SecretId=self._secret_id)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _CONFIGURATION_CODES:
                raise ConfigurationError(f"kie.ai secret {self._secret_id!r} is unreadable: {code}") from exc
            raise TransientError(f"Secrets Manager failed: {code or 'error'}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"Secrets Manager unreachable ({type(exc).__name__})") from exc
        value = answer.get("SecretString")
        if not isinstance(value, str):
            raise ConfigurationError(f"kie.ai secret {self._secret_id!r} has no SecretString")
        return parse_secret(value)


def _new_client() -> Any:
    import boto3

    # AWS_REGION is what Lambda (and the issue) names; boto3 alone only reads AWS_DEFAULT_REGION.
    return boto3.client("secretsmanager", region_name=os.environ.get("AWS_REGION") or None)
