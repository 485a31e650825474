"""Builds the function's asset without Docker: pip installs manylinux wheels for Lambda's platform.

CDK calls ``try_bundle`` first and falls back to the Docker image only when it returns False, so a
developer without Docker (and CI) bundles locally, and one with an unusual setup still has Docker.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

PYTHON_VERSION = "3.12"
RUNTIME = lambda_.Runtime.PYTHON_3_12
PACKAGE = "uploader"
# Lambda's Python 3.12 runtime is Amazon Linux 2023 (glibc 2.34): manylinux2014 wheels run there.
PIP_PLATFORMS = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".pytest_cache")


class BundlingError(RuntimeError):
    """pip could not build the function's dependencies; the message carries pip's output."""


def pip_install_command(requirements: Path, target: Path, *, architecture: str) -> list[str]:
    """The pip command that installs the function's dependencies for Lambda's platform, not this one's."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-r",
        str(requirements),
        "-t",
        str(target),
        "--platform",
        PIP_PLATFORMS[architecture],
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        "--no-compile",
        "--disable-pip-version-check",
        "--quiet",
    ]


def bundle(package_dir: Path, output_dir: Path, *, architecture: str) -> None:
    """Write the deployable tree: the dependencies at the top level, the function's package beside them as
    ``uploader`` (``package_dir`` holds its modules and its requirements.txt)."""
    requirements = package_dir / "requirements.txt"
    output_dir.mkdir(parents=True, exist_ok=True)
    if requirements.is_file() and requirements.read_text().strip():
        result = subprocess.run(
            pip_install_command(requirements, output_dir, architecture=architecture),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise BundlingError(f"pip install -r {requirements} failed ({result.returncode}):\n{tail}")
        # Console scripts are of no use inside a Lambda function.
        shutil.rmtree(output_dir / "bin", ignore_errors=True)
    if package_dir.is_dir():
        shutil.copytree(package_dir, output_dir / PACKAGE, ignore=_IGNORED, dirs_exist_ok=True)


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """CDK's local-bundling hook: bundles with this interpreter's pip, so synth needs no Docker."""

    def __init__(self, package_dir: Path, *, architecture: str) -> None:
        self._package_dir = package_dir
        self._architecture = architecture

    def try_bundle(self, output_dir: str, options: Any = None, **_: Any) -> bool:
        # jsii passes the bundling options as a second argument; they describe the Docker fallback only.
        if importlib.util.find_spec("pip") is None:
            return False  # no pip here: let CDK use the Docker image
        bundle(self._package_dir, Path(output_dir), architecture=self._architecture)
        return True


def bundling_options(package_dir: Path, *, architecture: str) -> BundlingOptions:
    """Local pip bundling first; the same steps in the runtime's build image when that is impossible (the
    asset's source, mounted at /asset-input, is the function's package folder)."""
    platform = "linux/arm64" if architecture == "arm64" else "linux/amd64"
    image: DockerImage = RUNTIME.bundling_image
    return BundlingOptions(
        image=image,
        platform=platform,
        local=LocalPipBundling(package_dir, architecture=architecture),
        command=[
            "bash",
            "-c",
            "pip install --no-compile -r requirements.txt -t /asset-output "
            f"&& rm -rf /asset-output/bin && mkdir -p /asset-output/{PACKAGE} "
            f"&& cp -r . /asset-output/{PACKAGE}/ "
            f"&& find /asset-output/{PACKAGE} -name __pycache__ -prune -exec rm -rf {{}} +",
        ],
    )


def function_package_dir() -> Path:
    """The folder of the function's package (its modules and requirements.txt): the asset's source.

    Installed (``pip install 'kie-s3-uploader[cdk]'``), it is the ``kie_uploader.function`` package
    (``functions/uploader`` of the repository, mapped in pyproject.toml); in a checkout, the repository's
    own ``functions/uploader`` folder.
    """
    here = Path(__file__).resolve().parent
    for package in (here.parent / "function", here.parents[2] / "functions" / PACKAGE):
        if (package / "handler.py").is_file() and (package / "requirements.txt").is_file():
            return package
    raise BundlingError(
        f"the function's code is missing: neither {here.parent / 'function'} nor a checkout's functions/"
    )
