"""Fixtures shared by every test folder: the real local servers, started once per session on loopback.

Servers are stopped by their PID when the session ends (and by ``atexit`` if pytest itself dies).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from kie_uploader import local
from tests.factories import BUCKET, OTHER, SECRET, TABLE, VERSIONED, World, records_table_definition
from tests.leakcheck import LeakWatch
from tests.packaging import Distributions, Installed, build, install

if TYPE_CHECKING:
    from kie_uploader.emulator import KieEmulator
    from tests.faultproxy import FaultProxy

KIE_TEST_KEY = "test-kie-key"

# pytest-xdist's workers (make test runs two) start with COLUMNS=80 and LINES=24 in their environment, which
# a serial run has not: the CLI takes COLUMNS as the terminal's width (without it, a pipe gets whole lines).
# Every test starts from the serial run's environment; a test that wants a width sets COLUMNS itself.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("COLUMNS", "LINES"):
        os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def local_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the servers' state and logs, under pytest's own temporary folder."""
    return tmp_path_factory.mktemp("local-state")


@pytest.fixture(scope="session")
def distributions(tmp_path_factory: pytest.TempPathFactory) -> Distributions:
    """The project's sdist and wheel, built once per session as a release builds them (tests/packaging.py):
    the package's tests and the end-to-end test of a user's app install the same wheel."""
    return build(tmp_path_factory.mktemp("project"), tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def installed(distributions: Distributions, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A fresh virtualenv with the wheel installed with its ``cdk`` extra, as a user installs it (its
    dependencies borrowed from the project's virtualenv: tests/packaging.py)."""
    return install(distributions.wheel, tmp_path_factory.mktemp("installed") / "venv", extras="cdk")


@pytest.fixture(scope="session")
def ministack(local_state: Path) -> Iterator[local.Server]:
    """ministack on a free loopback port: S3, SQS, DynamoDB, Secrets Manager, Lambda, CloudFormation."""
    server = local.start_ministack(local_state / "ministack")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_env(ministack: local.Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point boto3 at ministack the way a user would: the standard environment variables only."""
    env = local.local_aws_env(ministack.endpoint_url)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(scope="session")
def kie_emulator() -> Iterator[KieEmulator]:
    """The kie.ai emulator, in-process on a free loopback port, with the key ``test-kie-key``."""
    from kie_uploader.emulator import KieEmulator

    emulator = KieEmulator(api_key=KIE_TEST_KEY, port=0).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def kie(kie_emulator: KieEmulator) -> Iterator[KieEmulator]:
    """The session's emulator, with its files, calls, faults and script cleared for this test."""
    kie_emulator.reset()
    yield kie_emulator
    kie_emulator.reset()


@pytest.fixture(scope="session")
def dynamodb_local(local_state: Path) -> Iterator[local.Server]:
    """DynamoDB Local (AWS's own engine), in memory; it listens on all interfaces, so only for the session."""
    server = local.start_dynamodb_local(local_state / "dynamodb-local")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def world(
    aws_env: dict[str, str], ministack: local.Server, kie: KieEmulator, monkeypatch: pytest.MonkeyPatch
) -> World:
    """A fresh ministack with the buckets, the table and the secret, and the function's environment.

    Allowed buckets: ``BUCKET`` and ``VERSIONED`` (not ``OTHER``); objects over 1000 bytes are refused;
    kie.ai is called at most 3 times per object, with a 5 s timeout.
    """
    local.reset_ministack(ministack.endpoint_url)
    w = World(kie=kie, monkeypatch=monkeypatch)
    for bucket in (BUCKET, VERSIONED, OTHER):
        w.s3.create_bucket(Bucket=bucket)
    w.s3.put_bucket_versioning(Bucket=VERSIONED, VersioningConfiguration={"Status": "Enabled"})
    w.ddb.create_table(**records_table_definition(TABLE))
    w.secrets.create_secret(Name=SECRET, SecretString=json.dumps({"apiKey": KIE_TEST_KEY}))
    w.env(
        TABLE_NAME=TABLE,
        KIE_API_KEY_SECRET_ID=SECRET,
        KIE_API_KEY=None,
        KIE_BASE_URL=kie.base_url,
        ALLOWED_BUCKETS=f"{BUCKET},{VERSIONED}",
        MAX_OBJECT_BYTES="1000",
        KIE_MAX_ATTEMPTS="3",
        KIE_TIMEOUT_SECONDS="5",
        MAX_CONCURRENCY="10",
    )
    return w


@pytest.fixture
def fault_proxy(
    world: World, ministack: local.Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of ministack (tests/faultproxy.py), with the function's environment
    pointed at it (``AWS_ENDPOINT_URL``); the world's own clients still talk to ministack directly.

    The test fails at teardown if a rule's callback raised (``proxy.errors``).
    """
    from tests.faultproxy import FaultProxy

    with FaultProxy(ministack.endpoint_url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint_url)
        yield proxy
    assert not proxy.errors, f"the fault proxy's callbacks or upstream failed: {proxy.errors!r}"


# --- A whole-run check that no secret reached a log (issue: "the API key and presigned URLs' signatures
# never reach a log"). Every test's captured output is scanned, and so are the local servers' logs.

LEAK_WATCH = LeakWatch(secrets={KIE_TEST_KEY})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for section, text in report.sections:
        if section.startswith("Captured"):
            LEAK_WATCH.scan(f"{report.nodeid} [{section}]", text)


@pytest.fixture(scope="session", autouse=True)
def _no_secret_leaked(local_state: Path) -> Iterator[None]:
    """Scan the servers' logs when the session ends, and fail its last teardown if anything leaked: under
    pytest-xdist each worker's session checks its own tests' output (with the secrets its tests added) and
    its own servers, and an error in a teardown is reported like any test's; a worker's exit status is not."""
    yield
    LEAK_WATCH.scan_files(local_state.rglob("*"))
    leaks = sorted(set(LEAK_WATCH.leaks))
    assert not leaks, "SECRET LEAK CHECK FAILED:\n  " + "\n  ".join(leaks)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if LEAK_WATCH.leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("SECRET LEAK CHECK FAILED:", red=True, bold=True)
            for leak in sorted(set(LEAK_WATCH.leaks)):
                reporter.write_line(f"  {leak}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
