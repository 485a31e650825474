"""The live URL from the CLI and from Python (``url``, ``refresh``, ``list --expiring-within``, ``live_url``),
the record's states, durations and ``backfill --force``'s messages. No network: the function is a fake."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

import kie_uploader
from kie_uploader import live
from kie_uploader.cli import aws as cli_aws
from kie_uploader.cli import entry, main, output, records, store
from kie_uploader.cli.args import parse_duration
from kie_uploader.cli.entry import build_parser
from kie_uploader.cli.errors import EXIT_ERROR, EXIT_NO, EXIT_OK
from kie_uploader.cli.output import records_table, render_record
from kie_uploader.live import LiveUrlError, describe_record

NOW = 1_700_000_000.0
URL = "https://tempfile.example/s3-uploads/bkt/abc/a.png"


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "pk": "s3://bkt/a.png", "status": "UPLOADED", "bucket": "bkt", "key": "a.png", "size": 10,
        "downloadUrl": URL, "expiresAt": int(NOW) + 2 * 86_400 + 3 * 3600 + 120, "rev": 3,
    }  # fmt: skip
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


# --- durations ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("1h", 3600),
        ("2d", 172_800),
        ("1h30m", 5400),
        ("12H", 43_200),
    ],
)
def test_durations_read_with_their_unit(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "-1h", "1.5h", "1h junk", "soon"])
def test_a_malformed_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


# --- arguments ----------------------------------------------------------------------------------------


def test_url_takes_one_object_and_a_minimum_validity_of_an_hour_by_default() -> None:
    parser = build_parser()
    args = parser.parse_args(["url", "s3://bkt/a b.png"])
    assert (str(args.uri), args.min_valid, args.handler) == ("s3://bkt/a b.png", 3600, records.cmd_url)
    assert parser.parse_args(["url", "s3://bkt/k", "--min-valid", "90s", "--json"]).min_valid == 90
    assert parser.parse_args(["--json", "url", "s3://bkt/k", "--min-valid", "2d"]).json is True


def test_refresh_takes_prefixes_and_twelve_hours_by_default() -> None:
    parser = build_parser()
    args = parser.parse_args(["refresh", "s3://bkt/photos/"])
    assert ([str(u) for u in args.uris], args.expiring_within) == (["s3://bkt/photos/"], 43_200)
    args = parser.parse_args(["refresh", "s3://bkt/a/", "s3://bkt/b/", "--expiring-within", "30m"])
    assert ([str(u) for u in args.uris], args.expiring_within) == (["s3://bkt/a/", "s3://bkt/b/"], 1800)


def test_list_takes_expiring_within_and_a_prefix_as_argument_or_option() -> None:
    parser = build_parser()
    args = parser.parse_args(["list", "--expiring-within", "12h", "s3://bkt/p/"])
    assert (args.expiring_within, str(args.prefix_uri), args.prefix) == (43_200, "s3://bkt/p/", None)
    args = parser.parse_args(["list", "--prefix", "s3://bkt/p/"])
    assert (args.expiring_within, args.prefix_uri, str(args.prefix)) == (None, None, "s3://bkt/p/")


@pytest.mark.parametrize(
    "argv",
    [
        ["url", "s3://bkt/k", "--min-valid", "soon"],
        ["url", "s3://bkt/"],
        ["refresh"],
        ["list", "--expiring-within", "1y"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "error:" in err.strip().splitlines()[-1] and "Traceback" not in err


def test_help_names_the_new_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "url" in out and "refresh" in out


# --- states -------------------------------------------------------------------------------------------


def test_no_record_is_never_seen() -> None:
    state = describe_record(None, NOW)
    assert (state.state, state.sentence) == ("NEVER_SEEN", "no record (the object was never processed)")


def test_an_uploaded_record_with_time_left_is_live() -> None:
    state = describe_record(record(), NOW)
    assert (state.state, state.label, state.sentence) == ("LIVE", "live, 2 d 3 h left", "live, 2 d 3 h left")
    assert describe_record(record(expiresAt=int(NOW) + 90), NOW).label == "live, 1 min left"


def test_an_uploaded_record_past_its_expiry_is_expired_never_live() -> None:
    state = describe_record(record(expiresAt=int(NOW) - 3 * 3600 - 5), NOW)
    assert (state.state, state.label) == ("EXPIRED", "expired 3 h ago")
    assert "no longer serves" in state.sentence and URL not in state.sentence
    assert describe_record(record(expiresAt=int(NOW)), NOW).state == "EXPIRED"  # the very second it expires


def test_a_first_claim_without_status_is_in_progress() -> None:
    claim = {"pk": "s3://bkt/a.png", "bucket": "bkt", "key": "a.png", "claimOwner": "req-1",
             "claimUntil": int(NOW * 1000) + 60_000, "rev": 1}  # fmt: skip
    state = describe_record(claim, NOW)
    assert (state.state, state.label) == ("IN_PROGRESS", "in progress")
    # A first claim whose lease ran out is still not a result: a redelivery will take it over
    assert describe_record({**claim, "claimUntil": 1}, NOW).state == "IN_PROGRESS"


def test_a_live_claim_on_a_settled_record_is_being_processed_and_says_what_it_was() -> None:
    state = describe_record(record(claimOwner="refresh-1", claimUntil=int(NOW * 1000) + 5_000), NOW)
    assert state.state == "IN_PROGRESS"
    assert state.label == "being processed; live, 2 d 3 h left"
    # A stale claim (its holder died) does not hide the record's state
    stale = describe_record(record(claimOwner="refresh-1", claimUntil=int(NOW * 1000) - 5_000), NOW)
    assert stale.state == "LIVE"


def test_a_retryable_failure_waits_for_a_retry() -> None:
    failed = record(status="FAILED", downloadUrl=None, expiresAt=None, error="kie.ai answered 500",
                    errorKind="transient", retryable=True)  # fmt: skip
    state = describe_record(failed, NOW)
    assert (state.state, state.label) == ("RETRY_PENDING", "waiting for a retry")
    assert "[transient] kie.ai answered 500" in state.sentence and "dead-letter queue" in state.sentence


@pytest.mark.parametrize(
    ("status", "fields", "state", "sentence"),
    [
        ("FAILED", {"error": "object too large", "errorKind": "permanent", "retryable": False}, "FAILED",
         "failed: [permanent] object too large"),
        ("SKIPPED", {"error": "object no longer exists"}, "SKIPPED",
         "skipped: object no longer exists (a record only older versions wrote, for a key without an object: "
         "`kie-uploader forget --status SKIPPED` removes them)"),
        ("DELETED", {}, "DELETED", "deleted: the object no longer exists in S3 (its URL is withdrawn)"),
    ],
)  # fmt: skip
def test_failed_skipped_and_deleted_records_say_why(
    status: str, fields: dict[str, Any], state: str, sentence: str
) -> None:
    described = describe_record(record(status=status, downloadUrl=None, expiresAt=None, **fields), NOW)
    assert (described.state, described.sentence) == (state, sentence)


def test_the_states_are_exported_from_the_package() -> None:
    assert kie_uploader.describe_record is describe_record
    assert issubclass(kie_uploader.LiveUrlError, RuntimeError)


# --- rendering ----------------------------------------------------------------------------------------


def test_the_record_page_says_the_state_after_the_status() -> None:
    lines = render_record(record(), now=NOW).render(None).splitlines()
    assert [line.split(None, 1) for line in lines[:3]] == [
        ["pk", "s3://bkt/a.png"],
        ["status", "UPLOADED"],
        ["state", "live, 2 d 3 h left"],
    ]
    assert any(line.split() == ["downloadUrl", URL] for line in lines)


def test_the_record_page_of_an_expired_upload_does_not_show_its_url_as_usable() -> None:
    page = render_record(record(expiresAt=int(NOW) - 3 * 3600 - 5), now=NOW).render(None)
    assert URL not in page
    lines = dict(line.split(None, 1) for line in page.splitlines())
    assert lines["state"].startswith("expired 3 h ago")
    assert lines["downloadUrl"] == "(not served: expired 3 h ago)"
    assert lines["expiresAt"].endswith("(expired 3h 0m ago)")


def test_the_list_table_shows_each_state_and_only_live_urls() -> None:
    rows = [
        record(pk="s3://bkt/live.png"),
        record(pk="s3://bkt/old.png", downloadUrl=URL + "?old", expiresAt=int(NOW) - 600),
        {"pk": "s3://bkt/new.png", "claimOwner": "x", "claimUntil": int(NOW * 1000) + 1000},
        record(pk="s3://bkt/retry.png", status="FAILED", downloadUrl=None, expiresAt=None,
               error="kie.ai answered 500", errorKind="transient", retryable=True),
        record(pk="s3://bkt/gone.png", status="DELETED", downloadUrl=None, expiresAt=None),
    ]  # fmt: skip
    lines = records_table(rows, now=NOW, width=200).splitlines()
    assert lines[0].split()[:4] == ["S3", "URI", "STATUS", "STATE"]
    by_uri = {line.split()[0]: line for line in lines[2:]}
    assert "live, 2 d 3 h left" in by_uri["s3://bkt/live.png"] and URL in by_uri["s3://bkt/live.png"]
    assert "expired 10 min ago" in by_uri["s3://bkt/old.png"] and "?old" not in by_uri["s3://bkt/old.png"]
    assert by_uri["s3://bkt/new.png"].split()[1:4] == ["-", "in", "progress"]
    assert "waiting for a retry" in by_uri["s3://bkt/retry.png"]
    assert "[transient, retryable] kie.ai answered 500" in by_uri["s3://bkt/retry.png"]
    assert by_uri["s3://bkt/gone.png"].split()[1:3] == ["DELETED", "deleted"]


def test_json_records_carry_their_state() -> None:
    shown = output.with_state(record(expiresAt=int(NOW) - 60), now=NOW)
    assert (shown["status"], shown["state"]) == ("UPLOADED", "EXPIRED")
    assert shown["stateDescription"].startswith("expired 1 min ago")


# --- backfill --force's messages ------------------------------------------------------------------------


def test_a_plain_message_names_the_object_only() -> None:
    assert json.loads(store.message_body("bkt", "a/é.txt")) == {"bucket": "bkt", "key": "a/é.txt"}


def test_a_forced_message_asks_for_a_new_upload_with_a_fresh_request_id() -> None:
    first, second = (json.loads(store.message_body("bkt", "k", force=True)) for _ in range(2))
    assert {k: v for k, v in first.items() if k != "requestId"} == {
        "bucket": "bkt",
        "key": "k",
        "force": True,
    }
    assert uuid.UUID(first["requestId"]) != uuid.UUID(second["requestId"])


# --- the url and refresh commands against a fake function ----------------------------------------------


class FakeLambda:
    """Answers ``invoke`` with canned payloads; remembers the requests."""

    def __init__(self, answer: Any, function_error: str | None = None) -> None:
        self.answer = answer
        self.function_error = function_error
        self.requests: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.requests.append({**kwargs, "Payload": json.loads(kwargs["Payload"])})
        raw = self.answer if isinstance(self.answer, bytes) else json.dumps(self.answer).encode()
        response: dict[str, Any] = {"StatusCode": 200, "Payload": io.BytesIO(raw)}
        if self.function_error:
            response["FunctionError"] = self.function_error
        return response


def result(**overrides: Any) -> dict[str, Any]:
    answer = {"s3Uri": "s3://bkt/a.png", "status": "UPLOADED", "downloadUrl": URL,
              "expiresAt": int(NOW) + 7200, "uploaded": False, "error": None}  # fmt: skip
    answer.update(overrides)
    return answer


@pytest.fixture
def fake_stack(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeLambda]:
    """``main`` runs against a fake stack whose function is the given FakeLambda; ``watched``: its
    ``WATCHED_OBJECTS`` (default: none, every key of bucket ``bkt``)."""

    def install(function: FakeLambda, watched: str | None = None) -> FakeLambda:
        class FakeAws:
            def __init__(
                self,
                region: str | None = None,
                stack_name: str = "KieUploader",
                profile: str | None = None,
                uploader: str | None = None,
            ) -> None:
                self.stack_name = stack_name
                self.lambda_ = function
                self.function_name = "kie-fn"
                self.stack = cli_aws.StackResources(
                    stack_name=stack_name,
                    bucket_names=("bkt",),
                    queue_url="-",
                    dead_letter_queue_url="-",
                    table_name="-",
                )
                watched_objects = {"WATCHED_OBJECTS": watched} if watched else None
                self.watching = cli_aws.watching_of(self.stack, watched_objects)

        monkeypatch.setattr(entry, "Aws", FakeAws)
        return function

    return install


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_url_prints_the_url_alone_and_sends_the_resolve_request(
    fake_stack: Callable[..., FakeLambda], capsys: pytest.CaptureFixture[str]
) -> None:
    function = fake_stack(FakeLambda({"results": [result()]}))
    assert run(capsys, "url", "s3://bkt/a.png", "--min-valid", "2h") == (EXIT_OK, URL + "\n", "")
    [request] = function.requests
    assert (request["FunctionName"], request["InvocationType"]) == ("kie-fn", "RequestResponse")
    assert request["Payload"] == {"resolve": ["s3://bkt/a.png"], "minValidSeconds": 7200}


def test_url_json_prints_the_whole_result(
    fake_stack: Callable[..., FakeLambda], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_stack(FakeLambda({"results": [result(uploaded=True)]}))
    code, out, err = run(capsys, "url", "s3://bkt/a.png", "--json")
    assert (code, err) == (EXIT_OK, "")
    assert json.loads(out) == result(uploaded=True)


def test_url_of_a_deleted_object_says_why_on_stderr_and_exits_1(
    fake_stack: Callable[..., FakeLambda], capsys: pytest.CaptureFixture[str]
) -> None:
    deleted = result(
        status="DELETED", downloadUrl=None, expiresAt=None, error="the object does not exist (deleted)"
    )
    fake_stack(FakeLambda({"results": [deleted]}))
    code, out, err = run(capsys, "url", "s3://bkt/a.png")
    assert (code, out) == (EXIT_NO, "")
    assert err == "kie-uploader: error: s3://bkt/a.png: the object does not exist (deleted)\n"
    code, out, _ = run(capsys, "url", "s3://bkt/a.png", "--json")
    assert code == EXIT_NO and json.loads(out)["status"] == "DELETED"


def test_a_function_error_is_one_clear_line(
    fake_stack: Callable[..., FakeLambda], capsys: pytest.CaptureFixture[str]
) -> None:
    crash = {"errorMessage": "Task timed out\nafter 120.00 seconds", "errorType": "Sandbox.Timedout",
             "stackTrace": ["  File x", "  line 2"]}  # fmt: skip
    fake_stack(FakeLambda(crash, function_error="Unhandled"))
    code, out, err = run(capsys, "url", "s3://bkt/a.png")
    assert (code, out) == (EXIT_ERROR, "")
    assert err == (
        "kie-uploader: error: the function kie-fn failed: Sandbox.Timedout: "
        "Task timed out after 120.00 seconds\n"
    )


def test_a_refused_request_is_one_line(
    fake_stack: Callable[..., FakeLambda], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_stack(FakeLambda({"error": "minValidSeconds must be a whole number of seconds from 0 to 258900"}))
    code, _, err = run(capsys, "url", "s3://bkt/a.png", "--min-valid", "3d")
    assert code == EXIT_ERROR
    # Issue 17, reproduction 6: said in the option the user typed, in days, not the request's seconds.
    assert err == (
        "kie-uploader: error: --min-valid 3 d is longer than this stack allows: at most 2 d 23 h (kie.ai "
        "keeps each file for the stack's retentionSeconds, less a margin)\n"
    )


def test_refresh_prints_the_counts(
    fake_stack: Callable[..., FakeLambda], capsys: pytest.CaptureFixture[str]
) -> None:
    counts = {"due": 4, "refreshed": 3, "deleted": 1, "failed": 0, "unchanged": 0, "left": 0}
    function = fake_stack(FakeLambda(counts))
    code, out, err = run(capsys, "refresh", "s3://bkt/photos/", "--expiring-within", "6h")
    assert (code, err) == (EXIT_OK, "")
    assert out == (
        "s3://bkt/photos/: 4 due within 6 h, 3 refreshed, 0 unchanged, 1 deleted, 0 failed, "
        "0 left for the next round\n"
    )
    assert function.requests[0]["Payload"] == {
        "refresh": {"prefixes": ["s3://bkt/photos/"], "expiringWithinSeconds": 21_600}
    }
    function.answer = {**counts, "failed": 1}
    code, out, _ = run(capsys, "--json", "refresh", "s3://bkt/photos/")
    assert code == EXIT_NO and json.loads(out)["failed"] == 1


def test_refresh_refuses_a_bucket_the_stack_does_not_serve(
    fake_stack: Callable[..., FakeLambda], capsys: pytest.CaptureFixture[str]
) -> None:
    function = fake_stack(FakeLambda({}))
    code, _, err = run(capsys, "refresh", "s3://other-bkt/")
    assert code == EXIT_ERROR and "bucket other-bkt is not watched by stack KieUploader" in err
    assert function.requests == []


# --- live_url from Python ---------------------------------------------------------------------------------


class FakeCloudFormation:
    def __init__(self, outputs: dict[str, str] | None) -> None:
        self.outputs = outputs

    def describe_stacks(self, StackName: str) -> dict[str, Any]:  # noqa: N803 (boto3's naming)
        if self.outputs is None:
            from botocore.exceptions import ClientError

            error = {"Code": "ValidationError", "Message": f"Stack with id {StackName} does not exist"}
            raise ClientError({"Error": error}, "DescribeStacks")
        return {
            "Stacks": [{"Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]}]
        }


@pytest.fixture
def fake_session(monkeypatch: pytest.MonkeyPatch) -> Callable[..., SimpleNamespace]:
    def install(function: FakeLambda, outputs: dict[str, str] | None = None) -> SimpleNamespace:
        seen = SimpleNamespace(regions=[], function=function)
        # A stack from before the discovery records (tests/unit/test_discovery.py has the records).
        legacy = {"BucketNames": "bkt", "QueueUrl": "q", "DeadLetterQueueUrl": "d", "TableName": "t"}
        default = {**legacy, "FunctionName": "kie-fn"}
        cloudformation = FakeCloudFormation(default if outputs is None else outputs)

        class Session:
            def __init__(self, region_name: str | None = None, profile_name: str | None = None) -> None:
                seen.regions.append(region_name)

            def client(self, service: str, config: Any = None) -> Any:
                return {"cloudformation": cloudformation, "lambda": function}[service]

        monkeypatch.setattr(boto3, "Session", Session)
        seen.cloudformation = cloudformation
        return seen

    return install


def test_live_url_returns_the_url(fake_session: Callable[..., SimpleNamespace]) -> None:
    seen = fake_session(FakeLambda({"results": [result()]}))
    assert kie_uploader.live_url("s3://bkt/a.png", min_valid=timedelta(minutes=30), region="eu-west-1") == URL
    assert seen.regions == ["eu-west-1"]
    assert seen.function.requests[0]["Payload"] == {"resolve": ["s3://bkt/a.png"], "minValidSeconds": 1800}


def test_live_url_raises_with_the_reason(fake_session: Callable[..., SimpleNamespace]) -> None:
    fake_session(
        FakeLambda({"results": [result(status="FAILED", downloadUrl=None, error="object too large")]})
    )
    with pytest.raises(LiveUrlError, match=r"^s3://bkt/a\.png: object too large$"):
        live.live_url("s3://bkt/a.png")


def test_live_url_of_a_stack_that_does_not_exist(fake_session: Callable[..., SimpleNamespace]) -> None:
    seen = fake_session(FakeLambda({}))
    seen.cloudformation.outputs = None
    with pytest.raises(LiveUrlError, match="^no such stack: Nope$"):
        live.live_url("s3://bkt/a.png", stack="Nope")


def test_importing_the_package_and_live_url_never_imports_the_cdk() -> None:
    code = (
        "import sys\n"
        "from kie_uploader import live_url, describe_record, LiveUrlError\n"
        "import kie_uploader.cli\n"
        "heavy = sorted(m for m in sys.modules\n"
        "    if m.split('.')[0] in ('aws_cdk', 'constructs', 'jsii', 'rich') or m == 'kie_uploader.cdk')\n"
        "assert callable(live_url), live_url\n"
        "print(heavy)\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert answer.stdout.strip() == "[]", answer.stdout


# --- the object's state: the record and S3's reading of the object ------------------------------------
# Reported: `status` on a bucket the stack does not serve said "no record (the object was never
# processed)", the same words as for a pending object or one from before the stack.


def test_an_object_of_a_bucket_the_stack_does_not_serve_is_not_watched() -> None:
    state = live.describe_object(None, NOW, watched=False, stack="KieUploader")
    assert state.state == "NOT_WATCHED"
    assert state.sentence.startswith("not watched by stack KieUploader")


def test_without_a_record_s3_tells_waiting_never_seen_and_not_in_s3_apart() -> None:
    just_put = live.S3Reading(exists=True, etag='"e"', last_modified=NOW - 20)
    long_ago = live.S3Reading(exists=True, etag='"e"', last_modified=NOW - 5 * 86_400)
    states = {
        name: live.describe_object(None, NOW, reading=reading)
        for name, reading in (
            ("just put", just_put),
            ("long ago", long_ago),
            ("absent", live.S3Reading(exists=False)),
        )
    }
    assert (states["just put"].state, states["just put"].sentence) == (
        "WAITING",
        "waiting: put 20 s ago, its event has not been handled yet",
    )
    assert states["long ago"].state == "NEVER_SEEN"
    assert states["long ago"].sentence.startswith("never seen: put 5 d ago and never handled")
    assert "kie-uploader backfill" in states["long ago"].sentence
    assert states["absent"].state == "NOT_IN_S3"
    assert len({s.sentence for s in states.values()}) == 3
    # The edge of the window: an object put exactly WAITING_WINDOW_SECONDS ago is no longer on its way.
    edge = live.S3Reading(exists=True, last_modified=NOW - live.WAITING_WINDOW_SECONDS)
    assert live.describe_object(None, NOW, reading=edge).state == "NEVER_SEEN"


def test_a_live_record_of_older_bytes_or_of_a_deleted_object_is_waiting_not_live() -> None:
    current = live.S3Reading(exists=True, etag='"e1"', last_modified=NOW - 60)
    changed = live.S3Reading(exists=True, etag='"e2"', last_modified=NOW - 5)
    rec = record(etag="e1")

    assert live.describe_object(rec, NOW, reading=current).state == "LIVE"
    waiting = live.describe_object(rec, NOW, reading=changed)
    assert (waiting.state, waiting.label) == ("WAITING", "changed in S3; live, 2 d 3 h left")
    assert live.describe_object(rec, NOW, reading=live.S3Reading(exists=False)).state == "WAITING"
    # Records that are not UPLOADED keep their own words; without a reading, the record alone speaks.
    gone = live.S3Reading(exists=False)
    assert live.describe_object(record(status="DELETED"), NOW, reading=gone).state == "DELETED"
    assert live.describe_object(rec, NOW).state == "LIVE"
    expired = record(etag="e1", expiresAt=int(NOW) - 10)
    assert live.describe_object(expired, NOW, reading=current).state == "EXPIRED"
