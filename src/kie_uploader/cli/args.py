"""Arguments: S3 URIs, durations, counts, the options every command takes, and each command's help.

A malformed argument is refused by the parser itself (``argparse``'s one-line usage error, exit 2) before
any AWS call: an S3 URI with a bucket name S3 would refuse, a duration without its unit, a count out of
range.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kie_uploader.cli.errors import CliError
from kie_uploader.cli.formats import OUTPUTS

DEFAULT_STACK = "KieUploader"


# S3 bucket names: 3-63 characters, lowercase letters, digits, dots and hyphens, starting and ending with
# a letter or digit (the general-purpose rules; a typo such as "s3://My_Bucket" is caught before any call).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


# --- S3 URIs ---


@dataclass(frozen=True)
class S3Uri:
    """``s3://bucket/key``; ``key`` is a prefix (possibly empty) where a command takes one."""

    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, text: str, *, require_key: bool = False) -> S3Uri:
        """Parse ``s3://bucket[/key]``; raise ``CliError`` naming what is wrong."""
        expected = "s3://bucket/key" if require_key else "s3://bucket[/prefix]"
        if not text.startswith("s3://"):
            raise CliError(f"malformed S3 URI {text!r}: expected {expected}")
        bucket, _, key = text[len("s3://") :].partition("/")
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise CliError(f"malformed S3 URI {text!r}: {bucket!r} is not a valid bucket name")
        if require_key and not key:
            raise CliError(f"malformed S3 URI {text!r}: expected {expected} (the key is missing)")
        if len(key.encode()) > 1024:
            raise CliError(f"malformed S3 URI {text!r}: keys are at most 1024 bytes")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def s3_uri(require_key: bool) -> Any:
    def parse(text: str) -> S3Uri:
        try:
            return S3Uri.parse(text, require_key=require_key)
        except CliError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    parse.__name__ = "S3 URI"  # what argparse names in "invalid S3 URI value"
    return parse


# --- durations and counts ---


_DURATION_RE = re.compile(r"(\d+)\s*([smhd])", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}


def parse_duration(text: str) -> int:
    """``90s``, ``30m``, ``1h``, ``2d``, ``1h30m`` → seconds. A number needs its unit: ``12`` could mean
    12 seconds or 12 hours, so it is refused, naming both."""
    compact = text.strip().replace(" ", "")
    if compact.isdigit():
        n = compact
        raise ValueError(f"{text.strip()!r} has no unit: write {n}s for seconds, {n}m, {n}h or {n}d")
    parts = _DURATION_RE.findall(compact)
    if not compact or not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 90s, 30m, 1h, 2d, 1h30m)")
    return sum(int(number) * _UNITS[unit.lower()] for number, unit in parts)


def duration(text: str) -> int:
    """A duration argument (:func:`parse_duration`), in seconds."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


duration.__name__ = "duration"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# --- options and help ---


class _OutputAction(argparse.Action):
    """``--output FORMAT`` and ``--json`` (``--output json``): set ``output``, and ``json`` for the
    commands that only know ``args.json`` (true for json and jsonl)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, "output", **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        output = "json" if self.nargs == 0 else str(values)
        namespace.output = output
        namespace.json = output in ("json", "jsonl")


EXAMPLES = "examples:"


class HelpFormatter(argparse.HelpFormatter):
    """argparse's own formatter, at the width argparse takes from the terminal (``$COLUMNS``): the
    description is filled to it; the examples stay one command a line, and a comment that would make its
    line too long goes on its own line above the command."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if not text.startswith(EXAMPLES):
            return super()._fill_text(text, width, indent)
        lines = [EXAMPLES]
        for example in text.splitlines()[1:]:
            command, _, comment = example.strip().partition("  # ")
            line = f"  {command.rstrip()}  # {comment}" if comment else f"  {command.rstrip()}"
            if len(indent) + len(line) > width and comment:
                lines += [f"  # {comment}", f"  {command.rstrip()}"]
            else:
                lines.append(line)
        return "\n".join(indent + line for line in lines)


def examples(*lines: str, description: str | None = None) -> dict[str, Any]:
    """``add_parser`` keywords for a command's help: its examples (``command  # comment``) after the
    options (every command has some), and its description; both fitted to the terminal's width."""
    shown: dict[str, Any] = {
        "epilog": EXAMPLES + "\n" + "\n".join(lines),
        "formatter_class": HelpFormatter,
    }
    if description:
        shown["description"] = description
    return shown


def common_options() -> argparse.ArgumentParser:
    """The options every command takes, before or after its name (``--stack``, ``--uploader``, ``--region``,
    ``--profile``, ``--output``, ``--wide``, ``--json``): a parent parser for each command's."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS keeps a subcommand's unset option from overwriting the same option given before it.
    common.add_argument(
        "--stack",
        default=argparse.SUPPRESS,
        help=f"CloudFormation stack name (default: $KIE_UPLOADER_STACK or {DEFAULT_STACK})",
    )
    common.add_argument(
        "--uploader",
        default=argparse.SUPPRESS,
        metavar="NAME",
        help="which KieUploader construct of the stack, by its path in the stack (default: the stack's only "
        "one; with several, the error lists them)",
    )
    common.add_argument(
        "--region",
        default=argparse.SUPPRESS,
        help="AWS region (default: $AWS_REGION, $AWS_DEFAULT_REGION, then the profile's)",
    )
    common.add_argument(
        "--profile", default=argparse.SUPPRESS, help="AWS profile (default: $AWS_PROFILE, else the default)"
    )
    common.add_argument(
        "--output",
        action=_OutputAction,
        choices=OUTPUTS,
        default=argparse.SUPPRESS,
        help="table (default: fitted to the terminal's width, $COLUMNS or 80), json, jsonl (one object a "
        "line) or tsv (a header line, then one line a record)",
    )
    common.add_argument(
        "--wide",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no width limit in table output: whole keys, URLs and values, lines as long as they are",
    )
    common.add_argument(
        "--json",
        action=_OutputAction,
        nargs=0,
        default=argparse.SUPPRESS,
        help="machine-readable output (same as --output json)",
    )
    return common
