"""7. A 256 MiB answer from kie.ai: how much the function's memory grows while the adapter handles it.

The kie.ai emulator (in this process, on loopback) answers one upload with 256 MiB (its "huge" outcome).
A fresh process calls it through ``KieClient.upload`` and reports its RSS before the call, after it, and
its peak (``getrusage`` maxrss); the same answer read whole (``requests``' ``.content``, what the adapter
did before it read at most 1 MiB) is measured the same way for comparison. The emulator counts the bytes it
managed to write before the adapter closed the connection.

Child: ``python -m bench.kie_answer --base-url URL --mode adapter|whole`` prints one JSON line.
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

ANSWER_BYTES = 256 * 1024 * 1024
TARGET_MB = 16.0
_KEY = "bench-kie-answer-key"
_FILE_URL = "http://127.0.0.1:9/bucket/a.txt"  # never fetched: the emulator answers before downloading


def run(ctx: Context, report: Report) -> None:
    from kie_uploader.emulator import KieEmulator

    with KieEmulator(api_key=_KEY) as kie:
        results = {}
        for mode in ("adapter", "whole"):
            kie.reset()
            kie.set_faults(huge_bytes=ANSWER_BYTES, huge_status=200)
            kie.script("400", "huge")  # a warm-up call first, then the huge answer
            progress(f"kie-answer: a {ANSWER_BYTES >> 20} MiB answer, read by the {mode} way")
            results[mode] = _child(kie.base_url, mode)
            deadline = time.monotonic() + 10
            while not kie.streamed_bytes and time.monotonic() < deadline:
                time.sleep(0.05)
            results[mode]["server_wrote_bytes"] = kie.streamed_bytes[0] if kie.streamed_bytes else None
    adapter, whole = results["adapter"], results["whole"]
    report.figures.update({"answer_bytes": ANSWER_BYTES, "adapter": adapter, "read_whole": whole})
    growth = adapter["peak_growth_mb"]
    met = report.target("adapter peak RSS growth", growth, limit=TARGET_MB, at_least=False, unit=" MB")
    report.row(
        f"KieClient.upload, {ANSWER_BYTES >> 20} MiB answer to a 200: peak RSS growth",
        f"{growth:.1f} MB ({adapter['outcome']})",
        f"<= {TARGET_MB:g} MB",
        met,
    )
    wrote = adapter["server_wrote_bytes"]
    report.row("  bytes the emulator managed to send", f"{wrote / 2**20:.1f} MiB" if wrote else "?")
    report.row("same answer read whole (requests .content): peak RSS growth",
               f"{whole['peak_growth_mb']:.1f} MB")


def _child(base_url: str, mode: str) -> dict[str, Any]:
    # Through a shell that forks it: Linux carries ru_maxrss across exec (see bench/worker.py).
    argv = ["/bin/sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-m", "bench.kie_answer"]
    argv += ["--base-url", base_url, "--mode", mode]
    done = subprocess.run(argv, env=child_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"kie-answer child ({mode}) failed: {done.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _measure(base_url: str, mode: str) -> dict[str, Any]:
    """In the child: one warm-up call, then the huge answer; RSS before, after, and the peak."""
    import requests

    from bench.worker import RssWatch, rss_mb
    from uploader.errors import UploaderError
    from uploader.kie import UPLOAD_PATH, KieClient

    client = KieClient(base_url)
    body = {"fileUrl": _FILE_URL, "uploadPath": "bench/kie-answer", "fileName": "a.txt"}

    def call() -> str:
        if mode == "whole":
            answer = requests.post(
                base_url + UPLOAD_PATH, json=body, headers={"Authorization": f"Bearer {_KEY}"}, timeout=60
            )
            return f"HTTP {answer.status_code}, {len(answer.content)} bytes read"
        try:
            client.upload(api_key=_KEY, file_url=_FILE_URL, upload_path=body["uploadPath"],
                          file_name=body["fileName"], timeout=60)
        except UploaderError as exc:
            return f"{type(exc).__name__}: {exc}"
        return "uploaded"

    call()  # warm-up: imports and the connection pool
    with RssWatch() as watch:
        outcome = call()
    return {
        "mode": mode,
        "outcome": outcome[:160],
        "seconds": round(watch.seconds, 2),
        "rss_before_mb": round(watch.before, 1),
        "rss_after_mb": round(rss_mb(), 1),
        "peak_before_mb": round(watch.peak_before, 1),
        "peak_after_mb": round(watch.peak_after, 1),
        "rss_sampled_max_mb": round(watch.sampled_max, 1),
        # How far RSS rose above what the process held before the call (sampled every 5 ms, and maxrss).
        "peak_growth_mb": round(watch.growth_mb, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kie_answer")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--mode", choices=("adapter", "whole"), required=True)
    args = parser.parse_args(argv)
    print(json.dumps(_measure(args.base_url, args.mode)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
