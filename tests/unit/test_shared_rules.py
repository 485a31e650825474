"""One redaction module and one liveness rule, shared by the function and the operator's CLI.

The CLI imports them from the installed package (``kie_uploader.function``, the function's own code shipped
in the wheel); these tests pin that both sides run the same file and that the rule's edges hold.
"""

from __future__ import annotations

import pytest

import uploader.liveness
import uploader.redact
from kie_uploader import live
from kie_uploader.cli import output, store
from kie_uploader.function import liveness, redact
from uploader.models import ObjectHead
from uploader.table import is_live_upload

NOW = 1_750_000_000
SIGNATURE = "ab" * 32
PRESIGNED = (
    "https://b.s3.us-east-1.amazonaws.com/k.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=ASIAEXAMPLE%2F20250101%2Fus-east-1%2Fs3%2Faws4_request"
    f"&X-Amz-Security-Token=IQoJtoken&X-Amz-Signature={SIGNATURE}"
)


def record(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "pk": "s3://b/k.png",
        "status": "UPLOADED",
        "versionId": "v1",
        "etag": "e1",
        "expiresAt": NOW + 3600,
        "downloadUrl": "https://files.kie.example/u/k.png",
    }
    return {**base, **changes}


def test_the_cli_runs_the_functions_own_modules() -> None:
    assert liveness.__file__ == uploader.liveness.__file__
    assert redact.__file__ == uploader.redact.__file__


@pytest.mark.parametrize(
    ("changes", "min_valid", "expected"),
    [
        ({}, 0, True),
        ({"expiresAt": NOW}, 0, False),  # expiring this very second is not live
        ({"expiresAt": NOW + 1}, 0, True),
        ({}, 3599, True),
        ({}, 3600, False),  # exactly min_valid left is not enough
        ({"status": "FAILED"}, 0, False),
        ({"status": "DELETED"}, 0, False),
        ({"expiresAt": None}, 0, False),
        ({"expiresAt": "soon"}, 0, False),
        ({"expiresAt": True}, 0, False),
        ({"expiresAt": str(NOW + 60)}, 0, True),  # a number as text (an edited record) still counts
    ],
)
def test_liveness_edges_are_the_same_on_both_sides(
    changes: dict[str, object], min_valid: int, expected: bool
) -> None:
    rec = record(**changes)
    head = ObjectHead(version_id="v1", etag="e1", size=1)

    assert liveness.is_live(rec, NOW, min_valid) is expected
    assert is_live_upload(rec, head, NOW, min_valid) is expected  # the function's check
    if min_valid == 0:
        assert store.is_live_upload(rec, now=NOW) is expected  # the CLI's
        assert (live.describe_record(rec, NOW).state == live.LIVE) is expected  # the CLI's words


def test_a_record_of_other_bytes_is_not_the_objects_live_url() -> None:
    head = ObjectHead(version_id="v1", etag="e2", size=1)

    assert not is_live_upload(record(), head, NOW)
    assert not store.is_live_upload(record(), now=NOW, etag='"e2"')
    assert store.is_live_upload(record(), now=NOW, etag='"e1"')  # S3 listings quote their ETags
    # Before: the CLI called a record without an ETag live for any ETag, the function did not.
    assert not store.is_live_upload(record(etag=None), now=NOW, etag='"e1"')


def test_the_cli_keeps_kie_urls_whole_and_drops_presigned_secrets() -> None:
    kie_url = "https://files.kie.example/u/k.png?token=public&v=2"
    text = output.redact(f"{kie_url} and {PRESIGNED} " + "x" * 400)

    assert kie_url in text
    assert SIGNATURE not in text and "ASIAEXAMPLE" not in text and "IQoJtoken" not in text
    assert text.endswith("x" * 400)  # printed whole: the function cuts what it stores, the CLI does not


def test_the_function_drops_every_query_and_cuts_what_it_stores() -> None:
    text = redact.redact("see https://files.kie.example/u/k.png?token=public " + "y" * 400)

    assert "token=public" not in text
    assert len(text) == redact.MAX_TEXT


def test_a_stray_credential_parameter_goes_on_both_sides() -> None:
    stray = f"signed with X-Amz-Signature={SIGNATURE} then"

    assert SIGNATURE not in output.redact(stray)
    assert SIGNATURE not in redact.redact(stray)
