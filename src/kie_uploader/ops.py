"""The operator's day-to-day commands: ``info``, ``stats``, ``set-key``, ``dlq peek`` and ``redrive``.

Registered from :func:`kie_uploader.cli.build_parser` with :func:`add_parser`. Every command finds the
stack's resources from its CloudFormation outputs (``cli.Aws.stack``); errors are ``cli.CliError`` (one
line, exit 2); everything printed goes through ``cli.redact`` (message bodies may hold presigned URLs).

- ``info``: the stack's outputs, its CloudWatch dashboard (the stack has one, made by the construct's
  monitoring, without an output: its name comes from the stack's resources), how S3 tells the stack
  (``notify``, from the template's resources) and what it watches (each bucket's prefix/suffix, the
  function's ``WATCHED_OBJECTS``), the function's settings (secret values never shown) and the queues'.
- ``stats``: records by status, from one parallel projected scan that counts (constant memory); the
  queue's and the dead-letter queue's depth, in-flight messages, and the age of the oldest message from
  CloudWatch (``unknown`` where CloudWatch has no datapoint: never a made-up value).
- ``set-key``: the kie.ai key from stdin (or a prompt without echo) into the stack's secret, as
  ``{"apiKey": ...}``; the key is never printed, and an AWS error that would echo it is redacted.
- ``dlq peek``: the dead-letter messages, received with a short visibility timeout and made visible again
  at once (nothing is moved or consumed), decoded, and joined with their objects' records.
- ``redrive``: SQS's own message move task where SQS has it, else a receive/send/delete loop.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote_plus

from botocore.exceptions import BotoCoreError, ClientError

from kie_uploader import console
from kie_uploader.cli import (
    EXIT_INTERRUPTED,
    EXIT_NO,
    EXIT_OK,
    SQS_BATCH,
    STATUSES,
    Aws,
    CliError,
    Progress,
    S3Uri,
    _batch_get_records,
    _positive_int,
    _s3_uri_arg,
    describe_aws_error,
    emit,
    examples,
    format_duration,
    interrupt_after,
    output_format,
    plural,
    redact,
    render_table,
    say,
)
from kie_uploader.function import watch

IN_PROGRESS = "IN_PROGRESS"  # a record without a status: its first delivery is still working on it
#: ``stats``: parallel scan segments by default (each a thread and its own paginated scan).
DEFAULT_SEGMENTS = 4
#: ``dlq peek``: how long the peeked messages stay invisible at most, should this process die before it
#: makes them visible again; receiving stops well before (a message that came back would be seen twice).
PEEK_VISIBILITY_SECONDS = 30
PEEK_RECEIVE_SECONDS = 20.0
DEFAULT_PEEK = 10
MAX_PEEK = 1000
#: ``redrive``: how often a message move task is asked for its progress.
MOVE_TASK_POLL_SECONDS = 2.0
#: Answers meaning "this SQS has no message move tasks" (ministack: InvalidAction): use the loop instead.
REDACTED = "[redacted]"
_UNSUPPORTED_CODES = frozenset(
    {
        "InvalidAction",
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        "UnknownOperation",
        "UnknownOperationException",
        "NotImplemented",
        "InvalidParameterValue",  # an older SQS that takes the action for a malformed one
    }
)
_ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException"})
_MOVE_TASK_DONE = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
#: Environment variable names whose values are secrets (never printed): the last word says what the value is
#: (``KIE_API_KEY``, ``AWS_SESSION_TOKEN``; not ``KIE_API_KEY_SECRET_ID``, which names one, nor
#: ``SECRET_CACHE_SECONDS``). A word meaning a secret anywhere but last still hides it unless the name ends
#: in a harmless word (``_ID``, ``_ARN``, ``_NAME``, ``_SECONDS``, ...).
_SECRET_NAME_RE = re.compile(
    r"(?:^|_)(?:KEY|SECRET|TOKEN|PASSWORD|PASSWD|PASS|CREDENTIALS?|PRIVATE)(?:_|$)", re.I
)
_SECRET_REFERENCE_RE = re.compile(
    r"_(?:ID|ARN|NAME|SECONDS|MINUTES|HOURS|DAYS|TTL|PATH|FILE|URL|REGION|ENABLED|COUNT|BYTES)$", re.I
)
_CONSOLE_DOMAINS = {"aws-cn": "console.amazonaws.cn", "aws-us-gov": "console.amazonaws-us-gov.com"}


# --- info ------------------------------------------------------------------------------------------


def dashboard_url(region: str, name: str) -> str:
    """The CloudWatch console's link to a dashboard (the partition's console domain)."""
    partition = "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else ""
    domain = _CONSOLE_DOMAINS.get(partition, f"{region}.console.aws.amazon.com")
    return f"https://{domain}/cloudwatch/home?region={region}#dashboards/dashboard/{quote(name, safe='')}"


def is_secret_variable(name: str) -> bool:
    """True for an environment variable whose value is a secret (``KIE_API_KEY``); a variable naming a
    secret (``KIE_API_KEY_SECRET_ID``, ``*_ARN``) is not one."""
    return bool(_SECRET_NAME_RE.search(name)) and not _SECRET_REFERENCE_RE.search(name)


def _dashboards(aws: Aws) -> list[str]:
    """The stack's CloudWatch dashboards (their physical names), from its resources."""
    names = []
    paginator = aws.cloudformation.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=aws.stack_name):
        for resource in page.get("StackResourceSummaries", []):
            if resource.get("ResourceType") == "AWS::CloudWatch::Dashboard":
                if resource.get("PhysicalResourceId"):
                    names.append(resource["PhysicalResourceId"])
    return names


def _queue_attributes(aws: Aws, url: str, names: Sequence[str]) -> dict[str, str]:
    attributes = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names))
    return dict(attributes.get("Attributes", {}))


def _function_settings(aws: Aws) -> dict[str, Any]:
    name = aws.function_name
    config = aws.lambda_.get_function_configuration(FunctionName=name)
    concurrency = aws.lambda_.get_function_concurrency(FunctionName=name)
    variables = config.get("Environment", {}).get("Variables", {})
    environment = {
        k: ("(secret, not shown)" if is_secret_variable(k) else v) for k, v in sorted(variables.items())
    }
    queue_arn = _queue_attributes(aws, aws.stack.queue_url, ["QueueArn"]).get("QueueArn", "")
    mappings = []
    paginator = aws.lambda_.get_paginator("list_event_source_mappings")
    for page in paginator.paginate(FunctionName=name):
        for mapping in page.get("EventSourceMappings", []):
            if mapping.get("EventSourceArn") == queue_arn:
                mappings.append(
                    {
                        "state": mapping.get("State"),
                        "batchSize": mapping.get("BatchSize"),
                        "maximumConcurrency": mapping.get("ScalingConfig", {}).get("MaximumConcurrency"),
                    }
                )
    return {
        "name": name,
        "runtime": config.get("Runtime"),
        "architectures": config.get("Architectures", []),
        "memoryMb": config.get("MemorySize"),
        "timeoutSeconds": config.get("Timeout"),
        "reservedConcurrency": concurrency.get("ReservedConcurrentExecutions"),
        "lastModified": config.get("LastModified"),
        "logGroup": config.get("LoggingConfig", {}).get("LogGroup") or f"/aws/lambda/{name}",
        "environment": environment,
        "queueEventSource": mappings,
    }


def _queue_settings(aws: Aws) -> dict[str, Any]:
    queue = _queue_attributes(aws, aws.stack.queue_url, ["VisibilityTimeout", "RedrivePolicy"])
    dlq = _queue_attributes(aws, aws.stack.dead_letter_queue_url, ["MessageRetentionPeriod"])
    try:
        max_receives = json.loads(queue.get("RedrivePolicy") or "{}").get("maxReceiveCount")
    except ValueError:
        max_receives = None
    return {
        "visibilityTimeoutSeconds": _int_or_none(queue.get("VisibilityTimeout")),
        "maxReceiveCount": _int_or_none(max_receives),
        "deadLetterRetentionSeconds": _int_or_none(dlq.get("MessageRetentionPeriod")),
    }


#: How S3 tells the stack (the construct's ``notify``), read from the stack's template: what the resources
#: are, not what they are called.
NOTIFY_MODES = {
    "queue": "S3 notifications to the queue",
    "eventbridge": "S3's EventBridge events to the queue, through a rule",
    "lambda": "S3 invokes the function directly",
}


def notify_modes(template: Mapping[str, Any]) -> list[str]:
    """The stack's ``notify`` mode(s) from its template: an S3 ``aws.s3`` EventBridge rule (eventbridge), a
    Lambda permission for ``s3.amazonaws.com`` (lambda), a queue policy letting ``s3.amazonaws.com`` send
    (queue). Empty when none is there (a stack without notifications)."""
    found = []
    for resource in (template.get("Resources") or {}).values():
        if not isinstance(resource, Mapping):
            continue
        kind, props = resource.get("Type"), resource.get("Properties") or {}
        if kind == "AWS::Events::Rule" and "aws.s3" in _strings(_pattern(props).get("source")):
            found.append("eventbridge")
        elif kind == "AWS::Lambda::Permission" and props.get("Principal") == "s3.amazonaws.com":
            found.append("lambda")
        elif kind == "AWS::SQS::QueuePolicy":
            statements = (props.get("PolicyDocument") or {}).get("Statement") or []
            for statement in statements if isinstance(statements, list) else [statements]:
                principal = statement.get("Principal") if isinstance(statement, Mapping) else None
                service = principal.get("Service") if isinstance(principal, Mapping) else None
                if "s3.amazonaws.com" in _strings(service) and statement.get("Effect", "Allow") == "Allow":
                    found.append("queue")
    return sorted(set(found), key=list(NOTIFY_MODES).index)


def _pattern(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """An EventBridge rule's pattern (an object, or JSON text)."""
    pattern = props.get("EventPattern") or {}
    if isinstance(pattern, str):
        try:
            pattern = json.loads(pattern)
        except ValueError:
            return {}
    return pattern if isinstance(pattern, Mapping) else {}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _notify(aws: Aws) -> dict[str, Any]:
    """``{"mode": "queue", "description": ..., "error": None}``, from the stack's template."""
    try:
        body = aws.cloudformation.get_template(StackName=aws.stack_name).get("TemplateBody")
        template = json.loads(body) if isinstance(body, str) else body
    except ClientError as exc:  # no cloudformation:GetTemplate: the rest is still worth showing
        return {"mode": None, "description": None, "error": describe_aws_error(exc)}
    except ValueError:
        return {"mode": None, "description": None, "error": "the stack's template is not JSON"}
    modes = notify_modes(template if isinstance(template, Mapping) else {})
    if not modes:
        return {"mode": None, "description": None, "error": "no S3 notification, rule or permission found"}
    return {
        "mode": ", ".join(modes),
        "description": "; ".join(NOTIFY_MODES[mode] for mode in modes),
        "error": None,
    }


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def cmd_info(aws: Aws, args: argparse.Namespace) -> int:
    """The stack's outputs, dashboard link, notify mode and watched objects, function and queue settings."""
    stack = aws.stack  # CliError when there is no such stack
    [described] = aws.cloudformation.describe_stacks(StackName=aws.stack_name)["Stacks"]
    outputs = {
        o["OutputKey"]: {"value": o.get("OutputValue", ""), "description": o.get("Description", "")}
        for o in described.get("Outputs", [])
    }
    region = aws.session.region_name or ""
    local_endpoint = os.environ.get("AWS_ENDPOINT_URL")
    try:
        names, dashboards_error = _dashboards(aws), None
    except ClientError as exc:  # e.g. no cloudformation:ListStackResources: the rest is still worth showing
        names, dashboards_error = [], describe_aws_error(exc)
    dashboards = [
        {"name": name, "url": None if local_endpoint else dashboard_url(region, name)} for name in names
    ]
    info = {
        "stack": stack.stack_name,
        "region": region,
        "status": described.get("StackStatus"),
        "outputs": outputs,
        "dashboards": dashboards,
        "dashboardsError": dashboards_error,
        "notify": _notify(aws),
        "watched": aws.watching.to_json(),
        "watchedSource": aws.watching.source,
        "function": _function_settings(aws),
        "queue": _queue_settings(aws),
    }
    if emit(args, info):
        return EXIT_OK
    say(args, render_info(info, local_endpoint=local_endpoint), page=True)
    return EXIT_OK


def render_info(info: Mapping[str, Any], *, local_endpoint: str | None = None) -> str:
    lines = [f"stack {info['stack']} in {info['region'] or 'the default region'}: {info['status']}", ""]
    # Lines, not a table: outputs are copied from here whole (a table would cut a long one).
    lines.append("outputs")
    width = max((len(name) for name in info["outputs"]), default=0)
    for name, output in info["outputs"].items():
        lines.append(f"  {name.ljust(width)}  {output['value']}")
        if output["description"]:
            lines.append(f"  {''.ljust(width)}  ({output['description']})")
    lines.append("")
    if info.get("dashboardsError"):
        lines.append(f"dashboard: unknown ({info['dashboardsError']})")
    elif not info["dashboards"]:
        lines.append("dashboard: none in this stack")
    for dashboard in info["dashboards"]:
        where = dashboard["url"] or f"(no console link: AWS_ENDPOINT_URL is {local_endpoint})"
        lines.append(f"dashboard: {dashboard['name']}  {where}")
    lines += ["", *render_watched(info)]
    fn = info["function"]
    reserved = fn["reservedConcurrency"]
    lines += [
        "",
        f"function {fn['name']}",
        f"  runtime              {fn['runtime']} ({', '.join(fn['architectures']) or '?'})",
        f"  memory               {fn['memoryMb']} MB",
        f"  timeout              {fn['timeoutSeconds']} s",
        f"  reserved concurrency {'none (unreserved)' if reserved is None else reserved}",
        f"  log group            {fn['logGroup']}",
        f"  last modified        {fn['lastModified']}",
    ]
    for mapping in fn["queueEventSource"]:
        lines.append(
            f"  from the queue       {mapping['state']}, batches of {mapping['batchSize']}, "
            f"at most {mapping['maximumConcurrency'] or 'unlimited'} at once"
        )
    lines.append("  environment")
    width = max((len(k) for k in fn["environment"]), default=0)
    lines += [f"    {k.ljust(width)}  {v}" for k, v in fn["environment"].items()]
    queue = info["queue"]
    lines += [
        "",
        f"queue: visibility timeout {queue['visibilityTimeoutSeconds']} s (a failed delivery comes back "
        f"after it), into the dead-letter queue after {queue['maxReceiveCount']} receives; the dead-letter "
        f"queue keeps messages {format_duration(queue['deadLetterRetentionSeconds'] or 0)}",
    ]
    return redact("\n".join(lines))


def render_watched(info: Mapping[str, Any]) -> list[str]:
    """``notify: queue (S3 notifications to the queue)``, then each bucket and the keys it watches."""
    notify = info.get("notify") or {}
    if notify.get("mode"):
        lines = [f"notify: {notify['mode']} ({notify['description']})"]
    else:
        lines = [f"notify: unknown ({notify.get('error') or 'not read'})"]
    lines.append(f"watched objects (from {info.get('watchedSource') or 'the stack'})")
    rules = info.get("watched") or []
    width = max((len(rule["bucket"]) for rule in rules), default=0)
    for rule in rules:
        described = watch.Rule(rule["bucket"], rule.get("prefix") or "", rule.get("suffix") or "").describe()
        lines.append(f"  {rule['bucket'].ljust(width)}  {described}")
    return lines


# --- stats -----------------------------------------------------------------------------------------


def count_records(
    aws: Aws, *, segments: int = DEFAULT_SEGMENTS, prefix: S3Uri | None = None
) -> dict[str, Any]:
    """Records by status (and FAILED by errorKind) from one parallel scan projected to the attributes it
    counts. A Scan reads (and bills) every item whatever its filter or ``Select``: one COUNT scan per
    status would read the table once per status; this reads it once and keeps only counters. ``prefix``
    filters (it saves no read: a filter applies after the read)."""
    request: dict[str, Any] = {
        "TableName": aws.stack.table_name,
        "ProjectionExpression": "#s, errorKind",
        "ExpressionAttributeNames": {"#s": "status"},
        "TotalSegments": segments,
    }
    if prefix is not None:
        request["FilterExpression"] = "begins_with(pk, :p)"
        request["ExpressionAttributeValues"] = {":p": {"S": str(prefix)}}

    dynamodb = aws.dynamodb  # built once, here: boto3 clients are thread-safe, their creation is not

    def segment(number: int) -> tuple[Counter[str], Counter[str]]:
        statuses: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        paginator = dynamodb.get_paginator("scan")
        for page in paginator.paginate(**request, Segment=number):
            for item in page.get("Items", []):
                status = item.get("status", {}).get("S") or IN_PROGRESS
                statuses[status] += 1
                if status == "FAILED":
                    kinds[item.get("errorKind", {}).get("S") or "unknown"] += 1
        return statuses, kinds

    statuses: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=segments) as pool:
        for seg_statuses, seg_kinds in pool.map(segment, range(segments)):
            statuses.update(seg_statuses)
            kinds.update(seg_kinds)
    counts = {status: statuses.get(status, 0) for status in (*STATUSES, IN_PROGRESS)}
    counts.update({s: n for s, n in statuses.items() if s not in counts})  # a status of a later version
    return {"byStatus": counts, "total": sum(statuses.values()), "failedByKind": dict(sorted(kinds.items()))}


def _oldest_ages(aws: Aws, queue_urls: Sequence[str]) -> dict[str, tuple[float | None, str]]:
    """``ApproximateAgeOfOldestMessage`` per queue from CloudWatch: the latest datapoint of the last 30
    minutes and where it came from, or ``None`` and why there is none."""
    now = datetime.now(UTC)
    queries = [
        {
            "Id": f"q{i}",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/SQS",
                    "MetricName": "ApproximateAgeOfOldestMessage",
                    "Dimensions": [{"Name": "QueueName", "Value": url.rstrip("/").rsplit("/", 1)[-1]}],
                },
                "Period": 60,
                "Stat": "Maximum",
            },
        }
        for i, url in enumerate(queue_urls)
    ]
    try:
        response = aws._client("cloudwatch").get_metric_data(
            MetricDataQueries=queries,
            StartTime=now - timedelta(minutes=30),
            EndTime=now,
            ScanBy="TimestampDescending",
        )
    except (ClientError, BotoCoreError) as exc:
        reason = f"CloudWatch: {describe_aws_error(exc)}"
        return {url: (None, reason) for url in queue_urls}
    results = {r["Id"]: r for r in response.get("MetricDataResults", [])}
    ages: dict[str, tuple[float | None, str]] = {}
    for i, url in enumerate(queue_urls):
        result = results.get(f"q{i}", {})
        points = sorted(zip(result.get("Timestamps", []), result.get("Values", []), strict=False))
        if points:
            stamp, value = points[-1]
            ages[url] = (float(value), f"CloudWatch, {stamp.astimezone(UTC):%H:%M}Z")
        else:
            ages[url] = (None, "CloudWatch has no datapoint in the last 30 min")
    return ages


def queue_stats(aws: Aws) -> dict[str, dict[str, Any]]:
    stack = aws.stack
    names = (
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    )
    urls = {"queue": stack.queue_url, "deadLetterQueue": stack.dead_letter_queue_url}
    ages = _oldest_ages(aws, list(urls.values()))
    stats = {}
    for label, url in urls.items():
        attributes = _queue_attributes(aws, url, names)
        visible, in_flight, delayed = (int(attributes.get(n, 0) or 0) for n in names)
        age, source = ages[url]
        stats[label] = {
            "url": url,
            "visible": visible,
            "inFlight": in_flight,
            "delayed": delayed,
            "oldestMessageAgeSeconds": age,
            "oldestMessageAgeSource": source,
        }
    return stats


def cmd_stats(aws: Aws, args: argparse.Namespace) -> int:
    queues = queue_stats(aws)
    records = None if args.no_records else count_records(aws, segments=args.segments, prefix=args.prefix)
    if emit(args, {"records": records, **queues}):
        return EXIT_OK
    lines = []
    if records is not None:
        by_status = records["byStatus"]
        rows = []
        for status, count in by_status.items():
            detail = ""
            if status == "FAILED" and records["failedByKind"]:
                detail = ", ".join(f"{n} {kind}" for kind, n in records["failedByKind"].items())
            elif status == IN_PROGRESS:
                detail = "no status yet: a first delivery is working on it"
            rows.append((status, str(count), detail))
        rows.append(("total", str(records["total"]), ""))
        lines += [render_table(("RECORDS", "COUNT", ""), rows), ""]
    queue_rows = []
    for label, title in (("queue", "queue"), ("deadLetterQueue", "dead-letter queue")):
        q = queues[label]
        age = q["oldestMessageAgeSeconds"]
        if age is not None:
            age_text = f"{format_duration(age)} ({q['oldestMessageAgeSource']})"
        elif not (q["visible"] or q["inFlight"] or q["delayed"]):
            age_text = "none (no messages)"
        else:
            age_text = f"unknown ({q['oldestMessageAgeSource']})"
        queue_rows.append((title, str(q["visible"]), str(q["inFlight"]), str(q["delayed"]), age_text))
    headers = ("QUEUE", "WAITING", "IN FLIGHT", "DELAYED", "OLDEST MESSAGE")
    lines.append(render_table(headers, queue_rows))
    say(args, "\n".join(lines), page=True)
    return EXIT_OK


# --- set-key ---------------------------------------------------------------------------------------


def read_key(stdin: Any = None, *, prompt: Any = getpass.getpass) -> str:
    """The key from stdin when it is not a terminal (one line, its newline dropped), else from a prompt
    without echo. Validated as the function validates it; no error message contains it."""
    stdin = sys.stdin if stdin is None else stdin
    if console.is_terminal(stdin):
        try:
            text = prompt("kie.ai API key (not echoed): ")
        except EOFError:  # Ctrl-D at the prompt
            text = ""
    else:
        text = stdin.read() if stdin is not None else ""
    return validate_key(text)


def validate_key(text: str) -> str:
    body = text[:-1] if text.endswith("\n") else text
    body = body[:-1] if body.endswith("\r") else body
    if not body.strip():
        raise CliError("no key: give the kie.ai API key on stdin (one line) or at the prompt")
    if "\n" in body or "\r" in body:
        lines = len(body.splitlines())
        raise CliError(f"the key must be one line, got {lines} lines (nothing was written)")
    key = body.strip()
    if any(c.isspace() for c in key):
        raise CliError("the key contains whitespace: kie.ai keys have none (nothing was written)")
    if len(key) > 4096:
        raise CliError(f"the key is {len(key)} characters long: that is no kie.ai key (nothing was written)")
    return key


def _without(text: str, secret: str) -> str:
    return redact(text.replace(secret, REDACTED)) if secret else redact(text)


def put_key(aws: Aws, secret_arn: str, key: str) -> tuple[str | None, bool]:
    """Put ``{"apiKey": key}`` into the secret, keeping any other field of a JSON secret; returns the new
    version's id and whether the value changed (the same key again writes no new version)."""
    client = aws._client("secretsmanager")
    value: dict[str, Any] = {}
    try:
        current = client.get_secret_value(SecretId=secret_arn).get("SecretString") or ""
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code not in ("ResourceNotFoundException", *_ACCESS_DENIED):  # no value yet / may write only
            raise CliError(_without(describe_aws_error(exc), key)) from None
        current = ""
    except BotoCoreError as exc:
        raise CliError(_without(describe_aws_error(exc), key)) from None
    if current.strip().startswith("{"):
        try:
            parsed = json.loads(current)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            if parsed.get("apiKey") == key:
                return None, False
            value = parsed
    elif current.strip() == key:
        return None, False
    value["apiKey"] = key
    try:
        answer = client.put_secret_value(SecretId=secret_arn, SecretString=json.dumps(value))
    except (ClientError, BotoCoreError) as exc:
        raise CliError(_without(describe_aws_error(exc), key)) from None
    return answer.get("VersionId"), True


def cmd_set_key(aws: Aws, args: argparse.Namespace) -> int:
    """Read the kie.ai key and put it into the stack's secret; then say what to do next."""
    secret_arn = aws.stack.outputs.get("SecretArn")
    if not secret_arn:
        raise CliError(f"stack {aws.stack_name} has no output SecretArn: is it a kie-uploader stack?")
    key = read_key()
    version, changed = put_key(aws, secret_arn, key)
    del key
    queue = _queue_attributes(
        aws, aws.stack.queue_url, ["ApproximateNumberOfMessagesNotVisible", "VisibilityTimeout"]
    )
    dlq = _queue_attributes(aws, aws.stack.dead_letter_queue_url, ["ApproximateNumberOfMessages"])
    in_flight = int(queue.get("ApproximateNumberOfMessagesNotVisible", 0) or 0)
    visibility = _int_or_none(queue.get("VisibilityTimeout"))
    dead = int(dlq.get("ApproximateNumberOfMessages", 0) or 0)
    steps = next_steps(dead_letter=dead, in_flight=in_flight, visibility_timeout=visibility)
    summary = {
        "secretArn": secret_arn, "versionId": version, "changed": changed, "deadLetterMessages": dead,
        "inFlight": in_flight, "visibilityTimeoutSeconds": visibility, "next": steps,
    }  # fmt: skip
    if emit(args, summary):
        return EXIT_OK
    if changed:
        words = [
            f"put the kie.ai key into {secret_arn} (version {version or 'new'})",
            "the function reads it again within its SECRET_CACHE_SECONDS (300 s unless set), and at once "
            "after kie.ai refuses the key (401, 402, 403)",
        ]
    else:
        words = [f"{secret_arn} already holds this key: nothing written"]
    say(args, "\n".join([*words, "next:", *(f"  {step}" for step in steps)]))
    return EXIT_OK


def next_steps(*, dead_letter: int, in_flight: int, visibility_timeout: int | None) -> list[str]:
    """What recovers the objects that failed with the old key (the README's "Which command when")."""
    wait = f"{visibility_timeout} s" if visibility_timeout is not None else "the queue's visibility timeout"
    steps = [
        "kie-uploader retry-failed   # re-enqueues every FAILED record with a retryable error (a bad key is "
        "one): this is what recovers them",
    ]
    if dead_letter:
        steps.append(
            f"kie-uploader redrive        # the dead-letter queue holds {plural(dead_letter, 'message')} "
            "(`kie-uploader dlq peek` shows them)"
        )
    else:
        steps.append("(the dead-letter queue is empty: no redrive needed)")
    if in_flight:
        steps.append(
            f"{plural(in_flight, 'message')} in flight on the queue come back by themselves within {wait} "
            "(its visibility timeout); retry-failed does not wait for them"
        )
    steps.append(
        "kie-uploader backfill s3://bucket/prefix   # objects from before the stack, first deploy only"
    )
    return steps


# --- dlq peek --------------------------------------------------------------------------------------


@dataclass
class Decoded:
    """What a message body names: objects ``(bucket, key, event)``, its shape, and a note or problem."""

    shape: str
    objects: list[tuple[str, str, str]] = field(default_factory=list)
    note: str | None = None  # why the message failed, when the body says (a Lambda destination record)
    problem: str | None = None  # the body cannot be read


def decode_body(body: str) -> Decoded:
    """Decode a message body: an S3 event notification, the same wrapped in SNS or in an SQS event, an
    EventBridge S3 event, a Lambda destination record, or the plain ``{"bucket", "key"}`` message."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return Decoded("unreadable", problem=f"not JSON: {body[:60]!r}")
    if not isinstance(payload, dict):
        return Decoded("unreadable", problem=f"JSON but not an object ({type(payload).__name__})")
    try:
        return _decode(payload, depth=0)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        return Decoded("unreadable", problem=f"unreadable message ({type(exc).__name__})")


def _decode(payload: Mapping[str, Any], *, depth: int) -> Decoded:
    if depth > 3:
        return Decoded("unreadable", problem="nested too deeply")
    if payload.get("Type") == "Notification" and isinstance(payload.get("Message"), str):
        inner = decode_body(payload["Message"])
        return Decoded(f"sns/{inner.shape}", inner.objects, inner.note, inner.problem)
    if payload.get("Event") == "s3:TestEvent":
        return Decoded("s3-test", note="s3:TestEvent (nothing to upload)")
    if isinstance(payload.get("requestContext"), Mapping) and "requestPayload" in payload:
        inner = (
            _decode(payload["requestPayload"], depth=depth + 1)
            if isinstance(payload["requestPayload"], Mapping)
            else Decoded("unreadable", problem="requestPayload is not an object")
        )
        response = payload.get("responsePayload")
        why = payload["requestContext"].get("condition") or "failed"
        if isinstance(response, Mapping) and response.get("errorMessage"):
            why = f"{why}: {response.get('errorType', 'error')}: {response['errorMessage']}"
        return Decoded(f"lambda-destination/{inner.shape}", inner.objects, why, inner.problem)
    records = payload.get("Records")
    if isinstance(records, list) and records:
        return _decode_records(records, depth=depth)
    if payload.get("source") == "aws.s3" and "detail-type" in payload:
        detail = payload.get("detail") or {}
        bucket, key = str(detail["bucket"]["name"]), unquote_plus(str(detail["object"]["key"]))
        return Decoded("eventbridge", [(bucket, key, str(payload["detail-type"]))])
    if "s3Uri" in payload:
        bucket, _, key = str(payload["s3Uri"]).removeprefix("s3://").partition("/")
        return Decoded("plain", [(bucket, key, _plain_event(payload))])
    if "bucket" in payload or "key" in payload:
        return Decoded(
            "plain", [(str(payload.get("bucket", "")), str(payload.get("key", "")), _plain_event(payload))]
        )
    return Decoded(
        "unknown", problem="no S3 notification, SNS notification, EventBridge event or plain message"
    )


def _plain_event(payload: Mapping[str, Any]) -> str:
    return "message (force)" if payload.get("force") else "message"


def _decode_records(records: list[Any], *, depth: int) -> Decoded:
    first = records[0] if isinstance(records[0], Mapping) else {}
    if first.get("eventSource") == "aws:sqs":  # a whole SQS event (a failed direct invocation's payload)
        decoded = [decode_body(str(r.get("body", ""))) for r in records if isinstance(r, Mapping)]
        problems = [d.problem for d in decoded if d.problem]
        return Decoded(
            "sqs-event",
            [o for d in decoded for o in d.objects],
            problem="; ".join(problems) if problems else None,
        )
    objects = []
    for record in records:
        s3 = record["s3"]
        objects.append(
            (
                str(s3["bucket"]["name"]),
                unquote_plus(str(s3["object"]["key"])),
                str(record.get("eventName", "")),
            )
        )
    return Decoded("s3-notification", objects)


def _receive(aws: Aws, url: str, wanted: int) -> list[dict[str, Any]]:
    response = aws.sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=min(SQS_BATCH, wanted),
        WaitTimeSeconds=1,
        VisibilityTimeout=PEEK_VISIBILITY_SECONDS,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    return list(response.get("Messages", []))


def _release(aws: Aws, url: str, messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """Make the messages visible again now (ChangeMessageVisibilityBatch to 0); returns the failures."""
    errors = []
    for start in range(0, len(messages), SQS_BATCH):
        chunk = messages[start : start + SQS_BATCH]
        answer = aws.sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(chunk)
            ],
        )
        errors += [f"{e.get('Code')}: {e.get('Message', '')}" for e in answer.get("Failed", [])]
    return errors


def peek(aws: Aws, url: str, maximum: int) -> list[dict[str, Any]]:
    """Up to ``maximum`` messages of the queue, received and then at once made visible again (also when
    this fails half-way). A message is shown once even if SQS hands it out twice."""
    held: list[dict[str, Any]] = []
    seen: set[str] = set()
    started = time.monotonic()
    try:
        while len(seen) < maximum and time.monotonic() - started < PEEK_RECEIVE_SECONDS:
            messages = _receive(aws, url, maximum - len(seen))
            if not messages:
                break
            held += messages
            for message in messages:
                seen.add(message["MessageId"])
    finally:
        errors = _release(aws, url, held) if held else []
    if errors:
        print(
            f"kie-uploader: {len(errors)} messages stay invisible up to {PEEK_VISIBILITY_SECONDS} s more: "
            f"{redact(errors[0])}",
            file=sys.stderr,
        )
    unique: dict[str, dict[str, Any]] = {}
    for message in held:
        unique.setdefault(message["MessageId"], message)
    return list(unique.values())


def describe_messages(
    aws: Aws, messages: Sequence[Mapping[str, Any]], *, now: float | None = None
) -> list[dict[str, Any]]:
    """Each message decoded, with its age, its earlier receives and its objects' records."""
    now = time.time() if now is None else now
    decoded = [decode_body(str(m.get("Body", ""))) for m in messages]
    pks = [f"s3://{b}/{k}" for d in decoded for b, k, _ in d.objects if b and k]
    records = _batch_get_records(aws.dynamodb, aws.stack.table_name, pks, projection=None) if pks else {}
    shown = []
    for message, body in zip(messages, decoded, strict=True):
        attributes = message.get("Attributes", {})
        sent = _int_or_none(attributes.get("SentTimestamp"))
        receives = _int_or_none(attributes.get("ApproximateReceiveCount"))
        note = body.note or _lambda_error(message.get("MessageAttributes", {}))
        objects = []
        for bucket, key, event in body.objects:
            record = records.get(f"s3://{bucket}/{key}")
            objects.append({
                "uri": f"s3://{bucket}/{key}", "bucket": bucket, "key": key, "event": event,
                "record": None if record is None else {
                    name: record.get(name)
                    for name in ("status", "errorKind", "error", "retryable", "updatedAt", "attempts")
                },
            })  # fmt: skip
        shown.append({
            "messageId": message.get("MessageId"),
            "sentAt": None if sent is None else datetime.fromtimestamp(sent / 1000, UTC).isoformat(),
            "ageSeconds": None if sent is None else max(0.0, now - sent / 1000),
            # SQS counts this peek's receive too: the receives before it.
            "earlierReceives": None if receives is None else max(0, receives - 1),
            "shape": body.shape,
            "objects": objects,
            "note": note,
            "problem": body.problem,
        })  # fmt: skip
    return shown


def _lambda_error(attributes: Mapping[str, Any]) -> str | None:
    """A Lambda dead-letter message's ``ErrorCode``/``ErrorMessage`` attributes (a failed direct call)."""
    message = attributes.get("ErrorMessage", {}).get("StringValue")
    code = attributes.get("ErrorCode", {}).get("StringValue")
    return ": ".join(str(p) for p in (code, message) if p) or None


def _why(obj: Mapping[str, Any] | None, entry: Mapping[str, Any]) -> str:
    record = obj.get("record") if obj else None
    parts = []
    if record and record.get("status") == "FAILED":
        retry = ", retryable" if record.get("retryable") else ""
        parts.append(f"[{record.get('errorKind') or '?'}{retry}] {record.get('error') or ''}".strip())
    elif record and record.get("status"):
        parts.append(f"the record is {record['status']} now")
    elif obj is not None and record and not record.get("status"):
        parts.append("in progress (no status yet)")
    elif obj is not None:
        parts.append("no record")
    if entry.get("note"):
        parts.append(str(entry["note"]))
    if entry.get("problem"):
        parts.append(f"unreadable: {entry['problem']}")
    return "; ".join(parts)


def cmd_dlq_peek(aws: Aws, args: argparse.Namespace) -> int:
    """Show the dead-letter messages, their objects and why they failed; nothing is moved or consumed."""
    url = aws.stack.dead_letter_queue_url
    depth = _queue_attributes(aws, url, ["ApproximateNumberOfMessages"]).get("ApproximateNumberOfMessages")
    entries = describe_messages(aws, peek(aws, url, args.max))
    output = output_format(args)
    if output != "table":
        # TSV: one line per object (a message with two records is two lines); JSON: one item per message.
        stream = console.Stream(output, redact=redact, tsv_fields=PEEK_TSV_FIELDS)
        stream.write(peek_tsv_rows(entries) if output == "tsv" else entries)
        stream.close()
        return EXIT_OK
    say(args, render_peek(entries, depth=_int_or_none(depth)), page=True)
    return EXIT_OK


_SHAPES = {
    "plain": "a plain message",
    "s3-notification": "an S3 notification",
    "eventbridge": "an EventBridge event",
    "sqs-event": "an SQS event",
    "s3-test": "S3's test event",
}


PEEK_TSV_FIELDS = (
    "messageId", "sentAt", "ageSeconds", "earlierReceives", "shape", "uri", "event", "status", "errorKind",
    "retryable", "error", "note", "problem",
)  # fmt: skip


def peek_tsv_rows(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The peek's TSV lines: one per object (a message naming none: one line without an object)."""
    rows = []
    for entry in entries:
        message = {name: entry.get(name) for name in ("messageId", "sentAt", "ageSeconds", "earlierReceives")}
        message.update(shape=entry.get("shape"), note=entry.get("note"), problem=entry.get("problem"))
        for obj in entry["objects"] or [{}]:
            record = obj.get("record") or {}
            rows.append({
                **message, "uri": obj.get("uri"), "event": obj.get("event"), "status": record.get("status"),
                "errorKind": record.get("errorKind"), "retryable": record.get("retryable"),
                "error": record.get("error"),
            })  # fmt: skip
    return rows


def render_peek(entries: Sequence[Mapping[str, Any]], *, depth: int | None = None) -> str:
    """One block per message: its id, age, earlier receives and shape, then a line per object (S3 URI,
    event, record status, why). Lines, not a table: an S3 URI is shown whole, never cut."""
    lines = []
    for entry in entries:
        age = "age unknown" if entry["ageSeconds"] is None else f"{format_duration(entry['ageSeconds'])} old"
        receives = entry["earlierReceives"]
        received = "receives unknown" if receives is None else f"received {plural(receives, 'time')} before"
        shape = "/".join(_SHAPES.get(part, part) for part in str(entry["shape"]).split("/"))
        lines.append(f"message {entry['messageId']}: {age}, {received}, {shape.replace('sns', 'SNS')}")
        for obj in entry["objects"]:
            status = (obj.get("record") or {}).get("status") or "-"
            lines.append(f"  {obj['uri']}  {obj['event']}  {status}  {_why(obj, entry)}".rstrip())
        if not entry["objects"]:
            lines.append(f"  (no object)  {_why(None, entry)}".rstrip())
    about = f" of about {depth}" if depth is not None and depth > len(entries) else ""
    lines.append(
        f"{plural(len(entries), 'message')}{about} peeked; all left in the dead-letter queue, visible again"
    )
    return redact("\n".join(lines))


# --- redrive ---------------------------------------------------------------------------------------


@dataclass
class Moved:
    moved: int = 0
    failed: int = 0
    method: str = "loop"
    errors: list[str] = field(default_factory=list)
    task_handle: str | None = None
    status: str | None = None


def _queue_arn(aws: Aws, url: str) -> str:
    return _queue_attributes(aws, url, ["QueueArn"])["QueueArn"]


def _unsupported(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(error.get("Code", "")) in _UNSUPPORTED_CODES or status == 501


def move_task(aws: Aws, *, poll_seconds: float = MOVE_TASK_POLL_SECONDS) -> Moved | None:
    """Redrive with SQS's message move task (DLQ → queue), followed to its end; ``None`` when this SQS has
    no such API (ministack: InvalidAction) or the caller may not use it: the caller falls back to the loop.
    A task already running from the DLQ is followed instead of starting another (SQS allows one)."""
    source = _queue_arn(aws, aws.stack.dead_letter_queue_url)
    destination = _queue_arn(aws, aws.stack.queue_url)
    try:
        running = [
            t for t in aws.sqs.list_message_move_tasks(SourceArn=source, MaxResults=1).get("Results", [])
            if t.get("Status") == "RUNNING"
        ]  # fmt: skip
        if running:
            handle = running[0]["TaskHandle"]
            print(
                "kie-uploader: a message move task is already running from the DLQ: following it",
                file=sys.stderr,
            )
        else:
            handle = aws.sqs.start_message_move_task(SourceArn=source, DestinationArn=destination)[
                "TaskHandle"
            ]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if _unsupported(exc) or code in _ACCESS_DENIED:
            print(
                f"kie-uploader: no SQS message move task here ({code}): "
                "moving the messages one batch at a time",
                file=sys.stderr,
            )
            return None
        raise
    progress = Progress("redrive")
    try:
        while True:
            tasks = aws.sqs.list_message_move_tasks(SourceArn=source, MaxResults=10).get("Results", [])
            task = next((t for t in tasks if t.get("TaskHandle") == handle), None)
            if task is not None:
                moved = int(task.get("ApproximateNumberOfMessagesMoved") or 0)
                status = str(task.get("Status"))
                progress.update(
                    f"{moved} of {task.get('ApproximateNumberOfMessagesToMove', '?')} moved ({status})"
                )
                if status in _MOVE_TASK_DONE:
                    result = Moved(moved=moved, method="move-task", task_handle=handle, status=status)
                    if status != "COMPLETED":
                        reason = task.get("FailureReason") or status.lower()
                        result.errors.append(f"the move task ended {status}: {reason}")
                        to_move = _int_or_none(task.get("ApproximateNumberOfMessagesToMove"))
                        result.failed = max(0, (to_move or moved) - moved)
                    return result
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        progress.done()
        print(
            f"kie-uploader: the move task goes on in SQS; to stop it: "
            f"aws sqs cancel-message-move-task --task-handle {handle}",
            file=sys.stderr,
        )
        raise
    finally:
        progress.done()


def move_loop(aws: Aws, maximum: int | None) -> Moved:
    """Move messages one batch at a time: receive from the DLQ, send to the queue, delete what was sent."""
    result = Moved()
    progress = Progress("redrive")
    try:
        while maximum is None or result.moved + result.failed < maximum:
            wanted = SQS_BATCH if maximum is None else min(SQS_BATCH, maximum - result.moved - result.failed)
            with interrupt_after():  # a batch sent is deleted from the DLQ and counted before Ctrl-C stops
                if not _move_batch(aws, wanted, result):
                    break
            progress.update(f"{result.moved} moved, {result.failed} failed")
    except KeyboardInterrupt:
        progress.done()
        raise CliError(
            f"redrive interrupted: {plural(result.moved, 'message')} moved to the queue, "
            f"{result.failed} failed; the rest is still in the dead-letter queue",
            EXIT_INTERRUPTED,
        ) from None
    progress.done()
    return result


def _move_batch(aws: Aws, wanted: int, result: Moved) -> bool:
    """Receive up to ``wanted`` DLQ messages, send them to the queue, delete from the DLQ what was sent;
    counted in ``result``. False when the DLQ gave nothing."""
    stack = aws.stack
    response = aws.sqs.receive_message(
        QueueUrl=stack.dead_letter_queue_url,
        MaxNumberOfMessages=wanted,
        WaitTimeSeconds=1,
        VisibilityTimeout=60,
        MessageAttributeNames=["All"],
    )
    messages = response.get("Messages", [])
    if not messages:
        return False
    entries = []
    for i, message in enumerate(messages):
        entry: dict[str, Any] = {"Id": str(i), "MessageBody": message["Body"]}
        if message.get("MessageAttributes"):
            entry["MessageAttributes"] = message["MessageAttributes"]
        entries.append(entry)
    sent = aws.sqs.send_message_batch(QueueUrl=stack.queue_url, Entries=entries)
    done = {e["Id"] for e in sent.get("Successful", [])}
    for failure in sent.get("Failed", []):
        result.errors.append(f"send failed: {failure.get('Code')}: {failure.get('Message', '')}")
    result.failed += len(messages) - len(done)
    # Delete only what reached the queue: a failed send stays in the DLQ (visible again later).
    if done:
        deleted = aws.sqs.delete_message_batch(
            QueueUrl=stack.dead_letter_queue_url,
            Entries=[{"Id": i, "ReceiptHandle": messages[int(i)]["ReceiptHandle"]} for i in sorted(done)],
        )
        for failure in deleted.get("Failed", []):  # on the queue now, but also still in the DLQ
            result.errors.append(
                f"sent but not deleted from the DLQ (it will be redriven again): {failure.get('Code')}"
            )
    result.moved += len(done)
    return True


def cmd_redrive(aws: Aws, args: argparse.Namespace) -> int:
    """Move the dead-letter queue's messages back to the queue: SQS's message move task where SQS has it
    (and no ``--max``: the task has a rate, not a count), else receive, send, then delete."""
    result = move_task(aws) if args.max is None else None
    if result is None:
        result = move_loop(aws, args.max)
    shown: dict[str, Any] = {"moved": result.moved, "failed": result.failed, "method": result.method}
    shown["errors"] = result.errors[:10]
    if result.task_handle:
        shown.update(taskHandle=result.task_handle, taskStatus=result.status)
    if not emit(args, shown):
        how = " (SQS message move task)" if result.method == "move-task" else ""
        say(
            args,
            f"moved {plural(result.moved, 'message')} from the dead-letter queue to the queue{how}"
            + (f", {result.failed} failed (left in the dead-letter queue)" if result.failed else ""),
        )
        for error in dict.fromkeys(result.errors):
            print(redact(error), file=sys.stderr)
    return EXIT_NO if result.failed or result.errors else EXIT_OK


# --- the parser ------------------------------------------------------------------------------------


def _segments(text: str) -> int:
    value = _positive_int(text)
    if value > 64:
        raise argparse.ArgumentTypeError(f"at most 64 segments, got {value}")
    return value


def _peek_max(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_PEEK:
        raise argparse.ArgumentTypeError(f"at most {MAX_PEEK} messages, got {value}")
    return value


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register ``info``, ``stats``, ``set-key``, ``dlq peek`` and ``redrive`` (from cli.build_parser)."""
    info = commands.add_parser(
        "info",
        parents=[common],
        help="what the stack created: outputs, dashboard link, the function's settings",
        **examples(
            "kie-uploader info",
            "kie-uploader info --json | jq -r '.outputs.SecretArn.value'",
            description="The stack's outputs, its CloudWatch dashboard's console link, how S3 tells the "
            "stack (notify: queue, eventbridge or lambda) and what it watches (each bucket's prefix/suffix), "
            "the function's settings (memory, timeout, reserved concurrency, environment without secret "
            "values) and the queues' (visibility timeout, receives before the dead-letter queue).",
        ),
    )
    info.set_defaults(handler=cmd_info)

    stats = commands.add_parser(
        "stats",
        parents=[common],
        help="records by status; queue and dead-letter depth, in flight, oldest message",
        **examples(
            "kie-uploader stats",
            "kie-uploader stats --no-records   # the queues only, no scan",
            "kie-uploader stats --json | jq .deadLetterQueue.visible",
            description="Counts the records by status with one parallel scan (it reads the whole table "
            "once; --no-records skips it), and reads the queues' depth and in-flight counts; the oldest "
            "message's age comes from CloudWatch (unknown where it has no datapoint).",
        ),
    )
    stats.add_argument(
        "--segments",
        type=_segments,
        default=DEFAULT_SEGMENTS,
        help=f"parallel scan segments (default {DEFAULT_SEGMENTS})",
    )
    stats.add_argument("--no-records", action="store_true", help="skip the table scan: the queues only")
    stats.add_argument(
        "--prefix",
        type=_s3_uri_arg(False),
        metavar="s3://bucket/prefix",
        help="count only the records of objects under this prefix (the scan still reads the whole table)",
    )
    stats.set_defaults(handler=cmd_stats)

    set_key = commands.add_parser(
        "set-key",
        parents=[common],
        help="put the kie.ai API key into the stack's secret (stdin, or a prompt without echo)",
        **examples(
            "kie-uploader set-key                      # prompts, no echo",
            'printf %s "$KIE_API_KEY" | kie-uploader set-key',
            "kie-uploader set-key < kie-key.txt",
            description="Reads the key from stdin when it is not a terminal (one line), else prompts "
            'without echo, and puts {"apiKey": KEY} into the stack\'s secret (the SecretArn output). '
            "The key is never printed. Then it says what recovers the objects that failed meanwhile.",
        ),
    )
    set_key.set_defaults(handler=cmd_set_key)

    dlq = commands.add_parser(
        "dlq",
        parents=[common],
        help="look into the dead-letter queue (dlq peek)",
        **examples("kie-uploader dlq peek --max 20"),
    )
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    peek_parser = dlq_commands.add_parser(
        "peek",
        parents=[common],
        help="show dead-letter messages, their objects and why they failed, without moving them",
        **examples(
            "kie-uploader dlq peek",
            "kie-uploader dlq peek --max 100 --json | jq -r '.[].objects[].uri'",
            description=f"Receives up to --max messages with a {PEEK_VISIBILITY_SECONDS} s visibility "
            "timeout and makes them visible again at once: nothing is moved or consumed (SQS counts the "
            "receive). Each message's objects are joined with their records (status, errorKind, error).",
        ),
    )
    peek_parser.add_argument(
        "--max",
        type=_peek_max,
        default=DEFAULT_PEEK,
        help=f"at most this many messages (default {DEFAULT_PEEK}, at most {MAX_PEEK})",
    )
    peek_parser.set_defaults(handler=cmd_dlq_peek)

    redrive = commands.add_parser(
        "redrive",
        parents=[common],
        help="move dead-letter messages back to the queue",
        **examples(
            "kie-uploader dlq peek && kie-uploader redrive",
            "kie-uploader redrive --max 10",
            description="Moves the dead-letter queue's messages back to the queue with SQS's message move "
            "task where SQS has it, else (and with --max) one batch at a time: receive, send, delete. "
            "Prints only what was really moved.",
        ),
    )
    redrive.add_argument(
        "--max",
        type=_positive_int,
        default=None,
        help="move at most this many messages (one batch at a time)",
    )
    redrive.set_defaults(handler=cmd_redrive)
