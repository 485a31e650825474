"""Model-based test of the record: Hypothesis generates histories of S3 changes, deliveries, requests, faults
and dead claim holders against the real local servers, and checks the record, every answer and every
published change after every step.

What a history is made of (one rule per kind of step; each rule draws *indices* and small enums, never
bodies, request ids or sequencers, so a history replays with the same shape although those differ):

* ``s3_change``: an S3 operation on one of eight targets (three keys in the unversioned bucket, three in
  the versioned one, a key outside ``WATCHED_OBJECTS``' prefix and a key in a bucket the function does not
  serve): put new bytes, the same bytes, the previous bytes back (A → B → A), two puts in one go, a
  too-large object, a delete (a delete marker when versioned), a delete and re-put, a delete of the
  *current* version, the removal of a current delete marker, the removal of a noncurrent version. Its real
  notification (ministack sends it to an SQS queue) is kept as a *note* for later deliveries.
* ``deliver`` / ``deliver_two_at_once``: notes (any subset, duplicated, shuffled) through one of four
  channels: an SQS event, a direct S3 invocation (the notification itself), an EventBridge "Object
  Created/Deleted" event invoked directly, or the same EventBridge event as an SQS body; optionally under
  one injected fault (below); two invocations in two containers at once.
* ``plain_message``: a plain message (sometimes forced, with a request id) while another invocation runs.
* ``resolve`` and ``refresh``: synchronous requests (``minValidSeconds`` 0 … 258000; a keep-alive round over
  the history's prefixes, with ``expiringWithinSeconds`` 0, 120 or 3600), possibly faulted.
* ``expire``: a record's ``expiresAt`` moved by hand into the past or into the next minute (kie.ai's
  emulator keeps its files; the function judges by ``expiresAt``), so refreshes and resolves cross expiry.
* ``s3_outage`` / ``kie_outage``: the situations issue 21's defects came from, as steps of their own: S3
  answering no HeadObject (every attempt) while the latest notifications are delivered; kie.ai failing
  every call for a keep-alive round or a resolve across a record's expiry.
* ``in_flight`` (two rules, so about twice per history): one delivery, message, resolve or refresh (often
  right after a change of its key, so that it has an upload to make) runs in a thread and is *held* at a
  drawn point
  — its first record read, its first S3 read, its claim (before it lands, or landed with the answer held
  back), its second S3 read, kie.ai's fetch, right after kie.ai's fetch, its result write (before it lands,
  or landed with the answer held back) — while the history goes on in the test's thread with 1 to 3
  interleaved actions on the same key: an S3 change, a change whose notification is delivered at once, an
  A → B → A flip whose B is delivered, the holder's lease running out, a delivery, a plain message, a
  resolve. Held points are proxy ``before``/``after`` hooks (tests/faultproxy.py) and the emulator's
  ``on_fetch``/``after_fetch`` hooks. A claim of a synchronous request that is held is a claim others wait
  for until its lease ends: the model lets that lease run out (by hand) before an interleaved delivery,
  instead of sleeping through it.
* ``message_overtaken``: a message about an uploaded key held at its first record or S3 read while the
  object is overwritten, that change delivered, and the old bytes put back (A → B → A), or changed again.
* ``fetched_while_overwritten``: on the unversioned bucket, a delivery held before kie.ai's fetch while
  the object is overwritten (B), held again right after the fetch while the first bytes are put back
  (A → B → A around kie.ai's GET: issue 21's defect 2); B's and A's notifications delivered later.
* ``dead_claim``: a claim holder killed right after its claim landed (``RecordTable.claim`` by hand, with a
  lease that is already over, ends within a second, or ends in three; a synchronous request's claim, or a
  delivery's whose message comes back after its lease); ``lease_runs_out``; ``redeliver_owed`` (messages
  that failed or whose holder died come back after the lease).
* ``purge``: a record removed by hand (its TTL), to be re-created later (a new life, a new generation).
* ``lose_note``: a notification lost to the DLQ for good (the operator's backfill replaces it).

Faults (``FAULTS``; none in a third of the invocations), with how many requests they hit (1, 2, 4 or 8:
botocore makes 4 attempts, so 4 and 8 are failures the function sees): S3 HeadObject 503 / SlowDown /
connection reset, kie.ai's fetch of the presigned URL (S3 GetObject) 503 / reset, DynamoDB GetItem and
UpdateItem throttling and 500, an UpdateItem that lands but whose answer is lost (botocore's retry then
fails its condition), and kie.ai answering 500, 429, 455, 400, a timeout, a trickled answer or a malformed
one (``KieEmulator.script``).

The properties, checked after every step:

* **published events**: the table's DynamoDB stream (ministack's, ``NEW_AND_OLD_IMAGES``) is read and each
  record fed to ``uploader.publisher.change_of``: a change is published for exactly the writes that change
  the status, the object version, the ``downloadUrl`` or ``expiresAt`` (nothing for a claim, bump, release
  or removal), every ``eventId`` is new (across all histories), every write moves ``rev`` by exactly one
  (rule 2), every ``UPLOADED`` image names a version that existed and kie.ai holds exactly its bytes (MD5 =
  ETag), a ``DELETED`` image appears only for a key that was deleted, and no image is written for an
  object the stack does not watch;
* **a nudge is enough**: for a key whose last change's event, or a message whose S3 reads all came after
  the last change, was acknowledged, the record now describes S3's current state (the invariant's
  argument in docs/architecture.md), unless a dead holder's claim is still on it;
* **claims**: no claim is left on a record but a dead holder's (or one whose release a DynamoDB fault
  defeated);
* **answers**: every ``downloadUrl`` a resolve returns is fetched at once and serves bytes S3 held during
  the request, valid for ``minValidSeconds``; an unwatched object is ``NOT_WATCHED`` without a URL.

At the end of a history (teardown) the leases run out, every message still owed comes back (notes never
acknowledged, failed messages, dead holders'), a backfill message is sent for keys with a lost note, a
purged record or a claim left, and a keep-alive round runs; then every key's record describes S3 exactly
(``UPLOADED`` with a live URL serving the bytes, ``FAILED`` only permanently for the current version,
``DELETED`` when gone), carries no claim, and its last published change matches it; objects outside
``WATCHED_OBJECTS`` never reached kie.ai, the fault proxy (no HeadObject, presigned GET or record read)
nor the table.

Knobs: ``MODEL_EXAMPLES`` (``make test``: 12, ``make model``: 2,000) and ``MODEL_STEPS`` (14);
``MODEL_SHARDS`` (``make model``: 3 pytest-xdist workers); ``MODEL_PROGRESS=path`` appends a line per
history; ``MODEL_SHRINK=0`` skips shrinking; ``MODEL_REPORT=path`` appends each violation as a JSON line
(history number first: how many histories it took); ``MODEL_COLLECT=1`` records violations there and goes
on instead of failing (to count distinct defects in one run); ``MODEL_TOLERATE`` names violations recorded
but not failing (default: ``KNOWN_DEFECTS``, the current function's, reported); ``MODEL_UNWATCHED=0``
leaves out unwatched targets (code older than ``WATCHED_OBJECTS``); ``MODEL_EXPECT_UPLOADER=dir`` asserts
the ``uploader`` package under test lives there (``python -m tests.mutations``).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import random
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

import boto3
import pytest
import requests
from boto3.dynamodb.types import TypeDeserializer
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

import uploader
from kie_uploader import local
from kie_uploader.emulator import KieEmulator
from tests import factories as f
from tests.factories import BUCKET, OTHER, VERSIONED, World, records_table_definition
from tests.faultproxy import Action, FaultProxy, Request, Rule, fail, reset
from uploader import live, publisher
from uploader.config import Config
from uploader.events import parse_event
from uploader.models import ObjectRef, Outcome
from uploader.processor import Processor
from uploader.retry import Deadline
from uploader.runtime import build_processor
from uploader.table import RecordTable

EXAMPLES = int(os.environ.get("MODEL_EXAMPLES", "12"))
STEPS = int(os.environ.get("MODEL_STEPS", "14"))
SHRINK = os.environ.get("MODEL_SHRINK", "1") != "0"
REPORT = os.environ.get("MODEL_REPORT") or None
COLLECT = os.environ.get("MODEL_COLLECT", "0") == "1"
UNWATCHED = os.environ.get("MODEL_UNWATCHED", "1") != "0"
EXPECT_UPLOADER = os.environ.get("MODEL_EXPECT_UPLOADER") or None
#: Defects of the current function the model found and its owner has not fixed yet: recorded (a warning at
#: the end of the run, MODEL_REPORT) but not failing it. None: the three it found are fixed (8f547fb, ea3f302,
#: 980dd9a), so every violation fails the run.
KNOWN_DEFECTS = ""
#: Violation tags recorded but not failing the run (MODEL_TOLERATE="" makes every violation fail).
TOLERATE = frozenset(filter(None, os.environ.get("MODEL_TOLERATE", KNOWN_DEFECTS).split(",")))
SHARDS = int(os.environ.get("MODEL_SHARDS", "1"))
PROGRESS = os.environ.get("MODEL_PROGRESS") or None

#: The model's own records table: the stack's definition plus the stream the publisher reads.
TABLE = "model-records"
#: WATCHED_OBJECTS: keys starting with "h" in both buckets (each history's keys are h<n>/...).
WATCHED_PREFIX = "h"
KEYS = ("a", "b", "c d")
#: Seconds of a normal invocation (a countdown, as Lambda's context), of a synchronous request, of a round.
INVOCATION_SECONDS = 30.0
REQUEST_SECONDS = 12.0
REFRESH_SECONDS = 45.0
#: kie.ai's call timeout in the model (KIE_TIMEOUT_SECONDS), and the emulator's stall for a "timeout".
KIE_TIMEOUT = 3
KIE_STALL = 3.5
RETENTION = 259_200
#: How long a held delivery may wait for the test, and the test for it.
HOLD_SECONDS = 60.0
OPS = (
    "new",
    "identical",
    "restore",
    "twice",
    "large",
    "delete",
    "delete-reput",
    "delete-version",
    "unmark",
    "noncurrent",
)
CHANNELS = ("sqs", "s3", "eventbridge", "sqs-eventbridge")
FAULTS = (
    "none",
    "s3-head-503",
    "s3-head-slowdown",
    "s3-head-reset",
    "s3-fetch-503",
    "s3-fetch-reset",
    "ddb-get-throttle",
    "ddb-update-throttle",
    "ddb-update-500",
    "ddb-update-answer-lost",
    "kie-500",
    "kie-429",
    "kie-455",
    "kie-400",
    "kie-timeout",
    "kie-trickle",
    "kie-malformed",
)
#: Where a delivery is held (its first reads and its result write weigh twice).
HOLDS = (
    "record-read",
    "s3-read",
    "s3-read",
    "claim",
    "claim-landed",
    "s3-read-2",
    "fetch",
    "fetched",
    "write",
    "write",
    "write-landed",
)
#: How often each fault is drawn: none in about a third of the invocations, a failing HeadObject in a fifth.
FAULT_CHOICES = ("none",) * 8 + FAULTS[1:4] * 2 + FAULTS[4:]
#: Held points before which the delivery read no S3 state: its S3 reads all come after the release.
HOLDS_BEFORE_ANY_S3_READ = ("record-read", "s3-read")
#: What happens while a delivery is held (a change delivered at once, and a flip, weigh twice: they are what
#: a held delivery's stale reading must survive).
ACTIONS = (
    "change",
    "change+deliver",
    "change+deliver",
    "flip",
    "flip",
    "lease",
    "deliver",
    "message",
    "resolve",
)
MIN_VALIDS = (0, 60, 3600, 258_000)
#: The record's attributes a table write shows in the trace.
TRACED = ("status", "etag", "sequencer", "eventSeen", "claimOwner", "errorKind", "modelEdit")

_examples = itertools.count()
_deserializer = TypeDeserializer()


class Violation(AssertionError):
    """A property of the model does not hold (the message says which, with a tag)."""


def _plain(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def item_of(image: dict[str, Any] | None) -> dict[str, Any] | None:
    """A DynamoDB JSON image as plain values (numbers as int)."""
    if image is None:
        return None
    return {name: _plain(_deserializer.deserialize(value)) for name, value in image.items()}


def countdown(seconds: float) -> Deadline:
    """A Lambda invocation's deadline: its remaining time runs down from now, less the handler's margin."""
    end = time.monotonic() + seconds
    return Deadline(lambda: max(0, int((end - time.monotonic()) * 1000)), 3.0)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 (S3's ETag of a single-part upload)


def changes_something(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """The contract of the published events, stated independently of the publisher: a write is announced
    when the record has a status and it changed the status, the object version, or (UPLOADED) the URL or
    its expiry."""
    status = new.get("status")
    if status not in ("UPLOADED", "FAILED", "SKIPPED", "DELETED"):
        return False
    if old is None or old.get("status") != status:
        return True
    if (old.get("versionId"), old.get("etag")) != (new.get("versionId"), new.get("etag")):
        return True
    return status == "UPLOADED" and (old.get("downloadUrl"), old.get("expiresAt")) != (
        new.get("downloadUrl"),
        new.get("expiresAt"),
    )


# --- the model's bookkeeping ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    bucket: str
    key: str
    watched: bool

    @property
    def pk(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass
class KeyState:
    """What the model knows of one target: S3's history of it, and what the record must do about it."""

    target: Target
    #: (monotonic time, bytes current from then on; None = no current version), oldest first.
    states: list[tuple[float, bytes | None]] = field(default_factory=lambda: [(0.0, None)])
    #: Every (versionId, etag) a put created.
    versions: set[tuple[str, str]] = field(default_factory=set)
    bodies: list[bytes] = field(default_factory=list)
    put_ever: bool = False
    deleted_ever: bool = False
    #: A version or delete marker of the key was removed (the current one may then be an older version).
    version_removed: bool = False
    last_change: float = 0.0
    last_seq: int = -1
    #: An acknowledged nudge came after the last change: the record must describe S3 (until a failure).
    nudged: bool = False
    purged: bool = False
    lost: bool = False
    #: Claim owners the model accepts on the record at a step's end (dead holders, defeated releases).
    allowed_owners: set[str] = field(default_factory=set)
    #: Whether some write ever gave this record (in its current life) a status.
    had_status: bool = False
    #: (status, versionId, etag, downloadUrl) of the last change published for the record.
    published: tuple[Any, ...] | None = None


@dataclass
class Note:
    """One S3 notification, as ministack sent it to the queue."""

    index: int
    body: str
    record: dict[str, Any]
    target: Target
    seq: int
    acknowledged: bool = False
    lost: bool = False


@dataclass
class Job:
    """One invocation the model runs: notes, a plain message, a resolve or a refresh."""

    kind: str
    container: int = 0
    notes: list[int] = field(default_factory=list)
    channel: str = "sqs"
    target: Target | None = None
    targets: list[Target] = field(default_factory=list)
    body: dict[str, Any] | None = None
    min_valid: int = 0
    within: int = 0
    started: float = 0.0
    started_wall: float = 0.0
    epoch: float = 0.0
    finished: float = 0.0
    acknowledged: dict[int, bool] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    answer: dict[str, Any] | None = None
    error: BaseException | None = None


class Hold:
    """Holds one delivery at a drawn point until the test releases it (proxy and emulator hooks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spec: tuple[str, Target, int] | None = None
        self.reached = threading.Event()
        self.release = threading.Event()

    def arm(self, point: str, target: Target) -> None:
        with self._lock:
            self.reached, self.release = threading.Event(), threading.Event()
            self._spec = (point, target, 2 if point == "s3-read-2" else 1)

    def disarm(self) -> None:
        with self._lock:
            self._spec = None
        self.release.set()

    def _take(self, points: tuple[str, ...], fits: Callable[[Target], bool]) -> bool:
        with self._lock:
            if self._spec is None:
                return False
            point, target, left = self._spec
            if point not in points or not fits(target):
                return False
            if left > 1:
                self._spec = (point, target, left - 1)
                return False
            self._spec = None
            return True

    def wait(self, _request: object = None) -> None:
        release = self.release  # taken before ``reached`` is set: a move() after it releases this wait
        self.reached.set()
        release.wait(HOLD_SECONDS)

    def move(self, point: str, target: Target) -> None:
        """Hold the delivery held now again at a later ``point``: armed there first, then let go."""
        release = self.release
        self.arm(point, target)
        release.set()

    # the fault proxy's predicates (run under its lock: quick)

    def before_request(self, request: Request) -> bool:
        points = {
            ("dynamodb", "GetItem"): ("record-read",),
            ("s3", "HeadObject"): ("s3-read", "s3-read-2"),
            ("dynamodb", "UpdateItem"): ("claim", "write"),
        }.get((request.service, request.operation), ())
        return bool(points) and self._take(points, lambda t: _names(request, t, self._point_of()))

    def after_request(self, request: Request) -> bool:
        if (request.service, request.operation) != ("dynamodb", "UpdateItem"):
            return False
        return self._take(("claim-landed", "write-landed"), lambda t: _names(request, t, self._point_of()))

    def _point_of(self) -> str:
        return self._spec[0] if self._spec else ""

    # the emulator's hooks

    def on_fetch(self, url: str) -> None:
        if self._take(("fetch",), lambda t: _fetches(url, t)):
            self.wait()

    def after_fetch(self, url: str) -> None:
        if self._take(("fetched",), lambda t: _fetches(url, t)):
            self.wait()


def _names(request: Request, target: Target, point: str) -> bool:
    """The request is the held delivery's at that point (its key; claim or result write)."""
    if request.service == "s3":
        return request.resource == target.bucket and request.key == target.key and not request.presigned
    if request.key != target.pk:
        return False
    if request.operation == "UpdateItem":
        body = request.body.decode("utf-8", "replace")
        result_write = '"#status"' in body
        return result_write if point.startswith("write") else ('"#claimOwner"' in body and not result_write)
    return True


def _fetches(url: str, target: Target) -> bool:
    try:
        path = unquote(urlsplit(url).path)
    except ValueError:
        return False
    return path == f"/{target.bucket}/{target.key}"


def forget_requests(proxy: FaultProxy) -> list[Exception]:
    """Forget the requests the proxy saw (a history's log) and its errors (returned), keeping its rules."""
    with proxy._lock:  # noqa: SLF001 (FaultProxy.clear() would drop the model's hold rules too)
        errors = list(proxy.errors)
        proxy.requests.clear()
        proxy.errors.clear()
    return errors


def _fileurl_target(url: Any) -> tuple[str, str] | None:
    if not isinstance(url, str):
        return None
    bucket, _, key = unquote(urlsplit(url).path).lstrip("/").partition("/")
    return bucket, key


# --- the state machine ------------------------------------------------------------------------------------


class Histories(RuleBasedStateMachine):
    """One history per example, on keys of its own (h<n>/...) in one world (no reset between examples)."""

    # Set once by the test function (class attributes: hypothesis builds a machine per example).
    world: World
    proxy: FaultProxy
    hold: Hold
    queue_url: str
    containers: tuple[Processor, Processor, Processor]
    s3: Any
    sqs: Any
    ddb: Any
    streams: Any
    stream_arn: str
    shard_iterator: str
    event_ids: set[str]
    started_at: float
    #: Steps run and seconds spent per rule (printed with MODEL_PROFILE=1).
    timings: dict[str, list[Any]]
    #: Tolerated violations: how many, and the first.
    tolerated: dict[str, list[Any]]

    def __init__(self) -> None:
        super().__init__()
        self.number = next(_examples)
        self.prefix = f"{WATCHED_PREFIX}{self.number}/"
        watched = [Target(b, self.prefix + k, True) for b in (BUCKET, VERSIONED) for k in KEYS]
        unwatched = [Target(BUCKET, f"x{self.number}/a", False), Target(OTHER, self.prefix + "a", False)]
        self.targets = watched + (unwatched if UNWATCHED else [])
        self.keys = {(t.bucket, t.key): KeyState(t) for t in self.targets}
        self.by_pk = {t.pk: self.keys[(t.bucket, t.key)] for t in self.targets}
        self.notes: list[Note] = []
        self.owed: list[dict[str, Any]] = []  # plain messages to deliver again (failed, or a dead holder's)
        self.counter = itertools.count()
        self.edits = itertools.count(1)
        self.fault_rules: list[Rule] = []
        #: Targets a DynamoDB fault was aimed at in this step (None: all): a claim whose release it defeated
        #: may be left behind, until its lease ends.
        self.ddb_faulted: set[Target | None] = set()
        self.broken = False
        #: What happened in this history, a line per effect (S3 changes, jobs and their outcomes, faults,
        #: holds, the table's writes): written to MODEL_REPORT with a violation, the history to replay.
        self.trace: list[str] = []
        self.begun = time.monotonic()
        self.kie_calls_before = len(self.world.kie.calls)
        forget_requests(self.proxy)
        progress = f"history {self.number} ({time.monotonic() - self.started_at:.0f} s)"
        if REPORT:
            print(progress, flush=True)
        if PROGRESS:  # a file: pytest-xdist's workers print nowhere
            with open(PROGRESS, "a", encoding="utf-8") as out:
                out.write(f"{os.getpid()} {progress}\n")

    # --- reporting ---

    def violated(self, tag: str, message: str) -> None:
        text = f"[{tag}] history {self.prefix}: {message}"
        if REPORT:
            line = {
                "history": self.number,
                "tag": tag,
                "message": message[:2000],
                "seconds": round(time.monotonic() - self.started_at, 1),
                "trace": self.trace[-400:],
            }
            with open(REPORT, "a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")
        if tag in TOLERATE:
            self.tolerated.setdefault(tag, [0, text])[0] += 1
        elif not COLLECT:
            raise Violation(text)

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """Every rule runs inside: the properties are checked when it ends; a failure leaves the history."""
        self.ddb_faulted.clear()
        frame = sys._getframe(2)  # noqa: SLF001 (the rule's frame: its name and arguments)
        name, started = frame.f_code.co_name, time.monotonic()
        arguments = {k: v for k, v in frame.f_locals.items() if k not in ("self", "data")}
        self.note(f"step {name} {arguments}")
        try:
            yield
            self.check_step()
        except BaseException as exc:
            self.broken = True
            if REPORT and isinstance(exc, Exception) and not isinstance(exc, Violation):
                with open(REPORT, "a", encoding="utf-8") as out:
                    line = {"history": self.number, "tag": "exception", "message": repr(exc)[:2000]}
                    out.write(json.dumps(line) + "\n")
            raise
        finally:
            self.disarm_faults()
            spent = self.timings.setdefault(name, [0, 0.0])
            spent[0], spent[1] = spent[0] + 1, spent[1] + time.monotonic() - started

    def note(self, text: str) -> None:
        """A line of the history's trace (seconds since the history began, in the test's clock)."""
        thread = threading.current_thread().name[:10]
        self.trace.append(f"{time.monotonic() - self.begun:7.2f} {thread:10} {text}")

    @staticmethod
    def short(target: Target | None) -> str:
        return f"{target.bucket}:{target.key.split('/', 1)[-1]}" if target else "-"

    # --- targets and S3 ---

    def target(self, index: int, *, watched_only: bool = False) -> Target:
        pool = [t for t in self.targets if t.watched] if watched_only else self.targets
        return pool[index % len(pool)]

    def state_of(self, target: Target) -> KeyState:
        return self.keys[(target.bucket, target.key)]

    def s3_now(self, target: Target) -> tuple[str, str, bytes] | None:
        """(versionId, etag, bytes) of the current version, or None (no object, or a delete marker)."""
        try:
            got = self.s3.get_object(Bucket=target.bucket, Key=target.key)
        except Exception:  # NoSuchKey, or a delete marker is current
            return None
        body: bytes = got["Body"].read()
        return str(got.get("VersionId") or "null"), str(got["ETag"]).strip('"'), body

    def put(self, target: Target, body: bytes) -> None:
        answer = self.s3.put_object(Bucket=target.bucket, Key=target.key, Body=body)
        ks = self.state_of(target)
        ks.versions.add((str(answer.get("VersionId") or "null"), str(answer["ETag"]).strip('"')))
        ks.bodies.append(body)
        ks.put_ever = True

    def fresh(self, target: Target) -> bytes:
        return f"{target.bucket}/{target.key} #{next(self.counter)}".encode()

    def change(self, target: Target, op: str) -> None:
        """One S3 operation on the target, then what S3 and the queue say about it."""
        ks = self.state_of(target)
        versioned = target.bucket == VERSIONED
        current = self.s3_now(target)
        puts = len(ks.bodies)
        # Each write sends a notification; a delete of an unversioned key that has no object sends none.
        deletes = (
            0 if op in ("new", "identical", "restore", "twice", "large") or (current or versioned) else -1
        )
        if op == "new":
            self.put(target, self.fresh(target))
        elif op == "identical":
            self.put(target, current[2] if current else self.fresh(target))
        elif op == "restore":  # A → B → A: the bytes before the last put
            self.put(target, ks.bodies[-2] if len(ks.bodies) >= 2 else self.fresh(target))
        elif op == "twice":
            self.put(target, self.fresh(target))
            self.put(target, self.fresh(target))
        elif op == "large":
            self.put(target, self.fresh(target) + b"x" * 1200)  # over MAX_OBJECT_BYTES
        elif op == "delete" or (op in ("delete-version", "unmark", "noncurrent") and not versioned):
            self.s3.delete_object(Bucket=target.bucket, Key=target.key)
            deletes += 1
        elif op == "delete-reput":
            self.s3.delete_object(Bucket=target.bucket, Key=target.key)
            deletes += 1
            self.put(target, current[2] if current and next(self.counter) % 2 else self.fresh(target))
        else:
            listing = self.s3.list_object_versions(Bucket=target.bucket, Prefix=target.key)
            entries = [
                (v["VersionId"], v["IsLatest"], marker)
                for marker, kind in ((False, "Versions"), (True, "DeleteMarkers"))
                for v in listing.get(kind, [])
                if v["Key"] == target.key
            ]
            latest = [e for e in entries if e[1]]
            older = [e for e in entries if not e[1]]
            pick: tuple[str, bool, bool] | None = None
            if op == "delete-version":  # the current version itself: the previous one becomes current
                pick = next((e for e in latest if not e[2]), None)
            elif op == "unmark":  # the current delete marker: the object comes back
                pick = next((e for e in latest if e[2]), None) or (older[0] if older else None)
            elif older:
                pick = older[next(self.counter) % len(older)]
            if pick is not None:
                self.s3.delete_object(Bucket=target.bucket, Key=target.key, VersionId=pick[0])
                ks.version_removed = True
                deletes += 1
        self.observe(target, len(ks.bodies) - puts + max(deletes, 0))
        after = ks.states[-1][1]
        self.note(f"s3 {op} {self.short(target)}: {md5(after)[:8] if after is not None else None}")

    def observe(self, target: Target, expected: int) -> None:
        """Note S3's current state of the target and collect the notifications S3 sent: ministack sends
        them from a thread of their own, so wait (5 s at most) for the ``expected`` ones of this change."""
        ks = self.state_of(target)
        now = self.s3_now(target)
        moment = time.monotonic()
        body = now[2] if now else None
        if body is None and ks.states[-1][1] is not None:
            ks.deleted_ever = True
        ks.states.append((moment, body))
        arrived = 0
        while True:
            for note in self.collect():
                arrived += note.target == target
                owner = self.state_of(note.target)
                if note.seq > owner.last_seq:
                    owner.last_seq, owner.last_change, owner.nudged = note.seq, moment, False
            if arrived >= expected or time.monotonic() > moment + 5:
                return
            time.sleep(0.02)

    def collect(self) -> list[Note]:
        new: list[Note] = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            if not messages:
                return new
            for message in messages:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                body = message["Body"]
                for record in json.loads(body).get("Records", []):
                    key = unquote_plus(record["s3"]["object"]["key"])
                    ks = self.keys.get((record["s3"]["bucket"]["name"], key))
                    if ks is None:
                        continue
                    one = json.dumps({"Records": [record]})
                    seq = int(record["s3"]["object"]["sequencer"], 16)
                    note = Note(len(self.notes), one, record, ks.target, seq)
                    self.note(f"note n{note.index} {self.short(ks.target)} {record['eventName']} seq {seq:x}")
                    self.notes.append(note)
                    new.append(note)

    # --- hand edits (the clock moving on, a TTL purge): marked so that the stream check skips them ---

    def edit(self, target: Target, **values: Any) -> bool:
        values["modelEdit"] = next(self.edits)
        names = {f"#n{i}": name for i, name in enumerate(values)}
        avs = {
            f":v{i}": {"N": str(v)} if isinstance(v, int) else {"S": str(v)}
            for i, v in enumerate(values.values())
        }
        try:
            self.ddb.update_item(
                TableName=TABLE,
                Key={"pk": {"S": target.pk}},
                UpdateExpression="SET " + ", ".join(f"#n{i} = :v{i}" for i in range(len(values))),
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=avs,
            )
        except self.ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def record(self, target: Target) -> dict[str, Any] | None:
        item = self.ddb.get_item(TableName=TABLE, Key={"pk": {"S": target.pk}}, ConsistentRead=True)
        return item_of(item.get("Item"))

    def lease_runs_out(self, target: Target) -> None:
        record = self.record(target)
        if record and record.get("claimOwner"):
            self.edit(target, claimUntil=int(time.time() * 1000) - 1)

    def waited_for_claim_runs_out(self, target: Target) -> None:
        """A held synchronous request's claim would be waited for until its lease ends: let it end now."""
        record = self.record(target)
        if record and record.get("claimOwner") and record.get("claimWaits"):
            self.edit(target, claimUntil=int(time.time() * 1000) - 1)

    # --- faults ---

    def arm_fault(self, fault: str, times: int, target: Target | None) -> None:
        if fault == "none":
            return
        self.note(f"fault {fault} x{times} on {self.short(target) if target else 'all'}")
        if fault.startswith("kie-"):
            outcome = {"kie-timeout": "timeout", "kie-trickle": "trickle", "kie-malformed": "malformed"}
            name = outcome.get(fault, fault[4:])
            self.world.kie.script(*[name] * min(times, 3))
            return

        def on_target(request: Request) -> bool:
            if target is None:
                return True
            if request.service == "s3":
                return request.resource == target.bucket and request.key == target.key
            return request.key == target.pk

        service, operation, action, presigned = {
            "s3-head-503": ("s3", "HeadObject", fail(503, "ServiceUnavailable"), False),
            "s3-head-slowdown": ("s3", "HeadObject", fail(503, "SlowDown"), False),
            "s3-head-reset": ("s3", "HeadObject", reset(), False),
            "s3-fetch-503": ("s3", "GetObject", fail(503, "ServiceUnavailable"), True),
            "s3-fetch-reset": ("s3", "GetObject", reset(), True),
            "ddb-get-throttle": (
                "dynamodb",
                "GetItem",
                fail(400, "ProvisionedThroughputExceededException"),
                False,
            ),
            "ddb-update-throttle": (
                "dynamodb",
                "UpdateItem",
                fail(400, "ProvisionedThroughputExceededException"),
                False,
            ),
            "ddb-update-500": ("dynamodb", "UpdateItem", fail(500, "InternalServerError"), False),
            "ddb-update-answer-lost": ("dynamodb", "UpdateItem", Action(reset=True), False),
        }[fault]

        def when(request: Request, presigned: bool = presigned) -> bool:
            return request.presigned == presigned and on_target(request)

        self.fault_rules.append(self.proxy.add(Rule(service, operation, action, when=when, times=times)))
        if service == "dynamodb":
            self.ddb_faulted.add(target)

    def disarm_faults(self) -> None:
        for fault_rule in self.fault_rules:
            fault_rule.times = fault_rule.hits  # used up: it matches nothing any more
        with self.proxy._lock:  # noqa: SLF001 (the model's own rules, removed while no request uses them)
            self.proxy.rules[:] = [r for r in self.proxy.rules if r not in self.fault_rules]
        self.fault_rules.clear()
        kie = self.world.kie
        with kie._lock:  # noqa: SLF001 (the emulator has no "forget the script" call: scripted faults stay in their step)
            kie._script.clear()  # noqa: SLF001

    # --- jobs ---

    def draw_notes(self, data: st.DataObject, target: Target | None = None) -> list[int]:
        picks = data.draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=4), label="notes")
        pool = [n for n in self.notes if target is None or n.target == target]
        if not pool:
            return []
        fresh = [n for n in pool if not n.acknowledged and not n.lost]
        both = fresh + pool
        return [both[p % len(both)].index for p in picks]

    def draw_job(self, data: st.DataObject, container: int) -> Job:
        kind = data.draw(st.sampled_from(("notes", "notes", "plain", "resolve", "refresh")), label="job")
        if kind == "notes":
            channel = data.draw(st.sampled_from(CHANNELS), label="channel")
            notes = self.draw_notes(data)
            if notes:
                return Job("notes", container, notes=notes, channel=channel)
            kind = "plain"
        index = data.draw(st.integers(0, 7), label="target")
        if kind == "plain":
            return self.plain_job(self.target(index), data.draw(st.booleans(), label="force"), container)
        if kind == "resolve":
            picks = data.draw(st.lists(st.integers(0, 7), min_size=0, max_size=2), label="more")
            targets = [self.target(index)] + [self.target(p) for p in picks]
            min_valid = data.draw(st.sampled_from(MIN_VALIDS), label="minValid")
            return Job("resolve", container, targets=targets, target=targets[0], min_valid=min_valid)
        within = data.draw(st.sampled_from((0, 120, 3600)), label="within")
        return Job("refresh", container, within=within)

    def plain_job(self, target: Target, force: bool, container: int) -> Job:
        body: dict[str, Any] = {"bucket": target.bucket, "key": target.key}
        if force:
            body |= {"force": True, "requestId": uuid.uuid4().hex}
        return Job("plain", container, target=target, body=body)

    def run(self, job: Job) -> None:
        """Run the job (in any thread); its results stay on it for :meth:`settle` (in the test's thread)."""
        processor = self.containers[job.container]
        what = [f"n{i}" for i in job.notes] or [self.short(t) for t in job.targets] or self.short(job.target)
        channel = job.channel if job.kind == "notes" else ""
        force = " force" if (job.body or {}).get("force") else ""
        self.note(f"run {job.kind} c{job.container} {channel} {what}{force}")
        job.started = job.epoch = time.monotonic()
        job.started_wall = time.time()
        try:
            if job.kind == "notes":
                self.run_notes(job, processor)
            elif job.kind == "plain":
                event = f.sqs_event(f.sqs_record(json.dumps(job.body), message_id="plain"))
                job.outcomes = processor.process_messages(
                    parse_event(event).messages, countdown(INVOCATION_SECONDS)
                )
            elif job.kind == "resolve":
                request = {"resolve": [t.pk for t in job.targets], "minValidSeconds": job.min_valid}
                try:
                    job.answer = live.handle(request, processor, countdown(REQUEST_SECONDS))
                except Exception as exc:  # a synchronous request must answer, whatever fails
                    job.answer = {"raised": repr(exc)}
            else:
                prefixes = sorted({f"s3://{t.bucket}/{t.key.split('/')[0]}/" for t in self.targets})
                request = {"refresh": {"prefixes": prefixes, "expiringWithinSeconds": job.within}}
                job.answer = live.handle(request, processor, countdown(REFRESH_SECONDS))
        except BaseException as exc:  # surfaced by settle, in the test's thread
            job.error = exc
        job.finished = time.monotonic()
        self.note(
            f"done {job.kind} c{job.container}: "
            + "; ".join(
                f"{o.message_id} {o.ref.key.split('/', 1)[-1]} {o.status.value}{' retry' if o.retry else ''}"
                f"{' (' + o.error[:80] + ')' if o.error else ''}"
                for o in job.outcomes
            )
            + (f" answer {str(job.answer)[:300]}" if job.answer is not None else "")
            + (f" error {job.error!r}" if job.error is not None else "")
        )

    def run_notes(self, job: Job, processor: Processor) -> None:
        notes = [self.notes[i] for i in job.notes]

        def process(event: dict[str, Any]) -> list[Outcome]:
            outcomes = processor.process_messages(parse_event(event).messages, countdown(INVOCATION_SECONDS))
            job.outcomes += outcomes
            return outcomes

        if job.channel in ("sqs", "sqs-eventbridge"):
            bodies = [n.body if job.channel == "sqs" else json.dumps(eventbridge_of(n)) for n in notes]
            ids = [f"n{n.index}-{position}" for position, n in enumerate(notes)]
            outcomes = process(
                f.sqs_event(*[f.sqs_record(b, message_id=i) for b, i in zip(bodies, ids, strict=True)])
            )
            for note, message_id in zip(notes, ids, strict=True):
                retry = any(o.retry for o in outcomes if o.message_id == message_id)
                job.acknowledged[note.index] = job.acknowledged.get(note.index, False) or not retry
        elif job.channel == "s3":  # a direct invocation: Lambda retries the whole event if any needs it
            outcomes = process({"Records": [n.record for n in notes]})
            for note in notes:
                job.acknowledged[note.index] = not any(o.retry for o in outcomes)
        else:  # EventBridge delivers each event in an invocation of its own
            for note in notes:
                outcomes = process(eventbridge_of(note))
                ok = not any(o.retry for o in outcomes)
                job.acknowledged[note.index] = job.acknowledged.get(note.index, False) or ok

    def run_concurrently(self, *jobs: Job) -> None:
        threads = [threading.Thread(target=self.run, args=(job,)) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
            assert not thread.is_alive(), "an invocation did not end within 120 s"

    def settle(self, *jobs: Job) -> None:
        """What the jobs' answers mean for the model: acknowledged notes, owed messages, nudges; and the
        resolve answers' own property. A failure on a key (in any job) wins over a nudge."""
        failed: set[Target] = set()
        nudged: set[Target] = set()
        for job in jobs:
            if job.error is not None:
                raise job.error
            if job.kind == "notes":
                self.settle_notes(job, failed, nudged)
            elif job.kind == "plain":
                assert job.target is not None and job.body is not None
                ks = self.state_of(job.target)
                if any(o.retry for o in job.outcomes):
                    self.owed.append(job.body)
                    failed.add(job.target)
                elif job.target.watched and job.epoch > ks.last_change:
                    nudged.add(job.target)
            elif job.kind == "resolve":
                failed |= self.check_resolve(job)
            else:
                assert job.answer is not None, job
                if job.answer.get("error") or job.answer.get("failed") or job.answer.get("left"):
                    failed |= {t for t in self.targets if t.watched}
        for target in failed:
            self.state_of(target).nudged = False
        for target in nudged - failed:
            self.state_of(target).nudged = True

    def settle_notes(self, job: Job, failed: set[Target], nudged: set[Target]) -> None:
        for index, ok in job.acknowledged.items():
            note = self.notes[index]
            if not ok:
                failed.add(note.target)
                continue
            note.acknowledged = True
            if note.seq == self.state_of(note.target).last_seq and note.target.watched:
                nudged.add(note.target)  # the event of the key's last change

    def check_resolve(self, job: Job) -> set[Target]:
        """Every URL a resolve gives serves bytes S3 held during the request; refusals for unwatched ones."""
        assert job.answer is not None
        if "raised" in job.answer:
            self.violated("request-raised", f"resolve {[t.pk for t in job.targets]}: {job.answer['raised']}")
            return set(job.targets)
        results = job.answer.get("results")
        if not isinstance(results, list) or len(results) != len(job.targets):
            self.violated("resolve-answer", f"no result per URI: {job.answer}")
            return set()
        failed: set[Target] = set()
        for target, result in zip(job.targets, results, strict=True):
            url = result.get("downloadUrl")
            if not target.watched:
                if result.get("status") != "NOT_WATCHED" or url is not None:
                    self.violated("unwatched-resolve", f"{target.pk}: {result}")
                continue
            if url is None:
                if result.get("error"):
                    failed.add(target)
                continue
            served = requests.get(url, timeout=10).content
            held = self.bytes_during(self.state_of(target), job.started, job.finished)
            if served not in held:
                self.violated(
                    "resolve-url",
                    f"{target.pk}: the URL serves {served[:60]!r}, S3 held {sorted(held, key=repr)!r}",
                )
            expires = result.get("expiresAt")
            if not isinstance(expires, int) or expires < job.started_wall + job.min_valid:
                self.violated("resolve-expiry", f"{target.pk}: {result} (minValidSeconds {job.min_valid})")
        return failed

    @staticmethod
    def bytes_during(ks: KeyState, start: float, end: float) -> set[bytes | None]:
        held = {body for moment, body in ks.states if start < moment <= end}
        before = [body for moment, body in ks.states if moment <= start]
        if before:
            held.add(before[-1])
        return held

    # --- rules: S3 ---

    @initialize(unversioned=st.integers(0, 2), versioned=st.integers(3, 5))
    def first_puts(self, unversioned: int, versioned: int) -> None:
        with self.step():
            self.change(self.target(unversioned, watched_only=True), "new")
            self.change(self.target(versioned, watched_only=True), "new")

    @rule(index=st.integers(0, 7), op=st.sampled_from(OPS))
    def s3_change(self, index: int, op: str) -> None:
        with self.step():
            self.change(self.target(index), op)

    @rule(index=st.integers(0, 7), op=st.sampled_from(OPS))
    def s3_change_again(self, index: int, op: str) -> None:
        """The same as ``s3_change``: a second rule, so that S3 changes are as frequent as deliveries."""
        with self.step():
            self.change(self.target(index), op)

    # --- rules: deliveries and requests ---

    def draw_fault(self, data: st.DataObject) -> tuple[str, int]:
        fault = data.draw(st.sampled_from(FAULT_CHOICES), label="fault")
        times = data.draw(st.sampled_from((1, 2, 4, 8)), label="times")
        return fault, times

    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        with self.step():
            job = self.draw_job(data, data.draw(st.integers(0, 2), label="container"))
            fault, times = self.draw_fault(data)
            self.arm_fault(fault, times, None)
            self.run(job)
            self.settle(job)

    @rule(data=st.data())
    def deliver_two_at_once(self, data: st.DataObject) -> None:
        with self.step():
            first, second = self.draw_job(data, 0), self.draw_job(data, 1)
            fault, times = self.draw_fault(data)
            self.arm_fault(fault, times, None)
            self.run_concurrently(first, second)
            self.settle(first, second)

    @rule(index=st.integers(0, 7), force=st.booleans(), data=st.data())
    def plain_message(self, index: int, force: bool, data: st.DataObject) -> None:
        with self.step():
            plain = self.plain_job(self.target(index), force, 0)
            other = Job("notes", 1, notes=self.draw_notes(data))
            self.run_concurrently(plain, other)
            self.settle(plain, other)

    @rule(index=st.integers(0, 7), how=st.sampled_from(("expired", "due")))
    def expire(self, index: int, how: str) -> None:
        with self.step():
            target = self.target(index)
            record = self.record(target)
            if record and record.get("status") == "UPLOADED":
                self.edit(target, expiresAt=int(time.time()) + (-5 if how == "expired" else 60))

    @rule(data=st.data())
    def refresh(self, data: st.DataObject) -> None:
        with self.step():
            job = Job("refresh", data.draw(st.integers(0, 2), label="container"))
            job.within = data.draw(st.sampled_from((0, 120, 3600)), label="within")
            fault, times = self.draw_fault(data)
            self.arm_fault(fault, times, None)
            self.run(job)
            self.settle(job)

    # --- rules: killed holders, leases, purges, losses ---

    @rule(index=st.integers(0, 5), lease=st.sampled_from((-1000, 800, 3000)), waits=st.booleans())
    def dead_claim(self, index: int, lease: int, waits: bool) -> None:
        """A holder killed right after its claim landed (a synchronous request's, or a delivery's whose
        message comes back after the lease)."""
        with self.step():
            target = self.target(index, watched_only=True)
            record = self.record(target)
            now_ms = int(time.time() * 1000)
            if record and record.get("claimOwner") and int(record.get("claimUntil", 0)) > now_ms:
                return  # someone (dead) holds it already
            ks = self.state_of(target)
            notes = [n for n in self.notes if n.target == target]
            ref = ObjectRef(target.bucket, target.key)
            message: dict[str, Any] | None = {"bucket": target.bucket, "key": target.key}
            if notes and not waits:  # the holder was delivering the key's last notification
                note = notes[-1]
                ref = parse_event(f.sqs_event(f.sqs_record(note.body))).messages[0].objects[0]
                note.acknowledged, message = False, None
            owner = f"dead-{uuid.uuid4().hex[:8]}"
            table = RecordTable(TABLE, client=self.ddb)
            rev = int(record.get("rev", 0)) if record else 0
            if table.claim(ref, rev, owner=owner, until_ms=now_ms + lease, now=now_ms // 1000, waits=waits):
                ks.allowed_owners.add(owner)
                if message is not None and not waits:
                    self.owed.append(message)

    @rule(index=st.integers(0, 5))
    def lease_ends(self, index: int) -> None:
        with self.step():
            self.lease_runs_out(self.target(index, watched_only=True))

    @rule(container=st.integers(0, 2))
    def redeliver_owed(self, container: int) -> None:
        """Messages that failed, or whose holder died, come back (after the holder's lease)."""
        with self.step():
            self.deliver_owed(container)

    def deliver_owed(self, container: int, *, everything: bool = False) -> None:
        """Owed plain messages come back (after the leases of dead holders), and undelivered notes (a
        batch of them; ``everything``: all, shuffled, five per invocation)."""
        for ks in self.keys.values():
            if ks.target.watched:
                self.lease_runs_out(ks.target)
        owed, self.owed = self.owed, []
        for message in owed:
            job = self.plain_job(self.keys[(message["bucket"], message["key"])].target, False, container)
            job.body = message
            self.run(job)
            self.settle(job)
        pending = [n.index for n in self.notes if not n.acknowledged and not n.lost]
        if everything:
            random.Random(self.number).shuffle(pending)
        for start in range(0, len(pending) if everything else min(len(pending), 1), 5):
            job = Job("notes", container, notes=pending[start : start + 5])
            self.run(job)
            self.settle(job)

    @rule(index=st.integers(0, 5))
    def purge(self, index: int) -> None:
        """The record's TTL removes it (the object may live on): a later nudge starts a new life."""
        with self.step():
            target = self.target(index, watched_only=True)
            record = self.record(target)
            if record is None or record.get("claimOwner"):
                return
            self.ddb.delete_item(TableName=TABLE, Key={"pk": {"S": target.pk}})
            ks = self.state_of(target)
            ks.purged, ks.nudged = True, False

    @rule(pick=st.integers(0, 10_000))
    def lose_note(self, pick: int) -> None:
        """A notification's deliveries all failed and it sits in the DLQ for good."""
        with self.step():
            pending = [n for n in self.notes if not n.acknowledged and not n.lost]
            if pending:
                note = pending[pick % len(pending)]
                note.lost = True
                self.state_of(note.target).lost = True

    # --- outages: the situations issue 21's defects came from, drawn as often as any other step ---

    @rule(index=st.integers(0, 5), op=st.sampled_from(OPS), data=st.data())
    def s3_outage(self, index: int, op: str, data: st.DataObject) -> None:
        """S3 answers no HeadObject for a while (503, SlowDown or resets, on every attempt) right after a
        change of a key, while the latest notifications are delivered; then, when drawn, the outage ends and
        the failed notifications come back at once (SQS's next receive). A failure must record no progress
        it did not make (rule 7), or the redelivery stops early."""
        with self.step():
            fault = data.draw(st.sampled_from(FAULTS[1:4]), label="fault")
            channel = data.draw(st.sampled_from(CHANNELS), label="channel")
            self.change(self.target(index, watched_only=True), op)
            fresh = [n.index for n in self.notes if not n.acknowledged and not n.lost][-3:]
            if not fresh:
                return
            self.arm_fault(fault, 1000, None)
            job = Job("notes", data.draw(st.integers(0, 2), label="container"), notes=fresh, channel=channel)
            self.run(job)
            self.settle(job)
            self.disarm_faults()
            if data.draw(st.booleans(), label="comes back"):
                again = Job(
                    "notes", 0, notes=[i for i in fresh if not self.notes[i].acknowledged], channel=channel
                )
                if again.notes:
                    self.run(again)
                    self.settle(again)

    @rule(index=st.integers(0, 5), how=st.sampled_from(("expired", "due")), data=st.data())
    def kie_outage(self, index: int, how: str, data: st.DataObject) -> None:
        """kie.ai fails every call (5xx, 429, maintenance, malformed answers) for a keep-alive round or a
        resolve across a record's expiry: a retryable failure must stay due (rule 10)."""
        with self.step():
            target = self.target(index, watched_only=True)
            record = self.record(target)
            if record and record.get("status") == "UPLOADED":
                self.edit(target, expiresAt=int(time.time()) + (-5 if how == "expired" else 60))
            outcome = data.draw(st.sampled_from(("500", "429", "455", "malformed")), label="kie")
            self.world.kie.script(*[outcome] * 3)
            if data.draw(st.booleans(), label="resolve"):
                job = Job("resolve", 0, targets=[target], target=target, min_valid=120)
            else:
                job = Job("refresh", 0, within=120)
            self.run(job)
            self.settle(job)

    # --- the held delivery ---

    @rule(data=st.data())
    def in_flight(self, data: st.DataObject) -> None:
        """A delivery held at a drawn point while the history goes on (see the module docstring)."""
        with self.step():
            # A key that has an object, when there is one: a held delivery then has something to do.
            pool = [t for t in self.targets if t.watched and self.state_of(t).states[-1][1] is not None]
            pick = data.draw(st.integers(0, 5), label="target")
            target = pool[pick % len(pool)] if pool else self.target(pick, watched_only=True)
            kinds = ("notes", "plain", "plain", "resolve", "resolve", "refresh")
            kind = data.draw(st.sampled_from(kinds), label="held")
            point = data.draw(st.sampled_from(HOLDS), label="at")
            actions = data.draw(
                st.lists(st.tuples(st.sampled_from(ACTIONS), st.sampled_from(OPS)), min_size=1, max_size=3),
                label="meanwhile",
            )
            fault, times = self.draw_fault(data)
            job = self.held_job(data, target, kind)
            self.hold_while(job, target, point, actions, fault, times)

    @rule(data=st.data())
    def message_overtaken(self, data: st.DataObject) -> None:
        """A message (a retry, a backfill) about an uploaded key is held at its first record or S3 read
        while the object is overwritten, that change delivered, and the old bytes put back (A → B → A) or
        the object changed again: the situation rule 6's second record read is for."""
        with self.step():
            pool = [t for t in self.targets if t.watched and self.state_of(t).states[-1][1] is not None]
            target = pool[data.draw(st.integers(0, 5), label="target") % len(pool)] if pool else None
            if target is None:
                return
            point = data.draw(st.sampled_from(HOLDS_BEFORE_ANY_S3_READ), label="at")
            actions = data.draw(
                st.sampled_from(
                    (
                        [("flip", "new")],
                        [("change+deliver", "new"), ("change", "restore")],
                        [("change+deliver", "new")],
                    )
                ),
                label="meanwhile",
            )
            self.hold_while(self.plain_job(target, False, 0), target, point, actions, "none", 1)

    @rule(data=st.data())
    def fetched_while_overwritten(self, data: st.DataObject) -> None:
        """Defect 2's window on the unversioned bucket: a delivery of A is held before kie.ai fetches its
        presigned URL while B is put (its notification not delivered), held again right after kie.ai's
        fetch (of B) while A's bytes are put back, then released. B's and A's notifications come later:
        the same ETag as the record's, they must not hide that kie.ai holds B's bytes."""
        with self.step():
            pool = [
                t
                for t in self.targets
                if t.watched and t.bucket != VERSIONED and self.state_of(t).states[-1][1] is not None
            ]
            if not pool:
                return
            target = pool[data.draw(st.integers(0, 5), label="target") % len(pool)]
            before = len(self.notes)
            self.change(target, "new")  # A: what the held delivery uploads
            notes = [n.index for n in self.notes[before:]]
            job = Job("notes", 0, notes=notes, channel="sqs") if notes else self.plain_job(target, False, 0)
            self.hold.arm("fetch", target)
            thread = threading.Thread(target=self.run, args=(job,))
            thread.start()
            if self.reached(thread):
                self.change(target, "new")  # B
                self.hold.move("fetched", target)
                if self.reached(thread):
                    self.change(target, "restore")  # A's bytes again
            self.hold.disarm()
            thread.join(120)
            assert not thread.is_alive(), "the held invocation did not end within 120 s"
            self.settle(job)

    def reached(self, thread: threading.Thread) -> bool:
        """Wait (30 s at most) until the armed hold is reached, or the held invocation ended without it."""
        deadline = time.monotonic() + 30
        while not self.hold.reached.wait(0.01) and thread.is_alive() and time.monotonic() < deadline:
            pass
        return self.hold.reached.is_set()

    def hold_while(
        self, job: Job, target: Target, point: str, actions: list[tuple[str, str]], fault: str, times: int
    ) -> None:
        """Run ``job`` in a thread held at ``point``, do ``actions`` meanwhile, release it, settle all."""
        self.arm_fault(fault, times, target)
        self.hold.arm(point, target)
        thread = threading.Thread(target=self.run, args=(job,))
        thread.start()
        held = self.reached(thread)
        self.note(f"hold {point} {self.short(target)}: {'held' if held else 'not reached'}")
        if not held:
            self.hold.disarm()
        released_at = time.monotonic()
        interleaved: list[Job] = []
        try:
            for action, op in actions:
                interleaved += self.interleave(action, op, target)
        finally:
            released_at = time.monotonic()
            self.note("release")
            self.hold.disarm()
            thread.join(120)
        assert not thread.is_alive(), "the held invocation did not end within 120 s"
        if os.environ.get("MODEL_PROFILE") == "1":
            print(
                f"held {job.kind:8} {point:12} {fault:22} held={held} {[a for a, _ in actions]} "
                f"reach={released_at - job.started:.2f} total={time.monotonic() - job.started:.2f}"
            )
        if held and point in HOLDS_BEFORE_ANY_S3_READ:
            job.epoch = released_at  # every S3 read of the held delivery came after the release
        self.settle(*interleaved, job)

    @rule(data=st.data())
    def in_flight_again(self, data: st.DataObject) -> None:
        """The same as ``in_flight``: a second rule, so that held deliveries come about twice per history."""
        self.in_flight(data)

    def held_job(self, data: st.DataObject, target: Target, kind: str) -> Job:
        """The invocation to hold: ``kind`` about ``target``, after a change of it when drawn."""
        changed: list[int] = []
        if data.draw(st.booleans(), label="changed first"):
            # The held delivery has work to do: the object changed (its own notification, for notes).
            before = len(self.notes)
            self.change(target, "new")
            changed = [n.index for n in self.notes[before:]]
        if kind == "notes":
            notes = changed or self.draw_notes(data, target)
            return Job("notes", 0, notes=notes, channel="sqs") if notes else self.plain_job(target, False, 0)
        if kind == "plain":
            return self.plain_job(target, data.draw(st.booleans(), label="force"), 0)
        if kind == "resolve":
            min_valid = data.draw(st.sampled_from(MIN_VALIDS), label="minValid")
            return Job("resolve", 0, targets=[target], target=target, min_valid=min_valid)
        record = self.record(target)
        if record and record.get("status") == "UPLOADED":
            self.edit(target, expiresAt=int(time.time()) + 60)  # due for the held keep-alive round
        return Job("refresh", 0, within=120)

    def interleave(self, action: str, op: str, target: Target) -> list[Job]:
        """One action of the history while the held delivery waits (in the test's thread)."""
        jobs: list[Job] = []
        if action == "lease":
            self.lease_runs_out(target)
            return jobs
        if action in ("change", "change+deliver", "flip"):
            before = len(self.notes)
            self.change(target, "new" if action == "flip" else op)
            if action == "change":
                return jobs
            jobs.append(Job("notes", 1, notes=[n.index for n in self.notes[before:]]))
        elif action == "deliver":
            pending = [n.index for n in self.notes if n.target == target and not n.acknowledged]
            jobs.append(Job("notes", 1, notes=pending[-2:] or [n.index for n in self.notes[-1:]]))
        elif action == "message":
            jobs.append(self.plain_job(target, False, 1))
        else:
            jobs.append(Job("resolve", 2, targets=[target], target=target, min_valid=0))
        self.waited_for_claim_runs_out(target)
        for job in jobs:
            if job.kind != "notes" or job.notes:
                self.run(job)
        if action == "flip":
            self.change(target, "restore")
        # Settled with the held job, when it has ended (a failure on a key wins over a nudge).
        return [job for job in jobs if job.kind != "notes" or job.notes]

    # --- the properties ---

    def check_step(self) -> None:
        self.check_stream()
        for ks in self.keys.values():
            if not ks.target.watched:
                continue
            record = self.record(ks.target)
            owner = record.get("claimOwner") if record else None
            if owner is not None:
                if owner in ks.allowed_owners or self.ddb_faulted & {None, ks.target}:
                    ks.allowed_owners.add(str(owner))  # a dead holder's, or a release a fault defeated
                else:
                    self.violated("claim-left", f"{ks.target.pk}: a claim nobody holds: {record}")
                continue
            if ks.nudged:
                problem = self.untrue(ks, record, strict=False)
                if problem:
                    self.violated(f"stale-after-nudge:{problem[0]}", f"{ks.target.pk}: {problem[1]}")

    def untrue(self, ks: KeyState, record: dict[str, Any] | None, *, strict: bool) -> tuple[str, str] | None:
        """How the record fails to describe S3's current state of the key: (kind, why), or None when it does.
        Kinds: ``gone-but-<status>``, ``no-record``, ``other-version``, ``failed`` (a retryable failure at
        the end), ``status``, ``expired``, ``url-bytes``, ``kie-bytes``."""
        now = self.s3_now(ks.target)
        where = f"S3 {now[:2] if now else 'has no current version'}, record {record}"
        if now is None:
            if record is None:
                return ("no-record", where) if strict and ks.had_status else None
            if record.get("status") == "DELETED" and "downloadUrl" not in record:
                return None
            return f"gone-but-{str(record.get('status')).lower()}", f"the object is gone: {where}"
        version_id, etag, body = now
        if record is None:
            return "no-record", f"no record: {where}"
        if (record.get("versionId"), record.get("etag")) != (version_id, etag):
            return "other-version", f"another version: {where}"
        status = record.get("status")
        if status == "FAILED":
            return (
                ("failed", f"failed: {where}") if strict and record.get("errorKind") != "permanent" else None
            )
        if status != "UPLOADED":
            return "status", f"status {status}: {where}"
        if strict:
            if int(record.get("expiresAt", 0)) <= time.time():
                return "expired", f"the URL has expired: {where}"
            served = requests.get(str(record.get("downloadUrl")), timeout=10).content
            return None if served == body else ("url-bytes", f"the URL serves {served[:60]!r}: {where}")
        stored = self.world.kie.stored(str(record.get("filePath")))
        return None if stored == body else ("kie-bytes", f"kie.ai holds {stored!r:.60}: {where}")

    def check_stream(self) -> None:
        """Each new stream record: published exactly when it changes something, ids unique, rev + 1."""
        while True:
            got = self.streams.get_records(ShardIterator=type(self).shard_iterator, Limit=1000)
            type(self).shard_iterator = got["NextShardIterator"]
            if not got.get("Records"):
                return
            for stream_record in got["Records"]:
                self.check_stream_record(stream_record)

    def check_stream_record(self, stream_record: dict[str, Any]) -> None:
        dynamodb = stream_record["dynamodb"]
        new, old = item_of(dynamodb.get("NewImage")), item_of(dynamodb.get("OldImage"))
        pk = str((new or old or {}).get("pk"))
        ks = self.by_pk.get(pk)
        if ks is None:
            return  # a late write of an earlier history would show as a failure there
        if not ks.target.watched:
            self.violated("unwatched-record", f"{pk} was written: {new}")
            return
        self.note(
            f"table {self.short(ks.target)} {stream_record['eventName']} rev {(new or {}).get('rev')} "
            + " ".join(
                f"{name}={str((new or {}).get(name))[:12]}"
                for name in TRACED
                if (new or {}).get(name) is not None
            )
        )
        if stream_record["eventName"] == "REMOVE" or new is None:
            ks.had_status, ks.published = False, None
            return
        if new.get("modelEdit") != (old or {}).get("modelEdit"):
            return  # the model's own edit (the clock moved on, a lease ran out)
        expected_rev = int((old or {}).get("rev", 0)) + 1
        if new.get("rev") != expected_rev:
            self.violated("revision", f"{pk}: a write moved rev {(old or {}).get('rev')} → {new.get('rev')}")
        self.check_published(stream_record, ks, old, new)
        if new.get("status"):
            ks.had_status = True
        self.check_image(ks, old, new)

    def check_published(
        self, stream_record: dict[str, Any], ks: KeyState, old: dict[str, Any] | None, new: dict[str, Any]
    ) -> None:
        """The publisher announces exactly the writes that change something, each under a new eventId."""
        pk = ks.target.pk
        dynamodb = stream_record["dynamodb"]
        created = dynamodb.get("ApproximateCreationDateTime")
        lambda_record = {
            **stream_record,
            "eventSourceARN": self.stream_arn,
            "dynamodb": {
                **dynamodb,
                "ApproximateCreationDateTime": getattr(created, "timestamp", time.time)(),
            },
        }
        change = publisher.change_of(lambda_record)
        expected = changes_something(old, new)
        if (change is not None) != expected:
            self.violated("published", f"{pk}: published {change} for {old} → {new}")
        if change is not None:
            event_id = str(change.detail.get("eventId"))
            if event_id in self.event_ids:
                self.violated("event-id", f"{pk}: eventId {event_id} published twice (rev {new.get('rev')})")
            self.event_ids.add(event_id)
            fields = ("status", "versionId", "etag", "downloadUrl")
            if any(change.detail.get(name) != new.get(name) for name in fields[:3]):
                self.violated("published", f"{pk}: detail {change.detail} for {new}")
            ks.published = tuple(new.get(name) for name in fields)

    def check_image(self, ks: KeyState, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        """UPLOADED names a version that existed, whose bytes kie.ai holds; DELETED needs a delete."""
        pk = ks.target.pk
        if new.get("status") == "UPLOADED" and (old is None or changes_something(old, new)):
            version = (str(new.get("versionId")), str(new.get("etag")))
            stored = self.world.kie.stored(str(new.get("filePath")))
            if version not in ks.versions:
                self.violated("uploaded-version", f"{pk}: {version} was never put ({new})")
            elif stored is None or md5(stored) != version[1] or len(stored) != new.get("size"):
                self.violated("uploaded-bytes", f"{pk}: kie.ai holds {stored!r} for {version}")
        if new.get("status") == "DELETED" and (old or {}).get("status") != "DELETED" and not ks.deleted_ever:
            tag = "deleted" if ks.put_ever else "deleted-never-existed"
            if ks.version_removed:
                tag = "deleted-after-version-removal"
            self.violated(tag, f"{pk}: DELETED although the key was never deleted ({new})")

    # --- the end of a history ---

    def teardown(self) -> None:
        try:
            if not self.broken:
                with self.step():
                    self.converge()
                self.final_checks()
        finally:
            self.hold.disarm()
            self.disarm_faults()
            errors = forget_requests(self.proxy)
            if errors and not self.broken:
                raise AssertionError(f"the fault proxy's callbacks failed: {errors!r}")

    def converge(self) -> None:
        """What the rest of the world does: leases run out, owed messages come back, the operator backfills
        what was lost, the keep-alive schedule runs."""
        for _ in range(25):  # notifications still on their way (ministack sends them from threads)
            if not self.collect():
                time.sleep(0.02)
        for _ in range(4):
            self.deliver_owed(0, everything=True)
            if not self.owed and all(n.acknowledged or n.lost for n in self.notes):
                break
        else:
            pending = [n.body for n in self.notes if not n.acknowledged and not n.lost]
            self.violated("never-acknowledged", f"still failing after 4 rounds: {self.owed} {pending}")
        for ks in self.keys.values():
            record = self.record(ks.target) if ks.target.watched else None
            if ks.target.watched and (ks.lost or ks.purged or (record and record.get("claimOwner"))):
                self.lease_runs_out(ks.target)
                job = self.plain_job(ks.target, False, 0)
                self.run(job)
                self.settle(job)
        job = Job("refresh", 0, within=0)
        self.run(job)
        self.settle(job)
        if job.answer is None or job.answer.get("failed") or job.answer.get("left") or "error" in job.answer:
            self.violated("final-refresh", f"the keep-alive round answered {job.answer}")

    def final_checks(self) -> None:
        self.check_stream()
        for ks in self.keys.values():
            target = ks.target
            if not target.watched:
                continue
            record = self.record(target)
            problem = self.untrue(ks, record, strict=True)
            if problem:
                self.violated(f"final-state:{problem[0]}", f"{target.pk}: {problem[1]}")
            if record and any(name in record for name in ("claimOwner", "claimUntil", "claimWaits")):
                self.violated("final-claim", f"{target.pk}: a claim is left: {record}")
            if record and record.get("status"):
                last = tuple(record.get(name) for name in ("status", "versionId", "etag", "downloadUrl"))
                if ks.published != last:
                    self.violated(
                        "final-published", f"{target.pk}: last published {ks.published}, record {last}"
                    )
        self.check_unwatched()

    def check_unwatched(self) -> None:
        """No object outside WATCHED_OBJECTS reached kie.ai, S3 (through the function) or the table."""
        outside = [t for t in self.targets if not t.watched]
        for target in outside:
            if self.record(target) is not None:
                self.violated("unwatched-record", f"{target.pk} has a record")
            for seen in self.proxy.log:
                if (seen.service == "s3" and (seen.resource, seen.key) == (target.bucket, target.key)) or (
                    seen.service == "dynamodb" and seen.key == target.pk
                ):
                    self.violated("unwatched-read", f"{target.pk}: the function sent {seen}")
                    break
        names = {(t.bucket, t.key) for t in outside}
        for call in self.world.kie.calls[self.kie_calls_before :]:
            if _fileurl_target((call.body or {}).get("fileUrl")) in names:
                self.violated("unwatched-upload", f"kie.ai was asked to fetch {call.body}")


def eventbridge_of(note: Note) -> dict[str, Any]:
    """The EventBridge event S3 sends for the same change as a notification record."""
    record = note.record
    obj = record["s3"]["object"]
    bucket, key = record["s3"]["bucket"]["name"], unquote_plus(obj["key"])
    version = obj.get("versionId")
    if record["eventName"].startswith("ObjectCreated"):
        return f.eventbridge_object_created(
            bucket,
            key,
            size=int(obj.get("size") or 0),
            etag=str(obj.get("eTag") or ""),
            version_id=version,
            sequencer=obj["sequencer"],
        )
    marker = record["eventName"].endswith("DeleteMarkerCreated")
    return f.eventbridge_object_deleted(
        bucket,
        key,
        version_id=version,
        sequencer=obj["sequencer"],
        deletion_type="Delete Marker Created" if marker else "Permanently Deleted",
    )


# --- the test -----------------------------------------------------------------------------------------------


@pytest.fixture
def model_world(world: World, fault_proxy: FaultProxy, ministack: local.Server, kie: KieEmulator) -> World:
    """The world with the model's table (a stream, NEW_AND_OLD_IMAGES), WATCHED_OBJECTS, a queue for S3's
    notifications of all three buckets, and three containers built behind the fault proxy."""
    direct = {"endpoint_url": ministack.endpoint_url}
    ddb, s3, sqs = (boto3.client(name, **direct) for name in ("dynamodb", "s3", "sqs"))
    definition = records_table_definition(TABLE)
    definition["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    stream_arn = ddb.create_table(**definition)["TableDescription"]["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams", **direct)
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    rules = [{"bucket": b, "prefix": WATCHED_PREFIX} for b in (BUCKET, VERSIONED)]
    world.env(
        TABLE_NAME=TABLE,
        WATCHED_OBJECTS=json.dumps(rules),
        KIE_TIMEOUT_SECONDS=str(KIE_TIMEOUT),
        KIE_MAX_ATTEMPTS="3",
    )
    queue_url = sqs.create_queue(QueueName="model-notifications")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    for bucket in (BUCKET, VERSIONED, OTHER):
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": events}]},
        )
    # Wide enough for deliveries to overlap; a scripted timeout stalls past the function's call timeout.
    kie.set_faults(latency_seconds=0.05, timeout_seconds=KIE_STALL, trickle_interval_seconds=0.004)
    hold = Hold()
    fault_proxy.add(Rule(None, None, Action(before=hold.wait), when=hold.before_request, times=None))
    fault_proxy.add(Rule(None, None, Action(after=hold.wait), when=hold.after_request, times=None))
    kie.on_fetch(hold.on_fetch, times=None)
    kie.after_fetch(hold.after_fetch, times=None)

    Histories.world, Histories.proxy, Histories.hold = world, fault_proxy, hold
    Histories.s3, Histories.sqs, Histories.ddb, Histories.streams = s3, sqs, ddb, streams
    Histories.queue_url, Histories.stream_arn, Histories.event_ids = queue_url, stream_arn, set()
    Histories.shard_iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    config = Config.from_env()
    Histories.containers = (build_processor(config), build_processor(config), build_processor(config))
    Histories.started_at, Histories.timings, Histories.tolerated = time.monotonic(), {}, {}
    while got := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages"):
        for message in got:  # the s3:TestEvents
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return world


@pytest.mark.parametrize("shard", range(SHARDS))
def test_every_history_keeps_the_record_true(model_world: World, shard: int) -> None:
    """``MODEL_SHARDS`` > 1 (``make model``, with pytest-xdist's ``-n``): each shard runs its share of the
    histories in a worker of its own, against servers of its own."""
    location = os.path.dirname(os.path.abspath(uploader.__file__))
    print(f"uploader under test: {location}")
    if EXPECT_UPLOADER:
        assert location == os.path.abspath(EXPECT_UPLOADER), f"testing {location}, not {EXPECT_UPLOADER}"
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if SHRINK else [])
    run_state_machine_as_test(
        Histories,
        settings=settings(
            max_examples=max(1, EXAMPLES // SHARDS + (shard < EXAMPLES % SHARDS)),
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            phases=phases,
            report_multiple_bugs=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
    for count, first in Histories.tolerated.values():
        warnings.warn(f"known defect seen {count} times (MODEL_TOLERATE): {first}", stacklevel=1)
    if os.environ.get("MODEL_PROFILE") == "1":
        for name, (count, seconds) in sorted(Histories.timings.items(), key=lambda kv: -kv[1][1]):
            print(f"{name:24} {count:6} steps {seconds:9.1f} s {seconds / count:7.2f} s/step")


pytestmark = [
    pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning"),
    # A history takes seconds (S3's clock, kie.ai's answers, faults' backoffs): more than the suite's 900 s
    # for the thousands of make model and make mutants, and the five minutes Hypothesis may spend shrinking.
    pytest.mark.timeout(900 + 60 * EXAMPLES),
]
