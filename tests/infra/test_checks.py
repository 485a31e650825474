"""cdk-nag, cfn-lint, and the function's AWS calls against its role: the checks that run on every synth."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import REPO_VARIANTS, USER_VARIANTS, Synth
from tests.infra.test_stack import (
    as_list,
    expiry_index_arn,
    function_statements,
    resources_for,
    role_statements,
)

FUNCTION_PACKAGE = Path(__file__).resolve().parents[2] / "functions" / "uploader"
#: The event publisher's handler module: it runs as the publisher's own function, under the publisher's own
#: role (with the modules of the package it imports), never under the uploader's.
PUBLISHER_MODULE = FUNCTION_PACKAGE / "publisher.py"
#: The distributed backfill's child: its own function and role too.
BACKFILL_MODULE = FUNCTION_PACKAGE / "backfill.py"

# cfn-lint rules ignored on CDK's output, each with its reason:
# - W3005: CDK adds an explicit DependsOn on a function's role (and its default policy) beside the GetAtt
#   that already implies the dependency; the policy part is needed, the redundant part is harmless.
CFN_LINT_IGNORED = ["W3005"]

#: boto3 client methods → the IAM action each needs (presigning a GET needs what the GET needs).
BOTO_ACTIONS = {
    "head_object": ["s3:GetObject"],
    "get_object": ["s3:GetObject"],
    "generate_presigned_url": ["s3:GetObject"],
    "head_bucket": ["s3:ListBucket"],
    "list_objects_v2": ["s3:ListBucket"],
    "get_bucket_location": ["s3:GetBucketLocation"],
    "get_item": ["dynamodb:GetItem"],
    "put_item": ["dynamodb:PutItem"],
    "update_item": ["dynamodb:UpdateItem"],
    "delete_item": ["dynamodb:DeleteItem"],
    "query": ["dynamodb:Query"],
    "transact_write_items": ["dynamodb:PutItem", "dynamodb:UpdateItem"],
    "get_secret_value": ["secretsmanager:GetSecretValue"],
    "describe_secret": ["secretsmanager:DescribeSecret"],
    "send_message": ["sqs:SendMessage"],
    "send_message_batch": ["sqs:SendMessage"],
    "batch_get_item": ["dynamodb:BatchGetItem"],
    "put_events": ["events:PutEvents"],
}


def validation_report(synth: Synth) -> dict[str, Any]:
    reports = json.loads((synth.outdir / "validation-report.json").read_text())["pluginReports"]
    (report,) = [r for r in reports if r["pluginName"] == "AwsSolutions"]
    return dict(report)


VARIANTS = [
    "repo-default",
    "repo-custom",
    *(f"repo-{name}" for name in REPO_VARIANTS),
    *(f"user-{name}" for name in USER_VARIANTS),
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_cdk_nag_passes_and_each_acknowledgment_matches_a_finding_with_its_reason(
    variant: str, variants: dict[str, Synth]
) -> None:
    synth = variants[variant]
    report = validation_report(synth)
    assert report["conclusion"] == "success"
    assert report["violations"] == []
    suppressed = {entry["acknowledgedId"]: entry["reason"] for entry in report["suppressedViolations"]}
    # No stale acknowledgment: every one we make still matches a finding.
    assert set(suppressed) == set(synth.acknowledged)
    for rule, reason in suppressed.items():
        assert len(reason) > 60, rule


def test_cfn_lint_passes_on_every_synthesized_variant(variants: dict[str, Synth]) -> None:
    # One cfn-lint process for all of them (its start-up is most of its time).
    assert set(variants) == set(VARIANTS)
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    templates = [str(synth.template_path) for synth in variants.values()]
    result = subprocess.run(
        [str(cfn_lint), "--ignore-checks", *CFN_LINT_IGNORED, "--", *templates],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def aws_calls_in(paths: list[Path]) -> set[str]:
    """Names of boto3 client methods the modules call (``<something>.<method>(...)``)."""
    calls: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in BOTO_ACTIONS
            ):
                calls.add(node.func.attr)
    return calls


def publisher_modules(main: Path = PUBLISHER_MODULE) -> list[Path]:
    """The publisher's (or ``main``'s) module and the package's modules it imports
    (``from uploader.x import ...``, ``from uploader import x``)."""
    modules = [main]
    for node in ast.walk(ast.parse(main.read_text(), filename=str(main))):
        if isinstance(node, ast.ImportFrom) and node.module == "uploader":
            modules += [FUNCTION_PACKAGE / f"{alias.name}.py" for alias in node.names]
        module = node.module if isinstance(node, ast.ImportFrom) else None
        if module is not None and module.startswith("uploader."):
            modules.append(FUNCTION_PACKAGE / f"{module.split('.', 1)[1].replace('.', '/')}.py")
    return modules


def uploader_modules() -> list[Path]:
    return [path for path in FUNCTION_PACKAGE.glob("*.py") if path not in (PUBLISHER_MODULE, BACKFILL_MODULE)]


def granted_actions(statements: list[dict[str, Any]]) -> set[str]:
    return {action for statement in statements for action in as_list(statement["Action"])}


def test_every_aws_call_in_the_function_is_allowed_by_its_role(default_synth: Synth) -> None:
    # ministack does not enforce IAM, so the end-to-end test cannot catch a missing permission: this can.
    calls = aws_calls_in(uploader_modules())
    assert {"get_secret_value", "head_object", "query"} <= calls, "the function's adapters were not found"
    # Events are put by the publisher only (the outbox): the uploader just writes its record.
    assert "put_events" not in calls
    statements = function_statements(default_synth)
    granted = granted_actions(statements)
    missing = {call: BOTO_ACTIONS[call] for call in calls if not set(BOTO_ACTIONS[call]) <= granted}
    assert not missing
    # The refresh round's query reads the sparse expiry index, which is the only thing it may query.
    table = default_synth.ids["table"]
    assert resources_for(statements, "dynamodb:Query") == [expiry_index_arn(table)]


def test_every_aws_call_of_the_event_publisher_is_allowed_by_its_own_role(default_synth: Synth) -> None:
    calls = aws_calls_in(publisher_modules())
    assert calls == {"put_events"}, "the publisher's event bus client was not found"
    statements = role_statements(default_synth, default_synth.ids["publisher.role"])
    missing = {
        call: BOTO_ACTIONS[call]
        for call in calls
        if not set(BOTO_ACTIONS[call]) <= granted_actions(statements)
    }
    assert not missing
    assert "events:PutEvents" not in granted_actions(function_statements(default_synth))


def test_every_aws_call_of_the_backfill_child_is_allowed_by_its_own_role(default_synth: Synth) -> None:
    calls = aws_calls_in(publisher_modules(BACKFILL_MODULE))
    assert calls == {"send_message_batch", "batch_get_item"}, "the backfill child's clients were not found"
    statements = role_statements(default_synth, default_synth.ids["backfill.function_role"])
    granted = granted_actions(statements)
    assert not {call: BOTO_ACTIONS[call] for call in calls if not set(BOTO_ACTIONS[call]) <= granted}
    # it may send to the queue and read records, nothing else of the stack's data: no object, no write
    assert not {action for action in granted if action.startswith(("s3:", "dynamodb:Update", "dynamodb:Put"))}
    # and the uploader's role was not widened for it
    assert "dynamodb:BatchGetItem" not in granted_actions(function_statements(default_synth))


def test_the_backfill_state_machine_lists_only_watched_prefixes_and_reads_only_its_manifests(
    variants: dict[str, Synth],
) -> None:
    custom = variants["repo-custom"]  # prefix incoming/ on two imported buckets
    statements = role_statements(custom, custom.ids["backfill.role"])
    listing = [s for s in statements if "s3:ListBucket" in as_list(s["Action"])]
    assert listing and all(
        s.get("Condition") == {"StringLike": {"s3:prefix": ["incoming/*"]}} for s in listing
    ), listing
    listed = {json.dumps(resource) for s in listing for resource in as_list(s["Resource"])}
    assert len(listed) == 2 and all(
        ":s3:::existing-bucket-one" in arn or ":s3:::existing-bucket-two" in arn for arn in listed
    ), listed
    # objects: only the backfill bucket's manifests (read) and results (write), never a watched bucket's
    for action in ("s3:GetObject", "s3:PutObject"):
        for resource in resources_for(statements, action):
            assert "existing-bucket" not in json.dumps(resource), (action, resource)
    assert resources_for(statements, "lambda:InvokeFunction") == [
        {"Fn::GetAtt": [custom.ids["backfill.function"], "Arn"]}
    ]
