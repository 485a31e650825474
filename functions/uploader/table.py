"""DynamoDB adapter: one record per object, every change of it guarded by the record's revision.

The record describes the object as S3 holds it (see docs/architecture.md, "The record's invariant"). The
processor never trusts what an event says about the object: it reads S3, and this module makes sure a
reading that went stale while it was used can never be written.

Revisions and claims
--------------------
``rev`` counts the writes of a record (absent = 0). Every write is conditional on the revision the writer
read and increments it, so two writers of one record are linearised: the loser's condition fails and it
reads again (``False`` from a write means exactly that, never an error).

A writer that will read S3 first **claims** the record (``claimOwner``, ``claimUntil``: a lease in epoch
milliseconds of the functions' clocks, never compared with S3's) in a conditional write, and reads S3 only
after its claim landed. Its final write is conditional on the claimed revision. So a write always carries
an S3 reading made after every earlier write of the record. A delivery that finds someone else's live claim
**bumps** the revision instead: the holder's final write then fails, and the holder reads S3 again before
it can write. The lease only decides when a claim may be taken over (a crashed holder); correctness never
depends on it.

``sequencer`` is the greatest S3 sequencer among the events whose processing wrote the record: an event
with a sequencer at most that one is already reflected in the record (that write read S3 after the event's
change), so it costs one read.

``purgeAt`` is the record's TTL: it outlives kie.ai's file by ``RECORD_RETENTION_SECONDS``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from uploader import liveness
from uploader import sequencer as seq
from uploader.errors import ConfigurationError, TransientError
from uploader.models import ErrorKind, EventKind, ObjectHead, ObjectRef, Status, Transfer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from uploader.kie import KieUpload

#: Attributes of an upload, removed from a record that no longer describes one.
UPLOAD_ATTRIBUTES = (
    "downloadUrl",
    "uploadedAt",
    "expiresAt",
    "filePath",
    "fileName",
    "fileSize",
    "mimeType",
    "uploadPath",
    "transfer",
)
ERROR_ATTRIBUTES = ("error", "errorKind", "retryable")
CLAIM_ATTRIBUTES = ("claimOwner", "claimUntil", "claimWaits")
#: Set by the first claim of a record (never changed): a time-ordered id of this life of the record, so
#: that a record re-created after a purge or a removal never repeats an earlier life's (generation, rev).
GENERATION = "generation"
#: Set by a claim or bump made for an S3 event: an event was seen for the key, so a key found gone is
#: ``DELETED`` (an object existed), never "never existed".
EVENT_SEEN = "eventSeen"
#: The sparse index of live uploads by bucket and expiry: what is due for a refresh, without a scan.
EXPIRY_INDEX = "byExpiry"
#: Its partition key: the bucket, present only while the record is ``UPLOADED``.
EXPIRY_INDEX_KEY = "liveBucket"
_CONFIGURATION_CODES = {
    "ResourceNotFoundException",
    "AccessDeniedException",
    "ValidationException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
}


@dataclass(frozen=True)
class Upload:
    """What an UPLOADED record stores besides the object's identity."""

    result: KieUpload
    upload_path: str
    expires_at: int
    #: How the bytes reached kie.ai (the record's ``transfer``: url or stream).
    transfer: Transfer = Transfer.URL


@dataclass(frozen=True)
class Settle:
    """The state a claim holder writes: the status and what it knows of the object."""

    status: Status
    head: ObjectHead | None = None
    upload: Upload | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    sequencer: str | None = None
    request_id: str | None = None
    #: A retryable failure stays in the expiry index with this ``expiresAt`` (epoch s), so that the
    #: keep-alive round retries it: no delivery may be left to (a refresh, a resolve, a DLQ'd message).
    due_at: int | None = None


# --- reading the record --------------------------------------------------------------------------------


def revision(record: Mapping[str, Any] | None) -> int:
    """The record's revision (0 for no record, or one written before revisions existed)."""
    return int(record.get("rev", 0)) if record else 0


def has_status(record: Mapping[str, Any] | None) -> bool:
    """Whether the record has been settled at least once (a first claim creates a record without status)."""
    return bool(record and record.get("status"))


def claimed_by_other(record: Mapping[str, Any] | None, owner: str, now_ms: int) -> bool:
    """Another delivery holds a live claim on the record."""
    if not record or not record.get("claimOwner") or record.get("claimOwner") == owner:
        return False
    return int(record.get("claimUntil", 0)) > now_ms


def covers_sequencer(record: Mapping[str, Any] | None, sequencer: str | None) -> bool:
    """The record was written after reading S3 for an event at least as new as this one, and its state
    is settled (a retryable failure is not: the event's delivery is what retries it)."""
    if not record or (record.get("status") == Status.FAILED and record.get("retryable") is not False):
        return False
    stored = record.get("sequencer")
    return isinstance(stored, str) and sequencer is not None and seq.compare(stored, sequencer) >= 0


def newest_sequencer(record: Mapping[str, Any] | None, sequencer: str | None) -> str | None:
    """The greater of the stored sequencer and this event's."""
    stored = record.get("sequencer") if record else None
    if not isinstance(stored, str):
        return sequencer
    if sequencer is None or seq.compare(stored, sequencer) >= 0:
        return stored
    return sequencer


def same_version(record: Mapping[str, Any], head: ObjectHead) -> bool:
    """The record describes this exact object version (version id and ETag)."""
    return record.get("versionId") == head.version_id and record.get("etag") == head.etag


def is_live_upload(
    record: Mapping[str, Any] | None, head: ObjectHead | None, now: int, min_valid: int = 0
) -> bool:
    """A live ``UPLOADED`` record of this version (of any version when S3 was not read: ``head`` None),
    with at least ``min_valid`` seconds left (:func:`uploader.liveness.is_live`, the rule the CLI shares)."""
    if head is None:
        return liveness.is_live(record, now, min_valid)
    return liveness.is_live(record, now, min_valid, version_id=head.version_id, etag=head.etag)


def is_settled_refusal(record: Mapping[str, Any] | None, head: ObjectHead) -> bool:
    """kie.ai refused this very version for good (a permanent ``FAILED``): calling again would not help."""
    return (
        record is not None
        and record.get("status") == Status.FAILED
        and record.get("errorKind") == ErrorKind.PERMANENT
        and same_version(record, head)
    )


# --- writing --------------------------------------------------------------------------------------------


@dataclass
class _Update:
    """An UpdateItem under construction (placeholders are generated, values typed)."""

    sets: list[str] = field(default_factory=list)
    removes: list[str] = field(default_factory=list)
    adds: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def name(self, attribute: str) -> str:
        placeholder = f"#{attribute}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = _to_av(value)
        return placeholder

    def set(self, attribute: str, value: Any, *, if_not_exists: bool = False) -> None:
        if value is None:
            return
        name = self.name(attribute)
        if if_not_exists:
            self.sets.append(f"{name} = if_not_exists({name}, {self.value(value)})")
        else:
            self.sets.append(f"{name} = {self.value(value)}")

    def remove(self, *attributes: str) -> None:
        self.removes.extend(self.name(a) for a in attributes)

    def add(self, attribute: str, amount: int) -> None:
        self.adds.append(f"{self.name(attribute)} {self.value(amount)}")

    def expression(self) -> str:
        parts = []
        if self.sets:
            parts.append("SET " + ", ".join(self.sets))
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        if self.adds:
            parts.append("ADD " + ", ".join(self.adds))
        return " ".join(parts)

    def at_revision(self, rev: int) -> str:
        """Condition: the record is still at ``rev`` (0: no record, or one without a revision); and the
        update moves it to ``rev + 1``."""
        name = self.name("rev")
        self.set("rev", rev + 1)
        if rev == 0:
            return f"attribute_not_exists({name})"
        return f"{name} = {self.value(rev)}"


class RecordTable:
    """Reads and conditionally writes records. A write returns ``False`` when the revision moved on."""

    def __init__(
        self, table_name: str, *, client: DynamoDBClient | None = None, retention_seconds: int = 2_592_000
    ) -> None:
        self._table = table_name
        self._client: Any = client or _new_client()
        self._retention = retention_seconds

    def get(self, pk: str) -> dict[str, Any] | None:
        """The record (strongly consistent read), as plain Python values, or ``None``."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._client.get_item(TableName=self._table, Key={"pk": {"S": pk}}, ConsistentRead=True)
        except ClientError as exc:
            raise _classify(exc) from exc
        except BotoCoreError as exc:
            raise TransientError(f"DynamoDB unreachable ({type(exc).__name__})") from exc
        item = answer.get("Item")
        return {k: _from_av(v) for k, v in item.items()} if item else None

    def claim(
        self, ref: ObjectRef, rev: int, *, owner: str, until_ms: int, now: int, waits: bool = False
    ) -> bool:
        """Take the record at ``rev`` for ``owner`` until ``until_ms``; creates it when there is none.
        ``waits``: the holder answers a synchronous request (no redelivery if it dies), so others wait."""
        return self._write(self.claim_request(ref, rev, owner=owner, until_ms=until_ms, now=now, waits=waits))

    def bump(self, ref: ObjectRef, rev: int) -> bool:
        """Move the revision on, so that the holder of the claim reads S3 again before it writes."""
        return self._write(self.bump_request(ref, rev))

    def settle(
        self, ref: ObjectRef, rev: int, state: Settle, *, observed_at: str, now: int, attempts: int
    ) -> bool:
        """Write the claim holder's state at the claimed ``rev`` and release the claim."""
        return self._write(
            self.settle_request(ref, rev, state, observed_at=observed_at, now=now, attempts=attempts)
        )

    def release(self, ref: ObjectRef, rev: int, *, sequencer: str | None = None) -> bool:
        """Give the claim back without changing the record's state (but note a newer event's sequencer)."""
        update = _Update()
        update.set("sequencer", sequencer)
        update.remove(*CLAIM_ATTRIBUTES)
        return self._write(self._request(update, ref, update.at_revision(rev)))

    def due(
        self, bucket: str, *, until: int, pk_prefix: str, since: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """The records of ``bucket`` in the expiry index (live uploads, and retryable failures due at their
        ``expiresAt``) whose ``expiresAt`` is at most ``until`` (and over ``since``, when given), with a pk
        starting with ``pk_prefix``: a query of the sparse index, so the cost grows with what is due."""
        from botocore.exceptions import BotoCoreError, ClientError

        values = {":b": {"S": bucket}, ":t": {"N": str(until)}, ":p": {"S": pk_prefix}}
        condition = "#b = :b AND #e <= :t"
        if since is not None:
            condition = "#b = :b AND #e BETWEEN :s AND :t"
            values[":s"] = {"N": str(since + 1)}
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": EXPIRY_INDEX,
            "KeyConditionExpression": condition,
            "FilterExpression": "begins_with(#pk, :p)",
            "ExpressionAttributeNames": {"#b": EXPIRY_INDEX_KEY, "#e": "expiresAt", "#pk": "pk"},
            "ExpressionAttributeValues": values,
        }
        try:
            while True:
                answer = self._client.query(**request)
                for item in answer.get("Items", []):
                    yield {k: _from_av(v) for k, v in item.items()}
                if "LastEvaluatedKey" not in answer:
                    return
                request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        except ClientError as exc:
            raise _classify(exc) from exc
        except BotoCoreError as exc:
            raise TransientError(f"DynamoDB unreachable ({type(exc).__name__})") from exc

    # --- requests (public for the tests that run them against DynamoDB Local) ---

    def claim_request(
        self, ref: ObjectRef, rev: int, *, owner: str, until_ms: int, now: int, waits: bool = False
    ) -> dict[str, Any]:
        update = _Update()
        update.set("bucket", ref.bucket)
        update.set("key", ref.key)
        update.set("claimOwner", owner)
        update.set("claimUntil", until_ms)
        if waits:
            update.set("claimWaits", True)
        else:
            update.remove("claimWaits")
        update.set("purgeAt", now + self._retention, if_not_exists=True)
        update.set(GENERATION, new_generation(until_ms), if_not_exists=True)
        if _proves_an_object(ref):
            update.set(EVENT_SEEN, True)
        return self._request(update, ref, update.at_revision(rev))

    def bump_request(self, ref: ObjectRef, rev: int) -> dict[str, Any]:
        update = _Update()
        if _proves_an_object(ref):
            update.set(EVENT_SEEN, True)
        return self._request(update, ref, update.at_revision(rev))

    def settle_request(
        self, ref: ObjectRef, rev: int, state: Settle, *, observed_at: str, now: int, attempts: int
    ) -> dict[str, Any]:
        """The UpdateItem that writes ``state``; identity from the head when S3 answered."""
        update = _Update()
        self._identity(update, ref, state.status, observed_at)
        head = state.head
        if head is not None:
            update.set("versionId", head.version_id)
            update.set("etag", head.etag)
            update.set("size", head.size)
        update.set("sequencer", state.sequencer)
        update.set("requestId", state.request_id)
        update.add("attempts", attempts)
        update.remove(*CLAIM_ATTRIBUTES)
        if state.upload is not None:
            self._upload(update, state.upload, observed_at)
            update.set(EXPIRY_INDEX_KEY, ref.bucket)
            update.remove(*ERROR_ATTRIBUTES)
        elif state.due_at is not None:
            # A retryable failure: no URL, but still in the expiry index, due at ``due_at``.
            update.set("purgeAt", now + self._retention)
            update.set("expiresAt", state.due_at)
            update.set(EXPIRY_INDEX_KEY, ref.bucket)
            update.remove(*(a for a in UPLOAD_ATTRIBUTES if a != "expiresAt"))
            self._error(update, state)
        else:
            update.set("purgeAt", now + self._retention)
            update.remove(*UPLOAD_ATTRIBUTES, EXPIRY_INDEX_KEY)
            self._error(update, state)
        return self._request(update, ref, update.at_revision(rev))

    def forget_request(self, ref: ObjectRef, rev: int) -> dict[str, Any]:
        """DeleteItem of a record this claim created for a key that turned out to have no object (and no
        event was ever seen for it): mistakes leave no records."""
        return {
            "TableName": self._table,
            "Key": {"pk": {"S": ref.pk}},
            # No status (this claim created it), or a SKIPPED record written by an older version.
            "ConditionExpression": (
                "#rev = :rev AND (attribute_not_exists(#status) OR #status = :skipped)"
                " AND attribute_not_exists(#seen)"
            ),
            "ExpressionAttributeNames": {"#rev": "rev", "#status": "status", "#seen": EVENT_SEEN},
            "ExpressionAttributeValues": {":rev": {"N": str(rev)}, ":skipped": {"S": Status.SKIPPED.value}},
        }

    def forget(self, ref: ObjectRef, rev: int) -> bool:
        """Remove the record created by the claim at ``rev`` (``False``: it moved on, nothing removed)."""
        return self._write(self.forget_request(ref, rev), operation="delete_item")

    # --- internals ---

    @staticmethod
    def _error(update: _Update, state: Settle) -> None:
        if state.error is not None and state.error_kind is not None:
            update.set("error", state.error)
            update.set("errorKind", state.error_kind.value)
            update.set("retryable", state.error_kind is not ErrorKind.PERMANENT)
        else:
            update.remove(*ERROR_ATTRIBUTES)

    def _identity(self, update: _Update, ref: ObjectRef, status: Status, observed_at: str) -> None:
        update.set("bucket", ref.bucket)
        update.set("key", ref.key)
        update.set("status", status.value)
        update.set("updatedAt", observed_at)

    def _upload(self, update: _Update, upload: Upload, observed_at: str) -> None:
        result = upload.result
        update.set("downloadUrl", result.download_url)
        update.set("uploadedAt", result.uploaded_at or observed_at)
        update.set("expiresAt", upload.expires_at)
        update.set("uploadPath", upload.upload_path)
        update.set("transfer", upload.transfer.value)
        update.set("purgeAt", upload.expires_at + self._retention)
        for attribute, value in (
            ("filePath", result.file_path),
            ("fileName", result.file_name),
            ("fileSize", result.file_size),
            ("mimeType", result.mime_type),
        ):
            if value is None:
                update.remove(attribute)
            else:
                update.set(attribute, value)

    def _request(self, update: _Update, ref: ObjectRef, condition: str | None) -> dict[str, Any]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": {"S": ref.pk}},
            "UpdateExpression": update.expression(),
            "ExpressionAttributeNames": update.names,
        }
        if update.values:
            request["ExpressionAttributeValues"] = update.values
        if condition is not None:
            request["ConditionExpression"] = condition
        return request

    def _write(self, request: dict[str, Any], operation: str = "update_item") -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            getattr(self._client, operation)(**request)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise _classify(exc) from exc
        except BotoCoreError as exc:
            raise TransientError(f"DynamoDB unreachable ({type(exc).__name__})") from exc
        return True


def new_generation(now_ms: int) -> str:
    """A time-ordered id of a record's life: epoch milliseconds (13 digits) and 8 random hex digits."""
    return f"{now_ms:013d}-{secrets.token_hex(4)}"


def _classify(exc: Any) -> Exception:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    if code in _CONFIGURATION_CODES:
        return ConfigurationError(f"DynamoDB refused the request: {code}")
    return TransientError(f"DynamoDB failed: {code or 'error'}")


def _to_av(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(value)}
    return {"S": str(value)}


def _from_av(value: Mapping[str, Any]) -> Any:
    if "S" in value:
        return value["S"]
    if "N" in value:
        number = value["N"]
        return int(number) if number.lstrip("-").isdigit() else float(number)
    if "BOOL" in value:
        return value["BOOL"]
    if "NULL" in value:
        return None
    return value


def _new_client() -> Any:
    import boto3

    # AWS_REGION is what Lambda (and the issue) names; boto3 alone only reads AWS_DEFAULT_REGION.
    return boto3.client("dynamodb", region_name=os.environ.get("AWS_REGION") or None)


def _proves_an_object(ref: ObjectRef) -> bool:
    """An S3 event that says an object was at the key: one of creation. A removal proves nothing: S3 puts a
    delete marker on a versioned key that never had an object (and notifies), and removing that marker is
    a removal too."""
    return ref.sequencer is not None and ref.kind is EventKind.CREATED
