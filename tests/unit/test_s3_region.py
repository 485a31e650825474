"""The bucket's region is cached only once an answer names it (issue 8: "S3Objects caches the default region
forever after one transient HeadBucket error").

tests/unit has no network: S3's answers come from botocore's own ``Stubber`` on a real client, and a lost
connection from an event hook raising what botocore raises for one. Everything else is real:
``S3Objects``, its per-region clients and SigV4 presigning (a local computation).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from uploader.s3 import S3Objects

BUCKET = "far-away-photos"


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDREGIONTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "region-test-secret")
    # S3Objects makes its per-region clients from boto3's default session, which keeps the credentials it
    # first found: give this test its own, so that later tests do not inherit these.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    config = Config(signature_version="s3v4", retries={"mode": "standard", "max_attempts": 1})
    return boto3.client("s3", region_name="us-east-1", config=config)


@pytest.fixture
def stubber(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def signed_region(url: str) -> str:
    """The region in a presigned URL's credential scope (``AKID/date/REGION/s3/aws4_request``)."""
    return parse_qs(urlsplit(url).query)["X-Amz-Credential"][0].split("/")[2]


def presign(objects: S3Objects) -> str:
    return signed_region(objects.presign_get(BUCKET, "a.png", None, 60))


def answer_naming(stubber: Stubber, region: str) -> None:
    metadata = {"HTTPStatusCode": 200, "HTTPHeaders": {"x-amz-bucket-region": region}}
    stubber.add_response("head_bucket", {"ResponseMetadata": metadata}, {"Bucket": BUCKET})


def test_after_a_transient_error_the_default_serves_one_call_and_the_next_call_asks_again(
    client: Any, stubber: Stubber
) -> None:
    objects = S3Objects(client)
    stubber.add_client_error("head_bucket", "SlowDown", "Please reduce your request rate.", 503)
    answer_naming(stubber, "eu-west-1")

    assert presign(objects) == "us-east-1"  # S3 did not say: the default, for this call only
    assert presign(objects) == "eu-west-1"  # asked again, and S3 said
    assert presign(objects) == "eu-west-1"  # cached: no HeadBucket left to answer it


def test_a_lost_connection_is_not_cached_either(client: Any, stubber: Stubber) -> None:
    objects = S3Objects(client)
    lost = {"count": 0}

    def lose_the_first_connection(**_: Any) -> None:
        if lost["count"] == 0:
            lost["count"] += 1
            raise EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")

    # Before the Stubber's answer is used: the first HeadBucket never reaches it.
    client.meta.events.register_first("before-parameter-build.s3.HeadBucket", lose_the_first_connection)
    answer_naming(stubber, "ap-southeast-2")

    assert presign(objects) == "us-east-1"
    assert presign(objects) == "ap-southeast-2"
    assert lost["count"] == 1


def test_a_region_named_on_an_error_answer_is_cached(client: Any, stubber: Stubber) -> None:
    objects = S3Objects(client)
    named = {"HTTPHeaders": {"x-amz-bucket-region": "eu-central-1"}}
    stubber.add_client_error("head_bucket", "403", "Forbidden", 403, response_meta=named)

    assert presign(objects) == "eu-central-1"
    assert presign(objects) == "eu-central-1"  # no second HeadBucket


def test_a_successful_answer_without_a_region_means_the_default(client: Any, stubber: Stubber) -> None:
    objects = S3Objects(client)
    answer = {"ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {}}}
    stubber.add_response("head_bucket", answer, {"Bucket": BUCKET})

    assert presign(objects) == "us-east-1"
    assert presign(objects) == "us-east-1"  # cached: an S3 without regions
