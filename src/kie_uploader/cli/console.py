"""The CLI's output layer: terminal-sized tables, streamed machine output, progress on stderr.

Formats (``--output``): ``table`` (the default) lays rows out in columns fitted to the width of the
terminal; ``json`` is one JSON value (a list is streamed as an array, one compact item per line, never
built in memory); ``jsonl`` one compact JSON object per line; ``tsv`` a header line, then one line per row
(tab, newline, carriage return and backslash escaped as ``\\t``, ``\\n``, ``\\r``, ``\\\\``).

Width: ``$COLUMNS`` when set, else the width of the terminal on stdout, else 80 (what ``ls -C`` does, and
``shutil.get_terminal_size``; rich alone would measure the terminal on stdin or stderr even when stdout is a
pipe). In table mode no line is longer than that width: columns of lesser use are dropped first, then long
cells are cut with ``…``, URLs and S3 keys in the middle (both ends stay: the host and the file name).
``wide`` lifts the limit: nothing is cut.

Every text goes through the ``redact`` function the caller gives (the CLI's), before anything is cut, so
that a cut can never leave part of a secret behind, and again on the way out.

Progress is drawn on stderr only when stderr is a terminal, by rich's live display (which redraws a line
that wrapped, and clears itself when done); nothing is drawn otherwise.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import IO, TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress

OUTPUTS = ("table", "json", "jsonl", "tsv")
DEFAULT_WIDTH = 80
ELLIPSIS = "…"
SEPARATOR = "  "
Redact = Callable[[str], str]
Elide = Literal["end", "middle", "auto"]


# rich is imported on first use: `import kie_uploader.cli` stays quick (and rich-free) for commands and
# library users that never draw a table or a progress line.


def cell_len(text: str) -> int:
    """The width of ``text`` on a terminal, in cells (wide characters take two)."""
    if text.isascii():  # the common case, and the fast one (a table measures every cell)
        return len(text)
    from rich.cells import cell_len as measure

    return measure(text)


def set_cell_size(text: str, total: int) -> str:
    """``text`` cropped or padded to exactly ``total`` cells."""
    from rich.cells import set_cell_size as resize

    return resize(text, total)


def is_terminal(stream: Any) -> bool:
    """The stream is a terminal (a closed or fake stream is not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def terminal_width(default: int = DEFAULT_WIDTH) -> int:
    """``$COLUMNS``, else the width of the terminal on stdout, else ``default``."""
    return max(1, shutil.get_terminal_size((default, 24)).columns)


# --- cells ------------------------------------------------------------------------------------------

_CONTROL = {"\t": " ", "\n": " ", "\r": " "}


def printable(text: str) -> str:
    """One line with no control characters: whitespace ones become a space, others ``\\ufffd`` (a key
    holding an escape sequence must not drive the terminal)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _CONTROL.get(ch, "\ufffd") for ch in text)


def _tail(text: str, cells: int) -> str:
    """The longest end of ``text`` that fits in ``cells`` cells."""
    if text.isascii():
        return text[len(text) - cells :] if cells > 0 else ""
    used, start = 0, len(text)
    while start > 0:
        size = cell_len(text[start - 1])
        if used + size > cells:
            break
        used += size
        start -= 1
    return text[start:]


def elide_end(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells, ending with ``…`` when cut."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    return set_cell_size(text, width - 1).rstrip() + ELLIPSIS


def elide_middle(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells by dropping its middle: its start and its end both stay."""
    if cell_len(text) <= width:
        return text
    if width <= 2:
        return elide_end(text, width)
    right = (width - 1) // 2
    left = width - 1 - right
    return set_cell_size(text, left).rstrip() + ELLIPSIS + _tail(text, right)


def _looks_like_a_location(text: str) -> bool:
    return "://" in text[:16]


def fit(text: str, width: int, elide: Elide = "end") -> str:
    """``text`` cut to ``width`` cells: ``middle`` keeps both ends, ``auto`` does so for URLs only."""
    if elide == "middle" or (elide == "auto" and _looks_like_a_location(text)):
        return elide_middle(text, width)
    return elide_end(text, width)


# --- pages and sentences ---------------------------------------------------------------------------


def fit_page(text: str, width: int | None) -> str:
    """A page of ``name  value`` lines (a record, the stack's outputs) with no line wider than ``width``:
    a longer line is cut in the middle, so that its start (the name) and the end of its value both stay
    (None: unchanged; ``--wide`` and the JSON output show every value whole)."""
    if width is None:
        return text
    return "\n".join(elide_middle(printable(line), width) for line in text.split("\n"))


def wrap_prose(text: str, width: int | None) -> str:
    """Sentences (a command's summary, a state) wrapped to ``width``: nothing cut, continuation lines
    indented by two spaces; a word longer than the line (an S3 URI) is broken across lines."""
    if width is None:
        return text
    import textwrap

    lines = []
    for line in text.split("\n"):
        line = printable(line)
        if cell_len(line) <= width:
            lines.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip(" "))]
        lines += textwrap.wrap(
            line,
            width=max(width, len(indent) + 10),
            subsequent_indent=indent + "  ",
            break_long_words=True,
            break_on_hyphens=False,
        )
    return "\n".join(lines)


# --- tables -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A column of a terminal table.

    ``min``: the narrowest useful width; ``max``: the widest useful one (None: takes what is left, shared
    by ``weight`` with the other such columns). ``want``: the width an open column should have before any
    droppable column is shown (None: ``min``). ``drop``: columns that do not fit go, the highest ``drop``
    first (None: never dropped). ``elide``: how a long cell is cut.
    """

    header: str
    min: int = 4
    max: int | None = None
    drop: int | None = None
    elide: Elide = "end"
    weight: int = 1
    want: int | None = None


def layout(
    columns: Sequence[Column],
    width: int | None,
    sample: Sequence[Sequence[str]] = (),
) -> tuple[list[int], list[int]]:
    """Which columns to show (their indexes) and their widths, for lines of at most ``width`` cells
    (None: no limit, every column as wide as its widest cell in ``sample``).

    ``sample``: rows seen so far (the first page of a stream); a column narrower than its ``max`` in the
    sample gets no more than it needs. Without a sample every column may take its ``max``.
    """
    natural = _natural_widths(columns, width, sample)
    shown = list(range(len(columns)))
    if width is None:
        return shown, natural

    def needed(indexes: list[int], *, wanted: bool = False) -> int:
        sizes = [
            min(max(columns[i].min, columns[i].want or 0) if wanted else columns[i].min, natural[i])
            for i in indexes
        ]
        return sum(sizes) + len(SEPARATOR) * (len(indexes) - 1)

    # A droppable column stays only when the open columns (the key, the URL) still get what they want.
    for index in sorted(
        (i for i, c in enumerate(columns) if c.drop is not None), key=lambda i: -(columns[i].drop or 0)
    ):
        if needed(shown, wanted=True) <= width:
            break
        shown.remove(index)
    widths = {i: min(columns[i].min, natural[i]) for i in shown}
    spare = width - needed(shown)
    # Columns with a bounded width first (those never dropped, then the others in the order they stay),
    # then the open ones by weight; what is left lets a bounded column show the longest cell of the sample.
    bounded = sorted((i for i in shown if columns[i].max is not None), key=lambda i: columns[i].drop or 0)
    spare = _fill(bounded, widths, natural, spare)
    spare = _spread(columns, [i for i in shown if columns[i].max is None], widths, natural, spare)
    _fill(bounded, widths, _natural_widths(columns, width, sample, capped=False), spare)
    # Narrower than even the minimums: shrink the widest until the line fits (or every column is 1 wide).
    while sum(widths.values()) + len(SEPARATOR) * (len(shown) - 1) > width and max(widths.values()) > 1:
        widest = max(widths, key=lambda i: widths[i])
        widths[widest] -= 1
    return shown, [widths[i] for i in shown]


def _natural_widths(
    columns: Sequence[Column], width: int | None, sample: Sequence[Sequence[str]], *, capped: bool = True
) -> list[int]:
    """What each column would take with no limit but its ``max`` (unless not ``capped``) and the line's
    ``width``."""
    natural = []
    for i, column in enumerate(columns):
        widest = max((cell_len(row[i]) for row in sample), default=None)
        if width is None:
            natural.append(max(cell_len(column.header), widest or 0))
            continue
        cap = column.max if column.max is not None and (capped or widest is None) else width
        content = cap if widest is None else min(widest, cap)
        natural.append(max(min(cell_len(column.header), cap), content))
    return natural


def _fill(indexes: list[int], widths: dict[int, int], natural: list[int], spare: int) -> int:
    """Widen the columns in turn up to their natural width with ``spare`` cells; returns what is left."""
    for i in indexes:
        extra = max(0, min(spare, natural[i] - widths[i]))
        widths[i] += extra
        spare -= extra
    return spare


def _spread(
    columns: Sequence[Column], open_columns: list[int], widths: dict[int, int], natural: list[int], spare: int
) -> int:
    """Share ``spare`` cells among the open columns by weight, none beyond its natural width; returns what
    is left."""
    while spare > 0:
        hungry = [i for i in open_columns if widths[i] < natural[i]]
        if not hungry:
            return spare
        total_weight = sum(columns[i].weight for i in hungry)
        given = 0
        for i in hungry:
            share = max(1, spare * columns[i].weight // total_weight)
            extra = min(share, natural[i] - widths[i], spare - given)
            widths[i] += extra
            given += extra
        if not given:
            return spare
        spare -= given
    return spare


class TableWriter:
    """A table written as its rows come: the layout is fixed by the first batch (and the width), the
    header written once, then each batch as one write."""

    def __init__(
        self,
        columns: Sequence[Column],
        *,
        redact: Redact,
        width: int | None = None,
        wide: bool = False,
        file: IO[str] | None = None,
        title: str | None = None,
    ) -> None:
        self.columns = list(columns)
        self.title = title
        self.redact = redact
        self.width = None if wide else (width or terminal_width())
        self.file = file
        self.rows = 0
        self._shown: list[int] | None = None
        self._widths: list[int] = []

    def _cells(self, row: Sequence[Any]) -> list[str]:
        # Redacted before anything is cut: a cut can never leave part of a secret behind.
        return [printable(self.redact("" if cell is None else str(cell))) for cell in row]

    def _line(self, cells: Sequence[str]) -> str:
        assert self._shown is not None
        parts = []
        for index, width in zip(self._shown, self._widths, strict=True):
            text = cells[index]
            if self.width is not None:
                text = fit(text, width, self.columns[index].elide)
            parts.append(text + " " * max(0, width - cell_len(text)))
        line = SEPARATOR.join(parts).rstrip()
        if self.width is not None and cell_len(line) > self.width:  # never: the layout fits; a guard
            line = set_cell_size(line, self.width).rstrip()
        return line

    def lines(self, rows: Iterable[Sequence[Any]]) -> list[str]:
        """The lines of these rows (the header and its rule first, the first time)."""
        cells = [self._cells(row) for row in rows]
        out: list[str] = []
        if self._shown is None:
            self._shown, self._widths = layout(self.columns, self.width, cells)
            if self.title is not None:
                title = printable(self.redact(self.title))
                out.append(title if self.width is None else elide_middle(title, self.width))
            out.append(self._line([c.header for c in self.columns]))
            out.append(SEPARATOR.join("-" * w for w in self._widths))
        out += [self._line(row) for row in cells]
        self.rows += len(cells)
        return out

    def write(self, rows: Iterable[Sequence[Any]]) -> None:
        """Write these rows (with the header the first time) in one write."""
        rows = list(rows)
        if not rows:  # nothing yet: not even the header
            return
        heading = 0 if self._shown is not None else 2 + (self.title is not None)
        lines = self.lines(rows)
        if lines:
            write_lines(lines, redact=self.redact, file=self.file, heading=heading)


def render(
    columns: Sequence[Column],
    rows: Iterable[Sequence[Any]],
    *,
    redact: Redact,
    width: int | None = None,
    wide: bool = False,
    title: str | None = None,
) -> str:
    """A whole table as text (``title``, header, rule, rows), fitted to ``width`` (default: the
    terminal's)."""
    writer = TableWriter(columns, redact=redact, width=width, wide=wide, title=title)
    return redact("\n".join(writer.lines(rows)))


# --- writing ----------------------------------------------------------------------------------------


@cache
def _console_class() -> type[Console]:
    from rich.console import Console

    class _Console(Console):
        """A rich console whose closed pipe is a ``BrokenPipeError`` for the caller (rich's own answer is
        to point stdout at /dev/null and exit 1, which would hide that the reader went away on purpose)."""

        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError("the reader of the output went away")

    return _Console


def stdout_console(file: IO[str] | None = None) -> Console:
    """A console on stdout that never wraps nor crops (the lines it gets already fit), styles only on a
    terminal."""
    out = file or sys.stdout
    terminal = is_terminal(out)
    return _console_class()(
        file=out,
        force_terminal=terminal,
        no_color=not terminal,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=True,
        width=10_000,  # the lines already fit: rich must neither wrap nor crop them
    )


def write_lines(
    lines: Sequence[str], *, redact: Redact, file: IO[str] | None = None, heading: int = 0
) -> None:
    """Write table lines in one write, the first ``heading`` ones (title, header, rule) bold through rich
    on a terminal; plain text into a pipe or a file (nothing to style: the quick way)."""
    out = file or sys.stdout
    if not is_terminal(out):
        out.write("".join(redact(line) + "\n" for line in lines))
        out.flush()
        return
    from rich.text import Text

    console = stdout_console(out)
    text = Text()
    for number, line in enumerate(lines):
        style = "bold" if number < heading else ""
        text.append(redact(line), style=style)
        text.append("\n")
    console.print(text, end="")


def write(text: str, *, redact: Redact, file: IO[str] | None = None) -> None:
    """Write ``text`` (redacted) and a newline to stdout, as plain text."""
    out = file or sys.stdout
    out.write(redact(text) + "\n")


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
    if isinstance(value, dict | list):
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
        columns: Sequence[Column] = (),
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
        self._table = TableWriter(columns, redact=redact, width=width, wide=wide, file=file, title=title)
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


def write_value(value: Any, output: str, *, redact: Redact, file: IO[str] | None = None) -> None:
    """One machine-readable value (a command's summary or record) in ``json``, ``jsonl`` or ``tsv``:
    TSV is a header line of the mapping's names, then one line of its values (None: nothing at all)."""
    out = file or sys.stdout
    if output == "json":
        out.write(to_json(value, redact=redact) + "\n")
    elif output == "jsonl":
        out.write(to_json(value, redact=redact, compact=True) + "\n")
    elif output == "tsv":
        if value is None:
            return
        names = sorted(value)
        out.write("\t".join(names) + "\n")
        out.write("\t".join(printable_tsv(redact(tsv_field(value[n]))) for n in names) + "\n")
    else:
        raise ValueError(f"not a machine-readable output: {output!r}")
    out.flush()


# --- progress ---------------------------------------------------------------------------------------


@cache
def _count_columns() -> tuple[type, type]:
    """rich progress columns: items per second (rich's own speed column counts bytes), and ``1,234
    listed`` when there is no total."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f}/s" if speed else "", style="progress.data.speed")

    class Count(ProgressColumn):
        def __init__(self, unit: str) -> None:
            super().__init__()
            self.unit = unit

        def render(self, task: Task) -> Text:
            return Text(f"{int(task.completed):,} {self.unit}".rstrip(), style="progress.download")

    return Rate, Count


class Progress:
    """A progress line on stderr, drawn only when stderr is a terminal: a spinner, the label and the
    latest text; with ``total`` a bar, done/total, rate and time left; without one, a count and rate.

    ``update(text, completed=N)`` sets what it says; ``done()`` clears it (also as a context manager).
    """

    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        unit: str = "",
        enabled: bool | None = None,
        redact: Redact = lambda text: text,
        file: IO[str] | None = None,
    ) -> None:
        stream = file or sys.stderr
        self.label = label
        self.redact = redact
        self.enabled = is_terminal(stream) if enabled is None else enabled
        self._progress: RichProgress | None = None
        if not self.enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            ProgressColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress
        from rich.table import Column as RichColumn

        Rate, Count = _count_columns()
        console = _console_class()(
            file=stream, force_terminal=True, highlight=False, markup=False, emoji=False
        )
        text = TextColumn(
            "{task.description}",
            markup=False,
            table_column=RichColumn(no_wrap=True, overflow="ellipsis", ratio=1),
        )
        # The figures first, the words last: on a narrow terminal the words are cut (``…``), never the
        # figures, and the line never wraps.
        columns: list[str | ProgressColumn] = [SpinnerColumn()]
        if total is not None:
            columns += [BarColumn(bar_width=20), MofNCompleteColumn(), Rate(), TimeRemainingColumn()]
        elif unit:
            columns += [Count(unit), Rate(), TimeElapsedColumn()]
        else:
            columns += [TimeElapsedColumn()]
        columns.append(text)
        self._progress = RichProgress(
            *columns,
            console=console,
            expand=True,  # the words take what the figures leave, no more
            transient=True,  # gone when done: the summary follows on stdout
            redirect_stdout=False,
            redirect_stderr=False,
            refresh_per_second=8,
            speed_estimate_period=10,
        )
        self._task = self._progress.add_task(self.redact(label), total=total)
        self._progress.start()

    def update(
        self, text: str = "", *, completed: int | None = None, total: int | None = None, force: bool = False
    ) -> None:
        """Say ``text`` after the label; ``completed`` (and ``total``) move the count, bar and rate.
        ``force`` is accepted for the old interface; the display refreshes itself."""
        if self._progress is None:
            return
        description = f"{self.label}: {text}" if text else self.label
        fields: dict[str, Any] = {"description": self.redact(printable(description))}
        if completed is not None:
            fields["completed"] = completed
        if total is not None:
            fields["total"] = total
        self._progress.update(self._task, **fields)

    def done(self) -> None:
        """Clear the display (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done()
