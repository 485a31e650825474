"""Synthesize the stack once per distinct context (a synth takes seconds and ~1 GB), shared by the tests.

Bundling is skipped here (CDK's ``aws:cdk:bundling-stacks`` context): these tests are about the template;
the bundler has its own test, and the end-to-end deployment bundles for real.
"""

from __future__ import annotations

import json
import os
import time
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


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize({}, tmp_path_factory.mktemp("synth-default"))


@pytest.fixture(scope="session")
def custom_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(dict(CUSTOM_CONTEXT), tmp_path_factory.mktemp("synth-custom"))
