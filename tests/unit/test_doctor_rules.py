"""doctor's rules that ministack cannot represent (Requester Pays), and its pure parts: event and filter
overlap, the filter encoding it suggests."""

from __future__ import annotations

from typing import Any

import pytest

from kie_uploader import doctor


class StubS3:
    """Answers like S3 for one bucket with no policy, no encryption and no notifications."""

    def __init__(self, payer: str) -> None:
        self.payer = payer

    def get_bucket_location(self, Bucket: str) -> dict[str, Any]:
        return {"LocationConstraint": None}

    def get_bucket_notification_configuration(self, Bucket: str) -> dict[str, Any]:
        return {}

    def get_bucket_policy(self, Bucket: str) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "NoSuchBucketPolicy"}}, "GetBucketPolicy")

    def get_bucket_encryption(self, Bucket: str) -> dict[str, Any]:
        return {"ServerSideEncryptionConfiguration": {"Rules": []}}

    def get_bucket_request_payment(self, Bucket: str) -> dict[str, Any]:
        return {"Payer": self.payer}


def bucket_findings(payer: str) -> list[doctor.Finding]:
    clients = doctor.Clients(lambda service: StubS3(payer) if service == "s3" else None)
    return doctor.check_bucket(
        doctor.Plan(region="us-east-1", bucket_names=("b-bucket",)), clients, "b-bucket"
    )


def test_a_requester_pays_bucket_is_an_error() -> None:
    (finding,) = bucket_findings("Requester")
    assert finding.severity == doctor.ERROR and "Requester Pays" in finding.what
    assert bucket_findings("BucketOwner") == []


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("s3:ObjectCreated:*", "s3:ObjectCreated:Put", True),
        ("s3:ObjectCreated:Put", "s3:ObjectCreated:*", True),
        ("s3:ObjectRemoved:Delete", "s3:ObjectRemoved:*", True),
        ("s3:ObjectRemoved:Delete", "s3:ObjectCreated:*", False),
        ("s3:ObjectRestore:Completed", "s3:ObjectCreated:*", False),
        ("s3:ObjectCreated:Put", "s3:ObjectCreated:Copy", False),
    ],
)
def test_event_types_overlap_as_s3_says(a: str, b: str, overlap: bool) -> None:
    assert doctor._events_overlap(a, b) is overlap


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("My Documents/", "My+Documents/"),
        ("résumé/", "r%C3%A9sum%C3%A9/"),
        ("a%20b/", "a%20b/"),
        ("x+y/", "x+y/"),
    ],
)
def test_the_suggested_filter_is_url_encoded_once(value: str, encoded: str) -> None:
    assert doctor.encode_filter(value) == encoded
