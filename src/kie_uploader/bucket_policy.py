"""Does a bucket policy stop kie.ai's download of a presigned URL? The Deny statements that would.

kie.ai fetches the object with a presigned GET signed as the stack's function role, from its own servers,
over https: a ``Deny`` whose principal is everyone, whose action covers ``s3:GetObject`` on the object and
whose conditions that request meets stops it. Each condition is judged against what that request carries
(``aws:SourceIp`` outside your ranges, no ``aws:SourceVpce``, ``s3:authType`` ``REST-QUERY-STRING``, a
signature as old as the URL's lifetime); a condition that cannot be judged makes the statement a maybe.
Pure: used by ``doctor`` (:mod:`kie_uploader.doctor`), no AWS calls.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Denial:
    """A Deny statement that applies to kie.ai's GET: ``blocking`` says why (empty: it denies everyone),
    ``unknown`` names the condition keys that could not be judged (then it only may block). ``network``: a
    blocking condition is where the request comes from (``aws:SourceIp``, ``aws:SourceVpce``,
    ``aws:SourceVpc``), which the function's own GetObject must meet too for a stream upload."""

    sid: str
    blocking: list[str]
    unknown: list[str]
    network: bool = False


def denials(policy: Mapping[str, Any], resource: str, presign_seconds: int) -> list[Denial]:
    """The Deny statements of ``policy`` that would stop (or may stop) kie.ai's GET of ``resource`` (an
    object ARN) through a URL presigned for ``presign_seconds``."""
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    found = []
    for index, statement in enumerate(statements):
        if statement.get("Effect") != "Deny" or not _denies_get(statement, resource):
            continue
        verdicts = _condition_verdicts(statement.get("Condition", {}), presign_seconds)
        if any(v is False for _, v, _ in verdicts):
            continue  # a condition kie.ai's request does not meet: this Deny does not apply to it
        found.append(
            Denial(
                sid=statement.get("Sid") or f"#{index + 1}",
                blocking=[why for _, v, why in verdicts if v],
                unknown=[key for key, v, _ in verdicts if v is None],
                network=any(v and key.lower() in _NETWORK_KEYS for key, v, _ in verdicts),
            )
        )
    return found


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, text: str, *, fold: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.IGNORECASE if fold else 0) is not None


def _denies_get(statement: Mapping[str, Any], resource: str) -> bool:
    principal = statement.get("Principal")
    if "NotPrincipal" not in statement:
        principals = _as_list(principal.get("AWS")) if isinstance(principal, dict) else _as_list(principal)
        if "*" not in principals:
            return False  # a Deny for named principals, not for the function role kie.ai's URL is signed as
    if "Action" in statement:
        if not any(_wildcard(a, "s3:GetObject", fold=True) for a in _as_list(statement["Action"])):
            return False
    elif any(_wildcard(a, "s3:GetObject", fold=True) for a in _as_list(statement.get("NotAction"))):
        return False
    normalized = re.sub(r"^arn:aws[a-z-]*:", "arn:aws:", resource)

    def matches(patterns: Any) -> bool:
        return any(
            _wildcard(re.sub(r"^arn:aws[a-z-]*:", "arn:aws:", p), normalized) for p in _as_list(patterns)
        )

    if "Resource" in statement:
        return matches(statement["Resource"])
    return not matches(statement.get("NotResource"))


#: Condition keys about where a request comes from: they stop the function's own reads as well as kie.ai's.
_NETWORK_KEYS = ("aws:sourceip", "aws:sourcevpce", "aws:sourcevpc")

#: kie.ai's GET of a presigned URL: what each condition key holds in that request (None: not present).
_ABSENT = object()


def _condition_verdicts(
    condition: Mapping[str, Any], presign_seconds: int
) -> list[tuple[str, bool | None, str]]:
    """For each (operator, key): does kie.ai's request meet it (True), not (False), or unknown (None)?"""
    verdicts = []
    for operator, pairs in condition.items():
        op = operator.split(":")[-1]  # ForAnyValue:StringEquals -> StringEquals
        if_exists = op.endswith("IfExists")
        op = op.removesuffix("IfExists")
        for key, expected in (pairs or {}).items():
            values = [str(v) for v in _as_list(expected)]
            verdict, why = _verdict(op, if_exists, key, values, presign_seconds)
            verdicts.append((key, verdict, why))
    return verdicts


def _verdict(
    op: str, if_exists: bool, key: str, values: list[str], presign_seconds: int
) -> tuple[bool | None, str]:
    name = key.lower()
    if name == "aws:sourceip":
        if op == "NotIpAddress":
            return (
                True,
                f"it denies requests from outside {', '.join(values)} (aws:SourceIp); "
                "kie.ai downloads from its own servers",
            )
        return (False, "") if op == "IpAddress" else (None, "")
    if name in ("aws:sourcevpce", "aws:sourcevpc"):
        return _absent(
            op,
            if_exists,
            values,
            f"it denies requests that do not come through {key} {', '.join(values)}; "
            "kie.ai is outside your VPC",
        )
    if name == "s3:authtype":
        met = _string_op(op, "REST-QUERY-STRING", values)
        return met, f"it denies s3:authType REST-QUERY-STRING (presigned URLs) ({op} {', '.join(values)})"
    if name == "s3:signatureage":
        limit_ms = _number(values)
        if limit_ms is None or op not in ("NumericGreaterThan", "NumericGreaterThanEquals"):
            return None, ""
        too_short = limit_ms < presign_seconds * 1000
        return too_short, (
            f"it denies signatures older than {limit_ms:.0f} ms (s3:signatureAge) but the stack's "
            f"presigned URLs live {presign_seconds} s (presignExpiresSeconds): raise the limit to "
            f"{presign_seconds * 1000} or "
            f"set presignExpiresSeconds below {max(int(limit_ms // 1000), 1)}"
        )
    if name == "aws:securetransport":
        met = _string_op("StringEquals" if op == "Bool" else op, "true", [v.lower() for v in values])
        return met, "it denies https"
    if name == "s3:signatureversion":
        return _string_op(op, "AWS4-HMAC-SHA256", values), "it denies SigV4 signatures"
    if name in ("aws:referer", "aws:sourcearn", "aws:sourceaccount"):
        return _absent(op, if_exists, values, f"it denies requests without {key}")
    return None, ""


def _absent(op: str, if_exists: bool, values: list[str], why: str) -> tuple[bool | None, str]:
    """A key kie.ai's request does not carry: negated operators and ...IfExists match, the others do not."""
    if op == "Null":
        return any(v.lower() == "true" for v in values), why
    if if_exists or "Not" in op:
        return True, why
    return False, ""


def _string_op(op: str, actual: str, values: list[str]) -> bool | None:
    negated = "Not" in op
    base = op.replace("Not", "")
    if base in ("StringEquals", "ArnEquals"):
        hit = actual in values
    elif base == "StringEqualsIgnoreCase":
        hit = actual.lower() in (v.lower() for v in values)
    elif base in ("StringLike", "ArnLike"):
        hit = any(_wildcard(v, actual) for v in values)
    else:
        return None
    return hit != negated


def _number(values: list[str]) -> float | None:
    try:
        return min(float(v) for v in values)
    except ValueError:
        return None
