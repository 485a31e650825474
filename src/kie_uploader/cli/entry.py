"""``kie-uploader``: the operator's command line for a deployed stack. This module only assembles the
parser from each room's ``register(commands, common)`` and runs the command it parsed.

Rooms (see ``kie_uploader/cli/__init__.py``): records (:mod:`.records`), moving objects (:mod:`.moving`,
:mod:`.dlq`), operating (:mod:`.info`, :mod:`.operating`), setting up (:mod:`.setting_up`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from kie_uploader.aws_errors import describe_aws_error
from kie_uploader.cli import dlq, info, moving, operating, records, setting_up
from kie_uploader.cli.args import DEFAULT_STACK, HelpFormatter, common_options
from kie_uploader.cli.aws import Aws
from kie_uploader.cli.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, CliError
from kie_uploader.cli.output import redact

ROOMS = (records, moving, dlq, info, operating, setting_up)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: each room registers its commands; ``--json``, ``--stack``, ``--uploader`` and
    ``--region`` work before or after the command."""
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="kie-uploader",
        parents=[common],
        formatter_class=HelpFormatter,
        description="Operate a deployed kie-uploader stack: backfill, inspect and retry uploads to kie.ai.",
        epilog="AWS_ENDPOINT_URL points every call at a local stack (e.g. the demo's ministack).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for room in ROOMS:
        room.register(commands, common)
    return parser


def version() -> str:
    """The installed distribution's version: ``kie_uploader.__version__`` (``unknown`` in a bare checkout)."""
    import kie_uploader

    return kie_uploader.__version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage and the one-line error
        return int(exc.code) if isinstance(exc.code, int) else EXIT_ERROR
    args.json = getattr(args, "json", False)
    stack = getattr(args, "stack", None) or os.environ.get("KIE_UPLOADER_STACK") or DEFAULT_STACK
    try:
        aws = Aws(
            getattr(args, "region", None),
            stack,
            profile=getattr(args, "profile", None),
            uploader=getattr(args, "uploader", None),
        )
        code = int(args.handler(aws, args))
        sys.stdout.flush()  # inside the try: a reader that went away is a broken pipe handled here
        return code
    except CliError as exc:
        print(f"kie-uploader: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        print(f"kie-uploader: error: {redact(describe_aws_error(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("kie-uploader: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`kie-uploader list | head -1`): what it wanted was printed. Point stdout
        # at /dev/null so that the interpreter's last flush cannot fail again.
        _discard_stdout()
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("KIE_UPLOADER_DEBUG"):
            raise
        print(
            f"kie-uploader: internal error: {type(exc).__name__}: {redact(str(exc))} "
            "(KIE_UPLOADER_DEBUG=1 shows the traceback; please report it)",
            file=sys.stderr,
        )
        return EXIT_ERROR


def _discard_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file (captured in tests): nothing to flush later
        pass
