"""The CLI's errors that need no server: one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from kie_uploader.aws_errors import describe_aws_error
from kie_uploader.cli import main
from kie_uploader.cli.aws import Aws
from kie_uploader.cli.errors import EXIT_ERROR
from kie_uploader.cli.output import redact


@pytest.fixture
def no_aws_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment with no credentials anywhere; the endpoint is a closed loopback port, never AWS."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
                 "AWS_REGION", "AWS_DEFAULT_REGION"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "missing-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "missing-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")


@pytest.mark.parametrize(
    "argv",
    [["status", "s3://bkt/key"], ["list"], ["backfill", "s3://bkt/p/"], ["redrive"], ["retry-failed"]],
)
def test_no_credentials_is_one_line_that_says_how_to_fix_it(
    no_aws_config: None, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--region", "us-east-1", *argv])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert err.count("\n") == 1
    assert err.startswith("kie-uploader: error: no AWS credentials found")
    assert "AWS_ACCESS_KEY_ID" in err


def test_no_region_is_one_line_that_names_the_flag(
    no_aws_config: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["list"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert err.count("\n") == 1
    assert err.startswith(
        "kie-uploader: error: no AWS region: pass --region, set AWS_REGION (or AWS_DEFAULT_REGION)"
    )


def test_aws_region_alone_is_a_region(
    no_aws_config: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Reported: with AWS_REGION set but not AWS_DEFAULT_REGION, it said "no AWS region: ... set AWS_REGION".
    # boto3 reads only AWS_DEFAULT_REGION; the CLI reads AWS_REGION too, as the AWS CLI does.
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    code = main(["list"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert "no AWS region" not in err
    assert err.startswith("kie-uploader: error: no AWS credentials found")  # the next thing missing


def test_aws_region_wins_over_aws_default_region_and_region_wins_over_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert Aws().session.region_name == "eu-west-3"
    assert Aws(region="ap-south-1").session.region_name == "ap-south-1"
    monkeypatch.delenv("AWS_REGION")
    assert Aws().session.region_name == "us-west-2"


def test_an_unknown_profile_is_one_line(no_aws_config: None, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--profile", "nope", "--region", "us-east-1", "list"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert err == "kie-uploader: error: no such AWS profile: nope (see `aws configure list-profiles`)\n"


def test_a_profile_from_the_config_file_is_used(
    no_aws_config: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.write_text("[profile ops]\nregion = sa-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert Aws(profile="ops").session.region_name == "sa-east-1"


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out == f"kie-uploader {metadata.version('kie-s3-uploader')}\n"


class _NotAws(http.server.BaseHTTPRequestHandler):
    """Any web server that is not AWS: an HTML page for every request."""

    def _page(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<html><body><h1>Welcome</h1><p>not an AWS endpoint</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _page

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_aws() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotAws)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("argv", [["list"], ["status", "s3://bkt/key"]])
def test_an_endpoint_that_is_not_aws_is_one_line_not_a_traceback(
    no_aws_config: None,
    not_aws: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    # Reported: AWS_ENDPOINT_URL at the wrong port gave a 40-line ResponseParserError traceback, exit 1.
    monkeypatch.setenv("AWS_ENDPOINT_URL", not_aws)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    code = main(["--region", "us-east-1", *argv])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert err == (
        f"kie-uploader: error: the endpoint {not_aws} (AWS_ENDPOINT_URL) gave an answer that is not "
        "AWS's: is it the right endpoint (host and port)?\n"
    )


def _client_error(
    code: str, message: str = "", operation: str = "ListObjectsV2", **extra: str
) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message, **extra}}, operation)


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (_client_error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist"),
         "AWS rejected the credentials (InvalidAccessKeyId): check AWS_PROFILE / AWS_ACCESS_KEY_ID"),
        (_client_error("ExpiredToken", "expired"), "AWS rejected the credentials (ExpiredToken)"),
        (_client_error("AccessDenied", "no s3:ListBucket"), "access denied: ListObjectsV2: no s3:ListBucket"),
        (_client_error("NoSuchBucket", "gone", BucketName="b-1"), "no such bucket: b-1"),
        (_client_error("ResourceNotFoundException", "table t", "Scan"), "not found: Scan: table t"),
        (_client_error("Throttling", "slow down", "SendMessageBatch"),
         "SendMessageBatch failed: Throttling: slow down"),
    ],
)  # fmt: skip
def test_aws_errors_become_one_line_that_says_what_to_do(error: ClientError, line: str) -> None:
    assert describe_aws_error(error).startswith(line)


def test_an_error_message_carrying_a_presigned_url_is_redacted_on_the_way_out() -> None:
    message = "GET https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA1&X-Amz-Signature=ff00 failed"
    assert "AKIA1" not in redact(describe_aws_error(_client_error("InternalError", message)))
