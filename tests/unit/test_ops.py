"""The operating and moving commands (``kie_uploader.cli``: info, operating, moving, dlq, messages) without a
network: message decoding, key validation and redaction, and the message
move task (an AWS-only API: ministack answers InvalidAction, so the e2e tests exercise the loop, and the
task's path is checked here against botocore's Stubber, with the requests and answers SQS documents)."""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from kie_uploader.cli import dlq, info, messages, moving, operating, output
from kie_uploader.cli.aws import StackResources
from kie_uploader.cli.errors import EXIT_NO, EXIT_OK, CliError

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/kie-queue"
DLQ_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/kie-dlq"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:kie-queue"
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:kie-dlq"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kie-AbCdEf"
VERSION = "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE"
REAL_EVENTS = Path(__file__).resolve().parents[3] / "shared" / "real-events"


def client(service: str) -> Any:
    return boto3.client(
        service, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


class FakeAws:
    """What the commands use of ``cli_aws.Aws``: the stack's resources and clients (stubbed)."""

    def __init__(self, **clients: Any) -> None:
        self.stack_name = "KieUploader"
        self.stack = StackResources.from_outputs(
            "KieUploader",
            {
                "BucketNames": "photos",
                "QueueUrl": QUEUE_URL,
                "DeadLetterQueueUrl": DLQ_URL,
                "TableName": "records",
                "SecretArn": SECRET_ARN,
                "FunctionName": "uploader",
            },
        )
        self.clients = clients
        self.sqs = clients.get("sqs")
        self.function_name = "uploader"
        self.lambda_ = clients.get("lambda")

    def client(self, service: str) -> Any:
        return self.clients[service]


# --- decoding dead-letter bodies -------------------------------------------------------------------


def objects(body: Any) -> list[tuple[str, str, str]]:
    decoded = messages.decode_body(body if isinstance(body, str) else json.dumps(body))
    assert decoded.problem is None, decoded.problem
    return decoded.objects


def test_decodes_the_plain_message_and_an_s3_uri() -> None:
    assert objects({"bucket": "photos", "key": "a b+c.jpg"}) == [("photos", "a b+c.jpg", "message")]
    assert objects({"s3Uri": "s3://photos/x/y.txt", "force": True}) == [
        ("photos", "x/y.txt", "message (force)")
    ]


def test_decodes_an_s3_notification_with_its_url_encoded_keys() -> None:
    body = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "photos"}, "object": {"key": "My+Documents/r%C3%A9sum%C3%A9.txt"}},
            },
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectRemoved:Delete",
                "s3": {"bucket": {"name": "photos"}, "object": {"key": "a%2Bb"}},
            },
        ]
    }
    assert objects(body) == [
        ("photos", "My Documents/résumé.txt", "ObjectCreated:Put"),
        ("photos", "a+b", "ObjectRemoved:Delete"),
    ]


def test_decodes_sns_eventbridge_and_a_lambda_destination_record() -> None:
    plain = json.dumps({"bucket": "photos", "key": "k"})
    assert messages.decode_body(json.dumps({"Type": "Notification", "Message": plain})).shape == "sns/plain"
    event = {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": "photos"}, "object": {"key": "new+file.txt"}},
    }
    assert objects(event) == [("photos", "new file.txt", "Object Created")]
    destination = {
        "requestContext": {"condition": "RetriesExhausted"},
        "requestPayload": event,
        "responsePayload": {
            "errorType": "RetryNeededError",
            "errorMessage": "1 of 1 records need another try",
        },
    }
    decoded = messages.decode_body(json.dumps(destination))
    assert decoded.objects == [("photos", "new file.txt", "Object Created")]
    assert decoded.note == "RetriesExhausted: RetryNeededError: 1 of 1 records need another try"


def test_an_unreadable_body_is_a_problem_not_an_exception() -> None:
    assert messages.decode_body("hello world").problem == "not JSON: 'hello world'"
    assert messages.decode_body("[1]").problem == "JSON but not an object (list)"
    assert (
        messages.decode_body('{"Records": [{"eventSource": "aws:s3"}]}').problem
        == "unreadable message (KeyError)"
    )
    assert messages.decode_body('{"other": 1}').shape == "unknown"
    test_event = messages.decode_body(json.dumps({"Event": "s3:TestEvent"}))
    assert test_event.note == "s3:TestEvent (nothing to upload)"


def _published(name: str) -> Any:
    path = REAL_EVENTS / name
    if not path.exists():
        pytest.skip(f"{path} is not here (shared/ beside the repository)")
    return json.loads(path.read_text(encoding="utf-8-sig"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("powertools-lambda-python/s3SqsEvent.json", "s3-notification"),
        ("powertools-lambda-python-pr4069/sqs_s3_event.json", "s3-notification"),
        ("powertools-lambda-python-pr4069/sqs_sns_s3_event.json", "sns/s3-notification"),
        ("powertools-lambda-python-pr4069/sqs_rawsns_s3_event.json", "s3-notification"),
        ("powertools-lambda-python-pr4069/sqs_eb_s3_event.json", "eventbridge"),
        ("umccr-data-portal-apis/sqs-s3-object-created-versioned.json", "s3-notification"),
    ],
)
def test_decodes_the_bodies_of_published_sqs_events(name: str, expected: str) -> None:
    """Each SQS record's body is what a dead-letter message of that delivery holds."""
    for record in _published(name)["Records"]:
        decoded = messages.decode_body(record["body"])
        assert decoded.problem is None and decoded.shape == expected
        assert decoded.objects and all(bucket and key for bucket, key, _ in decoded.objects)


@pytest.mark.parametrize(
    "name",
    [
        "aws-lambda-go/s3-event.json",
        "aws-lambda-dotnet/s3-event.json",
        "powertools-lambda-python/s3EventBridgeNotificationObjectCreatedEvent.json",
        "aws-lambda-dotnet/cloudwatchevents-s3objectdeleted.json",
        "arbor-kafka-bind/sns-s3-object-created-put.json",
    ],
)
def test_decodes_published_events_as_whole_bodies(name: str) -> None:
    """A failed direct invocation leaves its whole event in the DLQ; an SNS or EventBridge delivery too."""
    decoded = messages.decode_body(json.dumps(_published(name)))
    assert decoded.problem is None and decoded.objects


def test_decodes_happy_face_key_as_s3_sent_it() -> None:
    assert objects(_published("aws-lambda-go/s3-event.json"))[0][1] == "Happy Face.jpg"


# --- set-key ---------------------------------------------------------------------------------------


def test_the_key_is_one_line_without_whitespace_and_errors_never_contain_it() -> None:
    assert operating.validate_key("abc-123\n") == "abc-123"
    assert operating.validate_key("abc-123\r\n") == "abc-123"
    assert operating.validate_key("abc-123") == "abc-123"
    for text, reason in [
        ("", "no key"),
        ("\n", "no key"),
        ("sekrit-1\nsekrit-2\n", "one line"),
        ("sekrit 1", "whitespace"),
        ("sekrit" * 1000, "no kie.ai key"),
    ]:
        with pytest.raises(CliError, match=reason) as caught:
            operating.validate_key(text)
        assert "sekrit" not in str(caught.value)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_key_comes_from_stdin_or_from_a_prompt_without_echo_on_a_terminal() -> None:
    assert (
        operating.read_key(io.StringIO("from-stdin\n"), prompt=lambda _: pytest.fail("no prompt"))
        == "from-stdin"
    )
    prompts: list[str] = []

    def prompt(text: str) -> str:
        prompts.append(text)
        return "typed"

    assert operating.read_key(Tty("ignored"), prompt=prompt) == "typed"
    assert prompts == ["kie.ai API key (not echoed): "]

    def ctrl_d(text: str) -> str:
        raise EOFError

    with pytest.raises(CliError, match="no key"):
        operating.read_key(Tty(""), prompt=ctrl_d)


def test_put_key_writes_the_json_shape_and_redacts_an_error_that_echoes_the_key() -> None:
    secrets = client("secretsmanager")
    with Stubber(secrets) as stub:
        stub.add_client_error("get_secret_value", "ResourceNotFoundException", "no AWSCURRENT version")
        stub.add_client_error(
            "put_secret_value",
            "ValidationException",
            "SecretString 'sekrit-key-42' is not valid",
            expected_params={"SecretId": SECRET_ARN, "SecretString": json.dumps({"apiKey": "sekrit-key-42"})},
        )
        with pytest.raises(CliError) as caught:
            operating.put_key(FakeAws(secretsmanager=secrets), SECRET_ARN, "sekrit-key-42")  # type: ignore[arg-type]
    assert "sekrit-key-42" not in str(caught.value) and "[redacted]" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_put_key_keeps_the_other_fields_of_a_json_secret_and_skips_the_same_key() -> None:
    secrets = client("secretsmanager")
    with Stubber(secrets) as stub:
        stub.add_response("get_secret_value", {"SecretString": '{"apiKey": "old", "team": "media"}'})
        stub.add_response(
            "put_secret_value",
            {"VersionId": VERSION},
            {"SecretId": SECRET_ARN, "SecretString": json.dumps({"apiKey": "new-key", "team": "media"})},
        )
        stub.add_response("get_secret_value", {"SecretString": "new-key"})  # a raw key, the same
        aws: Any = FakeAws(secretsmanager=secrets)
        assert operating.put_key(aws, SECRET_ARN, "new-key") == (VERSION, True)
        assert operating.put_key(aws, SECRET_ARN, "new-key") == (None, False)
        stub.assert_no_pending_responses()


def test_next_steps_say_retry_failed_recovers_and_how_long_in_flight_messages_wait() -> None:
    steps = "\n".join(operating.next_steps(dead_letter=3, in_flight=2, visibility_timeout=720))
    assert "kie-uploader retry-failed" in steps and "recovers" in steps
    assert "kie-uploader redrive" in steps and "3 messages" in steps
    assert "2 messages in flight on the queue come back by themselves within 720 s" in steps
    quiet = "\n".join(operating.next_steps(dead_letter=0, in_flight=0, visibility_timeout=720))
    assert "no redrive needed" in quiet and "in flight" not in quiet


# --- info ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("KIE_API_KEY", True),
        ("GITHUB_TOKEN", True),
        ("DB_PASSWORD", True),
        ("SECRET", True),
        ("KIE_API_KEY_SECRET_ID", False),
        ("SOME_SECRET_ARN", False),
        ("TABLE_NAME", False),
        ("KIE_UPLOAD_PATH", False),
        ("MAX_OBJECT_BYTES", False),
        ("SECRET_CACHE_SECONDS", False),  # a duration, not a secret
        ("AWS_SECRET_ACCESS_KEY", True),
        ("KEY_MATERIAL", True),  # cautious: a secret word not followed by a harmless one
        ("SIGNING_KEY_ID", False),
    ],
)
def test_secret_environment_variables(name: str, secret: bool) -> None:
    assert info.is_secret_variable(name) is secret


def test_dashboard_links_per_partition() -> None:
    assert info.dashboard_url("eu-west-1", "KieUploaderDashboard-1A2B") == (
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        "#dashboards/dashboard/KieUploaderDashboard-1A2B"
    )
    assert info.dashboard_url("cn-north-1", "d").startswith("https://console.amazonaws.cn/cloudwatch/")
    assert info.dashboard_url("us-gov-west-1", "a b").endswith("#dashboards/dashboard/a%20b")


def test_info_never_shows_a_secret_variables_value() -> None:
    lambda_, sqs = client("lambda"), client("sqs")
    with Stubber(lambda_) as functions, Stubber(sqs) as queues:
        functions.add_response(
            "get_function_configuration",
            {
                "MemorySize": 512,
                "Timeout": 120,
                "Environment": {"Variables": {"KIE_API_KEY": "sekrit-value", "TABLE_NAME": "records"}},
            },
            {"FunctionName": "uploader"},
        )
        functions.add_response("get_function_concurrency", {"ReservedConcurrentExecutions": 4})
        queues.add_response("get_queue_attributes", {"Attributes": {"QueueArn": QUEUE_ARN}})
        functions.add_response(
            "list_event_source_mappings",
            {"EventSourceMappings": [{"EventSourceArn": QUEUE_ARN, "State": "Enabled", "BatchSize": 10}]},
        )
        settings = info._function_settings(FakeAws(sqs=sqs, **{"lambda": lambda_}))  # type: ignore[arg-type]
    assert settings["environment"] == {"KIE_API_KEY": "(secret, not shown)", "TABLE_NAME": "records"}
    assert settings["reservedConcurrency"] == 4 and settings["memoryMb"] == 512
    shown = {
        "stack": "KieUploader",
        "region": "us-east-1",
        "status": "CREATE_COMPLETE",
        "uploader": "KieUploader",
        "uploaders": ["KieUploader", "Reports"],
        "resources": {"QueueUrl": {"value": QUEUE_URL, "description": "Send messages here"}},
        "dashboards": [{"name": "Dash", "url": info.dashboard_url("us-east-1", "Dash")}],
        "function": settings,
        "queue": {
            "visibilityTimeoutSeconds": 720,
            "maxReceiveCount": 5,
            "deadLetterRetentionSeconds": 1209600,
        },
    }
    text = info.render_info(shown).render(None, redact=output.redact)
    assert "sekrit" not in text
    assert re.search("reserved concurrency +4", text) and f"QueueUrl  {QUEUE_URL}" in text
    assert "\nuploader KieUploader (of 2: KieUploader, Reports)\n" in text
    assert "queue: visibility timeout 720 s" in text and "after 5 receives" in text


# --- dlq peek: the messages are made visible again, whatever happens ----------------------------------


def _message(i: int) -> dict[str, Any]:
    return {
        "MessageId": f"m{i}",
        "ReceiptHandle": f"rh{i}",
        "Body": json.dumps({"bucket": "photos", "key": f"k{i}"}),
        "Attributes": {"SentTimestamp": "1700000000000", "ApproximateReceiveCount": "3"},
    }


def test_peek_makes_every_received_message_visible_again_even_when_a_receive_fails() -> None:
    sqs = client("sqs")
    with Stubber(sqs) as stub:
        stub.add_response("receive_message", {"Messages": [_message(0), _message(1)]})
        stub.add_client_error("receive_message", "OverLimit", "too many in flight")
        stub.add_response(
            "change_message_visibility_batch",
            {"Successful": [{"Id": "0"}, {"Id": "1"}], "Failed": []},
            {
                "QueueUrl": DLQ_URL,
                "Entries": [
                    {"Id": "0", "ReceiptHandle": "rh0", "VisibilityTimeout": 0},
                    {"Id": "1", "ReceiptHandle": "rh1", "VisibilityTimeout": 0},
                ],
            },
        )
        with pytest.raises(ClientError):
            dlq.peek(FakeAws(sqs=sqs), DLQ_URL, 10)  # type: ignore[arg-type]
        stub.assert_no_pending_responses()


def test_peek_shows_a_message_once_when_sqs_hands_it_out_twice() -> None:
    sqs = client("sqs")
    with Stubber(sqs) as stub:
        stub.add_response("receive_message", {"Messages": [_message(0)]})
        stub.add_response("receive_message", {"Messages": [_message(0), _message(1)]})
        stub.add_response("receive_message", {})
        stub.add_response("change_message_visibility_batch", {"Successful": [], "Failed": []})
        peeked = dlq.peek(FakeAws(sqs=sqs), DLQ_URL, 10)  # type: ignore[arg-type]
    assert [m["MessageId"] for m in peeked] == ["m0", "m1"]


# --- redrive: SQS's message move task (AWS only) ----------------------------------------------------


def _arns(stub: Stubber) -> None:
    stub.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": DLQ_ARN}},
        {"QueueUrl": DLQ_URL, "AttributeNames": ["QueueArn"]},
    )
    stub.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": QUEUE_ARN}},
        {"QueueUrl": QUEUE_URL, "AttributeNames": ["QueueArn"]},
    )


def _task(handle: str, status: str, moved: int, to_move: int = 13, **extra: Any) -> dict[str, Any]:
    return {
        "TaskHandle": handle,
        "Status": status,
        "SourceArn": DLQ_ARN,
        "DestinationArn": QUEUE_ARN,
        "ApproximateNumberOfMessagesMoved": moved,
        "ApproximateNumberOfMessagesToMove": to_move,
        **extra,
    }


def _redrive(aws: Any, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    args = argparse.Namespace(max=None, json="--json" in argv)
    code = moving.cmd_redrive(aws, args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_redrive_starts_a_move_task_from_the_dlq_to_the_queue_and_reports_what_it_moved(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(moving, "MOVE_TASK_POLL_SECONDS", 0.0)
    sqs = client("sqs")
    with Stubber(sqs) as stub:
        _arns(stub)
        stub.add_response("list_message_move_tasks", {"Results": []}, {"SourceArn": DLQ_ARN, "MaxResults": 1})
        stub.add_response(
            "start_message_move_task",
            {"TaskHandle": "task-1"},
            {"SourceArn": DLQ_ARN, "DestinationArn": QUEUE_ARN},
        )
        listed = {"SourceArn": DLQ_ARN, "MaxResults": 10}
        stub.add_response("list_message_move_tasks", {"Results": [_task("task-1", "RUNNING", 4)]}, listed)
        stub.add_response("list_message_move_tasks", {"Results": [_task("task-1", "COMPLETED", 13)]}, listed)
        code, out, err = _redrive(FakeAws(sqs=sqs), capsys)
        stub.assert_no_pending_responses()
    assert code == EXIT_OK, err
    assert out == "moved 13 messages from the dead-letter queue to the queue (SQS message move task)\n"


def test_redrive_follows_a_task_that_is_already_running_instead_of_starting_another(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(moving, "MOVE_TASK_POLL_SECONDS", 0.0)
    sqs = client("sqs")
    with Stubber(sqs) as stub:
        _arns(stub)
        stub.add_response("list_message_move_tasks", {"Results": [_task("old", "RUNNING", 2)]})
        stub.add_response(
            "list_message_move_tasks",
            {"Results": [_task("old", "COMPLETED", 9, to_move=9), _task("older", "COMPLETED", 50)]},
        )
        code, out, err = _redrive(FakeAws(sqs=sqs), capsys, "--json")
        stub.assert_no_pending_responses()  # no StartMessageMoveTask was made
    assert code == EXIT_OK
    shown = json.loads(out)
    assert (shown["moved"], shown["failed"], shown["method"], shown["errors"]) == (9, 0, "move-task", [])
    assert (shown["taskHandle"], shown["taskStatus"]) == ("old", "COMPLETED")
    assert "already running" in err


def test_a_failed_move_task_reports_only_what_it_moved(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(moving, "MOVE_TASK_POLL_SECONDS", 0.0)
    sqs = client("sqs")
    with Stubber(sqs) as stub:
        _arns(stub)
        stub.add_response("list_message_move_tasks", {"Results": []})
        stub.add_response("start_message_move_task", {"TaskHandle": "t"})
        stub.add_response(
            "list_message_move_tasks",
            {"Results": [_task("t", "FAILED", 5, FailureReason="AWS.SimpleQueueService.KmsAccessDenied")]},
        )
        code, out, err = _redrive(FakeAws(sqs=sqs), capsys)
    assert code == EXIT_NO
    assert out.startswith(
        "moved 5 messages from the dead-letter queue to the queue (SQS message move task), 8 "
    )
    assert "the move task ended FAILED: AWS.SimpleQueueService.KmsAccessDenied" in err


@pytest.mark.parametrize("code", ["UnsupportedOperation", "InvalidAction", "AccessDenied"])
def test_without_the_move_task_api_redrive_falls_back_to_the_loop(
    code: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sqs = client("sqs")
    with Stubber(sqs) as stub:
        _arns(stub)
        stub.add_client_error("list_message_move_tasks", code, "not here")
        assert moving.move_task(FakeAws(sqs=sqs)) is None  # type: ignore[arg-type]
        # The loop: one message received, sent, deleted; then an empty receive.
        stub.add_response("receive_message", {"Messages": [_message(0)]})
        stub.add_response("send_message_batch", {"Successful": [_ok("0")], "Failed": []})
        stub.add_response("delete_message_batch", {"Successful": [{"Id": "0"}], "Failed": []})
        stub.add_response("receive_message", {})
        result = moving.move_loop(FakeAws(sqs=sqs), None)  # type: ignore[arg-type]
    assert (result.moved, result.failed, result.method) == (1, 0, "loop")
    assert f"no SQS message move task here ({code})" in capsys.readouterr().err


def _ok(entry_id: str) -> dict[str, str]:
    return {"Id": entry_id, "MessageId": "new", "MD5OfMessageBody": "0" * 32}


def test_another_error_of_the_move_task_is_not_hidden_by_the_loop() -> None:
    sqs = client("sqs")
    with Stubber(sqs) as stub:
        _arns(stub)
        stub.add_response("list_message_move_tasks", {"Results": []})
        stub.add_client_error("start_message_move_task", "ResourceNotFoundException", "no such queue")
        with pytest.raises(ClientError):
            moving.move_task(FakeAws(sqs=sqs))  # type: ignore[arg-type]


def test_the_loop_reports_a_message_sent_but_not_deleted(capsys: pytest.CaptureFixture[str]) -> None:
    sqs = client("sqs")
    with Stubber(sqs) as stub:
        stub.add_response("receive_message", {"Messages": [_message(0), _message(1)]})
        stub.add_response(
            "send_message_batch",
            {
                "Successful": [_ok("0")],
                "Failed": [{"Id": "1", "SenderFault": False, "Code": "InternalError"}],
            },
        )
        stub.add_response(
            "delete_message_batch",
            {
                "Successful": [],
                "Failed": [{"Id": "0", "SenderFault": False, "Code": "ReceiptHandleIsInvalid"}],
            },
        )
        code = moving.cmd_redrive(FakeAws(sqs=sqs), argparse.Namespace(max=2, json=False))  # type: ignore[arg-type]
    captured = capsys.readouterr()
    assert code == EXIT_NO
    assert captured.out == (
        "moved 1 message from the dead-letter queue to the queue, 1 failed (left in the dead-letter queue)\n"
    )
    assert "send failed: InternalError" in captured.err and "sent but not deleted" in captured.err


PRESIGNED = "https://photos.s3.amazonaws.com/k?X-Amz-Signature=abcdef&X-Amz-Expires=900"


def test_the_peek_shows_whole_uris_and_redacts_a_presigned_url_in_an_error() -> None:
    uri = "s3://photos/" + "deep/" * 30 + "file.txt"  # longer than any terminal: never cut
    entry = {
        "messageId": "0f1e2d3c",
        "ageSeconds": 3700,
        "earlierReceives": 5,
        "shape": "sns/s3-notification",
        "note": None,
        "problem": None,
        "objects": [
            {
                "uri": uri,
                "event": "ObjectCreated:Put",
                "record": {
                    "status": "FAILED",
                    "errorKind": "transient",
                    "retryable": True,
                    "error": f"GET {PRESIGNED} timed out",
                },
            }
        ],
    }
    text = dlq.render_peek([entry], depth=40).render(None, redact=output.redact)
    assert text.splitlines() == [
        "message 0f1e2d3c: 1h 1m old, received 5 times before, SNS/an S3 notification",
        f"  {uri}  ObjectCreated:Put  FAILED  [transient, retryable] GET https://photos.s3.amazonaws.com/k?[redacted]"
        " timed out",
        "1 message of about 40 peeked; all left in the dead-letter queue, visible again",
    ]
