"""Synthesize the stack once per distinct context (a synth takes seconds and ~1 GB), shared by the tests.

Bundling is skipped here (CDK's ``aws:cdk:bundling-stacks`` context): these tests are about the template;
the bundler has its own test, and the end-to-end deployment bundles for real.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

EXISTING_BUCKETS = ("existing-bucket-one", "existing-bucket-two")
EXISTING_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kie/api-key-AbCdEf"
EXISTING_KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ALARM_EMAIL = "ops@example.com"

#: Every option changed from its default, so the second synth covers the other branch of each.
CUSTOM_CONTEXT = {
    "stackName": "KieUploaderCustom",
    "bucketNames": ",".join(EXISTING_BUCKETS),
    "bucketKmsKeyArns": EXISTING_KEY_ARN,
    "notify": "queue",  # the default: what the custom synth checks is its wiring on imported buckets
    "prefix": "incoming/",
    "suffix": ".png",
    "maxConcurrency": "5",
    "apiKeySecretArn": EXISTING_SECRET_ARN,
    "alarmEmail": ALARM_EMAIL,
    "kieBaseUrl": "https://kie.example.com",
    "kieUploadPath": "team/uploads",
    "retentionSeconds": "3600",
    "maxObjectBytes": "1048576",
    "presignExpiresSeconds": "600",
    "memorySize": "512",
    "architecture": "x86_64",
    "logRetentionDays": "14",
    "functionTimeoutSeconds": "60",
    "kieTimeoutSeconds": "25",
    # A refresh round every 15 minutes for two prefixes, each of an imported bucket (refreshAheadSeconds
    # must stay below retentionSeconds=3600 by the construct's 300 s margin).
    "keepAlive": "s3://existing-bucket-one/incoming/,s3://existing-bucket-two/reports/",
    "refreshAheadSeconds": "1800",
    "keepAliveScheduleMinutes": "15",
    "recordRetentionDays": "7",
    # No table stream, no publisher, no event outputs. (eventBusName only matters with events on: the
    # publisher's own bus is covered by tests/infra/test_publisher.py.)
    "events": "false",
}


@dataclass(frozen=True)
class Synth:
    """One synthesized app: the stack's template (as a dict and as ``assertions.Template``) and its folder."""

    template: dict[str, Any]
    assertions: Any  # aws_cdk.assertions.Template
    outdir: Path
    template_path: Path
    seconds: float
    acknowledged: tuple[str, ...]
    #: Logical ids of the constructs the tests pick by construct (see ``construct_ids``), e.g.
    #: ``"queue"`` (the uploader's work queue) or ``"publisher.dead_letter_queue"``.
    ids: dict[str, str]

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template["Resources"].items()
            if resource["Type"] == resource_type
        }

    def only(self, resource_type: str) -> tuple[str, dict[str, Any]]:
        found = self.resources(resource_type)
        assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
        return next(iter(found.items()))


def construct_ids(stack: Any) -> dict[str, str]:
    """The logical ids (with the legacy overrides) of the uploader's and the publisher's own resources, found
    through the construct tree rather than by counting resources of a type."""
    uploader = stack.uploader
    constructs: dict[str, Any] = {
        "queue": uploader.queue,
        "dead_letter_queue": uploader.dead_letter_queue,
        "table": uploader.table,
        "function": uploader.function,
        "role": uploader.uploader.role,
        "log_group": uploader.uploader.log_group,
        "alarm_topic": uploader.alarm_topic,
    }
    if uploader.keep_alive_rule is not None:
        constructs["keep_alive_rule"] = uploader.keep_alive_rule
    if uploader.publisher is not None:
        publisher = uploader.publisher
        constructs |= {
            "publisher.function": publisher.function,
            "publisher.role": publisher.role,
            "publisher.log_group": publisher.log_group,
            "publisher.dead_letter_queue": publisher.dead_letter_queue,
        }
    if uploader.distributed_backfill is not None:
        backfill = uploader.distributed_backfill
        constructs |= {
            "backfill.function": backfill.function,
            "backfill.function_role": backfill.function_role,
            "backfill.role": backfill.role,
            "backfill.state_machine": backfill.state_machine,
            "backfill.bucket": backfill.bucket,
            "backfill.function_log_group": backfill.function_log_group,
            "backfill.log_group": backfill.log_group,
        }
    return {
        name: str(stack.resolve(construct.node.default_child.logical_id))
        for name, construct in constructs.items()
    }


def synthesize(context: dict[str, str], outdir: Path) -> Synth:
    from aws_cdk.assertions import Template

    from infra.app import build_app

    started = time.perf_counter()
    no_bundling: dict[str, Any] = {"aws:cdk:bundling-stacks": []}
    app, stack = build_app({**context, **no_bundling}, outdir=outdir)
    assembly = app.synth()  # runs cdk-nag: an unacknowledged finding raises here
    seconds = time.perf_counter() - started
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    template_path = Path(assembly.directory) / artifact.template_file
    template = json.loads(template_path.read_text())
    return Synth(
        template,
        Template.from_json(template),
        outdir,
        template_path,
        seconds,
        tuple(stack.acknowledged_findings),
        construct_ids(stack),
    )


def synthesize_user_stack(props: Callable[[Any], dict[str, Any]], outdir: Path) -> Synth:
    """A user's own stack built with the construct (not the repository's app): imported buckets, cdk-nag on.

    ``props(stack)`` gives the construct's props (a callable, so that they may hold the stack's constructs,
    such as a key of the user's own).
    """
    from aws_cdk import App, Environment, Stack, Validations
    from aws_cdk import aws_s3 as s3
    from aws_cdk.assertions import Template
    from cdk_nag import AwsSolutionsChecks

    from kie_uploader.cdk import KieUploader

    started = time.perf_counter()
    app = App(context={"aws:cdk:bundling-stacks": []}, outdir=str(outdir))
    stack = Stack(app, "UserStack", env=Environment(account=USER_ACCOUNT, region=USER_REGION))
    buckets = [s3.Bucket.from_bucket_name(stack, f"Bucket{i}", name) for i, name in enumerate(USER_BUCKETS)]
    stack.uploader = KieUploader(  # type: ignore[attr-defined]
        stack, "Uploader", buckets=buckets, accept_responsibility_for_imported_buckets=True, **props(stack)
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    assembly = app.synth()
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    template_path = Path(assembly.directory) / artifact.template_file
    template = json.loads(template_path.read_text())
    return Synth(
        template,
        Template.from_json(template),
        outdir,
        template_path,
        time.perf_counter() - started,
        tuple(stack.uploader.acknowledged_findings),  # type: ignore[attr-defined]
        construct_ids(stack),
    )


USER_ACCOUNT, USER_REGION = "123456789012", "eu-west-1"
USER_BUCKETS = ("user-photos", "user-docs")
USER_SECRET_ARN = f"arn:aws:secretsmanager:{USER_REGION}:{USER_ACCOUNT}:secret:kie/api-key-AbCdEf"

#: The repository's stack beside ``default_synth`` and ``custom_synth``: the other notify modes and the
#: customer managed key (created, and imported by ARN on imported buckets through EventBridge).
REPO_VARIANTS: dict[str, dict[str, str]] = {
    "eventbridge": {"notify": "eventbridge"},
    "lambda": {"notify": "lambda"},
    "key": {"encryptionKey": "true"},
    "imported-key": {
        "encryptionKey": EXISTING_KEY_ARN,
        "notify": "eventbridge",
        "bucketNames": EXISTING_BUCKETS[0],
        "prefix": "incoming/",
    },
}


def _user_props(name: str) -> Callable[[Any], dict[str, Any]]:
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_secretsmanager as secretsmanager

    def props(stack: Any) -> dict[str, Any]:
        if name == "queue":  # the README's example: the user's secret, a prefix
            return {
                "prefix": "incoming/",
                "existing_secret": secretsmanager.Secret.from_secret_complete_arn(
                    stack, "Key", USER_SECRET_ARN
                ),
            }
        if name == "eventbridge-own-key":  # a key of the user's own stack: its policy gets the statements
            key = kms.Key(stack, "UserKey", enable_key_rotation=True)
            return {"notify": "eventbridge", "encryption_key": key}
        assert name == "lambda-key"
        return {"notify": "lambda", "encryption_key": True, "keep_alive": [f"s3://{USER_BUCKETS[0]}/keep/"]}

    return props


#: A user's own stack built with the construct, in each notify mode, with and without the key.
USER_VARIANTS = ("queue", "eventbridge-own-key", "lambda-key")


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize({}, tmp_path_factory.mktemp("synth-default"))


@pytest.fixture(scope="session")
def custom_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(dict(CUSTOM_CONTEXT), tmp_path_factory.mktemp("synth-custom"))


@pytest.fixture(scope="session")
def variants(
    default_synth: Synth, custom_synth: Synth, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Synth]:
    """Every synthesized variant the scanners check, by name: ``repo-*`` (the repository's app) and
    ``user-*`` (a user's stack built with the construct)."""
    synths = {"repo-default": default_synth, "repo-custom": custom_synth}
    for name, context in REPO_VARIANTS.items():
        synths[f"repo-{name}"] = synthesize(dict(context), tmp_path_factory.mktemp(f"synth-{name}"))
    for name in USER_VARIANTS:
        synths[f"user-{name}"] = synthesize_user_stack(
            _user_props(name), tmp_path_factory.mktemp(f"user-{name}")
        )
    return synths
