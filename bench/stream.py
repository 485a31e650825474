"""10. The stream transfer (issue 19): a 1 GiB stream upload's memory and throughput, and url vs stream.

*1 GiB.* One object of 1 GiB is put into ministack's bucket. A fresh process runs the handler on its SQS
event with ``TRANSFER=stream`` (after a warm-up invocation on a small object: imports, clients, the secret,
connections), sampling its RSS every 5 ms: the peak growth over the RSS it had before the invocation
(target <= 64 MB: the body holds one 1 MiB chunk of the object at a time), the invocation's wall time and
throughput (S3 GetObject → the multipart body → the emulator, which parses, stores and answers; both are
processes of their own), and the process's CPU time per GiB, from which the throughput a function of
256 MB (Lambda gives it 256/1769 of a vCPU) could sustain on CPU alone is derived (plain HTTP here: TLS to
S3 and kie.ai adds CPU on AWS).

*url vs stream.* Objects of 1 MB and 100 MB, each handled in this process (a warm container) with
``TRANSFER=url`` and with ``TRANSFER=stream``: wall time per object, median of 3. The objects are put more
than a second before they are handled, so that the URL upload's write-second wait (docs/architecture.md,
rule 8) does not apply; the unversioned bucket, so the URL upload pays its second HeadObject.

Child: ``python -m bench.stream --child --warm EVENT --big EVENT`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import REPO, Report, child_env, median, progress, stdout_to
from bench.context import Context
from bench.world import BUCKET, LocalWorld, PutObject, import_handler, lambda_context, sqs_batches

GIB = 1024 * 1024 * 1024
MB = 1_000_000
TARGET_GROWTH_MB = 64.0
#: Lambda gives a function 1 vCPU at 1,769 MB, in proportion below it.
LAMBDA_MB_PER_VCPU = 1769
DEFAULT_MEMORY_MB = 256
SIZES = (1 * MB, 100 * MB)
TRANSFERS = ("url", "stream")
_BLOCK = 1024 * 1024
#: S3 sequencers of this section's objects (each key gets its own: any increasing number will do).
_SEQUENCERS = itertools.count(0x7000_0000)


def run(ctx: Context, report: Report) -> None:
    world = ctx.world()
    world.reset_emulator()
    world.set_latency(0.0)
    big_size = GIB if not ctx.quick else 128 * 1024 * 1024
    _one_gib(ctx, world, report, big_size)
    world.reset_emulator()
    _url_vs_stream(ctx, world, report, repetitions=ctx.count(full=3, quick=1))
    world.reset_emulator()


def _one_gib(ctx: Context, world: LocalWorld, report: Report, size: int) -> None:
    progress(f"stream: putting a {size >> 20} MiB object into ministack")
    warm = _put(world, "stream/warm.bin", 1024)
    big = _put(world, "stream/big.bin", size)
    scratch = ctx.state_dir / "stream"
    scratch.mkdir(parents=True, exist_ok=True)
    events = {}
    for name, obj in (("warm", warm), ("big", big)):
        events[name] = scratch / f"{name}.json"
        events[name].write_text(json.dumps(sqs_batches([obj])[0]))
    env = {
        **world.env,
        "TRANSFER": "stream",
        "MAX_CONCURRENCY": "10",
        "KIE_TIMEOUT_SECONDS": "40",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    progress(f"stream: {size >> 20} MiB through the handler in a fresh process (TRANSFER=stream)")
    result = _child(env, events["warm"], events["big"], scratch / "child.log")
    world.client("s3").delete_object(Bucket=BUCKET, Key=big.key)
    if result["status"] != "UPLOADED":
        raise RuntimeError(f"the {size >> 20} MiB object was not uploaded: {result}")
    growth, seconds, cpu = result["peak_growth_mb"], result["seconds"], result["cpu_seconds"]
    rate = size / seconds / 2**20
    cpu_per_gib = cpu / (size / GIB)
    lambda_rate = (DEFAULT_MEMORY_MB / LAMBDA_MB_PER_VCPU) * 1024 / cpu_per_gib
    report.figures.update(
        {
            "object_bytes": size,
            "child": result,
            "throughput_mib_per_s": round(rate, 1),
            "cpu_seconds_per_gib": round(cpu_per_gib, 2),
            "cpu_bound_mib_per_s_at_256_mb": round(lambda_rate, 1),
        }
    )
    met = report.target("1 GiB stream: peak RSS growth", growth, limit=TARGET_GROWTH_MB, at_least=False)
    label = f"{size >> 20} MiB stream upload: peak RSS growth (sampled every 5 ms, maxrss)"
    report.row(label, f"{growth:.1f} MB", f"<= {TARGET_GROWTH_MB:g} MB", met)
    report.row("  RSS before the invocation / peak", f"{result['rss_before_mb']:.1f} / "
               f"{result['rss_before_mb'] + growth:.1f} MB")
    report.row("  wall time, throughput (S3 → function → emulator)", f"{seconds:.2f} s, {rate:.0f} MiB/s")
    report.row("  CPU per GiB (the function's process)", f"{cpu_per_gib:.2f} s")
    report.row(
        f"  CPU-bound throughput of a {DEFAULT_MEMORY_MB} MB function ({DEFAULT_MEMORY_MB}/1769 vCPU)",
        f"{lambda_rate:.0f} MiB/s",
    )


def _url_vs_stream(ctx: Context, world: LocalWorld, report: Report, *, repetitions: int) -> None:
    handler = import_handler()
    times: dict[tuple[str, int], list[float]] = {}
    with stdout_to(ctx.function_log):
        for transfer in TRANSFERS:
            with world.function_env(TRANSFER=transfer, KIE_TIMEOUT_SECONDS="40"):
                _handle(world, handler, [_put(world, f"stream/warm-{transfer}.bin", 1024)])  # warm container
                for size in SIZES:
                    progress(f"stream: {size // MB} MB objects, TRANSFER={transfer}, {repetitions} times")
                    keys = [f"stream/{transfer}-{size}-{i}.bin" for i in range(repetitions)]
                    objects = [_put(world, key, size) for key in keys]
                    time.sleep(1.1)  # past the objects' write second: no write-second wait for the URL upload
                    times[(transfer, size)] = [_handle(world, handler, [obj]) for obj in objects]
                    for obj in objects:
                        world.client("s3").delete_object(Bucket=BUCKET, Key=obj.key)
                    world.reset_emulator()
    figures = {f"{transfer}_{size // MB}mb_seconds": [round(t, 3) for t in times[(transfer, size)]]
               for transfer, size in times}
    report.figures["per_object"] = figures
    for size in SIZES:
        url, stream = median(times[("url", size)]), median(times[("stream", size)])
        report.row(f"{size // MB} MB object: url / stream (median of {repetitions})",
                   f"{url:.3f} s / {stream:.3f} s")
    report.notes.append(
        "url: kie.ai (the emulator) downloads the presigned URL from ministack, then the function reads S3 "
        "again (unversioned bucket); stream: the function reads S3 and sends the bytes, the GetObject's own "
        "reading confirms them. On AWS the stream's bytes also cross the function's network (and TLS)."
    )


def _put(world: LocalWorld, key: str, size: int) -> PutObject:
    """Put an object of ``size`` bytes (1 MiB blocks that all differ)."""
    block = os.urandom(_BLOCK)
    body = bytearray(size)
    for offset in range(0, size, _BLOCK):
        piece = (offset // _BLOCK).to_bytes(8, "big") + block[8:]
        body[offset : offset + _BLOCK] = piece[: size - offset]
    answer = world.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    return PutObject(
        key=key,
        etag=answer["ETag"].strip('"'),
        size=size,
        version_id=answer.get("VersionId"),
        sequencer=f"00{next(_SEQUENCERS):016X}",
    )


def _handle(world: LocalWorld, handler: Any, objects: list[PutObject]) -> float:
    """Wall time of one invocation on ``objects``; raises unless every one ends UPLOADED."""
    started = time.perf_counter()
    answer = handler.handler(sqs_batches(objects)[0], lambda_context(remaining_ms=900_000))
    wall = time.perf_counter() - started
    statuses = world.statuses(objects)
    if answer.get("batchItemFailures") or statuses != {"UPLOADED": len(objects)}:
        raise RuntimeError(f"not every object was uploaded: {answer}, records {statuses}")
    return wall


def _child(env: dict[str, str], warm: Path, big: Path, log: Path) -> dict[str, Any]:
    # Through a shell that forks it: Linux carries ru_maxrss across exec (see bench/worker.py).
    argv = ["/bin/sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-m", "bench.stream", "--child"]
    argv += ["--warm", str(warm), "--big", str(big)]
    with log.open("wb") as sink:
        done = subprocess.run(argv, env=child_env(env), cwd=REPO, stdout=subprocess.PIPE, stderr=sink,
                              timeout=900, check=False)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"stream child failed ({done.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def _measure(warm: Path, big: Path) -> dict[str, Any]:
    """In the child: the warm-up invocation, then the big object's, under the RSS watch."""
    import contextlib
    import io

    from bench.worker import RssWatch
    from tests.factories import LambdaContext
    from uploader import handler as handler_module

    def invoke(path: Path) -> dict[str, Any]:
        event = json.loads(path.read_text())
        with contextlib.redirect_stdout(io.StringIO()):  # the function's log lines: not our answer
            answer: dict[str, Any] = handler_module.handler(event, LambdaContext(remaining_ms=900_000))
        return answer

    invoke(warm)
    cpu = time.process_time()
    with RssWatch() as watch:
        answer = invoke(big)
    cpu = time.process_time() - cpu
    outcome = "UPLOADED" if answer == {"batchItemFailures": []} else f"failed: {answer}"
    return {
        "status": outcome,
        "seconds": round(watch.seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "rss_before_mb": round(watch.before, 1),
        "rss_sampled_max_mb": round(watch.sampled_max, 1),
        "peak_before_mb": round(watch.peak_before, 1),
        "peak_after_mb": round(watch.peak_after, 1),
        "peak_growth_mb": round(watch.growth_mb, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream")
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("--warm", type=Path, required=True)
    parser.add_argument("--big", type=Path, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(_measure(args.warm, args.big)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
