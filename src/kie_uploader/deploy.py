"""Deploy the repository's CDK stack into a local AWS endpoint (ministack) or AWS with the CDK CLI.

Used by the end-to-end tests, the demo and the benchmarks: ``deploy_local`` runs ``kie-uploader doctor``'s
checks, bootstraps the endpoint once and runs ``cdk deploy``; ``destroy_local`` runs ``cdk destroy``. Each
step is timed; a failing step raises :class:`DeployError` with the tail of cdk's output.

Local runs use their own settings file (beside the cloud assembly), never the repository's
``kie-uploader.settings.json``: a test or demo deploy must not change what the user deploys to AWS.
``python -m kie_uploader.deploy`` is the same path for AWS: doctor, then ``cdk deploy`` (``--skip-doctor``).

The CDK CLI is ``$KIE_UPLOADER_CDK``, else ``node_modules/.bin/cdk`` of the current folder or the repository
(``make install``), else ``cdk`` on PATH (:func:`cdk_command`); without one, the error says what to install.
Both deploy the repository's own app (``cdk.json``, ``infra/``), which the installed package does not ship:
outside a checkout they say so (:func:`require_app`). A user's own app deploys with ``cdk deploy``.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from kie_uploader import discovery, doctor, settings_file
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


class DoctorRefused(DeployError):
    """``doctor`` found errors: the deploy did not start. ``findings`` are what it found."""

    def __init__(self, findings: list[doctor.Finding]) -> None:
        lines = [f.line() for f in findings if f.severity == doctor.ERROR]
        RuntimeError.__init__(
            self,
            "doctor refused the deploy (pass skip_doctor / --skip-doctor to deploy anyway):\n"
            + "\n".join(lines),
        )
        self.step, self.returncode, self.output = "doctor", 1, "\n".join(lines)
        self.findings = findings


def preflight(
    context: Mapping[str, str],
    *,
    region: str,
    clients: doctor.Clients,
    settings_path: Path | None = None,
) -> list[doctor.Finding]:
    """``kie-uploader doctor`` on what a deploy with ``context`` (over the settings file) would use.

    Raises :class:`DoctorRefused` on errors; returns the findings otherwise (warnings, notes).
    """
    findings = doctor.check(context, region=region, clients=clients, settings_path=settings_path)
    for finding in findings:
        if finding.severity != doctor.ERROR:
            logger.info("doctor: %s", finding.line())
    if doctor.errors(findings):
        raise DoctorRefused(findings)
    return findings


#: The CDK CLI this release is tested with: package.json's aws-cdk, as package-lock.json pins it (a test
#: checks that they agree). An installed package has no package.json: its messages name this version.
CDK_CLI_VERSION = "2.1148.1"
#: A CDK CLI to use instead of the one found: a path, a command on PATH, or a command line such as
#: ``npx --yes aws-cdk@2.1148.1``.
CDK_ENV_VAR = "KIE_UPLOADER_CDK"
#: Where the repository's own CDK app is: what ``cdk deploy`` of this module and the demo deploy.
APP_FILES = ("cdk.json", "infra/app.py")
REPOSITORY_URL = "https://github.com/kie-s3-uploader/kie-s3-uploader"


class SetupError(DeployError):
    """What a deploy needs is missing (the CDK CLI, the repository's app): the message says what to do."""

    def __init__(self, step: str, message: str) -> None:
        RuntimeError.__init__(self, message)
        self.step, self.returncode, self.output = step, 127, message


def cdk_command(project_root: Path | None = None, *, env: Mapping[str, str] | None = None) -> list[str]:
    """The CDK CLI to run, as a command line: ``$KIE_UPLOADER_CDK``, else ``node_modules/.bin/cdk`` of the
    current folder, else of the repository (``make install``'s ``npm ci``), else ``cdk`` on PATH.

    Raises :class:`SetupError` saying exactly what to install when there is none.
    """
    env = os.environ if env is None else env
    configured = env.get(CDK_ENV_VAR, "").strip()
    if configured:
        words = shlex.split(configured)
        found = shutil.which(words[0], path=env.get("PATH"))
        if found is None:
            raise SetupError(
                "cli",
                f"{CDK_ENV_VAR}={configured!r}: {words[0]} is not an executable file or a command on PATH",
            )
        return [found, *words[1:]]
    roots = dict.fromkeys([Path.cwd(), project_root or repo_root()])
    candidates = [root / "node_modules" / ".bin" / "cdk" for root in roots]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate)]
    on_path = shutil.which("cdk", path=env.get("PATH"))
    if on_path is not None:
        return [on_path]
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise SetupError(
        "cli",
        f"the AWS CDK CLI is not installed: not in ${CDK_ENV_VAR}, {looked}, nor `cdk` on PATH. Install "
        f"the version this release is tested with (Node 20+): `npm install aws-cdk@{CDK_CLI_VERSION}` in "
        f"this folder (in a checkout of the repository: `make install`), or run it through npx: "
        f"`export {CDK_ENV_VAR}='npx --yes aws-cdk@{CDK_CLI_VERSION}'`",
    )


def cdk_executable(project_root: Path | None = None) -> Path:
    """The CDK CLI's executable: the first word of :func:`cdk_command`."""
    return Path(cdk_command(project_root)[0])


def require_app(project_root: Path, *, what: str = "python -m kie_uploader.deploy") -> None:
    """Raise :class:`SetupError` unless ``project_root`` holds the repository's CDK app (``cdk.json`` and
    ``infra/``), which the installed package does not ship: ``what`` deploys that app, not the user's."""
    missing = [name for name in APP_FILES if not (project_root / name).is_file()]
    if missing:
        raise SetupError(
            "app",
            f"{what} deploys this repository's own CDK app ({' and '.join(APP_FILES)} of a checkout), and "
            f"{project_root} has no {' or '.join(missing)}: run it in a checkout (`git clone "
            f"{REPOSITORY_URL} && cd kie-s3-uploader && make install`), or deploy your own CDK app, which "
            "uses `from kie_uploader.cdk import KieUploader`, with `cdk deploy`",
        )


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


def stack_outputs(
    cfn_client: CloudFormationClient, stack_name: str, uploader: str | None = None
) -> dict[str, str]:
    """The resources of the stack's uploader ``uploader`` (else its only one), read back through
    DescribeStacks from the construct's discovery record, under the names of the older stacks' outputs
    (``BucketNames``, ``QueueUrl``, ``SecretArn``, ...: ``kie_uploader.discovery.Uploader.as_outputs``)."""
    stacks = cfn_client.describe_stacks(StackName=stack_name)["Stacks"]
    if not stacks:
        raise DeployError("describe-stacks", 1, f"stack {stack_name} not found")
    try:
        found = discovery.uploaders_of(stacks[0].get("Outputs", []), stack_name)
        return discovery.choose(found, stack_name, uploader).as_outputs()
    except discovery.DiscoveryError as exc:
        raise DeployError("describe-stacks", 1, str(exc)) from None


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
    settings_path: Path | None = None,
) -> str:
    command = [*cdk_command(project_root), *args]
    logger.info("cdk %s: %s", step, " ".join(args))
    env = cdk_env(endpoint_url)
    # The app reads (and remembers -c options in) this file; never the repository's for a local run.
    env[settings_file.ENV_VAR] = str(settings_path or _private_settings(None, Path(tempfile.mkdtemp())))
    try:
        result = subprocess.run(
            command,
            cwd=project_root,
            env=env,
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


def _private_settings(settings_path: Path | None, outdir: Path) -> Path:
    return settings_path or outdir / settings_file.FILE_NAME


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
        settings_path=_private_settings(None, outdir or Path(tempfile.mkdtemp(dir=state_root()))),
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
    settings_path: Path | None = None,
    skip_doctor: bool = False,
) -> dict[str, str]:
    """Doctor, bootstrap (once per endpoint) and deploy the stack; returns its uploader's resources
    (:func:`stack_outputs`).

    ``context`` adds CDK context options (``-c key=value``); ``kie_base_url`` and ``stack_name`` set theirs.
    ``timings``, when given, receives each step's duration in seconds (``bootstrap``, ``deploy``).
    ``settings_path`` is the settings file the app reads and remembers options in (default: one beside the
    cloud assembly, so each ``outdir`` has its own). Doctor's errors raise :class:`DoctorRefused` before
    anything is deployed, unless ``skip_doctor``.
    """
    root = project_root or repo_root()
    outdir = _private_outdir(outdir)
    settings_path = _private_settings(settings_path, outdir)
    full_context = {**(context or {}), "kieBaseUrl": kie_base_url, "stackName": stack_name}
    if not skip_doctor:
        clients = doctor.Clients(lambda service: local_client(service, endpoint_url))
        preflight(full_context, region=LOCAL_REGION, clients=clients, settings_path=settings_path)
    bootstrap_local(endpoint_url=endpoint_url, project_root=root, outdir=outdir, timings=timings)
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
    _run_cdk("deploy", args, endpoint_url=endpoint_url, project_root=root, settings_path=settings_path)
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
    outdir = _private_outdir(outdir)
    args = [
        "destroy",
        stack_name,
        "--force",
        "--no-notices",
        "--no-version-reporting",
        *_context_args({**(context or {}), "stackName": stack_name}),
        "--output",
        str(outdir),
    ]
    started = time.perf_counter()
    settings_path = _private_settings(None, outdir)
    _run_cdk("destroy", args, endpoint_url=endpoint_url, project_root=root, settings_path=settings_path)
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


# --- AWS: doctor, then `cdk deploy` ------------------------------------------------------------------


def deploy_aws(
    context: Mapping[str, str],
    *,
    skip_doctor: bool = False,
    region: str | None = None,
    cdk_args: list[str] | None = None,
    project_root: Path | None = None,
    session: Any = None,
) -> int:
    """Run doctor against AWS (the standard credential chain), then ``cdk deploy`` with ``context``.

    Raises :class:`DoctorRefused` when doctor finds errors (unless ``skip_doctor``); returns cdk's exit code.
    """
    root = project_root or repo_root()
    if not skip_doctor:
        session = session or boto3.Session(region_name=region)
        if not session.region_name:
            raise DeployError(
                "doctor", 2, "no AWS region: set AWS_REGION (the stack's region) or pass --region"
            )
        findings = preflight(
            context,
            region=session.region_name,
            clients=doctor.Clients(session.client),
            settings_path=settings_file.default_path(root),
        )
        for finding in findings:
            print(finding.line(), file=sys.stderr)
    require_app(root)
    command = [*cdk_command(root), "deploy", *_context_args(context), *(cdk_args or [])]
    env = dict(os.environ)
    if region:
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = region
    return subprocess.call(command, cwd=root, env=env)


def main(argv: list[str] | None = None) -> int:
    """``python -m kie_uploader.deploy [-c NAME=VALUE ...] [--skip-doctor] [-- cdk deploy options]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m kie_uploader.deploy",
        description="Check the buckets and the secret with kie-uploader doctor, then `cdk deploy` to AWS.",
    )
    parser.add_argument("-c", "--context", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--skip-doctor", action="store_true", help="deploy even when doctor finds errors")
    parser.add_argument("--region", help="the stack's region (default: the standard chain)")
    parser.add_argument("cdk_args", nargs=argparse.REMAINDER, help="after --: passed to cdk deploy")
    args = parser.parse_args(argv)
    try:
        # What only a checkout has, and the CDK CLI, are checked before doctor's AWS calls.
        require_app(repo_root())
        cdk_command(repo_root())
        context = {k: v for k, v in settings_file.parse_assignments(args.context).items() if v is not None}
        return deploy_aws(
            context,
            skip_doctor=args.skip_doctor,
            region=args.region,
            cdk_args=[a for a in args.cdk_args if a != "--"],
        )
    except (DeployError, settings_file.SettingsFileError) as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
