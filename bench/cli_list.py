"""9. ``kie-uploader list`` over a large table: the first line at once, and memory that does not grow with it.

Records shaped as the function writes them go into a table of the local ministack (a small and a large
count). A fresh process runs the CLI's ``list`` command (``kie_uploader.cli.records.cmd_list``, the code the
console script runs) against that table, with stdout a sink that notes when the first line came and counts the
lines, and reports its RSS before, its peak while listing (sampled every 5 ms, and maxrss) and the time taken.
The CLI reads the
stack's discovery record (CloudFormation); here the stack is given directly (the table is the only resource
``list`` reads).

Child: ``python -m bench.cli_list --table T --output jsonl|table`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.common import REPO, Report, child_env, progress
from bench.context import Context

BUCKET = "bench-cli-bucket"
#: The large table's peak RSS growth may not exceed this: pages of at most 1,000 records, not the table.
TARGET_GROWTH_MB = 24.0
#: The first line of the large table comes no later than this multiple of the small table's.
TARGET_FIRST_LINE_RATIO = 3.0


def run(ctx: Context, report: Report) -> None:
    world = ctx.world()
    dynamodb = world.client("dynamodb")
    counts = (ctx.count(full=2_000, quick=1_000), ctx.count(full=20_000, quick=5_000))
    results: dict[str, dict[str, Any]] = {}
    for count in counts:
        table = f"bench-cli-list-{count}"
        progress(f"cli-list: {count:,} records into {table}")
        _seed(dynamodb, table, count)
        for output in ("jsonl", "table"):
            progress(f"cli-list: kie-uploader list --output {output} over {count:,} records")
            result = _child(world.env, table, output)
            if result["lines"] < count:
                raise RuntimeError(f"list printed {result['lines']} lines for {count} records: {result}")
            results[f"{output}_{count}"] = result
    small, large = counts
    report.figures.update({"records": list(counts), "runs": results})
    for output in ("jsonl", "table"):
        a, b = results[f"{output}_{small}"], results[f"{output}_{large}"]
        report.row(
            f"list --output {output}: first line after, {small:,} / {large:,} records",
            f"{a['first_line_seconds'] * 1000:.0f} / {b['first_line_seconds'] * 1000:.0f} ms",
        )
        report.row(
            f"list --output {output}: whole listing, {small:,} / {large:,} records",
            f"{a['seconds']:.2f} / {b['seconds']:.2f} s ({b['lines'] / b['seconds']:,.0f} lines/s)",
        )
        met = report.target(
            f"{output} peak RSS growth, {large} records", b["peak_growth_mb"],
            limit=TARGET_GROWTH_MB, at_least=False, unit=" MB",
        )  # fmt: skip
        report.row(
            f"list --output {output}: peak RSS growth, {small:,} / {large:,} records",
            f"{a['peak_growth_mb']:.1f} / {b['peak_growth_mb']:.1f} MB",
            f"<= {TARGET_GROWTH_MB:g} MB",
            met,
        )
    ratio = results[f"jsonl_{large}"]["first_line_seconds"] / max(
        results[f"jsonl_{small}"]["first_line_seconds"], 1e-3
    )
    met = report.target(
        "first line ratio large/small", ratio, limit=TARGET_FIRST_LINE_RATIO, at_least=False
    )
    report.row(
        f"first line: {large:,} vs {small:,} records (jsonl)",
        f"{ratio:.2f}x",
        f"<= {TARGET_FIRST_LINE_RATIO:g}x",
        met,
    )


def _seed(dynamodb: Any, table: str, count: int) -> None:
    """A table of ``count`` records as the function writes them (UPLOADED, live, with a kie.ai URL)."""
    try:
        dynamodb.create_table(
            TableName=table,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except dynamodb.exceptions.ResourceInUseException:
        return  # seeded by an earlier run of this world
    expires = int(time.time()) + 3 * 86_400
    items = []
    for i in range(count):
        key = f"photos/2025/{i // 100:04d}/IMG_{i:06d} holiday.jpg"
        items.append({
            "pk": {"S": f"s3://{BUCKET}/{key}"}, "bucket": {"S": BUCKET}, "key": {"S": key},
            "status": {"S": "UPLOADED"}, "versionId": {"S": "null"}, "etag": {"S": f"{i:032x}"},
            "size": {"N": str(100_000 + i)}, "expiresAt": {"N": str(expires)}, "rev": {"N": "2"},
            "downloadUrl": {"S": f"https://tempfile.redpandaai.co/kieai/s3-uploads/{i:016x}/IMG_{i:06d}.jpg"},
            "uploadPath": {"S": f"s3-uploads/{BUCKET}/{i:016x}"}, "fileName": {"S": f"IMG_{i:06d}.jpg"},
            "mimeType": {"S": "image/jpeg"}, "uploadedAt": {"S": "2026-12-01T00:00:00.000Z"},
            "updatedAt": {"S": "2026-12-01T00:00:00.123Z"}, "attempts": {"N": "1"},
        })  # fmt: skip
    for start in range(0, count, 25):
        request = {table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}


def _child(env: dict[str, str], table: str, output: str) -> dict[str, Any]:
    # Through a shell that forks it: Linux carries ru_maxrss across exec (see bench/worker.py).
    argv = ["/bin/sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-m", "bench.cli_list"]
    argv += ["--table", table, "--output", output]
    done = subprocess.run(
        argv, env=child_env({**env, "COLUMNS": "100"}), cwd=REPO, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"cli-list child ({output}) failed: {done.stderr.strip()[-800:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


class _Sink:
    """stdout for the listing: counts lines, notes when the first one came, keeps nothing."""

    def __init__(self) -> None:
        self.lines = 0
        self.first_line_at: float | None = None

    def write(self, text: str) -> int:
        if text and self.first_line_at is None:
            self.first_line_at = time.perf_counter()
        self.lines += text.count("\n")
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _measure(table: str, output: str) -> dict[str, Any]:
    """In the child: the CLI's list over the table, with stdout the sink."""
    from bench.worker import RssWatch
    from kie_uploader.cli import aws as cli_aws
    from kie_uploader.cli import entry, records

    aws = cli_aws.Aws()
    # What the uploader's discovery record would say (cached_property: set once, read by every command).
    aws.__dict__["stack"] = cli_aws.StackResources(
        stack_name="Bench", bucket_names=(BUCKET,), queue_url="-", dead_letter_queue_url="-", table_name=table
    )
    args = entry.build_parser().parse_args(["list", "--output", output])
    aws.dynamodb.describe_table(TableName=table)  # warm-up: the client, its endpoint and connection
    sink, stdout = _Sink(), sys.stdout
    sys.stdout = sink
    try:
        with RssWatch() as watch:
            code = records.cmd_list(aws, args)
    finally:
        sys.stdout = stdout
    return {
        "output": output,
        "exit_code": code,
        "lines": sink.lines,
        "seconds": round(watch.seconds, 3),
        "first_line_seconds": round((sink.first_line_at or watch.started) - watch.started, 4),
        "rss_before_mb": round(watch.before, 1),
        "peak_growth_mb": round(watch.growth_mb, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli_list")
    parser.add_argument("--table", required=True)
    parser.add_argument("--output", choices=("jsonl", "table"), required=True)
    args = parser.parse_args(argv)
    print(json.dumps(_measure(args.table, args.output)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
