"""The CLI's errors that need no server: one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from kie_uploader.cli import EXIT_ERROR, describe_aws_error, main, redact


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
    assert err == "kie-uploader: error: no AWS region: pass --region or set AWS_REGION\n"


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
