"""``make bench`` (``python -m bench.run [--only NAME[,NAME]] [--quick]``): measure, print a table,
write the results.

Sections, in order (each one's failure is recorded and the run goes on with the next):
``batch`` batch concurrency, ``overhead`` per-object overhead and profile, ``import`` cold start, ``asset``
the function's asset, ``memory`` peak RSS, ``e2e`` the stack deployed into ministack, ``kie-answer`` memory
while the kie.ai adapter handles a 256 MiB answer, ``requests`` AWS requests and kie.ai calls per object,
``cli-list`` the CLI's ``list`` over a large table (time to the first line, peak memory), ``stream`` a 1 GiB
stream upload's memory and throughput, and url vs stream per object (issue 19), ``distributed`` the local
and the distributed backfill's enqueue throughput on the same prefix (issue 18).

A full run writes ``bench/results.json`` (sections run with ``--only`` replace theirs, the others stay) and
the table in ``bench/README.md``. ``--quick`` uses small counts, for a smoke test, and writes to
``.local/bench/results-quick.json`` so that the committed figures stay those of a full run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import (
    asset,
    batch,
    cli_list,
    coldstart,
    distributed,
    e2e,
    kie_answer,
    memory,
    overhead,
    requests,
    stream,
)
from bench.common import REPO, STATE_DIR, Report, ensure_function_on_path, machine, now_iso, progress
from bench.context import Context

Section = Callable[[Context, Report], None]
SECTIONS: dict[str, tuple[str, Section]] = {
    "batch": ("1. Batch concurrency (10 objects, kie.ai latency 1 s)", batch.run),
    "overhead": ("2. Per-object overhead (no kie.ai latency)", overhead.run),
    "import": ("3. Cold start", coldstart.run),
    "asset": ("4. The function's asset", asset.run),
    "memory": ("5. Memory (1,000 objects in one process)", memory.run),
    "e2e": ("6. End to end through the deployed stack", e2e.run),
    "kie-answer": ("7. A 256 MiB answer from kie.ai (memory)", kie_answer.run),
    "requests": ("8. Requests per object under the record's convergence rules", requests.run),
    "cli-list": ("9. kie-uploader list over a large table (first line, memory)", cli_list.run),
    "stream": ("10. The stream transfer (1 GiB: memory, throughput; url vs stream per object)", stream.run),
    "distributed": ("11. Distributed backfill: enqueue throughput, local vs distributed", distributed.run),
}
RESULTS = REPO / "bench" / "results.json"
QUICK_RESULTS = STATE_DIR / "results-quick.json"
README = REPO / "bench" / "README.md"
TABLE_START, TABLE_END = "<!-- results:start -->", "<!-- results:end -->"


def run_section(name: str, ctx: Context) -> dict[str, Any]:
    """Run one section; its result (figures, targets, table rows) or its error, with machine and date."""
    title, section = SECTIONS[name]
    report = Report(name=name, title=title)
    started_at, started = now_iso(), time.perf_counter()
    entry: dict[str, Any] = {"title": title, "date": started_at, "machine": machine(), "quick": ctx.quick}
    progress(f"{title}: start")
    try:
        section(ctx, report)
        entry["status"] = "ok"
    except Exception as exc:  # record it and go on: one broken section must not cost the others
        entry["status"] = "error"
        entry["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        entry["traceback"] = traceback.format_exc().splitlines()[-12:]
        progress(f"{title}: FAILED: {entry['error'][:300]}")
    entry["duration_seconds"] = round(time.perf_counter() - started, 1)
    entry["figures"] = report.figures
    entry["targets"] = report.targets
    entry["table"] = [list(row) for row in report.rows]
    if report.notes:
        entry["notes"] = report.notes
    progress(f"{title}: {entry['status']} in {entry['duration_seconds']} s")
    return entry


def _mark(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "MISSED")


def table_lines(results: dict[str, Any], *, markdown: bool) -> list[str]:
    """The results as a table: one row per figure, with its target and whether it is met."""
    rows: list[tuple[str, str, str, str]] = []
    for name in SECTIONS:
        entry = results.get("sections", {}).get(name)
        if entry is None:
            continue
        rows.append((entry["title"], "", "", ""))
        for label, value, target, met in entry.get("table", []):
            rows.append(("  " + label, value, target, _mark(met)))
        if entry.get("status") != "ok":
            rows.append(("  ERROR", entry.get("error", "")[:160], "", ""))
    if markdown:
        lines = ["| figure | value | target | |", "|---|---|---|---|"]
        for label, value, target, met in rows:
            heading = not value and not target
            cells = [f"**{label.strip()}**" if heading else label.strip(), value, target, met]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        return lines
    width = max((len(r[0]) for r in rows), default=10)
    value_width = min(max((len(r[1]) for r in rows), default=10), 70)
    return [f"{r[0]:<{width}}  {r[1]:<{value_width}}  {r[2]:<12} {r[3]}".rstrip() for r in rows]


def load(path: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    except (OSError, ValueError):
        return {}


def write_readme_table(results: dict[str, Any]) -> None:
    """Replace the table between the markers in bench/README.md (left alone if the markers are gone)."""
    try:
        text = README.read_text()
    except OSError:
        return
    head, start, rest = text.partition(TABLE_START)
    _, end, tail = rest.partition(TABLE_END)
    if not start or not end:
        return
    dates = sorted({entry["date"] for entry in results.get("sections", {}).values()})
    sections: dict[str, Any] = results.get("sections", {})
    first: dict[str, Any] = next(iter(sections.values()), {})
    where = first.get("machine", {})
    intro = (
        f"Measured {dates[0][:10] if dates else '?'}"
        + (f" to {dates[-1][:10]}" if dates and dates[-1][:10] != dates[0][:10] else "")
        + f" on {where.get('platform', '?')}, {where.get('cpu_count', '?')} CPUs "
        + f"({where.get('cpu_model', '?')}), {where.get('memory_mb', '?')} MB, "
        + f"Python {where.get('python', '?')}; load average at the start {where.get('load_average', '?')}. "
        + "Every figure in `results.json` carries its own machine and date."
    )
    table = "\n".join([intro, "", *table_lines(results, markdown=True)])
    README.write_text(f"{head}{TABLE_START}\n{table}\n{TABLE_END}{tail}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help=f"comma-separated sections: {','.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke test")
    parser.add_argument(
        "--e2e-notify",
        choices=("queue", "eventbridge", "lambda"),
        default="queue",
        help="how the e2e stack is notified of objects (default queue: bounded concurrency, batches of 10)",
    )
    parser.add_argument("--output", type=Path, default=None, help="results file (default: see above)")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()] or list(SECTIONS)
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    ensure_function_on_path()
    output: Path = args.output or (QUICK_RESULTS if args.quick else RESULTS)

    ctx = Context(quick=args.quick, e2e_notify=args.e2e_notify)
    ctx.state_dir.mkdir(parents=True, exist_ok=True)
    ctx.function_log.unlink(missing_ok=True)  # the handler's log lines of this run only
    fresh: dict[str, Any] = {}
    try:
        for name in SECTIONS:
            if name in names:
                fresh[name] = run_section(name, ctx)
    finally:
        ctx.close()

    results = load(output) if output.exists() else {}
    results.setdefault("sections", {}).update(fresh)
    results["about"] = "make bench: see bench/README.md; each section has its own machine and date"
    results["updated"] = now_iso()
    results["sections"] = {
        name: results["sections"][name] for name in SECTIONS if name in results["sections"]
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    if output == RESULTS:
        write_readme_table(results)

    print()
    print("\n".join(table_lines({"sections": fresh}, markdown=False)))
    print(f"\nresults: {output}")
    failed = [name for name, entry in fresh.items() if entry["status"] != "ok"]
    if failed:
        print(f"sections with errors: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
