"""Issue 10, defect 3: ``kie-uploader doctor`` on ministack names each problem a bucket can have before the
stack is deployed on it; a clean bucket gives no error.

What ministack cannot represent (and doctor therefore is not tested against here): the real S3 evaluating a
bucket policy (doctor reads the policy, it never tries a download), KMS key policies, and AWS's exact
answers for a secret without a value (ministack returns an empty value, AWS a ResourceNotFoundException;
doctor handles both)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from kie_uploader import cli, doctor, local
from kie_uploader.cli import errors, setting_up

BUCKET = "doctor-bucket"
REGION = local.LOCAL_REGION
KEY_ARN = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY_ARN = "arn:aws:kms:us-east-1:000000000000:key/99999999-12ab-34cd-56ef-1234567890ab"


@pytest.fixture
def clients(ministack: local.Server) -> Iterator[doctor.Clients]:
    local.reset_ministack(ministack.endpoint_url)
    made = doctor.Clients(lambda service: local.local_client(service, ministack.endpoint_url))
    made.s3.create_bucket(Bucket=BUCKET)
    yield made


def plan(**overrides: Any) -> doctor.Plan:
    return doctor.Plan(**{"region": REGION, "bucket_names": (BUCKET,), **overrides})


def findings_of(clients: doctor.Clients, **overrides: Any) -> list[doctor.Finding]:
    return doctor.run(plan(**overrides), clients)


def only_errors(findings: list[doctor.Finding]) -> list[str]:
    return [f.line() for f in doctor.errors(findings)]


def deny_get(condition: dict[str, Any], principal: Any = "*") -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Guard",
                    "Effect": "Deny",
                    "Principal": principal,
                    "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                    "Resource": f"arn:aws:s3:::{BUCKET}/*",
                    "Condition": condition,
                }
            ],
        }
    )


def test_a_clean_bucket_gives_no_error_and_no_warning(clients: doctor.Clients) -> None:
    found = findings_of(clients, prefix="incoming/")
    assert [f for f in found if f.severity in (doctor.ERROR, doctor.WARN)] == [], found


def test_a_missing_bucket_is_an_error(clients: doctor.Clients) -> None:
    (error,) = only_errors(findings_of(clients, bucket_names=("no-such-bucket",)))
    assert "bucket no-such-bucket: does not exist" in error


def test_a_bucket_in_another_region_is_an_error_naming_both(clients: doctor.Clients) -> None:
    clients.s3.create_bucket(
        Bucket="euro-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    (error,) = only_errors(findings_of(clients, bucket_names=("euro-bucket",)))
    assert "is in eu-west-1, the stack in us-east-1" in error
    assert "AWS_REGION=eu-west-1" in error


@pytest.mark.parametrize(
    ("condition", "names"),
    [
        ({"NotIpAddress": {"aws:SourceIp": ["203.0.113.0/24"]}}, "aws:SourceIp"),
        ({"StringNotEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}}, "aws:SourceVpce"),
        ({"StringNotEqualsIfExists": {"aws:SourceVpc": "vpc-111bbb22"}}, "aws:SourceVpc"),
        ({"StringNotEquals": {"s3:authType": "REST-HEADER"}}, "s3:authType"),
        ({"StringEquals": {"s3:authType": "REST-QUERY-STRING"}}, "s3:authType"),
        ({"NumericGreaterThan": {"s3:signatureAge": "60000"}}, "s3:signatureAge"),
    ],
)
def test_a_policy_deny_that_blocks_the_presigned_download_is_an_error(
    clients: doctor.Clients, condition: dict[str, Any], names: str
) -> None:
    clients.s3.put_bucket_policy(Bucket=BUCKET, Policy=deny_get(condition))
    (error,) = only_errors(findings_of(clients, transfer="url"))
    assert f"bucket {BUCKET}: policy statement Guard blocks kie.ai's download" in error
    assert names in error
    assert "->" in error  # and says what to do


@pytest.mark.parametrize(
    "condition",
    [
        {"NotIpAddress": {"aws:SourceIp": ["203.0.113.0/24"]}},
        {"StringNotEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}},
        {"StringNotEqualsIfExists": {"aws:SourceVpc": "vpc-111bbb22"}},
    ],
)
@pytest.mark.parametrize("transfer", ["auto", "stream"])
def test_a_network_condition_stops_the_stream_too_unless_the_function_is_in_that_network(
    clients: doctor.Clients, condition: dict[str, Any], transfer: str
) -> None:
    # The function's own GetObject comes from where it runs: only the construct's vpc prop helps (issue 19)
    clients.s3.put_bucket_policy(Bucket=BUCKET, Policy=deny_get(condition))
    (error,) = only_errors(findings_of(clients, transfer=transfer, kie_cannot_fetch=(BUCKET,)))
    assert "no URL upload can serve this bucket" in error
    assert "vpc prop" in error and f"kieCannotFetch={BUCKET}" in error


@pytest.mark.parametrize(
    "condition",
    [
        {"StringNotEquals": {"s3:authType": "REST-HEADER"}},
        {"NumericGreaterThan": {"s3:signatureAge": "60000"}},
    ],
)
def test_a_deny_of_presigned_reads_says_which_transfer_serves_the_bucket(
    clients: doctor.Clients, condition: dict[str, Any]
) -> None:
    # The function's own GetObject is signed in a header, now: the stream upload serves the bucket (issue 19)
    clients.s3.put_bucket_policy(Bucket=BUCKET, Policy=deny_get(condition))

    def finding(**plan: Any) -> doctor.Finding:
        (only,) = [f for f in findings_of(clients, **plan) if "policy statement Guard" in f.what]
        return only

    url = finding(transfer="url")
    assert url.severity == doctor.ERROR and f"transfer=auto with kieCannotFetch={BUCKET}" in url.todo
    auto = finding(transfer="auto")
    assert auto.severity == doctor.WARN and "after a failed URL upload of each object" in auto.what
    assert f"kieCannotFetch={BUCKET}" in auto.todo
    recorded = finding(transfer="auto", kie_cannot_fetch=(BUCKET,))
    assert recorded.severity == doctor.INFO and "served by the stream upload" in recorded.what
    assert finding(transfer="stream").severity == doctor.INFO


@pytest.mark.parametrize(
    "condition",
    [
        {"Bool": {"aws:SecureTransport": "false"}},  # the presigned URL is https
        {"IpAddress": {"aws:SourceIp": ["198.51.100.7/32"]}},  # a block list, not an allow list
        {"StringEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}},  # denies only that endpoint
        {"NumericGreaterThan": {"s3:signatureAge": "3600000"}},  # longer than the URL lives
        {"StringEquals": {"s3:authType": "POST"}},
    ],
)
def test_a_policy_deny_that_spares_the_presigned_download_is_fine(
    clients: doctor.Clients, condition: dict[str, Any]
) -> None:
    clients.s3.put_bucket_policy(Bucket=BUCKET, Policy=deny_get(condition))
    assert only_errors(findings_of(clients)) == []


def test_a_signature_age_shorter_than_the_url_lifetime_says_which_setting_to_change(
    clients: doctor.Clients,
) -> None:
    clients.s3.put_bucket_policy(
        Bucket=BUCKET, Policy=deny_get({"NumericGreaterThan": {"s3:signatureAge": "600000"}})
    )
    (error,) = only_errors(findings_of(clients, presign_expires_seconds=900, transfer="url"))
    assert "600000 ms" in error and "presignExpiresSeconds below 600" in error
    assert only_errors(findings_of(clients, presign_expires_seconds=300, transfer="url")) == []


def test_a_deny_on_a_condition_doctor_cannot_judge_is_a_warning(clients: doctor.Clients) -> None:
    policy = deny_get({"StringNotEquals": {"aws:PrincipalOrgID": "o-abc123"}})
    clients.s3.put_bucket_policy(Bucket=BUCKET, Policy=policy)
    found = findings_of(clients)
    assert only_errors(found) == []
    assert any(f.severity == doctor.WARN and "aws:PrincipalOrgID" in f.what for f in found)


def _queue_arn(clients: doctor.Clients, ministack_url: str, name: str) -> str:
    sqs = local.local_client("sqs", ministack_url)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def _rule(arn: str, event: str, prefix: str, rule_id: str = "users-rule") -> dict[str, Any]:
    rule: dict[str, Any] = {"Id": rule_id, "QueueArn": arn, "Events": [event]}
    if prefix:
        rule["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}
    return rule


def test_an_existing_overlapping_notification_rule_is_an_error(
    clients: doctor.Clients, ministack: local.Server
) -> None:
    arn = _queue_arn(clients, ministack.endpoint_url, "users-queue")
    config = {"QueueConfigurations": [_rule(arn, "s3:ObjectCreated:Put", "incoming/photos/")]}
    clients.s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration=config)
    (error,) = only_errors(findings_of(clients, prefix="incoming/"))
    assert "existing rule 'users-rule'" in error and "overlaps the stack's" in error
    assert only_errors(findings_of(clients, prefix="archive/")) == []  # disjoint prefixes: fine
    assert only_errors(findings_of(clients, notify="eventbridge")) == []  # the stack adds no rule then


def test_eventbridge_delivery_and_the_stacks_own_rules_are_not_overlaps(
    clients: doctor.Clients, ministack: local.Server
) -> None:
    arn = _queue_arn(clients, ministack.endpoint_url, "KieUploader-Queue4A7E3555-abc")
    config = {"QueueConfigurations": [_rule(arn, "s3:ObjectCreated:*", "")], "EventBridgeConfiguration": {}}
    clients.s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration=config)
    assert only_errors(findings_of(clients)) == []


def test_sse_kms_default_encryption_with_a_key_not_listed_is_an_error(clients: doctor.Clients) -> None:
    clients.s3.put_bucket_encryption(
        Bucket=BUCKET,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY_ARN}}
            ]
        },
    )
    (error,) = only_errors(findings_of(clients, bucket_kms_key_arns=(OTHER_KEY_ARN,)))
    assert KEY_ARN in error and "bucketKmsKeyArns" in error
    assert only_errors(findings_of(clients, bucket_kms_key_arns=(KEY_ARN,))) == []


@pytest.mark.parametrize(
    ("prefix", "suggested"),
    [("My Documents/", "My+Documents/"), ("été/", "%C3%A9t%C3%A9/"), ("a&b/", "a%26b/")],
)
def test_a_prefix_that_s3_matches_only_url_encoded_is_an_error_with_the_encoded_value(
    clients: doctor.Clients, prefix: str, suggested: str
) -> None:
    (error,) = only_errors(findings_of(clients, prefix=prefix))
    assert error.startswith("ERROR prefix:")
    assert f"prefix={suggested}" in error
    assert only_errors(findings_of(clients, prefix=suggested)) == []  # the encoded form is accepted


def test_a_plus_in_a_filter_is_a_warning(clients: doctor.Clients) -> None:
    found = findings_of(clients, suffix="+v2.png")
    assert only_errors(found) == []
    assert any(f.severity == doctor.WARN and "'+'" in f.what for f in found)


def test_an_imported_secret_without_a_key_or_missing_is_an_error(clients: doctor.Clients) -> None:
    empty = clients.secretsmanager.create_secret(Name="kie/empty")["ARN"]
    (error,) = only_errors(findings_of(clients, api_key_secret_arn=empty))
    assert "holds no kie.ai key" in error
    clients.secretsmanager.put_secret_value(SecretId=empty, SecretString=json.dumps({"apiKey": ""}))
    assert "holds no kie.ai key" in only_errors(findings_of(clients, api_key_secret_arn=empty))[0]
    missing = "arn:aws:secretsmanager:us-east-1:000000000000:secret:kie/none-AbCdEf"
    (error,) = only_errors(findings_of(clients, api_key_secret_arn=missing))
    assert "does not exist" in error


def test_a_secret_that_holds_a_key_is_fine_and_the_key_is_never_printed(clients: doctor.Clients) -> None:
    arn = clients.secretsmanager.create_secret(
        Name="kie/full", SecretString='{"apiKey":"doctor-secret-key"}'
    )["ARN"]
    found = findings_of(clients, api_key_secret_arn=arn)
    assert only_errors(found) == []
    assert "doctor-secret-key" not in setting_up.report(found)


def test_a_bucket_the_stack_will_create_needs_no_check(clients: doctor.Clients) -> None:
    found = findings_of(clients, bucket_names=(), creates_bucket=True)
    assert only_errors(found) == []
    assert any("creates its own bucket" in f.what for f in found)


def test_the_command_prints_one_line_per_finding_and_exits_1_on_errors(
    clients: doctor.Clients,
    aws_env: dict[str, str],
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings_path = tmp_path / "kie-uploader.settings.json"
    settings_path.write_text(json.dumps({"settings": {"bucketNames": BUCKET, "prefix": "My Docs/"}}))
    code = cli.main(["doctor", "--settings-file", str(settings_path)])
    out = capsys.readouterr().out
    assert code == errors.EXIT_NO
    assert "ERROR prefix: 'My Docs/'" in out
    assert out.strip().splitlines()[-1].startswith("doctor: 1 error")
    code = cli.main(["doctor", "--settings-file", str(settings_path), "-c", "prefix=My+Docs/"])
    assert code == errors.EXIT_OK


def test_the_local_deploy_path_refuses_on_doctor_errors_before_running_cdk(
    clients: doctor.Clients, ministack: local.Server, tmp_path: Any
) -> None:
    from kie_uploader import deploy

    clients.s3.put_bucket_policy(
        Bucket=BUCKET, Policy=deny_get({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}})
    )
    with pytest.raises(deploy.DoctorRefused, match="aws:SourceIp") as refused:
        deploy.deploy_local(
            endpoint_url=ministack.endpoint_url,
            kie_base_url="http://127.0.0.1:9",
            context={"bucketNames": BUCKET},
            outdir=tmp_path / "cdk.out",
        )
    assert "--skip-doctor" in str(refused.value)
    cfn = local.local_client("cloudformation", ministack.endpoint_url)
    assert not cfn.list_stacks()["StackSummaries"]  # nothing deployed, not even the toolkit stack


def test_a_stack_that_creates_its_bucket_passes_the_deploy_paths_doctor(
    clients: doctor.Clients, ministack: local.Server, tmp_path: Any
) -> None:
    from kie_uploader import deploy

    # The demo's and the end-to-end tests' deploy: the bucket does not exist yet, the secret neither.
    found = deploy.preflight(
        {"prefix": "incoming/", "stackName": "KieUploader"},
        region=REGION,
        clients=clients,
        settings_path=tmp_path / "settings.json",
    )
    assert not doctor.errors(found)


def test_the_aws_deploy_path_runs_doctor_first(
    clients: doctor.Clients, aws_env: dict[str, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from kie_uploader import deploy, settings_file

    monkeypatch.setenv(settings_file.ENV_VAR, str(tmp_path / "kie-uploader.settings.json"))
    settings_file.save(tmp_path / "kie-uploader.settings.json", {"bucketNames": BUCKET, "prefix": "a b/"})
    with pytest.raises(deploy.DoctorRefused, match=r"prefix=a\+b/"):
        deploy.deploy_aws({}, session=boto3.Session(), project_root=tmp_path)


def test_rules_that_target_the_deployed_stacks_own_queue_are_not_overlaps(
    clients: doctor.Clients, ministack: local.Server
) -> None:
    template = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "named-queue"}}}
    }
    clients.cloudformation.create_stack(StackName="KieUploader", TemplateBody=json.dumps(template))
    clients.cloudformation.get_waiter("stack_create_complete").wait(
        StackName="KieUploader", WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    sqs = local.local_client("sqs", ministack.endpoint_url)
    url = sqs.get_queue_url(QueueName="named-queue")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    config = {
        "QueueConfigurations": [
            _rule(arn, "s3:ObjectCreated:*", "", rule_id="kie-uploader-0a1b2c-ObjectCreated")
        ]
    }
    clients.s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration=config)
    assert only_errors(findings_of(clients)) == []  # the deploy replaces its own rule
    assert only_errors(findings_of(clients, stack_name="OtherStack"))  # for another stack it overlaps


def test_doctor_names_a_c_bucket_set_the_deploy_would_refuse(
    clients: doctor.Clients, aws_env: dict[str, str], tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings_path = tmp_path / "kie-uploader.settings.json"
    settings_path.write_text(json.dumps({"settings": {"bucketNames": BUCKET}}))
    code = cli.main(["doctor", "--settings-file", str(settings_path), "-c", "bucketNames=other-bucket"])
    out = capsys.readouterr().out
    assert code == errors.EXIT_NO
    assert "ERROR settings: context bucketNames='other-bucket' differs" in out
    assert "acceptSettingsChange=true" in out
