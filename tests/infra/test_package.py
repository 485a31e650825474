"""The wheel a user installs: the CLI without aws-cdk-lib, the construct with the ``cdk`` extra, and the
function's code inside it, so that a user's CDK app bundles the function from site-packages.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT_FILES = ("pyproject.toml", "README.md")
PROJECT_DIRS = ("src", "functions")
FUNCTION_DATA = "kie_uploader/function"


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
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a clean copy (no stale build/ folder can leak into it)."""
    source = tmp_path_factory.mktemp("project")
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in PROJECT_DIRS:
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check"]
        + [str(source), "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (built,) = out.glob("kie_s3_uploader-*.whl")
    return built


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
    with zipfile.ZipFile(wheel) as archive:
        (metadata_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(metadata_name))
    requires = metadata.get_all("Requires-Dist") or []
    plain = [r for r in requires if "extra ==" not in r]
    cdk = [r.split(";")[0].strip() for r in requires if 'extra == "cdk"' in r]
    assert not [r for r in plain if r.startswith(("aws-cdk-lib", "constructs"))], plain
    assert sorted(cdk) == ["aws-cdk-lib==2.275.0", "constructs<11,>=10.4"]
    assert "cdk" in (metadata.get_all("Provides-Extra") or [])


USER_APP = """
import json, sys
from aws_cdk import App, Stack
from aws_cdk import aws_s3 as s3
import kie_uploader
from kie_uploader.cdk import KieUploader

app = App(outdir=sys.argv[1])
stack = Stack(app, "UserStack")
KieUploader(stack, "Uploader", buckets=[s3.Bucket.from_bucket_name(stack, "B", "users-bucket")])
assembly = app.synth()
template = assembly.get_stack_artifact(stack.artifact_id).template
print(json.dumps({"package": kie_uploader.__file__, "resources": len(template["Resources"])}))
"""


@pytest.mark.slow
def test_a_users_app_synthesizes_and_bundles_the_function_from_the_installed_wheel(
    wheel: Path, tmp_path: Path
) -> None:
    # A fresh virtualenv with only the wheel installed. Its dependencies (aws-cdk-lib is ~0.5 GB installed,
    # a minute to install here) are borrowed from the project's virtualenv by a path entry, which adds that
    # folder but runs none of its .pth files: the project's editable src/ stays invisible.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    project_site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    (site_packages / "zz_borrowed_dependencies.pth").write_text(f"{project_site}\n")
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(USER_APP))
    outdir = tmp_path / "cdk.out"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CDK_CONTEXT_JSON", "CDK_OUTDIR")}
    result = subprocess.run(
        [str(python), str(app), str(outdir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**env, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"},
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = __import__("json").loads(result.stdout.strip().splitlines()[-1])
    assert Path(summary["package"]).is_relative_to(site_packages), summary
    assert summary["resources"] > 10
    # The function's asset was bundled from site-packages: its code, and its dependencies beside it.
    bundles = [path.parent.parent for path in outdir.glob("asset.*/uploader/handler.py")]
    assert len(bundles) == 1, sorted(p.name for p in outdir.iterdir())
    assert (bundles[0] / "requests").is_dir() and (bundles[0] / "aws_lambda_powertools").is_dir()
    assert (bundles[0] / "uploader" / "handler.py").read_bytes() == (
        REPO / "functions" / "uploader" / "handler.py"
    ).read_bytes()
