"""``EventPublisher`` in a small app of its own: a table with a stream, the default bus in one stack and a
bus of its own in another; Template assertions, cdk-nag, and the refusal of a table without a stream."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


@dataclass(frozen=True)
class Synthesized:
    default_bus: Any  # aws_cdk.assertions.Template of the stack publishing on the default bus
    own_bus: Any  # ... of the stack publishing on a bus it creates
    default_template: dict[str, Any]
    own_template: dict[str, Any]
    nag_report: dict[str, Any]
    pattern_json: str


def _stack(app: Any, name: str, *, own_bus: bool) -> tuple[Any, Any]:
    from aws_cdk import Acknowledgment, Stack, Validations
    from aws_cdk import aws_dynamodb as dynamodb
    from aws_cdk import aws_events as events
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_sns as sns

    from kie_uploader.cdk.publisher import EventPublisher

    stack = Stack(app, name, env={"account": "123456789012", "region": "us-east-1"})
    table = dynamodb.Table(
        stack,
        "Records",
        partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
    )
    bus = events.EventBus(stack, "Bus", event_bus_name="kie-objects") if own_bus else None
    topic = sns.Topic(stack, "Alarms", enforce_ssl=True)
    publisher = EventPublisher(
        stack,
        "Events",
        table=table,
        bus=bus,
        code=lambda_.Code.from_inline("def handler(event, context):\n    return None\n"),
        alarm_topic=topic,
    )
    for scope, findings in publisher.acknowledgments().items():
        Validations.of(scope).acknowledge(
            *(Acknowledgment(id=f"AwsSolutions::{rule}", reason=reason) for rule, reason in findings)
        )
    # The test's own table and topic are not the construct's concern.
    Validations.of(table).acknowledge(
        Acknowledgment(id="AwsSolutions::AwsSolutions-DDB3", reason="test table"),
    )
    return stack, publisher


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    from aws_cdk import App, Validations
    from aws_cdk.assertions import Template
    from cdk_nag import AwsSolutionsChecks

    outdir: Path = tmp_path_factory.mktemp("publisher-synth")
    app = App(outdir=str(outdir))
    default_stack, publisher = _stack(app, "PublisherOnDefaultBus", own_bus=False)
    own_stack, _ = _stack(app, "PublisherOnOwnBus", own_bus=True)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    assembly = app.synth()  # an unacknowledged cdk-nag finding raises here

    def template(stack: Any) -> dict[str, Any]:
        artifact = assembly.get_stack_artifact(stack.artifact_id)
        return json.loads((Path(assembly.directory) / artifact.template_file).read_text())

    report_path = outdir / "validation-report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    default_template, own_template = template(default_stack), template(own_stack)
    return Synthesized(
        Template.from_json(default_template),
        Template.from_json(own_template),
        default_template,
        own_template,
        report,
        publisher.event_pattern_json,
    )


def _resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def _logical_id(template: dict[str, Any], resource_type: str, fragment: str = "") -> str:
    [found] = [k for k in _resources(template, resource_type) if fragment in k]
    return found


def test_the_stream_feeds_the_function_with_retries_bisection_and_a_dead_letter_queue(
    synth: Synthesized,
) -> None:
    template = synth.default_template
    table = _logical_id(template, "AWS::DynamoDB::Table")
    dlq = _logical_id(template, "AWS::SQS::Queue", "DeadLetterQueue")

    synth.default_bus.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [table, "StreamArn"]},
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 100,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 10,
            "MaximumRecordAgeInSeconds": 12 * 3600,
            "ParallelizationFactor": 1,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [dlq, "Arn"]}}},
        },
    )
    synth.default_bus.has_resource_properties(
        "AWS::DynamoDB::Table", {"StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"}}
    )
    synth.default_bus.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "uploader.publisher.handler",
            "Environment": {"Variables": {"EVENT_BUS_NAME": "default"}},
        },
    )


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for policy in _resources(template, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_put_events_is_allowed_on_the_default_bus_only(synth: Synthesized) -> None:
    [statement] = [s for s in _statements(synth.default_template) if "events:PutEvents" in _actions(s)]

    assert _actions(statement) == ["events:PutEvents"]
    resource = json.dumps(statement["Resource"])
    assert ":event-bus/default" in resource and '"*"' not in resource


def test_put_events_is_allowed_on_the_given_bus_only(synth: Synthesized) -> None:
    bus = _logical_id(synth.own_template, "AWS::Events::EventBus")
    [statement] = [s for s in _statements(synth.own_template) if "events:PutEvents" in _actions(s)]

    assert _actions(statement) == ["events:PutEvents"]
    assert statement["Resource"] == {"Fn::GetAtt": [bus, "Arn"]}
    synth.own_bus.has_resource_properties(
        "AWS::Lambda::Function",
        {"Environment": {"Variables": {"EVENT_BUS_NAME": {"Ref": bus}}}},
    )


def test_the_role_reads_the_stream_sends_to_its_dlq_and_writes_its_logs_nothing_more(
    synth: Synthesized,
) -> None:
    actions = sorted({a for s in _statements(synth.default_template) for a in _actions(s)})

    assert "events:PutEvents" in actions and "sqs:SendMessage" in actions
    assert {"dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream"} <= set(actions)
    assert not [a for a in actions if a.endswith("*") and not a.startswith("sqs:GetQueue")]
    assert not [a for a in actions if a.startswith(("dynamodb:Put", "dynamodb:Update", "dynamodb:Delete"))]
    everywhere = [s for s in _statements(synth.default_template) if s["Resource"] == "*"]
    assert [_actions(s) for s in everywhere] == [["dynamodb:ListStreams"]]
    roles = _resources(synth.default_template, "AWS::IAM::Role")
    publisher_role = [r for k, r in roles.items() if k.startswith("EventsRole")]
    assert publisher_role and "ManagedPolicyArns" not in publisher_role[0]["Properties"]


def test_an_alarm_on_the_dead_letter_queue_and_one_on_the_iterator_age(synth: Synthesized) -> None:
    template = synth.default_template
    dlq = _logical_id(template, "AWS::SQS::Queue", "DeadLetterQueue")
    topic = _logical_id(template, "AWS::SNS::Topic")
    alarms = _resources(template, "AWS::CloudWatch::Alarm")

    [dlq_alarm] = [
        a for a in alarms.values() if a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    ]
    props = dlq_alarm["Properties"]
    assert props["Namespace"] == "AWS/SQS" and props["Threshold"] == 0
    assert props["ComparisonOperator"] == "GreaterThanThreshold"
    assert props["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}]
    assert props["AlarmActions"] == [{"Ref": topic}]
    [age_alarm] = [a for a in alarms.values() if a["Properties"]["MetricName"] == "IteratorAge"]
    assert age_alarm["Properties"]["Threshold"] == 5 * 60 * 1000


def test_the_dead_letter_queue_is_encrypted_and_kept_two_weeks(synth: Synthesized) -> None:
    synth.default_bus.has_resource_properties(
        "AWS::SQS::Queue", {"SqsManagedSseEnabled": True, "MessageRetentionPeriod": 14 * 24 * 3600}
    )


def test_cdk_nag_finds_nothing_unacknowledged(synth: Synthesized) -> None:
    # app.synth() raised otherwise; the report, when written, lists no violation either.
    violations = [
        v
        for plugin in synth.nag_report.get("pluginReports", [])
        for v in plugin.get("violations", [])
        if any("Events" in r.get("resourceLogicalId", "") for r in v.get("violatingResources", []))
    ]
    assert violations == []


def test_the_example_event_pattern_matches_every_kind(synth: Synthesized) -> None:
    from uploader.publisher import SOURCE, Kind

    pattern = json.loads(synth.pattern_json)

    assert pattern == {"source": [SOURCE], "detail-type": [kind.value for kind in Kind]}


def test_a_table_without_a_stream_is_refused() -> None:
    from aws_cdk import App, Stack
    from aws_cdk import aws_dynamodb as dynamodb
    from aws_cdk import aws_lambda as lambda_

    from kie_uploader.cdk.publisher import EventPublisher, EventPublisherError

    stack = Stack(App(), "NoStream")
    table = dynamodb.Table(
        stack, "Records", partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING)
    )
    with pytest.raises(EventPublisherError, match="NEW_AND_OLD_IMAGES"):
        EventPublisher(stack, "Events", table=table, bus=None, code=lambda_.Code.from_inline("x = 1"))
