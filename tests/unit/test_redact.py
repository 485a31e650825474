"""Redaction of presigned-URL credentials and secrets from any text that leaves an adapter."""

from __future__ import annotations

import json

from uploader.redact import MAX_TEXT, redact, url_secrets

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


TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVz+LWVhc3Q="
TOKEN_IN_URL = "IQoJb3JpZ2luX2VjEJr%2F%2F%2F%2F%2F%2F%2F%2F%2F%2FwEaCXVz%2BLWVhc3Q%3D"
PRESIGNED_WITH_TOKEN = PRESIGNED.replace("IQoJb3JpZ2lu", TOKEN_IN_URL)
SIGV2_SIGNATURE = "vjbyPxybdZaNmGa+yT272YEAiv4="
SIGV2 = (
    "https://photos.s3.amazonaws.com/a.png?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1735732800"
    "&Signature=vjbyPxybdZaNmGa%2ByT272YEAiv4%3D"
)


def test_url_secrets_are_the_signature_credential_token_and_access_key_in_every_shape() -> None:
    secrets = url_secrets(PRESIGNED_WITH_TOKEN)

    assert SIGNATURE in secrets
    assert "ASIAXXXX/20250101/us-east-1/s3/aws4_request" in secrets
    assert "ASIAXXXX%2F20250101%2Fus-east-1%2Fs3%2Faws4_request" in secrets
    assert "ASIAXXXX" in secrets
    assert TOKEN in secrets  # decoded
    assert TOKEN_IN_URL in secrets  # as written in the URL
    assert not any(value in secrets for value in ("AWS4-HMAC-SHA256", "20250101T000000Z", "900", "host"))


def test_url_secrets_of_a_sigv2_url() -> None:
    secrets = url_secrets(SIGV2)

    assert {"AKIAIOSFODNN7EXAMPLE", SIGV2_SIGNATURE, "vjbyPxybdZaNmGa%2ByT272YEAiv4%3D"} <= set(secrets)
    assert "1735732800" not in secrets


def test_url_secrets_of_urls_without_secrets() -> None:
    assert url_secrets("https://example.com/a.png?size=10&Signature=") == []
    assert url_secrets("sk-live-12345") == []
    assert url_secrets("http://[::1/x?X-Amz-Signature=abc") == []


def test_an_echoed_signature_outside_a_url_is_redacted_with_url_secrets() -> None:
    echoes = [
        json.dumps({"sig": SIGNATURE, "credential": "ASIAXXXX/20250101/us-east-1/s3/aws4_request"}),
        f"the signature {SIGNATURE} does not match; token {TOKEN}",
        f"key ASIAXXXX refused, signature {SIGNATURE}.",
    ]
    for echo in echoes:
        text = redact(echo, ["sk-live-12345", PRESIGNED_WITH_TOKEN, *url_secrets(PRESIGNED_WITH_TOKEN)])

        assert SIGNATURE not in text and "ASIAXXXX" not in text and TOKEN not in text, text
        assert "[redacted]" in text


def test_a_sigv2_signature_echoed_decoded_is_redacted() -> None:
    text = redact(json.dumps({"sig": SIGV2_SIGNATURE, "by": "AKIAIOSFODNN7EXAMPLE"}), url_secrets(SIGV2))

    assert "vjbyPxybdZaNmGa" not in text and "AKIAIOSFODNN7EXAMPLE" not in text
