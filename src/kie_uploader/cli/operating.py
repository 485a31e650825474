"""``set-key`` and ``forget``: what an operator changes on a running stack.

- ``set-key``: the kie.ai key from stdin (or a prompt without echo) into the stack's secret, as
  ``{"apiKey": ...}``; the key is never printed, and an AWS error that would echo it is redacted.
- ``forget``: the records older versions wrote for mistakes (SKIPPED; FAILED of a bucket the stack does
  not serve), removed with conditional deletes.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from kie_uploader.aws_errors import describe_aws_error
from kie_uploader.cli import console
from kie_uploader.cli.args import S3Uri, examples, s3_uri
from kie_uploader.cli.aws import Aws
from kie_uploader.cli.errors import EXIT_INTERRUPTED, EXIT_OK, CliError, interrupt_after
from kie_uploader.cli.output import Progress, emit, plural, redact, say
from kie_uploader.cli.store import bucket_key, int_or_none, queue_attributes, scan_pages

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


#: Answers meaning "this SQS has no message move tasks" (ministack: InvalidAction): use the loop instead.
REDACTED = "[redacted]"


_ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException"})


# --- set-key ---


def read_key(stdin: Any = None, *, prompt: Any = getpass.getpass) -> str:
    """The key from stdin when it is not a terminal (one line, its newline dropped), else from a prompt
    without echo. Validated as the function validates it; no error message contains it."""
    stdin = sys.stdin if stdin is None else stdin
    if console.is_terminal(stdin):
        try:
            text = prompt("kie.ai API key (not echoed): ")
        except EOFError:  # Ctrl-D at the prompt
            text = ""
        except KeyboardInterrupt:  # Ctrl-C: the prompt's line ends here, "interrupted" goes below it
            print(file=sys.stderr, flush=True)
            raise
    else:
        text = stdin.read() if stdin is not None else ""
    return validate_key(text)


def validate_key(text: str) -> str:
    body = text[:-1] if text.endswith("\n") else text
    body = body[:-1] if body.endswith("\r") else body
    if not body.strip():
        raise CliError("no key: give the kie.ai API key on stdin (one line) or at the prompt")
    if "\n" in body or "\r" in body:
        lines = len(body.splitlines())
        raise CliError(f"the key must be one line, got {lines} lines (nothing was written)")
    key = body.strip()
    if any(c.isspace() for c in key):
        raise CliError("the key contains whitespace: kie.ai keys have none (nothing was written)")
    if len(key) > 4096:
        raise CliError(f"the key is {len(key)} characters long: that is no kie.ai key (nothing was written)")
    return key


def _without(text: str, secret: str) -> str:
    return redact(text.replace(secret, REDACTED)) if secret else redact(text)


def put_key(aws: Aws, secret_arn: str, key: str) -> tuple[str | None, bool]:
    """Put ``{"apiKey": key}`` into the secret, keeping any other field of a JSON secret; returns the new
    version's id and whether the value changed (the same key again writes no new version)."""
    client = aws.client("secretsmanager")
    value: dict[str, Any] = {}
    try:
        current = client.get_secret_value(SecretId=secret_arn).get("SecretString") or ""
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code not in ("ResourceNotFoundException", *_ACCESS_DENIED):  # no value yet / may write only
            raise CliError(_without(describe_aws_error(exc), key)) from None
        current = ""
    except BotoCoreError as exc:
        raise CliError(_without(describe_aws_error(exc), key)) from None
    if current.strip().startswith("{"):
        try:
            parsed = json.loads(current)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            if parsed.get("apiKey") == key:
                return None, False
            value = parsed
    elif current.strip() == key:
        return None, False
    value["apiKey"] = key
    try:
        answer = client.put_secret_value(SecretId=secret_arn, SecretString=json.dumps(value))
    except (ClientError, BotoCoreError) as exc:
        raise CliError(_without(describe_aws_error(exc), key)) from None
    return answer.get("VersionId"), True


def cmd_set_key(aws: Aws, args: argparse.Namespace) -> int:
    """Read the kie.ai key and put it into the stack's secret; then say what to do next."""
    secret_arn = aws.stack.outputs.get("SecretArn")
    if not secret_arn:
        raise CliError(f"uploader {aws.stack.uploader} of stack {aws.stack_name} names no secret")
    key = read_key()
    version, changed = put_key(aws, secret_arn, key)
    del key
    queue = queue_attributes(
        aws, aws.stack.queue_url, ["ApproximateNumberOfMessagesNotVisible", "VisibilityTimeout"]
    )
    dlq = queue_attributes(aws, aws.stack.dead_letter_queue_url, ["ApproximateNumberOfMessages"])
    in_flight = int(queue.get("ApproximateNumberOfMessagesNotVisible", 0) or 0)
    visibility = int_or_none(queue.get("VisibilityTimeout"))
    dead = int(dlq.get("ApproximateNumberOfMessages", 0) or 0)
    steps = next_steps(dead_letter=dead, in_flight=in_flight, visibility_timeout=visibility)
    summary = {
        "secretArn": secret_arn, "versionId": version, "changed": changed, "deadLetterMessages": dead,
        "inFlight": in_flight, "visibilityTimeoutSeconds": visibility, "next": steps,
    }  # fmt: skip
    if emit(args, summary):
        return EXIT_OK
    if changed:
        words = [
            f"put the kie.ai key into {secret_arn} (version {version or 'new'})",
            "the function reads it again within its SECRET_CACHE_SECONDS (300 s unless set), and at once "
            "after kie.ai refuses the key (401, 402, 403)",
        ]
    else:
        words = [f"{secret_arn} already holds this key: nothing written"]
    say(args, "\n".join([*words, "next:", *(f"  {step}" for step in steps)]))
    return EXIT_OK


def next_steps(*, dead_letter: int, in_flight: int, visibility_timeout: int | None) -> list[str]:
    """What recovers the objects that failed with the old key (the README's "Which command when")."""
    wait = f"{visibility_timeout} s" if visibility_timeout is not None else "the queue's visibility timeout"
    steps = [
        "kie-uploader retry-failed   # re-enqueues every FAILED record with a retryable error (a bad key is "
        "one): this is what recovers them",
    ]
    if dead_letter:
        steps.append(
            f"kie-uploader redrive        # the dead-letter queue holds {plural(dead_letter, 'message')} "
            "(`kie-uploader dlq peek` shows them)"
        )
    else:
        steps.append("(the dead-letter queue is empty: no redrive needed)")
    if in_flight:
        come_back = "comes back by itself" if in_flight == 1 else "come back by themselves"
        steps.append(
            f"{plural(in_flight, 'message')} in flight on the queue {come_back} within {wait} (its "
            "visibility timeout); retry-failed does not wait for them"
        )
    steps.append(
        "kie-uploader backfill s3://bucket/prefix   # objects from before the stack, first deploy only"
    )
    return steps


# --- forget: records only older versions wrote ---


#: ``forget``: conditional deletes in flight at once.
FORGET_WORKERS = 8


FORGET_BATCH = 25


@dataclass
class Forget:
    """What ``forget`` found and did: SKIPPED records (a key without an object), FAILED records of buckets
    the stack does not serve; removed, or kept because they changed since they were read."""

    dry_run: bool
    skipped: int = 0
    unserved: int = 0
    unserved_buckets: set[str] = field(default_factory=set)
    removed: int = 0
    kept: int = 0

    @property
    def selected(self) -> int:
        return self.skipped + self.unserved

    def kinds(self) -> str:
        parts = []
        if self.skipped:
            parts.append(f"{self.skipped} SKIPPED (keys without an object)")
        if self.unserved:
            names = sorted(self.unserved_buckets)
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            parts.append(f"{self.unserved} FAILED of buckets the stack does not serve ({shown})")
        return "; ".join(parts)

    def summary(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run, "selected": self.selected, "skipped": self.skipped,
            "unservedFailed": self.unserved, "unservedBuckets": sorted(self.unserved_buckets),
            "removed": self.removed, "kept": self.kept,
        }  # fmt: skip

    def sentence(self) -> str:
        if not self.selected:
            return "no record to forget"
        if self.dry_run:
            return (
                f"would forget {plural(self.selected, 'record')}: {self.kinds()}; nothing removed: run it "
                "again with --yes to remove them"
            )
        kept = f"; {self.kept} kept (changed since they were read)" if self.kept else ""
        return f"forgot {plural(self.removed, 'record')} of {self.selected}: {self.kinds()}{kept}"


def _forget_one(dynamodb: DynamoDBClient, table: str, pk: str, status: str) -> bool:
    """Delete the record if it still has ``status`` and no claim (no delivery is working on it); False
    when it changed meanwhile (it is kept)."""
    try:
        dynamodb.delete_item(
            TableName=table,
            Key={"pk": {"S": pk}},
            ConditionExpression="#s = :s AND attribute_not_exists(claimOwner)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": status}},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


def forget(
    aws: Aws,
    *,
    skipped: bool,
    unserved: bool,
    prefix: S3Uri | None = None,
    dry_run: bool = True,
    progress: Progress | None = None,
    done: Forget | None = None,
) -> Forget:
    """Find (and unless ``dry_run`` remove) the records only older versions wrote for mistakes: SKIPPED
    (``skipped``: a key that never had an object) and FAILED of a bucket the stack does not serve
    (``unserved``: "not in ALLOWED_BUCKETS"). Each delete is conditional: a record whose status changed, or
    that a delivery claimed, since the scan read it is kept. One scan, filtered by status."""
    done = Forget(dry_run) if done is None else done
    statuses = (["SKIPPED"] if skipped else []) + (["FAILED"] if unserved else [])
    served = aws.watching if unserved else None
    dynamodb, table = aws.dynamodb, aws.stack.table_name
    with ThreadPoolExecutor(max_workers=FORGET_WORKERS) as pool:
        for page in scan_pages(aws, status=statuses, prefix=prefix):
            chosen: list[tuple[str, str]] = []
            for record in page:
                if record.get("claimOwner"):
                    continue  # a delivery is working on it: it will change
                status, bucket = str(record.get("status")), bucket_key(record)[0]
                if status == "SKIPPED" and skipped:
                    done.skipped += 1
                elif status == "FAILED" and served is not None and not served.rules.serves(bucket):
                    done.unserved += 1
                    done.unserved_buckets.add(bucket)
                else:
                    continue
                chosen.append((str(record["pk"]), status))
            if dry_run:
                continue
            for start in range(0, len(chosen), FORGET_BATCH):
                batch = chosen[start : start + FORGET_BATCH]
                with interrupt_after():  # a batch deleted is counted before Ctrl-C stops the loop
                    results = list(pool.map(lambda one: _forget_one(dynamodb, table, *one), batch))
                    done.removed += sum(results)
                    done.kept += len(results) - sum(results)
                if progress is not None:
                    progress.update(f"{done.removed:,} removed, {done.kept:,} kept", completed=done.removed)
    return done


def cmd_forget(aws: Aws, args: argparse.Namespace) -> int:
    """Remove (with --yes; else only count) the records older versions wrote for mistakes."""
    if not args.status and not args.unserved:
        raise CliError("say which records to forget: --status SKIPPED, --unserved, or both")
    progress = Progress("forget", unit="removed")
    done = Forget(dry_run=not args.yes)
    try:
        forget(
            aws,
            skipped=args.status == "SKIPPED",
            unserved=args.unserved,
            prefix=args.prefix_uri,
            dry_run=not args.yes,
            progress=progress,
            done=done,
        )
    except KeyboardInterrupt:
        progress.done()
        raise CliError(
            f"forget interrupted: {plural(done.removed, 'record')} removed, {done.kept} kept; run it again "
            "to go on",
            EXIT_INTERRUPTED,
        ) from None
    finally:
        progress.done()
    if not emit(args, done.summary()):
        say(args, done.sentence())
    return EXIT_OK


# --- the parser -----------------------------------------------------------------------------------


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register ``set-key`` and ``forget``."""
    set_key = commands.add_parser(
        "set-key",
        parents=[common],
        help="put the kie.ai API key into the stack's secret (stdin, or a prompt without echo)",
        **examples(
            "kie-uploader set-key                      # prompts, no echo",
            'printf %s "$KIE_API_KEY" | kie-uploader set-key',
            "kie-uploader set-key < kie-key.txt",
            description="Reads the key from stdin when it is not a terminal (one line), else prompts "
            'without echo, and puts {"apiKey": KEY} into the uploader\'s secret (its secretArn). '
            "The key is never printed. Then it says what recovers the objects that failed meanwhile.",
        ),
    )
    set_key.set_defaults(handler=cmd_set_key)

    forget_ = commands.add_parser(
        "forget",
        parents=[common],
        help="remove records older versions wrote for mistakes (SKIPPED; FAILED of unserved buckets)",
        **examples(
            "kie-uploader forget --status SKIPPED               # says how many; removes nothing",
            "kie-uploader forget --status SKIPPED --yes",
            "kie-uploader forget --status SKIPPED s3://my-bucket/photos/ --yes",
            "kie-uploader forget --unserved --yes              # FAILED records of buckets not served",
            description="Older versions wrote a record for a mistake: SKIPPED for a key without an object "
            '(`url s3://bucket/typo`), FAILED ("not in ALLOWED_BUCKETS") for a bucket the stack does not '
            "serve. This version writes none; forget removes those: it says how many it found, and removes "
            "them with --yes, each with a conditional delete (a record that changed since, or that a "
            "delivery is working on, is kept).",
        ),
    )
    forget_.add_argument(
        "prefix_uri", nargs="?", type=s3_uri(False), metavar="s3://bucket/prefix", default=None,
        help="only records of objects under this prefix",
    )  # fmt: skip
    forget_.add_argument(
        "--status", type=str.upper, choices=("SKIPPED",), help="the SKIPPED records (keys without an object)"
    )
    forget_.add_argument(
        "--unserved",
        action="store_true",
        help='the FAILED records of buckets the stack does not serve ("not in ALLOWED_BUCKETS")',
    )
    forget_.add_argument("--yes", action="store_true", help="remove them (without it: only say how many)")
    forget_.set_defaults(handler=cmd_forget)
