"""The CLI's terminal layer: words, pages and tables fitted to the width of the terminal, laid out by
rich; progress on stderr. The machine-readable formats are :mod:`kie_uploader.cli.formats`.

Width: ``$COLUMNS`` when set, else the width of the terminal on stdout, else 80 (what ``ls -C`` does, and
``shutil.get_terminal_size``; rich alone would measure the terminal on stdin or stderr even when stdout is a
pipe). No line is wider than that (display width: a CJK character counts two), and nothing is lost to it:

- sentences wrap (continuation lines indented), in a table's cell too;
- identifiers (S3 URIs, keys, ARNs, URLs, queue names) are never wrapped: shown whole when they fit, else cut
  in the middle so that both ends stay (the bucket and the file name, the host and the file), never below
  :data:`MIN_IDENTIFIER` characters; ``--wide`` and the machine formats show them whole.

rich lays out and draws: its ``Table`` renders the tables (header, rule, padding, wrapped cells, wide
characters) and the aligned ``name  value`` pages (a grid), its ``Text`` wraps sentences, its ``Console``
writes to the terminal. What rich cannot do is here: cutting an identifier in the middle (:class:`Cut`),
dropping the columns of lesser use on a narrow terminal, and keeping a streamed table's column widths page
after page (:func:`layout` chooses the widths from the first page; rich keeps them).

Every text goes through the ``redact`` function the caller gives before anything is cut, so that a cut can
never leave part of a secret behind.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import IO, TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.measure import Measurement

DEFAULT_WIDTH = 80
ELLIPSIS = "…"
SEPARATOR = "  "
#: An identifier is never cut shorter than this (a room narrower than it takes the identifier's own line).
MIN_IDENTIFIER = 12
Redact = Callable[[str], str]
#: How a table's long cell fits its column: ``wrap`` (sentences), ``middle`` (identifiers), ``auto`` (URLs
#: in the middle, the rest wrapped).
Elide = Literal["wrap", "middle", "auto"]


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
_WORDS = re.compile(r"\S+")


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


def looks_like_a_location(text: str) -> bool:
    """A URL or an S3 URI (``scheme://...``)."""
    return "://" in text[:16]


def is_identifier(text: str) -> bool:
    """One word (an ARN, a URL, a queue name): never wrapped, cut in the middle when it must be."""
    return bool(text) and _WORDS.fullmatch(text) is not None


def fit(text: str, width: int, elide: Elide = "middle") -> str:
    """``text`` on one line of ``width`` cells: cut in the middle (``middle``; ``auto``: URLs only), or at
    the end."""
    if elide == "middle" or (elide == "auto" and looks_like_a_location(text)):
        return elide_middle(text, width)
    return elide_end(text, width)


class Cut:
    """A rich renderable of one identifier: whole when it fits the room it is given, else cut in the
    middle; it asks for at least :data:`MIN_IDENTIFIER` cells."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        from rich.measure import Measurement

        width = cell_len(self.text)
        return Measurement(min(width, MIN_IDENTIFIER), width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.text import Text

        yield Text(elide_middle(self.text, options.max_width), no_wrap=True, overflow="crop")


def cell(text: str, elide: Elide, width: int) -> Any:
    """A table cell of ``width`` cells as rich renders it: an identifier (:class:`Cut`; ``auto``: a URL or
    one word), or words wrapped to the width."""
    from rich.text import Text

    if elide == "middle" or (elide == "auto" and (looks_like_a_location(text) or is_identifier(text))):
        return Cut(text)
    return Text("\n".join(_wrap(text, width)), overflow="fold")


# --- sentences and pages ---------------------------------------------------------------------------


@cache
def _measuring() -> Console:
    """A console that only measures and wraps (never writes)."""
    from rich.console import Console

    return Console(file=io.StringIO(), width=10_000, color_system=None, markup=False, emoji=False)


def _wrap(text: str, width: int) -> list[str]:
    """``text`` wrapped at word boundaries to lines of at most ``width`` cells (a longer word folded)."""
    from rich.text import Text

    lines = [line.plain.strip() for line in Text(text).wrap(_measuring(), max(1, width), overflow="fold")]
    return [line for line in lines if line] or [""]


def wrap_prose(text: str, width: int | None) -> str:
    """Sentences (a command's summary, a state) wrapped to ``width``: nothing cut, continuation lines
    indented by two spaces more than their line; ``None``: unchanged (a pipe, ``--wide``)."""
    if width is None:
        return text
    lines: list[str] = []
    for line in text.split("\n"):
        lines += _wrap_line(printable(line), width)
    return "\n".join(lines)


def _wrap_line(line: str, width: int) -> list[str]:
    if cell_len(line) <= width:
        return [line]
    body = line.lstrip(" ")
    indent = " " * (len(line) - len(body))
    hang = indent + "  " if len(indent) + 2 < width // 2 else ""
    first, *_ = _wrap(body, width - len(indent))
    rest = body[len(first) :].lstrip(" ")
    return [indent + first] + [hang + part for part in _wrap(rest, width - len(hang))]


@dataclass
class Page:
    """A page of words for the terminal: lines of prose, and groups of aligned ``name  value`` pairs.

    A value is an identifier when it is one word (an ARN, a URI), else prose: fitted to ``width``, prose
    wraps in the value's column; an identifier is cut in the middle to that column, or, when the column
    is too narrow for :data:`MIN_IDENTIFIER` cells, goes on its own line below its name.
    """

    parts: list[tuple[str, Any]] = field(default_factory=list)

    def line(self, text: str = "") -> Page:
        """A line of prose (its leading spaces are its indent)."""
        self.parts.append(("line", text))
        return self

    def pairs(self, items: Iterable[tuple[str, Any]], *, indent: int = 0) -> Page:
        """Aligned ``name  value`` lines (``None`` values are left out)."""
        shown = [(str(name), str(value)) for name, value in items if value is not None]
        if shown:
            self.parts.append(("pairs", (indent, shown)))
        return self

    def item(self, identifier: str, words: str, *, indent: int = 2) -> Page:
        """An identifier (an S3 URI) and what is said of it, on one line when it fits; else the identifier
        on its own line (cut in the middle if it must be) and the words wrapped below it."""
        self.parts.append(("item", (indent, identifier, words)))
        return self

    def render(self, width: int | None, *, redact: Redact = lambda text: text) -> str:
        """The page's lines, none wider than ``width`` (``None``: each line whole)."""
        lines: list[str] = []
        for kind, value in self.parts:
            if kind == "line":
                text = printable(redact(value))
                lines += [text] if width is None else _wrap_line(text, width)
            elif kind == "item":
                indent, identifier, words = value
                lines += _item(printable(redact(identifier)), printable(redact(words)), indent, width)
            else:
                indent, items = value
                items = [(printable(redact(n)), printable(redact(v))) for n, v in items]
                lines += _pairs(items, indent, width)
        return "\n".join(lines)


def _item(identifier: str, words: str, indent: int, width: int | None) -> list[str]:
    pad = " " * indent
    whole = f"{pad}{identifier}  {words}".rstrip()
    if width is None or cell_len(whole) <= width:
        return [whole]
    lines = [pad + elide_middle(identifier, max(MIN_IDENTIFIER, width - indent))]
    return lines + (_wrap_line(f"{pad}  {words}", width) if words else [])


def _pairs(items: list[tuple[str, str]], indent: int, width: int | None) -> list[str]:
    names = max(cell_len(name) for name, _ in items)
    pad = " " * indent
    if width is None:
        return [f"{pad}{name.ljust(names)}  {value}".rstrip() for name, value in items]
    room = width - indent - names - 2
    below = " " * (indent + 4)
    lines = []
    for name, value in items:
        head = f"{pad}{name}{' ' * (names - cell_len(name))}  "
        if cell_len(value) <= room:
            lines.append((head + value).rstrip())
        elif is_identifier(value) and room >= 3 * MIN_IDENTIFIER:
            lines.append(head + elide_middle(value, room))
        elif is_identifier(value):
            lines += [head.rstrip(), below + elide_middle(value, width - len(below))]
        elif room >= 2 * MIN_IDENTIFIER:
            lines += [head + part if i == 0 else " " * len(head) + part
                      for i, part in enumerate(_wrap(value, room))]  # fmt: skip
        else:
            lines += [head.rstrip()] + [below + part for part in _wrap(value, width - len(below))]
    return lines


def note(text: str, *, redact: Redact = lambda text: text) -> None:
    """A remark on stderr (the command goes on; an error is ``main``'s one line), wrapped to the width of
    the terminal when stderr is one or ``$COLUMNS`` is set."""
    sized = is_terminal(sys.stderr) or bool(os.environ.get("COLUMNS"))
    print(wrap_prose(redact(text), terminal_width() if sized else None), file=sys.stderr)


def render_lines(renderable: Any, width: int) -> list[str]:
    """What rich draws of ``renderable`` at ``width`` cells, as plain lines (trailing spaces dropped)."""
    from rich.console import Console

    out = io.StringIO()
    console = Console(
        file=out, width=max(1, width), color_system=None, markup=False, emoji=False, highlight=False,
        legacy_windows=False, force_terminal=False, soft_wrap=False,
    )  # fmt: skip
    console.print(renderable, crop=True)
    return [line.rstrip() for line in out.getvalue().split("\n")[:-1]]


# --- writing ----------------------------------------------------------------------------------------


@cache
def console_class() -> type[Console]:
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
    return console_class()(
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
