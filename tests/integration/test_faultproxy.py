"""The fault-injection tooling itself, against the real local servers: the proxy in front of ministack
(tests/faultproxy.py) and the kie.ai emulator's fetch hooks.

Each test checks something the tooling could get wrong: a proxy that rewrote Host would break presigned
URLs (ministack checks them), one that closed keep-alive connections would spend boto3's retries, one that
named operations wrongly would make rules match nothing.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import boto3
import botocore.exceptions
import pytest
import requests
from botocore.config import Config as BotoConfig

from kie_uploader.emulator import KieEmulator
from tests import factories as f
from tests.conftest import KIE_TEST_KEY
from tests.factories import BUCKET, TABLE, World
from tests.faultproxy import (
    FaultProxy,
    Request,
    Rule,
    Seen,
    after,
    before,
    delay,
    fail,
    fail_after_forward,
    reset,
)
from uploader.config import Config
from uploader.errors import TransientError
from uploader.events import parse_event
from uploader.models import Status
from uploader.retry import Deadline
from uploader.runtime import build_processor
from uploader.s3 import S3Objects


def client(service: str, url: str, *, attempts: int | None = None) -> Any:
    """A boto3 client of ``url`` making at most ``attempts`` in all, else botocore's default (standard mode:
    4 attempts at DynamoDB, as the function's table client); s3 signs SigV4, so that ministack checks its
    presigned URLs. (botocore's ``max_attempts`` counts retries only: 3 means 4 attempts.)"""
    retries: dict[str, Any] = {} if attempts is None else {"mode": "standard", "total_max_attempts": attempts}
    config = BotoConfig(signature_version="s3v4" if service == "s3" else None, retries=retries)
    return boto3.client(service, endpoint_url=url, config=config)


def pk(key: str) -> dict[str, Any]:
    return {"pk": {"S": f"s3://{BUCKET}/{key}"}}


def upload(kie: KieEmulator, file_url: str) -> requests.Response:
    """kie.ai's upload endpoint, called as the function calls it."""
    return requests.post(
        f"{kie.base_url}/api/file-url-upload",
        json={"fileUrl": file_url, "uploadPath": "tests", "fileName": "f.bin"},
        headers={"Authorization": f"Bearer {KIE_TEST_KEY}"},
        timeout=10,
    )


# --- forwarding --------------------------------------------------------------------------------------------


def test_s3_calls_are_forwarded_on_one_kept_alive_connection_and_named(
    world: World, fault_proxy: FaultProxy
) -> None:
    s3 = client("s3", fault_proxy.endpoint_url)
    s3.put_object(Bucket=BUCKET, Key="dir/a b.txt", Body=b"via proxy")
    head = s3.head_object(Bucket=BUCKET, Key="dir/a b.txt")  # a HEAD answer has no body: the next call
    got = s3.get_object(Bucket=BUCKET, Key="dir/a b.txt")["Body"].read()  # on the connection must parse
    assert world.s3.get_object(Bucket=BUCKET, Key="dir/a b.txt")["Body"].read() == b"via proxy"
    s3.delete_object(Bucket=BUCKET, Key="dir/a b.txt")

    assert head["ContentLength"] == 9 and got == b"via proxy"
    assert not world.s3.list_objects_v2(Bucket=BUCKET).get("Contents")
    assert fault_proxy.log == [
        Seen("s3", op, BUCKET, "dir/a b.txt", status)
        for op, status in (("PutObject", 200), ("HeadObject", 200), ("GetObject", 200), ("DeleteObject", 204))
    ]  # the world's own client went to ministack directly
    assert len({r.client_port for r in fault_proxy.requests}) == 1
    assert all(
        r.headers["Host"] == fault_proxy.endpoint_url.removeprefix("http://") for r in fault_proxy.requests
    )


def test_presigned_urls_through_the_proxy_are_checked_by_ministack_against_the_clients_host(
    world: World, fault_proxy: FaultProxy, ministack: Any
) -> None:
    world.put("p.txt", b"presigned")
    url = client("s3", fault_proxy.endpoint_url).generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "p.txt"}, ExpiresIn=60
    )
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")

    valid, bad = requests.get(url, timeout=10), requests.get(tampered, timeout=10)
    elsewhere = requests.get(url.replace(fault_proxy.endpoint_url, ministack.endpoint_url), timeout=10)

    assert (valid.status_code, valid.content) == (200, b"presigned")
    assert bad.status_code == 403 and b"SignatureDoesNotMatch" in bad.content
    # The signature covers the Host: the proxy passes the client's on, or the valid URL would fail too.
    assert elsewhere.status_code == 403
    assert fault_proxy.count("s3", "GetObject", BUCKET, "p.txt", presigned=True) == 2


def test_a_chunked_request_body_is_forwarded_whole(world: World, fault_proxy: FaultProxy) -> None:
    url = client("s3", fault_proxy.endpoint_url).generate_presigned_url(
        "put_object", Params={"Bucket": BUCKET, "Key": "chunked"}, ExpiresIn=60
    )
    answer = requests.put(url, data=iter([b"first,", b"", b"second"]), timeout=10)  # a generator: chunked

    assert answer.status_code == 200, answer.text
    assert fault_proxy.requests[-1].headers["Transfer-Encoding"] == "chunked"
    assert world.s3.get_object(Bucket=BUCKET, Key="chunked")["Body"].read() == b"first,second"


def test_dynamodb_calls_are_forwarded_and_a_failed_condition_comes_back_as_such(
    world: World, fault_proxy: FaultProxy
) -> None:
    ddb = client("dynamodb", fault_proxy.endpoint_url)
    ddb.put_item(TableName=TABLE, Item={**pk("d1"), "n": {"N": "1"}})
    update = {
        "TableName": TABLE,
        "Key": pk("d1"),
        "UpdateExpression": "SET n = n + :one",
        "ConditionExpression": "n = :expected",
        "ExpressionAttributeValues": {":one": {"N": "1"}, ":expected": {"N": "1"}},
    }
    ddb.update_item(**update)
    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
        ddb.update_item(**update)  # n is 2 now

    assert ddb.get_item(TableName=TABLE, Key=pk("d1"))["Item"]["n"] == {"N": "2"}
    assert [(s.operation, s.resource, s.key, s.status) for s in fault_proxy.log] == [
        ("PutItem", TABLE, f"s3://{BUCKET}/d1", 200),
        ("UpdateItem", TABLE, f"s3://{BUCKET}/d1", 200),
        ("UpdateItem", TABLE, f"s3://{BUCKET}/d1", 400),
        ("GetItem", TABLE, f"s3://{BUCKET}/d1", 200),
    ]


# --- faults ----------------------------------------------------------------------------------------------


# The function's S3 client says ``retries={"mode": "standard", "max_attempts": 3}``: botocore's max_attempts
# counts retries, so HeadObject is tried 4 times in all.
@pytest.mark.parametrize(("times", "raises"), [(3, False), (4, True)])
def test_s3_slowdown_on_head_object_is_absorbed_thrice_and_exhausts_the_functions_attempts_at_four(
    world: World, fault_proxy: FaultProxy, times: int, raises: bool
) -> None:
    world.put("slow")
    rule = fault_proxy.add(Rule("s3", "HeadObject", fail(503), key="slow", times=times))
    objects = S3Objects()  # the function's adapter, built from the environment: through the proxy

    if raises:
        with pytest.raises(TransientError, match="503"):
            objects.head(BUCKET, "slow", None)
    else:
        assert objects.head(BUCKET, "slow", None).size == len(b"hello kie")
    assert rule.hits == times
    assert fault_proxy.count("s3", "HeadObject", BUCKET, "slow") == 4


def test_an_s3_error_body_is_aws_shaped(world: World, fault_proxy: FaultProxy) -> None:
    world.put("slow")
    fault_proxy.add(Rule("s3", "GetObject", fail(503), times=None))

    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client("s3", fault_proxy.endpoint_url, attempts=1).get_object(Bucket=BUCKET, Key="slow")

    assert caught.value.response["Error"]["Code"] == "SlowDown"


def test_a_connection_reset_is_retried_by_boto_and_fails_a_client_without_retries(
    world: World, fault_proxy: FaultProxy
) -> None:
    world.ddb.put_item(TableName=TABLE, Item=pk("r1"))
    fault_proxy.add(Rule("dynamodb", "GetItem", reset(), times=1))
    answer = client("dynamodb", fault_proxy.endpoint_url).get_item(TableName=TABLE, Key=pk("r1"))
    assert "Item" in answer and answer["ResponseMetadata"]["RetryAttempts"] == 1
    assert [s.status for s in fault_proxy.log] == [None, 200]

    fault_proxy.add(Rule("dynamodb", "GetItem", reset(), times=1))
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        client("dynamodb", fault_proxy.endpoint_url, attempts=1).get_item(TableName=TABLE, Key=pk("r1"))


def test_reset_is_a_tcp_reset_not_a_clean_close(world: World, fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Rule("s3", "HeadBucket", reset()))
    port = int(fault_proxy.endpoint_url.rpartition(":")[2])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"HEAD /{BUCKET} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        with pytest.raises(ConnectionResetError):  # a FIN would read b"" instead
            sock.recv(1024)
    assert fault_proxy.log == [Seen("s3", "HeadBucket", BUCKET, None, None)]


def test_dynamodb_throttling_is_retried_then_surfaces_with_its_code(
    world: World, fault_proxy: FaultProxy
) -> None:
    fault_proxy.add(Rule("dynamodb", "PutItem", fail(400), key="t1", times=3))
    answer = client("dynamodb", fault_proxy.endpoint_url).put_item(TableName=TABLE, Item=pk("t1"))
    assert answer["ResponseMetadata"]["RetryAttempts"] == 3  # botocore's default: 4 attempts at DynamoDB

    fault_proxy.add(Rule("dynamodb", "PutItem", fail(400), times=None))
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client("dynamodb", fault_proxy.endpoint_url, attempts=2).put_item(TableName=TABLE, Item=pk("t2"))
    assert caught.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert world.record("t2") is None and world.record("t1") is not None


def test_an_update_whose_answer_is_lost_landed_and_its_retry_fails_its_condition(
    world: World, fault_proxy: FaultProxy
) -> None:
    landed: list[bool] = []
    rule = fault_proxy.add(
        Rule(
            "dynamodb",
            "UpdateItem",
            after(lambda _: landed.append(world.record("u1") is not None), reset_after=True),
            key="u1",
        )
    )
    ddb = client("dynamodb", fault_proxy.endpoint_url)
    create = {
        "TableName": TABLE,
        "Key": pk("u1"),
        "UpdateExpression": "SET v = :v",
        "ConditionExpression": "attribute_not_exists(pk)",
        "ExpressionAttributeValues": {":v": {"S": "first"}},
    }

    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
        ddb.update_item(**create)  # boto retries the write it does not know landed

    assert landed == [True] and rule.hits == 1  # the callback ran after the write reached the table
    assert world.existing_record("u1")["v"] == "first"
    assert [s.status for s in fault_proxy.log] == [None, 400]


def test_fail_after_forward_answers_an_error_for_a_write_that_landed(
    world: World, fault_proxy: FaultProxy
) -> None:
    fault_proxy.add(Rule("dynamodb", "PutItem", fail_after_forward(500), key="w1"))

    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client("dynamodb", fault_proxy.endpoint_url, attempts=1).put_item(TableName=TABLE, Item=pk("w1"))

    assert caught.value.response["Error"]["Code"] == "InternalServerError"
    assert world.record("w1") is not None
    assert fault_proxy.requests[-1].upstream_status == 200


def test_before_runs_while_the_request_is_held_and_delay_waits(world: World, fault_proxy: FaultProxy) -> None:
    world.put("b1", b"old bytes")
    seen: list[str | None] = []

    def overwrite(request: Request) -> None:
        seen.append(request.key)
        world.put("b1", b"new bytes")

    fault_proxy.add(Rule("s3", "GetObject", before(overwrite), resource=BUCKET))
    fault_proxy.add(Rule("s3", "GetObject", delay(0.3)))
    s3 = client("s3", fault_proxy.endpoint_url)

    assert s3.get_object(Bucket=BUCKET, Key="b1")["Body"].read() == b"new bytes"
    assert seen == ["b1"]
    started = time.monotonic()
    s3.get_object(Bucket=BUCKET, Key="b1")
    assert time.monotonic() - started >= 0.3


def test_a_failing_callback_is_kept_and_answered_502(world: World, fault_proxy: FaultProxy) -> None:
    def broken(_: Request) -> None:
        raise RuntimeError("bug in a test's callback")

    fault_proxy.add(Rule("s3", "HeadBucket", before(broken)))
    with pytest.raises(botocore.exceptions.ClientError, match="502"):
        client("s3", fault_proxy.endpoint_url, attempts=1).head_bucket(Bucket=BUCKET)

    assert [type(e) for e in fault_proxy.errors] == [RuntimeError]
    fault_proxy.errors.clear()  # expected here; the fixture fails a test that leaves errors behind


def test_clear_forgets_rules_and_log(world: World, fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Rule("s3", None, fail(500), times=None))
    fault_proxy.clear()
    client("s3", fault_proxy.endpoint_url).head_bucket(Bucket=BUCKET)
    assert fault_proxy.log == [Seen("s3", "HeadBucket", BUCKET, None, 200)]


# --- the function through the proxy, and kie.ai fetching through it ---------------------------------------


def test_the_functions_processor_goes_through_the_proxy_and_kie_fetches_its_presigned_url(
    world: World, fault_proxy: FaultProxy
) -> None:
    world.put("fn.txt", b"function bytes")
    processor = build_processor(Config.from_env())
    event, _ = world.sqs(f.plain_message(BUCKET, "fn.txt"))

    [outcome] = processor.process_messages(parse_event(event).messages, Deadline(lambda: 60_000, 3.0))

    assert outcome.status == Status.UPLOADED, outcome.error
    assert world.existing_record("fn.txt")["status"] == "UPLOADED"
    assert fault_proxy.count("secretsmanager", "GetSecretValue") == 1
    assert fault_proxy.count("s3", "HeadObject", BUCKET, "fn.txt") >= 1
    assert fault_proxy.count("dynamodb", "UpdateItem", TABLE, "fn.txt") >= 1
    assert fault_proxy.count("s3", "GetObject", BUCKET, "fn.txt", presigned=True) == 1  # kie.ai's fetch
    assert [call.status for call in world.kie.calls] == [200]


# --- the emulator's hooks ---------------------------------------------------------------------------------


def presigned(world: World, key: str, endpoint: str) -> str:
    url: str = client("s3", endpoint).generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=60
    )
    return url


def test_on_fetch_runs_between_presign_and_download(world: World, ministack: Any) -> None:
    world.put("h1", b"presigned version")
    urls: list[str] = []

    def replace(url: str) -> None:
        urls.append(url)
        world.put("h1", b"replaced before the fetch")

    world.kie.on_fetch(replace)
    url = presigned(world, "h1", ministack.endpoint_url)

    first, second = upload(world.kie, url), upload(world.kie, url)

    assert first.status_code == second.status_code == 200
    assert world.kie.stored("tests/f.bin") == b"replaced before the fetch"
    assert urls == [url]  # times=1: the second call ran no hook


def test_on_fetch_deleting_the_object_makes_the_download_fail(world: World, ministack: Any) -> None:
    world.put("h2")
    world.kie.on_fetch(lambda _: world.s3.delete_object(Bucket=BUCKET, Key="h2"), times=None)

    answer = upload(world.kie, presigned(world, "h2", ministack.endpoint_url))

    assert answer.status_code == 400 and answer.json()["msg"] == "Failed to download file: HTTP 404"


def test_after_fetch_runs_after_the_download_and_before_the_answer(world: World, ministack: Any) -> None:
    world.put("h3", b"fetched bytes")
    done = threading.Event()

    def change(_: str) -> None:
        world.put("h3", b"changed after the fetch")
        time.sleep(0.2)
        done.set()

    world.kie.after_fetch(change, times=2)
    url = presigned(world, "h3", ministack.endpoint_url)

    assert upload(world.kie, url).status_code == 200
    assert done.is_set()  # the answer waited for the hook
    assert world.kie.stored("tests/f.bin") == b"fetched bytes"
    done.clear()
    assert upload(world.kie, url).status_code == 200 and done.is_set()  # times=2: ran again
    done.clear()
    assert upload(world.kie, url).status_code == 200 and not done.is_set()


def test_refused_hosts_fail_the_download_like_an_unreachable_origin(
    world: World, fault_proxy: FaultProxy, ministack: Any
) -> None:
    world.put("h4")
    world.kie.refuse_hosts(fault_proxy.endpoint_url.removeprefix("http://"))

    refused = upload(world.kie, presigned(world, "h4", fault_proxy.endpoint_url))
    direct = upload(world.kie, presigned(world, "h4", ministack.endpoint_url))

    assert refused.status_code == 500
    assert refused.json()["msg"] == "Failed to download file: [Errno 111] Connection refused"
    assert direct.status_code == 200
    assert fault_proxy.count("s3", "GetObject") == 0


def test_reset_clears_the_hooks_and_a_failing_hook_is_kept(world: World, ministack: Any) -> None:
    world.put("h5")
    url = presigned(world, "h5", ministack.endpoint_url)
    ran: list[str] = []
    world.kie.on_fetch(ran.append, times=None)
    world.kie.refuse_hosts(ministack.endpoint_url.removeprefix("http://"))
    world.kie.reset()
    assert upload(world.kie, url).status_code == 200 and ran == []

    def broken(_: str) -> None:
        raise RuntimeError("bug in a test's hook")

    world.kie.after_fetch(broken)
    assert upload(world.kie, url).status_code == 500
    assert [type(e) for e in world.kie.hook_errors] == [RuntimeError]
