"""The function's asset, built without Docker: Lambda-platform wheels plus the ``uploader`` package."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kie_uploader.cdk.bundling import LocalPipBundling, bundle, pip_install_command

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO / "functions" / "uploader"
MINISTACK_PYTHON = REPO / ".venv-ministack" / "bin" / "python"


@pytest.fixture(scope="module")
def arm64_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle-arm64")
    assert LocalPipBundling(PACKAGE_DIR, architecture="arm64").try_bundle(str(out)) is True
    return out


def test_pip_targets_lambdas_platform_and_python_not_this_machines() -> None:
    command = pip_install_command(Path("req.txt"), Path("out"), architecture="x86_64")
    assert command[command.index("--platform") + 1] == "manylinux2014_x86_64"
    assert command[command.index("--python-version") + 1] == "3.12"
    assert "--only-binary=:all:" in command


def test_bundle_holds_the_package_without_caches_and_its_dependencies_without_boto3(
    arm64_bundle: Path,
) -> None:
    assert (arm64_bundle / "uploader" / "handler.py").is_file()
    assert not list(arm64_bundle.rglob("__pycache__"))
    assert (arm64_bundle / "requests").is_dir()
    assert (arm64_bundle / "aws_lambda_powertools").is_dir()
    # boto3 comes with the Lambda runtime; bundling it would only make the asset and the cold start bigger.
    assert not (arm64_bundle / "boto3").exists() and not (arm64_bundle / "botocore").exists()
    # rich draws the CLI's tables and progress: the function never needs it.
    assert not (arm64_bundle / "rich").exists() and not list(arm64_bundle.glob("rich-*.dist-info"))


def test_compiled_extensions_in_the_bundle_are_built_for_arm64(arm64_bundle: Path) -> None:
    extensions = list(arm64_bundle.rglob("*.so"))
    assert all("aarch64" in path.name for path in extensions), extensions


def test_bundle_imports_on_ministacks_interpreter(arm64_bundle: Path) -> None:
    # ministack runs functions on its own Python 3.11 (x86_64): the pure-Python fallbacks must import there.
    if not MINISTACK_PYTHON.exists():
        pytest.fail(f"{MINISTACK_PYTHON} is missing: run `make install`")
    result = subprocess.run(
        [str(MINISTACK_PYTHON), "-c", "import uploader.handler, requests, aws_lambda_powertools"],
        cwd=arm64_bundle,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_bundling_a_package_without_requirements_copies_only_the_package(tmp_path: Path) -> None:
    (tmp_path / "function").mkdir()
    (tmp_path / "function" / "__init__.py").write_text("")
    bundle(tmp_path / "function", tmp_path / "out", architecture="arm64")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["uploader"]
    assert (tmp_path / "out" / "uploader" / "__init__.py").is_file()
