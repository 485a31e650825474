"""How the CLI shows records: tables, record pages, liveness, redaction. No network."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from kie_uploader.cli.output import (
    format_duration,
    format_epoch,
    format_size,
    records_table,
    redact,
    render_record,
    render_table,
    to_json,
)
from kie_uploader.cli.store import deserialize, is_live_upload

NOW = 1_700_000_000.0
PRESIGNED = (
    "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2024"
    "&X-Amz-Signature=deadbeef&X-Amz-Security-Token=tok123&X-Amz-Expires=900"
)


def uploaded(**overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "pk": "s3://bkt/a.png", "status": "UPLOADED", "bucket": "bkt", "key": "a.png", "etag": "abc",
        "size": 2048, "downloadUrl": "https://tempfile.example/a.png", "expiresAt": int(NOW) + 3600,
        "updatedAt": "2023-11-14T22:13:20Z",
    }  # fmt: skip
    record.update(overrides)
    return record


def test_an_uploaded_record_that_has_not_expired_is_live() -> None:
    assert is_live_upload(uploaded(), now=NOW)


@pytest.mark.parametrize(
    "record",
    [None, uploaded(status="FAILED"), uploaded(expiresAt=int(NOW) - 1), uploaded(expiresAt=None)],
)
def test_missing_failed_or_expired_records_are_not_live(record: dict[str, object] | None) -> None:
    assert not is_live_upload(record, now=NOW)


def test_an_upload_of_older_bytes_is_not_live_for_an_overwritten_object() -> None:
    assert is_live_upload(uploaded(etag="abc"), now=NOW, etag='"abc"')
    assert not is_live_upload(uploaded(etag="abc"), now=NOW, etag='"def"')


def test_dynamodb_numbers_become_plain_ints_and_floats() -> None:
    item = {"pk": {"S": "s3://b/k"}, "size": {"N": "12"}, "ratio": {"N": "0.5"}, "retryable": {"BOOL": True}}
    assert deserialize(item) == {"pk": "s3://b/k", "size": 12, "ratio": 0.5, "retryable": True}
    assert not any(isinstance(v, Decimal) for v in deserialize(item).values())


def test_epochs_read_as_utc_with_the_time_left() -> None:
    assert format_epoch(NOW + 2 * 86_400 + 3 * 3600, now=NOW) == "2023-11-17 01:13:20Z (in 2d 3h)"
    assert format_epoch(NOW - 5, now=NOW).endswith("(expired 5s ago)")
    assert format_epoch(NOW - 3 * 3600 - 60, now=NOW).endswith("(expired 3h 1m ago)")


@pytest.mark.parametrize(
    ("seconds", "text"), [(42, "42s"), (125, "2m 5s"), (3 * 3600 + 60, "3h 1m"), (86_400 * 3, "3d 0h")]
)
def test_durations_are_short(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 * 1024**2, "3.0 MiB"), (None, "")]
)
def test_sizes_are_binary_units(size: int | None, text: str) -> None:
    assert format_size(size) == text


def test_a_record_page_puts_status_and_download_url_first() -> None:
    lines = render_record(uploaded(zeta="last"), now=NOW).render(None).splitlines()
    assert lines[0].split() == ["pk", "s3://bkt/a.png"]
    assert lines[1].split() == ["status", "UPLOADED"]
    assert any(line.startswith("expiresAt") and "(in 1h 0m)" in line for line in lines)
    assert lines[-1].split() == ["zeta", "last"]


def test_tables_align_columns_and_cut_long_cells_to_fit_the_width() -> None:
    table = render_table(("A", "BB"), [("x", "y" * 100), ("longer", "z")], width=20)
    lines = table.splitlines()
    assert lines[0] == "A       BB"
    assert lines[1] == "------  ------------"
    assert lines[2] == "x       yyyyyy…yyyyy"  # one word: cut in the middle, both ends kept
    assert lines[3] == "longer  z"
    assert max(len(line) for line in lines) == 20


def test_the_list_table_shows_the_error_kind_of_a_failed_record() -> None:
    failed = {"pk": "s3://bkt/big.bin", "status": "FAILED", "error": "object too large",
              "errorKind": "permanent", "retryable": False}  # fmt: skip
    table = records_table([uploaded(), failed], now=NOW, width=200)
    assert "https://tempfile.example/a.png" in table
    assert "[permanent] object too large" in table


def test_presigned_url_secrets_never_reach_the_output() -> None:
    record = uploaded(status="FAILED", error=f"download of {PRESIGNED} failed")
    page = render_record(record)
    outputs = [redact(PRESIGNED), page.render(None, redact=redact), page.render(40, redact=redact)]
    outputs += [records_table([record]), to_json(record)]
    for text in outputs:
        for secret in ("deadbeef", "AKIA", "tok123", "X-Amz-"):
            assert secret not in text
    assert redact(PRESIGNED) == "https://b.s3.amazonaws.com/k?[redacted]"
    assert (
        json.loads(to_json(record))["error"] == "download of https://b.s3.amazonaws.com/k?[redacted] failed"
    )


def test_ordinary_urls_and_stray_secret_parameters() -> None:
    assert (
        redact("see https://x.example/y?page=2&size=10 now") == "see https://x.example/y?page=2&size=10 now"
    )
    assert redact("failed: X-Amz-Signature=abc123&x=1") == "failed: [redacted]&x=1"


def test_wide_tables_cut_nothing() -> None:
    rows = [("s3://b/" + "k" * 200, "u" * 300)]
    lines = render_table(("URI", "URL"), rows, width=40, wide=True).splitlines()
    assert lines[2].split() == ["s3://b/" + "k" * 200, "u" * 300]


@pytest.mark.parametrize("width", [60, 80, 100, 120, 200])
def test_the_list_table_fits_the_width_and_keeps_both_ends_of_keys_and_urls(width: int) -> None:
    key = "photos/2025/summer/été 2025 à la plage, la dernière.jpg"
    url = "https://tempfile.example/kieai/market/2025/01/04/abcdef0123456789abcdef/photos-ete-2025.jpg"
    records = [uploaded(pk=f"s3://bkt/{key}", key=key, downloadUrl=url)]
    lines = records_table(records, now=NOW, width=width, bucket="bkt").splitlines()
    assert max(len(line) for line in lines) <= width
    assert lines[0] == "keys in s3://bkt/" and lines[1].startswith("KEY ")
    row = lines[3]
    assert row.startswith("photos/") and ".jpg  " in row  # the key is relative to the bucket, both ends kept
    assert "https://" in row and row.endswith("2025.jpg")
    wide = records_table(records, now=NOW, wide=True).splitlines()[2]
    assert f"s3://bkt/{key}" in wide and url in wide


def test_narrow_tables_drop_the_columns_of_lesser_use_first() -> None:
    long = uploaded(pk="s3://bkt/" + "k" * 60, downloadUrl="https://tempfile.example/" + "u" * 80)
    headers = {
        w: records_table([long], now=NOW, width=w).splitlines()[0].split() for w in (80, 100, 120, 200)
    }
    assert headers[80] == ["S3", "URI", "STATE", "DOWNLOAD", "URL", "/", "ERROR"]
    assert headers[100] == ["S3", "URI", "STATUS", "STATE", "DOWNLOAD", "URL", "/", "ERROR"]
    assert "SIZE" in headers[120] and "EXPIRES" not in headers[120]
    assert all(h in headers[200] for h in ("UPDATED", "EXPIRES", "SIZE", "STATUS", "STATE"))
    # Short keys and URLs leave room: then the other columns stay.
    short = records_table([uploaded()], now=NOW, width=100).splitlines()[0]
    assert all(h in short for h in ("STATUS", "SIZE", "EXPIRES"))
