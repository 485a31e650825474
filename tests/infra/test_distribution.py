"""The package as a library others install: one version, the changelog, the ``cdk`` extra's range and its
error, the CDK CLI that deploy and the demo find, and the construct in a user's app with the newest
aws-cdk-lib (``make cdk-lowest`` runs the same app with the oldest) and with or without feature flags.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import version as distribution_version
from pathlib import Path
from typing import Any

import pytest

from kie_uploader import deploy
from kie_uploader.cli.entry import version as cli_version

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
VERSION = PROJECT["version"]


def test_the_version_is_written_once_and_read_back_everywhere() -> None:
    import kie_uploader

    assert "version" not in PROJECT.get("dynamic", [])
    # The editable install's metadata: `make install` reinstalls whenever pyproject.toml changes.
    assert distribution_version("kie-s3-uploader") == VERSION
    assert kie_uploader.__version__ == VERSION
    assert cli_version() == VERSION


def test_the_changelog_has_this_versions_entry() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert "[Keep a Changelog](https://keepachangelog.com/" in changelog
    releases = re.findall(r"^## \[([0-9.]+)\] - (\d{4}-\d{2}-\d{2})$", changelog, flags=re.MULTILINE)
    assert releases and releases[0][0] == VERSION, releases
    entry = changelog.split(f"## [{VERSION}]", 1)[1].split("\n## [", 1)[0]
    assert re.search(r"^### (Added|Changed|Fixed|Security)$", entry, flags=re.MULTILINE), entry[:500]
    # Every release has its link at the bottom, as Keep a Changelog writes them.
    for number, _ in releases:
        assert re.search(rf"^\[{re.escape(number)}\]: https://", changelog, flags=re.MULTILINE), number


def test_the_cdk_extra_is_a_range_from_the_lowest_tested_version() -> None:
    extras = PROJECT["optional-dependencies"]
    (lowest,) = [r for r in extras["cdk"] if r.startswith("aws-cdk-lib")]
    match = re.fullmatch(r"aws-cdk-lib>=([0-9.]+),<3", lowest)
    assert match, lowest
    assert "constructs>=10,<11" in extras["cdk"]
    (pinned,) = [r for r in extras["dev"] if r.startswith("aws-cdk-lib")]
    newest = pinned.removeprefix("aws-cdk-lib==")

    def key(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split("."))

    assert key(match.group(1)) < key(newest), (lowest, pinned)
    # make cdk-lowest installs exactly the lower bound: the Makefile reads it from pyproject.toml.
    result = subprocess.run(
        [
            "make",
            "-s",
            "--no-print-directory",
            "--eval",
            "print-lowest: ; @echo $(CDK_LOWEST)",
            "print-lowest",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip() == match.group(1), result.stdout + result.stderr


@pytest.mark.parametrize("blocked", ["aws_cdk", "constructs"])
def test_the_construct_without_the_cdk_extra_says_which_extra_to_install(blocked: str) -> None:
    # A None in sys.modules makes the import fail as for a module that is not installed.
    code = f"import sys\nsys.modules[{blocked!r}] = None\nfrom kie_uploader.cdk import KieUploader\n"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: kie_uploader.cdk needs aws-cdk-lib and constructs"), last
    assert "pip install 'kie-s3-uploader[cdk]'" in last, last
    assert f"No module named '{blocked}" in last, last


def test_the_cdk_cli_version_named_in_messages_is_package_locks() -> None:
    lock = json.loads((REPO / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/aws-cdk"]["version"] == deploy.CDK_CLI_VERSION


# --- the CDK CLI deploy and the demo run ---------------------------------------------------------------


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A current folder, a repository and a PATH folder, none with a CDK CLI yet."""
    found = {name: tmp_path / name for name in ("cwd", "repo", "bin")}
    for folder in found.values():
        folder.mkdir()
    monkeypatch.chdir(found["cwd"])
    return found


def test_the_cdk_cli_is_found_in_order(places: dict[str, Path]) -> None:
    env = {"PATH": str(places["bin"])}
    on_path = _executable(places["bin"] / "cdk")
    assert deploy.cdk_command(places["repo"], env=env) == [str(on_path)]
    in_repo = _executable(places["repo"] / "node_modules" / ".bin" / "cdk")
    assert deploy.cdk_command(places["repo"], env=env) == [str(in_repo)]
    here = _executable(places["cwd"] / "node_modules" / ".bin" / "cdk")
    assert deploy.cdk_command(places["repo"], env=env) == [str(here)]
    chosen = _executable(places["bin"] / "my-cdk")
    assert deploy.cdk_command(places["repo"], env={**env, "KIE_UPLOADER_CDK": str(chosen)}) == [str(chosen)]
    # A command line: its first word on PATH, the rest its arguments (npx aws-cdk@VERSION).
    npx = _executable(places["bin"] / "npx")
    command = deploy.cdk_command(
        places["repo"], env={**env, "KIE_UPLOADER_CDK": "npx --yes aws-cdk@2.1148.1"}
    )
    assert command == [str(npx), "--yes", "aws-cdk@2.1148.1"]


def test_without_a_cdk_cli_the_error_says_what_to_run(places: dict[str, Path]) -> None:
    with pytest.raises(deploy.SetupError) as raised:
        deploy.cdk_command(places["repo"], env={"PATH": str(places["bin"])})
    message = str(raised.value)
    assert f"`npm install aws-cdk@{deploy.CDK_CLI_VERSION}`" in message
    assert f"`export KIE_UPLOADER_CDK='npx --yes aws-cdk@{deploy.CDK_CLI_VERSION}'`" in message
    for root in ("cwd", "repo"):
        assert str(places[root] / "node_modules" / ".bin" / "cdk") in message
    with pytest.raises(deploy.SetupError, match="KIE_UPLOADER_CDK='no-such-cdk': no-such-cdk is not an"):
        deploy.cdk_command(
            places["repo"], env={"PATH": str(places["bin"]), "KIE_UPLOADER_CDK": "no-such-cdk"}
        )


def test_outside_a_checkout_deploy_says_that_it_deploys_the_repositorys_app(tmp_path: Path) -> None:
    with pytest.raises(deploy.SetupError) as raised:
        deploy.require_app(tmp_path)
    message = str(raised.value)
    assert message.startswith("python -m kie_uploader.deploy deploys this repository's own CDK app")
    assert f"{tmp_path} has no cdk.json or infra/app.py" in message
    assert f"git clone {deploy.REPOSITORY_URL}" in message
    deploy.require_app(REPO)  # the repository has it


def test_the_deploy_command_checks_the_app_and_the_cli_before_doctor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(deploy, "repo_root", lambda: tmp_path)
    monkeypatch.setattr(deploy, "deploy_aws", lambda *a, **k: pytest.fail("deploy_aws ran"))
    assert deploy.main([]) == 1
    assert capsys.readouterr().err.startswith(
        "deploy: python -m kie_uploader.deploy deploys this repository's"
    )


# --- the construct in a user's app: the newest aws-cdk-lib, CDK's defaults or the repository's flags -------


def _normalized(template: dict[str, Any]) -> dict[str, Any]:
    """The template with each IAM statement's actions sorted (``minimizePolicies`` sorts them)."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {key: walk(value) for key, value in node.items()}
            if isinstance(out.get("Action"), list):
                out["Action"] = sorted(out["Action"])
            return out
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return dict(walk(template))


@pytest.mark.slow
def test_the_users_app_needs_no_feature_flags(tmp_path: Path) -> None:
    """tests/infra/user_app.py (two KieUploaders in one stack, one in another) with the pinned aws-cdk-lib:
    CDK's defaults (no cdk.json context) and this repository's cdk.json give the same templates."""
    from tests.infra import user_app

    repository_flags = json.loads((REPO / "cdk.json").read_text())["context"]
    assert len(repository_flags) > 50
    templates = []
    for name, flags in (("defaults", {}), ("repository", repository_flags)):
        context = {**flags, "aws:cdk:bundling-stacks": []}
        assembly = user_app.build(context, str(tmp_path / name)).synth()
        stacks = user_app.summary(assembly)
        assert set(stacks) == {"PhotosStack", "MediaStack"}
        templates.append({stack: _normalized(assembly.get_stack_by_name(stack).template) for stack in stacks})
    defaults, repository = templates
    for stack in defaults:
        differing = sorted(
            logical_id
            for logical_id in defaults[stack]["Resources"].keys() | repository[stack]["Resources"].keys()
            if defaults[stack]["Resources"].get(logical_id) != repository[stack]["Resources"].get(logical_id)
        )
        assert not differing, (stack, differing)
        assert defaults[stack] == repository[stack], stack
