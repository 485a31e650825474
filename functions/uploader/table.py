"""DynamoDB adapter: one record per object, every write guarded by a condition.

Delivery is at-least-once and unordered; the record must still end in the newest state. Each write
carries what the writer knows, and DynamoDB refuses it when the stored record knows something newer.
A refused write (``ConditionalCheckFailed``) means *superseded*: not an error, not retried.

Order of knowledge
------------------
``updatedAt`` is when the function read the state it records (before the HeadObject call or, for a
removal, when the event was handled), as fixed-width ISO UTC with milliseconds, so strings compare in
time order. ``sequencer`` is stored in canonical form (:mod:`uploader.sequencer`), so string order is
S3's order.

1. **Event with a sequencer** (S3 notification, EventBridge) may write when there is no record, or the
   stored sequencer is ``<=`` its own (equal: the same event again, e.g. after a transient failure), or
   the stored record has no sequencer (written from a plain message) and was read before the event
   happened (``updatedAt < eventTime``): S3 is strongly consistent, so a state read before the event
   cannot describe a newer version than the event's.
2. **Plain message** (backfill, retry-failed, other producers: no sequencer) describes the object as
   HeadObject returned it at ``observedAt``. It may write when there is no record, or the record is for
   the same version (``versionId`` and ``etag`` equal: the sequencer, if any, is kept), or the record was
   read before ``observedAt`` (``updatedAt < observedAt``: our reading is newer knowledge; the stored
   sequencer described another version and is removed). A record of a *different* version read after
   our HeadObject is never overwritten: its event may be newer than our reading, and if it is not, the
   newer version's own event repairs the record.
3. **Failures never hide an upload**: a ``FAILED``/``SKIPPED`` write is refused while a live ``UPLOADED``
   record of the same version (or of an unknown version) exists — e.g. a slow duplicate delivery.
4. **Removal of one specific version** (``ObjectRemoved:Delete`` / "Permanently Deleted" with a version
   id) marks the record ``DELETED`` only when the record is of that version (or there is none): deleting
   an old version leaves the current one alone.

``attempts`` is incremented (``ADD``) by the kie.ai calls of each delivery.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from uploader import sequencer as seq
from uploader.errors import ConfigurationError, TransientError
from uploader.models import ErrorKind, ObjectHead, ObjectRef, Status

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from uploader.kie import KieUpload

_UPLOAD_ATTRIBUTES = (
    "downloadUrl",
    "uploadedAt",
    "expiresAt",
    "filePath",
    "fileName",
    "fileSize",
    "mimeType",
    "uploadPath",
)
_ERROR_ATTRIBUTES = ("error", "errorKind", "retryable")
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


# --- reading and pre-checks (the same rules as the conditions, to save calls) ---------------------------


def same_version(record: Mapping[str, Any], version_id: str | None, etag: str | None) -> bool:
    """Whether the record describes this object version (every identity part that is known must match)."""
    if version_id is None and etag is None:
        return False
    return (version_id is None or record.get("versionId") == version_id) and (
        etag is None or record.get("etag") == etag
    )


def is_live_upload(
    record: Mapping[str, Any] | None, version_id: str | None, etag: str | None, now: int
) -> bool:
    """A live UPLOADED record of this version exists: kie.ai need not be called again."""
    return (
        record is not None
        and record.get("status") == Status.UPLOADED
        and same_version(record, version_id, etag)
        and int(record.get("expiresAt", 0)) > now
    )


def stored_is_newer(
    record: Mapping[str, Any] | None, ref: ObjectRef, observed_at: str, head: ObjectHead | None = None
) -> bool:
    """The record knows a newer state than this event or message (rules 1 and 2 of the module)."""
    if record is None:
        return False
    stored_seq, updated_at = record.get("sequencer"), str(record.get("updatedAt", ""))
    if ref.sequencer is not None:
        if isinstance(stored_seq, str):
            return seq.compare(stored_seq, ref.sequencer) > 0
        return updated_at >= (ref.event_time or observed_at)
    if head is not None and same_version(record, head.version_id, head.etag):
        return False
    return updated_at >= observed_at


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


class RecordTable:
    """Reads and conditionally writes records. Returns ``False`` from a write that was superseded."""

    def __init__(self, table_name: str, *, client: DynamoDBClient | None = None) -> None:
        self._table = table_name
        self._client: Any = client or _new_client()

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

    def put_uploaded(self, *args: Any, **kwargs: Any) -> bool:
        """Record ``UPLOADED`` (arguments of :meth:`uploaded_request`); ``False`` when superseded."""
        return self._write(self.uploaded_request(*args, **kwargs))

    def put_failed(self, *args: Any, **kwargs: Any) -> bool:
        """Record ``FAILED``/``SKIPPED`` (arguments of :meth:`failed_request`); ``False`` when superseded."""
        return self._write(self.failed_request(*args, **kwargs))

    def put_deleted(self, ref: ObjectRef, *, observed_at: str) -> bool:
        """Record ``DELETED``; ``False`` when superseded."""
        return self._write(self.deleted_request(ref, observed_at=observed_at))

    def uploaded_request(
        self,
        ref: ObjectRef,
        head: ObjectHead,
        upload: Upload,
        *,
        observed_at: str,
        attempts: int,
        plain_same_version: bool = False,
    ) -> dict[str, Any]:
        """The UpdateItem request recording ``UPLOADED`` with kie.ai's answer."""
        update = self._common(ref, Status.UPLOADED, observed_at, attempts, head)
        result = upload.result
        update.set("downloadUrl", result.download_url)
        update.set("uploadedAt", result.uploaded_at or observed_at)
        update.set("expiresAt", upload.expires_at)
        update.set("uploadPath", upload.upload_path)
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
        update.remove(*_ERROR_ATTRIBUTES)
        condition = self._order(update, ref, observed_at, head, plain_same_version)
        return self._request(update, ref, condition)

    def failed_request(
        self,
        ref: ObjectRef,
        status: Status,
        *,
        error: str,
        kind: ErrorKind,
        observed_at: str,
        attempts: int,
        now: int,
        head: ObjectHead | None = None,
        plain_same_version: bool = False,
    ) -> dict[str, Any]:
        """The request recording ``FAILED`` or ``SKIPPED`` with a short reason; never hides a live upload
        (rule 3)."""
        update = self._common(ref, status, observed_at, attempts, head)
        update.set("error", error)
        update.set("errorKind", kind.value)
        update.set("retryable", kind is not ErrorKind.PERMANENT)
        update.remove(*_UPLOAD_ATTRIBUTES)
        condition = self._order(update, ref, observed_at, head, plain_same_version)
        version_id = head.version_id if head else ref.version_id
        etag = head.etag if head else ref.etag
        live = [
            f"{update.name('status')} = {update.value(Status.UPLOADED.value)}",
            f"{update.name('expiresAt')} > {update.value(now)}",
        ]
        if version_id is not None:
            live.append(f"{update.name('versionId')} = {update.value(version_id)}")
        if etag is not None:
            live.append(f"{update.name('etag')} = {update.value(etag)}")
        condition = f"({condition}) AND NOT ({' AND '.join(live)})"
        return self._request(update, ref, condition)

    def deleted_request(self, ref: ObjectRef, *, observed_at: str) -> dict[str, Any]:
        """The request recording ``DELETED`` (the ``downloadUrl`` is removed; the rest stays as history)."""
        update = _Update()
        update.set("bucket", ref.bucket)
        update.set("key", ref.key)
        update.set("status", Status.DELETED.value)
        update.set("updatedAt", observed_at)
        update.set("versionId", ref.version_id or "null", if_not_exists=True)
        update.add("attempts", 0)
        update.remove("downloadUrl", *_ERROR_ATTRIBUTES)
        condition = self._order(update, ref, observed_at, None, False)
        if ref.permanent_delete and ref.version_id:
            condition = (
                f"({condition}) AND (attribute_not_exists(pk) OR "
                f"{update.name('versionId')} = {update.value(ref.version_id)})"
            )
        return self._request(update, ref, condition)

    # --- internals ---

    def _common(
        self, ref: ObjectRef, status: Status, observed_at: str, attempts: int, head: ObjectHead | None
    ) -> _Update:
        update = _Update()
        update.set("bucket", ref.bucket)
        update.set("key", ref.key)
        update.set("status", status.value)
        update.set("updatedAt", observed_at)
        update.set("versionId", head.version_id if head else ref.version_id)
        update.set("etag", head.etag if head else ref.etag)
        update.set("size", head.size if head else ref.size)
        update.add("attempts", attempts)
        return update

    def _order(
        self,
        update: _Update,
        ref: ObjectRef,
        observed_at: str,
        head: ObjectHead | None,
        plain_same_version: bool,
    ) -> str:
        """The ordering condition (rules 1 and 2), and the sequencer change that goes with it."""
        if ref.sequencer is not None:
            seq_name, updated = update.name("sequencer"), update.name("updatedAt")
            update.set("sequencer", ref.sequencer)
            return (
                f"attribute_not_exists(pk) OR {seq_name} <= {update.value(ref.sequencer)} OR "
                f"(attribute_not_exists({seq_name}) AND "
                f"{updated} < {update.value(ref.event_time or observed_at)})"
            )
        if plain_same_version and head is not None:
            return (
                f"{update.name('versionId')} = {update.value(head.version_id)} AND "
                f"{update.name('etag')} = {update.value(head.etag)}"
            )
        update.remove("sequencer")
        return f"attribute_not_exists(pk) OR {update.name('updatedAt')} < {update.value(observed_at)}"

    def _request(self, update: _Update, ref: ObjectRef, condition: str) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "Key": {"pk": {"S": ref.pk}},
            "UpdateExpression": update.expression(),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": update.names,
            "ExpressionAttributeValues": update.values,
        }

    def _write(self, request: dict[str, Any]) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.update_item(**request)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise _classify(exc) from exc
        except BotoCoreError as exc:
            raise TransientError(f"DynamoDB unreachable ({type(exc).__name__})") from exc
        return True


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
