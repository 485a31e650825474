"""The distributions a user installs, built once per session (the ``distributions`` fixture of
tests/conftest.py), and a fresh virtualenv with the wheel installed: shared by tests/infra/test_package.py
and the end-to-end test of a user's app (tests/e2e/test_user_app.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE", "docs/pypi.md")
PROJECT_DIRS = ("src", "functions")
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


@dataclass(frozen=True)
class Distributions:
    sdist: Path
    wheel: Path


def build(source: Path, out: Path) -> Distributions:
    """The project's sdist and wheel (built from the sdist), from a clean copy in ``source`` (no stale
    build/ folder can leak into them), into ``out`` (never the repository's dist/)."""
    for name in PROJECT_FILES:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in PROJECT_DIRS:
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sdist,) = out.glob(f"kie_s3_uploader-{VERSION}.tar.gz")
    (built,) = out.glob(f"kie_s3_uploader-{VERSION}-py3-none-any.whl")
    return Distributions(sdist=sdist, wheel=built)


@dataclass(frozen=True)
class Installed:
    """A fresh virtualenv with the wheel installed, as a user's (without the repository's node_modules)."""

    python: Path
    site_packages: Path
    env: dict[str, str]

    @property
    def bin(self) -> Path:
        return self.python.parent

    def run(
        self, *args: str, cwd: Path, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=600,
            check=False,
        )


def install(wheel: Path, venv: Path, *, extras: str = "") -> Installed:
    """A fresh virtualenv at ``venv`` with only the wheel installed.

    Its dependencies (aws-cdk-lib is ~0.5 GB installed, a minute to install here) are borrowed from the
    project's virtualenv by a path entry, which adds that folder but runs none of its .pth files: the
    project's editable src/ stays invisible. With ``extras`` (``"cdk"``), pip then installs
    ``wheel[extras]`` without an index: it succeeds only if every requirement of the extra is satisfied by
    what is there, as a user's ``pip install 'kie-s3-uploader[cdk]'`` would need.
    """
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, timeout=300)
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    project_site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    (site_packages / "zz_borrowed_dependencies.pth").write_text(f"{project_site}\n")
    if extras:
        subprocess.run([*pip, "--no-index", f"{wheel}[{extras}]"], check=True, timeout=300)
    drop = ("PYTHONPATH", "CDK_CONTEXT_JSON", "CDK_OUTDIR", "KIE_UPLOADER_CDK")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    # The user's PATH: this virtualenv's scripts and the system's, no `cdk` (none is installed globally here).
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin"
    env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    return Installed(python=python, site_packages=site_packages, env=env)
