"""The setting-up room: ``doctor`` (what would stop the stack on its buckets, before a deploy) and
``configure`` (the deploy settings that stay, ``kie-uploader.settings.json``).

Both judge the settings with the model's own rules (:func:`kie_uploader.settings.problems`): a value
``configure`` accepts is one the deploy accepts, and ``doctor`` reports what either would refuse.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from kie_uploader import doctor, settings, settings_file
from kie_uploader.cli.args import examples
from kie_uploader.cli.aws import Aws
from kie_uploader.cli.errors import EXIT_NO, EXIT_OK, CliError
from kie_uploader.cli.output import emit, plural, say

#: ``doctor --output tsv``: a row per finding (the header also when there is none).
FINDING_FIELDS = tuple(f.name for f in fields(doctor.Finding))


def report(findings: Sequence[doctor.Finding]) -> str:
    """Every finding on its line, then a count."""
    lines = [f.line() for f in findings]
    n_errors = len(doctor.errors(findings))
    n_warnings = sum(f.severity == doctor.WARN for f in findings)
    lines.append(f"doctor: {plural(n_errors, 'error')}, {plural(n_warnings, 'warning')}")
    return "\n".join(lines)


def _settings_path(args: argparse.Namespace) -> Path:
    return Path(args.settings_file) if args.settings_file else settings_file.default_path()


def cmd_doctor(aws: Aws, args: argparse.Namespace) -> int:
    """Check the settings and each bucket; exit 1 when any finding is an error."""
    try:
        given = settings_file.parse_assignments(args.context)
    except settings_file.SettingsFileError as exc:
        raise CliError(str(exc)) from exc
    region = aws.session.region_name
    if not region:
        raise CliError("no AWS region: pass --region or set AWS_REGION (the stack's region)")
    context = {k: v for k, v in given.items() if v is not None}
    path = _settings_path(args)
    try:
        stack = settings_file.merged(context, path).get("stackName") or aws.stack_name
    except settings_file.SettingsFileError as exc:
        raise CliError(str(exc)) from exc
    findings = doctor.check(
        {"stackName": stack, **context},
        region=region,
        clients=doctor.Clients(aws.client),
        settings_path=path,
        buckets=args.bucket,
    )
    if not emit(args, [asdict(f) for f in findings], fields=FINDING_FIELDS):
        say(args, report(findings))
    return EXIT_NO if doctor.errors(findings) else EXIT_OK


def cmd_configure(aws: Aws, args: argparse.Namespace) -> int:
    """Show the settings, or change them (refused before anything is written when the deploy would
    refuse the result)."""
    path = _settings_path(args)
    try:
        changes = settings_file.parse_assignments(args.assignments)
        values = settings_file.configure(
            path, changes, accept_change=args.accept_change, check=settings.problems
        )
    except settings_file.SettingsFileError as exc:
        raise CliError(str(exc)) from exc
    if emit(args, {"file": str(path), "settings": values}):
        return EXIT_OK
    lines = [f"{path}:" + ("" if values else " no settings (every option has its default)")]
    say(args, "\n".join(lines + [f"  {key} = {values[key]}" for key in sorted(values)]))
    return EXIT_OK


# --- the parser ------------------------------------------------------------------------------------


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register ``doctor`` and ``configure``."""
    parser = commands.add_parser(
        "doctor",
        parents=[common],
        help="check the buckets, policy, encryption, filters and secret before deploying",
        **examples(
            "kie-uploader doctor                          # the settings file's buckets",
            "kie-uploader doctor --bucket my-bucket -c prefix=photos/",
        ),
    )
    parser.add_argument(
        "--bucket",
        action="append",
        default=[],
        help="check this bucket (repeatable) instead of the settings' bucketNames",
    )
    parser.add_argument("--settings-file", help="the settings file (default: kie-uploader.settings.json)")
    parser.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a context option on top of the file, as for cdk deploy",
    )
    parser.set_defaults(handler=cmd_doctor)

    configure = commands.add_parser(
        "configure",
        parents=[common],
        help="show or change the deploy settings (kie-uploader.settings.json)",
        **examples(
            "kie-uploader configure                        # show them",
            "kie-uploader configure bucketNames=my-bucket notify=queue",
            "kie-uploader configure prefix=                # remove an option",
            description="Show or change the settings every `cdk deploy` reads. NAME= removes an option.",
        ),
    )
    configure.add_argument(
        "assignments", nargs="*", metavar="NAME=VALUE", help="e.g. bucketNames=a,b notify=queue"
    )
    configure.add_argument(
        "--accept-change",
        action="store_true",
        help="allow changing a recorded bucketNames or apiKeySecretArn (detaches the stack from them)",
    )
    configure.add_argument(
        "--settings-file", help="the settings file (default: kie-uploader.settings.json)"
    )
    configure.set_defaults(handler=cmd_configure)
