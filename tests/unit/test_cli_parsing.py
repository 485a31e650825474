"""The CLI's argument parsing and S3 URI rules: no network, no AWS."""

from __future__ import annotations

import pytest

from kie_uploader.cli import main
from kie_uploader.cli.args import S3Uri
from kie_uploader.cli.entry import build_parser
from kie_uploader.cli.errors import EXIT_ERROR, CliError


@pytest.mark.parametrize(
    ("text", "bucket", "key"),
    [
        ("s3://my-bucket/a/b.png", "my-bucket", "a/b.png"),
        ("s3://my.bucket/dir with spaces/café ü.txt", "my.bucket", "dir with spaces/café ü.txt"),
        ("s3://abc/", "abc", ""),
        ("s3://abc", "abc", ""),
    ],
)
def test_a_well_formed_uri_splits_into_bucket_and_key(text: str, bucket: str, key: str) -> None:
    assert S3Uri.parse(text) == S3Uri(bucket, key)


@pytest.mark.parametrize(
    "text",
    [
        "my-bucket/key",
        "https://my-bucket/key",
        "s3:/my-bucket/key",
        "s3://",
        "s3://My_Bucket/key",
        "s3://ab/key",
        "s3://-bucket/key",
        "s3://a..b/key",
        "s3:///key",
    ],
)
def test_a_malformed_uri_is_refused_with_a_message_that_names_it(text: str) -> None:
    with pytest.raises(CliError, match="malformed S3 URI"):
        S3Uri.parse(text)


def test_a_key_is_required_where_a_command_names_one_object() -> None:
    with pytest.raises(CliError, match="the key is missing"):
        S3Uri.parse("s3://my-bucket/", require_key=True)


def test_a_key_longer_than_s3_allows_is_refused() -> None:
    with pytest.raises(CliError, match="at most 1024 bytes"):
        S3Uri.parse("s3://my-bucket/" + "é" * 600)


def test_a_uri_prints_back_as_the_record_key_form() -> None:
    assert str(S3Uri.parse("s3://bkt/x/y z.txt")) == "s3://bkt/x/y z.txt"


def test_global_options_work_before_and_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--json", "--stack", "S1", "--region", "eu-west-1", "list"])
    after = parser.parse_args(["list", "--json", "--stack", "S1", "--region", "eu-west-1"])
    for args in (before, after):
        assert (args.json, args.stack, args.region) == (True, "S1", "eu-west-1")


def test_an_option_given_before_the_command_is_not_reset_by_the_command() -> None:
    args = build_parser().parse_args(["--json", "status", "s3://bkt/k"])
    assert args.json is True
    assert args.uri == S3Uri("bkt", "k")


def test_list_status_is_case_insensitive_and_checked() -> None:
    parser = build_parser()
    assert parser.parse_args(["list", "--status", "failed"]).status == "FAILED"
    with pytest.raises(SystemExit):
        parser.parse_args(["list", "--status", "BROKEN"])


def test_malformed_uri_exits_2_with_one_line_and_no_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["status", "bucket-without-scheme/key"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert "malformed S3 URI 'bucket-without-scheme/key'" in err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("kie-uploader status: error:")


def test_a_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_ERROR
    assert "required" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("backfill", "status", "list", "redrive", "retry-failed"):
        assert command in out


def test_backfill_parses_the_distributed_options() -> None:
    parser = build_parser()
    args = parser.parse_args(["backfill", "s3://bkt/p/", "--distributed", "--manifest", "s3://lists/k.csv"])
    assert (args.uri, args.distributed, args.manifest) == (S3Uri("bkt", "p/"), True, S3Uri("lists", "k.csv"))
    arn = "arn:aws:states:us-east-1:123456789012:execution:sm:run"
    status = parser.parse_args(["backfill", "--status", arn, "--interval", "0.5"])
    assert (status.uri, status.status, status.interval) == (None, arn, 0.5)
    with pytest.raises(SystemExit):  # a manifest is an object, not a prefix
        parser.parse_args(["backfill", "s3://bkt/", "--manifest", "s3://lists"])


def test_backfill_without_a_uri_or_a_run_is_refused_before_any_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["backfill"]) == EXIT_ERROR
    assert "give s3://bucket/prefix (or --status/--redrive EXECUTION_ARN)" in capsys.readouterr().err
