"""The whole-run secret check finds what it is meant to find, and nothing else."""

from tests.leakcheck import LeakWatch

PRESIGNED = (
    "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20260101"
    "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "ab12" * 16
)


def test_a_line_with_the_api_key_is_reported() -> None:
    watch = LeakWatch(secrets={"sk-live-123"})
    watch.scan("t", '{"msg": "calling kie.ai", "auth": "Bearer sk-live-123"}')
    assert watch.leaks == ["t: contains an API key"]


def test_a_presigned_url_with_its_signature_is_reported() -> None:
    watch = LeakWatch()
    watch.scan("t", f"fetching {PRESIGNED}")
    assert "t: contains a presigned URL's signature" in watch.leaks
    assert "t: contains a presigned credential" in watch.leaks


def test_a_redacted_url_and_ordinary_lines_pass() -> None:
    watch = LeakWatch(secrets={"sk-live-123"})
    watch.scan("t", "fetching https://b.s3.amazonaws.com/k (query redacted); status=UPLOADED key=a b.png")
    assert watch.leaks == []


def test_a_sigv2_presigned_url_is_reported_too() -> None:
    watch = LeakWatch()
    watch.scan(
        "t",
        "GET https://b.s3.amazonaws.com/k?AWSAccessKeyId=test&Signature=q1w2e3r4t5y6u7i8o9p0%2Babcd&Expires=1",
    )
    assert "t: contains a presigned URL's signature" in watch.leaks
    assert "t: contains a presigned credential" in watch.leaks
