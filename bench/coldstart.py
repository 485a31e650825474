"""3. Cold start: what a new Lambda container pays before its first object.

* The handler module's import time beside the floor any such function pays, ``import boto3, requests``;
  each in fresh interpreters, interleaved, median of several. ``-X importtime`` attributes the handler's
  import to packages.
* The first invocation's extra time over a warm one (configuration, boto3 clients, the secret, the
  bucket's region, new connections), in fresh worker processes; a cProfile of one first invocation
  breaks it down.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

from bench.common import REPO, Report, child_env, median, progress, spread
from bench.context import Context
from bench.profiles import first_invocation_breakdown
from bench.worker import run_in_fresh_process
from bench.world import import_handler, sqs_batches

FLOOR = "boto3, requests"
HANDLER = "uploader.handler"
#: The module defers boto3 and requests to the first invocation (``uploader.runtime``): the cold start
#: pays them anyway, so the target is judged on the module plus what it defers.
HANDLER_COMPLETE = "uploader.handler, uploader.runtime, boto3, requests"
TARGET_RATIO = 1.3
_SNIPPET = (
    "import time\nstarted = time.perf_counter()\nimport {modules}\nprint(time.perf_counter() - started)"
)


def import_seconds(modules: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(the import statement's seconds, the whole process's wall seconds) in a fresh interpreter."""
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", _SNIPPET.format(modules=modules)],
        env=env or child_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"import {modules} failed: {completed.stderr.strip()[-500:]}")
    return float(completed.stdout.strip().splitlines()[-1]), elapsed


def import_costs(modules: str) -> dict[str, int]:
    """``-X importtime`` of ``import {modules}`` in a fresh interpreter: each module's own microseconds."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {modules}"],
        env=child_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    own_us: dict[str, int] = {}
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, self_us, _cumulative, name = (
            part.strip() for part in line.replace("import time:", "|").split("|")
        )
        own_us[name] = int(self_us)
    return own_us


def by_package(own_us: dict[str, int]) -> dict[str, int]:
    """Own import time summed per top-level package."""
    totals: dict[str, int] = defaultdict(int)
    for name, us in own_us.items():
        totals[name.split(".")[0]] += us
    return dict(totals)


def _ranked_ms(costs: dict[str, int], top: int = 8) -> list[dict[str, Any]]:
    ranked = sorted(costs.items(), key=lambda item: item[1], reverse=True)[:top]
    return [{"name": name, "ms": round(us / 1000, 1)} for name, us in ranked if us > 0]


def import_breakdown() -> dict[str, Any]:
    """Where the handler's complete import goes beyond the floor: packages it adds, its own modules."""
    complete = import_costs(HANDLER_COMPLETE.replace(" ", ""))
    floor = import_costs(FLOOR.replace(" ", ""))
    complete_packages, floor_packages = by_package(complete), by_package(floor)
    beyond = {name: us - floor_packages.get(name, 0) for name, us in complete_packages.items()}
    function_modules = {name: us for name, us in complete.items() if name.split(".")[0] == "uploader"}
    return {
        "complete_by_package_ms": _ranked_ms(complete_packages),
        "floor_by_package_ms": _ranked_ms(floor_packages),
        # One -X importtime run each: indicative (a package's own time varies by a few ms between runs).
        "beyond_floor_by_package_ms": _ranked_ms(beyond),
        "function_modules_ms": _ranked_ms(function_modules),
    }


def _imports(ctx: Context, report: Report) -> None:
    runs = ctx.count(full=11, quick=7)
    progress(
        f"import: {runs} fresh interpreters each for `import {FLOOR}`, `{HANDLER}` and `{HANDLER_COMPLETE}`"
    )
    import_seconds(FLOOR), import_seconds(HANDLER)  # warm the file cache and the .pyc files
    import_seconds(HANDLER_COMPLETE)
    samples: dict[str, list[float]] = {FLOOR: [], HANDLER: [], HANDLER_COMPLETE: []}
    processes: dict[str, list[float]] = {name: [] for name in samples}
    for _ in range(runs):  # interleaved, so that a change in the machine's load hits all alike
        for modules in samples:
            seconds, process = import_seconds(modules)
            samples[modules].append(seconds)
            processes[modules].append(process)
    floor = median(samples[FLOOR])
    module_ratio = median(samples[HANDLER]) / floor
    complete_ratio = median(samples[HANDLER_COMPLETE]) / floor
    report.figures.update(
        {
            "runs": runs,
            "bytecode": "cached (.pyc) for every module, the floor's and the function's alike",
            "floor_import_seconds": spread(samples[FLOOR]),
            "handler_module_import_seconds": spread(samples[HANDLER]),
            "handler_complete_import_seconds": spread(samples[HANDLER_COMPLETE]),
            "handler_complete_modules": HANDLER_COMPLETE,
            "process_wall_seconds": {modules: spread(values) for modules, values in processes.items()},
            "module_import_ratio": round(module_ratio, 3),
            "complete_import_ratio": round(complete_ratio, 3),
            "import_time_breakdown": import_breakdown(),
        }
    )
    report.target("handler module import / floor", module_ratio, limit=TARGET_RATIO, at_least=False)
    met = report.target(
        "handler import incl. deferred boto3+requests / floor",
        complete_ratio,
        limit=TARGET_RATIO,
        at_least=False,
    )
    report.row(f"import {FLOOR} (floor, median of {runs})", f"{floor * 1000:.0f} ms")
    report.row(
        f"import {HANDLER} (module only; defers boto3, requests)", f"{median(samples[HANDLER]) * 1000:.0f} ms"
    )
    report.row(
        "  ... plus what it defers to the first invocation",
        f"{median(samples[HANDLER_COMPLETE]) * 1000:.0f} ms",
    )
    report.row("import ratio (complete / floor)", f"{complete_ratio:.2f} x", f"<= {TARGET_RATIO:g}", met)


def _first_invocation(ctx: Context, report: Report) -> None:
    world = ctx.world()
    import_handler()  # only to fail early, in this process, if the function cannot be imported
    world.reset_emulator()
    world.set_latency(0.0)
    workers, warm = ctx.count(full=3, quick=1), ctx.count(full=6, quick=4)
    progress(f"first invocation: {workers} fresh worker(s), 1 cold + {warm} warm single-object invocations")
    extras: list[float] = []
    firsts: list[float] = []
    warms: list[float] = []
    for index in range(workers):
        events = sqs_batches(world.put_objects(1 + warm, f"cold/{index}"), size=1)
        result = run_in_fresh_process(events, env=world.env, scratch=ctx.state_dir, name=f"cold-{index}")
        if result["failures"]:
            raise RuntimeError(f"first-invocation worker reported {result['failures']} failed messages")
        first, rest = result["durations"][0], median(result["durations"][1:])
        firsts.append(first)
        warms.append(rest)
        extras.append(first - rest)
    profile = ctx.state_dir / "first-invocation.prof"
    events = sqs_batches(world.put_objects(2, "cold/profile"), size=1)
    profiled = run_in_fresh_process(
        events, env=world.env, scratch=ctx.state_dir, name="cold-profile", profile_first=profile
    )
    extra = median(extras)
    report.figures.update(
        {
            "first_invocation_seconds": spread(firsts),
            "warm_invocation_seconds": spread(warms),
            "first_invocation_extra_seconds": round(extra, 3),
            "first_invocation_extra_samples": [round(e, 3) for e in extras],
            "imported_by_module": profiled.get("imported_by_module"),
            "packages_first_imported_by_first_invocation": profiled.get(
                "packages_first_imported_by_first_invocation"
            ),
            "first_invocation_breakdown_ms": first_invocation_breakdown(profile),
        }
    )
    report.row("first invocation (1 object)", f"{median(firsts) * 1000:.0f} ms")
    report.row("warm invocation (1 object)", f"{median(warms) * 1000:.0f} ms")
    report.row("first invocation's extra time", f"{extra * 1000:.0f} ms")


def run(ctx: Context, report: Report) -> None:
    errors = []
    for part in (_imports, _first_invocation):
        try:
            part(ctx, report)
        except Exception as exc:  # one half failing must not hide the other's figures
            errors.append(f"{part.__name__.strip('_')}: {type(exc).__name__}: {exc}")
    if errors:
        raise RuntimeError("; ".join(errors))
