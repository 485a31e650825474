"""Issue 17 without a network: help fitted to the terminal, pages that wrap sentences and keep identifiers,
arguments refused for what they are, a malformed endpoint, and the small words (reproductions 3, 6, 7, 8;
1, 2, 4 and 5 run against the deployed stack in tests/e2e/test_cli_walk.py).
"""

from __future__ import annotations

import argparse
import io
import re
from pathlib import Path

import pytest
from rich.cells import cell_len

from kie_uploader.cli import console, dlq, main, operating
from kie_uploader.cli.entry import build_parser
from kie_uploader.cli.errors import EXIT_ERROR, EXIT_OK
from kie_uploader.cli.output import render_record

REPO = Path(__file__).resolve().parents[2]
NOW = 1_700_000_000.0


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command's words (``dlq peek`` included)."""
    found: list[tuple[str, ...]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += leaves(sub, (*path, name))
    return found or [path]


COMMANDS = [(), *leaves(build_parser())]


def help_of(capsys: pytest.CaptureFixture[str], words: tuple[str, ...]) -> str:
    capsys.readouterr()
    assert main([*words, "--help"]) == EXIT_OK
    return capsys.readouterr().out


# --- reproduction 3: help at the terminal's width ------------------------------------------------------


@pytest.mark.parametrize("columns", [80, 120])
def test_every_help_fits_the_terminal_and_uses_its_width(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    # Reported: with COLUMNS=80 help texts were hard-wrapped at about 100 columns; `list --help` had a
    # 192-character line.
    monkeypatch.setenv("COLUMNS", str(columns))
    for words in COMMANDS:
        text = help_of(capsys, words)
        too_long = [line for line in text.splitlines() if cell_len(line) > columns]
        assert not too_long, (words, too_long)
    # The description is filled to the terminal's width (argparse's own), not to a fixed 100 columns.
    description = help_of(capsys, ("list",)).split("\n\n")[1].splitlines()
    assert max(len(line) for line in description) > (100 if columns == 120 else 70), description


# --- reproduction 6: what is refused, and in whose words -----------------------------------------------


def test_a_duration_without_its_unit_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    # Reported: `list --expiring-within 12` (no unit) was accepted (as 12 seconds).
    assert main(["list", "--expiring-within", "12"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "argument --expiring-within: '12' has no unit: write 12s for seconds, 12m, 12h or 12d" in err


def test_configure_refuses_a_prefix_doctor_would_call_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Reported: `configure prefix="My Docs/"` was accepted, then `doctor` called it an error.
    path = tmp_path / "kie-uploader.settings.json"
    assert main(["configure", "--settings-file", str(path), "prefix=My Docs/"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "prefix='My Docs/' holds ' '" in err and "write prefix=My+Docs/" in err
    assert not path.exists()
    assert main(["configure", "--settings-file", str(path), "prefix=My+Docs/"]) == EXIT_OK


# --- reproduction 7: an endpoint without its scheme ----------------------------------------------------


def test_an_endpoint_without_a_scheme_is_one_line_naming_the_fix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reported: `AWS_ENDPOINT_URL=127.0.0.1:59233 kie-uploader list` → "internal error: ValueError: Invalid
    # endpoint … please report it".
    credentials = {"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "x"}
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "127.0.0.1:59233")
    assert main(["list"]) == EXIT_ERROR
    assert capsys.readouterr().err == (
        "kie-uploader: error: AWS_ENDPOINT_URL=127.0.0.1:59233 is not a URL: write it with its scheme, "
        "http:// or https:// (did you mean http://127.0.0.1:59233?)\n"
    )


# --- reproduction 8: small words -----------------------------------------------------------------------


def test_set_key_says_one_message_comes_back_by_itself() -> None:
    # Reported: "1 message in flight … come back by themselves".
    def in_flight(count: int) -> str:
        steps = operating.next_steps(dead_letter=0, in_flight=count, visibility_timeout=720)
        [step] = [s for s in steps if "in flight" in s]
        return step

    assert in_flight(1).startswith("1 message in flight on the queue comes back by itself within 720 s")
    assert in_flight(2).startswith("2 messages in flight on the queue come back by themselves within 720 s")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_ctrl_c_at_the_key_prompt_ends_the_prompts_line(capsys: pytest.CaptureFixture[str]) -> None:
    # Reported: Ctrl-C at the key prompt printed `interrupted` on the prompt's line.
    def interrupted(prompt: str) -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        operating.read_key(Terminal(), prompt=interrupted)
    assert capsys.readouterr().err == "\n"


def test_dlq_peek_gives_whole_seconds_and_iso_times() -> None:
    # Reported: `dlq peek --output json` gave ageSeconds as 10.254613161087036.
    message = {"MessageId": "m1", "Body": "not json", "Attributes": {"SentTimestamp": "1700000000000"}}
    [entry] = dlq.describe_messages(None, [message], now=NOW + 10.254613161087036)  # type: ignore[arg-type]
    assert entry["ageSeconds"] == 10 and isinstance(entry["ageSeconds"], int)
    assert entry["sentAt"] == "2023-11-14T22:13:20Z"


def test_status_shows_purge_at_as_a_time() -> None:
    # Reported: `status` showed purgeAt as a raw epoch.
    record = {"pk": "s3://b/k", "status": "DELETED", "purgeAt": int(NOW) + 30 * 86_400}
    lines = dict(line.split(None, 1) for line in render_record(record, now=NOW).render(None).splitlines())
    assert lines["purgeAt"] == "2023-12-14 22:13:20Z (in 30d 0h)"


def test_every_path_a_docstring_or_a_document_cites_exists() -> None:
    # Reported: publisher.py's docstring cited a module under infra/constructs/, which does not exist.
    folders = "src|infra|functions|tests|bench|docs"
    cited = re.compile(rf"(?<![\w/.-])((?:{folders})/[\w./-]*\w\.(?:py|md|json|toml))")
    sources = [p for d in ("src", "functions", "infra", "bench", "tests") for p in (REPO / d).rglob("*.py")]
    sources += [*(REPO / "docs").glob("*.md"), REPO / "README.md"]
    missing = {
        str(source.relative_to(REPO)): sorted(found)
        for source in sources
        if (found := {m for m in cited.findall(source.read_text("utf-8")) if not (REPO / m).exists()})
    }
    assert missing == {}


# --- pages: sentences wrap, identifiers stay -----------------------------------------------------------

ARN = "arn:aws:sqs:us-east-1:000000000000:KieUploader-UploaderQueuesDeadLetterQueue0123ABCD-0123456789ab"


@pytest.mark.parametrize("width", [40, 80, 120])
def test_a_page_wraps_sentences_and_keeps_both_ends_of_identifiers(width: int) -> None:
    sentence = (
        "queue: visibility timeout 720 s (a failed delivery comes back after it), into the dead-letter "
        "queue after 5 receives; the dead-letter queue keeps messages 14d 0h"
    )
    page = console.Page().line(sentence)
    page.pairs([("DeadLetterQueueArn", ARN), ("state", sentence)], indent=2)
    page.item(f"s3://bucket/{'deep/' * 20}日本語の写真.png", "ObjectCreated:Put  FAILED  [permanent] big")
    lines = page.render(width).splitlines()
    assert all(cell_len(line) <= width for line in lines), lines
    words = " ".join(line.strip() for line in lines)
    assert sentence in words  # wrapped, nothing cut
    for line in lines:
        for token in re.findall(r"\S*…\S*", line):
            assert len(token) - 1 >= console.MIN_IDENTIFIER, (token, lines)
    assert any("arn:aws:sqs:" in line and line.endswith("0123456789ab") for line in lines)  # both ends
    assert page.render(None).splitlines()[0] == sentence  # whole into a pipe

