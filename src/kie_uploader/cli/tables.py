"""Tables for the terminal: which columns fit, how wide each is, and rich's ``Table`` drawing them.

The widths are chosen here (:func:`layout`), from the first rows and the terminal's width: the columns of
lesser use are dropped first on a narrow terminal (``Column.drop``), every kept column gets at least its
``min``, the open ones (the key, the URL) share the rest by ``weight``. rich's own width algorithm shrinks
the widest column first, below its minimum if it must, and cannot drop a column; a streamed table must also
keep its widths page after page. rich then draws each batch at those widths: header, rule, padding, cells
that wrap (sentences) or are cut in the middle (identifiers, :class:`kie_uploader.cli.console.Cut`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from kie_uploader.cli.console import (
    SEPARATOR,
    Elide,
    Redact,
    cell,
    cell_len,
    elide_middle,
    printable,
    render_lines,
    terminal_width,
    write_lines,
)

if TYPE_CHECKING:
    from rich.table import Table


@dataclass(frozen=True)
class Column:
    """A column of a terminal table.

    ``min``: the narrowest useful width; ``max``: the widest useful one (None: takes what is left, shared
    by ``weight`` with the other such columns). ``want``: the width an open column should have before any
    droppable column is shown (None: ``min``). ``drop``: columns that do not fit go, the highest ``drop``
    first (None: never dropped). ``elide``: how a long cell fits (sentences wrap, identifiers are cut in
    the middle).
    """

    header: str
    min: int = 4
    max: int | None = None
    drop: int | None = None
    elide: Elide = "wrap"
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
    header written once, then each batch as one write; rich draws each batch at those widths."""

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

    def _table(self, rows: list[list[str]], *, header: bool) -> Table:
        """rich's table of these rows (or of the header alone) at the chosen widths: two spaces between
        columns, identifiers cut in the middle, words wrapped (nothing cut with ``--wide``)."""
        from rich.table import Table

        assert self._shown is not None
        table = Table(box=None, show_header=header, show_edge=False, pad_edge=False, padding=(0, 1))
        for index, width in zip(self._shown, self._widths, strict=True):
            table.add_column(self.columns[index].header, width=width, overflow="fold")
        for row in rows:
            if self.width is None:
                table.add_row(*(row[i] for i in self._shown))
            else:
                shown = zip(self._shown, self._widths, strict=True)
                table.add_row(*(cell(row[i], self.columns[i].elide, width) for i, width in shown))
        return table

    def lines(self, rows: Iterable[Sequence[Any]]) -> list[str]:
        """The lines of these rows (the title, the header and its rule first, the first time)."""
        cells = [self._cells(row) for row in rows]
        out: list[str] = []
        header = self._shown is None
        if header:
            self._shown, self._widths = layout(self.columns, self.width, cells)
            if self.title is not None:
                title = printable(self.redact(self.title))
                out.append(title if self.width is None else elide_middle(title, self.width))
        total = sum(self._widths) + len(SEPARATOR) * (len(self._widths) - 1)
        if header:  # the header, then the rule under it, then the rows: three tables at the same widths
            out += render_lines(self._table([], header=True), total)
            out.append(SEPARATOR.join("-" * width for width in self._widths))
        if cells:
            out += render_lines(self._table(cells, header=False), total)
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
