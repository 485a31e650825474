"""The opt-in customer managed key (``encryption_key``, ``-c encryptionKey``): what it encrypts, the key
policy each AWS service needs, the roles' grants, and the props and settings that choose it."""

from __future__ import annotations

from typing import Any

import pytest

from kie_uploader.cdk import KieUploaderPropsError
from kie_uploader.settings import SettingsError, StackSettings
from tests.infra.conftest import EXISTING_KEY_ARN, Synth
from tests.infra.test_stack import as_list, role_statements


def of_type(synth: Synth, resource_type: str) -> list[dict[str, Any]]:
    return [resource.get("Properties", {}) for resource in synth.resources(resource_type).values()]


def key_statements(synth: Synth) -> dict[str, dict[str, Any]]:
    """The key policy's statements with a Sid (the construct's), by Sid."""
    ((_, key),) = synth.resources("AWS::KMS::Key").items()
    return {s["Sid"]: s for s in key["Properties"]["KeyPolicy"]["Statement"] if "Sid" in s}


def test_the_key_encrypts_every_store_and_both_functions_environment(variants: dict[str, Synth]) -> None:
    synth = variants["repo-key"]
    ((key_id, key),) = synth.resources("AWS::KMS::Key").items()
    arn = {"Fn::GetAtt": [key_id, "Arn"]}
    # Rotated yearly; retained like the table, which it must still decrypt after the stack is gone.
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain"
    queues = of_type(synth, "AWS::SQS::Queue")
    assert len(queues) == 3 and all(
        q["KmsMasterKeyId"] == arn and "SqsManagedSseEnabled" not in q for q in queues
    )
    (table,) = of_type(synth, "AWS::DynamoDB::Table")
    assert table["SSESpecification"] == {"KMSMasterKeyId": arn, "SSEEnabled": True, "SSEType": "KMS"}
    assert [s["KmsKeyId"] for s in of_type(synth, "AWS::SecretsManager::Secret")] == [arn]
    assert [t["KmsMasterKeyId"] for t in of_type(synth, "AWS::SNS::Topic")] == [arn]
    # the uploader's, the publisher's, the backfill child's and the backfill state machine's log groups
    assert [g["KmsKeyId"] for g in of_type(synth, "AWS::Logs::LogGroup")] == [arn] * 4
    with_environment = [f for f in of_type(synth, "AWS::Lambda::Function") if "Environment" in f]
    assert len(with_environment) == 3 and all(f["KmsKeyArn"] == arn for f in with_environment)
    backfill_bucket = synth.template["Resources"][synth.ids["backfill.bucket"]]["Properties"]
    (encryption,) = backfill_bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == arn


def test_without_the_key_the_stores_keep_aws_managed_encryption(default_synth: Synth) -> None:
    assert not default_synth.resources("AWS::KMS::Key")
    assert all(q["SqsManagedSseEnabled"] is True for q in of_type(default_synth, "AWS::SQS::Queue"))
    (table,) = of_type(default_synth, "AWS::DynamoDB::Table")
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert not [f for f in of_type(default_synth, "AWS::Lambda::Function") if "KmsKeyArn" in f]


def test_the_key_policy_lets_in_each_service_that_acts_without_a_role_and_only_those(
    variants: dict[str, Synth],
) -> None:
    this_account = {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    queue_mode = key_statements(variants["repo-key"])
    assert set(queue_mode) == {
        "CloudWatchAlarmsPublishToTheAlarmTopic",
        "CloudWatchLogsEncryptTheLogGroups",
        "S3SendsObjectEventsToTheQueue",
    }
    alarms, logs, s3 = (queue_mode[sid] for sid in sorted(queue_mode))
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert sorted(alarms["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert alarms["Condition"] == this_account
    assert s3["Principal"] == {"Service": "s3.amazonaws.com"}
    assert sorted(s3["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"] and s3["Condition"] == this_account
    # CloudWatch Logs, in this region, for this account's log groups only.
    assert logs["Principal"] == {
        "Service": {"Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
    }
    (context,) = logs["Condition"]["ArnLike"].values()
    assert (
        context["Fn::Join"][1][-1] == ":log-group:*" and {"Ref": "AWS::AccountId"} in context["Fn::Join"][1]
    )
    # EventBridge instead of S3 with notify=eventbridge (a key of the user's own stack); neither with lambda.
    assert set(key_statements(variants["user-eventbridge-own-key"])) == {
        "CloudWatchAlarmsPublishToTheAlarmTopic",
        "CloudWatchLogsEncryptTheLogGroups",
        "EventBridgeDeliversToTheQueues",
    }
    events = key_statements(variants["user-eventbridge-own-key"])["EventBridgeDeliversToTheQueues"]
    assert events["Principal"] == {"Service": "events.amazonaws.com"} and events["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "123456789012"}
    }
    assert set(key_statements(variants["user-lambda-key"])) == {
        "CloudWatchAlarmsPublishToTheAlarmTopic",
        "CloudWatchLogsEncryptTheLogGroups",
    }


def test_both_roles_get_the_key_through_iam_on_its_arn_only(variants: dict[str, Synth]) -> None:
    synth = variants["repo-key"]
    ((key_id, _),) = synth.resources("AWS::KMS::Key").items()
    for role in ("role", "publisher.role"):
        kms = [
            s
            for s in role_statements(synth, synth.ids[role])
            if any("kms:" in a for a in as_list(s["Action"]))
        ]
        assert kms and all(s["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]} for s in kms), role
        assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= {a for s in kms for a in as_list(s["Action"])}, role


def test_an_imported_key_is_used_everywhere_and_its_policy_left_to_its_owner(
    variants: dict[str, Synth],
) -> None:
    synth = variants["repo-imported-key"]
    assert not synth.resources("AWS::KMS::Key")
    assert {q["KmsMasterKeyId"] for q in of_type(synth, "AWS::SQS::Queue")} == {EXISTING_KEY_ARN}
    assert {g["KmsKeyId"] for g in of_type(synth, "AWS::Logs::LogGroup")} == {EXISTING_KEY_ARN}


def _uploader(imported_key: str | None = None, **props: Any) -> Any:
    from aws_cdk import App, Stack
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_s3 as s3

    from kie_uploader.cdk import KieUploader

    stack = Stack(App(context={"aws:cdk:bundling-stacks": []}), "Keyed")
    if imported_key is not None:
        props["encryption_key"] = kms.Key.from_key_arn(stack, "Theirs", imported_key)
    bucket = s3.Bucket.from_bucket_name(stack, "B", "some-bucket")
    return KieUploader(
        stack, "Uploader", buckets=[bucket], accept_responsibility_for_imported_buckets=True, **props
    )


def test_an_imported_key_warns_which_statements_its_policy_needs_and_grant_send_includes_the_key() -> None:
    from aws_cdk import Stack
    from aws_cdk import aws_iam as iam
    from aws_cdk.assertions import Annotations, Match, Template

    uploader = _uploader(imported_key=EXISTING_KEY_ARN)
    stack = Stack.of(uploader)
    sids = [statement.sid for statement in uploader.encryption_key_statements]
    assert sids == [
        "CloudWatchAlarmsPublishToTheAlarmTopic",
        "CloudWatchLogsEncryptTheLogGroups",
        "S3SendsObjectEventsToTheQueue",
    ]
    sender = iam.Role(stack, "Sender", assumed_by=iam.AccountRootPrincipal())
    uploader.grant_send(sender)
    Annotations.from_stack(stack).has_warning(
        "/Keyed/Uploader",
        Match.string_like_regexp("encryption_key is a key this stack does not own.*" + sids[2]),
    )
    sender_ref = {"Ref": stack.resolve(sender.role_name)["Ref"]}
    (policy,) = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for r in Template.from_stack(stack).to_json()["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy" and r["Properties"]["Roles"] == [sender_ref]
    ]
    (kms_grant,) = [s for s in policy if any(a.startswith("kms:") for a in as_list(s["Action"]))]
    assert kms_grant["Resource"] == EXISTING_KEY_ARN
    assert {"kms:Encrypt", "kms:GenerateDataKey*"} <= set(kms_grant["Action"])


@pytest.mark.parametrize(
    ("props", "prop_name"),
    [
        ({"encryption_key": "arn:aws:kms:eu-west-1:123456789012:key/x"}, "encryption_key"),
        ({"encryption_key": True, "table_props": {"encryption_key": None}}, "table_props.encryption_key"),
    ],
)
def test_a_bad_encryption_key_prop_fails_with_its_name(props: dict[str, Any], prop_name: str) -> None:
    with pytest.raises(KieUploaderPropsError, match=f"^{prop_name}"):
        _uploader(**props)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("false", None), ("true", "true"), (EXISTING_KEY_ARN, EXISTING_KEY_ARN), (True, "true")],
)
def test_the_encryption_key_context_option(value: Any, expected: str | None) -> None:
    context = {"encryptionKey": value}
    assert StackSettings.from_context(context.get).encryption_key == expected


def test_a_malformed_encryption_key_context_option_names_itself() -> None:
    with pytest.raises(SettingsError, match="encryptionKey"):
        StackSettings.from_context({"encryptionKey": "alias/mine"}.get)
