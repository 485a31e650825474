"""The records room: ``list``, ``status``, ``url`` and ``refresh`` (what the stack knows of each object,
and its kie.ai URL).
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from kie_uploader import live
from kie_uploader.cli import formats
from kie_uploader.cli.args import S3Uri, duration, examples, positive_int, s3_uri
from kie_uploader.cli.aws import Aws
from kie_uploader.cli.errors import EXIT_ERROR, EXIT_NO, EXIT_OK, CliError
from kie_uploader.cli.output import (
    emit,
    iso,
    output_format,
    record_tsv,
    redact,
    render_record,
    say,
    write_records,
)
from kie_uploader.cli.store import (
    EXPIRY_INDEX,
    STATUSES,
    batch_get_records,
    deserialize,
    read_object,
    scan_pages,
)

#: The function's resolve statuses that mean "wrong object" (it wrote nothing), with their default words.
URL_REFUSALS = {
    "NOT_WATCHED": "not watched by the stack",
    "NOT_FOUND": "no such object in S3 (nothing recorded)",
    "INVALID": "not an S3 URI the function accepts",
}


#: The function's answer to a duration it cannot honour (its bound is the stack's kie.ai retention).
_BOUND = re.compile(r"(\w+Seconds) must be a whole number of seconds from 0 to (\d+)")
_OPTIONS = {"minValidSeconds": "--min-valid", "expiringWithinSeconds": "--expiring-within"}


def _refusal(exc: live.LiveUrlError, given: int) -> CliError:
    """The function's refusal in the words the user typed: ``--min-valid 4 d: at most 2 d 23 h on this
    stack``, not the request's field in seconds."""
    match = _BOUND.search(str(exc))
    name = match.group(1).rpartition(".")[2] if match else ""
    if match is None or name not in _OPTIONS:
        return CliError(str(exc))
    high = int(match.group(2))
    return CliError(
        f"{_OPTIONS[name]} {live.human_duration(given)} is longer than this stack allows: at most "
        f"{live.human_duration(high)} (kie.ai keeps each file for the stack's retentionSeconds, less a "
        "margin)"
    )


def cmd_status(aws: Aws, args: argparse.Namespace) -> int:
    """Print one object's record and what it means (with S3's reading of the object: waiting, never
    seen, changed since, not in S3; not watched for a key outside the stack's rules); exit 0 only when its
    URL is live and of the object's current bytes. A bucket the stack does not serve is an error (exit 2)."""
    uri: S3Uri = args.uri
    now = time.time()
    watching = aws.watching
    watching.require_served(uri.bucket)
    outside = watching.outside(uri.bucket, uri.key)
    response = aws.dynamodb.get_item(
        TableName=aws.stack.table_name, Key={"pk": {"S": str(uri)}}, ConsistentRead=True
    )
    record = deserialize(response["Item"]) if "Item" in response else None
    # A key outside the rules never gets an event: what S3 holds changes nothing to what it is.
    reading = None if outside else read_object(aws, uri)
    state = live.describe_object(record, now, reading=reading, outside=outside, stack=aws.stack.stack_name)
    shown = {"pk": str(uri)} if record is None else record
    if output_format(args) == "tsv":  # the list's fields: one format for records
        emit(args, [record_tsv(shown, now, state)])
    elif output_format(args) != "table":
        emit(args, {**shown, "state": state.state, "stateDescription": state.sentence})
    elif record is None:
        say(args, f"{uri}: {state.sentence}")
    else:
        say(args, render_record(record, now=now, state=state))
    return EXIT_OK if state.state == live.LIVE else EXIT_NO


def cmd_list(aws: Aws, args: argparse.Namespace) -> int:
    """Records, filtered by status and S3 prefix, printed page by page as the Scan returns them (in the
    table's order, sorted by key within a page); with ``--expiring-within`` the UPLOADED records whose file
    expires within that time, soonest first, from the expiry index (never a scan). ``--limit N`` stops
    after N records (and the scan with them)."""
    prefix: S3Uri | None = args.prefix or args.prefix_uri
    if args.prefix and args.prefix_uri and args.prefix != args.prefix_uri:
        raise CliError("give the prefix once: s3://bucket/prefix or --prefix s3://bucket/prefix")
    if prefix is not None:
        aws.watching.require_served(prefix.bucket)  # a typo is an error, not "0 records"
    now = time.time()
    limit: int | None = getattr(args, "limit", None)
    pages: Iterable[list[dict[str, Any]]]
    if args.expiring_within is not None:
        if args.status not in (None, "UPLOADED"):
            raise CliError("--expiring-within lists UPLOADED records only: drop --status")
        pages = [_expiring(aws, prefix, until=int(now) + args.expiring_within)]  # bounded, soonest first
    else:
        scan = scan_pages(aws, status=args.status, prefix=prefix, page_size=limit)
        pages = (sorted(page, key=lambda r: str(r.get("pk", ""))) for page in scan)
    buckets = aws.stack.bucket_names
    # Keys relative to the bucket when there is only one (a record of another bucket keeps its S3 URI).
    bucket = prefix.bucket if prefix is not None else (buckets[0] if len(buckets) == 1 else None)
    write_records(pages, args, now=now, bucket=bucket, limit=limit)
    return EXIT_OK


def _expiring(aws: Aws, prefix: S3Uri | None, *, until: int) -> list[dict[str, Any]]:
    """The UPLOADED records (of the prefix's bucket, or of every bucket of the stack) whose file expires by
    ``until``, soonest first: a query of the sparse ``byExpiry`` index per bucket, then the records."""
    stack = aws.stack
    buckets = [prefix.bucket] if prefix is not None else list(aws.watching.buckets)
    pks: list[str] = []
    for bucket in buckets:
        request: dict[str, Any] = {
            "TableName": stack.table_name,
            "IndexName": EXPIRY_INDEX,
            "KeyConditionExpression": "#b = :b AND #e <= :t",
            "ExpressionAttributeNames": {"#b": "liveBucket", "#e": "expiresAt"},
            "ExpressionAttributeValues": {":b": {"S": bucket}, ":t": {"N": str(until)}},
        }
        if prefix is not None and prefix.key:
            request["FilterExpression"] = "begins_with(#pk, :p)"
            request["ExpressionAttributeNames"]["#pk"] = "pk"
            request["ExpressionAttributeValues"][":p"] = {"S": str(prefix)}
        try:
            for page in aws.dynamodb.get_paginator("query").paginate(**request):
                pks += [item["pk"]["S"] for item in page.get("Items", [])]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if (
                error.get("Code") == "ValidationException"
                and "index" in str(error.get("Message", "")).lower()
            ):
                raise CliError(
                    f"the stack's table has no {EXPIRY_INDEX} index: deploy this version of the stack first"
                ) from exc
            raise
    records = batch_get_records(aws.dynamodb, stack.table_name, pks, projection=None)
    # Read again: a record may have been refreshed (or deleted) between the index and the read.
    due = [r for pk in dict.fromkeys(pks) if (r := records.get(pk)) and r.get("status") == "UPLOADED"]
    return sorted(due, key=lambda r: (float(r.get("expiresAt") or 0), str(r.get("pk", ""))))


def cmd_url(aws: Aws, args: argparse.Namespace) -> int:
    """Print a kie.ai URL of the object valid for at least --min-valid, from the stack's function. An object
    the stack does not watch, or a key without an object, is an error (exit 2): the function refuses it
    and writes nothing (``NOT_WATCHED``, ``NOT_FOUND``)."""
    uri: S3Uri = args.uri
    watching = aws.watching
    watching.require_served(uri.bucket)
    outside = watching.outside(uri.bucket, uri.key)
    if outside is not None:
        raise CliError(
            f"{uri}: not watched: {outside} (stack {watching.stack_name} never hands it to kie.ai)"
        )
    try:
        [result] = live.resolve(aws.lambda_, aws.function_name, [str(uri)], args.min_valid)
    except live.LiveUrlError as exc:
        raise _refusal(exc, args.min_valid) from exc
    refused = result.get("status") in URL_REFUSALS
    output = output_format(args)
    if output != "table":
        # Not redacted: the URL is the answer (kie.ai's URL carries no AWS secret; errors are redacted).
        shown = {**result, "error": redact(str(result["error"])) if result.get("error") else None}
        if output == "tsv":
            shown["expiresAt"] = iso(shown.get("expiresAt"))
        formats.write_value(shown, output, redact=lambda text: text)
        return EXIT_ERROR if refused else EXIT_OK if result.get("downloadUrl") else EXIT_NO
    if refused:
        reason = live.one_line(result.get("error")) or URL_REFUSALS[str(result["status"])]
        raise CliError(f"{uri}: {reason}")
    try:
        url = live.url_of(result)
    except live.LiveUrlError as exc:
        raise CliError(str(exc), EXIT_NO) from exc
    print(url)
    return EXIT_OK


def cmd_refresh(aws: Aws, args: argparse.Namespace) -> int:
    """Ask the function to upload again the live uploads under the prefixes that expire within the time."""
    prefixes: list[S3Uri] = args.uris
    for prefix in prefixes:
        aws.watching.require_prefix(prefix)
    try:
        counts = live.refresh(
            aws.lambda_, aws.function_name, [str(p) for p in prefixes], args.expiring_within
        )
    except live.LiveUrlError as exc:
        raise _refusal(exc, args.expiring_within) from exc
    if not emit(args, counts):
        where = ", ".join(str(p) for p in prefixes)
        say(
            args,
            f"{where}: {counts['due']} due within {live.human_duration(args.expiring_within)}, "
            f"{counts['refreshed']} refreshed, {counts['unchanged']} unchanged, {counts['deleted']} deleted, "
            f"{counts['failed']} failed, {counts['left']} left for the next round",
        )
    return EXIT_NO if counts["failed"] or counts["left"] else EXIT_OK


# --- the parser -----------------------------------------------------------------------------------


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register ``status``, ``list``, ``url`` and ``refresh``."""
    status = commands.add_parser(
        "status",
        parents=[common],
        help="show one object's record and state",
        **examples(
            "kie-uploader status s3://my-bucket/photos/cat.png",
            "kie-uploader status s3://my-bucket/photos/cat.png --output json | jq -r .state",
            description="Prints the object's record and its state: live (time left), expired, waiting (put "
            "moments ago, or changed since its upload), in progress, failed, deleted, never seen, not in S3, "
            "or not watched (outside the stack's prefix/suffix). Exit 0 only when its URL is live; 2 for a "
            "bucket the stack does not serve.",
        ),
    )
    status.add_argument("uri", type=s3_uri(True), metavar="s3://bucket/key")
    status.set_defaults(handler=cmd_status)

    list_ = commands.add_parser(
        "list",
        parents=[common],
        help="a table of records",
        **examples(
            "kie-uploader list s3://my-bucket/photos/",
            "kie-uploader list --status failed --limit 20",
            "kie-uploader list --expiring-within 12h",
            "kie-uploader list --output jsonl | jq -r 'select(.state == \"EXPIRED\") | .pk'",
        ),
    )
    list_.add_argument(
        "prefix_uri", nargs="?", type=s3_uri(False), metavar="s3://bucket/prefix", default=None,
        help="only objects under this prefix (same as --prefix)",
    )  # fmt: skip
    list_.add_argument("--status", type=str.upper, choices=STATUSES, help="only records with this status")
    list_.add_argument(
        "--expiring-within",
        type=duration,
        metavar="DURATION",
        default=None,
        help="only UPLOADED records whose file expires within this time (90s, 30m, 12h, 2d; expired ones "
        "too), from the table's expiry index",
    )
    list_.add_argument(
        "--prefix",
        type=s3_uri(False),
        metavar="s3://bucket/prefix",
        help="only objects under this prefix",
    )
    list_.add_argument(
        "--limit", type=positive_int, metavar="N", default=None, help="stop after N records (and the scan)"
    )
    list_.set_defaults(handler=cmd_list)
    list_.description = (
        "Records as the table's Scan returns them, page by page (the table's order, sorted by key within "
        "each page: pipe --output tsv through sort for one order); --expiring-within lists soonest first."
    )

    url = commands.add_parser(
        "url",
        parents=[common],
        help="print a kie.ai URL of the object, uploading it when it must",
        **examples(
            "kie-uploader url s3://my-bucket/photos/cat.png",
            "kie-uploader url s3://my-bucket/photos/cat.png --min-valid 2d",
        ),
    )
    url.add_argument("uri", type=s3_uri(True), metavar="s3://bucket/key")
    url.add_argument(
        "--min-valid",
        type=duration,
        metavar="DURATION",
        default=int(live.DEFAULT_MIN_VALID.total_seconds()),
        help="the URL must stay valid at least this long (90s, 30m, 1h, 2d; default 1h)",
    )
    url.set_defaults(handler=cmd_url)

    refresh = commands.add_parser(
        "refresh",
        parents=[common],
        help="upload again the files under a prefix that expire soon",
        **examples(
            "kie-uploader refresh s3://my-bucket/photos/",
            "kie-uploader refresh s3://my-bucket/a/ s3://my-bucket/b/ --expiring-within 1d",
        ),
    )
    refresh.add_argument("uris", nargs="+", type=s3_uri(False), metavar="s3://bucket/prefix")
    refresh.add_argument(
        "--expiring-within",
        type=duration,
        metavar="DURATION",
        default=12 * 3600,
        help="refresh the files that expire within this time (default 12h)",
    )
    refresh.set_defaults(handler=cmd_refresh)
