"""The stack with its customer managed key (``-c encryptionKey=true``) deployed into ministack: every store
names the key, and the stack still uploads, alarms and publishes events.

One more stack beside the session's main one (its bootstrap reused), on a bucket of its own.

What ministack 1.5.33 does with KMS (read from its source, ``ministack/services/kms.py``, the CloudFormation
provisioners and the services that take a key):

* it **creates the key** from the template (``AWS::KMS::Key``: symmetric material, ``EnableKeyRotation``,
  ``Retain``) and stores the key policy as written: no check of its principals, conditions or the lockout
  rule;
* its KMS API is real enough: ``Encrypt``/``Decrypt``/``GenerateDataKey`` bind a ciphertext to its key and to
  the encryption context (another context: ``InvalidCiphertextException``), and a disabled key is refused;
* key policies are evaluated only under ``AUTH=true`` (not how the tests run), and only for a caller's own
  KMS requests: a service principal (``s3``, ``events``, ``cloudwatch``, ``logs``) never meets the key policy;
* SQS, SNS, DynamoDB, Secrets Manager, CloudWatch Logs and Lambda **store** ``KmsMasterKeyId``,
  ``KMSMasterKeyArn``, ``KmsKeyId``, ``kmsKeyId`` and ``KMSKeyArn`` and report them back, but **never call
  KMS**: data is kept in the clear, and a missing key statement would break nothing here;
* its CloudFormation creates a DynamoDB table without its ``SSESpecification`` (applied on an update only)
  and drops a topic's ``KmsMasterKeyId`` and a function's ``KmsKeyArn``: for those, the deployed template
  says what AWS would do.

So this test proves the template deploys, wires the key into every store and leaves the data paths working;
that the key policy lets each AWS service in is for the infra tests (the statements) and for AWS itself.
ministack does not turn the function's EMF log lines into metrics either: the alarm is driven by the datum the
function's ``UploadFailed`` line stands for.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.e2e.conftest import DeployedStack, deploy_beside

pytestmark = pytest.mark.slow

BUCKET = "encrypted-e2e"
STACK_NAME = "KieUploaderEncrypted"
WAIT_SECONDS = 60.0


@pytest.fixture(scope="module")
def encrypted_stack(deployed_stack: DeployedStack, tmp_path_factory: pytest.TempPathFactory) -> DeployedStack:
    deployed_stack.client("s3").create_bucket(Bucket=BUCKET)
    return deploy_beside(
        deployed_stack,
        STACK_NAME,
        {"bucketNames": BUCKET, "encryptionKey": "true"},
        Path(tmp_path_factory.mktemp("e2e-encrypted-cdk-out")),
    )


def stack_resources(stack: DeployedStack) -> dict[str, list[str]]:
    """Physical ids of the stack's resources, by type."""
    found: dict[str, list[str]] = {}
    cfn = stack.client("cloudformation")
    for resource in cfn.describe_stack_resources(StackName=stack.stack_name)["StackResources"]:
        found.setdefault(resource["ResourceType"], []).append(resource["PhysicalResourceId"])
    return found


@pytest.fixture(scope="module")
def key_arn(encrypted_stack: DeployedStack) -> str:
    (key_id,) = stack_resources(encrypted_stack)["AWS::KMS::Key"]
    return str(encrypted_stack.client("kms").describe_key(KeyId=key_id)["KeyMetadata"]["Arn"])


def queue_arn(stack: DeployedStack, url: str) -> str:
    attributes = stack.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


@pytest.fixture(scope="module")
def listeners(encrypted_stack: DeployedStack) -> Iterator[SimpleNamespace]:
    """A consumer's queue behind a rule on the stack's event pattern; one subscribed to the alarm topic."""
    sqs, bridge, sns = (encrypted_stack.client(name) for name in ("sqs", "events", "sns"))
    run = uuid.uuid4().hex[:8]
    events_url = sqs.create_queue(QueueName=f"encrypted-events-{run}")["QueueUrl"]
    alarms_url = sqs.create_queue(QueueName=f"encrypted-alarms-{run}")["QueueUrl"]
    bus = encrypted_stack.outputs["EventBusName"]
    rule = f"encrypted-events-{run}"
    bridge.put_rule(Name=rule, EventPattern=encrypted_stack.outputs["EventPattern"], EventBusName=bus)
    bridge.put_targets(
        Rule=rule, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn(encrypted_stack, events_url)}]
    )
    subscription = sns.subscribe(
        TopicArn=encrypted_stack.outputs["AlarmTopicArn"],
        Protocol="sqs",
        Endpoint=queue_arn(encrypted_stack, alarms_url),
        Attributes={"RawMessageDelivery": "false"},
    )["SubscriptionArn"]
    yield SimpleNamespace(events_url=events_url, alarms_url=alarms_url)
    sns.unsubscribe(SubscriptionArn=subscription)
    bridge.remove_targets(Rule=rule, EventBusName=bus, Ids=["queue"])
    bridge.delete_rule(Name=rule, EventBusName=bus)


def first_message(stack: DeployedStack, url: str, matches: Any, what: str) -> dict[str, Any]:
    """The first message body (JSON) on ``url`` for which ``matches(body)`` holds."""
    sqs = stack.client("sqs")
    deadline, seen = time.monotonic() + WAIT_SECONDS, []
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            body = json.loads(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            if matches(body):
                return dict(body)
            seen.append(str(body)[:120])
    raise AssertionError(f"no {what} within {WAIT_SECONDS:.0f} s; seen: {seen}")


#: Where each resource names its key in the template, as CDK writes it (the key's ARN).
KEY_PROPERTY = {
    "AWS::SQS::Queue": ("KmsMasterKeyId",),
    "AWS::SNS::Topic": ("KmsMasterKeyId",),
    "AWS::DynamoDB::Table": ("SSESpecification", "KMSMasterKeyId"),
    "AWS::SecretsManager::Secret": ("KmsKeyId",),
    "AWS::Logs::LogGroup": ("KmsKeyId",),
    "AWS::Lambda::Function": ("KmsKeyArn",),
}


def test_every_store_and_both_functions_name_the_stacks_key(
    encrypted_stack: DeployedStack, key_arn: str
) -> None:
    stack, outputs, resources = encrypted_stack, encrypted_stack.outputs, stack_resources(encrypted_stack)
    # The deployed template: every store and both functions with an environment name the key.
    body = stack.client("cloudformation").get_template(StackName=stack.stack_name)["TemplateBody"]
    template = json.loads(body) if isinstance(body, str) else body
    (key_id,) = [lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::KMS::Key"]
    named: dict[str, int] = {}
    for resource in template["Resources"].values():
        path = KEY_PROPERTY.get(resource["Type"])
        value: Any = resource.get("Properties", {})
        for name in path or ():
            value = value.get(name) if isinstance(value, dict) else None
        if value == {"Fn::GetAtt": [key_id, "Arn"]}:
            named[resource["Type"]] = named.get(resource["Type"], 0) + 1
    assert named == {
        "AWS::SQS::Queue": 3,  # the queue, its dead-letter queue, the publisher's
        "AWS::SNS::Topic": 1,
        "AWS::DynamoDB::Table": 1,
        "AWS::SecretsManager::Secret": 1,
        # the uploader's, the publisher's, the imported bucket handler's, the backfill's function and machine
        "AWS::Logs::LogGroup": 5,
        # the uploader, the publisher and the backfill's function (the handler has no environment)
        "AWS::Lambda::Function": 3,
    }
    # The services' own view, where ministack keeps it (its CloudFormation drops the key of a topic, of a
    # table, which it creates without SSE, and of a function's environment).
    sqs = stack.client("sqs")
    for url in resources["AWS::SQS::Queue"]:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes.get("KmsMasterKeyId") == key_arn, url
    secret = stack.client("secretsmanager").describe_secret(SecretId=outputs["SecretArn"])
    assert secret["KmsKeyId"] == key_arn
    logs = stack.client("logs")
    for name in resources["AWS::Logs::LogGroup"]:
        (group,) = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
        assert group.get("kmsKeyId") == key_arn, name

    # The key: rotated yearly, its policy as the construct wrote it (ministack keeps it as written).
    kms = stack.client("kms")
    assert kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"] is True
    policy = json.loads(kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"])
    services = {s.get("Sid"): s["Principal"].get("Service") for s in policy["Statement"] if "Sid" in s}
    assert services == {
        "CloudWatchAlarmsPublishToTheAlarmTopic": "cloudwatch.amazonaws.com",
        "CloudWatchLogsEncryptTheLogGroups": "logs.us-east-1.amazonaws.com",
        "S3SendsObjectEventsToTheQueue": "s3.amazonaws.com",
    }
    # ministack's KMS binds a ciphertext to its encryption context, as SQS's and DynamoDB's use of it would.
    context = {"aws:sqs:arn": queue_arn(stack, outputs["QueueUrl"])}
    sealed = kms.encrypt(KeyId=key_arn, Plaintext=b"kie", EncryptionContext=context)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=sealed, EncryptionContext=context)["Plaintext"] == b"kie"
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=sealed, EncryptionContext={"aws:sqs:arn": "another queue"})


def test_with_the_key_it_still_uploads_alarms_and_publishes_events(
    encrypted_stack: DeployedStack, listeners: SimpleNamespace
) -> None:
    stack, key, body = encrypted_stack, f"photos/{uuid.uuid4().hex[:8]}.png", b"encrypted at rest"

    # Uploads: S3 -> the encrypted queue -> the function (environment under the key) -> the encrypted table.
    stack.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    record = stack.wait_for_record(BUCKET, key, lambda r: r.get("status") == "UPLOADED")
    with urllib.request.urlopen(str(record["downloadUrl"]), timeout=10) as answer:
        assert answer.read() == body

    # Publishes: the encrypted table's stream -> the publisher -> EventBridge -> a consumer.
    event = first_message(
        stack,
        listeners.events_url,
        lambda e: e.get("detail", {}).get("bucket") == BUCKET and e["detail"].get("key") == key,
        f"event about s3://{BUCKET}/{key}",
    )
    assert event["detail-type"] == "Object Uploaded"
    assert event["detail"]["downloadUrl"] == record["downloadUrl"]

    # Alarms: a failed upload's metric -> the stack's UploadsFailed alarm -> the encrypted alarm topic.
    cloudwatch = stack.client("cloudwatch")
    topic = stack.outputs["AlarmTopicArn"]
    ours = {
        alarm["AlarmName"]
        for alarm in cloudwatch.describe_alarms()["MetricAlarms"]
        if topic in alarm.get("AlarmActions", []) and alarm["MetricName"] == "UploadFailed"
    }
    assert len(ours) == 1
    cloudwatch.put_metric_data(
        Namespace="KieUploader",
        MetricData=[
            {
                "MetricName": "UploadFailed",
                "Dimensions": [{"Name": "service", "Value": "kie-uploader"}],
                "Value": 1,
            }
        ],
    )
    notification = first_message(
        stack,
        listeners.alarms_url,
        lambda n: json.loads(n.get("Message", "{}")).get("AlarmName") in ours,
        "alarm notification on the encrypted topic",
    )
    assert notification["TopicArn"] == topic
    assert json.loads(notification["Message"])["NewStateValue"] == "ALARM"
