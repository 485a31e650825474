"""What the commands print: the output format asked for, words fitted to the terminal, and the record's
rendering (a page for ``status``, a row for ``list``, the same fields in TSV and JSON).

Everything printed goes through :func:`redact` first: presigned URLs' secrets never reach the terminal,
a pipe or a log. The terminal itself is :mod:`.console` (words and pages), :mod:`.tables` and
:mod:`.progress`; the machine formats are :mod:`.formats`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from kie_uploader import live
from kie_uploader.cli import console, formats, progress, tables
from kie_uploader.cli.store import is_live_upload
from kie_uploader.function import redact as shared_redact


def redact(text: str) -> str:
    """What the CLI prints, without presigned URLs' secrets: the function's own rule
    (:mod:`kie_uploader.function.redact`), keeping kie.ai's URLs whole and the text uncut."""
    return shared_redact.redact(text, limit=None, every_query=False)


def to_json(value: Any) -> str:
    """JSON for scripts, with presigned URLs' secrets redacted."""
    return formats.to_json(value, redact=redact)


def output_format(args: argparse.Namespace) -> str:
    """``--output`` (``--json`` is ``--output json``); ``table`` by default."""
    return str(getattr(args, "output", None) or ("json" if getattr(args, "json", False) else "table"))


def width_of(args: argparse.Namespace) -> int | None:
    """The width words are fitted to: the terminal's (or ``$COLUMNS``) unless ``--wide``; into a pipe or a
    file without ``$COLUMNS``, ``None``: lines go whole (a script reads them)."""
    sized = console.is_terminal(sys.stdout) or bool(os.environ.get("COLUMNS"))
    return console.terminal_width() if sized and not getattr(args, "wide", False) else None


def say(args: argparse.Namespace, words: str | console.Page) -> None:
    """Print a command's words (redacted) fitted to the terminal (:func:`width_of`): sentences wrap, a
    :class:`~kie_uploader.cli.console.Page` keeps its names aligned and its identifiers whole or cut in
    the middle."""
    width = width_of(args)
    if isinstance(words, console.Page):
        print(redact(words.render(width, redact=redact)))
    else:
        print(console.wrap_prose(redact(words), width))


def note(text: str) -> None:
    """A remark on stderr (redacted), wrapped to the terminal: the command goes on."""
    console.note(text, redact=redact)


def emit(args: argparse.Namespace, value: Any, *, fields: Sequence[str] | None = None) -> bool:
    """Print ``value`` in the machine-readable format asked for (``json``, ``jsonl``, ``tsv``; ``fields``: a
    list's TSV header) and say so; False for ``table`` (the command prints its own words)."""
    output = output_format(args)
    if output == "table":
        return False
    formats.write_value(value, output, redact=redact, fields=fields)
    return True


class Progress(progress.Progress):
    """A progress line on stderr (only on a terminal), its text through ``redact``. ``total``: a bar, rate
    and time left; ``unit``: a count and rate when the total is unknown."""

    def __init__(
        self, label: str, *, total: int | None = None, unit: str = "", enabled: bool | None = None
    ) -> None:
        super().__init__(label, total=total, unit=unit, enabled=enabled, redact=redact)


def render_table(
    headers: Sequence[str | tables.Column],
    rows: Iterable[Sequence[Any]],
    *,
    width: int | None = None,
    wide: bool = False,
) -> str:
    """A plain-text table with a header rule, no line longer than ``width`` (default: the terminal's,
    ``$COLUMNS`` or 80): long sentences wrap, URLs are cut in the middle; ``wide``: nothing is cut."""
    columns = [h if isinstance(h, tables.Column) else tables.Column(h, elide="auto") for h in headers]
    return tables.render(columns, rows, redact=redact, width=width, wide=wide)


# --- words and numbers ---------------------------------------------------------------------------------


def plural(count: int, word: str) -> str:
    """``1 record``, ``3 records``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def format_epoch(epoch: Any, *, now: float | None = None) -> str:
    """``2025-01-04 12:00:00Z (in 2d 23h)`` or ``... (expired 3h 0m ago)``."""
    try:
        seconds = float(epoch)
    except (TypeError, ValueError):
        return str(epoch)
    stamp = utc(seconds, "%Y-%m-%d %H:%M:%SZ")
    left = seconds - (time.time() if now is None else now)
    if left <= 0:
        return f"{stamp} (expired {format_duration(-left)} ago)"
    return f"{stamp} (in {format_duration(left)})"


def format_duration(seconds: float) -> str:
    """A rough human duration: ``2d 23h``, ``5h 10m``, ``42s``."""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def format_size(size: Any) -> str:
    """Bytes as ``512 B``, ``1.5 KiB``, ``3.0 MiB``."""
    if not isinstance(size, int | float):
        return "" if size is None else str(size)
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def utc(epoch: Any, form: str = "%Y-%m-%d %H:%MZ") -> str:
    """Epoch seconds as a UTC time (``form``: a strftime format); what is not a time, as it is."""
    try:
        return datetime.fromtimestamp(float(epoch), tz=UTC).strftime(form)
    except (TypeError, ValueError, OverflowError, OSError):
        return str(epoch)


def iso(epoch: Any) -> str | None:
    """Epoch seconds as ISO 8601 UTC (``2025-01-04T12:00:00Z``), the machine formats' time; None stays."""
    return None if epoch is None else utc(epoch, "%Y-%m-%dT%H:%M:%SZ")


# --- the record ----------------------------------------------------------------------------------------

_RECORD_ORDER = (
    "pk", "status", "state", "bucket", "key", "versionId", "size", "etag", "sequencer", "downloadUrl",
    "expiresAt", "uploadedAt", "fileName", "filePath", "fileSize", "mimeType", "uploadPath", "error",
    "errorKind", "retryable", "attempts", "updatedAt", "purgeAt",
)  # fmt: skip
#: Attributes that hold epoch seconds (``claimUntil``: epoch milliseconds).
_EPOCH_SECONDS = ("expiresAt", "purgeAt")


def render_record(
    record: dict[str, Any], *, now: float | None = None, state: live.RecordState | None = None
) -> console.Page:
    """A record as aligned ``name  value`` lines, the important attributes first; ``state`` (what the
    record means: live with the time left, expired, waiting for a retry, ...) after ``status``; times as
    UTC times with what is left. The URL of an upload that is not live is never shown as if it could be
    used."""
    now = time.time() if now is None else now
    state = live.describe_record(record, now) if state is None else state
    shown = dict(record)
    shown["state"] = state.sentence
    names = [n for n in _RECORD_ORDER if n in shown] + sorted(n for n in shown if n not in _RECORD_ORDER)
    return console.Page().pairs((n, _record_value(record, n, shown[n], now, state)) for n in names)


def _record_value(record: dict[str, Any], name: str, value: Any, now: float, state: live.RecordState) -> str:
    if name == "downloadUrl" and not is_live_upload(record, now=now):
        return f"(not served: {state.label})"
    if name in _EPOCH_SECONDS:
        return format_epoch(value, now=now)
    if name == "claimUntil" and isinstance(value, int | float):
        return format_epoch(value / 1000, now=now)
    if name in ("size", "fileSize"):
        return f"{value} ({format_size(value)})" if isinstance(value, int) else str(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return formats.to_json(value, redact=redact, compact=True)
    return str(value)


def _record_detail(record: dict[str, Any], now: float) -> str:
    if record.get("status") == "UPLOADED":
        # An expired URL is never shown as if it could be used: the STATE column says it expired.
        return str(record.get("downloadUrl", "")) if is_live_upload(record, now=now) else ""
    if record.get("status") in (None, "", "DELETED"):
        return ""
    error = str(record.get("error", ""))
    kind = record.get("errorKind")
    if kind:
        retry = ", retryable" if record.get("retryable") else ""
        return f"[{kind}{retry}] {error}"
    return error


# The list's columns: the key and the URL or error share what the others leave; columns of lesser use go
# first when the terminal is narrow (UPDATED, then EXPIRES, SIZE, STATUS: STATE says the most). The key is
# cut in the middle; an error wraps in its cell (a URL is cut in the middle).
_RECORD_COLUMNS = (
    tables.Column("S3 URI", min=24, want=32, elide="middle", weight=2),
    tables.Column("STATUS", min=8, max=8, drop=2),
    tables.Column("STATE", min=14, max=24),
    tables.Column("SIZE", min=8, max=10, drop=3),
    tables.Column("EXPIRES", min=17, max=17, drop=4),
    tables.Column("UPDATED", min=20, max=20, drop=5),
    tables.Column("DOWNLOAD URL / ERROR", min=30, want=40, elide="auto", weight=3),
)
#: The record's TSV fields (``list`` and ``status``): plain values, ISO 8601 UTC times.
RECORD_TSV = (
    "pk", "status", "state", "size", "expiresAt", "updatedAt", "downloadUrl", "errorKind", "retryable",
    "error",
)  # fmt: skip


def record_columns(bucket: str | None = None) -> tuple[tables.Column, ...]:
    """The list's columns; with ``bucket`` the first one holds keys relative to it (``record_title``)."""
    if bucket is None:
        return _RECORD_COLUMNS
    first = _RECORD_COLUMNS[0]
    return (tables.Column("KEY", min=first.min, want=first.want, elide="middle", weight=2),) + (
        _RECORD_COLUMNS[1:]
    )


def record_title(bucket: str | None) -> str | None:
    """The line above the header of a table whose keys are relative to ``bucket``: the bucket, whole (a
    bucket's name can be 63 characters, too long for a column's header)."""
    return None if bucket is None else f"keys in s3://{bucket}/"


def record_row(record: dict[str, Any], now: float, bucket: str | None = None) -> tuple[str, ...]:
    """A record as the list's row; with ``bucket`` its key relative to it (a record of another bucket
    keeps its whole S3 URI)."""
    pk = str(record.get("pk", ""))
    if bucket is not None and pk.startswith(f"s3://{bucket}/"):
        pk = pk[len(f"s3://{bucket}/") :]
    return (
        pk,
        str(record.get("status") or "-"),
        live.describe_record(record, now).label,
        format_size(record.get("size")),
        utc(record["expiresAt"]) if record.get("expiresAt") is not None else "",
        str(record.get("updatedAt", "")),
        _record_detail(record, now),
    )


def record_tsv(record: dict[str, Any], now: float, state: live.RecordState | None = None) -> dict[str, Any]:
    """A record's TSV fields: machine values (bytes, ISO 8601 UTC times, the state's name); the URL only
    of a live upload."""
    return {
        "pk": record.get("pk"),
        "status": record.get("status"),
        "state": (state or live.describe_record(record, now)).state,
        "size": record.get("size"),
        "expiresAt": iso(record.get("expiresAt")),
        "updatedAt": record.get("updatedAt"),
        "downloadUrl": record.get("downloadUrl") if is_live_upload(record, now=now) else None,
        "errorKind": record.get("errorKind"),
        "retryable": record.get("retryable"),
        "error": record.get("error"),
    }


def records_table(
    records: Sequence[dict[str, Any]],
    *,
    now: float | None = None,
    bucket: str | None = None,
    width: int | None = None,
    wide: bool = False,
) -> str:
    """The ``list`` command's table (all at once): the record's status, and its state (``live, 2 d 3 h
    left``, ``expired 3 h ago``, ``waiting for a retry``, ``being processed; ...``)."""
    now = time.time() if now is None else now
    rows = [record_row(r, now, bucket) for r in records]
    columns = record_columns(bucket)
    return tables.render(columns, rows, redact=redact, width=width, wide=wide, title=record_title(bucket))


def with_state(record: dict[str, Any], *, now: float | None = None) -> dict[str, Any]:
    """The record with ``state`` and ``stateDescription`` (``describe_record``) for JSON output."""
    state = live.describe_record(record, time.time() if now is None else now)
    return {**record, "state": state.state, "stateDescription": state.sentence}


def write_records(
    pages: Iterable[list[dict[str, Any]]],
    args: argparse.Namespace,
    *,
    now: float,
    bucket: str | None,
    limit: int | None,
) -> None:
    """Write the records page by page in the format asked for; the table ends with the count."""
    output = output_format(args)
    stream = formats.Stream(
        output,
        redact=redact,
        columns=record_columns(bucket),
        title=record_title(bucket),
        tsv_fields=RECORD_TSV,
        wide=bool(getattr(args, "wide", False)),
    )
    for page in pages:
        if limit is not None:
            page = page[: limit - stream.count]
        if output == "table":
            stream.write(page, [record_row(r, now, bucket) for r in page])
        elif output == "tsv":
            stream.write([record_tsv(r, now) for r in page])
        else:
            stream.write([with_state(r, now=now) for r in page])
        if limit is not None and stream.count >= limit:
            break  # closes the scan: no further page is read
    stream.close()
    if output == "table":
        count = stream.count
        more = f" (--limit {limit}: there may be more)" if limit is not None and count >= limit else ""
        say(args, f"{plural(count, 'record')}{more}")
