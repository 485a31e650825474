"""5. Memory: the peak resident set size of one fresh process that imports the handler and handles
1,000 objects in batches of 10 (``getrusage`` maxrss), with its RSS along the way to show any growth."""

from __future__ import annotations

from bench.common import Report, progress
from bench.context import Context
from bench.worker import run_in_fresh_process
from bench.world import BATCH_SIZE, sqs_batches

TARGET_MB = 128.0


def run(ctx: Context, report: Report) -> None:
    world = ctx.world()
    count = ctx.count(full=1000, quick=200)
    world.reset_emulator()
    world.set_latency(0.0)
    objects = world.put_objects(count, "memory")
    progress(f"memory: {count} objects in batches of {BATCH_SIZE} in one fresh process")
    result = run_in_fresh_process(
        sqs_batches(objects),
        env={**world.env, "MAX_CONCURRENCY": "10"},
        scratch=ctx.state_dir,
        name="memory",
    )
    statuses = world.statuses(objects)
    world.reset_emulator()
    if result["failures"] or statuses != {"UPLOADED": count}:
        raise RuntimeError(f"not every object was uploaded: {result['failures']} failures, {statuses}")
    peak = float(result["peak_rss_mb"])
    rss = result["rss_mb"]
    samples = rss["samples"]
    first_sample = samples[0][1] if samples else rss["after_import"]
    report.figures.update(
        {
            "objects": count,
            "batch_size": BATCH_SIZE,
            "max_concurrency": 10,
            "peak_rss_mb": peak,
            "peak_rss_vm_hwm_mb": result["vm_hwm_mb"],
            "rss_after_interpreter_mb": rss["interpreter"],
            "rss_after_import_mb": rss["after_import"],
            "rss_after_first_invocation_mb": rss["after_first_invocation"],
            # The peak is reached here when it equals the final peak: a transient of the cold start.
            "peak_rss_after_first_invocation_mb": rss["peak_after_first_invocation"],
            "rss_end_mb": rss["end"],
            "rss_samples_mb": samples,
            # Growth after the first 100 objects: a leak would show here, warm-up would not.
            "rss_growth_after_first_100_mb": round(rss["end"] - first_sample, 1),
        }
    )
    met = report.target("peak RSS", peak, limit=TARGET_MB, at_least=False, unit=" MB")
    report.row(f"peak RSS, {count} objects (maxrss)", f"{peak:.1f} MB", f"< {TARGET_MB:g} MB", met)
    report.row(
        "RSS after import / peak after 1st invocation / RSS at the end",
        f"{rss['after_import']:.1f} / {rss['peak_after_first_invocation']:.1f} / {rss['end']:.1f} MB",
    )
