"""1. Batch concurrency: one SQS batch of 10 objects while kie.ai takes 1 s per upload, handled with the
default ``MAX_CONCURRENCY`` (10) and with 1. The ratio shows how much of kie.ai's latency the lanes hide."""

from __future__ import annotations

import time
from typing import Any

from bench.common import Report, median, progress, stdout_to
from bench.context import Context
from bench.world import BATCH_SIZE, LocalWorld, import_handler, lambda_context, sqs_batches

LATENCY_SECONDS = 1.0
CONCURRENCIES = (10, 1)
TARGET_RATIO = 6.0


def _one_batch(world: LocalWorld, handler: Any, prefix: str) -> float:
    """Wall time of one batch of fresh objects; raises if any object did not end ``UPLOADED``."""
    objects = world.put_objects(BATCH_SIZE, prefix)
    event = sqs_batches(objects)[0]
    started = time.perf_counter()
    answer = handler.handler(event, lambda_context())
    wall = time.perf_counter() - started
    statuses = world.statuses(objects)
    if answer.get("batchItemFailures") or statuses != {"UPLOADED": len(objects)}:
        raise RuntimeError(f"batch did not upload every object: {answer}, records {statuses}")
    return wall


def run(ctx: Context, report: Report) -> None:
    world = ctx.world()
    handler = import_handler()
    repetitions = ctx.count(full=3, quick=1)
    walls: dict[int, list[float]] = {}
    with stdout_to(ctx.function_log):
        world.reset_emulator()
        for concurrency in CONCURRENCIES:
            with world.function_env(MAX_CONCURRENCY=str(concurrency)):
                world.set_latency(0.0)
                # A warm container: clients built, the secret cached, connections open (not measured).
                _one_batch(world, handler, f"batch/warm-c{concurrency}")
                world.set_latency(LATENCY_SECONDS)
                progress(
                    f"batch: 10 objects, kie.ai latency {LATENCY_SECONDS:g} s, MAX_CONCURRENCY={concurrency}"
                )
                walls[concurrency] = [
                    _one_batch(world, handler, f"batch/c{concurrency}") for _ in range(repetitions)
                ]
        world.set_latency(0.0)

    concurrent, serial = median(walls[10]), median(walls[1])
    ratio = serial / concurrent
    report.figures.update(
        {
            "batch_size": BATCH_SIZE,
            "kie_latency_seconds": LATENCY_SECONDS,
            "repetitions": repetitions,
            "wall_seconds_max_concurrency_10": round(concurrent, 3),
            "wall_seconds_max_concurrency_1": round(serial, 3),
            "samples_seconds": {str(c): [round(w, 3) for w in ws] for c, ws in walls.items()},
            "ratio": round(ratio, 2),
            # The best possible: every upload overlaps; what is left is the function's serial work.
            "ideal_ratio": BATCH_SIZE,
            "overhead_seconds_beyond_one_latency": round(concurrent - LATENCY_SECONDS, 3),
        }
    )
    met = report.target("batch concurrency ratio", ratio, limit=TARGET_RATIO, at_least=True)
    report.row("10 objects, MAX_CONCURRENCY=10 (wall)", f"{concurrent:.2f} s")
    report.row("same batch, MAX_CONCURRENCY=1 (wall)", f"{serial:.2f} s")
    report.row("ratio", f"{ratio:.2f} x", f">= {TARGET_RATIO:g}", met)
