"""Bad input fails alone: property-based tests (hypothesis) over random and malformed SQS bodies and S3
records mixed with valid ones.

Most examples run at the parsing level (no network, thousands of them); a smaller number run the handler
end to end against ministack and the kie.ai emulator. The properties:

* one message per SQS record, in order, whatever the bodies: the batch never fails as a whole;
* every valid body names exactly its object; every malformed one carries a short, printable reason;
* end to end: ``batchItemFailures`` names exactly the malformed messages, each with a "message rejected"
  log line giving its reason, and every valid object is uploaded with its own bytes.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import factories as f
from tests.factories import BUCKET, World, failures
from uploader.events import parse_event
from uploader.handler import logger as handler_logger

# --- strategies ---------------------------------------------------------------------------------------

#: Any JSON value, nested a little.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
bucket_names = st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True)
#: Object keys: any text S3 accepts (no surrogates), short enough to keep examples readable.
keys = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
#: Keys for the end-to-end part: printable, so that they are also fine as file names at kie.ai.
printable_keys = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Cf", "Zl", "Zp")), min_size=1, max_size=30
).filter(lambda k: k.strip() != "")
sequencers = st.from_regex(r"[0-9A-F]{16,20}", fullmatch=True)

def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _valid_bucket(name: str) -> bool:
    allowed = all(c.islower() or c.isdigit() or c in ".-" for c in name)
    return 3 <= len(name) <= 63 and name.isascii() and allowed


SHAPES = ("notification", "sns", "eventbridge", "plain", "s3Uri", "destination")


def valid_body(shape: str, bucket: str, key: str, sequencer: str = "0A1B2C3D4E5F6789") -> dict[str, Any]:
    """A body of an accepted shape naming ``s3://bucket/key``."""
    notification = f.s3_notification(f.s3_record(bucket, key, sequencer=sequencer))
    if shape == "notification":
        return notification
    if shape == "sns":
        return f.sns_wrapped(notification)
    if shape == "eventbridge":
        return f.eventbridge_object_created(bucket, key, sequencer=sequencer)
    if shape == "plain":
        return f.plain_message(bucket, key)
    if shape == "s3Uri":
        return {"s3Uri": f"s3://{bucket}/{key}"}
    # What a failed direct invocation leaves in the DLQ (and `kie-uploader redrive` sends back).
    return {
        "version": "1.0",
        "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": notification,
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "responsePayload": {"errorType": "RetryNeededError"},
    }


@st.composite
def valid_bodies(draw: st.DrawFn, key_strategy: st.SearchStrategy[str] = keys) -> tuple[str, tuple[str, str]]:
    """(body text, (bucket, key)) of a valid message."""
    bucket, key = draw(bucket_names), draw(key_strategy)
    shape = draw(st.sampled_from(SHAPES))
    return json.dumps(valid_body(shape, bucket, key, draw(sequencers))), (bucket, key)


def _record_with(field: str, value: Any) -> Any:
    """An S3 notification body whose record's ``s3.<field path>`` is ``value``."""

    def build(bucket: str, key: str) -> str:
        record = f.s3_record(bucket, key)
        if field == "eventSource":
            record["eventSource"] = value
        elif field == "bucket":
            record["s3"]["bucket"]["name"] = value
        else:
            record["s3"]["object"][field] = value
        return json.dumps(f.s3_notification(record))

    return build


def _sns_with_message(message: str) -> Any:
    return lambda bucket, key: json.dumps(f.sns_wrapped({}) | {"Message": message})


def _no_shape(extra: dict[str, Any]) -> Any:
    reserved = {"Records", "source", "s3Uri", "bucket", "key", "Type", "Event", "requestContext"}
    body = {k: v for k, v in extra.items() if k not in reserved} | {"hello": "world"}
    return lambda bucket, key: json.dumps(body)


non_json_text = st.text(max_size=80).filter(lambda t: not _is_json(t))
#: Builders ``(bucket, key) -> body`` of bodies that cannot name an object: each must be rejected.
_malformed_builders = st.one_of(
    non_json_text.map(lambda text: lambda bucket, key: text),
    json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: lambda bucket, key: json.dumps(v)),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3).map(_no_shape),
    st.text(max_size=70).filter(lambda b: not _valid_bucket(b)).map(lambda b: _record_with("bucket", b)),
    st.just(_record_with("key", "")),
    st.integers(1025, 1500).map(lambda n: _record_with("key", "k" * n)),
    st.text(max_size=20).map(lambda v: _record_with("sequencer", v + "g")),  # "g" is no hex digit
    st.text(max_size=10).filter(lambda v: v != "aws:s3").map(lambda v: _record_with("eventSource", v)),
    json_values.filter(lambda v: not isinstance(v, list) or not v).map(
        lambda v: lambda bucket, key: json.dumps({"Records": v})
    ),
    st.text(max_size=40).filter(lambda t: not _is_json(t)).map(_sns_with_message),
    # json's decoder recurses per level: this once raised RecursionError and failed the whole batch.
    st.integers(2_000, 50_000).map(lambda n: lambda bucket, key: "[" * n),
    st.integers(2_000, 20_000).map(lambda n: _sns_with_message("{\"a\":" * n)),
    json_values.filter(lambda v: not isinstance(v, str)).map(
        lambda v: lambda bucket, key: json.dumps({"bucket": bucket, "key": v})
    ),
    st.sampled_from(["", 0, [], {}, False]).map(
        lambda v: lambda bucket, key: json.dumps({"bucket": bucket, "key": key, "versionId": v})
    ),
    st.sampled_from(["s3://{b}", "https://{b}/{k}", "s3:/{b}/{k}"]).map(
        lambda form: lambda bucket, key: json.dumps({"s3Uri": form.format(b=bucket, k=key)})
    ),
    json_values.map(lambda v: lambda bucket, key: json.dumps({"requestContext": {}, "requestPayload": v})),
)


@st.composite
def malformed_bodies(draw: st.DrawFn) -> str:
    """A body that cannot name an object (each builder above makes one kind of mistake)."""
    return str(draw(_malformed_builders)(draw(bucket_names), draw(keys)))


@st.composite
def mutated_bodies(draw: st.DrawFn) -> str:
    """A valid body with one field replaced by any JSON value: may or may not still be valid."""
    body = valid_body(draw(st.sampled_from(SHAPES)), draw(bucket_names), draw(keys))
    paths = list(_paths(body))
    path = draw(st.sampled_from(paths))
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = draw(json_values)
    return json.dumps(body)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Any:
    if isinstance(value, dict):
        for name, child in value.items():
            yield (*prefix, name)
            yield from _paths(child, (*prefix, name))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from _paths(child, (*prefix, index))


#: One entry of a batch: ("valid", body, (bucket, key)) | ("malformed", body, None) | ("any", body, None).
entries = st.one_of(
    valid_bodies().map(lambda v: ("valid", v[0], v[1])),
    malformed_bodies().map(lambda b: ("malformed", b, None)),
    mutated_bodies().map(lambda b: ("any", b, None)),
    st.text(max_size=200).map(lambda b: ("any", b, None)),
)


def assert_readable(reason: str | None) -> None:
    """A reason an operator can read in a log line: one short printable line."""
    assert isinstance(reason, str) and reason.strip(), reason
    assert len(reason) <= 300, reason
    assert reason.isprintable(), repr(reason)


# --- parsing level: thousands of examples, no network --------------------------------------------------


@settings(max_examples=1000, deadline=None)
@given(batch=st.lists(entries, min_size=1, max_size=10))
def test_an_sqs_batch_of_any_bodies_is_read_message_by_message(batch: list[tuple[str, str, Any]]) -> None:
    records = [f.sqs_record(body, message_id=f"m{i}") for i, (_, body, _) in enumerate(batch)]

    parsed = parse_event(f.sqs_event(*records))

    assert parsed.source == "sqs"
    assert [m.message_id for m in parsed.messages] == [r["messageId"] for r in records]
    for (kind, _, expected), message in zip(batch, parsed.messages, strict=True):
        if kind == "valid":
            assert message.problem is None
            assert [(ref.bucket, ref.key) for ref in message.objects] == [expected]
        elif kind == "malformed":
            assert message.objects == ()
            assert_readable(message.problem)
        elif message.problem is not None:
            assert message.objects == ()
            assert_readable(message.problem)


@settings(max_examples=300, deadline=None)
@given(
    first=valid_bodies(),
    others=st.lists(
        st.one_of(
            valid_bodies().map(lambda v: json.loads(v[0])),
            json_values,
            st.builds(lambda r, v: {**r, "s3": v}, st.just(f.s3_record("photos", "x")), json_values),
        ),
        max_size=9,
    ),
)
def test_a_direct_s3_event_with_bad_records_is_read_record_by_record(
    first: tuple[str, tuple[str, str]], others: list[Any]
) -> None:
    bucket, key = first[1]
    records = [f.s3_record(bucket, key), *[_as_record(other) for other in others]]

    parsed = parse_event(f.s3_notification(*records))

    assert parsed.source == "s3"
    assert [m.message_id for m in parsed.messages] == [f"record-{i}" for i in range(len(records))]
    assert [(ref.bucket, ref.key) for ref in parsed.messages[0].objects] == [(bucket, key)]
    for message in parsed.messages[1:]:
        if message.problem is not None:
            assert message.objects == ()
            assert_readable(message.problem)


def _as_record(value: Any) -> Any:
    # An S3 event notification body's own record, when the value is one; anything else as it is.
    if isinstance(value, dict) and isinstance(value.get("Records"), list) and value["Records"]:
        return value["Records"][0]
    return value


# --- end to end: the handler against ministack and the emulator ---------------------------------------

_example = itertools.count()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batch=st.lists(
        st.one_of(
            st.tuples(st.just("valid"), st.sampled_from(SHAPES), printable_keys),
            st.tuples(st.just("malformed"), malformed_bodies(), st.none()),
        ),
        min_size=1,
        max_size=10,
    ),
)
def test_the_handler_fails_only_the_malformed_messages_and_uploads_the_rest(
    world: World,
    caplog: pytest.LogCaptureFixture,
    batch: list[tuple[str, str, str | None]],
) -> None:
    run = next(_example)
    bodies: list[Any] = []
    objects: dict[str, bytes] = {}
    for index, (kind, shape_or_body, key) in enumerate(batch):
        if kind == "valid":
            assert key is not None
            full_key = f"prop{run}/{index}/{key}"
            content = f"object {run}/{index}: {key}".encode()
            facts = world.put(full_key, content)
            objects[full_key] = content
            sequencer = world.next_sequencer()
            body = valid_body(shape_or_body, BUCKET, full_key, sequencer)
            if shape_or_body in ("notification", "sns", "destination"):
                # Name the object as S3 would: its real ETag and size (the record checks them).
                _replace_record(body, f.s3_record(BUCKET, full_key, sequencer=sequencer, **facts))
            elif shape_or_body == "eventbridge":
                body = f.eventbridge_object_created(
                    BUCKET, full_key, size=facts["size"], etag=facts["etag"], sequencer=sequencer
                )
            bodies.append(body)
        else:
            bodies.append(shape_or_body)
    event, ids = world.sqs(*bodies)
    malformed = [ids[i] for i, (kind, _, _) in enumerate(batch) if kind == "malformed"]
    caplog.clear()

    answer = world.invoke(event)

    assert failures(answer) == malformed
    rejected = {
        line["messageId"]: line["reason"]
        for line in _log_lines(caplog)
        if line["message"] == "message rejected"
    }
    assert set(rejected) == set(malformed)
    for reason in rejected.values():
        assert_readable(reason)
    for full_key, content in objects.items():
        stored = world.record(full_key)
        assert stored is not None and stored["status"] == "UPLOADED", (full_key, stored)
        assert world.kie.stored(stored["filePath"]) == content


def _replace_record(body: dict[str, Any], record: dict[str, Any]) -> None:
    if "Records" in body:
        body["Records"] = [record]
    elif "requestPayload" in body:
        body["requestPayload"] = f.s3_notification(record)
    else:  # SNS: the notification is a JSON string inside the envelope
        body["Message"] = json.dumps(f.s3_notification(record))


def _log_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = handler_logger.registered_formatter
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == "kie-uploader"]
