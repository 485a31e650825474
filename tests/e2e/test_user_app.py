"""Issue 16's "done when": a user's own app drives like the repository's stack.

The wheel (built once per session) is installed with its ``cdk`` extra into a fresh virtualenv (the
session's ``installed``, which tests/infra/test_package.py uses too); the user's
app (tests/infra/user_app.py: two ``KieUploader``s in PhotosStack, one in MediaStack, no output written by
the app) is synthesized there and deployed into ministack with the pinned CDK CLI; then the installed
``kie-uploader`` drives each uploader (``set-key``, ``url``, ``backfill``, ``list``, ``info``, with
``--stack`` and ``--uploader``) and ``live_url`` resolves through each, against the kie.ai emulator.

The reproduction it guards: ``kie-uploader --stack MyImported list`` on a construct-built stack said "has no
output BucketNames, QueueUrl, DeadLetterQueueUrl, TableName: is it a kie-uploader stack?".
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kie_uploader import deploy, local
from tests.e2e.conftest import DeployedStack
from tests.packaging import REPO, Installed

pytestmark = pytest.mark.slow

USER_APP = REPO / "tests" / "infra" / "user_app.py"
#: (stack, uploader, a key it watches, a key of the same bucket it does not): user_app.UPLOADERS' props.
UPLOADERS = (
    ("PhotosStack", "Incoming", "incoming/a.png", "reports/a.pdf"),
    ("PhotosStack", "Reports", "reports/a.pdf", "incoming/a.png"),
    ("MediaStack", "Uploader", "media/a.mp4", None),
)


@dataclass
class UserApp:
    """The user's app deployed into the e2e ministack, with the installed CLI and Python that drive it."""

    installed: Installed
    base: DeployedStack
    cwd: Path
    timings: dict[str, float] = field(default_factory=dict)

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``kie-uploader ARGS`` from the installed wheel, at the local endpoint."""
        return subprocess.run(
            [str(self.installed.bin / "kie-uploader"), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**self.installed.env, **local.local_aws_env(self.base.endpoint_url)},
            cwd=self.cwd,
            timeout=300,
            check=False,
        )

    def resources(self, stack: str, uploader: str) -> dict[str, str]:
        run = self.cli("--stack", stack, "--uploader", uploader, "info", "--json")
        assert run.returncode == 0, run.stderr
        info = json.loads(run.stdout)
        assert info["uploader"] == uploader
        return {name: shown["value"] for name, shown in info["resources"].items()}


@pytest.fixture(scope="module")
def user_app(
    installed: Installed, deployed_stack: DeployedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UserApp]:
    """The user's app synthesized with the wheel installed with ``[cdk]`` (the session's ``installed``)
    and deployed (``cdk deploy --all`` of its cloud assembly) beside the repository's stack (its bootstrap
    and emulator reused)."""
    root = tmp_path_factory.mktemp("user-app")
    timings: dict[str, float] = {}

    started = time.perf_counter()
    assembly = root / "cdk.out"
    synth = installed.run(
        str(USER_APP), str(assembly), "--kie-base-url", deployed_stack.emulator.base_url, cwd=root
    )
    assert synth.returncode == 0, synth.stderr[-3000:]
    timings["synth"] = time.perf_counter() - started

    started = time.perf_counter()
    command = [*deploy.cdk_command(REPO), "deploy", "--all", "--app", str(assembly)]
    command += ["--require-approval", "never", "--no-notices", "--no-version-reporting"]
    deployed = subprocess.run(
        command,
        cwd=root,
        env=deploy.cdk_env(deployed_stack.endpoint_url),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    timings["deploy"] = time.perf_counter() - started
    app = UserApp(installed=installed, base=deployed_stack, cwd=root, timings=timings)
    for stack, uploader, _, _ in UPLOADERS:
        key = app.cli("--stack", stack, "--uploader", uploader, "set-key", stdin=deployed_stack.api_key)
        assert key.returncode == 0, key.stderr
    print(f"user app timings (s): { {k: round(v, 1) for k, v in timings.items()} }")
    yield app


def test_the_apps_stacks_have_no_output_but_the_constructs_discovery_records(user_app: UserApp) -> None:
    from kie_uploader import discovery

    cloudformation = user_app.base.client("cloudformation")
    for stack in ("PhotosStack", "MediaStack"):
        [described] = cloudformation.describe_stacks(StackName=stack)["Stacks"]
        names = sorted(uploader for name, uploader, _, _ in UPLOADERS if name == stack)
        outputs = described.get("Outputs", [])
        assert [o["Description"] for o in outputs if not o["Description"].startswith(
            discovery.DESCRIPTION_MARKER
        )] == []
        assert sorted(json.loads(o["OutputValue"])["name"] for o in outputs) == names


def test_list_of_a_stack_with_one_uploader_needs_no_uploader_name(user_app: UserApp) -> None:
    # The reproduction: a construct-built stack's list said it was no kie-uploader stack.
    run = user_app.cli("--stack", "MediaStack", "list", "--json")
    assert run.returncode == 0, run.stderr
    assert isinstance(json.loads(run.stdout), list)


def test_a_stack_with_two_uploaders_asks_which_listing_their_names(user_app: UserApp) -> None:
    run = user_app.cli("--stack", "PhotosStack", "list")
    assert run.returncode == 2, run.stdout
    assert run.stderr.strip() == (
        "kie-uploader: error: stack PhotosStack has 2 uploaders: Incoming, Reports; "
        "choose one with --uploader NAME"
    )
    unknown = user_app.cli("--stack", "PhotosStack", "--uploader", "Nope", "list")
    assert unknown.returncode == 2
    assert "has no uploader Nope (its uploaders: Incoming, Reports)" in unknown.stderr


@pytest.mark.parametrize(("stack", "uploader", "key", "other"), UPLOADERS)
def test_each_uploader_is_driven_by_the_installed_cli_and_live_url(
    user_app: UserApp, stack: str, uploader: str, key: str, other: str | None
) -> None:
    # Given the uploader's own resources, read by `info` from its discovery record
    resources = user_app.resources(stack, uploader)
    assert resources["FunctionName"] and resources["SecretArn"]
    [bucket] = resources["BucketNames"].split(",")
    s3 = user_app.base.client("s3")
    run_id = uuid.uuid4().hex[:8]
    folder, _, name = key.rpartition("/")
    first, second = f"{folder}/{run_id}-1-{name}", f"{folder}/{run_id}-2-{name}"
    for object_key in (first, second):
        s3.put_object(Bucket=bucket, Key=object_key, Body=f"{uploader} {object_key}".encode())
    target = ("--stack", stack, "--uploader", uploader)

    # When `url` asks for one object: its live URL, of exactly its bytes
    url = user_app.cli(*target, "url", f"s3://{bucket}/{first}")
    assert url.returncode == 0, url.stderr
    assert _download(url.stdout.strip()) == f"{uploader} {first}".encode()
    if other is not None:  # the other uploader's keys are not this one's: --uploader chose
        refused = user_app.cli(*target, "url", f"s3://{bucket}/{other}")
        assert refused.returncode != 0 and "not watched" in refused.stderr, refused.stderr

    # and `backfill` enqueues the folder: both end UPLOADED in this uploader's table, as `list` shows
    backfill = user_app.cli(*target, "backfill", f"s3://{bucket}/{folder}/{run_id}-")
    assert backfill.returncode == 0, backfill.stderr
    table = resources["TableName"]
    for object_key in (first, second):
        _wait_uploaded(user_app, table, f"s3://{bucket}/{object_key}")
    listed = user_app.cli(*target, "list", f"s3://{bucket}/{folder}/{run_id}-", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted((row["key"], row["status"]) for row in rows) == [
        (first, "UPLOADED"),
        (second, "UPLOADED"),
    ]

    # and live_url, from the installed package, resolves through the same uploader
    code = (
        "import sys; from kie_uploader import live_url\n"
        "print(live_url(sys.argv[1], stack=sys.argv[2], uploader=sys.argv[3]))\n"
    )
    live = user_app.installed.run(
        "-c", code, f"s3://{bucket}/{second}", stack, uploader,
        cwd=user_app.cwd, env=local.local_aws_env(user_app.base.endpoint_url),
    )  # fmt: skip
    assert live.returncode == 0, live.stderr
    assert _download(live.stdout.strip()) == f"{uploader} {second}".encode()


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


def _wait_uploaded(app: UserApp, table: str, uri: str, timeout: float = 120.0) -> dict[str, Any]:
    dynamodb = app.base.client("dynamodb")
    deadline = time.monotonic() + timeout
    item: dict[str, Any] = {}
    while time.monotonic() < deadline:
        item = dynamodb.get_item(TableName=table, Key={"pk": {"S": uri}}, ConsistentRead=True).get("Item", {})
        if item.get("status", {}).get("S") == "UPLOADED":
            return item
        time.sleep(0.5)
    raise AssertionError(f"{uri}: not UPLOADED after {timeout:.0f} s: {item.get('status')}")
