"""``info`` and ``stats``: what the stack is and what it holds.

- ``info``: the uploader's resources (from its discovery record), its CloudWatch dashboard (made by the
  construct's monitoring; an older stack's is found among the stack's resources), how S3 tells it
  (``notify``, from the record; an older stack's from the template's resources) and what it watches (each
  bucket's prefix/suffix, the function's ``WATCHED_OBJECTS``), the function's settings (secret values never
  shown) and the queues'.
- ``stats``: records by status, from one parallel projected scan that counts (constant memory); the
  queue's and the dead-letter queue's depth, in-flight messages, and the age of the oldest message from
  CloudWatch (``unknown`` where CloudWatch has no datapoint: never a made-up value).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from kie_uploader import discovery
from kie_uploader.aws_errors import describe_aws_error
from kie_uploader.cli import console
from kie_uploader.cli.args import S3Uri, examples, positive_int, s3_uri
from kie_uploader.cli.aws import Aws
from kie_uploader.cli.errors import EXIT_OK
from kie_uploader.cli.output import emit, format_duration, redact, render_table, say
from kie_uploader.cli.store import STATUSES, int_or_none, queue_attributes
from kie_uploader.function import watch

IN_PROGRESS = "IN_PROGRESS"  # a record without a status: its first delivery is still working on it


#: ``stats``: parallel scan segments by default (each a thread and its own paginated scan).
DEFAULT_SEGMENTS = 4


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


# --- info ---


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
    """The uploader's CloudWatch dashboard, named by its discovery record; an older stack's (its one
    uploader's) from the stack's resources."""
    if aws.stack.dashboard_name:
        return [aws.stack.dashboard_name]
    names = []
    paginator = aws.cloudformation.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=aws.stack_name):
        for resource in page.get("StackResourceSummaries", []):
            if resource.get("ResourceType") == "AWS::CloudWatch::Dashboard":
                if resource.get("PhysicalResourceId"):
                    names.append(resource["PhysicalResourceId"])
    return names


def _function_settings(aws: Aws) -> dict[str, Any]:
    name = aws.function_name
    config = aws.lambda_.get_function_configuration(FunctionName=name)
    concurrency = aws.lambda_.get_function_concurrency(FunctionName=name)
    variables = config.get("Environment", {}).get("Variables", {})
    environment = {
        k: ("(secret, not shown)" if is_secret_variable(k) else v) for k, v in sorted(variables.items())
    }
    queue_arn = queue_attributes(aws, aws.stack.queue_url, ["QueueArn"]).get("QueueArn", "")
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
    queue = queue_attributes(aws, aws.stack.queue_url, ["VisibilityTimeout", "RedrivePolicy"])
    dlq = queue_attributes(aws, aws.stack.dead_letter_queue_url, ["MessageRetentionPeriod"])
    try:
        max_receives = json.loads(queue.get("RedrivePolicy") or "{}").get("maxReceiveCount")
    except ValueError:
        max_receives = None
    return {
        "visibilityTimeoutSeconds": int_or_none(queue.get("VisibilityTimeout")),
        "maxReceiveCount": int_or_none(max_receives),
        "deadLetterRetentionSeconds": int_or_none(dlq.get("MessageRetentionPeriod")),
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
    """``{"mode": "queue", "description": ..., "error": None}``, from the uploader's discovery record (an
    older stack's from its template)."""
    if aws.stack.notify in NOTIFY_MODES:
        return {"mode": aws.stack.notify, "description": NOTIFY_MODES[aws.stack.notify], "error": None}
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


def cmd_info(aws: Aws, args: argparse.Namespace) -> int:
    """The uploader's resources, dashboard link, notify mode and watched objects, function and queue
    settings."""
    stack = aws.stack  # CliError when there is no such stack, or no such uploader
    described = aws.described
    resources = {
        name: {"value": value, "description": discovery.LEGACY_OUTPUTS.get(name, "")}
        for name, value in stack.outputs.items()
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
        "uploader": stack.uploader,
        "uploaders": list(stack.uploaders),
        "resources": resources,
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
    say(args, render_info(info, local_endpoint=local_endpoint))
    return EXIT_OK


def render_info(info: Mapping[str, Any], *, local_endpoint: str | None = None) -> console.Page:
    """The uploader as a page: sentences wrap, names stay aligned, resources and ARNs are whole (or cut in the
    middle on a narrow terminal: ``--wide`` and ``--json`` show them whole)."""
    page = console.Page()
    page.line(f"stack {info['stack']} in {info['region'] or 'the default region'}: {info['status']}").line()
    uploaders = info.get("uploaders") or []
    others = f" (of {len(uploaders)}: {', '.join(uploaders)})" if len(uploaders) > 1 else ""
    page.line(f"uploader {info.get('uploader', '')}{others}")
    for name, output in info["resources"].items():
        described = f"({output['description']})" if output["description"] else None
        page.pairs([(name, output["value"]), ("", described)], indent=2)
    page.line()
    if info.get("dashboardsError"):
        page.line(f"dashboard: unknown ({info['dashboardsError']})")
    elif not info["dashboards"]:
        page.line("dashboard: none in this stack")
    for dashboard in info["dashboards"]:
        where = dashboard["url"] or f"(no console link: AWS_ENDPOINT_URL is {local_endpoint})"
        page.line(f"dashboard: {dashboard['name']}  {where}")
    page.line()
    render_watched(info, page)
    fn = info["function"]
    reserved = fn["reservedConcurrency"]
    settings = [
        ("runtime", f"{fn['runtime']} ({', '.join(fn['architectures']) or '?'})"),
        ("memory", f"{fn['memoryMb']} MB"),
        ("timeout", f"{fn['timeoutSeconds']} s"),
        ("reserved concurrency", "none (unreserved)" if reserved is None else reserved),
        ("log group", fn["logGroup"]),
        ("last modified", fn["lastModified"]),
    ]
    settings += [
        ("from the queue", f"{m['state']}, batches of {m['batchSize']}, at most "
                           f"{m['maximumConcurrency'] or 'unlimited'} at once")
        for m in fn["queueEventSource"]
    ]  # fmt: skip
    page.line().line(f"function {fn['name']}").pairs(settings, indent=2).line("  environment")
    page.pairs(fn["environment"].items(), indent=4)
    queue = info["queue"]
    return page.line().line(
        f"queue: visibility timeout {queue['visibilityTimeoutSeconds']} s (a failed delivery comes back "
        f"after it), into the dead-letter queue after {queue['maxReceiveCount']} receives; the dead-letter "
        f"queue keeps messages {format_duration(queue['deadLetterRetentionSeconds'] or 0)}"
    )


def render_watched(info: Mapping[str, Any], page: console.Page | None = None) -> console.Page:
    """``notify: queue (S3 notifications to the queue)``, then each bucket and the keys it watches."""
    page = console.Page() if page is None else page
    notify = info.get("notify") or {}
    if notify.get("mode"):
        page.line(f"notify: {notify['mode']} ({notify['description']})")
    else:
        page.line(f"notify: unknown ({notify.get('error') or 'not read'})")
    page.line(f"watched objects (from {info.get('watchedSource') or 'the stack'})")
    rules = info.get("watched") or []
    return page.pairs(
        [(r["bucket"], watch.Rule(r["bucket"], r.get("prefix") or "", r.get("suffix") or "").describe())
         for r in rules],
        indent=2,
    )  # fmt: skip


# --- stats ---


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
        response = aws.client("cloudwatch").get_metric_data(
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
            ages[url] = (round(float(value)), f"CloudWatch, {stamp.astimezone(UTC):%H:%M}Z")
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
        attributes = queue_attributes(aws, url, names)
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
    wide = bool(getattr(args, "wide", False))
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
        lines += [render_table(("RECORDS", "COUNT", ""), rows, wide=wide), ""]
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
    lines.append(render_table(headers, queue_rows, wide=wide))
    print(redact("\n".join(lines)))  # tables fitted to the terminal already
    return EXIT_OK


def _segments(text: str) -> int:
    value = positive_int(text)
    if value > 64:
        raise argparse.ArgumentTypeError(f"at most 64 segments, got {value}")
    return value


# --- the parser -----------------------------------------------------------------------------------


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register ``info`` and ``stats``."""
    info = commands.add_parser(
        "info",
        parents=[common],
        help="what the uploader created: its resources, dashboard link, the function's settings",
        **examples(
            "kie-uploader info",
            "kie-uploader info --json | jq -r '.resources.SecretArn.value'",
            description="The uploader's resources (--uploader NAME chooses one of several), its "
            "CloudWatch dashboard's console link, how S3 tells it (notify: queue, eventbridge or lambda) and "
            "what it watches (each bucket's prefix/suffix), "
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
        type=s3_uri(False),
        metavar="s3://bucket/prefix",
        help="count only the records of objects under this prefix (the scan still reads the whole table)",
    )
    stats.set_defaults(handler=cmd_stats)
