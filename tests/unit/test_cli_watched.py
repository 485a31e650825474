"""The CLI knows what the stack watches (issue 21): its buckets and, in each, the keys of its prefix/suffix
rules, from the function's own ``WATCHED_OBJECTS`` (``kie_uploader.function.watch``). ``backfill`` enqueues
only watched keys, ``status`` says "not watched", ``info`` shows the notify mode and the rules, ``list``,
``status``, ``url``, ``refresh`` and ``backfill`` refuse a bucket the stack does not serve (exit 2, one line),
``url`` renders the function's refusals as errors, and ``forget`` removes what older versions wrote for
mistakes. No network: AWS is botocore's Stubber (a call the code makes but the test did not expect fails it).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from kie_uploader.cli import aws as cli_aws
from kie_uploader.cli import entry, formats, info, main
from kie_uploader.cli.args import S3Uri
from kie_uploader.cli.aws import StackResources, watching_of
from kie_uploader.cli.errors import EXIT_ERROR, EXIT_NO, EXIT_OK, CliError

BUCKET = "photos"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/kie-queue"
TABLE = "records"
PREFIXED = json.dumps([{"bucket": BUCKET, "prefix": "incoming/", "suffix": ""}])
OUTPUTS = {
    "BucketNames": BUCKET,
    "QueueUrl": QUEUE_URL,
    "DeadLetterQueueUrl": QUEUE_URL + "-dlq",
    "TableName": TABLE,
    "FunctionName": "uploader",
}


def client(service: str) -> Any:
    return boto3.client(
        service, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def stack(outputs: dict[str, str] | None = None) -> StackResources:
    return StackResources.from_outputs("KieUploader", outputs or OUTPUTS)


# --- where the rules come from --------------------------------------------------------------------


def test_the_rules_are_the_functions_watched_objects() -> None:
    watching = watching_of(stack(), {"WATCHED_OBJECTS": PREFIXED, "ALLOWED_BUCKETS": BUCKET})
    assert watching.source == "the function's WATCHED_OBJECTS"
    assert watching.buckets == (BUCKET,)
    assert watching.watches(BUCKET, "incoming/a.txt") and not watching.watches(BUCKET, "other/x.txt")
    assert watching.outside(BUCKET, "other/x.txt") == "outside prefix incoming/"
    assert watching.outside(BUCKET, "incoming/a.txt") is None
    assert watching.to_json() == [{"bucket": BUCKET, "prefix": "incoming/", "suffix": ""}]


def test_an_older_function_watches_every_key_of_its_allowed_buckets_or_of_the_stacks_buckets() -> None:
    older = watching_of(stack(), {"ALLOWED_BUCKETS": f"{BUCKET},other"})
    assert older.buckets == (BUCKET, "other") and older.source.startswith("the function's ALLOWED_BUCKETS")
    assert older.outside(BUCKET, "anything/at/all") is None
    unknown = watching_of(stack(), None, why="AccessDeniedException")
    assert unknown.buckets == (BUCKET,) and unknown.keys_of(BUCKET) == "every key"
    assert unknown.source == "the uploader's buckets (every key: AccessDeniedException)"


def test_a_malformed_watched_objects_is_one_line() -> None:
    with pytest.raises(CliError, match="the function of stack KieUploader has a malformed WATCHED_OBJECTS"):
        watching_of(stack(), {"WATCHED_OBJECTS": "incoming/"})


def test_several_rules_and_suffixes_say_which_keys() -> None:
    rules = [
        {"bucket": BUCKET, "prefix": "a/", "suffix": ".png"},
        {"bucket": BUCKET, "prefix": "b/"},
        {"bucket": "other", "suffix": ".jpg"},
    ]
    watching = watching_of(stack(), {"WATCHED_OBJECTS": json.dumps(rules)})
    assert watching.outside(BUCKET, "c/x.png") == "outside prefix a/, suffix .png or prefix b/"
    assert watching.outside("other", "x.png") == "outside suffix .jpg"
    assert watching.outside(BUCKET, "a/x.png") is None and watching.outside(BUCKET, "b/x.txt") is None


def test_a_prefix_with_nothing_watched_under_it_is_refused_and_one_that_overlaps_is_not() -> None:
    watching = watching_of(stack(), {"WATCHED_OBJECTS": PREFIXED})
    for uri in ("s3://photos/", "s3://photos/inc", "s3://photos/incoming/", "s3://photos/incoming/2025/"):
        watching.require_prefix(S3Uri.parse(uri))
    with pytest.raises(CliError) as refused:
        watching.require_prefix(S3Uri.parse("s3://photos/other/"))
    assert str(refused.value) == (
        "s3://photos/other/: not watched: outside prefix incoming/ (stack KieUploader watches nothing under "
        "it)"
    )
    with pytest.raises(CliError, match=r"^bucket wrong-bucket is not watched by stack KieUploader \(its "):
        watching.require_prefix(S3Uri.parse("s3://wrong-bucket/"))


def test_the_cli_reads_the_rules_from_the_functions_configuration() -> None:
    aws = cli_aws.Aws(region="us-east-1")
    aws.__dict__["stack"] = stack()
    lambda_ = aws.__dict__["lambda_"] = client("lambda")
    with Stubber(lambda_) as stub:
        stub.add_response(
            "get_function_configuration",
            {"Environment": {"Variables": {"WATCHED_OBJECTS": PREFIXED}}},
            {"FunctionName": "uploader"},
        )
        assert aws.watching.outside(BUCKET, "other/x.txt") == "outside prefix incoming/"
        assert aws.watching is aws.watching  # read once per command
        stub.assert_no_pending_responses()


def test_without_permission_to_read_the_function_every_key_of_its_buckets_is_taken_as_watched(
    capsys: pytest.CaptureFixture[str],
) -> None:
    aws = cli_aws.Aws(region="us-east-1")
    aws.__dict__["stack"] = stack()
    lambda_ = aws.__dict__["lambda_"] = client("lambda")
    with Stubber(lambda_) as stub:
        stub.add_client_error("get_function_configuration", "AccessDeniedException", "not allowed")
        assert aws.watching.keys_of(BUCKET) == "every key"
    assert capsys.readouterr().err == (
        "kie-uploader: note: the function's configuration could not be read: AccessDeniedException; every "
        "key of the stack's buckets is taken as watched\n"
    )


# --- the commands, against stubbed clients -----------------------------------------------------------


class Stubs:
    """The stubbed clients of one command run; every response a test adds must be used."""

    def __init__(self) -> None:
        self.clients = {name: client(name) for name in ("s3", "sqs", "dynamodb", "cloudformation")}
        self.clients["lambda_"] = client("lambda")
        self.stubs = {name: Stubber(c) for name, c in self.clients.items()}

    def __getattr__(self, name: str) -> Stubber:
        return self.__dict__["stubs"][name]


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubs]:
    """``main`` against the stack above, its function watching ``incoming/`` of ``photos``."""
    made = Stubs()

    class StubbedAws(cli_aws.Aws):
        def __init__(self, region: str | None = None, stack_name: str = "KieUploader", **_: Any) -> None:
            super().__init__("us-east-1", stack_name)
            self.__dict__.update(made.clients, stack=stack())
            self.__dict__["watching"] = watching_of(self.stack, {"WATCHED_OBJECTS": PREFIXED})

    monkeypatch.setattr(entry, "Aws", StubbedAws)
    with ExitStack() as stack_:
        for stub in made.stubs.values():
            stack_.enter_context(stub)
        yield made
        for stub in made.stubs.values():
            stub.assert_no_pending_responses()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _objects(*keys: str) -> dict[str, Any]:
    return {
        "Contents": [{"Key": k, "Size": 0 if k.endswith("/") else 3, "ETag": f'"{k}"'} for k in keys],
        "IsTruncated": False,
    }


def test_backfill_enqueues_only_watched_keys_and_says_how_many_it_skipped_and_why(
    stubs: Stubs, capsys: pytest.CaptureFixture[str]
) -> None:
    # Reported: `backfill s3://my-photos/` enqueued other/x.txt (outside incoming/): it became UPLOADED.
    stubs.s3.add_response("head_bucket", {}, {"Bucket": BUCKET})
    stubs.s3.add_response(
        "list_objects_v2",
        _objects("incoming/", "incoming/a.txt", "incoming/b.txt", "other/x.txt", "other/y.txt"),
        {"Bucket": BUCKET, "Prefix": ""},
    )
    live = {"pk": {"S": "s3://photos/incoming/b.txt"}, "status": {"S": "UPLOADED"},
            "expiresAt": {"N": "9999999999"}, "etag": {"S": "incoming/b.txt"}}  # fmt: skip
    stubs.dynamodb.add_response(
        "batch_get_item",
        {"Responses": {TABLE: [live]}},
        {"RequestItems": {TABLE: {"Keys": [{"pk": {"S": "s3://photos/incoming/a.txt"}},
                                           {"pk": {"S": "s3://photos/incoming/b.txt"}}],
                                  "ProjectionExpression": ANY, "ExpressionAttributeNames": ANY}}},
    )  # fmt: skip
    stubs.sqs.add_response(
        "send_message_batch",
        {"Successful": [{"Id": "0", "MessageId": "m", "MD5OfMessageBody": "x"}], "Failed": []},
        {"QueueUrl": QUEUE_URL,
         "Entries": [{"Id": "0", "MessageBody": '{"bucket": "photos", "key": "incoming/a.txt"}'}]},
    )  # fmt: skip

    code, out, err = run(capsys, "backfill", "s3://photos/")

    assert (code, err) == (EXIT_OK, "")
    assert out == (
        "s3://photos/: 4 objects listed, 2 skipped as not watched (outside prefix incoming/), 1 already "
        "uploaded, 1 enqueued, 0 failed\n"
    )


def test_backfill_json_counts_the_keys_not_watched(stubs: Stubs, capsys: pytest.CaptureFixture[str]) -> None:
    stubs.s3.add_response("head_bucket", {}, {"Bucket": BUCKET})
    stubs.s3.add_response("list_objects_v2", _objects("other/x.txt"), {"Bucket": BUCKET, "Prefix": ""})
    code, out, _ = run(capsys, "backfill", "s3://photos/", "--force", "--json")
    summary = json.loads(out)
    assert code == EXIT_OK
    assert (summary["listed"], summary["notWatched"], summary["enqueued"]) == (1, 1, 0)
    assert summary["notWatchedReason"] == "outside prefix incoming/"


def test_backfill_of_a_prefix_the_stack_does_not_watch_lists_nothing(
    stubs: Stubs, capsys: pytest.CaptureFixture[str]
) -> None:
    stubs.s3.add_response("head_bucket", {}, {"Bucket": BUCKET})
    code, out, err = run(capsys, "backfill", "s3://photos/other/")
    assert (code, out) == (EXIT_ERROR, "")
    assert err == (
        "kie-uploader: error: s3://photos/other/: not watched: outside prefix incoming/ (stack KieUploader "
        "watches nothing under it)\n"
    )


def test_status_of_a_key_outside_the_prefix_says_not_watched(
    stubs: Stubs, capsys: pytest.CaptureFixture[str]
) -> None:
    # Reported: "waiting: put 0 s ago, its event has not been handled yet": no event will ever come.
    stubs.dynamodb.add_response(
        "get_item", {},
        {"TableName": TABLE, "Key": {"pk": {"S": "s3://photos/other/x.txt"}}, "ConsistentRead": True},
    )  # fmt: skip
    code, out, err = run(capsys, "status", "s3://photos/other/x.txt")  # no HeadObject: S3 changes nothing
    assert (code, out, err) == (
        EXIT_NO,
        "s3://photos/other/x.txt: not watched: outside prefix incoming/\n",
        "",
    )

    stubs.dynamodb.add_response("get_item", {})
    code, out, _ = run(capsys, "status", "s3://photos/other/x.txt", "--json")
    assert json.loads(out) == {
        "pk": "s3://photos/other/x.txt",
        "state": "NOT_WATCHED",
        "stateDescription": "not watched: outside prefix incoming/",
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["list", "s3://wrong-bucket/"],
        ["list", "--prefix", "s3://wrong-bucket/a/", "--status", "FAILED"],
        ["list", "--expiring-within", "1h", "s3://wrong-bucket/"],
        ["status", "s3://wrong-bucket/a"],
        ["url", "s3://wrong-bucket/a"],
        ["refresh", "s3://photos/incoming/", "s3://wrong-bucket/"],
    ],
)
def test_a_bucket_the_stack_does_not_serve_is_one_line_naming_its_buckets(
    stubs: Stubs, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    # Reported: `list s3://wrong-bucket/` printed "0 records" and exited 0. No AWS call is made (a stub
    # without responses fails any call).
    code, out, err = run(capsys, *argv)
    assert (code, out) == (EXIT_ERROR, "")
    assert err == (
        "kie-uploader: error: bucket wrong-bucket is not watched by stack KieUploader (its buckets: photos)\n"
    )


class FakeLambda:
    """The function's resolve answers (``invoke``); remembers the requests."""

    def __init__(self, *results: dict[str, Any]) -> None:
        self.results = list(results)
        self.requests: list[Any] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.requests.append(json.loads(kwargs["Payload"]))
        return {
            "StatusCode": 200,
            "Payload": io.BytesIO(json.dumps({"results": [self.results.pop(0)]}).encode()),
        }


@pytest.fixture
def function(stubs: Stubs, monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeLambda]:
    """The stubbed stack, its function answering resolve requests with the given results."""

    def install(*results: dict[str, Any]) -> FakeLambda:
        fake = FakeLambda(*results)
        stubbed = entry.Aws  # the stubs fixture's

        class WithFunction(stubbed):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.__dict__["lambda_"] = fake

        monkeypatch.setattr(entry, "Aws", WithFunction)
        return fake

    return install


def _refused(status: str, error: str) -> dict[str, Any]:
    return {"s3Uri": "s3://photos/incoming/nope.txt", "status": status, "downloadUrl": None,
            "expiresAt": None, "uploaded": False, "error": error}  # fmt: skip


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("NOT_FOUND", "no object at this key"),
        ("NOT_WATCHED", "key is outside what this stack watches in bucket 'photos' (suffix .png)"),
    ],
)
def test_url_renders_the_functions_refusals_as_one_line_errors(
    function: Callable[..., FakeLambda], capsys: pytest.CaptureFixture[str], status: str, error: str
) -> None:
    # Reported: `url s3://$B/nope.txt` left a SKIPPED record; the function now writes nothing and answers
    # NOT_FOUND (or NOT_WATCHED): the command could not run on that object, exit 2.
    fake = function(_refused(status, error), _refused(status, error))
    code, out, err = run(capsys, "url", "s3://photos/incoming/nope.txt")
    assert (code, out, err) == (
        EXIT_ERROR,
        "",
        f"kie-uploader: error: s3://photos/incoming/nope.txt: {error}\n",
    )
    code, out, _ = run(capsys, "url", "s3://photos/incoming/nope.txt", "--json")
    assert code == EXIT_ERROR and json.loads(out)["status"] == status
    assert len(fake.requests) == 2


def test_url_of_a_key_outside_the_prefix_never_asks_the_function(
    function: Callable[..., FakeLambda], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = function()
    code, out, err = run(capsys, "url", "s3://photos/other/x.txt")
    assert (code, out) == (EXIT_ERROR, "")
    assert err == (
        "kie-uploader: error: s3://photos/other/x.txt: not watched: outside prefix incoming/ (stack "
        "KieUploader never hands it to kie.ai)\n"
    )
    assert fake.requests == []


# --- info: the notify mode and each bucket's prefix/suffix --------------------------------------------

QUEUE_MODE = {"Resources": {
    "QueuePolicy": {"Type": "AWS::SQS::QueuePolicy", "Properties": {"PolicyDocument": {"Statement": [
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sqs:*"},
        {"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage"},
    ]}}},
    "KeepAlivePermission": {"Type": "AWS::Lambda::Permission",
                            "Properties": {"Principal": "events.amazonaws.com"}},
    "KeepAlive": {"Type": "AWS::Events::Rule", "Properties": {"ScheduleExpression": "rate(1 hour)"}},
}}  # fmt: skip
LAMBDA_MODE = {"Resources": {
    "S3Invokes0": {"Type": "AWS::Lambda::Permission", "Properties": {"Principal": "s3.amazonaws.com"}},
    "QueuePolicy": {"Type": "AWS::SQS::QueuePolicy", "Properties": {"PolicyDocument": {"Statement": [
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sqs:*"}]}}},
}}  # fmt: skip
EVENTBRIDGE_MODE = {"Resources": {
    "ObjectEvents": {"Type": "AWS::Events::Rule", "Properties": {"EventPattern": {
        "source": ["aws.s3"], "detail-type": ["Object Created"]}}},
    "QueuePolicy": {"Type": "AWS::SQS::QueuePolicy", "Properties": {"PolicyDocument": {"Statement": {
        "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage"}}}},
}}  # fmt: skip


@pytest.mark.parametrize(
    ("template", "modes"),
    [(QUEUE_MODE, ["queue"]), (LAMBDA_MODE, ["lambda"]), (EVENTBRIDGE_MODE, ["eventbridge"]), ({}, [])],
)
def test_the_notify_mode_is_read_from_what_the_stacks_resources_are(
    template: dict[str, Any], modes: list[str]
) -> None:
    assert info.notify_modes(template) == modes


def _info(stubs: Stubs) -> None:
    """The calls ``info`` makes, answered."""
    described = {"StackName": "KieUploader", "StackStatus": "CREATE_COMPLETE",
                 "CreationTime": datetime(2026, 1, 1),
                 "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in OUTPUTS.items()]}  # fmt: skip
    stubs.cloudformation.add_response("describe_stacks", {"Stacks": [described]})
    stubs.cloudformation.add_response("list_stack_resources", {"StackResourceSummaries": []})
    stubs.cloudformation.add_response(
        "get_template", {"TemplateBody": json.dumps(QUEUE_MODE)}, {"StackName": "KieUploader"}
    )
    stubs.lambda_.add_response("get_function_configuration", {"MemorySize": 256, "Timeout": 120})
    stubs.lambda_.add_response("get_function_concurrency", {})
    stubs.sqs.add_response("get_queue_attributes", {"Attributes": {"QueueArn": "arn:q"}})
    stubs.lambda_.add_response("list_event_source_mappings", {"EventSourceMappings": []})
    stubs.sqs.add_response("get_queue_attributes", {"Attributes": {"VisibilityTimeout": "720"}})
    stubs.sqs.add_response("get_queue_attributes", {"Attributes": {"MessageRetentionPeriod": "1209600"}})


@pytest.mark.parametrize("output", ["table", "json", "tsv"])
def test_info_shows_the_notify_mode_and_each_buckets_prefix_and_suffix(
    stubs: Stubs, capsys: pytest.CaptureFixture[str], output: str
) -> None:
    # Reported: `info` showed neither the notify mode nor the prefix/suffix.
    _info(stubs)
    code, out, err = run(capsys, "info", "--output", output)
    assert (code, err) == (EXIT_OK, "")
    if output == "table":
        lines = out.splitlines()
        start = lines.index("notify: queue (S3 notifications to the queue)")
        assert lines[start + 1 : start + 3] == [
            "watched objects (from the function's WATCHED_OBJECTS)",
            "  photos  prefix incoming/",
        ]
    elif output == "json":
        info = json.loads(out)
        assert info["notify"] == {
            "mode": "queue",
            "description": "S3 notifications to the queue",
            "error": None,
        }
        assert info["watched"] == [{"bucket": "photos", "prefix": "incoming/", "suffix": ""}]
    else:
        # One row per value (name, value), plain values: no JSON in a cell (issue 17, reproduction 5).
        header, *rows = (line.split("\t") for line in out.splitlines())
        assert header == ["name", "value"]
        values = dict(rows)
        assert values["watched.0.bucket"] == "photos" and values["watched.0.prefix"] == "incoming/"
        assert values["notify.mode"] == "queue"


def test_info_says_when_it_cannot_tell_the_notify_mode() -> None:
    lines = info.render_watched(
        {"notify": {"mode": None, "error": "access denied: GetTemplate"}, "watched": [],
         "watchedSource": "x"}
    ).render(None).splitlines()  # fmt: skip
    assert lines[0] == "notify: unknown (access denied: GetTemplate)"
    assert formats.tsv_field(None) == ""


# --- forget: what older versions wrote for mistakes -------------------------------------------------------


def _record(pk: str, status: str, **extra: str) -> dict[str, Any]:
    bucket, _, key = pk.removeprefix("s3://").partition("/")
    item = {"pk": {"S": pk}, "bucket": {"S": bucket}, "key": {"S": key}, "status": {"S": status},
            "rev": {"N": "1"}}  # fmt: skip
    item.update({name: {"S": value} for name, value in extra.items()})
    return item


def _delete(pk: str, status: str) -> dict[str, Any]:
    return {
        "TableName": TABLE,
        "Key": {"pk": {"S": pk}},
        "ConditionExpression": "#s = :s AND attribute_not_exists(claimOwner)",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":s": {"S": status}},
    }


def test_forget_removes_skipped_records_and_failed_ones_of_unserved_buckets_and_keeps_what_changed(
    stubs: Stubs, capsys: pytest.CaptureFixture[str]
) -> None:
    # Reported: a typo left lasting records (`url s3://wrong-bucket/a`: FAILED "not in ALLOWED_BUCKETS";
    # `url s3://$B/nope.txt`: SKIPPED). Older versions' records are removable with one documented command.
    items = [
        _record("s3://photos/nope.txt", "SKIPPED", error="the object does not exist"),
        _record("s3://photos/incoming/typo.txt", "SKIPPED", error="the object does not exist"),
        _record("s3://photos/incoming/busy.txt", "SKIPPED", claimOwner="delivery-1"),  # being processed
        _record("s3://wrong-bucket/a", "FAILED", error="bucket 'wrong-bucket' is not in ALLOWED_BUCKETS"),
        _record("s3://photos/incoming/big.bin", "FAILED", error="too large"),  # a served bucket's: kept
    ]
    scan = {"TableName": TABLE, "FilterExpression": "#s IN (:s0, :s1)",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":s0": {"S": "SKIPPED"}, ":s1": {"S": "FAILED"}},
            "Limit": 1000}  # fmt: skip
    stubs.dynamodb.add_response("scan", {"Items": items}, scan)  # the dry run
    stubs.dynamodb.add_response("scan", {"Items": items}, scan)
    # (the deletes run concurrently: ANY order, each checked by its condition below)
    for _ in range(3):
        stubs.dynamodb.add_response("delete_item", {})
    deleted: list[dict[str, Any]] = []
    stubs.clients["dynamodb"].meta.events.register(
        "provide-client-params.dynamodb.DeleteItem", lambda params, **_: deleted.append(dict(params))
    )

    code, out, err = run(capsys, "forget", "--status", "skipped", "--unserved")
    assert (code, err) == (EXIT_OK, "")
    assert out == (
        "would forget 3 records: 2 SKIPPED (keys without an object); 1 FAILED of buckets the stack does not "
        "serve (wrong-bucket); nothing removed: run it again with --yes to remove them\n"
    )
    assert deleted == []

    code, out, err = run(capsys, "forget", "--status", "SKIPPED", "--unserved", "--yes", "--json")
    assert (code, err) == (EXIT_OK, "")
    assert json.loads(out) == {
        "dryRun": False, "selected": 3, "skipped": 2, "unservedFailed": 1,
        "unservedBuckets": ["wrong-bucket"], "removed": 3, "kept": 0,
    }  # fmt: skip
    assert sorted(deleted, key=lambda p: p["Key"]["pk"]["S"]) == [
        _delete("s3://photos/incoming/typo.txt", "SKIPPED"),
        _delete("s3://photos/nope.txt", "SKIPPED"),
        _delete("s3://wrong-bucket/a", "FAILED"),
    ]


def test_forget_keeps_a_record_that_changed_since_the_scan(
    stubs: Stubs, capsys: pytest.CaptureFixture[str]
) -> None:
    stubs.dynamodb.add_response("scan", {"Items": [_record("s3://photos/incoming/typo.txt", "SKIPPED")]})
    stubs.dynamodb.add_client_error(
        "delete_item", "ConditionalCheckFailedException", "The conditional request failed",
        expected_params=_delete("s3://photos/incoming/typo.txt", "SKIPPED"),
    )  # fmt: skip
    code, out, _ = run(capsys, "forget", "--status", "SKIPPED", "s3://photos/incoming/", "--yes")
    assert (code, out) == (
        EXIT_OK,
        "forgot 0 records of 1: 1 SKIPPED (keys without an object); 1 kept (changed since they were read)\n",
    )


def test_forget_needs_to_be_told_what(stubs: Stubs, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "forget", "--yes")
    assert (code, out) == (EXIT_ERROR, "")
    assert err == "kie-uploader: error: say which records to forget: --status SKIPPED, --unserved, or both\n"
