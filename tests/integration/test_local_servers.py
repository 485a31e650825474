"""The local stand-ins start on loopback, answer, and are gone after stop()."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from kie_uploader import local


def _listening_addresses(port: int) -> set[str]:
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local_address, state = line.split()[1], line.split()[3]
        host_hex, port_hex = local_address.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
            addresses.add(socket.inet_ntoa(bytes.fromhex(host_hex)[::-1]))
    return addresses


def test_ministack_listens_on_loopback_only_and_serves_s3(ministack: local.Server) -> None:
    assert _listening_addresses(ministack.port) == {"127.0.0.1"}
    s3 = local.local_client("s3", ministack.endpoint_url)
    s3.create_bucket(Bucket="local-servers-check")
    assert "local-servers-check" in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_a_stopped_server_leaves_no_process_behind(tmp_path: Path) -> None:
    server = local.start_ministack(tmp_path / "ms")
    server.stop()
    assert server.process.poll() is not None
    assert _listening_addresses(server.port) == set()


def test_dynamodb_local_answers_dynamodb_calls(dynamodb_local: local.Server) -> None:
    assert "TableNames" in local.local_client("dynamodb", dynamodb_local.endpoint_url).list_tables()


def test_servers_do_not_inherit_the_callers_endpoint_or_function_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
    monkeypatch.setenv("ALLOWED_BUCKETS", "someone-elses-bucket")
    monkeypatch.setenv("KIE_API_KEY", "not-for-servers")
    env = local._server_env({"GATEWAY_PORT": "4566"})
    assert env["GATEWAY_PORT"] == "4566"
    assert not {"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "ALLOWED_BUCKETS", "KIE_API_KEY"} & env.keys()
    assert env["PATH"] == os.environ["PATH"]
