"""``dlq peek``: the dead-letter messages, received with a short visibility timeout and made visible again
at once (nothing is moved or consumed), decoded (:mod:`kie_uploader.cli.messages`), and joined with their
objects' records. ``redrive`` (:mod:`kie_uploader.cli.moving`) moves them back.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kie_uploader.cli import console, formats
from kie_uploader.cli.args import examples, positive_int
from kie_uploader.cli.aws import Aws
from kie_uploader.cli.errors import EXIT_OK
from kie_uploader.cli.messages import decode_body
from kie_uploader.cli.output import format_duration, iso, note, output_format, plural, redact, say
from kie_uploader.cli.store import SQS_BATCH, batch_get_records, int_or_none, queue_attributes

#: ``dlq peek``: how long the peeked messages stay invisible at most, should this process die before it
#: makes them visible again; receiving stops well before (a message that came back would be seen twice).
PEEK_VISIBILITY_SECONDS = 30


PEEK_RECEIVE_SECONDS = 20.0


DEFAULT_PEEK = 10


MAX_PEEK = 1000


def _receive(aws: Aws, url: str, wanted: int) -> list[dict[str, Any]]:
    response = aws.sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=min(SQS_BATCH, wanted),
        WaitTimeSeconds=1,
        VisibilityTimeout=PEEK_VISIBILITY_SECONDS,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    return list(response.get("Messages", []))


def _release(aws: Aws, url: str, messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """Make the messages visible again now (ChangeMessageVisibilityBatch to 0); returns the failures."""
    errors = []
    for start in range(0, len(messages), SQS_BATCH):
        chunk = messages[start : start + SQS_BATCH]
        answer = aws.sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(chunk)
            ],
        )
        errors += [f"{e.get('Code')}: {e.get('Message', '')}" for e in answer.get("Failed", [])]
    return errors


def peek(aws: Aws, url: str, maximum: int) -> list[dict[str, Any]]:
    """Up to ``maximum`` messages of the queue, received and then at once made visible again (also when
    this fails half-way). A message is shown once even if SQS hands it out twice."""
    held: list[dict[str, Any]] = []
    seen: set[str] = set()
    started = time.monotonic()
    try:
        while len(seen) < maximum and time.monotonic() - started < PEEK_RECEIVE_SECONDS:
            messages = _receive(aws, url, maximum - len(seen))
            if not messages:
                break
            held += messages
            for message in messages:
                seen.add(message["MessageId"])
    finally:
        errors = _release(aws, url, held) if held else []
    if errors:
        note(
            f"kie-uploader: {len(errors)} messages stay invisible up to {PEEK_VISIBILITY_SECONDS} s more: "
            f"{errors[0]}"
        )
    unique: dict[str, dict[str, Any]] = {}
    for message in held:
        unique.setdefault(message["MessageId"], message)
    return list(unique.values())


def describe_messages(
    aws: Aws, messages: Sequence[Mapping[str, Any]], *, now: float | None = None
) -> list[dict[str, Any]]:
    """Each message decoded, with its age, its earlier receives and its objects' records."""
    now = time.time() if now is None else now
    decoded = [decode_body(str(m.get("Body", ""))) for m in messages]
    pks = [f"s3://{b}/{k}" for d in decoded for b, k, _ in d.objects if b and k]
    records = batch_get_records(aws.dynamodb, aws.stack.table_name, pks, projection=None) if pks else {}
    shown = []
    for message, body in zip(messages, decoded, strict=True):
        attributes = message.get("Attributes", {})
        sent = int_or_none(attributes.get("SentTimestamp"))
        receives = int_or_none(attributes.get("ApproximateReceiveCount"))
        note = body.note or _lambda_error(message.get("MessageAttributes", {}))
        objects = []
        for bucket, key, event in body.objects:
            record = records.get(f"s3://{bucket}/{key}")
            objects.append({
                "uri": f"s3://{bucket}/{key}", "bucket": bucket, "key": key, "event": event,
                "record": None if record is None else {
                    name: record.get(name)
                    for name in ("status", "errorKind", "error", "retryable", "updatedAt", "attempts")
                },
            })  # fmt: skip
        shown.append({
            "messageId": message.get("MessageId"),
            "sentAt": None if sent is None else iso(sent / 1000),
            "ageSeconds": None if sent is None else max(0, round(now - sent / 1000)),
            # SQS counts this peek's receive too: the receives before it.
            "earlierReceives": None if receives is None else max(0, receives - 1),
            "shape": body.shape,
            "objects": objects,
            "note": note,
            "problem": body.problem,
        })  # fmt: skip
    return shown


def _lambda_error(attributes: Mapping[str, Any]) -> str | None:
    """A Lambda dead-letter message's ``ErrorCode``/``ErrorMessage`` attributes (a failed direct call)."""
    message = attributes.get("ErrorMessage", {}).get("StringValue")
    code = attributes.get("ErrorCode", {}).get("StringValue")
    return ": ".join(str(p) for p in (code, message) if p) or None


def _why(obj: Mapping[str, Any] | None, entry: Mapping[str, Any]) -> str:
    record = obj.get("record") if obj else None
    parts = []
    if record and record.get("status") == "FAILED":
        retry = ", retryable" if record.get("retryable") else ""
        parts.append(f"[{record.get('errorKind') or '?'}{retry}] {record.get('error') or ''}".strip())
    elif record and record.get("status"):
        parts.append(f"the record is {record['status']} now")
    elif obj is not None and record and not record.get("status"):
        parts.append("in progress (no status yet)")
    elif obj is not None:
        parts.append("no record")
    if entry.get("note"):
        parts.append(str(entry["note"]))
    if entry.get("problem"):
        parts.append(f"unreadable: {entry['problem']}")
    return "; ".join(parts)


def cmd_dlq_peek(aws: Aws, args: argparse.Namespace) -> int:
    """Show the dead-letter messages, their objects and why they failed; nothing is moved or consumed."""
    url = aws.stack.dead_letter_queue_url
    depth = queue_attributes(aws, url, ["ApproximateNumberOfMessages"]).get("ApproximateNumberOfMessages")
    entries = describe_messages(aws, peek(aws, url, args.max))
    output = output_format(args)
    if output != "table":
        # TSV: one line per object (a message with two records is two lines); JSON: one item per message.
        stream = formats.Stream(output, redact=redact, tsv_fields=PEEK_TSV_FIELDS)
        stream.write(peek_tsv_rows(entries) if output == "tsv" else entries)
        stream.close()
        return EXIT_OK
    say(args, render_peek(entries, depth=int_or_none(depth)))
    return EXIT_OK


_SHAPES = {
    "plain": "a plain message",
    "s3-notification": "an S3 notification",
    "eventbridge": "an EventBridge event",
    "sqs-event": "an SQS event",
    "s3-test": "S3's test event",
}


PEEK_TSV_FIELDS = (
    "messageId", "sentAt", "ageSeconds", "earlierReceives", "shape", "uri", "event", "status", "errorKind",
    "retryable", "error", "note", "problem",
)  # fmt: skip


def peek_tsv_rows(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The peek's TSV lines: one per object (a message naming none: one line without an object)."""
    rows = []
    for entry in entries:
        message = {name: entry.get(name) for name in ("messageId", "sentAt", "ageSeconds", "earlierReceives")}
        message.update(shape=entry.get("shape"), note=entry.get("note"), problem=entry.get("problem"))
        for obj in entry["objects"] or [{}]:
            record = obj.get("record") or {}
            rows.append({
                **message, "uri": obj.get("uri"), "event": obj.get("event"), "status": record.get("status"),
                "errorKind": record.get("errorKind"), "retryable": record.get("retryable"),
                "error": record.get("error"),
            })  # fmt: skip
    return rows


def render_peek(entries: Sequence[Mapping[str, Any]], *, depth: int | None = None) -> console.Page:
    """One block per message: its id, age, earlier receives and shape, then a line per object (S3 URI,
    event, record status, why). Fitted to the terminal, an S3 URI too long for its line goes on a line of
    its own (cut in the middle only beyond the terminal's width), the rest wraps below it."""
    page = console.Page()
    for entry in entries:
        age = "age unknown" if entry["ageSeconds"] is None else f"{format_duration(entry['ageSeconds'])} old"
        receives = entry["earlierReceives"]
        received = "receives unknown" if receives is None else f"received {plural(receives, 'time')} before"
        shape = "/".join(_SHAPES.get(part, part) for part in str(entry["shape"]).split("/"))
        page.line(f"message {entry['messageId']}: {age}, {received}, {shape.replace('sns', 'SNS')}")
        for obj in entry["objects"]:
            status = (obj.get("record") or {}).get("status") or "-"
            page.item(obj["uri"], f"{obj['event']}  {status}  {_why(obj, entry)}".rstrip())
        if not entry["objects"]:
            page.line(f"  (no object)  {_why(None, entry)}".rstrip())
    about = f" of about {depth}" if depth is not None and depth > len(entries) else ""
    return page.line(
        f"{plural(len(entries), 'message')}{about} peeked; all left in the dead-letter queue, visible again"
    )



def _peek_max(text: str) -> int:
    value = positive_int(text)
    if value > MAX_PEEK:
        raise argparse.ArgumentTypeError(f"at most {MAX_PEEK} messages, got {value}")
    return value


# --- the parser -----------------------------------------------------------------------------------


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register ``dlq peek``."""
    dlq = commands.add_parser(
        "dlq",
        parents=[common],
        help="look into the dead-letter queue (dlq peek)",
        **examples("kie-uploader dlq peek --max 20"),
    )
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    peek_parser = dlq_commands.add_parser(
        "peek",
        parents=[common],
        help="show dead-letter messages, their objects and why they failed, without moving them",
        **examples(
            "kie-uploader dlq peek",
            "kie-uploader dlq peek --max 100 --json | jq -r '.[].objects[].uri'",
            description=f"Receives up to --max messages with a {PEEK_VISIBILITY_SECONDS} s visibility "
            "timeout and makes them visible again at once: nothing is moved or consumed (SQS counts the "
            "receive). Each message's objects are joined with their records (status, errorKind, error).",
        ),
    )
    peek_parser.add_argument(
        "--max",
        type=_peek_max,
        default=DEFAULT_PEEK,
        help=f"at most this many messages (default {DEFAULT_PEEK}, at most {MAX_PEEK})",
    )
    peek_parser.set_defaults(handler=cmd_dlq_peek)
