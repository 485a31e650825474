"""The CLI's terminal layer (kie_uploader.cli.console): widths, elision, streamed formats, progress. No
network."""

from __future__ import annotations

import io
import json
import os
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len

from kie_uploader.cli import console, formats, progress, tables
from kie_uploader.cli.output import records_table, redact, render_table

NOW = 1_700_000_000.0
SIGNATURE = "d3adb33fd3adb33f"
PRESIGNED = (
    "https://bkt.s3.us-east-1.amazonaws.com/photos/a.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    f"&X-Amz-Credential=AKIAEXAMPLE%2F20240101&X-Amz-Signature={SIGNATURE}&X-Amz-Security-Token=tok987"
)
KIE_URL = "https://tempfile.redpandaai.co/kieai/market/2025/01/04/abcdef0123456789/photos-ete-2025-plage.jpg"


def record(key: str, **overrides: object) -> dict[str, object]:
    value: dict[str, object] = {
        "pk": f"s3://bkt/{key}", "status": "UPLOADED", "bucket": "bkt", "key": key, "etag": "e",
        "size": 123_456, "downloadUrl": KIE_URL, "expiresAt": int(NOW) + 2 * 86_400,
        "updatedAt": "2023-11-14T22:13:20Z",
    }  # fmt: skip
    value.update(overrides)
    return value


RECORDS = [
    record("photos/2025/summer/été 2025 à la plage, la toute dernière.jpg"),
    record("big.bin", status="FAILED", downloadUrl=None, expiresAt=None, errorKind="transient",
           retryable=True, error=f"download of {PRESIGNED} failed: 503 Service Unavailable, slow down"),
    record("日本語/写真/とても長いファイル名のテスト.png"),  # wide characters: two cells each
]  # fmt: skip


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("bucket", [None, "bkt"])
def test_no_line_of_the_list_table_is_longer_than_the_width(width: int, bucket: str | None) -> None:
    lines = records_table(RECORDS, now=NOW, width=width, bucket=bucket).splitlines()
    heading = 2 if bucket is None else 3
    # A row per record; an error too long for its cell wraps on the lines below its row (never cut).
    assert len([line for line in lines[heading:] if not line.startswith(" ")]) == len(RECORDS)
    assert max(cell_len(line) for line in lines) <= width
    assert max(cell_len(line) for line in lines) >= width - 10  # and the room is used


@settings(max_examples=150, deadline=None)
@given(
    width=st.integers(min_value=20, max_value=200),
    rows=st.lists(st.lists(st.text(min_size=0, max_size=120), min_size=4, max_size=4), max_size=5),
)
def test_any_table_fits_any_width(width: int, rows: list[list[str]]) -> None:
    columns = [
        tables.Column("A", min=10, elide="middle", weight=2),
        tables.Column("B", min=6, max=8, drop=1),
        tables.Column("C", min=12, max=20, drop=2),
        tables.Column("D", min=10, elide="auto"),
    ]
    text = tables.render(columns, rows, redact=redact, width=width)
    for line in text.splitlines():
        assert cell_len(line) <= width, (width, line)
        assert line.isprintable()  # no control character reaches the terminal


def test_middle_elision_keeps_both_ends_of_a_url() -> None:
    cut = console.elide_middle(KIE_URL, 40)
    assert cell_len(cut) == 40 and "…" in cut
    assert cut.startswith("https://tempfile.")
    assert cut.endswith("plage.jpg")
    assert console.elide_middle("short", 40) == "short"
    # In a table: the URL column keeps both ends, the key column too.
    row = records_table(RECORDS[:1], now=NOW, width=100, bucket="bkt").splitlines()[3]
    assert row.startswith("photos/2025") and "dernière.jpg" in row
    assert "https://tempfile" in row and row.endswith("plage.jpg")


def test_wide_keeps_the_whole_url_and_the_whole_key() -> None:
    text = records_table(RECORDS, now=NOW, width=80, wide=True)
    assert KIE_URL in text
    assert "s3://bkt/photos/2025/summer/été 2025 à la plage, la toute dernière.jpg" in text
    assert "…" not in text


def test_keys_are_relative_to_the_bucket_the_header_names() -> None:
    lines = records_table(RECORDS + [record("x", pk="s3://other/x")], now=NOW, width=200, bucket="bkt")
    title, header, _, first, *_, other = lines.splitlines()
    assert title == "keys in s3://bkt/" and header.startswith("KEY ")
    assert first.startswith("photos/2025/summer/")
    assert other.startswith("s3://other/x ")  # a record of another bucket keeps its whole URI
    # A bucket's name (up to 63 characters) is said whole above the header, however narrow the columns.
    long_bucket = "kieuploader-sourcessourceffea7c30-50de024c25dad-0123456789abc"
    lines = records_table(
        [record("a.png", pk=f"s3://{long_bucket}/a.png")], now=NOW, width=80, bucket=long_bucket
    )
    assert lines.splitlines()[0] == f"keys in s3://{long_bucket}/"
    assert lines.splitlines()[3].startswith("a.png ")


def test_a_redacted_presigned_url_never_shows_its_signature() -> None:
    rows = [("s3://bkt/a.png", PRESIGNED), ("s3://bkt/b.png", f"failed: {PRESIGNED}")]
    outputs = [render_table(("URI", "URL"), rows, width=w) for w in (30, 60, 80, 120, 400)]
    outputs.append(render_table(("URI", "URL"), rows, wide=True))
    outputs += [records_table(RECORDS, now=NOW, width=w) for w in (80, 120, 300)]
    for output in ("json", "jsonl", "tsv"):
        stream = io.StringIO()
        writer = formats.Stream(output, redact=redact, tsv_fields=("pk", "error"), file=stream)
        writer.write(RECORDS)
        writer.close()
        outputs.append(stream.getvalue())
    for text in outputs:
        for secret in (SIGNATURE, "AKIAEXAMPLE", "tok987", "X-Amz-Signature"):
            assert secret not in text
    assert "amazonaws.com/photos/a.png?[redacted]" in outputs[-1]
    # A cut never leaves a piece of a secret behind: redaction comes before the cut.
    for width in range(5, 60):
        assert SIGNATURE[:6] not in console.fit(redact(PRESIGNED), width, "middle")


def test_jsonl_is_one_parsable_object_a_line() -> None:
    out = io.StringIO()
    stream = formats.Stream("jsonl", redact=redact, file=out)
    stream.write(RECORDS[:2])
    stream.write(RECORDS[2:])
    stream.close()
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["pk"] for line in lines] == [r["pk"] for r in RECORDS]


@pytest.mark.parametrize("pages", [[], [[]], [RECORDS[:1]], [RECORDS[:2], [], RECORDS[2:]]])
def test_json_is_one_array_written_page_by_page(pages: list[list[dict[str, object]]]) -> None:
    out = io.StringIO()
    stream = formats.Stream("json", redact=redact, file=out)
    written = []
    for page in pages:
        stream.write(page)
        written += page
        assert not out.getvalue() or out.getvalue().startswith("[")  # printed as it comes
    stream.close()
    assert [r["pk"] for r in json.loads(out.getvalue())] == [r["pk"] for r in written]


def test_an_unfinished_json_array_does_not_parse() -> None:
    out = io.StringIO()
    formats.Stream("json", redact=redact, file=out).write(RECORDS)  # never closed: the listing failed
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.getvalue())


def test_tsv_is_a_header_then_one_escaped_line_a_record() -> None:
    out = io.StringIO()
    stream = formats.Stream("tsv", redact=redact, tsv_fields=("pk", "size", "retryable", "error"), file=out)
    stream.write([{"pk": "s3://b/tab\there", "size": 3, "retryable": True, "error": "two\nlines \\ end"}])
    stream.write([{"pk": "s3://b/x"}])
    stream.close()
    assert out.getvalue().splitlines() == [
        "pk\tsize\tretryable\terror",
        "s3://b/tab\\there\t3\ttrue\ttwo\\nlines \\\\ end",
        "s3://b/x\t\t\t",
    ]


def test_a_table_streamed_page_by_page_keeps_its_header_once_and_its_widths() -> None:
    out = io.StringIO()
    columns = [tables.Column("KEY", min=10, elide="middle"), tables.Column("URL", min=10, elide="auto")]
    stream = formats.Stream("table", redact=redact, columns=columns, width=50, file=out)
    stream.write([], [])  # an empty first page prints nothing, not even the header
    assert out.getvalue() == ""
    stream.write([{}], [("a" * 8, "https://x.example/" + "p" * 10)])
    stream.write([{}], [("k" * 100, KIE_URL)])
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("KEY") and sum(line.startswith("KEY") for line in lines) == 1
    assert all(cell_len(line) <= 50 for line in lines)
    assert lines[3].index("https") == lines[2].index("https")  # the same column, page after page


def test_control_characters_in_keys_never_reach_the_terminal() -> None:
    text = render_table(("KEY",), [("evil\x1b[2Jkey\nnext",)], width=40)
    assert "\x1b" not in text and "\n" not in text.splitlines()[2]


def test_terminal_width_honours_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "123")
    assert console.terminal_width() == 123
    monkeypatch.delenv("COLUMNS")
    # Under pytest stdout is not a terminal: the default, as ls -C does.
    assert console.terminal_width() == 80 or os.isatty(1)


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_nothing_when_stderr_is_not_a_terminal() -> None:
    out = io.StringIO()
    line = progress.Progress("backfill", unit="listed", file=out)
    line.update("3 enqueued", completed=10)
    line.done()
    assert out.getvalue() == ""


@pytest.mark.parametrize("total", [None, 1000])
def test_progress_on_a_terminal_fits_one_line_shows_counts_and_clears_itself(
    monkeypatch: pytest.MonkeyPatch, total: int | None
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    out = FakeTerminal()
    with progress.Progress("backfill " + "long-prefix/" * 10, unit="listed", total=total, file=out) as p:
        for i in range(1, 4):
            p.update(f"{i} enqueued", completed=i * 100)
            time.sleep(0.15)
    text = out.getvalue()
    frames = [f for f in text.split("\r\x1b[2K") if f.strip()]
    assert frames, text
    assert "300" in text and ("/s" in text)  # the count and the rate
    if total:
        assert "300/1000" in text
    plain = [strip_ansi(f).split("\n")[0] for f in frames]
    assert all(cell_len(line) <= 60 for line in plain), plain  # never wraps: no trail to leave
    assert text.endswith("\x1b[2K")  # erased when done


class TerminalPipe:
    """A pipe that says it is a terminal: the table goes through rich (bold header)."""

    def __init__(self, pipe: io.TextIOWrapper) -> None:
        self.pipe = pipe

    def write(self, text: str) -> int:
        return self.pipe.write(text)

    def flush(self) -> None:
        self.pipe.flush()

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.pipe.fileno()


@pytest.mark.parametrize("terminal", [False, True])
def test_a_closed_pipe_is_a_broken_pipe_error_not_an_exit(terminal: bool) -> None:
    # rich's own answer to a broken pipe is SystemExit(1) with stdout pointed at /dev/null.
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as pipe, pytest.raises(BrokenPipeError):
        out = TerminalPipe(pipe) if terminal else pipe
        for _ in range(100):  # past any buffer
            console.write_lines(["x" * 1000] * 100, redact=redact, file=out, heading=2)  # type: ignore[arg-type]
