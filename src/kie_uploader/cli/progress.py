"""A progress line on stderr, drawn by rich only when stderr is a terminal (redrawn cleanly even when it
wraps, cleared when done); nothing is drawn into a pipe or a file."""

from __future__ import annotations

import sys
from functools import cache
from typing import IO, TYPE_CHECKING, Any

from kie_uploader.cli.console import Redact, console_class, is_terminal, printable

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress


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
        console = console_class()(
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
