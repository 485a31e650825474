"""The moving room: ``backfill``, ``retry-failed`` and ``redrive`` (objects and messages sent to the
queue again).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from kie_uploader import distributed
from kie_uploader.cli.args import S3Uri, examples, positive_int, s3_uri
from kie_uploader.cli.aws import Aws, Watching
from kie_uploader.cli.errors import EXIT_INTERRUPTED, EXIT_NO, EXIT_OK, CliError, interrupt_after
from kie_uploader.cli.output import Progress, emit, note, output_format, plural, say
from kie_uploader.cli.store import (
    SQS_BATCH,
    SendResult,
    batch_get_records,
    bucket_key,
    int_or_none,
    is_live_upload,
    message_body,
    queue_attributes,
    scan,
    send_messages,
)


def check_bucket(aws: Aws, uri: S3Uri) -> Watching:
    """The bucket exists, the stack serves it and watches keys under the prefix. The stack is read first:
    a wrong endpoint or stack is named for what it is, not as a missing bucket."""
    watching = aws.watching
    try:
        aws.s3.head_bucket(Bucket=uri.bucket)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            raise CliError(f"no such bucket: {uri.bucket}") from exc
        if code in ("403", "AccessDenied"):
            raise CliError(f"access denied to bucket {uri.bucket}") from exc
        raise
    watching.require_prefix(uri)
    return watching


@dataclass
class Backfill:
    """What a backfill did so far: objects listed (folder markers apart), not watched (outside the stack's
    prefix/suffix rules: never enqueued), already uploaded, enqueued, failed to send."""

    uri: S3Uri
    why_not_watched: str | None = None
    listed: int = 0
    not_watched: int = 0
    already_uploaded: int = 0
    folders: int = 0
    enqueued: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "uri": str(self.uri), "listed": self.listed, "notWatched": self.not_watched,
            "notWatchedReason": self.why_not_watched if self.not_watched else None,
            "alreadyUploaded": self.already_uploaded, "folders": self.folders, "enqueued": self.enqueued,
            "failed": self.failed, "errors": self.errors[:10],
        }  # fmt: skip

    def skipped(self) -> str:
        """``12 skipped as not watched (outside prefix incoming/), `` or nothing."""
        if not self.not_watched:
            return ""
        return f"{self.not_watched} skipped as not watched ({self.why_not_watched}), "

    def sentence(self) -> str:
        return (
            f"{self.uri}: {plural(self.listed, 'object')} listed, {self.skipped()}"
            f"{self.already_uploaded} already uploaded, {self.enqueued} enqueued, {self.failed} failed"
        )


def backfill(
    aws: Aws,
    uri: S3Uri,
    *,
    force: bool = False,
    progress: Progress | None = None,
    done: Backfill | None = None,
) -> Backfill:
    """Enqueue a plain message for every watched object under the prefix that has no live upload of its
    current bytes (every watched one with ``force``); keys outside the stack's rules are counted, never
    enqueued. ``done`` is filled as it goes: after Ctrl-C or an AWS error it says what was done."""
    done = Backfill(uri) if done is None else done
    watching = check_bucket(aws, uri)
    stack = aws.stack
    done.why_not_watched = f"outside {watching.keys_of(uri.bucket)}"
    paginator = aws.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=uri.bucket, Prefix=uri.key):
        objects = []
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/") and obj.get("Size", 0) == 0:
                done.folders += 1  # a console "folder" marker, not an object to upload
                continue
            done.listed += 1
            if not watching.watches(uri.bucket, obj["Key"]):
                done.not_watched += 1  # the function would refuse it: kie.ai must never get it
                continue
            objects.append(obj)
        if not force and objects:
            records = batch_get_records(
                aws.dynamodb, stack.table_name, [f"s3://{uri.bucket}/{o['Key']}" for o in objects]
            )
            todo = []
            for obj in objects:
                record = records.get(f"s3://{uri.bucket}/{obj['Key']}")
                if is_live_upload(record, etag=obj.get("ETag")):
                    done.already_uploaded += 1
                else:
                    todo.append(obj)
            objects = todo
        for start in range(0, len(objects), SQS_BATCH):
            chunk = objects[start : start + SQS_BATCH]
            with interrupt_after():  # a batch SQS took is counted before Ctrl-C stops the loop
                sent = send_messages(
                    aws.sqs, stack.queue_url, [message_body(uri.bucket, o["Key"], force=force) for o in chunk]
                )
                done.enqueued += sent.sent
                done.failed += sent.failed
                done.errors += sent.errors
            _backfill_progress(progress, done)
        _backfill_progress(progress, done)  # a page with nothing to send moves it too
    return done


#: Above this many objects listed, the local backfill suggests ``--distributed`` (README "Distributed
#: backfill", ``make bench ARGS="--only distributed"``): 4.9 minutes of local backfill at a measured 337
#: objects/s with a 20 ms round trip per request, where a distributed run goes on without the terminal,
#: resumes with a redrive and lists the bucket inside AWS.
DISTRIBUTED_SUGGESTION_OBJECTS = 100_000


def cmd_backfill(aws: Aws, args: argparse.Namespace) -> int:
    """Enqueue every watched object under the prefix that has no live UPLOADED record (all with --force);
    ``--distributed`` / ``--manifest`` / ``--status`` / ``--redrive``: the state machine's runs."""
    if args.status or args.redrive or args.distributed or args.manifest:
        return cmd_distributed_backfill(aws, args)
    if args.uri is None:
        raise CliError("backfill: give s3://bucket/prefix (or --status/--redrive EXECUTION_ARN)")
    uri: S3Uri = args.uri
    progress = Progress("backfill", unit="handled")
    done = Backfill(uri)
    try:
        backfill(aws, uri, force=args.force, progress=progress, done=done)
    except KeyboardInterrupt:
        progress.done()
        raise CliError(
            f"backfill interrupted: {done.enqueued} of {done.listed} objects listed so far were enqueued "
            f"({done.skipped()}{done.already_uploaded} already uploaded); run it again to go on: enqueued "
            "objects that have been handled since are skipped",
            EXIT_INTERRUPTED,
        ) from None
    except (ClientError, BotoCoreError, CliError):
        progress.done()
        if done.why_not_watched is not None:  # it was listing: say what it did (a refusal did nothing)
            note(f"backfill stopped after enqueuing {done.enqueued} objects")
        raise
    progress.done()
    if not emit(args, done.summary()):
        say(args, done.sentence())
        for error in dict.fromkeys(done.errors):
            note(f"send failed: {error}")
    if done.listed > DISTRIBUTED_SUGGESTION_OBJECTS:
        note(
            f"kie-uploader: {done.listed:,} objects listed (over {DISTRIBUTED_SUGGESTION_OBJECTS:,}): "
            f"`kie-uploader backfill {uri} --distributed` lists and enqueues them inside AWS, without this "
            "terminal, and resumes with --redrive"
        )
    return EXIT_NO if done.failed else EXIT_OK


# --- the distributed backfill (a Step Functions Distributed Map) ------------------------------------


#: How often a run's progress is read (DescribeMapRun), by default.
RUN_POLL_SECONDS = 2.0


def _state_machine(aws: Aws) -> str:
    arn = aws.stack.backfill_state_machine_arn
    if not arn:
        raise CliError(
            f"uploader {aws.stack.uploader} of stack {aws.stack.stack_name} has no distributed backfill: "
            "deploy it with backfill=True (the repository's stack has it), or run the local backfill "
            "without --distributed"
        )
    return arn


def _listing_prefix(watching: Watching, uri: S3Uri) -> str:
    """The prefix the state machine lists: the URI's, narrowed to the watched prefix when it is shorter
    (``s3://b/`` of a stack watching ``incoming/`` lists ``incoming/``: its role may list nothing else)."""
    for rule in watching.rules.rules_of(uri.bucket):
        if rule.prefix.startswith(uri.key):
            return rule.prefix
    return uri.key


def _copy_manifest(aws: Aws, manifest: S3Uri) -> tuple[str, str]:
    """Copy the manifest under ``manifests/`` of the backfill bucket (the only manifests the state machine
    may read); its key there and its ``source`` (``csv`` or ``json``, from its name)."""
    name = manifest.key.rsplit("/", 1)[-1].lower()
    if name.endswith(".csv"):
        source = "csv"
    elif name.endswith(".json"):
        source = "json"
    else:
        raise CliError(
            f"--manifest {manifest}: expected a .csv (a header row with a Key column) or a .json (an array "
            'of {"Key": ...}) manifest'
        )
    if name == "manifest.json":
        try:
            head = aws.s3.get_object(Bucket=manifest.bucket, Key=manifest.key, Range="bytes=0-4095")
            start = head["Body"].read().decode("utf-8", "replace")
        except ClientError as exc:
            raise CliError(f"--manifest {manifest}: cannot read it: {exc}") from None
        if '"fileSchema"' in start:
            raise CliError(
                f"--manifest {manifest} is an S3 Inventory manifest, which the distributed backfill does "
                "not read yet: give one of its CSV files with a Key header row, or list the prefix"
            )
    bucket = aws.stack.backfill_bucket_name
    key = f"manifests/{distributed.run_name()}.{source}"
    try:
        aws.s3.copy({"Bucket": manifest.bucket, "Key": manifest.key}, bucket, key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            raise CliError(f"--manifest {manifest}: no such object") from None
        raise
    return key, source


def start_distributed(aws: Aws, args: argparse.Namespace) -> str:
    """Start a run over the URI's prefix (or the manifest's keys in the URI's bucket); its execution ARN."""
    state_machine = _state_machine(aws)
    if args.uri is None:
        raise CliError("backfill --distributed: give s3://bucket/prefix (the bucket of the manifest's keys)")
    uri: S3Uri = args.uri
    if args.manifest is not None:
        check_bucket(aws, S3Uri(uri.bucket))
        key, source = _copy_manifest(aws, args.manifest)
        run = distributed.RunInput(bucket=uri.bucket, source=source, manifest_key=key, force=args.force)
    else:
        watching = check_bucket(aws, uri)
        run = distributed.RunInput(bucket=uri.bucket, prefix=_listing_prefix(watching, uri), force=args.force)
    return distributed.start(aws.sfn, state_machine, run)


def watch_run(aws: Aws, args: argparse.Namespace, execution_arn: str) -> distributed.RunState:
    """Follow the run until it ends: a progress bar on a terminal, a JSON line per reading with
    ``--output jsonl``; Ctrl-C stops watching (the run goes on, ``--status`` reattaches)."""
    jsonl = output_format(args) == "jsonl"
    progress = Progress("backfill", total=1, enabled=False if jsonl else None)
    interval = float(args.interval)
    try:
        while True:
            try:
                state = distributed.describe(aws.sfn, execution_arn)
            except distributed.RunError as exc:
                raise CliError(str(exc)) from None
            if jsonl:
                print(json.dumps(state.to_json(), separators=(",", ":")), flush=True)
            else:
                items = state.items
                progress.update(
                    f"{items.get('succeeded', 0):,} succeeded, {items.get('failed', 0):,} failed, "
                    f"{items.get('pending', 0) + items.get('running', 0):,} pending ({state.status.lower()})",
                    completed=state.done,
                    total=max(items.get("total", 0), 1),
                )
            if state.final:
                return state
            time.sleep(interval)
    except KeyboardInterrupt:
        progress.done()
        raise CliError(
            f"stopped watching; the run goes on: kie-uploader backfill --status {execution_arn}",
            EXIT_INTERRUPTED,
        ) from None
    finally:
        progress.done()


def cmd_distributed_backfill(aws: Aws, args: argparse.Namespace) -> int:
    """``--distributed`` / ``--manifest``: start a run; ``--status``: reattach; ``--redrive``: resume a failed
    or stopped run. Then watch it to its end (unless ``--no-wait``)."""
    _state_machine(aws)
    if args.redrive:
        try:
            redriven = distributed.redrive(aws.sfn, args.redrive)
        except distributed.RunError as exc:
            raise CliError(str(exc)) from None
        execution_arn = redriven.execution_arn
        if redriven.method == "restart":
            note(
                f"kie-uploader: {redriven.reason}: started a new run with the same input instead "
                f"({execution_arn}); it skips every object uploaded since, and an object sent twice is "
                "uploaded once (the uploader is idempotent)"
            )
        else:
            note(f"kie-uploader: redriving {execution_arn}: only what did not succeed runs again")
    elif args.status:
        execution_arn = args.status
    else:
        execution_arn = start_distributed(aws, args)
        note(f"kie-uploader: started {execution_arn}")
    if args.no_wait:
        state = distributed.describe(aws.sfn, execution_arn)
    else:
        state = watch_run(aws, args, execution_arn)
    summary = state.to_json()
    if output_format(args) == "jsonl":
        pass  # every reading was a line already; the last one is the summary
    elif not emit(args, summary):
        items = state.items
        say(
            args,
            f"backfill run {state.status}: {items.get('succeeded', 0):,} of {items.get('total', 0):,} "
            "objects handled (enqueued, or skipped as not watched or already uploaded), "
            f"{items.get('failed', 0):,} failed, {items.get('pending', 0) + items.get('running', 0):,} "
            f"pending ({execution_arn})",
        )
        if state.error:
            note(f"kie-uploader: {state.error}")
        if state.status in distributed.REDRIVABLE:
            note(f"kie-uploader: resume it: kie-uploader backfill --redrive {execution_arn}")
    if state.status == "SUCCEEDED" or (args.no_wait and not state.final):
        return EXIT_OK
    return EXIT_NO


def _backfill_progress(progress: Progress | None, done: Backfill) -> None:
    """The count (and rate) is of objects handled (enqueued, not watched, already uploaded or failed): no
    total is known while S3 lists; the text says how many were listed and what became of them."""
    if progress is None:
        return
    skipped = f"{done.not_watched:,} not watched, " if done.not_watched else ""
    progress.update(
        f"{done.listed:,} listed, {skipped}{done.enqueued:,} enqueued, "
        f"{done.already_uploaded:,} already uploaded, {done.failed:,} failed",
        completed=done.enqueued + done.not_watched + done.already_uploaded + done.failed,
    )


def cmd_retry_failed(aws: Aws, args: argparse.Namespace) -> int:
    """Enqueue the objects whose records are FAILED with a retryable error."""
    stack = aws.stack
    records = list(scan(aws, status="FAILED", prefix=args.prefix, retryable=True))
    result = SendResult()
    progress = Progress("retry-failed", total=len(records))
    try:
        for start in range(0, len(records), SQS_BATCH):
            chunk = records[start : start + SQS_BATCH]
            bodies = [message_body(*bucket_key(r)) for r in chunk]
            with interrupt_after():  # a batch SQS took is counted before Ctrl-C stops the loop
                sent = send_messages(aws.sqs, stack.queue_url, bodies)
                result.sent += sent.sent
                result.failed += sent.failed
                result.errors += sent.errors
            progress.update(f"{result.sent:,} enqueued", completed=result.sent + result.failed)
    except KeyboardInterrupt:
        progress.done()
        raise CliError(
            f"retry-failed interrupted: {result.sent} of {len(records)} retryable records enqueued",
            EXIT_INTERRUPTED,
        ) from None
    progress.done()
    if not emit(args, {"retryable": len(records), "enqueued": result.sent, "failed": result.failed}):
        say(
            args,
            f"{plural(len(records), 'retryable FAILED record')}: "
            f"{result.sent} enqueued, {result.failed} failed",
        )
        for error in dict.fromkeys(result.errors):
            note(f"send failed: {error}")
    return EXIT_NO if result.failed else EXIT_OK


# --- redrive ---


#: ``redrive``: how often a message move task is asked for its progress.
MOVE_TASK_POLL_SECONDS = 2.0


_UNSUPPORTED_CODES = frozenset(
    {
        "InvalidAction",
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        "UnknownOperation",
        "UnknownOperationException",
        "NotImplemented",
        "InvalidParameterValue",  # an older SQS that takes the action for a malformed one
    }
)


_ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException"})


_MOVE_TASK_DONE = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


@dataclass
class Moved:
    moved: int = 0
    failed: int = 0
    method: str = "loop"
    errors: list[str] = field(default_factory=list)
    task_handle: str | None = None
    status: str | None = None


def _queue_arn(aws: Aws, url: str) -> str:
    return queue_attributes(aws, url, ["QueueArn"])["QueueArn"]


def _unsupported(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(error.get("Code", "")) in _UNSUPPORTED_CODES or status == 501


def move_task(aws: Aws, *, poll_seconds: float = MOVE_TASK_POLL_SECONDS) -> Moved | None:
    """Redrive with SQS's message move task (DLQ → queue), followed to its end; ``None`` when this SQS has
    no such API (ministack: InvalidAction) or the caller may not use it: the caller falls back to the loop.
    A task already running from the DLQ is followed instead of starting another (SQS allows one)."""
    source = _queue_arn(aws, aws.stack.dead_letter_queue_url)
    destination = _queue_arn(aws, aws.stack.queue_url)
    try:
        running = [
            t for t in aws.sqs.list_message_move_tasks(SourceArn=source, MaxResults=1).get("Results", [])
            if t.get("Status") == "RUNNING"
        ]  # fmt: skip
        if running:
            handle = running[0]["TaskHandle"]
            note("kie-uploader: a message move task is already running from the DLQ: following it")
        else:
            handle = aws.sqs.start_message_move_task(SourceArn=source, DestinationArn=destination)[
                "TaskHandle"
            ]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if _unsupported(exc) or code in _ACCESS_DENIED:
            note(f"kie-uploader: no SQS message move task here ({code}): moving the messages in batches")
            return None
        raise
    progress = Progress("redrive")
    try:
        while True:
            tasks = aws.sqs.list_message_move_tasks(SourceArn=source, MaxResults=10).get("Results", [])
            task = next((t for t in tasks if t.get("TaskHandle") == handle), None)
            if task is not None:
                moved = int(task.get("ApproximateNumberOfMessagesMoved") or 0)
                status = str(task.get("Status"))
                progress.update(
                    f"{moved} of {task.get('ApproximateNumberOfMessagesToMove', '?')} moved ({status})"
                )
                if status in _MOVE_TASK_DONE:
                    result = Moved(moved=moved, method="move-task", task_handle=handle, status=status)
                    if status != "COMPLETED":
                        reason = task.get("FailureReason") or status.lower()
                        result.errors.append(f"the move task ended {status}: {reason}")
                        to_move = int_or_none(task.get("ApproximateNumberOfMessagesToMove"))
                        result.failed = max(0, (to_move or moved) - moved)
                    return result
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        progress.done()
        note(
            "kie-uploader: the move task goes on in SQS; to stop it: "
            f"aws sqs cancel-message-move-task --task-handle {handle}"
        )
        raise
    finally:
        progress.done()


def move_loop(aws: Aws, maximum: int | None) -> Moved:
    """Move messages one batch at a time: receive from the DLQ, send to the queue, delete what was sent."""
    result = Moved()
    progress = Progress("redrive")
    try:
        while maximum is None or result.moved + result.failed < maximum:
            wanted = SQS_BATCH if maximum is None else min(SQS_BATCH, maximum - result.moved - result.failed)
            with interrupt_after():  # a batch sent is deleted from the DLQ and counted before Ctrl-C stops
                if not _move_batch(aws, wanted, result):
                    break
            progress.update(f"{result.moved} moved, {result.failed} failed")
    except KeyboardInterrupt:
        progress.done()
        raise CliError(
            f"redrive interrupted: {plural(result.moved, 'message')} moved to the queue, "
            f"{result.failed} failed; the rest is still in the dead-letter queue",
            EXIT_INTERRUPTED,
        ) from None
    progress.done()
    return result


def _move_batch(aws: Aws, wanted: int, result: Moved) -> bool:
    """Receive up to ``wanted`` DLQ messages, send them to the queue, delete from the DLQ what was sent;
    counted in ``result``. False when the DLQ gave nothing."""
    stack = aws.stack
    response = aws.sqs.receive_message(
        QueueUrl=stack.dead_letter_queue_url,
        MaxNumberOfMessages=wanted,
        WaitTimeSeconds=1,
        VisibilityTimeout=60,
        MessageAttributeNames=["All"],
    )
    messages = response.get("Messages", [])
    if not messages:
        return False
    entries = []
    for i, message in enumerate(messages):
        entry: dict[str, Any] = {"Id": str(i), "MessageBody": message["Body"]}
        if message.get("MessageAttributes"):
            entry["MessageAttributes"] = message["MessageAttributes"]
        entries.append(entry)
    sent = aws.sqs.send_message_batch(QueueUrl=stack.queue_url, Entries=entries)
    done = {e["Id"] for e in sent.get("Successful", [])}
    for failure in sent.get("Failed", []):
        result.errors.append(f"send failed: {failure.get('Code')}: {failure.get('Message', '')}")
    result.failed += len(messages) - len(done)
    # Delete only what reached the queue: a failed send stays in the DLQ (visible again later).
    if done:
        deleted = aws.sqs.delete_message_batch(
            QueueUrl=stack.dead_letter_queue_url,
            Entries=[{"Id": i, "ReceiptHandle": messages[int(i)]["ReceiptHandle"]} for i in sorted(done)],
        )
        for failure in deleted.get("Failed", []):  # on the queue now, but also still in the DLQ
            result.errors.append(
                f"sent but not deleted from the DLQ (it will be redriven again): {failure.get('Code')}"
            )
    result.moved += len(done)
    return True


def cmd_redrive(aws: Aws, args: argparse.Namespace) -> int:
    """Move the dead-letter queue's messages back to the queue: SQS's message move task where SQS has it
    (and no ``--max``: the task has a rate, not a count), else receive, send, then delete."""
    result = move_task(aws) if args.max is None else None
    if result is None:
        result = move_loop(aws, args.max)
    shown: dict[str, Any] = {"moved": result.moved, "failed": result.failed, "method": result.method}
    shown["errors"] = result.errors[:10]
    if result.task_handle:
        shown.update(taskHandle=result.task_handle, taskStatus=result.status)
    if not emit(args, shown):
        how = " (SQS message move task)" if result.method == "move-task" else ""
        say(
            args,
            f"moved {plural(result.moved, 'message')} from the dead-letter queue to the queue{how}"
            + (f", {result.failed} failed (left in the dead-letter queue)" if result.failed else ""),
        )
        for error in dict.fromkeys(result.errors):
            note(error)
    return EXIT_NO if result.failed or result.errors else EXIT_OK


# --- the parser -----------------------------------------------------------------------------------


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register ``backfill``, ``retry-failed`` and ``redrive``."""
    backfill = commands.add_parser(
        "backfill",
        parents=[common],
        help="enqueue existing objects under a prefix",
        **examples(
            "kie-uploader backfill s3://my-bucket/            # every object without a live upload",
            "kie-uploader backfill s3://my-bucket/photos/2025/",
            "kie-uploader backfill s3://my-bucket/big.mov --force   # upload again, even if live",
            "kie-uploader backfill s3://my-bucket/photos/ --distributed   # a Step Functions run",
            "kie-uploader backfill s3://my-bucket/ --manifest s3://lists/keys.csv",
            "kie-uploader backfill --status arn:aws:states:...:execution:...   # reattach",
            "kie-uploader backfill --redrive arn:aws:states:...:execution:...  # resume a stopped run",
            description="Lists the objects under the prefix and enqueues a plain message for each one the "
            "stack watches (its prefix/suffix) that has no live upload of its current bytes (all of them "
            "with --force); the others are counted as not watched, never enqueued. Run it again after an "
            "interruption: what was handled since is skipped.",
        ),
    )
    backfill.add_argument("uri", type=s3_uri(False), metavar="s3://bucket/prefix", nargs="?")
    backfill.add_argument(
        "--force",
        action="store_true",
        help="also enqueue objects already uploaded: each message asks for a new upload (force, requestId)",
    )
    backfill.add_argument(
        "--distributed",
        action="store_true",
        help="list and enqueue inside AWS: a run of the stack's backfill state machine (a Distributed Map), "
        "watched until it ends; Ctrl-C stops watching, not the run",
    )
    backfill.add_argument(
        "--manifest",
        type=s3_uri(True),
        metavar="s3://bucket/manifest.csv",
        help="with the distributed backfill: the keys (of the URI's bucket) from a CSV manifest with a Key "
        'header, or a JSON array of {"Key": ...}, instead of listing',
    )
    backfill.add_argument(
        "--status", metavar="EXECUTION_ARN", help="reattach to a distributed run: its progress until it ends"
    )
    backfill.add_argument(
        "--redrive",
        metavar="EXECUTION_ARN",
        help="resume a failed or stopped distributed run (RedriveExecution: only what did not succeed)",
    )
    backfill.add_argument(
        "--interval",
        type=float,
        default=RUN_POLL_SECONDS,
        metavar="SECONDS",
        help=f"seconds between progress readings of a distributed run (default {RUN_POLL_SECONDS:g})",
    )
    backfill.add_argument(
        "--no-wait", action="store_true", help="start (or redrive) a distributed run and return at once"
    )
    backfill.set_defaults(handler=cmd_backfill)

    retry = commands.add_parser(
        "retry-failed",
        parents=[common],
        help="enqueue objects that failed retryably",
        **examples(
            "kie-uploader retry-failed                      # after fixing the key: kie-uploader set-key",
            "kie-uploader retry-failed --prefix s3://my-bucket/photos/",
            description="Enqueues a plain message for each record FAILED with a retryable error (kie.ai "
            "down, a bad key, no credits). Permanent failures stay: `backfill --force` sends those.",
        ),
    )
    retry.add_argument(
        "--prefix",
        type=s3_uri(False),
        metavar="s3://bucket/prefix",
        help="only objects under this prefix",
    )
    retry.set_defaults(handler=cmd_retry_failed)

    redrive = commands.add_parser(
        "redrive",
        parents=[common],
        help="move dead-letter messages back to the queue",
        **examples(
            "kie-uploader dlq peek && kie-uploader redrive",
            "kie-uploader redrive --max 10",
            description="Moves the dead-letter queue's messages back to the queue with SQS's message move "
            "task where SQS has it, else (and with --max) one batch at a time: receive, send, delete. "
            "Prints only what was really moved.",
        ),
    )
    redrive.add_argument(
        "--max",
        type=positive_int,
        default=None,
        help="move at most this many messages (one batch at a time)",
    )
    redrive.set_defaults(handler=cmd_redrive)
