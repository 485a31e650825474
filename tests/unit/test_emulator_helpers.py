"""The emulator's pure rules: naming, MIME types, redaction, timestamps, script entries (no network)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kie_uploader.emulator import (
    Faults,
    KieEmulator,
    file_name_from_url,
    iso_utc_millis,
    mime_type_for,
    strip_query,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/images/sample.jpg", "sample.jpg"),
        ("https://b.s3.amazonaws.com/a/cat%201.png?X-Amz-Signature=x", "cat 1.png"),
        ("https://example.com/", "file"),
        ("https://example.com", "file"),
        ("https://example.com/a/%2F", "file"),  # a decoded '/' cannot be a name
        ("https://example.com/a/..", "file"),
        ("https://example.com/%E6%96%87%E4%BB%B6.txt", "文件.txt"),
    ],
)
def test_given_a_url_when_naming_then_the_decoded_last_segment_or_file(url: str, expected: str) -> None:
    assert file_name_from_url(url) == expected


@pytest.mark.parametrize(
    ("content_type", "name", "expected"),
    [
        ("image/png", "x.bin", "image/png"),
        ("Text/Plain; charset=utf-8", "x", "text/plain"),
        ("binary/octet-stream", "x.pdf", "application/pdf"),
        ("application/octet-stream", "x.png", "image/png"),
        (None, "x.jpg", "image/jpeg"),
        ("", "x.zzz-unknown", "application/octet-stream"),
        ("garbage", "x", "application/octet-stream"),
    ],
)
def test_given_a_content_type_and_name_when_choosing_the_mime_type_then_specific_beats_guessed(
    content_type: str | None, name: str, expected: str
) -> None:
    assert mime_type_for(content_type, name) == expected


@given(st.text(), st.text(min_size=1))
def test_given_any_url_with_a_query_when_stripped_then_the_query_is_gone(path: str, query: str) -> None:
    secret = f"X-Amz-Signature={query}"

    assert secret not in strip_query(f"https://user:pw@host.example/{path}?{secret}")


def test_given_credentials_in_a_url_when_stripped_then_they_are_gone() -> None:
    assert strip_query("https://user:pw@host.example/a/b.png?x=1#frag") == "https://host.example/a/b.png"


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [(1_735_732_800.0, "2025-01-01T12:00:00.000Z"), (1_735_732_800.1239, "2025-01-01T12:00:00.123Z")],
)
def test_given_an_epoch_when_formatted_then_iso_utc_with_milliseconds(epoch: float, expected: str) -> None:
    assert iso_utc_millis(epoch) == expected


@pytest.mark.parametrize("entry", ["nope", {"bodyCode": "402"}, {"bodyCode": 402, "extra": 1}, {"code": 402}])
def test_given_an_invalid_script_entry_when_scripted_then_value_error(entry: str | dict[str, object]) -> None:
    emulator = KieEmulator(api_key="k")

    with pytest.raises(ValueError):
        emulator.script(entry)


def test_given_two_keys_when_emulated_then_their_accounts_differ_and_are_stable() -> None:
    assert KieEmulator(api_key="a").account == KieEmulator(api_key="a").account
    assert KieEmulator(api_key="a").account != KieEmulator(api_key="b").account


def test_given_set_faults_with_fields_when_called_then_fields_override_the_given_faults() -> None:
    emulator = KieEmulator(api_key="k")

    emulator.set_faults(Faults(error_rate=0.5, seed=3), latency_seconds=0.1)

    assert emulator.faults == Faults(error_rate=0.5, seed=3, latency_seconds=0.1)


def test_given_an_empty_api_key_when_created_then_value_error() -> None:
    with pytest.raises(ValueError, match="api_key"):
        KieEmulator(api_key="")
