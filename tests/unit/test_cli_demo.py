"""The demo's pieces that need no server: samples, the honest --kie-url refusals, the table."""

from __future__ import annotations

import re
import struct
import zlib

import pytest

from kie_uploader import demo
from kie_uploader.function import watch
from kie_uploader.samples import (
    EXISTING_PREFIX,
    NOT_WATCHED,
    NOTIFIED_PREFIX,
    OUTSIDE_PREFIX,
    Sample,
    demo_samples,
    pdf,
    png,
)


def test_the_png_sample_is_a_valid_png_whose_chunks_pass_their_crc() -> None:
    data = png(8, 4)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    offset, tags = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        tag, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(tag + body) == crc
        tags.append(tag)
        if tag == b"IDAT":
            assert len(zlib.decompress(body)) == 4 * (1 + 8 * 3)  # 4 rows of filter byte + 8 RGB pixels
        offset += 12 + length
    assert tags == [b"IHDR", b"IDAT", b"IEND"]


def test_the_pdf_sample_has_a_cross_reference_table_that_points_at_its_objects() -> None:
    data = pdf("x (y)")
    startxref = int(re.search(rb"startxref\n(\d+)\n%%EOF\n$", data).group(1))  # type: ignore[union-attr]
    assert data[startxref:].startswith(b"xref\n0 6\n")
    entries = re.findall(rb"(\d{10}) 00000 n ", data[startxref:])
    for number, offset in enumerate(entries, start=1):
        assert data[int(offset) :].startswith(b"%d 0 obj" % number)
    assert rb"(x \(y\)) Tj" in data


def test_the_samples_cover_what_the_demo_promises() -> None:
    samples = demo_samples(1024)
    by_type = {s.content_type.split(";")[0] for s in samples}
    assert {"image/png", "application/pdf", "text/plain"} <= by_type
    assert any(" " in s.key and not s.key.isascii() for s in samples)
    assert any(s.key.count("/") >= 4 for s in samples)
    (large,) = [s for s in samples if s.expected_status == "FAILED"]
    assert len(large.body) == 1025
    # One object from before the stack, under the watched prefix: only backfill can hand it over
    (existing,) = [s for s in samples if s.route == "backfill"]
    assert existing.key.startswith(EXISTING_PREFIX) and existing.key.startswith(NOTIFIED_PREFIX)
    assert existing.expected_status == "UPLOADED"
    # One outside it: backfill skips it and the function refuses it (no record)
    (outside,) = [s for s in samples if s.route == "refused"]
    assert outside.key.startswith(OUTSIDE_PREFIX) and not outside.key.startswith(NOTIFIED_PREFIX)
    assert outside.expected_status == NOT_WATCHED
    assert all(s.key.startswith(NOTIFIED_PREFIX) for s in samples if s.route == "notification")


def test_against_a_real_stack_the_samples_go_inside_its_prefix_and_one_outside_is_expected_refused() -> None:
    rules = watch.Watched((watch.Rule("real-bucket", "incoming/"),))
    samples = demo.real_samples(rules, "real-bucket", 1024, "kie-uploader-demo/1/")
    watched = [s for s in samples if s.route == "queue"]
    assert watched and all(s.key.startswith("incoming/kie-uploader-demo/1/") for s in watched)
    (refused,) = [s for s in samples if s.route == "refused"]
    assert refused.key == "kie-uploader-demo/1/archive/outside-the-prefix.txt"
    assert refused.expected_status == NOT_WATCHED
    # A suffix rule: what does not end with it is expected refused; a stack watching every key refuses none
    pngs = demo.real_samples(
        watch.Watched((watch.Rule("real-bucket", "", ".png"),)), "real-bucket", 1024, "r/"
    )
    assert [s.key for s in pngs if s.route == "queue"] == ["r/incoming/images/gradient.png"]
    everything = demo.real_samples(watch.Watched.of_buckets(["real-bucket"]), "real-bucket", 1024, "r/")
    assert all(s.route == "queue" for s in everything) and len(everything) == len(demo_samples(1024)) - 1


@pytest.mark.parametrize(
    ("options", "environ", "message"),
    [
        (demo.DemoOptions(kie_url="https://api.kie.ai"), {}, "needs your kie.ai API key in KIE_API_KEY"),
        (demo.DemoOptions(kie_url="https://api.kie.ai"), {"KIE_API_KEY": "k"}, "needs --bucket NAME"),
        (
            demo.DemoOptions(kie_url="https://api.kie.ai", bucket="real-bucket"),
            {"KIE_API_KEY": "k", "AWS_ENDPOINT_URL": "http://127.0.0.1:4566"},
            "AWS_ENDPOINT_URL is set",
        ),
    ],
)
def test_the_real_service_is_refused_when_kie_ai_could_not_reach_the_objects(
    options: demo.DemoOptions, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(demo.DemoError, match=re.escape(message)):
        demo.check_real_service(options, environ)


def test_the_real_service_is_accepted_with_a_key_a_bucket_and_real_aws() -> None:
    options = demo.DemoOptions(kie_url="https://api.kie.ai", bucket="real-bucket")
    assert demo.check_real_service(options, {"KIE_API_KEY": "secret-key"}) == "secret-key"


def test_the_demo_command_explains_the_refusal_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KIE_API_KEY", raising=False)
    assert demo.main(["--kie-url", "https://api.kie.ai"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("demo: --kie-url https://api.kie.ai needs your kie.ai API key")
    assert err.count("\n") == 1


def test_a_bucket_without_a_real_kie_url_is_refused() -> None:
    with pytest.raises(demo.DemoError, match="only makes sense with a real --kie-url"):
        demo.run_demo(demo.DemoOptions(bucket="some-bucket"))


def _result(status: str, *, expected: str = "UPLOADED", match: bool | None = True) -> demo.ObjectResult:
    sample = Sample("incoming/a b.txt", b"abc", "text/plain", expected_status=expected)
    record = {"status": status, "downloadUrl": "http://127.0.0.1:1/files/a", "expiresAt": 4_000_000_000}
    return demo.ObjectResult(sample, record, bytes_match=match)


def test_an_object_is_ok_only_with_its_expected_status_and_matching_bytes() -> None:
    assert _result("UPLOADED").ok
    assert not _result("UPLOADED", match=False).ok
    assert not _result("FAILED").ok
    assert _result("FAILED", expected="FAILED", match=None).ok


def _refused(record: dict[str, object] | None) -> demo.ObjectResult:
    sample = Sample("archive/x.txt", b"x", "text/plain", expected_status=NOT_WATCHED, route="refused")
    answer = {"status": "NOT_WATCHED", "error": "key is outside what this stack watches (prefix incoming/)"}
    return demo.ObjectResult(sample, record, bytes_match=None, answer=answer)


def test_an_object_outside_the_prefix_is_ok_only_refused_and_without_a_record() -> None:
    assert _refused(None).ok and _refused(None).status == NOT_WATCHED
    uploaded = _refused({"status": "UPLOADED", "downloadUrl": "http://127.0.0.1:1/f"})
    assert uploaded.status == "UPLOADED" and not uploaded.ok  # what older versions did
    row = demo.DemoResult(objects=[_refused(None)], bucket="b", outputs={}).table(wide=True).splitlines()[2]
    assert row.split()[3] == NOT_WATCHED and row.endswith("ok")  # after the key and "1 B"
    assert "key is outside what this stack watches (prefix incoming/) (nothing written)" in row


def test_the_demo_table_says_which_object_went_wrong() -> None:
    result = demo.DemoResult(objects=[_result("UPLOADED"), _result("FAILED")], bucket="b", outputs={})
    lines = result.table(100).splitlines()
    assert lines[0].split()[:3] == ["S3", "KEY", "SIZE"]
    assert lines[2].split()[-2:] == ["yes", "ok"]
    assert lines[3].split()[-2:] == ["expected", "UPLOADED"]
    assert not result.ok


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_demo_table_fits_the_terminal_and_keeps_the_verdict_whole(width: int) -> None:
    long = Sample("incoming/deep/er/still/" + "k" * 60 + ".txt", b"abc", "text/plain")
    record = {"status": "UPLOADED", "downloadUrl": "http://127.0.0.1:1/files/" + "u" * 120 + "/end.txt"}
    result = demo.DemoResult(
        objects=[demo.ObjectResult(long, record, bytes_match=True), _result("FAILED")], bucket="b", outputs={}
    )
    lines = result.table(width).splitlines()
    assert max(len(line) for line in lines) <= width
    assert lines[3].endswith("expected UPLOADED")
    assert "http://127" in lines[2] and "/end.txt" in lines[2]  # both ends of the URL
    assert "http://127.0.0.1:1/files/" + "u" * 120 + "/end.txt" in result.table(wide=True)


# --- issue 10, defect 6: the real-service demo never writes a deployed stack's secret unasked ------------

DEPLOYED_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:KieUploader-ApiKey-AbCdEf"


class FakeSecrets:
    """A Secrets Manager client holding one secret; records every write."""

    def __init__(self, value: str | None) -> None:
        self.value = value
        self.puts: list[str] = []

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        if self.value is None:
            from botocore.exceptions import ClientError

            error = {"Error": {"Code": "ResourceNotFoundException", "Message": "no AWSCURRENT"}}
            raise ClientError(error, "GetSecretValue")
        return {"SecretString": self.value}

    def put_secret_value(self, SecretId: str, SecretString: str) -> None:
        self.puts.append(SecretString)


def ensure(secrets: FakeSecrets, key: str, *, overwrite: bool = False) -> bool:
    return demo.ensure_api_key(
        secrets, DEPLOYED_SECRET, key, overwrite=overwrite, stack_name="KieUploader", log=lambda _: None
    )


@pytest.mark.parametrize("stored", ['{"apiKey": "production-key"}', "production-key"])
def test_the_demo_refuses_to_replace_the_deployed_stacks_key_with_kie_api_key(stored: str) -> None:
    secrets = FakeSecrets(stored)
    with pytest.raises(demo.DemoError, match="will not replace it.*--overwrite-secret"):
        ensure(secrets, "laptop-test-key")
    assert secrets.puts == []


@pytest.mark.parametrize("stored", [None, "", '{"apiKey": ""}'])
def test_the_demo_does_not_fill_an_empty_deployed_secret_unasked(stored: str | None) -> None:
    secrets = FakeSecrets(stored)
    with pytest.raises(demo.DemoError, match="holds no kie.ai key.*--overwrite-secret"):
        ensure(secrets, "laptop-test-key")
    assert secrets.puts == []


def test_the_demo_runs_on_the_deployed_key_when_it_is_kie_api_key_and_writes_nothing() -> None:
    secrets = FakeSecrets('{"apiKey": "production-key"}')
    assert ensure(secrets, "production-key") is False
    assert secrets.puts == []


def test_overwrite_secret_puts_kie_api_key_into_the_deployed_secret() -> None:
    secrets = FakeSecrets('{"apiKey": "production-key"}')
    assert ensure(secrets, "new-key", overwrite=True) is True
    assert secrets.puts == ["new-key"]


def test_the_demo_command_has_an_overwrite_secret_flag_off_by_default() -> None:
    assert demo.build_parser().parse_args(["--kie-url", "https://api.kie.ai"]).overwrite_secret is False
    args = demo.build_parser().parse_args(["--kie-url", "https://api.kie.ai", "--overwrite-secret"])
    assert args.overwrite_secret is True
