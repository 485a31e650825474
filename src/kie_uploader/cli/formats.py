"""The machine-readable formats (``--output``): ``json`` is one JSON value (a list is streamed as an array,
one compact item per line, never built in memory); ``jsonl`` one compact JSON object per line; ``tsv`` a
header line, then one line per row (tab, newline, carriage return and backslash escaped as ``\\t``,
``\\n``, ``\\r``, ``\\\\``). ``table`` (the default) is for people: :mod:`kie_uploader.cli.tables`.

One TSV for every command: plain values (no JSON in a cell), times in ISO 8601 UTC, one row per thing. A
command's answer that is one document (``info``, ``stats``, a summary) is a row per value, ``name`` (its
dotted path: ``queue.visibilityTimeoutSeconds``, ``watched.0.prefix``) and ``value`` (:func:`rows_of`);
a command that lists things (``list``, ``dlq peek``, ``doctor``) is a row per thing with its fields.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

from kie_uploader.cli import tables
from kie_uploader.cli.console import Redact

OUTPUTS = ("table", "json", "jsonl", "tsv")


def to_json(value: Any, *, redact: Redact, compact: bool = False) -> str:
    """JSON for scripts, with presigned URLs' secrets redacted: indented, or one line when ``compact``."""
    if compact:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str, separators=(",", ":"))
        return redact(text)
    return redact(json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str))


def tsv_field(value: Any) -> str:
    """A value as one TSV field: None empty, booleans ``true``/``false``, escapes for tab and newline."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple) and not any(isinstance(v, Mapping | list | tuple) for v in value):
        value = "; ".join("" if v is None else str(v) for v in value)  # a list of plain values
    elif isinstance(value, Mapping | list | tuple):  # a caller's nested value: rows_of() flattens them
        value = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class Stream:
    """Records written as they come, in one of the formats: ``table`` (a ``TableWriter``), ``json`` (an
    array written item by item: ``[``, items, ``]``), ``jsonl``, ``tsv``. ``close()`` ends it (the closing
    ``]``); a listing that fails half-way leaves the array open, so that it never parses as complete."""

    def __init__(
        self,
        output: str,
        *,
        redact: Redact,
        columns: Sequence[tables.Column] = (),
        tsv_fields: Sequence[str] = (),
        width: int | None = None,
        wide: bool = False,
        file: IO[str] | None = None,
        title: str | None = None,
    ) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}: one of {', '.join(OUTPUTS)}")
        self.output = output
        self.redact = redact
        self.file = file
        self.tsv_fields = list(tsv_fields)
        self.count = 0
        self._table = tables.TableWriter(
            columns, redact=redact, width=width, wide=wide, file=file, title=title
        )
        self._started = False

    @property
    def _out(self) -> IO[str]:
        return self.file or sys.stdout

    def write(self, items: Sequence[Any], rows: Sequence[Sequence[Any]] | None = None) -> None:
        """Write a batch: ``items`` (JSON values; TSV takes ``tsv_fields`` of each mapping) and, for the
        table, ``rows`` (one per item)."""
        if self.output == "table":
            self._table.write(rows or [])
        elif self.output == "jsonl":
            if items:
                self._out.write("".join(to_json(i, redact=self.redact, compact=True) + "\n" for i in items))
        elif self.output == "json":
            if not items:
                return
            head = "[\n" if not self._started else ",\n"
            self._started = True
            body = ",\n".join(to_json(i, redact=self.redact, compact=True) for i in items)
            self._out.write(head + body)
        else:  # tsv
            text = "" if self._started else "\t".join(self.tsv_fields) + "\n"
            self._started = True
            text += "".join(
                "\t".join(printable_tsv(self.redact(tsv_field(i.get(f)))) for f in self.tsv_fields) + "\n"
                for i in items
            )
            self._out.write(text)
        self.count += len(items)
        self._out.flush()

    def close(self) -> None:
        if self.output == "json":
            self._out.write("\n]\n" if self._started else "[]\n")
        elif self.output == "tsv" and not self._started:
            self._out.write("\t".join(self.tsv_fields) + "\n")
        self._out.flush()


def printable_tsv(text: str) -> str:
    """A TSV field with no control character left (escapes already applied by ``tsv_field``)."""
    return text if text.isprintable() else "".join(ch if ch.isprintable() else "\ufffd" for ch in text)


def write_value(
    value: Any,
    output: str,
    *,
    redact: Redact,
    file: IO[str] | None = None,
    fields: Sequence[str] | None = None,
) -> None:
    """A command's answer in ``json`` (indented), ``jsonl`` (one compact line; a list: one line per item)
    or ``tsv`` (:func:`tsv_table`; ``fields``: a list's TSV header, also when it is empty; None: nothing
    at all)."""
    out = file or sys.stdout
    if output == "json":
        out.write(to_json(value, redact=redact) + "\n")
    elif output == "jsonl":
        items = value if isinstance(value, list) else [value]
        out.write("".join(to_json(item, redact=redact, compact=True) + "\n" for item in items))
    elif output == "tsv":
        if value is None:
            return
        names, rows = tsv_table(value, fields)
        out.write("\t".join(names) + "\n")
        for row in rows:
            out.write("\t".join(printable_tsv(redact(tsv_field(row.get(n)))) for n in names) + "\n")
    else:
        raise ValueError(f"not a machine-readable output: {output!r}")
    out.flush()


def tsv_table(
    value: Any, fields: Sequence[str] | None = None
) -> tuple[list[str], Sequence[Mapping[str, Any]]]:
    """The TSV header and rows of a command's answer: a list of things is a row per thing (its fields);
    one flat thing (plain values, lists of them) is one row; a document with parts (``info``) is a row per
    value (:func:`rows_of`)."""
    if isinstance(value, list):
        rows = [item if isinstance(item, Mapping) else {"value": item} for item in value]
        return list(fields or dict.fromkeys(name for row in rows for name in row)), rows
    if isinstance(value, Mapping) and all(_flat(v) for v in value.values()):
        return sorted(value), [value]
    return ["name", "value"], rows_of(value)


def _flat(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(not isinstance(v, Mapping | list | tuple) for v in value)
    return not isinstance(value, Mapping)


def rows_of(value: Any, prefix: str = "") -> list[dict[str, Any]]:
    """A document as TSV rows, one per plain value: ``{"name": "a.b.0", "value": ...}`` (lists by index;
    an empty list or mapping is a row without a value)."""
    if isinstance(value, Mapping):
        items: list[tuple[str, Any]] = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        return [{"name": prefix, "value": value}]
    if not items:
        return [{"name": prefix, "value": None}] if prefix else []
    rows = []
    for key, item in items:
        rows += rows_of(item, f"{prefix}.{key}" if prefix else key)
    return rows
