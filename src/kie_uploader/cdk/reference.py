"""The construct's reference, ``docs/construct.md``, written from the code so that it cannot drift.

``python -m kie_uploader.cdk.reference docs/construct.md`` writes it;
``tests/unit/test_construct_reference.py`` fails when the file differs from what this module renders.

* **Props**: ``KieUploader.__init__``'s keyword-only parameters (name, type and default from the signature)
  and their meaning from the class docstring's ``* ``name``: ...`` entries. A prop without an entry, or an
  entry without a prop, is an error (:class:`UndocumentedError`).
* **Methods**: the public methods the class itself defines, with their docstrings.
* **FunctionOptions**: the dataclass's fields and their ``#:`` comments.
* **Default settings**: every resource a ``KieUploader`` with no optional prop creates, with the settings that
  make it secure and reliable, read from the template it synthesizes (bundling skipped).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import inspect
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kie_uploader.cdk.construct import KieUploader
from kie_uploader.cdk.options import FunctionOptions

COMMAND = "python -m kie_uploader.cdk.reference docs/construct.md"
#: The bucket the default settings are synthesized with (imported: the construct's usual case).
EXAMPLE_BUCKET = "my-photos"

_ENTRY = re.compile(r"^\* ((?:``\w+``(?: / )?)+): (.*)$")
_ROLE = re.compile(r":(?:class|func|meth|attr):`~?([\w.]+)`")


class UndocumentedError(ValueError):
    """A prop or field has no description, or a description names no prop."""


def markdown(text: str) -> str:
    """Docstring text as Markdown: double backquotes as single ones, ``:class:`X``` as ```X```, and
    ``:meth:`m``` as ```m()```."""

    def role(match: re.Match[str]) -> str:
        name = match.group(1).rsplit(".", 1)[-1]
        return f"`{name}()`" if match.group(0).startswith(":meth:") else f"`{name}`"

    return _ROLE.sub(role, text).replace("``", "`")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def prop_descriptions(cls: type = KieUploader) -> dict[str, str]:
    """Each prop named by a ``* ``name`` / ``other``: text`` entry of the class docstring, with its text."""
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    descriptions: dict[str, str] = {}
    names: list[str] = []
    for line in lines:
        match = _ENTRY.match(line)
        if match:
            names = re.findall(r"``(\w+)``", match.group(1))
            for name in names:
                descriptions[name] = match.group(2)
        elif names and line.startswith("  ") and line.strip():
            for name in names:
                descriptions[name] += " " + line.strip()
        else:
            names = []
    return {name: markdown(text) for name, text in descriptions.items()}


def _default(value: Any) -> str:
    if value is inspect.Parameter.empty or value is dataclasses.MISSING:
        return "required"
    if isinstance(value, enum.Enum):
        value = value.value
    return f"`{value!r}`"


def _type(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
    return f"`{text}`"


def props(cls: type = KieUploader) -> list[tuple[str, str, str, str]]:
    """(name, type, default, meaning) of every keyword-only prop; raises :class:`UndocumentedError`."""
    descriptions = prop_descriptions(cls)
    parameters = [
        parameter
        for parameter in inspect.signature(cls.__init__).parameters.values()  # type: ignore[misc]
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    missing = [p.name for p in parameters if p.name not in descriptions]
    unknown = sorted(set(descriptions) - {p.name for p in parameters})
    if missing or unknown:
        raise UndocumentedError(
            f"{cls.__name__}'s docstring: no ``* ``prop``: ...`` entry for {missing or 'none'}; "
            f"entries naming no prop: {unknown or 'none'}"
        )
    return [(p.name, _type(p.annotation), _default(p.default), descriptions[p.name]) for p in parameters]


def field_descriptions(cls: type = FunctionOptions) -> dict[str, str]:
    """Each dataclass field's ``#:`` comment (the lines right above it)."""
    descriptions: dict[str, str] = {}
    comment: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            comment.append(stripped[2:].strip())
            continue
        match = re.match(r"(\w+): ", stripped)
        if match and comment:
            descriptions[match.group(1)] = markdown(" ".join(comment))
        comment = []
    return descriptions


def fields(cls: type = FunctionOptions) -> list[tuple[str, str, str, str]]:
    """(name, type, default, meaning) of every field; raises :class:`UndocumentedError`."""
    descriptions = field_descriptions(cls)
    found = dataclasses.fields(cls)
    missing = [f.name for f in found if f.name not in descriptions]
    if missing:
        raise UndocumentedError(f"{cls.__name__}: no ``#:`` comment above {missing}")
    return [(f.name, _type(f.type), _default(f.default), descriptions[f.name]) for f in found]


def methods(cls: type = KieUploader) -> list[tuple[str, str]]:
    """(signature, docstring as Markdown) of each public method the class itself defines."""
    found = []
    for name, member in vars(cls).items():
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        if not member.__doc__:
            raise UndocumentedError(f"{cls.__name__}.{name} has no docstring")
        signature = str(inspect.signature(member)).replace("(self, ", "(").replace("'", "")
        found.append((f"{name}{signature}", markdown(inspect.cleandoc(member.__doc__))))
    return found


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


# --- default settings, from the synthesized template -------------------------------------------------


def synthesize_defaults() -> tuple[dict[str, Any], dict[str, str]]:
    """The template of a stack with one ``KieUploader`` and no optional prop (an imported bucket), and each
    resource's path below the construct, by logical id."""
    from aws_cdk import App, CfnResource, Environment, Stack
    from aws_cdk import aws_s3 as s3

    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    app = App(context={"aws:cdk:bundling-stacks": []})
    stack = Stack(app, "Reference", env=Environment(account="123456789012", region="eu-west-1"))
    bucket = s3.Bucket.from_bucket_name(stack, "Photos", EXAMPLE_BUCKET)
    uploader = KieUploader(
        stack, "KieUploader", buckets=[bucket], accept_responsibility_for_imported_buckets=True
    )
    template = app.synth().get_stack_artifact(stack.artifact_id).template
    paths = {}
    for construct in uploader.node.find_all():
        if isinstance(construct, CfnResource):
            path = construct.node.path.removeprefix(uploader.node.path + "/").removesuffix("/Resource")
            paths[str(stack.resolve(construct.logical_id))] = path
    return template, paths


def _ref(value: Any, paths: dict[str, str]) -> str:
    """A value with references to the construct's resources shown as their paths (an ARN's ``.Arn``
    dropped), other references as ``${...}``."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        if key == "Ref":
            return paths.get(inner, f"${{{inner}}}")
        if key == "Fn::GetAtt" and inner[0] in paths:
            return paths[inner[0]] if inner[1] == "Arn" else f"{paths[inner[0]]}.{inner[1]}"
        if key == "Fn::Join":
            return str(inner[0]).join(_ref(item, paths) for item in inner[1])
    if isinstance(value, list):
        return ", ".join(_ref(item, paths) for item in value)
    if isinstance(value, str | int | float | bool):
        return str(value).lower() if isinstance(value, bool) else str(value)
    return json.dumps(value, sort_keys=True)


def _days(seconds: int) -> str:
    return f"{seconds} s ({seconds / 86_400:g} days)" if seconds >= 86_400 else f"{seconds} s"


Settings = Callable[[dict[str, Any], dict[str, Any], dict[str, str]], Iterator[str]]


def _queue(props: dict[str, Any], resource: dict[str, Any], paths: dict[str, str]) -> Iterator[str]:
    if props.get("SqsManagedSseEnabled"):
        yield "encrypted with SSE-SQS"
    if "KmsMasterKeyId" in props:
        yield f"encrypted with {_ref(props['KmsMasterKeyId'], paths)}"
    yield f"retention {_days(props.get('MessageRetentionPeriod', 345_600))}"
    if "VisibilityTimeout" in props:
        yield f"visibility timeout {props['VisibilityTimeout']} s"
    redrive = props.get("RedrivePolicy")
    if redrive:
        target = _ref(redrive["deadLetterTargetArn"], paths)
        yield f"to {target} after maxReceiveCount {redrive['maxReceiveCount']} receives"


def _queue_policy(props: dict[str, Any], resource: dict[str, Any], paths: dict[str, str]) -> Iterator[str]:
    for statement in props["PolicyDocument"]["Statement"]:
        if statement["Effect"] == "Deny" and statement.get("Condition") == {
            "Bool": {"aws:SecureTransport": "false"}
        }:
            yield f"SSL enforced on {_ref(props['Queues'], paths)} (denies aws:SecureTransport=false)"
        elif statement["Effect"] == "Allow":
            principal = statement["Principal"].get("Service", statement["Principal"])
            conditions = ", ".join(
                f"{key} {_ref(value, paths)}"
                for operator in statement.get("Condition", {}).values()
                for key, value in operator.items()
            )
            yield f"{principal} may {statement['Action']} ({conditions})"


def _table_settings(props: dict[str, Any], resource: dict[str, Any], paths: dict[str, str]) -> Iterator[str]:
    keys = ", ".join(f"{k['AttributeName']} ({k['KeyType']})" for k in props["KeySchema"])
    yield f"key {keys}, {props.get('BillingMode', 'PROVISIONED')}"
    sse = props.get("SSESpecification", {})
    if sse.get("KMSMasterKeyId"):
        yield f"encrypted with {_ref(sse['KMSMasterKeyId'], paths)}"
    else:
        yield "encrypted with DynamoDB's AWS managed key" if sse.get("SSEEnabled") else "AWS owned key"
    pitr = props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")
    yield f"point-in-time recovery {'on' if pitr else 'off'}"
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        yield f"TTL on attribute {ttl['AttributeName']}"
    if "StreamSpecification" in props:
        yield f"stream {props['StreamSpecification']['StreamViewType']}"
    for index in props.get("GlobalSecondaryIndexes", []):
        projection = index["Projection"]["ProjectionType"]
        yield f"index {index['IndexName']} ({projection})"
    yield f"DeletionPolicy {resource.get('DeletionPolicy', 'Delete')}"


def _function(props: dict[str, Any], resource: dict[str, Any], paths: dict[str, str]) -> Iterator[str]:
    yield f"{props['Runtime']} on {', '.join(props.get('Architectures', ['x86_64']))}"
    yield f"{props.get('MemorySize', 128)} MB, timeout {props.get('Timeout', 3)} s"
    if props.get("TracingConfig", {}).get("Mode") == "Active":
        yield "X-Ray tracing active"
    if "ReservedConcurrentExecutions" in props:
        yield f"reserved concurrency {props['ReservedConcurrentExecutions']}"
    if "KmsKeyArn" in props:
        yield f"environment encrypted with {_ref(props['KmsKeyArn'], paths)}"
    if "LoggingConfig" in props:
        yield f"logs to {_ref(props['LoggingConfig']['LogGroup'], paths)}"
    yield f"role {_ref(props['Role'], paths)}"


def _log_group(props: dict[str, Any], resource: dict[str, Any], paths: dict[str, str]) -> Iterator[str]:
    yield f"retention {props.get('RetentionInDays', 'never expires')} days"
    if "KmsKeyId" in props:
        yield f"encrypted with {_ref(props['KmsKeyId'], paths)}"
    yield f"DeletionPolicy {resource.get('DeletionPolicy', 'Delete')}"


def _invoke_config(props: dict[str, Any], resource: dict[str, Any], paths: dict[str, str]) -> Iterator[str]:
    yield f"asynchronous invocations: {props['MaximumRetryAttempts']} retries"
    yield f"events older than {props['MaximumEventAgeInSeconds']} s dropped"
    on_failure = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
    if on_failure:
        yield f"on failure to {_ref(on_failure, paths)}"


def _event_source(props: dict[str, Any], resource: dict[str, Any], paths: dict[str, str]) -> Iterator[str]:
    source = _ref(props["EventSourceArn"], paths)
    yield f"{source} → {_ref(props['FunctionName'], paths)}, batches of {props.get('BatchSize')}"
    for key in ("MaximumBatchingWindowInSeconds", "StartingPosition", "ParallelizationFactor"):
        if key in props:
            yield f"{key} {props[key]}"
    if "ScalingConfig" in props:
        yield f"maximum concurrency {props['ScalingConfig']['MaximumConcurrency']}"
    if props.get("FunctionResponseTypes"):
        yield ", ".join(props["FunctionResponseTypes"])
    for key in ("MaximumRetryAttempts", "MaximumRecordAgeInSeconds", "BisectBatchOnFunctionError"):
        if key in props:
            yield f"{key} {_ref(props[key], paths)}"
    on_failure = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
    if on_failure:
        yield f"on failure to {_ref(on_failure, paths)}"


def _secret(props: dict[str, Any], resource: dict[str, Any], paths: dict[str, str]) -> Iterator[str]:
    if "KmsKeyId" in props:
        yield f"encrypted with {_ref(props['KmsKeyId'], paths)}"
    else:
        yield "encrypted with Secrets Manager's AWS managed key"
    if "SecretString" not in props and "GenerateSecretString" not in props:
        yield "created without a value: put the kie.ai key into it (kie-uploader set-key)"
    yield f"DeletionPolicy {resource.get('DeletionPolicy', 'Delete')}"


def _topic(props: dict[str, Any], resource: dict[str, Any], paths: dict[str, str]) -> Iterator[str]:
    if "KmsMasterKeyId" in props:
        yield f"encrypted with {_ref(props['KmsMasterKeyId'], paths)}"
    else:
        yield "no SSE (SNS's AWS managed key cannot let CloudWatch publish; encryption_key encrypts it)"


def _topic_policy(props: dict[str, Any], resource: dict[str, Any], paths: dict[str, str]) -> Iterator[str]:
    for statement in props["PolicyDocument"]["Statement"]:
        if statement["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(statement.get("Condition")):
            yield "SSL enforced (denies aws:SecureTransport=false)"
        elif statement["Effect"] == "Allow":
            principal = statement["Principal"].get("Service", statement["Principal"])
            yield f"{principal} may {statement['Action']}"


def _alarm(props: dict[str, Any], resource: dict[str, Any], paths: dict[str, str]) -> Iterator[str]:
    comparison = {"GreaterThanThreshold": ">", "GreaterThanOrEqualToThreshold": ">="}.get(
        props["ComparisonOperator"], props["ComparisonOperator"]
    )
    yield (
        f"{props['Namespace']} {props['MetricName']} {props['Statistic']} over {props['Period']} s "
        f"{comparison} {props['Threshold']}"
    )
    yield f"to {_ref(props['AlarmActions'], paths)}: {props['AlarmDescription']}"


def _role(props: dict[str, Any], resource: dict[str, Any], paths: dict[str, str]) -> Iterator[str]:
    (statement,) = props["AssumeRolePolicyDocument"]["Statement"]
    yield f"assumed by {statement['Principal']['Service']}"
    managed = props.get("ManagedPolicyArns")
    yield f"managed policies: {_ref(managed, paths)}" if managed else "no managed policy"


def _policy(props: dict[str, Any], resource: dict[str, Any], paths: dict[str, str]) -> Iterator[str]:
    actions = sorted(
        {
            action
            for statement in props["PolicyDocument"]["Statement"]
            for action in (
                statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            )
        }
    )
    yield f"{', '.join(actions)} (each on its own resources: the README's Security sections)"


def _notifications(props: dict[str, Any], resource: dict[str, Any], paths: dict[str, str]) -> Iterator[str]:
    for kind, entries in props["Configuration"].items():
        for entry in entries if isinstance(entries, list) else []:
            yield f"{props['BucketName']}: {entry['Id']} ({', '.join(entry['Events'])}) in {kind}"


def _dashboard(props: dict[str, Any], resource: dict[str, Any], paths: dict[str, str]) -> Iterator[str]:
    body = _ref(props["DashboardBody"], paths)
    yield "widgets: " + ", ".join(re.findall(r'"title":"([^"]+)"', body))


SETTINGS: dict[str, Settings] = {
    "AWS::SQS::Queue": _queue,
    "AWS::SQS::QueuePolicy": _queue_policy,
    "AWS::DynamoDB::Table": _table_settings,
    "AWS::Lambda::Function": _function,
    "AWS::Logs::LogGroup": _log_group,
    "AWS::Lambda::EventInvokeConfig": _invoke_config,
    "AWS::Lambda::EventSourceMapping": _event_source,
    "AWS::SecretsManager::Secret": _secret,
    "AWS::SNS::Topic": _topic,
    "AWS::SNS::TopicPolicy": _topic_policy,
    "AWS::CloudWatch::Alarm": _alarm,
    "AWS::CloudWatch::Dashboard": _dashboard,
    "AWS::IAM::Role": _role,
    "AWS::IAM::Policy": _policy,
    "Custom::KieUploaderBucketNotifications": _notifications,
}


def default_settings() -> list[tuple[str, str, str]]:
    """(resource path, type, settings) of every resource the construct creates by default."""
    template, paths = synthesize_defaults()
    rows = []
    for logical_id, resource in template["Resources"].items():
        settings = SETTINGS.get(resource["Type"])
        if settings is None:
            raise UndocumentedError(f"no settings renderer for {resource['Type']} ({logical_id})")
        described = "; ".join(settings(resource.get("Properties", {}), resource, paths))
        rows.append((f"`{paths.get(logical_id, logical_id)}`", f"`{resource['Type']}`", described))
    return sorted(rows)


# --- the document ---------------------------------------------------------------------------------------


def render() -> str:
    lines = [
        "# The `KieUploader` construct: reference",
        "",
        f"<!-- Generated by `{COMMAND}` from the construct's signature, docstrings and synthesized template:",
        "     edit those, not this file (tests/unit/test_construct_reference.py fails when it differs). -->",
        "",
        "`from kie_uploader.cdk import KieUploader, FunctionOptions` (`pip install 'kie-s3-uploader[cdk]'`).",
        "A wrong prop fails synth with a `KieUploaderPropsError` whose message starts with the prop's name.",
        "",
        "## Props",
        "",
        "`KieUploader(scope, construct_id, *, ...)`: every prop is keyword-only.",
        "",
        *_table(("prop", "type", "default", "meaning"), props()),
        "",
        "## Methods",
        "",
    ]
    for signature, doc in methods():
        lines += [f"### `{signature}`", "", doc, ""]
    lines += [
        "## `FunctionOptions`",
        "",
        markdown(inspect.cleandoc(FunctionOptions.__doc__ or "")) + " A frozen dataclass, keyword-only.",
        "",
        *_table(("field", "type", "default", "meaning"), fields()),
        "",
        "## Default settings",
        "",
        'Out of the box, without any optional prop (`KieUploader(self, "KieUploader", buckets=[<an',
        f"imported bucket, {EXAMPLE_BUCKET}>], accept_responsibility_for_imported_buckets=True)`), the "
        "construct creates",
        "these resources with these settings, read from the template it synthesizes. Other props add",
        'resources: `keep_alive` a schedule rule, `notify="eventbridge"` a rule per prefix and suffix,',
        "`encryption_key=True` a KMS key (then used by every store above), `alarm_email` a subscription;",
        '`notify="lambda"` sets the function\'s reserved concurrency to `max_concurrency`.',
        "",
        *_table(("resource (path below the construct)", "type", "settings"), default_settings()),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the KieUploader construct's reference (Markdown).")
    parser.add_argument("output", type=Path, nargs="?", help="the file to write (default: standard output)")
    args = parser.parse_args(argv)
    text = render()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
