"""A whole-run check: no captured output of any test, and no local server's log, contains a secret.

Secrets are the kie.ai API keys the tests use and the signature of any presigned URL. pytest keeps each
test's captured stdout, stderr and log records on its report, passing tests included; the hook in
``tests/conftest.py`` hands every report to :class:`LeakWatch`, which fails the run at its end if one leaked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

#: A presigned URL's signature: SigV4 (64 hex digits) or SigV2 (base64, URL-encoded).
SIGNATURE = re.compile(r"X-Amz-Signature=[0-9a-fA-F]{64}|[?&]Signature=[A-Za-z0-9%+/=]{20,}")
#: Secret material besides the signature that a presigned URL carries.
CREDENTIAL = re.compile(r"(?:X-Amz-Credential|X-Amz-Security-Token|AWSAccessKeyId)=[^&\s\"']+")


@dataclass
class LeakWatch:
    """Collects the places where a secret was seen."""

    secrets: set[str] = field(default_factory=set)
    leaks: list[str] = field(default_factory=list)

    def scan(self, where: str, text: str) -> None:
        for secret in self.secrets:
            if secret and secret in text:
                self.leaks.append(f"{where}: contains an API key")
        patterns = ((SIGNATURE, "a presigned URL's signature"), (CREDENTIAL, "a presigned credential"))
        for pattern, what in patterns:
            if pattern.search(text):
                self.leaks.append(f"{where}: contains {what}")

    def scan_files(self, paths: Iterable[Path]) -> None:
        for path in paths:
            if path.is_file() and path.suffix in {".log", ".txt", ".json"}:
                self.scan(str(path), path.read_text(errors="replace"))
