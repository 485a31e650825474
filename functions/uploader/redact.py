"""Keep secrets out of log lines, error messages and the table.

Presigned URLs carry their signature, the signing credential and (in Lambda) the session token in the
query string; kie.ai's error ``msg`` may echo the ``fileUrl``. Before any text leaves an adapter, every
URL loses its query string, stray credential parameters are dropped, and known secrets are replaced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_URL_QUERY = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?\"'<>]*)\?[^\s\"'<>]*")
_SENSITIVE_PARAM = re.compile(
    r"(?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|AWSAccessKeyId|Signature)(?:=|%3D)[^&\s\"'<>]*",
    re.IGNORECASE,
)
REDACTED = "[redacted]"
#: Error texts stored in the table stay short.
MAX_TEXT = 300


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without URL query strings, credential parameters nor ``secrets``, cut to :data:`MAX_TEXT`."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _URL_QUERY.sub(lambda m: m.group(1) + "?" + REDACTED, text)
    text = _SENSITIVE_PARAM.sub(REDACTED, text)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
