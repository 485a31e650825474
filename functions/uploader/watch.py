"""Which objects the stack watches: the one definition the function, the construct and the CLI share.

kie.ai is a third party: an object handed to it gets a public URL. Only the objects a stack watches (its
buckets, and in each bucket the keys matching one of its prefix/suffix rules) may go there, whatever the
path that names them: an S3 event, an EventBridge event, a plain message, ``resolve``, ``refresh`` or a
forced message. The construct gives the function its rules in ``WATCHED_OBJECTS`` (JSON, below) and scopes
the function's ``s3:GetObject*`` to the same ``bucket/prefix*suffix`` resources.

``WATCHED_OBJECTS`` is a JSON list of rules ``{"bucket": "name", "prefix": "incoming/", "suffix": ".png"}``
(prefix and suffix optional, empty = any); a key is watched when a rule of its bucket matches it (several
rules of one bucket: several constructs or ``add_bucket`` calls watching it).

Pure Python with no imports from the function's other modules: the CLI imports it from the wheel
(``kie_uploader.function.watch``), the function as ``uploader.watch``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: The environment variable that carries the rules.
VARIABLE = "WATCHED_OBJECTS"


@dataclass(frozen=True)
class Rule:
    """One bucket's keys that start with ``prefix`` and end with ``suffix`` (empty: any)."""

    bucket: str
    prefix: str = ""
    suffix: str = ""

    def matches(self, bucket: str, key: str) -> bool:
        # Both must fit in the key without overlapping, as S3's own key filters require.
        return (
            bucket == self.bucket
            and len(key) >= len(self.prefix) + len(self.suffix)
            and key.startswith(self.prefix)
            and key.endswith(self.suffix)
        )

    def describe(self) -> str:
        """``prefix incoming/, suffix .png`` (or ``every key``)."""
        parts = [f"prefix {self.prefix}" if self.prefix else ""]
        parts.append(f"suffix {self.suffix}" if self.suffix else "")
        return ", ".join(part for part in parts if part) or "every key"

    def to_json(self) -> dict[str, str]:
        return {"bucket": self.bucket, "prefix": self.prefix, "suffix": self.suffix}


@dataclass(frozen=True)
class Watched:
    """The rules of a stack: the buckets it serves, and which keys of each."""

    rules: tuple[Rule, ...]

    @property
    def buckets(self) -> frozenset[str]:
        return frozenset(rule.bucket for rule in self.rules)

    def serves(self, bucket: str) -> bool:
        """The stack serves this bucket (some of its keys may still be outside every rule)."""
        return bucket in self.buckets

    def watches(self, bucket: str, key: str) -> bool:
        return any(rule.matches(bucket, key) for rule in self.rules)

    def rules_of(self, bucket: str) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.bucket == bucket)

    def refusal(self, bucket: str, key: str) -> str | None:
        """Why this object is not watched (a sentence a user can act on), or ``None`` when it is."""
        if not self.serves(bucket):
            served = ", ".join(sorted(self.buckets)) or "none"
            return f"bucket {bucket!r} is not watched by this stack (it watches: {served})"
        if self.watches(bucket, key):
            return None
        outside = "; ".join(rule.describe() for rule in self.rules_of(bucket))
        return f"key is outside what this stack watches in bucket {bucket!r} ({outside})"

    def to_json(self) -> str:
        return json.dumps([rule.to_json() for rule in self.rules], separators=(",", ":"))

    @classmethod
    def of_buckets(cls, buckets: Iterable[str], prefix: str = "", suffix: str = "") -> Watched:
        """The same prefix/suffix in every bucket."""
        return cls(tuple(Rule(bucket, prefix, suffix) for bucket in buckets))


def parse(raw: str) -> Watched:
    """``WATCHED_OBJECTS``'s value; raises ``ValueError`` saying what is wrong."""
    try:
        value: Any = json.loads(raw)
    except ValueError:
        raise ValueError(f"{VARIABLE} must be a JSON list of rules, got {raw[:60]!r}") from None
    if not isinstance(value, list) or not value:
        raise ValueError(f"{VARIABLE} must be a non-empty JSON list of {{bucket, prefix, suffix}} rules")
    rules = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping) or not isinstance(item.get("bucket"), str) or not item["bucket"]:
            raise ValueError(f"{VARIABLE}[{index}] must be an object with a bucket name")
        prefix, suffix = item.get("prefix") or "", item.get("suffix") or ""
        if not isinstance(prefix, str) or not isinstance(suffix, str):
            raise ValueError(f"{VARIABLE}[{index}]: prefix and suffix must be strings")
        rules.append(Rule(item["bucket"], prefix, suffix))
    return Watched(tuple(rules))


def from_env(env: Mapping[str, str]) -> Watched | None:
    """The rules from ``WATCHED_OBJECTS``, else every key of ``ALLOWED_BUCKETS`` (older stacks), else
    ``None`` (any bucket: local runs only)."""
    raw = (env.get(VARIABLE) or "").strip()
    if raw:
        return parse(raw)
    names = [name.strip() for name in (env.get("ALLOWED_BUCKETS") or "").split(",") if name.strip()]
    return Watched.of_buckets(names) if names else None
