"""2. Per-object overhead: objects through the handler in batches of 10 while kie.ai answers at once.

Objects per second is bounded by the servers (other processes); CPU milliseconds per object is what the
function itself burns (``time.process_time`` of this process: all its threads, none of the servers').
Two profiles name the costs, both with ``MAX_CONCURRENCY=1`` so that every object runs on the profiled
thread: one by wall time (where an object waits), one by this thread's CPU time (what Lambda bills).
"""

from __future__ import annotations

import cProfile
import time
from typing import Any

from bench.common import Report, progress, relative, spread, stdout_to
from bench.context import Context
from bench.profiles import analyse
from bench.world import BATCH_SIZE, LocalWorld, import_handler, lambda_context, sqs_batches


def _run_batches(handler: Any, events: list[dict[str, Any]]) -> list[float]:
    durations = []
    for event in events:
        started = time.perf_counter()
        answer = handler.handler(event, lambda_context())
        durations.append(time.perf_counter() - started)
        if answer.get("batchItemFailures"):
            raise RuntimeError(f"a batch reported failures: {answer}")
    return durations


def _check_uploaded(world: LocalWorld, objects: list[Any]) -> None:
    statuses = world.statuses(objects)
    if statuses != {"UPLOADED": len(objects)}:
        raise RuntimeError(f"not every object was uploaded: {statuses}")


def _profile(
    ctx: Context, world: LocalWorld, handler: Any, count: int, kind: str, unprofiled_ms: float
) -> dict[str, Any]:
    objects = world.put_objects(count, f"overhead/profile-{kind}")
    events = sqs_batches(objects)
    # Wall: the default timer. CPU: this thread's CPU time (the only busy thread with one lane).
    profiler = cProfile.Profile(time.thread_time) if kind == "cpu" else cProfile.Profile()
    profiler.enable()
    try:
        _run_batches(handler, events)
    finally:
        profiler.disable()
    path = ctx.state_dir / f"overhead-{kind}.prof"
    profiler.dump_stats(str(path))
    _check_uploaded(world, objects)
    result = analyse(path, len(objects), unprofiled_ms_per_object=unprofiled_ms)
    result["profile_file"] = relative(path)
    return result


def run(ctx: Context, report: Report) -> None:
    world = ctx.world()
    handler = import_handler()
    count = ctx.count(full=500, quick=100)
    profiled = ctx.count(full=100, quick=30)
    with stdout_to(ctx.function_log):
        world.reset_emulator()
        world.set_latency(0.0)
        with world.function_env(MAX_CONCURRENCY="10"):
            _run_batches(handler, sqs_batches(world.put_objects(BATCH_SIZE, "overhead/warm")))
            objects = world.put_objects(count, "overhead/run")
            events = sqs_batches(objects)
            progress(f"overhead: {count} objects in {len(events)} batches of {BATCH_SIZE}, no kie.ai latency")
            cpu_started, wall_started = time.process_time(), time.perf_counter()
            durations = _run_batches(handler, events)
            cpu = time.process_time() - cpu_started
            wall = time.perf_counter() - wall_started
            _check_uploaded(world, objects)

        progress(f"overhead: profiling {profiled} objects by wall time and by CPU time (MAX_CONCURRENCY=1)")
        with world.function_env(MAX_CONCURRENCY="1"):
            _run_batches(handler, sqs_batches(world.put_objects(BATCH_SIZE, "overhead/warm1")))
            # The same work without the profiler: what the profiles' shares are applied to.
            serial = world.put_objects(profiled, "overhead/serial")
            cpu_started, wall_started = time.process_time(), time.perf_counter()
            _run_batches(handler, sqs_batches(serial))
            serial_cpu_ms = (time.process_time() - cpu_started) * 1000 / profiled
            serial_wall_ms = (time.perf_counter() - wall_started) * 1000 / profiled
            _check_uploaded(world, serial)
            wall_profile = _profile(ctx, world, handler, profiled, "wall", serial_wall_ms)
            cpu_profile = _profile(ctx, world, handler, profiled, "cpu", serial_cpu_ms)
        world.reset_emulator()

    rate = count / wall
    cpu_ms = cpu * 1000 / count
    report.figures.update(
        {
            "objects": count,
            "batch_size": BATCH_SIZE,
            "max_concurrency": 10,
            "wall_seconds": round(wall, 3),
            "objects_per_second": round(rate, 1),
            "cpu_seconds": round(cpu, 3),
            "cpu_ms_per_object": round(cpu_ms, 2),
            "batch_wall_seconds": spread(durations),
            "max_concurrency_1": {
                "objects": profiled,
                "wall_ms_per_object": round(serial_wall_ms, 2),
                "cpu_ms_per_object": round(serial_cpu_ms, 2),
            },
            "profile_wall": wall_profile,
            "profile_cpu": cpu_profile,
        }
    )
    report.row(f"{count} objects, batches of {BATCH_SIZE}, no latency", f"{rate:.1f} objects/s")
    report.row("CPU per object (process_time)", f"{cpu_ms:.1f} ms")
    for kind, result in (("CPU", cpu_profile), ("wall", wall_profile)):
        report.row(
            f"five largest costs by {kind} (MAX_CONCURRENCY=1, "
            f"{result['unprofiled_ms_per_object']:.1f} ms/object unprofiled)",
            "",
        )
        for centre in [*result["top"], *result["aggregates"]]:
            report.row(
                f"  {centre['label']}",
                f"{centre['share'] * 100:.0f} % (~{centre['estimated_ms_per_object']:.1f} ms)",
            )
