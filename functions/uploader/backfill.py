"""Lambda entry point ``uploader.backfill.handler``: the distributed backfill's child, keys → the work queue.

The backfill state machine (src/kie_uploader/cdk/backfill.py) reads the keys of a prefix (S3
``listObjectsV2``) or of a manifest with a Distributed Map and hands them to this function in batches
(``ItemBatcher``: ``{"Items": [{"bucket", "key", "etag"?, "size"?, "force"?}, ...]}``; one item alone,
``{"bucket", "key", ...}``, where the engine ignores ``ItemBatcher``, as ministack does). For each batch it
does what the local ``kie-uploader backfill`` does for a page of keys:

1. a key the stack does not watch (``WATCHED_OBJECTS``, the uploader's own rules, :mod:`uploader.watch`) is
   counted, never enqueued: kie.ai must never get it;
2. a key whose record is a live upload of the listed ETag (:func:`uploader.liveness.is_live`) is counted as
   already uploaded and not enqueued (unless ``force``): a new execution over the same prefix, after a run
   was stopped, re-sends nothing that was uploaded since;
3. the others go to the work queue as plain ``{"bucket", "key"}`` messages, ten per ``SendMessageBatch``.

It never calls kie.ai: the queue's consumer (``maxConcurrency`` invocations at most) does, so a backfill of
any size loads kie.ai exactly as S3 notifications do. An entry SQS refused is retried; a batch that still
has refused entries fails the child execution (the Map Run counts it; ``ToleratedFailurePercentage`` and a
redrive take it from there; what was already sent is harmless to send again: the uploader is idempotent).

Why a function and not the SQS ``SendMessageBatch`` SDK integration: the filter in (1) is the uploader's own
rule (a Choice state would be a second definition of "watched", and could not read the records for (2)),
one invocation handles a whole batch (100 keys: 10 SQS requests, 1 invocation) where the SDK integration
needs a state per 10 keys, and it runs the same on AWS and ministack (whose SQS SDK integration refuses
``SendMessageBatch``'s parameters).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from uploader import liveness, watch

#: SQS's maximum entries per SendMessageBatch.
SQS_BATCH = 10
#: DynamoDB's maximum keys per BatchGetItem.
DYNAMODB_BATCH_GET = 100
#: Attempts at an entry SQS refused (throttling, an internal error) before the child fails.
SEND_ATTEMPTS = 4


class BackfillError(Exception):
    """Some keys of the batch could not be enqueued (the child execution fails, and is redriven)."""


@dataclass(frozen=True)
class Item:
    bucket: str
    key: str
    etag: str | None = None
    size: int | None = None
    force: bool = False


@dataclass
class Outcome:
    """What one batch became: the child execution's result (written by ``ResultWriter`` on AWS)."""

    items: int = 0
    folders: int = 0
    not_watched: int = 0
    already_uploaded: int = 0
    enqueued: int = 0
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "items": self.items, "folders": self.folders, "notWatched": self.not_watched,
            "alreadyUploaded": self.already_uploaded, "enqueued": self.enqueued,
        }  # fmt: skip


def items_of(event: Mapping[str, Any]) -> list[Item]:
    """The batch's items: ``Items`` (an ``ItemBatcher``'s batch, its ``BatchInput`` merged into each) or the
    event itself (one item)."""
    raw = event.get("Items")
    batch_input = event.get("BatchInput") or {}
    entries: Iterable[Any] = raw if isinstance(raw, list) else [event]
    items = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise ValueError(f"not a backfill item: {entry!r}")
        merged = {**batch_input, **entry}
        bucket, key = merged.get("bucket"), merged.get("key")
        if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
            raise ValueError(f"a backfill item needs a bucket and a key: {dict(entry)!r}")
        size = merged.get("size")
        items.append(
            Item(
                bucket=bucket,
                key=key,
                etag=str(merged["etag"]) if merged.get("etag") else None,
                size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
                force=merged.get("force") in (True, "true"),
            )
        )
    return items


def message_body(item: Item) -> str:
    """The plain message (the CLI's ``backfill`` sends the same): ``force`` with a fresh ``requestId``."""
    body: dict[str, Any] = {"bucket": item.bucket, "key": item.key}
    if item.force:
        body.update(force=True, requestId=str(uuid.uuid4()))
    return json.dumps(body, ensure_ascii=False)


class Enqueuer:
    """Filters a batch of keys and sends the rest to the work queue (clients given: tests pass local ones)."""

    def __init__(
        self, *, sqs: Any, dynamodb: Any, queue_url: str, table_name: str, rules: watch.Watched | None
    ) -> None:
        self.sqs, self.dynamodb = sqs, dynamodb
        self.queue_url, self.table_name, self.rules = queue_url, table_name, rules

    def handle(self, items: Sequence[Item], now: float | None = None) -> Outcome:
        outcome = Outcome(items=len(items))
        todo = []
        for item in items:
            if item.key.endswith("/") and item.size == 0:
                outcome.folders += 1  # a console "folder" marker, not an object
            elif self.rules is None or not self.rules.watches(item.bucket, item.key):
                outcome.not_watched += 1
            else:
                todo.append(item)
        unforced = [item for item in todo if not item.force]
        if unforced:
            records = self._records([f"s3://{i.bucket}/{i.key}" for i in unforced])
            moment = time.time() if now is None else now
            live = {
                item
                for item in unforced
                if liveness.is_live(records.get(f"s3://{item.bucket}/{item.key}"), moment, etag=item.etag)
            }
            outcome.already_uploaded = len(live)
            todo = [item for item in todo if item not in live]
        for start in range(0, len(todo), SQS_BATCH):
            self._send(todo[start : start + SQS_BATCH], outcome)
        if outcome.errors:
            errors = "; ".join(outcome.errors[:3])
            raise BackfillError(f"{len(todo) - outcome.enqueued} of {len(todo)} keys not enqueued: {errors}")
        return outcome

    def _records(self, pks: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The records' ``status``, ``expiresAt``, ``etag`` by pk (BatchGetItem, unprocessed keys retried)."""
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(pks))
        for start in range(0, len(unique), DYNAMODB_BATCH_GET):
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [{"pk": {"S": pk}} for pk in unique[start : start + DYNAMODB_BATCH_GET]],
                    "ProjectionExpression": "pk, #s, expiresAt, etag",
                    "ExpressionAttributeNames": {"#s": "status"},
                }
            }
            delay = 0.05
            while request:
                answer = self.dynamodb.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table_name, []):
                    record = {name: _plain(value) for name, value in item.items()}
                    found[str(record["pk"])] = record
                request = answer.get("UnprocessedKeys") or {}
                if request:
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
        return found

    def _send(self, chunk: Sequence[Item], outcome: Outcome) -> None:
        entries = {str(i): message_body(item) for i, item in enumerate(chunk)}
        for attempt in range(SEND_ATTEMPTS):
            answer = self.sqs.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": key, "MessageBody": body} for key, body in entries.items()],
            )
            for sent in answer.get("Successful", []):
                entries.pop(str(sent["Id"]), None)
                outcome.enqueued += 1
            failed = answer.get("Failed", [])
            if not entries:
                return
            if any(f.get("SenderFault") for f in failed) or attempt == SEND_ATTEMPTS - 1:
                outcome.errors += [f"{f.get('Code')}: {f.get('Message', '')}" for f in failed]
                return
            time.sleep(0.1 * 2**attempt)


def _plain(value: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value of the projected attributes (S or N) as a plain value."""
    if "S" in value:
        return value["S"]
    if "N" in value:
        return float(value["N"])
    return None


# --- the Lambda entry point ----------------------------------------------------------------------------

_CLIENT_VARIABLES = ("QUEUE_URL", "TABLE_NAME", watch.VARIABLE, "AWS_ENDPOINT_URL", "AWS_REGION")
_enqueuer: tuple[tuple[str | None, ...], Enqueuer] | None = None


def _get_enqueuer() -> Enqueuer:
    """The container's enqueuer, built once; rebuilt only if the environment changed (tests do that)."""
    global _enqueuer
    fingerprint = tuple(os.environ.get(name) for name in _CLIENT_VARIABLES)
    if _enqueuer is None or _enqueuer[0] != fingerprint:
        import boto3
        from botocore.config import Config

        config = Config(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 5})
        region = os.environ.get("AWS_REGION") or None
        _enqueuer = (
            fingerprint,
            Enqueuer(
                sqs=boto3.client("sqs", region_name=region, config=config),
                dynamodb=boto3.client("dynamodb", region_name=region, config=config),
                queue_url=os.environ["QUEUE_URL"],
                table_name=os.environ["TABLE_NAME"],
                rules=watch.from_env(os.environ),
            ),
        )
    return _enqueuer[1]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Enqueue the batch's watched keys that have no live upload; the counts are the child's result."""
    outcome = _get_enqueuer().handle(items_of(event))
    print(json.dumps({"message": "backfill batch", **outcome.to_json()}))
    return outcome.to_json()
