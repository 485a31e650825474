"""Deploy the real CDK stack into a local AWS endpoint (ministack) with the pinned CDK CLI.

Used by the end-to-end tests, the demo and the benchmarks: ``deploy_local`` bootstraps the endpoint once
and runs ``cdk deploy``; ``destroy_local`` runs ``cdk destroy``. Each step is timed; a failing step raises
:class:`DeployError` with the tail of cdk's output.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from kie_uploader.local import (
    LOCAL_ACCOUNT,
    LOCAL_CREDENTIALS,
    LOCAL_REGION,
    local_client,
    repo_root,
    state_root,
)

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

logger = logging.getLogger(__name__)

DEFAULT_STACK_NAME = "KieUploader"
TOOLKIT_STACK_NAME = "CDKToolkit"
#: Enough for a cold synth with bundling plus CloudFormation on a busy 2-core machine.
STEP_TIMEOUT_SECONDS = 600.0
_OUTPUT_TAIL_LINES = 40
_COMPLETE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE")


class DeployError(RuntimeError):
    """A cdk step failed; the message names the step and carries the tail of its output."""

    def __init__(self, step: str, returncode: int | None, output: str) -> None:
        tail = "\n".join(output.splitlines()[-_OUTPUT_TAIL_LINES:])
        status = "timed out" if returncode is None else f"exited with {returncode}"
        super().__init__(f"cdk {step} {status}:\n{tail}")
        self.step = step
        self.returncode = returncode
        self.output = output


def cdk_executable(project_root: Path | None = None) -> Path:
    """The CDK CLI pinned in package.json (``npm ci`` puts it under node_modules)."""
    path = (project_root or repo_root()) / "node_modules" / ".bin" / "cdk"
    if not path.exists():
        raise DeployError("cli", 127, f"the CDK CLI is not installed at {path}: run `make install` first")
    return path


def cdk_env(endpoint_url: str) -> dict[str, str]:
    """The CLI's environment: this process's, minus the user's AWS identity, pointed at the endpoint."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "CDK_"))}
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint_url,
            **LOCAL_CREDENTIALS,
            "AWS_REGION": LOCAL_REGION,
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            "CDK_DISABLE_CLI_TELEMETRY": "true",
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            # The CLI would otherwise ask questions or colour its output.
            "CI": "true",
            "FORCE_COLOR": "0",
        }
    )
    return env


def cloudformation_client(endpoint_url: str) -> CloudFormationClient:
    client: CloudFormationClient = local_client("cloudformation", endpoint_url)
    return client


def stack_outputs(cfn_client: CloudFormationClient, stack_name: str) -> dict[str, str]:
    """The stack's outputs as ``{OutputKey: OutputValue}``, read back through DescribeStacks."""
    stacks = cfn_client.describe_stacks(StackName=stack_name)["Stacks"]
    if not stacks:
        raise DeployError("describe-stacks", 1, f"stack {stack_name} not found")
    return {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}


def _stack_status(cfn_client: CloudFormationClient, stack_name: str) -> str | None:
    try:
        stacks = cfn_client.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return stacks[0]["StackStatus"] if stacks else None


def _context_args(context: Mapping[str, str] | None) -> list[str]:
    args: list[str] = []
    for key, value in (context or {}).items():
        args += ["--context", f"{key}={value}"]
    return args


def _run_cdk(
    step: str,
    args: list[str],
    *,
    endpoint_url: str,
    project_root: Path,
    timeout: float = STEP_TIMEOUT_SECONDS,
) -> str:
    command = [str(cdk_executable(project_root)), *args]
    logger.info("cdk %s: %s", step, " ".join(args))
    try:
        result = subprocess.run(
            command,
            cwd=project_root,
            env=cdk_env(endpoint_url),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode(errors="replace")
        raise DeployError(step, None, output) from None
    if result.returncode != 0:
        raise DeployError(step, result.returncode, result.stdout)
    return result.stdout


def _timed(timings: MutableMapping[str, float] | None, step: str, started: float) -> None:
    elapsed = time.perf_counter() - started
    logger.info("cdk %s took %.1f s", step, elapsed)
    if timings is not None:
        timings[step] = elapsed


def _private_outdir(outdir: Path | None) -> Path:
    # Each cdk run gets its own cloud assembly folder: two runs sharing cdk.out fail with
    # "Other CLIs are currently reading from cdk.out" (the demo beside a test run, say).
    if outdir is not None:
        return outdir
    return Path(tempfile.mkdtemp(prefix="cdk.out-", dir=state_root()))


def bootstrap_local(
    *,
    endpoint_url: str,
    project_root: Path | None = None,
    outdir: Path | None = None,
    timings: MutableMapping[str, float] | None = None,
) -> bool:
    """``cdk bootstrap`` the local account unless its toolkit stack is already there; True if it ran."""
    root = project_root or repo_root()
    if _stack_status(cloudformation_client(endpoint_url), TOOLKIT_STACK_NAME) in _COMPLETE:
        return False
    started = time.perf_counter()
    _run_cdk(
        "bootstrap",
        [
            "bootstrap",
            f"aws://{LOCAL_ACCOUNT}/{LOCAL_REGION}",
            "--no-notices",
            "--no-version-reporting",
            "--output",
            str(_private_outdir(outdir)),
        ],
        endpoint_url=endpoint_url,
        project_root=root,
    )
    _timed(timings, "bootstrap", started)
    return True


def deploy_local(
    *,
    endpoint_url: str,
    kie_base_url: str,
    context: dict[str, str] | None = None,
    stack_name: str = DEFAULT_STACK_NAME,
    outdir: Path | None = None,
    project_root: Path | None = None,
    timings: MutableMapping[str, float] | None = None,
) -> dict[str, str]:
    """Bootstrap (once per endpoint) and deploy the stack; returns its outputs from DescribeStacks.

    ``context`` adds CDK context options (``-c key=value``); ``kie_base_url`` and ``stack_name`` set theirs.
    ``timings``, when given, receives each step's duration in seconds (``bootstrap``, ``deploy``).
    """
    root = project_root or repo_root()
    outdir = _private_outdir(outdir)
    bootstrap_local(endpoint_url=endpoint_url, project_root=root, outdir=outdir, timings=timings)
    full_context = {**(context or {}), "kieBaseUrl": kie_base_url, "stackName": stack_name}
    args = [
        "deploy",
        stack_name,
        "--require-approval",
        "never",
        "--no-notices",
        "--no-version-reporting",
        "--progress",
        "events",
        *_context_args(full_context),
        "--output",
        str(outdir),
    ]
    started = time.perf_counter()
    _run_cdk("deploy", args, endpoint_url=endpoint_url, project_root=root)
    _timed(timings, "deploy", started)
    return stack_outputs(cloudformation_client(endpoint_url), stack_name)


def destroy_local(
    *,
    endpoint_url: str,
    context: dict[str, str] | None = None,
    stack_name: str = DEFAULT_STACK_NAME,
    outdir: Path | None = None,
    project_root: Path | None = None,
    timings: MutableMapping[str, float] | None = None,
) -> None:
    """``cdk destroy`` the stack (resources with a Retain policy, such as the table, stay)."""
    root = project_root or repo_root()
    args = [
        "destroy",
        stack_name,
        "--force",
        "--no-notices",
        "--no-version-reporting",
        *_context_args({**(context or {}), "stackName": stack_name}),
        "--output",
        str(_private_outdir(outdir)),
    ]
    started = time.perf_counter()
    _run_cdk("destroy", args, endpoint_url=endpoint_url, project_root=root)
    _timed(timings, "destroy", started)


def put_api_key(secret_arn: str, key: str, *, endpoint_url: str | None = None, client: Any = None) -> None:
    """Put the kie.ai API key into the stack's secret (a new version; the function picks it up)."""
    if not key:
        raise ValueError("the kie.ai API key is empty")
    if client is None:
        client = (
            local_client("secretsmanager", endpoint_url) if endpoint_url else boto3.client("secretsmanager")
        )
    client.put_secret_value(SecretId=secret_arn, SecretString=key)
