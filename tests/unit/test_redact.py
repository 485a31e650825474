"""Redaction of presigned-URL credentials and secrets from any text that leaves an adapter."""

from __future__ import annotations

from uploader.redact import MAX_TEXT, redact

SIGNATURE = "0f" * 32
PRESIGNED = (
    "https://photos.s3.us-east-1.amazonaws.com/a%20b.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=ASIAXXXX%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20250101T000000Z"
    f"&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token=IQoJb3JpZ2lu&X-Amz-Signature={SIGNATURE}"
)


def test_urls_lose_their_query_string() -> None:
    text = redact(f"could not fetch {PRESIGNED} (403)")

    assert "https://photos.s3.us-east-1.amazonaws.com/a%20b.png?" in text
    assert SIGNATURE not in text and "ASIAXXXX" not in text and "IQoJb3JpZ2lu" not in text
    assert text.endswith("(403)")


def test_stray_credential_parameters_are_dropped() -> None:
    text = redact(f"query was X-Amz-Signature={SIGNATURE}&X-Amz-Credential=ASIAXXXX and more")

    assert SIGNATURE not in text and "ASIAXXXX" not in text and "and more" in text


def test_known_secrets_are_replaced() -> None:
    assert "sk-live-12345" not in redact("key sk-live-12345 refused", ["sk-live-12345", None])


def test_long_texts_are_cut() -> None:
    assert len(redact("x" * 1000)) == MAX_TEXT


def test_plain_text_is_unchanged() -> None:
    assert redact("kie.ai HTTP 500 code 500: Internal server error") == (
        "kie.ai HTTP 500 code 500: Internal server error"
    )
