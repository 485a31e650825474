"""The wheel a user installs: the CLI without aws-cdk-lib, the construct with the ``cdk`` extra, and the
function's code inside it, so that a user's CDK app bundles the function from site-packages.

The sdist and the wheel are built once per session (``distributions``, tests/packaging.py), as a release
builds them (``python -m build``: the sdist, then the
wheel from the sdist, so a file missing from the sdist breaks the wheel), and checked with
``twine check --strict``; one fresh virtualenv with the wheel installed (``installed``, tests/conftest.py)
serves every test that runs it.
"""

from __future__ import annotations

import email
import email.message
import json
import os
import re
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.packaging import VERSION, Distributions, Installed

REPO = Path(__file__).resolve().parents[2]
FUNCTION_DATA = "kie_uploader/function"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def lowest_aws_cdk_lib() -> str:
    """The cdk extra's lower bound: the oldest aws-cdk-lib supported (what ``make cdk-lowest`` installs)."""
    (spec,) = [r for r in PYPROJECT["optional-dependencies"]["cdk"] if r.startswith("aws-cdk-lib")]
    match = re.fullmatch(r"aws-cdk-lib>=([0-9]+\.[0-9]+\.[0-9]+),<3", spec)
    assert match, spec
    return match.group(1)


def test_importing_the_package_and_its_cli_does_not_import_aws_cdk() -> None:
    code = (
        "import sys, kie_uploader, kie_uploader.cli, kie_uploader.deploy\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('aws_cdk', 'constructs', 'jsii'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="module")
def wheel(distributions: Distributions) -> Path:
    return distributions.wheel


def _wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (metadata_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(metadata_name))


@pytest.mark.slow
def test_twine_check_strict_passes_on_the_sdist_and_the_wheel(distributions: Distributions) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "twine",
            "check",
            "--strict",
            str(distributions.sdist),
            str(distributions.wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("PASSED") == 2, result.stdout


@pytest.mark.slow
def test_the_license_is_in_the_sdist_and_the_wheel_and_py_typed_in_the_wheel(
    distributions: Distributions,
) -> None:
    license_text = (REPO / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "The kie-s3-uploader authors" in license_text
    with zipfile.ZipFile(distributions.wheel) as archive:
        names = set(archive.namelist())
        licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert len(licenses) == 1, sorted(names)
        assert archive.read(licenses[0]).decode() == license_text
        assert "kie_uploader/py.typed" in names
    with tarfile.open(distributions.sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        root = f"kie_s3_uploader-{VERSION}"
        extracted = archive.extractfile(f"{root}/LICENSE")
        assert extracted is not None and extracted.read().decode() == license_text
    assert {"LICENSE", "pyproject.toml", "docs/pypi.md", "src/kie_uploader/py.typed"} <= members, sorted(
        members
    )


@pytest.mark.slow
def test_the_metadata_is_written_for_a_package_index(wheel: Path) -> None:
    metadata = _wheel_metadata(wheel)
    assert metadata["Version"] == VERSION
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
    assert {"Homepage", "Repository", "Issues", "Changelog"} <= set(urls), urls
    assert all(url.startswith("https://") for url in urls.values()), urls
    assert "Typing :: Typed" in (metadata.get_all("Classifier") or [])
    assert "aws-cdk" in (metadata["Keywords"] or "").split(",")
    assert metadata["Description-Content-Type"] == "text/markdown"
    description = metadata.get_payload()
    assert isinstance(description, str)
    # Opens with what it is, not with the repository's make targets; every link absolute.
    assert "make demo" not in description.split("\n## ", 1)[0]
    links = re.findall(r"\]\(([^)]+)\)", description)
    assert links and all(link.startswith("https://") for link in links), links


@pytest.mark.slow
def test_the_wheel_holds_the_functions_code_and_the_constructs_handler(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    function_files = {path.name for path in (REPO / "functions" / "uploader").iterdir() if path.is_file()}
    function_files -= {name for name in function_files if name.endswith(".pyc")}
    assert {f"{FUNCTION_DATA}/{name}" for name in function_files} <= names
    assert f"{FUNCTION_DATA}/requirements.txt" in names
    assert "kie_uploader/cdk/handlers/bucket_notifications/index.py" in names
    assert not [name for name in names if "__pycache__" in name]
    # Every module of src/kie_uploader is in it (a new subpackage must be listed in pyproject.toml).
    sources = {
        path.relative_to(REPO / "src").as_posix() for path in (REPO / "src" / "kie_uploader").rglob("*.py")
    }
    assert sources <= names, sorted(sources - names)


@pytest.mark.slow
def test_aws_cdk_lib_is_required_only_by_the_cdk_extra(wheel: Path) -> None:
    metadata = _wheel_metadata(wheel)
    requires = metadata.get_all("Requires-Dist") or []
    plain = [r for r in requires if "extra ==" not in r]
    cdk = [r.split(";")[0].strip() for r in requires if 'extra == "cdk"' in r]
    assert not [r for r in plain if r.startswith(("aws-cdk-lib", "constructs"))], plain
    # A range, as construct libraries have: an app on any aws-cdk-lib 2.x from the lowest tested one fits.
    assert sorted(cdk) == [f"aws-cdk-lib<3,>={lowest_aws_cdk_lib()}", "constructs<11,>=10"]
    assert "cdk" in (metadata.get_all("Provides-Extra") or [])


USER_APP = """
import json, sys
from aws_cdk import App, Stack
from aws_cdk import aws_s3 as s3
import kie_uploader
from kie_uploader.cdk import KieUploader

app = App(outdir=sys.argv[1])
stack = Stack(app, "UserStack")
KieUploader(
    stack,
    "Uploader",
    buckets=[s3.Bucket.from_bucket_name(stack, "B", "users-bucket")],
    accept_responsibility_for_imported_buckets=True,
)
assembly = app.synth()
template = assembly.get_stack_artifact(stack.artifact_id).template
print(json.dumps({"package": kie_uploader.__file__, "resources": len(template["Resources"])}))
"""


@pytest.mark.slow
def test_a_users_app_synthesizes_and_bundles_the_function_from_the_installed_wheel(
    installed: Installed, tmp_path: Path
) -> None:
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(USER_APP))
    outdir = tmp_path / "cdk.out"
    result = installed.run(str(app), str(outdir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(summary["package"]).is_relative_to(installed.site_packages), summary
    assert summary["resources"] > 10
    # The function's asset was bundled from site-packages: its code, and its dependencies beside it.
    bundles = [path.parent.parent for path in outdir.glob("asset.*/uploader/handler.py")]
    assert len(bundles) == 1, sorted(p.name for p in outdir.iterdir())
    assert (bundles[0] / "requests").is_dir() and (bundles[0] / "aws_lambda_powertools").is_dir()
    assert (bundles[0] / "uploader" / "handler.py").read_bytes() == (
        REPO / "functions" / "uploader" / "handler.py"
    ).read_bytes()


@pytest.mark.slow
def test_the_installed_version_is_pyprojects(installed: Installed, tmp_path: Path) -> None:
    cli = installed.python.parent / "kie-uploader"
    result = subprocess.run(
        [str(cli), "--version"], capture_output=True, text=True, env=installed.env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["kie-uploader", VERSION]
    result = installed.run("-c", "import kie_uploader; print(kie_uploader.__version__)", cwd=tmp_path)
    assert result.stdout.strip() == VERSION, result.stderr[-2000:]


def _fake_cdk(folder: Path) -> Path:
    """A stand-in for the CDK CLI that prints the arguments it was given."""
    fake = folder / "fake-cdk"
    fake.write_text('#!/bin/sh\necho "fake cdk: $*"\n')
    fake.chmod(0o755)
    return fake


@pytest.mark.slow
def test_deploy_and_demo_from_the_installed_wheel_say_what_they_need(
    installed: Installed, tmp_path: Path
) -> None:
    """Installed from the wheel, outside a checkout: no `make install` advice, no node_modules path of a
    folder that never had one, but what to run."""
    from kie_uploader.deploy import CDK_CLI_VERSION

    empty = tmp_path / "empty"
    empty.mkdir()
    deploy = installed.run("-m", "kie_uploader.deploy", cwd=empty)
    assert deploy.returncode == 1, deploy.stdout + deploy.stderr
    message = deploy.stderr.strip()
    assert message.startswith(
        "deploy: python -m kie_uploader.deploy deploys this repository's own CDK app"
    ), message
    assert "cdk.json" in message and "git clone https://" in message and "cdk deploy" in message, message
    assert "make install` first" not in message and "Traceback" not in message, message
    demo = installed.run("-m", "kie_uploader.demo", cwd=empty)
    assert demo.returncode == 2, demo.stdout + demo.stderr
    assert demo.stderr.startswith(
        "demo: the demo (python -m kie_uploader.demo) deploys this repository's own"
    ), demo.stderr

    # A checkout's app without the CDK CLI (no node_modules here, no cdk on PATH): what to install, exactly.
    checkout = tmp_path / "checkout"
    (checkout / "infra").mkdir(parents=True)
    (checkout / "cdk.json").write_text('{"app": "python -m infra.app"}')
    (checkout / "infra" / "app.py").write_text("")
    deploy = installed.run("-m", "kie_uploader.deploy", "--skip-doctor", cwd=checkout)
    assert deploy.returncode == 1, deploy.stdout + deploy.stderr
    message = deploy.stderr.strip()
    assert message.startswith("deploy: the AWS CDK CLI is not installed"), message
    assert f"`npm install aws-cdk@{CDK_CLI_VERSION}`" in message, message
    assert f"KIE_UPLOADER_CDK='npx --yes aws-cdk@{CDK_CLI_VERSION}'" in message, message
    assert str(checkout / "node_modules" / ".bin" / "cdk") in message, message

    # KIE_UPLOADER_CDK names the CLI to use: the deploy runs it in the checkout.
    fake = _fake_cdk(tmp_path)
    deploy = installed.run(
        "-m",
        "kie_uploader.deploy",
        "--skip-doctor",
        "-c",
        "prefix=in/",
        cwd=checkout,
        env={"KIE_UPLOADER_CDK": str(fake)},
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert deploy.stdout.strip() == "fake cdk: deploy --context prefix=in/", deploy.stdout
