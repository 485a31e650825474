"""Keep secrets out of log lines, error messages and the table.

Presigned URLs carry their signature, the signing credential and (in Lambda) the session token in the
query string; kie.ai's error ``msg`` may echo the ``fileUrl``, or only those values in another shape. Before
any text leaves an adapter, known secrets are replaced (a URL's secret values too: :func:`url_secrets`),
every URL loses its query string and stray credential parameters are dropped. The operator's CLI prints
through the same function (``kie_uploader.function.redact``), keeping the queries that hold no credential.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, unquote_plus, urlsplit

_URL_QUERY = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?\"'<>]*)\?([^\s\"'<>]*)")
_SECRET_PARAMS = (
    "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "AWSAccessKeyId", "Signature"
)
_SENSITIVE_PARAM = re.compile(rf"(?:{'|'.join(_SECRET_PARAMS)})(?:=|%3D)[^&\s\"'<>]*", re.IGNORECASE)
_SECRET_NAMES = frozenset(name.lower() for name in _SECRET_PARAMS)
#: Shorter values are not replaced: they would match ordinary words.
MIN_SECRET = 4
REDACTED = "[redacted]"
#: Error texts stored in the table stay short.
MAX_TEXT = 300


def url_secrets(url: str) -> list[str]:
    """The secret query values of a presigned URL (signature, credential and its access key id, session
    token), as written in the URL and decoded and re-encoded: every shape an answer could echo them in."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return []
    found: set[str] = set()
    for pair in query.split("&"):
        name, _, raw = pair.partition("=")
        if unquote(name).lower() not in _SECRET_NAMES or not raw:
            continue
        for value in {raw, unquote(raw), unquote_plus(raw)}:
            found.update({value, quote(value, safe=""), quote(value, safe="/")})
            if unquote(name).lower() == "x-amz-credential":
                found.add(value.split("/", 1)[0].split("%2F", 1)[0])  # the access key id alone
    return sorted((s for s in found if len(s) >= MIN_SECRET), key=len, reverse=True)


def redact(
    text: str,
    secrets: Iterable[str | None] = (),
    *,
    limit: int | None = MAX_TEXT,
    every_query: bool = True,
) -> str:
    """``text`` without ``secrets``, URL query strings nor credential parameters, cut to ``limit``.

    ``every_query``: every URL loses its query (text from outside, such as kie.ai's error message, may
    carry a presigned URL's secrets in any shape). ``False`` (what the CLI prints: kie.ai's own URLs must
    stay usable) drops only the queries that hold a credential parameter; stray ones go in both cases.
    """
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)

    def query(match: re.Match[str]) -> str:
        if every_query or _SENSITIVE_PARAM.search(match.group(2)):
            return f"{match.group(1)}?{REDACTED}"
        return match.group(0)

    text = _SENSITIVE_PARAM.sub(REDACTED, _URL_QUERY.sub(query, text))
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"
