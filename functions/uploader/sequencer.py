"""S3 event ``sequencer`` ordering.

AWS: the sequencer is a hexadecimal string; for two events of the same key, the greater value happened
later; values may differ in length, so the shorter is right-padded with ``0`` before comparing.

The record stores the *canonical* form: uppercase, trailing zeros stripped (``"0"`` for an all-zero
value). Lexicographic order of canonical forms equals the padded comparison, so a DynamoDB condition such
as ``sequencer <= :new`` compares correctly whatever the lengths:

* right-padding never changes the comparison of two padded values, so ``pad(a)`` compares like ``pad(a')``
  with ``a'`` the canonical form;
* if ``a'`` is a proper prefix of ``b'``, the rest of ``b'`` ends with a non-zero digit, so ``pad(a') <
  pad(b')`` just as ``a' < b'`` lexicographically; otherwise both orders are decided at the first
  differing digit.
"""

from __future__ import annotations

import re

_HEX = re.compile(r"[0-9A-Fa-f]{1,128}")


class InvalidSequencerError(ValueError):
    """The value is not a hexadecimal sequencer."""


def canonical(sequencer: str) -> str:
    """Uppercase, trailing zeros stripped; raises :class:`InvalidSequencerError` for non-hex values."""
    if not isinstance(sequencer, str) or not _HEX.fullmatch(sequencer):
        raise InvalidSequencerError(f"sequencer is not a hexadecimal string: {str(sequencer)[:40]!r}")
    return sequencer.upper().rstrip("0") or "0"


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is older than, the same as or newer than ``b`` (AWS's padded comparison)."""
    a, b = a.upper(), b.upper()
    width = max(len(a), len(b))
    a, b = a.ljust(width, "0"), b.ljust(width, "0")
    return (a > b) - (a < b)
