"""The synthesized template does what the issue asks: triggers, retries, data safety, least privilege, alarms.

Two synths (see conftest): the defaults, and every context option changed (existing buckets, notify=queue,
an existing secret, an alarm e-mail, x86_64, ...).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from kie_uploader.settings import KIE_TIMEOUT_SECONDS
from tests.infra.conftest import (
    ALARM_EMAIL,
    CUSTOM_CONTEXT,
    EXISTING_BUCKETS,
    EXISTING_KEY_ARN,
    EXISTING_SECRET_ARN,
    Synth,
)
from uploader import watch
from uploader.config import VARIABLES, Config
from uploader.publisher import SOURCE, Kind

POWERTOOLS = {
    "POWERTOOLS_SERVICE_NAME": "kie-uploader",
    "POWERTOOLS_METRICS_NAMESPACE": "KieUploader",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}
DATA_SERVICES = ("s3:", "dynamodb:", "sqs:", "secretsmanager:", "kms:")


# --- helpers -------------------------------------------------------------------------------------------


def uploader_function(synth: Synth) -> tuple[str, dict[str, Any]]:
    found = {
        logical_id: resource
        for logical_id, resource in synth.resources("AWS::Lambda::Function").items()
        if resource["Properties"].get("Handler") == "uploader.handler.handler"
    }
    assert len(found) == 1, sorted(found)
    return next(iter(found.items()))


def environment(synth: Synth) -> dict[str, Any]:
    return dict(uploader_function(synth)[1]["Properties"]["Environment"]["Variables"])


def role_statements(synth: Synth, role_logical_id: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def function_statements(synth: Synth) -> list[dict[str, Any]]:
    role = uploader_function(synth)[1]["Properties"]["Role"]["Fn::GetAtt"][0]
    return role_statements(synth, role)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resources_for(statements: list[dict[str, Any]], action: str) -> list[Any]:
    found: list[Any] = []
    for statement in statements:
        if statement["Effect"] == "Allow" and action in as_list(statement["Action"]):
            found += as_list(statement["Resource"])
    return found


def placeholder(value: Any) -> str:
    """Stand-in for a CloudFormation intrinsic, shaped like what it resolves to."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(placeholder(part) for part in parts)
    if "Ref" in value:
        return f"ref-{value['Ref'].lower()}"[:60]
    raise AssertionError(f"unexpected intrinsic {value}")


def logical_id_of(synth: Synth, resource_type: str) -> str:
    return synth.only(resource_type)[0]


# --- the function --------------------------------------------------------------------------------------


def test_function_runs_the_uploader_handler_on_python_3_12_arm64_with_active_tracing(
    default_synth: Synth,
) -> None:
    default_synth.assertions.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "uploader.handler.handler",
            "Runtime": "python3.12",
            "Architectures": ["arm64"],
            "TracingConfig": {"Mode": "Active"},
            "MemorySize": 256,
        },
    )


def test_function_timeout_leaves_room_for_kie_retries(default_synth: Synth) -> None:
    timeout = uploader_function(default_synth)[1]["Properties"]["Timeout"]
    # kie.ai downloads for up to 30 s; one call may take KIE_TIMEOUT_SECONDS, and a retry must still fit.
    assert timeout >= 2 * KIE_TIMEOUT_SECONDS + 30
    assert environment(default_synth)["KIE_TIMEOUT_SECONDS"] == str(KIE_TIMEOUT_SECONDS) == "40"


@pytest.mark.parametrize("synth_name", ["default_synth", "custom_synth"])
def test_function_environment_is_exactly_the_variables_the_function_reads(
    synth_name: str, request: pytest.FixtureRequest
) -> None:
    synth: Synth = request.getfixturevalue(synth_name)
    # KIE_API_KEY is the local-only alternative to the secret: a deployed function never gets the key itself.
    expected = (set(VARIABLES) - {"KIE_API_KEY"}) | set(POWERTOOLS)
    assert {"WATCHED_OBJECTS", "ALLOWED_BUCKETS"} <= expected  # ALLOWED_BUCKETS too, for older functions
    assert set(environment(synth)) == expected


def test_function_environment_passes_the_functions_own_validation(default_synth: Synth) -> None:
    env = {name: placeholder(value) for name, value in environment(default_synth).items()}
    config = Config.from_env(env)
    assert config.api_key is None  # the key comes from the secret only
    assert config.allowed_buckets is not None and len(config.allowed_buckets) == 1
    assert config.kie_base_url == "https://api.kie.ai"
    assert config.max_concurrency == 10
    assert {name: env[name] for name in POWERTOOLS} == POWERTOOLS
    # Every key of the one bucket the stack creates (no prefix, no suffix).
    assert config.watched is not None and len(config.watched.rules) == 1
    assert config.watched.watches(next(iter(config.watched.buckets)), "private/payroll.csv")


def test_function_environment_carries_the_context_options(custom_synth: Synth) -> None:
    env = {name: placeholder(value) for name, value in environment(custom_synth).items()}
    config = Config.from_env(env)
    assert config.allowed_buckets == frozenset(EXISTING_BUCKETS)
    # Imported by name: no token, the rules are a plain JSON string, one per bucket with the stack's filters.
    raw = environment(custom_synth)[watch.VARIABLE]
    assert raw == (
        '[{"bucket":"existing-bucket-one","prefix":"incoming/","suffix":".png"},'
        '{"bucket":"existing-bucket-two","prefix":"incoming/","suffix":".png"}]'
    )
    assert config.watched == watch.Watched.of_buckets(EXISTING_BUCKETS, "incoming/", ".png")
    assert config.watched.refusal("existing-bucket-one", "private/payroll.csv") is not None
    assert config.api_key_secret_id == EXISTING_SECRET_ARN
    assert config.kie_base_url == CUSTOM_CONTEXT["kieBaseUrl"]
    assert config.kie_upload_path == CUSTOM_CONTEXT["kieUploadPath"]
    assert config.kie_retention_seconds == int(CUSTOM_CONTEXT["retentionSeconds"])
    assert config.max_object_bytes == int(CUSTOM_CONTEXT["maxObjectBytes"])
    assert config.presign_expires_seconds == int(CUSTOM_CONTEXT["presignExpiresSeconds"])
    assert env["KIE_TIMEOUT_SECONDS"] == CUSTOM_CONTEXT["kieTimeoutSeconds"] == "25"
    assert config.kie_timeout_seconds == 25.0
    # One kie.ai call ends before the function's timeout (functionTimeoutSeconds=60) does.
    assert uploader_function(custom_synth)[1]["Properties"]["Timeout"] == 60 > config.kie_timeout_seconds
    custom_synth.assertions.has_resource_properties(
        "AWS::Lambda::Function",
        {"Handler": "uploader.handler.handler", "Architectures": ["x86_64"], "MemorySize": 512},
    )
    custom_synth.assertions.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 14})


def test_function_environment_points_at_the_stacks_own_table_secret_and_bucket(default_synth: Synth) -> None:
    env = environment(default_synth)
    assert env["TABLE_NAME"] == {"Ref": logical_id_of(default_synth, "AWS::DynamoDB::Table")}
    assert env["KIE_API_KEY_SECRET_ID"] == {
        "Ref": logical_id_of(default_synth, "AWS::SecretsManager::Secret")
    }
    source = source_bucket_id(default_synth)
    assert env["ALLOWED_BUCKETS"] == {"Ref": source}
    # The created bucket's name is a token: CloudFormation puts it into the JSON (no prefix, no suffix).
    assert env[watch.VARIABLE] == {
        "Fn::Join": ["", ['[{"bucket":"', {"Ref": source}, '","prefix":"","suffix":""}]']]
    }
    name = placeholder({"Ref": source})
    assert watch.parse(placeholder(env[watch.VARIABLE])) == watch.Watched.of_buckets([name])


def test_function_logs_to_its_own_log_group_with_retention(default_synth: Synth) -> None:
    log_group = default_synth.ids["log_group"]
    props = uploader_function(default_synth)[1]["Properties"]
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": log_group}
    assert default_synth.template["Resources"][log_group]["Properties"]["RetentionInDays"] == 30
    # The event publisher writes to a log group of its own, never to the uploader's.
    publisher = default_synth.template["Resources"][default_synth.ids["publisher.function"]]["Properties"]
    assert publisher["LoggingConfig"]["LogGroup"] == {"Ref": default_synth.ids["publisher.log_group"]}
    assert default_synth.ids["publisher.log_group"] != log_group
    # So does the distributed backfill's child, and its state machine logs to one more.
    backfill = default_synth.template["Resources"][default_synth.ids["backfill.function"]]["Properties"]
    assert backfill["LoggingConfig"]["LogGroup"] == {"Ref": default_synth.ids["backfill.function_log_group"]}
    assert set(default_synth.resources("AWS::Logs::LogGroup")) == {
        log_group,
        default_synth.ids["publisher.log_group"],
        default_synth.ids["backfill.function_log_group"],
        default_synth.ids["backfill.log_group"],
    }


@pytest.mark.parametrize(
    ("synth_name", "days"),
    [("default_synth", 30), ("custom_synth", int(CUSTOM_CONTEXT["recordRetentionDays"]))],
)
def test_record_retention_seconds_is_record_retention_days_in_seconds(
    synth_name: str, days: int, request: pytest.FixtureRequest
) -> None:
    synth: Synth = request.getfixturevalue(synth_name)
    assert environment(synth)["RECORD_RETENTION_SECONDS"] == str(days * 86_400)
    assert (
        Config.from_env(
            {name: placeholder(value) for name, value in environment(synth).items()}
        ).record_retention_seconds
        == days * 86_400
    )


# --- keep-alive ----------------------------------------------------------------------------------------


def test_keep_alive_schedules_refresh_rounds_of_the_uploader_function(custom_synth: Synth) -> None:
    rule_id = custom_synth.ids["keep_alive_rule"]
    assert set(custom_synth.resources("AWS::Events::Rule")) == {rule_id}
    rule = custom_synth.template["Resources"][rule_id]["Properties"]
    assert CUSTOM_CONTEXT["keepAliveScheduleMinutes"] == "15"
    assert rule["ScheduleExpression"] == "rate(15 minutes)"
    assert rule["State"] == "ENABLED"
    assert "EventPattern" not in rule
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [uploader_function(custom_synth)[0], "Arn"]}
    assert json.loads(target["Input"]) == {
        "refresh": {
            "prefixes": ["s3://existing-bucket-one/incoming/", "s3://existing-bucket-two/reports/"],
            "expiringWithinSeconds": 1800,
            "verifyWindowSeconds": 900,  # the schedule's interval: each URL is checked once
        }
    }
    assert CUSTOM_CONTEXT["refreshAheadSeconds"] == "1800"
    # A missed round is made up by the next one: EventBridge does not retry it.
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 0}


def test_without_keep_alive_there_is_no_schedule(default_synth: Synth) -> None:
    assert "keep_alive_rule" not in default_synth.ids
    assert not default_synth.resources("AWS::Events::Rule")
    assert not default_synth.resources("AWS::Lambda::Permission")


# --- queues and triggers -------------------------------------------------------------------------------


def queue_ids(synth: Synth) -> tuple[str, str]:
    """(work queue, dead-letter queue) logical ids of the uploader's own queues, by construct. The stack's
    only other queue is the event publisher's dead-letter queue (when events are on)."""
    work, dead = synth.ids["queue"], synth.ids["dead_letter_queue"]
    publisher_dlq = (
        {synth.ids["publisher.dead_letter_queue"]} if "publisher.dead_letter_queue" in synth.ids else set()
    )
    assert set(synth.resources("AWS::SQS::Queue")) == {work, dead} | publisher_dlq
    assert "RedrivePolicy" in synth.template["Resources"][work]["Properties"]
    assert "RedrivePolicy" not in synth.template["Resources"][dead]["Properties"]
    return work, dead


def test_queue_event_source_reports_batch_item_failures_with_bounded_concurrency(
    default_synth: Synth,
) -> None:
    queue, _ = queue_ids(default_synth)
    default_synth.assertions.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [queue, "Arn"]},
            "FunctionName": {"Ref": uploader_function(default_synth)[0]},
            "BatchSize": 10,
            "MaximumBatchingWindowInSeconds": Match.any_value(),
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": 2},
        },
    )


def test_max_concurrency_comes_from_context(custom_synth: Synth) -> None:
    custom_synth.assertions.has_resource_properties(
        "AWS::Lambda::EventSourceMapping", {"ScalingConfig": {"MaximumConcurrency": 5}}
    )


def test_queue_redrives_to_the_dead_letter_queue_after_five_receives(default_synth: Synth) -> None:
    queue, dead = queue_ids(default_synth)
    redrive = default_synth.template["Resources"][queue]["Properties"]["RedrivePolicy"]
    assert redrive == {"deadLetterTargetArn": {"Fn::GetAtt": [dead, "Arn"]}, "maxReceiveCount": 5}


def test_queue_visibility_timeout_is_at_least_six_function_timeouts(default_synth: Synth) -> None:
    queue, _ = queue_ids(default_synth)
    visibility = default_synth.template["Resources"][queue]["Properties"]["VisibilityTimeout"]
    timeout = uploader_function(default_synth)[1]["Properties"]["Timeout"]
    assert visibility >= 6 * timeout


def test_both_queues_are_encrypted_and_refuse_plain_http(default_synth: Synth) -> None:
    for queue_id in queue_ids(default_synth):
        assert default_synth.template["Resources"][queue_id]["Properties"]["SqsManagedSseEnabled"] is True
        default_synth.assertions.has_resource_properties(
            "AWS::SQS::QueuePolicy",
            {
                "Queues": [{"Ref": queue_id}],
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                            )
                        ]
                    )
                },
            },
        )


def test_direct_invocations_retry_twice_then_go_to_the_dead_letter_queue(default_synth: Synth) -> None:
    _, dead = queue_ids(default_synth)
    function_id, function = uploader_function(default_synth)
    default_synth.assertions.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "FunctionName": {"Ref": function_id},
            "MaximumRetryAttempts": 2,
            "MaximumEventAgeInSeconds": Match.any_value(),
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [dead, "Arn"]}}},
        },
    )
    # Not also a DeadLetterConfig (the form checkov's CKV_AWS_116 reads): Lambda would park each event twice.
    assert "DeadLetterConfig" not in function["Properties"]
    assert resources_for(function_statements(default_synth), "sqs:SendMessage") == [
        {"Fn::GetAtt": [dead, "Arn"]}
    ]


def notification_config(synth: Synth, bucket_name: Any) -> dict[str, Any]:
    """A bucket's notification entries: CDK's (a bucket the stack owns) or the construct's (imported)."""
    for resource in synth.resources("Custom::S3BucketNotifications").values():
        if resource["Properties"]["BucketName"] == bucket_name:
            return dict(resource["Properties"]["NotificationConfiguration"])
    for resource in synth.resources("Custom::KieUploaderBucketNotifications").values():
        if resource["Properties"]["BucketName"] == bucket_name:
            return dict(resource["Properties"]["Configuration"])
    raise AssertionError(f"no notifications for {bucket_name}")


def s3_queue_statement(synth: Synth, queue: str) -> dict[str, Any]:
    (policy,) = [
        p
        for p in synth.resources("AWS::SQS::QueuePolicy").values()
        if p["Properties"]["Queues"] == [{"Ref": queue}]
    ]
    (statement,) = [
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Principal") == {"Service": "s3.amazonaws.com"}
    ]
    return dict(statement)


def test_s3_created_and_removed_notifications_go_to_the_queue_by_default(default_synth: Synth) -> None:
    queue, _ = queue_ids(default_synth)
    bucket = source_bucket_id(default_synth)
    config = notification_config(default_synth, {"Ref": bucket})
    assert "LambdaFunctionConfigurations" not in config
    events = {entry["Events"][0] for entry in config["QueueConfigurations"]}
    assert events == {"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}
    for entry in config["QueueConfigurations"]:
        assert entry["QueueArn"] == {"Fn::GetAtt": [queue, "Arn"]}
        assert "Filter" not in entry
    # Only S3, for this bucket, in this account.
    statement = s3_queue_statement(default_synth, queue)
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {
        "ArnLike": {"aws:SourceArn": [{"Fn::GetAtt": [bucket, "Arn"]}]},
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
    }
    assert not default_synth.resources("AWS::Lambda::Permission")


def test_notify_queue_sends_filtered_notifications_of_every_existing_bucket_to_the_queue(
    custom_synth: Synth,
) -> None:
    queue, _ = queue_ids(custom_synth)
    for name in EXISTING_BUCKETS:
        config = notification_config(custom_synth, name)
        assert "LambdaFunctionConfigurations" not in config
        events = {entry["Events"][0] for entry in config["QueueConfigurations"]}
        assert events == {"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}
        for entry in config["QueueConfigurations"]:
            assert entry["QueueArn"] == {"Fn::GetAtt": [queue, "Arn"]}
            rules = {rule["Name"]: rule["Value"] for rule in entry["Filter"]["Key"]["FilterRules"]}
            assert rules == {"prefix": "incoming/", "suffix": ".png"}
    statement = s3_queue_statement(custom_synth, queue)
    assert statement["Effect"] == "Allow"
    assert len(statement["Condition"]["ArnLike"]["aws:SourceArn"]) == len(EXISTING_BUCKETS)
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    # S3 may not invoke the function (notify=queue): the only invoke permission is the keep-alive rule's.
    permissions = [p["Properties"] for p in custom_synth.resources("AWS::Lambda::Permission").values()]
    assert [(p["Principal"], p["SourceArn"]) for p in permissions] == [
        ("events.amazonaws.com", {"Fn::GetAtt": [custom_synth.ids["keep_alive_rule"], "Arn"]})
    ]


# --- data: buckets, table, secret ----------------------------------------------------------------------


def source_bucket_id(synth: Synth) -> str:
    versioned = [
        bid
        for bid, bucket in synth.resources("AWS::S3::Bucket").items()
        if bucket["Properties"].get("VersioningConfiguration", {}).get("Status") == "Enabled"
    ]
    assert len(versioned) == 1, versioned
    return versioned[0]


def test_new_source_bucket_is_private_encrypted_versioned_ssl_only_and_retained(default_synth: Synth) -> None:
    bucket_id = source_bucket_id(default_synth)
    bucket = default_synth.template["Resources"][bucket_id]
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert "LoggingConfiguration" in props
    assert bucket["DeletionPolicy"] == "Retain"
    default_synth.assertions.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket_id},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            },
        },
    )


def test_existing_buckets_are_imported_never_created(custom_synth: Synth) -> None:
    # The only bucket is the distributed backfill's own (manifests and results), never a source bucket.
    backfill_bucket = custom_synth.ids["backfill.bucket"]
    assert set(custom_synth.resources("AWS::S3::Bucket")) == {backfill_bucket}
    assert [
        policy["Properties"]["Bucket"] for policy in custom_synth.resources("AWS::S3::BucketPolicy").values()
    ] == [{"Ref": backfill_bucket}]


def test_table_is_keyed_by_pk_on_demand_with_ttl_pitr_encryption_and_retained(default_synth: Synth) -> None:
    default_synth.assertions.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": {
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                # pk, and the expiry index's keys (no other attribute is declared)
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "liveBucket", "AttributeType": "S"},
                    {"AttributeName": "expiresAt", "AttributeType": "N"},
                ],
                "BillingMode": "PAY_PER_REQUEST",
                # The record outlives kie.ai's file (expiresAt) by recordRetentionDays: purgeAt is the TTL.
                "TimeToLiveSpecification": {"AttributeName": "purgeAt", "Enabled": True},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "SSESpecification": {"SSEEnabled": True},
            },
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


EXPIRY_INDEX = {
    "IndexName": "byExpiry",
    "KeySchema": [
        {"AttributeName": "liveBucket", "KeyType": "HASH"},
        {"AttributeName": "expiresAt", "KeyType": "RANGE"},
    ],
    "Projection": {"ProjectionType": "KEYS_ONLY"},
}


@pytest.mark.parametrize("synth_name", ["default_synth", "custom_synth"])
def test_table_has_exactly_the_sparse_keys_only_expiry_index_and_the_purge_at_ttl(
    synth_name: str, request: pytest.FixtureRequest
) -> None:
    synth: Synth = request.getfixturevalue(synth_name)
    table = synth.template["Resources"][synth.ids["table"]]["Properties"]
    assert table["GlobalSecondaryIndexes"] == [EXPIRY_INDEX]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "purgeAt", "Enabled": True}
    # The same table the integration tests create (tests/factories.py), so they run against its shape.
    from tests.factories import records_table_definition

    local = records_table_definition("records")
    assert table["GlobalSecondaryIndexes"] == local["GlobalSecondaryIndexes"]
    assert sorted(map(str, table["AttributeDefinitions"])) == sorted(map(str, local["AttributeDefinitions"]))


def test_table_streams_new_and_old_images_to_the_event_publisher_by_default(default_synth: Synth) -> None:
    table_id = default_synth.ids["table"]
    table = default_synth.template["Resources"][table_id]["Properties"]
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    (publisher_id, publisher) = [
        (fid, f)
        for fid, f in default_synth.resources("AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == "uploader.publisher.handler"
    ][0]
    assert publisher_id == default_synth.ids["publisher.function"]
    assert publisher["Properties"]["Role"] == {"Fn::GetAtt": [default_synth.ids["publisher.role"], "Arn"]}
    assert publisher["Properties"]["Environment"]["Variables"]["EVENT_BUS_NAME"] == "default"
    (mapping,) = [
        m["Properties"]
        for m in default_synth.resources("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": publisher_id}
    ]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [table_id, "StreamArn"]}
    assert mapping["DestinationConfig"] == {
        "OnFailure": {
            "Destination": {"Fn::GetAtt": [default_synth.ids["publisher.dead_letter_queue"], "Arn"]}
        }
    }
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # Its own role, never the uploader's; the uploader's role reads no stream.
    assert default_synth.ids["publisher.role"] != default_synth.ids["role"]
    uploader_actions = {a for s in function_statements(default_synth) for a in as_list(s["Action"])}
    assert not {a for a in uploader_actions if a.startswith("dynamodb:") and "Stream" in a}
    assert not {a for a in uploader_actions if a.startswith("events:")}


def test_events_false_builds_no_stream_no_publisher_and_no_event_outputs(custom_synth: Synth) -> None:
    assert CUSTOM_CONTEXT["events"] == "false"
    table = custom_synth.template["Resources"][custom_synth.ids["table"]]["Properties"]
    assert "StreamSpecification" not in table
    assert not [name for name in custom_synth.ids if name.startswith("publisher.")]
    handlers = {
        f["Properties"].get("Handler") for f in custom_synth.resources("AWS::Lambda::Function").values()
    }
    assert "uploader.publisher.handler" not in handlers
    # The only event source mapping is the uploader's queue; nothing reads a stream or puts events.
    (mapping,) = [m["Properties"] for m in custom_synth.resources("AWS::Lambda::EventSourceMapping").values()]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [custom_synth.ids["queue"], "Arn"]}
    actions = {
        action
        for policy in custom_synth.resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        for action in as_list(statement["Action"])
    }
    assert not {
        a for a in actions if a.startswith("events:") or (a.startswith("dynamodb:") and "Stream" in a)
    }
    assert not {"eventBusName", "eventPattern"} & set(discovery_record(custom_synth.template)[1])


def test_secret_is_created_without_a_value_for_the_operator_to_put(default_synth: Synth) -> None:
    _, secret = default_synth.only("AWS::SecretsManager::Secret")
    assert "GenerateSecretString" not in secret["Properties"]
    assert "SecretString" not in secret["Properties"]


def test_existing_secret_is_used_and_no_secret_is_created(custom_synth: Synth) -> None:
    assert not custom_synth.resources("AWS::SecretsManager::Secret")
    assert resources_for(function_statements(custom_synth), "secretsmanager:GetSecretValue") == [
        EXISTING_SECRET_ARN
    ]


# --- least privilege -----------------------------------------------------------------------------------


@pytest.mark.parametrize("synth_name", ["default_synth", "custom_synth"])
def test_no_data_action_anywhere_has_a_wildcard_resource(
    synth_name: str, request: pytest.FixtureRequest
) -> None:
    synth: Synth = request.getfixturevalue(synth_name)
    for policy_id, policy in synth.resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = as_list(statement["Action"])
            if not any(action.startswith(DATA_SERVICES) for action in actions):
                continue
            if is_list_streams_of_the_publisher(synth, policy, statement):
                continue
            assert "*" not in as_list(statement["Resource"]), (policy_id, statement)
            assert not any(action.endswith(":*") for action in actions), (policy_id, statement)


def is_list_streams_of_the_publisher(synth: Synth, policy: dict[str, Any], statement: dict[str, Any]) -> bool:
    """dynamodb:ListStreams supports no resource-level permission: CDK's stream read grant adds it on "*".
    Allowed alone in its statement, in the publisher's role only (acknowledged to cdk-nag, with why)."""
    return (
        "publisher.role" in synth.ids
        and policy["Properties"]["Roles"] == [{"Ref": synth.ids["publisher.role"]}]
        and as_list(statement["Action"]) == ["dynamodb:ListStreams"]
        and statement["Resource"] == "*"
    )


def test_only_x_ray_has_a_wildcard_resource_in_the_function_role(default_synth: Synth) -> None:
    wildcard_actions = {
        action
        for statement in function_statements(default_synth)
        if "*" in as_list(statement["Resource"])
        for action in as_list(statement["Action"])
    }
    assert wildcard_actions == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def test_function_role_reaches_only_this_stacks_data(default_synth: Synth) -> None:
    statements = function_statements(default_synth)
    bucket = source_bucket_id(default_synth)
    table = logical_id_of(default_synth, "AWS::DynamoDB::Table")
    secret = logical_id_of(default_synth, "AWS::SecretsManager::Secret")
    queue, _ = queue_ids(default_synth)
    # No prefix or suffix: every key of the stack's bucket is watched, and readable.
    objects = {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/*"]]}
    assert resources_for(statements, "s3:GetObject") == [objects]
    assert resources_for(statements, "s3:GetObjectVersion") == [objects]
    assert resources_for(statements, "s3:ListBucket") == [{"Fn::GetAtt": [bucket, "Arn"]}]
    assert s3_actions(statements) == {"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"}
    assert resources_for(statements, "dynamodb:GetItem") == [{"Fn::GetAtt": [table, "Arn"]}]
    assert resources_for(statements, "dynamodb:UpdateItem") == [{"Fn::GetAtt": [table, "Arn"]}]
    assert resources_for(statements, "dynamodb:Query") == [expiry_index_arn(table)]
    assert resources_for(statements, "secretsmanager:GetSecretValue") == [{"Ref": secret}]
    assert resources_for(statements, "sqs:ReceiveMessage") == [{"Fn::GetAtt": [queue, "Arn"]}]
    granted = {action for statement in statements for action in as_list(statement["Action"])}
    # Read-only on S3, no deletes or scans on the table.
    assert not {a for a in granted if a.startswith("s3:Put") or a.startswith("s3:Delete")}
    assert not granted & {"dynamodb:Scan", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}


def expiry_index_arn(table: str) -> dict[str, Any]:
    return {"Fn::Join": ["", [{"Fn::GetAtt": [table, "Arn"]}, "/index/byExpiry"]]}


@pytest.mark.parametrize("synth_name", ["default_synth", "custom_synth"])
def test_function_may_query_the_expiry_index_only_and_the_table_only_by_key(
    synth_name: str, request: pytest.FixtureRequest
) -> None:
    synth: Synth = request.getfixturevalue(synth_name)
    statements = function_statements(synth)
    table = synth.ids["table"]
    dynamodb = [s for s in statements if any(a.startswith("dynamodb:") for a in as_list(s["Action"]))]
    by_resources = {json.dumps(s["Resource"], sort_keys=True): sorted(as_list(s["Action"])) for s in dynamodb}
    assert by_resources == {
        json.dumps({"Fn::GetAtt": [table, "Arn"]}, sort_keys=True): [
            "dynamodb:GetItem",
            "dynamodb:UpdateItem",
        ],
        json.dumps(expiry_index_arn(table), sort_keys=True): ["dynamodb:Query"],
    }
    # No index wildcard (index/*), and no Query on the table itself.
    assert "index/*" not in json.dumps(statements)


def test_function_role_has_no_managed_policy_and_writes_only_its_own_logs(default_synth: Synth) -> None:
    function_id, function = uploader_function(default_synth)
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    role = default_synth.template["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role
    assert role_id == default_synth.ids["role"]
    log_group = default_synth.ids["log_group"]
    assert resources_for(function_statements(default_synth), "logs:PutLogEvents") == [
        {"Fn::GetAtt": [log_group, "Arn"]}
    ]


def s3_actions(statements: list[dict[str, Any]]) -> set[str]:
    return {a for statement in statements for a in as_list(statement["Action"]) if a.startswith("s3:")}


def partition_arn(rest: str) -> dict[str, Any]:
    return {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":{rest}"]]}


def test_existing_buckets_are_read_by_name_only_where_watched(custom_synth: Synth) -> None:
    statements = function_statements(custom_synth)
    # prefix=incoming/, suffix=.png: the role reads exactly the keys the function's rules accept.
    expected = [partition_arn(f"s3:::{name}/incoming/*.png") for name in EXISTING_BUCKETS]
    assert resources_for(statements, "s3:GetObject") == expected
    assert resources_for(statements, "s3:GetObjectVersion") == expected
    buckets = [partition_arn(f"s3:::{name}") for name in EXISTING_BUCKETS]
    assert resources_for(statements, "s3:ListBucket") == buckets
    assert s3_actions(statements) == {"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"}


def test_the_bucket_kms_key_decrypts_only_via_s3_for_the_watched_objects(custom_synth: Synth) -> None:
    statements = function_statements(custom_synth)
    (decrypt,) = [s for s in statements if "kms:Decrypt" in as_list(s["Action"])]
    assert decrypt["Resource"] == EXISTING_KEY_ARN
    # The objects' ARNs (S3's encryption context), and the buckets' (an S3 Bucket Key's context).
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"},
        "StringLike": {
            "kms:EncryptionContext:aws:s3:arn": [
                *(partition_arn(f"s3:::{name}/incoming/*.png") for name in EXISTING_BUCKETS),
                *(partition_arn(f"s3:::{name}") for name in EXISTING_BUCKETS),
            ]
        },
    }


# --- monitoring and outputs ----------------------------------------------------------------------------


def alarm_on(synth: Synth, metric_name: str, dimension: Any = None) -> dict[str, Any]:
    """The one alarm on ``metric_name`` (of the resource named by ``dimension``, its first dimension's value,
    when given: the uploader's and the publisher's dead-letter queues have the same metric)."""
    found = [
        alarm["Properties"]
        for alarm in synth.resources("AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("MetricName") == metric_name
        and (dimension is None or alarm["Properties"]["Dimensions"][0]["Value"] == dimension)
    ]
    assert len(found) == 1, (metric_name, found)
    return found[0]


def test_alarms_on_dlq_errors_throttles_and_queue_age_notify_the_topic(default_synth: Synth) -> None:
    topic = {"Ref": logical_id_of(default_synth, "AWS::SNS::Topic")}
    queue, dead = queue_ids(default_synth)
    function_id = uploader_function(default_synth)[0]
    dlq_alarm = alarm_on(
        default_synth, "ApproximateNumberOfMessagesVisible", {"Fn::GetAtt": [dead, "QueueName"]}
    )
    assert (dlq_alarm["Threshold"], dlq_alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    for metric in ("Errors", "Throttles"):
        alarm = alarm_on(default_synth, metric)
        assert alarm["Dimensions"][0]["Value"] == {"Ref": function_id}
        assert alarm["Threshold"] == 0
    age = alarm_on(default_synth, "ApproximateAgeOfOldestMessage")
    assert age["Dimensions"][0]["Value"] == {"Fn::GetAtt": [queue, "QueueName"]}
    # The event publisher's alarms: its dead-letter queue, and its lag behind the stream.
    publisher_dlq = {"Fn::GetAtt": [default_synth.ids["publisher.dead_letter_queue"], "QueueName"]}
    assert alarm_on(default_synth, "ApproximateNumberOfMessagesVisible", publisher_dlq)["Threshold"] == 0
    iterator_age = alarm_on(default_synth, "IteratorAge")
    assert iterator_age["Dimensions"][0]["Value"] == {"Ref": default_synth.ids["publisher.function"]}
    for alarm in default_synth.resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [topic]
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"


def test_an_alarm_fires_on_failed_uploads(default_synth: Synth) -> None:
    alarm = alarm_on(default_synth, "UploadFailed")
    assert alarm["Namespace"] == "KieUploader"
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "kie-uploader"}]
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum",
        0,
        "GreaterThanThreshold",
    )


def test_alarm_email_subscribes_to_the_topic(custom_synth: Synth, default_synth: Synth) -> None:
    custom_synth.assertions.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": ALARM_EMAIL}
    )
    assert not default_synth.resources("AWS::SNS::Subscription")


def test_dashboard_shows_uploads_failures_kie_latency_and_queue_depth(default_synth: Synth) -> None:
    _, dashboard = default_synth.only("AWS::CloudWatch::Dashboard")
    body = str(dashboard["Properties"]["DashboardBody"])
    for needle in (
        "KieUploader",
        "UploadSucceeded",
        "UploadFailed",
        "KieLatency",
        "ApproximateNumberOfMessagesVisible",
    ):
        assert needle in body


def discovery_record(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The template's only output, which must be a discovery record: its description and its JSON, each
    token written as ``<Ref X>`` or ``<X.Attribute>``."""
    (output,) = template["Outputs"].values()

    def text(part: Any) -> str:
        if isinstance(part, str):
            return part
        if "Ref" in part:
            return f"<Ref {part['Ref']}>"
        if "Fn::GetAtt" in part:
            return "<{}.{}>".format(*part["Fn::GetAtt"])
        raise AssertionError(f"unexpected token in the record: {part}")

    value = output["Value"]
    joined = "".join(text(p) for p in value["Fn::Join"][1]) if isinstance(value, dict) else value
    return output["Description"], json.loads(joined)


@pytest.mark.parametrize("synth_name", ["default_synth", "custom_synth"])  # custom: events=false
def test_the_stacks_only_output_is_its_uploaders_discovery_record(
    synth_name: str, request: pytest.FixtureRequest
) -> None:
    # The repository's stack is found as any user's stack is: no output of its own (issue 16).
    from kie_uploader import discovery

    synth: Synth = request.getfixturevalue(synth_name)
    description, record = discovery_record(synth.template)
    assert description.startswith(discovery.DESCRIPTION_MARKER)
    ids = synth.ids
    expected = {
        "schema": discovery.SCHEMA_VERSION,
        "name": "KieUploader",
        "queueUrl": f"<Ref {ids['queue']}>",
        "deadLetterQueueUrl": f"<Ref {ids['dead_letter_queue']}>",
        "tableName": f"<Ref {ids['table']}>",
        "functionName": f"<Ref {ids['function']}>",
        "alarmTopicArn": f"<Ref {ids['alarm_topic']}>",
    }
    assert {name: record[name] for name in expected} == expected
    assert record["secretArn"] in ("<Ref ApiKeySecret5E0E1F3C>", EXISTING_SECRET_ARN)  # the legacy id
    assert record["buckets"] and record["notify"] == "queue" and record["dashboardName"].startswith("<Ref ")
    events = {"eventBusName", "eventPattern"} & set(record)
    assert events == ({"eventBusName", "eventPattern"} if synth_name == "default_synth" else set())
    if synth_name == "custom_synth":
        assert record["buckets"] == list(EXISTING_BUCKETS)
        assert record["secretArn"] == EXISTING_SECRET_ARN


def test_the_record_names_the_default_bus_and_a_pattern_matching_every_record_change(
    default_synth: Synth,
) -> None:
    _, record = discovery_record(default_synth.template)
    assert record["eventBusName"] == "default"
    assert record["eventPattern"] == {"source": [SOURCE], "detail-type": [kind.value for kind in Kind]}


def test_custom_stack_name_comes_from_context(custom_synth: Synth) -> None:
    assert custom_synth.template_path.name == "KieUploaderCustom.template.json"


def test_stateful_resources_keep_the_logical_ids_they_had_before_the_construct(default_synth: Synth) -> None:
    # An upgrade updates them in place: no second table, no empty secret, no lost messages or subscription.
    from infra.stack import LEGACY_LOGICAL_IDS

    types = {
        "table": "AWS::DynamoDB::Table",
        "secret": "AWS::SecretsManager::Secret",
        "queue": "AWS::SQS::Queue",
        "queue_policy": "AWS::SQS::QueuePolicy",
        "dead_letter_queue": "AWS::SQS::Queue",
        "dead_letter_queue_policy": "AWS::SQS::QueuePolicy",
        "alarm_topic": "AWS::SNS::Topic",
        "alarm_topic_policy": "AWS::SNS::TopicPolicy",
    }
    resources = default_synth.template["Resources"]
    assert {name: resources[logical_id]["Type"] for name, logical_id in LEGACY_LOGICAL_IDS.items()} == types
    queue, dead = queue_ids(default_synth)
    assert (queue, dead) == (LEGACY_LOGICAL_IDS["queue"], LEGACY_LOGICAL_IDS["dead_letter_queue"])
    assert resources[LEGACY_LOGICAL_IDS["queue_policy"]]["Properties"]["Queues"] == [{"Ref": queue}]
