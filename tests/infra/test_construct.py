"""``KieUploader`` used the way a user's own CDK app uses it: a small stack of theirs, imported buckets.

One synth per notify mode (bundling skipped, cdk-nag on), shared by the tests of this module.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kie_uploader.cdk import watched
from kie_uploader.cdk.notifications import eventbridge_key_pattern
from uploader import watch

ACCOUNT, REGION = "123456789012", "eu-west-1"
PHOTOS, DOCS = "user-photos", "user-docs"
PHOTOS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1111aaaa-11aa-11aa-11aa-111111111111"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:kie/api-key-AbCdEf"
SECRET_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/2222bbbb-22bb-22bb-22bb-222222222222"
REPO = Path(__file__).resolve().parents[2]
HANDLER = REPO / "src" / "kie_uploader" / "cdk" / "handlers" / "bucket_notifications" / "index.py"

#: The user's app, as a user would write it (also run as a script by the separate-process test).
USER_APP = """
from aws_cdk import App, Environment, Stack, Validations
from aws_cdk import aws_kms as kms, aws_s3 as s3, aws_secretsmanager as secretsmanager
from cdk_nag import AwsSolutionsChecks
from kie_uploader.cdk import KieUploader


class PhotosStack(Stack):
    def __init__(self, scope, construct_id, *, props):
        super().__init__(scope, construct_id, env=Environment(account=ACCOUNT, region=REGION))
        photos = s3.Bucket.from_bucket_name(self, "Photos", PHOTOS)
        docs = s3.Bucket.from_bucket_name(self, "Docs", DOCS)
        self.uploader = KieUploader(
            self,
            "Uploader",
            buckets=[photos, docs],
            accept_responsibility_for_imported_buckets=True,
            bucket_kms_keys=[kms.Key.from_key_arn(self, "PhotosKey", PHOTOS_KEY)],
            existing_secret=secretsmanager.Secret.from_secret_complete_arn(self, "KieKey", SECRET_ARN),
            existing_secret_kms_key=kms.Key.from_key_arn(self, "KieKeyKey", SECRET_KEY),
            **props,
        )


def synth(props, outdir=None):
    app = App(context={"aws:cdk:bundling-stacks": []}, outdir=outdir)
    stack = PhotosStack(app, "Photos", props=props)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    assembly = app.synth()
    template = assembly.get_stack_artifact(stack.artifact_id).template
    return stack, template
"""


def s3_arn(name: str) -> dict[str, Any]:
    return {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":s3:::{name}"]]}


def _user_app() -> dict[str, Any]:
    namespace: dict[str, Any] = {
        "ACCOUNT": ACCOUNT,
        "REGION": REGION,
        "PHOTOS": PHOTOS,
        "DOCS": DOCS,
        "PHOTOS_KEY": PHOTOS_KEY,
        "SECRET_ARN": SECRET_ARN,
        "SECRET_KEY": SECRET_KEY,
    }
    exec(compile(USER_APP, "user_app.py", "exec"), namespace)
    return namespace


@dataclass(frozen=True)
class UserSynth:
    stack: Any
    template: dict[str, Any]

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == resource_type}

    def props(self, resource_type: str) -> list[dict[str, Any]]:
        return [resource["Properties"] for resource in self.resources(resource_type).values()]

    def notifications(self) -> dict[str, dict[str, Any]]:
        """Bucket name → the construct's notification entries on it."""
        return {
            props["BucketName"]: props["Configuration"]
            for props in self.props("Custom::KieUploaderBucketNotifications")
        }

    def logical_id(self, construct: Any) -> str:
        return str(self.stack.get_logical_id(construct.node.default_child))


MODES: dict[str, dict[str, Any]] = {
    "queue": {"prefix": "incoming/", "suffix": ".jpg", "max_concurrency": 4},
    "eventbridge": {"notify": "eventbridge", "prefix": "incoming/"},
    "lambda": {"notify": "lambda", "max_concurrency": 3},
}


@pytest.fixture(scope="module")
def user_synths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, UserSynth]:
    app = _user_app()
    synths = {}
    for mode, props in MODES.items():
        stack, template = app["synth"](props, str(tmp_path_factory.mktemp(f"user-{mode}")))
        synths[mode] = UserSynth(stack, template)
    return synths


def statements_of(synth: UserSynth, role_prefix: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for policy in synth.props("AWS::IAM::Policy"):
        if any(role["Ref"].startswith(role_prefix) for role in policy["Roles"]):
            found += policy["PolicyDocument"]["Statement"]
    return found


def queue_mapping(synth: UserSynth) -> dict[str, Any]:
    """The event source mapping of the uploader's queue (the publisher has one on the table's stream)."""
    queue_arn = {"Fn::GetAtt": [synth.logical_id(synth.stack.uploader.queue), "Arn"]}
    (mapping,) = [
        m for m in synth.props("AWS::Lambda::EventSourceMapping") if m["EventSourceArn"] == queue_arn
    ]
    assert mapping["FunctionName"] == {"Ref": synth.logical_id(synth.stack.uploader.function)}
    return mapping


def queue_statements(synth: UserSynth) -> list[dict[str, Any]]:
    queue = synth.logical_id(synth.stack.uploader.queue)
    (policy,) = [p for p in synth.props("AWS::SQS::QueuePolicy") if p["Queues"] == [{"Ref": queue}]]
    return list(policy["PolicyDocument"]["Statement"])


# --- the three modes' wiring ---------------------------------------------------------------------------


def test_queue_mode_puts_fixed_id_entries_on_each_imported_bucket_and_lets_only_s3_of_this_account_send(
    user_synths: dict[str, UserSynth],
) -> None:
    synth = user_synths["queue"]
    uploader = synth.stack.uploader
    queue_arn = {"Fn::GetAtt": [synth.logical_id(uploader.queue), "Arn"]}
    owner = uploader.bucket_notifications.owner
    assert not synth.resources("AWS::S3::Bucket") and not synth.resources("AWS::Events::Rule")
    assert set(synth.notifications()) == {PHOTOS, DOCS}
    for config in synth.notifications().values():
        assert set(config) == {"QueueConfigurations"}
        entries = {entry["Id"]: entry for entry in config["QueueConfigurations"]}
        assert set(entries) == {f"{owner}-ObjectCreated", f"{owner}-ObjectRemoved"}
        for entry in entries.values():
            assert entry["QueueArn"] == queue_arn
            assert entry["Filter"]["Key"]["FilterRules"] == [
                {"Name": "prefix", "Value": "incoming/"},
                {"Name": "suffix", "Value": ".jpg"},
            ]
    (s3_statement,) = [
        s for s in queue_statements(synth) if s.get("Principal") == {"Service": "s3.amazonaws.com"}
    ]
    assert s3_statement["Condition"] == {
        "ArnLike": {"aws:SourceArn": [s3_arn(PHOTOS), s3_arn(DOCS)]},
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
    }
    mapping = queue_mapping(synth)
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 4}
    assert mapping["BatchSize"] == 10 and mapping["MaximumBatchingWindowInSeconds"] == 0
    assert "ReservedConcurrentExecutions" not in uploader_function(synth)


def uploader_function(synth: UserSynth) -> dict[str, Any]:
    return dict(synth.template["Resources"][synth.logical_id(synth.stack.uploader.function)]["Properties"])


def test_eventbridge_mode_switches_s3s_eventbridge_on_and_routes_this_buckets_events_to_the_queue(
    user_synths: dict[str, UserSynth],
) -> None:
    synth = user_synths["eventbridge"]
    uploader = synth.stack.uploader
    # The buckets' own notification entries are left alone: only S3's EventBridge switch is turned on.
    assert synth.notifications() == {PHOTOS: {"EventBridge": "true"}, DOCS: {"EventBridge": "true"}}
    (rule,) = synth.props("AWS::Events::Rule")
    assert rule["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created", "Object Deleted"],
        "detail": {"bucket": {"name": [PHOTOS, DOCS]}, "object": {"key": [{"prefix": "incoming/"}]}},
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [synth.logical_id(uploader.queue), "Arn"]}
    assert target["DeadLetterConfig"] == {
        "Arn": {"Fn::GetAtt": [synth.logical_id(uploader.dead_letter_queue), "Arn"]}
    }
    principals = [s.get("Principal") for s in queue_statements(synth) if s["Effect"] == "Allow"]
    assert principals == [{"Service": "events.amazonaws.com"}]  # and not S3
    assert not synth.resources("AWS::Lambda::Permission")


def test_lambda_mode_invokes_directly_with_a_concurrency_ceiling_and_scoped_permissions(
    user_synths: dict[str, UserSynth],
) -> None:
    synth = user_synths["lambda"]
    uploader = synth.stack.uploader
    function_arn = {"Fn::GetAtt": [synth.logical_id(uploader.function), "Arn"]}
    for config in synth.notifications().values():
        assert [entry["LambdaFunctionArn"] for entry in config["LambdaFunctionConfigurations"]] == [
            function_arn
        ] * 2
        assert all("Filter" not in entry for entry in config["LambdaFunctionConfigurations"])
    permissions = synth.props("AWS::Lambda::Permission")
    assert sorted(map(str, (p["SourceArn"] for p in permissions))) == sorted(
        map(str, [s3_arn(PHOTOS), s3_arn(DOCS)])
    )
    assert {(p["Principal"], p["SourceAccount"]) for p in permissions} == {("s3.amazonaws.com", ACCOUNT)}
    # The ceiling: S3 cannot fan out beyond max_concurrency invocations, so kie.ai sees at most 3 x 10.
    assert uploader_function(synth)["ReservedConcurrentExecutions"] == 3
    mapping = queue_mapping(synth)
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 3}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_alarms_on_failed_uploads_and_passes_cdk_nag(
    mode: str, user_synths: dict[str, UserSynth]
) -> None:
    synth = user_synths[mode]
    failed = [a for a in synth.props("AWS::CloudWatch::Alarm") if a.get("MetricName") == "UploadFailed"]
    assert len(failed) == 1 and failed[0]["Namespace"] == "KieUploader"
    # app.synth() raised if cdk-nag found anything unacknowledged; every acknowledgment names its finding.
    assert synth.stack.uploader.acknowledged_findings


# --- least privilege -----------------------------------------------------------------------------------


def test_kms_decrypt_is_only_via_s3_for_the_bucket_key_and_via_secrets_manager_for_the_secret_key(
    user_synths: dict[str, UserSynth],
) -> None:
    synth = user_synths["queue"]
    role = synth.logical_id(synth.stack.uploader.uploader.role)
    decrypts = {
        s["Resource"]: s.get("Condition")
        for s in statements_of(synth, role)
        if "kms:Decrypt" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    # The bucket key: for the watched objects only (prefix=incoming/, suffix=.jpg), or for a bucket's ARN,
    # the encryption context of its objects under an S3 Bucket Key.
    contexts = [s3_arn(f"{name}/incoming/*.jpg") for name in (PHOTOS, DOCS)] + [s3_arn(PHOTOS), s3_arn(DOCS)]
    assert decrypts == {
        PHOTOS_KEY: {
            "StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"},
            "StringLike": {"kms:EncryptionContext:aws:s3:arn": contexts},
        },
        SECRET_KEY: {"StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}},
    }


def test_the_notifications_handler_may_only_get_and_put_the_source_buckets_notifications(
    user_synths: dict[str, UserSynth],
) -> None:
    synth = user_synths["queue"]
    role = synth.logical_id(synth.stack.uploader.bucket_notifications.role)
    (s3_statement,) = [s for s in statements_of(synth, role) if str(s["Action"]).startswith("['s3:")]
    assert s3_statement["Action"] == ["s3:GetBucketNotification", "s3:PutBucketNotification"]
    assert s3_statement["Resource"] == [s3_arn(PHOTOS), s3_arn(DOCS)]


# --- what is watched: the function's rules and the role's reads say the same ---------------------------


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resources_of(statements: list[dict[str, Any]], action: str) -> list[Any]:
    return [
        resource
        for statement in statements
        if statement["Effect"] == "Allow" and action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    ]


def s3_actions(statements: list[dict[str, Any]]) -> set[str]:
    return {a for statement in statements for a in as_list(statement["Action"]) if a.startswith("s3:")}


def watched_objects(synth: UserSynth) -> Any:
    return uploader_function(synth)["Environment"]["Variables"]["WATCHED_OBJECTS"]


@pytest.mark.parametrize("mode", list(MODES))
def test_the_role_reads_exactly_the_watched_objects_and_the_function_gets_the_same_rules(
    mode: str, user_synths: dict[str, UserSynth]
) -> None:
    # queue: prefix and suffix; eventbridge: a prefix only; lambda: neither (every key).
    synth = user_synths[mode]
    prefix, suffix = MODES[mode].get("prefix", ""), MODES[mode].get("suffix", "")
    statements = statements_of(synth, synth.logical_id(synth.stack.uploader.uploader.role))
    objects = [s3_arn(f"{name}/{prefix}*{suffix}") for name in (PHOTOS, DOCS)]
    assert resources_of(statements, "s3:GetObject") == objects
    assert resources_of(statements, "s3:GetObjectVersion") == objects
    assert resources_of(statements, "s3:ListBucket") == [s3_arn(PHOTOS), s3_arn(DOCS)]
    assert s3_actions(statements) == {"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"}
    # Imported by name: the rules are a plain string, one per bucket, in functions/uploader/watch.py's format.
    raw = watched_objects(synth)
    assert json.loads(raw) == [
        {"bucket": name, "prefix": prefix, "suffix": suffix} for name in (PHOTOS, DOCS)
    ]
    assert watch.parse(raw) == watch.Watched.of_buckets([PHOTOS, DOCS], prefix, suffix)


def iam_matches(pattern: str, text: str) -> bool:
    """IAM's string matching: ``*`` any characters (``/`` too, or none), ``?`` one; ``${*}``, ``${?}``,
    ``${$}`` are the characters themselves."""
    regex, index = "", 0
    while index < len(pattern):
        if pattern.startswith(("${*}", "${?}", "${$}"), index):
            regex, index = regex + re.escape(pattern[index + 2]), index + 4
            continue
        char = pattern[index]
        regex, index = regex + {"*": ".*", "?": "."}.get(char, re.escape(char)), index + 1
    return re.fullmatch(regex, text, re.DOTALL) is not None


@pytest.mark.parametrize(
    ("prefix", "suffix"),
    [
        ("", ""),
        ("incoming/", ""),
        ("", ".png"),
        ("incoming/", ".png"),
        ("a/b", "b"),  # overlapping: "a/b" is neither the rule's nor the pattern's
        ("a*b?/", "$x}.png"),  # IAM's wildcards and "${" as literal characters of a key
    ],
)
def test_the_iam_pattern_matches_exactly_the_keys_the_functions_rule_matches(
    prefix: str, suffix: str
) -> None:
    rule = watch.Rule("bucket", prefix, suffix)
    pattern = watched.key_pattern(prefix, suffix)
    keys = {
        "",
        "payroll.csv",
        "private/payroll.csv",
        "incoming/../private/payroll.csv",
        prefix,
        suffix,
        prefix + suffix,
        prefix + "x/y/z" + suffix,
        "x" + prefix + suffix,
        prefix + suffix + "x",
        prefix[:-1] + "x" + suffix,
        prefix + "x" + suffix[1:],
        prefix.replace("*", "X").replace("?", "Y") + suffix.replace("$", "S"),
    }
    matched = {key for key in keys if rule.matches("bucket", key)}
    assert matched and (matched != keys or not (prefix or suffix))  # the keys test both sides
    assert {key for key in keys if iam_matches(pattern, key)} == matched


def test_an_encoded_filter_value_is_watched_and_read_as_the_keys_it_matches() -> None:
    """S3's filters are URL-encoded (doctor asks for ``My+Documents/``): the function's rule and IAM get the
    key's own text, so the objects S3 notifies about are the ones the function accepts and the role reads."""
    assert watched.key_text("My+Documents/") == "My Documents/"
    assert watched.key_text("%E6%9D%B1%E4%BA%AC/") == "東京/"
    assert watched.key_pattern("My+Documents/", ".p%26l") == "My Documents/*.p&l"
    rule = watch.Rule("bucket", watched.key_text("My+Documents/"), "")
    assert rule.matches("bucket", "My Documents/a.txt") and not rule.matches("bucket", "My+Documents/a")


# --- a created and an imported bucket, and a grantee: the user's app with cdk-nag and cfn-lint --------


@dataclass(frozen=True)
class MixedSynth:
    stack: Any
    uploader: Any
    created_id: str
    template: dict[str, Any]
    outdir: Path
    template_path: Path
    grants: dict[str, Any]

    def statements(self, role_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for resource in self.template["Resources"].values():
            if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in resource["Properties"]["Roles"]:
                found += resource["Properties"]["PolicyDocument"]["Statement"]
        return found

    def logical_id(self, construct: Any) -> str:
        return str(self.stack.get_logical_id(construct.node.default_child))


def logical_id(stack: Any, construct: Any) -> str:
    return str(stack.get_logical_id(construct.node.default_child))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> MixedSynth:
    from aws_cdk import App, Environment, Stack, Validations
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_s3 as s3
    from cdk_nag import AwsSolutionsChecks

    from infra.app import cdk_json_context
    from kie_uploader.cdk import KieUploader, SourceBuckets

    outdir = tmp_path_factory.mktemp("user-mixed")
    # A recent `cdk init`'s feature flags (cdk.json's): SourceBuckets' access logs use a bucket policy.
    app = App(context={**cdk_json_context(), "aws:cdk:bundling-stacks": []}, outdir=str(outdir))
    stack = Stack(app, "Mixed", env=Environment(account=ACCOUNT, region=REGION))
    created = SourceBuckets(stack, "Sources", existing_bucket_names=[], existing_kms_key_arns=[]).buckets[0]
    uploader = KieUploader(
        stack,
        "Uploader",
        buckets=[created, s3.Bucket.from_bucket_name(stack, "Docs", DOCS)],
        accept_responsibility_for_imported_buckets=True,
        bucket_kms_keys=[kms.Key.from_key_arn(stack, "PhotosKey", PHOTOS_KEY)],
        prefix="incoming/",
        suffix=".png",
    )
    caller = iam.Role(stack, "Caller", assumed_by=iam.AccountPrincipal(ACCOUNT))
    grants = {"resolve": uploader.grant_resolve(caller), "send": uploader.grant_send(caller)}
    # An S3 Batch Operations job's role, as AWS's user guide shows it ("Invoke AWS Lambda function").
    batch_operations = iam.ServicePrincipal("batchoperations.s3.amazonaws.com")
    job_role = iam.Role(stack, "BatchJob", assumed_by=batch_operations)
    grants["batch"] = uploader.grant_batch_operations(job_role)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    assembly = app.synth()  # an unacknowledged cdk-nag finding raises here
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    template_path = Path(assembly.directory) / artifact.template_file
    return MixedSynth(
        stack,
        uploader,
        logical_id(stack, created),
        json.loads(template_path.read_text()),
        outdir,
        template_path,
        {**grants, "caller": logical_id(stack, caller), "job_role": logical_id(stack, job_role)},
    )


def test_a_created_buckets_name_reaches_the_functions_rules_through_cloudformation(mixed: MixedSynth) -> None:
    env = mixed.template["Resources"][mixed.logical_id(mixed.uploader.function)]["Properties"]["Environment"]
    raw = env["Variables"]["WATCHED_OBJECTS"]
    assert raw == {
        "Fn::Join": [
            "",
            [
                '[{"bucket":"',
                {"Ref": mixed.created_id},
                '","prefix":"incoming/","suffix":".png"},{"bucket":"user-docs","prefix":"incoming/","suffix":".png"}]',
            ],
        ]
    }
    deployed = "".join(part if isinstance(part, str) else "photos-abc123" for part in raw["Fn::Join"][1])
    assert watch.parse(deployed) == watch.Watched.of_buckets(["photos-abc123", DOCS], "incoming/", ".png")


def test_the_role_reads_only_the_watched_objects_of_a_created_and_an_imported_bucket(
    mixed: MixedSynth,
) -> None:
    statements = mixed.statements(mixed.logical_id(mixed.uploader.uploader.role))
    created_arn = {"Fn::GetAtt": [mixed.created_id, "Arn"]}
    # cdk.json's flags: the partition as a literal (the stack's region is known), statements merged.
    objects = [{"Fn::Join": ["", [created_arn, "/incoming/*.png"]]}, f"arn:aws:s3:::{DOCS}/incoming/*.png"]
    assert same(resources_of(statements, "s3:GetObject"), objects)
    assert same(resources_of(statements, "s3:GetObjectVersion"), objects)
    assert same(resources_of(statements, "s3:ListBucket"), [created_arn, f"arn:aws:s3:::{DOCS}"])
    assert s3_actions(statements) == {"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"}
    (decrypt,) = [s for s in statements if "kms:Decrypt" in as_list(s["Action"])]
    (contexts,) = decrypt["Condition"]["StringLike"].values()
    assert same(contexts, [*objects, created_arn, f"arn:aws:s3:::{DOCS}"])


def same(found: list[Any], expected: list[Any]) -> bool:
    """The same values, in any order."""
    return sorted(json.dumps(v, sort_keys=True) for v in found) == sorted(
        json.dumps(v, sort_keys=True) for v in expected
    )


def test_grant_resolve_and_grant_send_allow_invoking_the_function_and_sending_to_the_queue_only(
    mixed: MixedSynth,
) -> None:
    from aws_cdk import aws_iam as iam

    assert all(isinstance(mixed.grants[name], iam.Grant) for name in ("resolve", "send"))
    assert mixed.grants["resolve"].success and mixed.grants["send"].success
    statements = mixed.statements(mixed.grants["caller"])
    function_arn = {"Fn::GetAtt": [mixed.logical_id(mixed.uploader.function), "Arn"]}
    queue_arn = {"Fn::GetAtt": [mixed.logical_id(mixed.uploader.queue), "Arn"]}
    granted = [
        (
            statement["Effect"],
            sorted(as_list(statement["Action"])),
            statement["Resource"],
            statement.get("Condition"),
        )
        for statement in statements
    ]
    assert granted == [
        ("Allow", ["lambda:InvokeFunction"], function_arn, None),
        ("Allow", ["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"], queue_arn, None),
    ]
    # A role of the same account needs no resource policy: no Lambda permission, and the queue's policy lets
    # S3 alone send.
    resources = mixed.template["Resources"].values()
    assert not [r for r in resources if r["Type"] == "AWS::Lambda::Permission"]
    principals = [
        statement.get("Principal")
        for r in resources
        if r["Type"] == "AWS::SQS::QueuePolicy"
        and r["Properties"]["Queues"] == [{"Ref": mixed.logical_id(mixed.uploader.queue)}]
        for statement in r["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow"
    ]
    assert principals == [{"Service": "s3.amazonaws.com"}]


def test_grant_batch_operations_lets_the_job_role_invoke_the_function_only(mixed: MixedSynth) -> None:
    from aws_cdk import aws_iam as iam

    assert isinstance(mixed.grants["batch"], iam.Grant) and mixed.grants["batch"].success
    function_arn = {"Fn::GetAtt": [mixed.logical_id(mixed.uploader.function), "Arn"]}
    granted = [
        (s["Effect"], as_list(s["Action"]), s["Resource"], s.get("Condition"))
        for s in mixed.statements(mixed.grants["job_role"])
    ]
    assert granted == [("Allow", ["lambda:InvokeFunction"], function_arn, None)]
    trust = mixed.template["Resources"][mixed.grants["job_role"]]["Properties"]["AssumeRolePolicyDocument"]
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "batchoperations.s3.amazonaws.com"}]
    # The role is in the same account: an identity policy, no resource policy on the function.
    resources = mixed.template["Resources"].values()
    assert not [r for r in resources if r["Type"] == "AWS::Lambda::Permission"]


def test_grant_batch_operations_refuses_what_is_not_a_role() -> None:
    from kie_uploader.cdk import KieUploaderPropsError

    uploader = _construct()
    with pytest.raises(KieUploaderPropsError, match="grant_batch_operations: expected an iam.IRole"):
        uploader.grant_batch_operations("arn:aws:iam::123456789012:role/BatchJob")


def test_cdk_nag_and_cfn_lint_pass_on_a_created_bucket_with_a_prefix_and_a_grantee(mixed: MixedSynth) -> None:
    report = nag_report(mixed.outdir)
    assert report["conclusion"] == "success" and report["violations"] == []
    suppressed = {entry["acknowledgedId"] for entry in report["suppressedViolations"]}
    assert suppressed == set(mixed.uploader.acknowledged_findings)  # none stale
    assert f"AwsSolutions::AwsSolutions-IAM5[Resource::<{mixed.created_id}.Arn>/incoming/*.png]" in suppressed
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), "--ignore-checks", "W3005", "--", str(mixed.template_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def nag_report(outdir: Path) -> dict[str, Any]:
    reports = json.loads((outdir / "validation-report.json").read_text())["pluginReports"]
    (report,) = [r for r in reports if r["pluginName"] == "AwsSolutions"]
    return dict(report)


def test_iam_wildcards_in_a_prefix_are_literal_and_their_finding_is_acknowledged(tmp_path: Path) -> None:
    from aws_cdk import App, Stack, Validations
    from aws_cdk import aws_s3 as s3
    from cdk_nag import AwsSolutionsChecks

    from kie_uploader.cdk import KieUploader

    app = App(context={"aws:cdk:bundling-stacks": []}, outdir=str(tmp_path))
    stack = Stack(app, "Odd")
    bucket = s3.Bucket.from_bucket_name(stack, "B", "some-bucket")
    uploader = KieUploader(
        stack,
        "Uploader",
        buckets=[bucket],
        prefix="a*b?/",
        suffix="$x}.png",
        events_enabled=False,
        accept_responsibility_for_imported_buckets=True,
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    template = app.synth().get_stack_artifact(stack.artifact_id).template
    role = logical_id(stack, uploader.uploader.role)
    statements = [
        statement
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role} in resource["Properties"]["Roles"]
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert resources_of(statements, "s3:GetObject") == [s3_arn("some-bucket/a${*}b${?}/*${$}x}.png")]
    report = nag_report(tmp_path)
    assert report["conclusion"] == "success" and report["violations"] == []
    assert {e["acknowledgedId"] for e in report["suppressedViolations"]} == set(
        uploader.acknowledged_findings
    )


def test_grant_resolve_and_grant_send_to_another_account_use_the_resources_policies() -> None:
    from aws_cdk import aws_iam as iam
    from aws_cdk.assertions import Template

    uploader = _construct()
    other = iam.AccountPrincipal("210987654321")
    resolve, send = uploader.grant_resolve(other), uploader.grant_send(other)
    assert resolve.success and send.success
    template = Template.from_stack(uploader.node.scope).to_json()
    stack = uploader.node.scope
    function_id = stack.get_logical_id(uploader.function.node.default_child)
    queue_id = stack.get_logical_id(uploader.queue.node.default_child)
    permissions = [
        r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Permission"
    ]
    assert permissions == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Fn::GetAtt": [function_id, "Arn"]},
            "Principal": "210987654321",
        }
    ]
    (queue_policy,) = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::SQS::QueuePolicy" and r["Properties"]["Queues"] == [{"Ref": queue_id}]
    ]
    (statement,) = [
        s
        for s in queue_policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow" and "AWS" in s["Principal"]
    ]
    assert statement["Principal"] == {
        "AWS": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iam::210987654321:root"]]}
    }
    assert statement["Action"] == ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    assert statement["Resource"] == {"Fn::GetAtt": [queue_id, "Arn"]}


# --- stable ids ----------------------------------------------------------------------------------------


def entry_ids(template: dict[str, Any]) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {}
    for resource in template["Resources"].values():
        if resource["Type"] == "Custom::KieUploaderBucketNotifications":
            config = resource["Properties"]["Configuration"]
            ids[resource["Properties"]["BucketName"]] = sorted(
                entry["Id"] for entries in config.values() if isinstance(entries, list) for entry in entries
            )
    return ids


def test_notification_ids_depend_on_the_constructs_path_only_not_on_prefix_or_notify(
    user_synths: dict[str, UserSynth],
) -> None:
    queue_ids = entry_ids(user_synths["queue"].template)
    lambda_ids = entry_ids(user_synths["lambda"].template)  # other notify, no prefix/suffix
    owner = user_synths["queue"].stack.uploader.bucket_notifications.owner
    assert (
        queue_ids
        == lambda_ids
        == {bucket: [f"{owner}-ObjectCreated", f"{owner}-ObjectRemoved"] for bucket in (PHOTOS, DOCS)}
    )
    # The same custom resources (logical ids) in every mode: switching updates them, never replaces them.
    logical = {
        mode: sorted(synth.resources("Custom::KieUploaderBucketNotifications"))
        for mode, synth in user_synths.items()
    }
    assert logical["queue"] == logical["eventbridge"] == logical["lambda"]
    assert all(str(hash(owner)) not in entry for ids in queue_ids.values() for entry in ids)


def test_notification_ids_are_the_same_when_synthesized_in_another_process(
    user_synths: dict[str, UserSynth], tmp_path: Path
) -> None:
    # Python salts hash() per process (aws-cdk issue 31303): ids must not come from it.
    script = tmp_path / "user_app.py"
    constants = {k: globals()[k] for k in ("ACCOUNT", "REGION", "PHOTOS", "DOCS", "PHOTOS_KEY", "SECRET_ARN")}
    constants["SECRET_KEY"] = SECRET_KEY
    script.write_text(
        "".join(f"{name} = {value!r}\n" for name, value in constants.items())
        + USER_APP
        + f"\nimport json\n_, template = synth({{'prefix': 'other/'}}, outdir={str(tmp_path / 'out')!r})\n"
        + "print(json.dumps(template['Resources']))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": os.pathsep.join([str(REPO / "src")])}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resources = json.loads(result.stdout.strip().splitlines()[-1])
    assert entry_ids({"Resources": resources}) == entry_ids(user_synths["queue"].template)


# --- EventBridge key patterns and the custom resource's merge ------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "suffix", "pattern"),
    [
        ("", "", None),
        ("in/", "", [{"prefix": "in/"}]),
        ("", ".png", [{"suffix": ".png"}]),
        ("in/", ".png", [{"wildcard": "in/*.png"}]),
        ("a*b\\", ".c*", [{"wildcard": "a\\*b\\\\*.c\\*"}]),
    ],
)
def test_eventbridge_key_patterns(prefix: str, suffix: str, pattern: Any) -> None:
    assert eventbridge_key_pattern(prefix, suffix) == pattern


@pytest.fixture(scope="module")
def handler_module() -> Any:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    spec = importlib.util.spec_from_file_location("bucket_notifications_handler", HANDLER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_handler_replaces_only_its_own_entries_and_keeps_the_buckets_others(handler_module: Any) -> None:
    theirs = {"Id": "their-thumbnails", "LambdaFunctionArn": "arn:thumbs", "Events": ["s3:ObjectCreated:*"]}
    ours_before = {
        "Id": "kie-uploader-abc-ObjectCreated",
        "QueueArn": "arn:q",
        "Events": ["s3:ObjectCreated:*"],
    }
    cdk_legacy = {"Id": "arn:stack/1-8231", "QueueArn": "arn:q", "Events": ["s3:ObjectRemoved:*"]}
    current = {
        "LambdaFunctionConfigurations": [theirs],
        "QueueConfigurations": [ours_before, cdk_legacy],
    }
    ours_after = {
        "Id": "kie-uploader-abc-ObjectCreated",
        "QueueArn": "arn:q",
        "Events": ["s3:ObjectCreated:*"],
    }
    merged = handler_module.merged(
        current, "kie-uploader-abc", "arn:stack/1-", {"QueueConfigurations": [ours_after]}
    )
    assert merged == {"LambdaFunctionConfigurations": [theirs], "QueueConfigurations": [ours_after]}
    # Delete: ours go, theirs stay; S3's EventBridge switch, once on, stays on.
    assert handler_module.merged(
        {**current, "EventBridgeConfiguration": {}}, "kie-uploader-abc", "x-", {}
    ) == {
        "LambdaFunctionConfigurations": [theirs],
        "QueueConfigurations": [cdk_legacy],
        "EventBridgeConfiguration": {},
    }
    assert handler_module.merged({}, "kie-uploader-abc", "x-", {"EventBridge": "true"}) == {
        "EventBridgeConfiguration": {}
    }


# --- props validation ----------------------------------------------------------------------------------


def _construct(**props: Any) -> Any:
    from aws_cdk import App, Stack
    from aws_cdk import aws_s3 as s3

    from kie_uploader.cdk import KieUploader

    stack = Stack(App(context={"aws:cdk:bundling-stacks": []}), "Props")
    if "buckets" not in props:
        props["buckets"] = [s3.Bucket.from_bucket_name(stack, "B", "some-bucket")]
    props.setdefault("accept_responsibility_for_imported_buckets", True)
    return KieUploader(stack, "Uploader", **props)


def _bad(name: str) -> Any:
    from aws_cdk import App, Stack
    from aws_cdk import aws_s3 as s3

    stack = Stack(App(), "Other")
    bucket = s3.Bucket.from_bucket_name(stack, "B", "some-bucket")
    return {
        "buckets-empty": {"buckets": []},
        "buckets-str": {"buckets": "some-bucket"},
        "buckets-names": {"buckets": ["some-bucket"]},
        "buckets-twice": {"buckets": [bucket, s3.Bucket.from_bucket_name(stack, "C", "some-bucket")]},
    }[name]


@pytest.mark.parametrize(
    ("props", "prop_name"),
    [
        ("buckets-empty", "buckets"),
        ("buckets-str", "buckets"),
        ("buckets-names", r"buckets\[0\]"),
        ("buckets-twice", r"buckets\[1\]"),
        ({"notify": "sns"}, "notify"),
        ({"prefix": 5}, "prefix"),
        ({"max_concurrency": 1}, "max_concurrency"),
        ({"max_concurrency": 1001}, "max_concurrency"),
        ({"notify": "lambda", "max_concurrency": 5, "reserved_concurrency": 2}, "reserved_concurrency"),
        ({"bucket_kms_keys": ["arn:aws:kms:eu-west-1:123456789012:key/x"]}, r"bucket_kms_keys\[0\]"),
        ({"existing_secret": "arn:aws:secretsmanager:eu-west-1:1:secret:x"}, "existing_secret"),
        ({"queue_props": {"fifo": True}}, "queue_props.fifo"),
        ({"queue_props": {"dead_letter_queue": None}}, "queue_props.dead_letter_queue"),
        ({"table_props": {"partition_key": None}}, "table_props.partition_key"),
        ({"table_props": {"time_to_live_attribute": "ttl"}}, "table_props.time_to_live_attribute"),
        ({"alarm_email": "nobody"}, "alarm_email"),
    ],
)
def test_a_bad_prop_fails_with_its_name_in_the_message(props: Any, prop_name: str) -> None:
    from kie_uploader.cdk import KieUploaderPropsError

    given = _bad(props) if isinstance(props, str) else props
    with pytest.raises(KieUploaderPropsError, match=f"^{prop_name}"):
        _construct(**given)


@pytest.mark.parametrize(
    ("options", "prop_name"),
    [
        ({"memory_size": 64}, "function_options.memory_size"),
        ({"architecture": "arm"}, "function_options.architecture"),
        ({"log_retention_days": 31}, "function_options.log_retention_days"),
        ({"timeout_seconds": 30, "kie_timeout_seconds": 30}, "function_options.kie_timeout_seconds"),
        ({"kie_base_url": "ftp://kie.ai"}, "function_options.kie_base_url"),
    ],
)
def test_a_bad_function_option_fails_with_its_name(options: dict[str, Any], prop_name: str) -> None:
    from kie_uploader.cdk import FunctionOptions, KieUploaderPropsError

    with pytest.raises(KieUploaderPropsError, match=f"^{prop_name}"):
        _construct(function_options=FunctionOptions(**options))


def test_a_secret_key_without_a_secret_and_a_short_visibility_timeout_are_refused() -> None:
    from aws_cdk import Duration

    from kie_uploader.cdk import KieUploaderPropsError

    with pytest.raises(KieUploaderPropsError, match="^existing_secret_kms_key"):
        _construct(existing_secret_kms_key=_key())
    with pytest.raises(KieUploaderPropsError, match="^queue_props.visibility_timeout"):
        _construct(queue_props={"visibility_timeout": Duration.seconds(60)})


def _key() -> Any:
    from aws_cdk import App, Stack
    from aws_cdk import aws_kms as kms

    return kms.Key.from_key_arn(Stack(App(), "K"), "K", SECRET_KEY)


def test_queue_and_table_props_replace_the_defaults_they_may() -> None:
    from aws_cdk import Duration, RemovalPolicy
    from aws_cdk import aws_sqs as sqs
    from aws_cdk.assertions import Template

    uploader = _construct(
        queue_props=sqs.QueueProps(retention_period=Duration.days(10), queue_name="kie-work"),
        table_props={"table_name": "kie-records", "removal_policy": RemovalPolicy.DESTROY},
    )
    template = Template.from_stack(uploader.node.scope)
    template.has_resource_properties(
        "AWS::SQS::Queue",
        {"QueueName": "kie-work", "MessageRetentionPeriod": 864000, "SqsManagedSseEnabled": True},
    )
    template.has_resource(
        "AWS::DynamoDB::Table", {"Properties": {"TableName": "kie-records"}, "DeletionPolicy": "Delete"}
    )


def test_a_bucket_of_the_users_own_stack_gets_cdks_own_notifications_with_eventbridge_on() -> None:
    from aws_cdk import App, Stack
    from aws_cdk import aws_s3 as s3
    from aws_cdk.assertions import Template

    from kie_uploader.cdk import KieUploader

    stack = Stack(App(context={"aws:cdk:bundling-stacks": []}), "Owned")
    bucket = s3.Bucket(stack, "Photos")
    uploader = KieUploader(stack, "Uploader", buckets=[bucket], notify="eventbridge", suffix=".png")
    template = Template.from_stack(stack).to_json()
    assert uploader.bucket_notifications is None  # no custom resource: CDK manages an owned bucket's config
    (notifications,) = [
        r for r in template["Resources"].values() if r["Type"] == "Custom::S3BucketNotifications"
    ]
    assert notifications["Properties"]["NotificationConfiguration"] == {"EventBridgeConfiguration": {}}
    (rule,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Events::Rule"]
    assert rule["Properties"]["EventPattern"]["detail"]["object"] == {"key": [{"suffix": ".png"}]}


# --- keep-alive props ----------------------------------------------------------------------------------

KEEP = "s3://some-bucket/incoming/"


@pytest.mark.parametrize(
    ("props", "message"),
    [
        (
            {"keep_alive": ["s3://other-bucket/incoming/"]},
            r"^keep_alive\[0\]: bucket 'other-bucket' is not one of",
        ),
        ({"keep_alive": [KEEP, "s3://other-bucket/"]}, r"^keep_alive\[1\]: bucket 'other-bucket'"),
        (
            {"keep_alive": ["https://some-bucket/incoming/"]},
            r"^keep_alive\[0\]=.* is not an s3://bucket/prefix",
        ),
        ({"keep_alive": ["s3:///incoming/"]}, r"^keep_alive\[0\]=.* is not an s3://bucket/prefix"),
        ({"keep_alive": [KEEP, 5]}, r"^keep_alive\[1\]=5 is not an s3://bucket/prefix"),
        ({"keep_alive": KEEP}, r"^keep_alive: expected a list"),
        (
            {"keep_alive": [KEEP], "refresh_ahead_seconds": 59},
            r"^refresh_ahead_seconds=59 must be between 60",
        ),
        # kie.ai keeps a file retention_seconds (259,200 by default): a round must come 300 s before that.
        (
            {"keep_alive": [KEEP], "refresh_ahead_seconds": 258_901},
            r"^refresh_ahead_seconds=258901 .* 258900",
        ),
        ({"keep_alive": [KEEP], "refresh_ahead_seconds": "3600"}, r"^refresh_ahead_seconds: expected an int"),
        ({"keep_alive": [KEEP], "keep_alive_schedule_minutes": 0}, r"^keep_alive_schedule_minutes=0"),
        ({"keep_alive": [KEEP], "keep_alive_schedule_minutes": 1441}, r"^keep_alive_schedule_minutes=1441"),
    ],
)
def test_a_bad_keep_alive_prop_fails_with_its_name_in_the_message(
    props: dict[str, Any], message: str
) -> None:
    from kie_uploader.cdk import KieUploaderPropsError

    with pytest.raises(KieUploaderPropsError, match=message):
        _construct(**props)


def test_refresh_ahead_seconds_is_bounded_by_a_shorter_retention() -> None:
    from kie_uploader.cdk import FunctionOptions, KieUploaderPropsError

    with pytest.raises(
        KieUploaderPropsError, match=r"^refresh_ahead_seconds=3301 must be between 60 and 3300"
    ):
        _construct(
            keep_alive=[KEEP],
            refresh_ahead_seconds=3301,
            function_options=FunctionOptions(retention_seconds=3600),
        )


def test_keep_alive_defaults_to_an_hourly_round_of_what_expires_within_twelve_hours() -> None:
    from aws_cdk.assertions import Template

    uploader = _construct(keep_alive=[KEEP, "s3://some-bucket/reports/2025/"])
    template = Template.from_stack(uploader.node.scope).to_json()
    rules = {k: r["Properties"] for k, r in template["Resources"].items() if r["Type"] == "AWS::Events::Rule"}
    (rule_id,) = rules
    assert rule_id == uploader.node.scope.get_logical_id(uploader.keep_alive_rule.node.default_child)
    assert rules[rule_id]["ScheduleExpression"] == "rate(1 hour)"
    (target,) = rules[rule_id]["Targets"]
    function_id = uploader.node.scope.get_logical_id(uploader.function.node.default_child)
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert json.loads(target["Input"]) == {
        "refresh": {
            "prefixes": [KEEP, "s3://some-bucket/reports/2025/"],
            "expiringWithinSeconds": 43_200,
            "verifyWindowSeconds": 3600,
        }
    }


def test_without_keep_alive_there_is_no_rule_and_with_events_off_no_stream_nor_publisher() -> None:
    from aws_cdk.assertions import Template

    uploader = _construct(events_enabled=False)
    assert uploader.keep_alive_rule is None and uploader.publisher is None
    template = Template.from_stack(uploader.node.scope)
    template.resource_count_is("AWS::Events::Rule", 0)
    (table,) = [
        r["Properties"]
        for r in template.to_json()["Resources"].values()
        if r["Type"] == "AWS::DynamoDB::Table"
    ]
    assert "StreamSpecification" not in table


def test_the_table_stream_may_not_be_overridden() -> None:
    from aws_cdk import aws_dynamodb as dynamodb

    from kie_uploader.cdk import KieUploaderPropsError

    with pytest.raises(KieUploaderPropsError, match="^table_props.stream"):
        _construct(table_props={"stream": dynamodb.StreamViewType.KEYS_ONLY})
