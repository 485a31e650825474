"""The construct's props a user of Solutions Constructs or cdk-serverless-clamscan expects (issue 16).

``max_receive_count`` and ``dead_letter_queue_props``, ``add_bucket`` after construction, and the explicit
acknowledgment of imported buckets: each read from the synthesized template (bundling skipped; cdk-nag on
where the template is compared).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from uploader import watch

ACCOUNT, REGION = "123456789012", "eu-west-1"
PHOTOS, DOCS, REPORTS = "user-photos", "user-docs", "user-reports"
PHOTOS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1111aaaa-11aa-11aa-11aa-111111111111"
REPORTS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/3333cccc-33cc-33cc-33cc-333333333333"


def _stack(name: str = "User") -> Any:
    from aws_cdk import App, Environment, Stack

    app = App(context={"aws:cdk:bundling-stacks": []})
    return Stack(app, name, env=Environment(account=ACCOUNT, region=REGION))


def _imported(stack: Any, name: str) -> Any:
    from aws_cdk import aws_s3 as s3

    return s3.Bucket.from_bucket_name(stack, f"Bucket-{name}", name)


def _uploader(stack: Any, buckets: list[Any], **props: Any) -> Any:
    from kie_uploader.cdk import KieUploader

    props.setdefault("accept_responsibility_for_imported_buckets", True)
    return KieUploader(stack, "Uploader", buckets=buckets, **props)


def _template(stack: Any, *, nag: bool = False) -> dict[str, Any]:
    """The stack's template (cdk-nag's AwsSolutions checks run first with ``nag``: a finding fails synth)."""
    from aws_cdk import Stage, Validations
    from cdk_nag import AwsSolutionsChecks

    app = Stage.of(stack)
    assert app is not None
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    assembly = app.synth()
    return dict(assembly.get_stack_artifact(stack.artifact_id).template)


def _resource(stack: Any, template: dict[str, Any], construct: Any) -> dict[str, Any]:
    return dict(template["Resources"][stack.resolve(construct.node.default_child.logical_id)])


# --- max_receive_count and dead_letter_queue_props ------------------------------------------------------


def test_by_default_a_message_moves_to_the_dead_letter_queue_after_five_receives_and_waits_14_days() -> None:
    stack = _stack()
    uploader = _uploader(stack, [_imported(stack, PHOTOS)])
    template = _template(stack)
    queue = _resource(stack, template, uploader.queue)["Properties"]
    dead_letters = _resource(stack, template, uploader.dead_letter_queue)["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    assert dead_letters["MessageRetentionPeriod"] == 14 * 86_400
    assert dead_letters["SqsManagedSseEnabled"] is True


def test_max_receive_count_and_dead_letter_queue_props_replace_the_defaults_and_keep_encryption_and_ssl() -> (
    None
):
    from aws_cdk import Duration
    from aws_cdk import aws_sqs as sqs

    stack = _stack()
    uploader = _uploader(
        stack,
        [_imported(stack, PHOTOS)],
        max_receive_count=3,
        dead_letter_queue_props=sqs.QueueProps(retention_period=Duration.days(7), queue_name="kie-dead"),
    )
    template = _template(stack, nag=True)
    queue = _resource(stack, template, uploader.queue)["Properties"]
    dead_letters = _resource(stack, template, uploader.dead_letter_queue)
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {
            "Fn::GetAtt": [stack.resolve(uploader.dead_letter_queue.node.default_child.logical_id), "Arn"]
        },
        "maxReceiveCount": 3,
    }
    assert dead_letters["Properties"]["MessageRetentionPeriod"] == 7 * 86_400
    assert dead_letters["Properties"]["QueueName"] == "kie-dead"
    assert dead_letters["Properties"]["SqsManagedSseEnabled"] is True
    # The construct's own queue policy still refuses plain HTTP on the dead-letter queue.
    (policy,) = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::SQS::QueuePolicy"
        and r["Properties"]["Queues"]
        == [{"Ref": stack.resolve(uploader.dead_letter_queue.node.default_child.logical_id)}]
    ]
    (deny,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


@pytest.mark.parametrize(
    ("props", "prop_name"),
    [
        ({"max_receive_count": 0}, "max_receive_count"),
        ({"max_receive_count": 1001}, "max_receive_count"),
        ({"max_receive_count": True}, "max_receive_count"),
        ({"max_receive_count": "5"}, "max_receive_count"),
        ({"dead_letter_queue_props": "kie-dead"}, "dead_letter_queue_props"),
        ({"dead_letter_queue_props": {"fifo": True}}, "dead_letter_queue_props.fifo"),
        ({"dead_letter_queue_props": {"enforce_ssl": False}}, "dead_letter_queue_props.enforce_ssl"),
        ({"dead_letter_queue_props": {"encryption": None}}, "dead_letter_queue_props.encryption"),
        (
            {"dead_letter_queue_props": {"dead_letter_queue": None}},
            "dead_letter_queue_props.dead_letter_queue",
        ),
    ],
)
def test_a_bad_dead_letter_prop_fails_with_its_name(props: dict[str, Any], prop_name: str) -> None:
    from kie_uploader.cdk import KieUploaderPropsError

    stack = _stack()
    with pytest.raises(KieUploaderPropsError, match=f"^{prop_name}"):
        _uploader(stack, [_imported(stack, PHOTOS)], **props)


# --- imported buckets: an explicit acknowledgment ------------------------------------------------------

#: What the refusal says it would change on an imported bucket, by notify mode.
CHANGES = {
    "queue": (
        "ObjectCreated",
        "ObjectRemoved",
        "prefix 'incoming/'",
        "SQS queue",
        "keeping its other entries",
    ),
    "lambda": ("ObjectCreated", "ObjectRemoved", "prefix 'incoming/'", "uploader function"),
    "eventbridge": ("turns on its EventBridge delivery", "default event bus"),
}


@pytest.mark.parametrize("mode", list(CHANGES))
def test_imported_buckets_without_the_acknowledgment_fail_saying_what_changes_on_each(mode: str) -> None:
    from kie_uploader.cdk import KieUploaderPropsError

    stack = _stack()
    buckets = [_imported(stack, PHOTOS), _imported(stack, DOCS)]
    with pytest.raises(KieUploaderPropsError, match="^accept_responsibility_for_imported_buckets") as error:
        _uploader(
            stack, buckets, notify=mode, prefix="incoming/", accept_responsibility_for_imported_buckets=False
        )
    lines = str(error.value).splitlines()
    for name in (PHOTOS, DOCS):
        (line,) = [line for line in lines if line.startswith(f"* {name}: ")]
        for change in CHANGES[mode]:
            assert change in line, (change, line)


def test_a_bucket_of_the_stack_itself_needs_no_acknowledgment_but_one_imported_later_does() -> None:
    from aws_cdk import aws_s3 as s3

    from kie_uploader.cdk import KieUploader, KieUploaderPropsError

    stack = _stack()
    uploader = KieUploader(stack, "Uploader", buckets=[s3.Bucket(stack, "Own", enforce_ssl=True)])
    with pytest.raises(
        KieUploaderPropsError, match=f"^accept_responsibility_for_imported_buckets.*\n\\* {DOCS}: "
    ):
        uploader.add_bucket(_imported(stack, DOCS))
    assert len(uploader.buckets) == len(uploader.watched_buckets) == 1  # nothing half-added


# --- add_bucket ----------------------------------------------------------------------------------------


def _normalized(template: dict[str, Any]) -> dict[str, Any]:
    """The template with each policy's statements in a fixed order (add_bucket appends its own last)."""
    resources = json.loads(json.dumps(template["Resources"]))
    for resource in resources.values():
        document = resource["Properties"].get("PolicyDocument") if "Properties" in resource else None
        if isinstance(document, dict):
            document["Statement"] = sorted(document["Statement"], key=lambda s: json.dumps(s, sort_keys=True))
    return resources


def _own_bucket(stack: Any) -> Any:
    """A bucket of the user's stack (SSL only; its access logs are the user's business, acknowledged)."""
    from aws_cdk import Acknowledgment, Validations
    from aws_cdk import aws_s3 as s3

    bucket = s3.Bucket(stack, "Own", enforce_ssl=True)
    Validations.of(bucket).acknowledge(
        Acknowledgment(id="AwsSolutions::AwsSolutions-S1", reason="The test's bucket: access logs not needed")
    )
    return bucket


def _both_ways(
    second: Callable[[Any], Any], *, key: bool = False, **props: Any
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """The template with ``[photos, second]`` given to the constructor, and with ``second`` added later
    (``key``: with photos' bucket key, given to the constructor both times)."""

    def keys(stack: Any) -> dict[str, Any]:
        return {"bucket_kms_keys": [_bucket_key(stack, PHOTOS_KEY)]} if key else {}

    given_stack = _stack()
    _uploader(
        given_stack, [_imported(given_stack, PHOTOS), second(given_stack)], **props, **keys(given_stack)
    )
    added_stack = _stack()
    uploader = _uploader(added_stack, [_imported(added_stack, PHOTOS)], **props, **keys(added_stack))
    uploader.add_bucket(second(added_stack))
    return _template(given_stack, nag=True), _template(added_stack, nag=True), uploader


@pytest.mark.parametrize("mode", ["queue", "eventbridge", "lambda"])
def test_a_bucket_added_after_construction_gets_the_template_of_one_given_to_the_constructor(
    mode: str,
) -> None:
    # Imported: its rule, read grants, bucket key condition, notification entries (the custom resource and its
    # role), the queue policy's source ARNs or its invoke permission, the rule's bucket names, and the cdk-nag
    # acknowledgments and checkov skips are all the same (cdk-nag runs on both).
    given, added, uploader = _both_ways(
        lambda stack: _imported(stack, DOCS),
        key=True,
        notify=mode,
        prefix="incoming/",
    )
    assert _normalized(added) == _normalized(given)
    assert uploader.node.scope.resolve(uploader.bucket_names_joined) == f"{PHOTOS},{DOCS}"


def test_a_bucket_of_the_users_stack_added_later_gets_cdks_notifications_as_if_given_at_construction() -> (
    None
):
    # CDK's own BucketNotificationsHandler appears only with the added bucket: its acknowledgment and checkov
    # skips follow it.
    given, added, _ = _both_ways(_own_bucket, notify="lambda", suffix=".png")
    assert any(r["Type"] == "Custom::S3BucketNotifications" for r in added["Resources"].values())
    assert _normalized(added) == _normalized(given)


def _bucket_key(stack: Any, arn: str) -> Any:
    from aws_cdk import aws_kms as kms

    return kms.Key.from_key_arn(stack, f"Key-{arn[-4:]}", arn)


def s3_arn(name: str) -> dict[str, Any]:
    return {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":s3:::{name}"]]}


def _statements(stack: Any, template: dict[str, Any], role: Any) -> list[dict[str, Any]]:
    role_id = stack.resolve(role.node.default_child.logical_id)
    return [
        statement
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in resource["Properties"]["Roles"]
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_an_added_bucket_with_its_own_prefix_suffix_and_key_is_watched_read_and_notified_for_those_keys() -> (
    None
):
    stack = _stack()
    uploader = _uploader(
        stack,
        [_imported(stack, PHOTOS)],
        prefix="incoming/",
        bucket_kms_keys=[_bucket_key(stack, PHOTOS_KEY)],
    )
    uploader.add_bucket(
        _imported(stack, REPORTS), prefix="reports/", suffix=".pdf", kms_key=_bucket_key(stack, REPORTS_KEY)
    )
    template = _template(stack, nag=True)
    variables = _resource(stack, template, uploader.function)["Properties"]["Environment"]["Variables"]
    # The function: each bucket's own rule (functions/uploader/watch.py).
    rules = watch.parse(variables["WATCHED_OBJECTS"])
    assert rules.watches(REPORTS, "reports/2026/q1.pdf") and rules.watches(PHOTOS, "incoming/a.jpg")
    assert not rules.watches(REPORTS, "incoming/a.pdf") and not rules.watches(PHOTOS, "reports/q1.pdf")
    assert not rules.watches(REPORTS, "reports/q1.docx")
    assert variables["ALLOWED_BUCKETS"] == f"{PHOTOS},{REPORTS}"
    # The role: each bucket's watched objects only; both bucket keys decrypt the watched objects via S3 only.
    statements = _statements(stack, template, uploader.uploader.role)
    reads = [s["Resource"] for s in statements if s["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]]
    assert reads == [s3_arn(f"{PHOTOS}/incoming/*"), s3_arn(f"{REPORTS}/reports/*.pdf")]
    decrypts = [
        s for s in statements if s["Action"] == "kms:Decrypt" and "StringLike" in s.get("Condition", {})
    ]
    assert sorted(s["Resource"] for s in decrypts) == sorted([PHOTOS_KEY, REPORTS_KEY])
    for statement in decrypts:
        assert statement["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"] == [
            s3_arn(f"{PHOTOS}/incoming/*"),
            s3_arn(f"{REPORTS}/reports/*.pdf"),
            s3_arn(PHOTOS),
            s3_arn(REPORTS),
        ]
    # S3: the added bucket's entries filter its own keys; the queue accepts its events.
    configurations = {
        r["Properties"]["BucketName"]: r["Properties"]["Configuration"]["QueueConfigurations"]
        for r in template["Resources"].values()
        if r["Type"] == "Custom::KieUploaderBucketNotifications"
    }
    assert {entry["Filter"]["Key"]["FilterRules"].__repr__() for entry in configurations[REPORTS]} == {
        repr([{"Name": "prefix", "Value": "reports/"}, {"Name": "suffix", "Value": ".pdf"}])
    }
    (send,) = [
        s
        for r in template["Resources"].values()
        if r["Type"] == "AWS::SQS::QueuePolicy"
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "S3SendsObjectEvents"
    ]
    assert send["Condition"]["ArnLike"]["aws:SourceArn"] == [s3_arn(PHOTOS), s3_arn(REPORTS)]


def test_with_eventbridge_an_added_bucket_with_another_prefix_gets_a_rule_of_its_own() -> None:
    stack = _stack()
    uploader = _uploader(stack, [_imported(stack, PHOTOS)], notify="eventbridge", prefix="incoming/")
    uploader.add_bucket(_imported(stack, DOCS))
    uploader.add_bucket(_imported(stack, REPORTS), prefix="reports/", suffix=".pdf")
    template = _template(stack, nag=True)
    patterns = sorted(
        (
            r["Properties"]["EventPattern"]["detail"]
            for r in template["Resources"].values()
            if r["Type"] == "AWS::Events::Rule"
        ),
        key=lambda detail: json.dumps(detail),
    )
    assert patterns == [
        {"bucket": {"name": [PHOTOS, DOCS]}, "object": {"key": [{"prefix": "incoming/"}]}},
        {"bucket": {"name": [REPORTS]}, "object": {"key": [{"wildcard": "reports/*.pdf"}]}},
    ]
