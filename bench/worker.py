"""A fresh process that runs the handler over prepared events, as one Lambda container would.

``python -m bench.worker --events EVENTS.jsonl --result RESULT.json [--profile-first PROFILE]``

The function's environment comes from this process's environment. Each line of the events file is one
invocation's event. The result file gets the import time, each invocation's wall time and failures, and
the memory: resident set size after the import and along the way, and the peak (``getrusage`` maxrss).
The handler's own log lines go to this process's stdout (the caller sends them to a file).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    """The current resident set size (Linux ``/proc``), in MiB."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """The process's peak resident set size: ``ru_maxrss`` is in KiB on Linux."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssWatch:
    """How far RSS rises while a ``with`` block runs: sampled every 5 ms (maxrss alone would hide a rise that
    stays below an earlier peak, such as the imports') and ``ru_maxrss`` after; and the block's wall time."""

    def __init__(self) -> None:
        self.before = self.peak_before = self.peak_after = self.sampled_max = self.seconds = 0.0
        self.started = 0.0
        self._running = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while self._running.is_set():
            self.sampled_max = max(self.sampled_max, rss_mb())
            time.sleep(0.005)

    def __enter__(self) -> RssWatch:
        self.before, self.peak_before = rss_mb(), peak_rss_mb()
        self.sampled_max = self.before
        self._running.set()
        self._sampler.start()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self._running.clear()
        self._sampler.join()
        self.peak_after = peak_rss_mb()

    @property
    def growth_mb(self) -> float:
        """The highest RSS seen (or a new maxrss) above what the process held before the block."""
        peak = max(self.sampled_max, self.peak_after if self.peak_after > self.peak_before else 0.0)
        return peak - self.before


def run_in_fresh_process(
    events: list[dict[str, Any]],
    *,
    env: dict[str, str],
    scratch: Path,
    name: str,
    profile_first: Path | None = None,
    timeout: float = 900.0,
) -> dict[str, Any]:
    """Run this module in a new interpreter over ``events`` and return its result (caller's side)."""
    from bench.common import REPO, child_env

    scratch.mkdir(parents=True, exist_ok=True)
    events_path, result_path = scratch / f"{name}-events.jsonl", scratch / f"{name}-result.json"
    with events_path.open("w") as out:
        for event in events:
            out.write(json.dumps(event) + "\n")
    result_path.unlink(missing_ok=True)
    # Through a shell that forks it: Linux carries ru_maxrss across exec, so a child exec'd straight from
    # this (large) process would report this process's peak as its own.
    argv = ["/bin/sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-m", "bench.worker"]
    argv += ["--events", str(events_path), "--result", str(result_path)]
    if profile_first is not None:
        argv += ["--profile-first", str(profile_first)]
    with (scratch / f"{name}.log").open("wb") as log:
        # Its own process group, so that a timeout ends the worker and not only the shell.
        process = subprocess.Popen(
            argv, env=child_env(env), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            returncode = process.wait(timeout=timeout)
        except BaseException as exc:  # a timeout, or the run itself interrupted: leave nothing behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise RuntimeError(f"worker {name} did not finish within {timeout:.0f} s") from None
            raise
    if returncode != 0 or not result_path.exists():
        tail = "\n".join((scratch / f"{name}.log").read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"worker {name} exited with {returncode}:\n{tail}")
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--profile-first", type=Path, default=None, help="cProfile the first invocation")
    parser.add_argument("--rss-every", type=int, default=10, help="sample the RSS every N invocations")
    args = parser.parse_args(argv)

    baseline_rss = rss_mb()
    started = time.perf_counter()
    from uploader import handler as handler_module  # the import is what a cold start pays first

    import_seconds = time.perf_counter() - started
    after_import_rss = rss_mb()
    # Which heavy libraries the module import already paid for (the rest is paid at the first invocation).
    imported = {name: name in sys.modules for name in ("boto3", "botocore", "requests", "urllib3")}

    from tests.factories import LambdaContext

    durations: list[float] = []
    failures = 0
    objects = 0
    rss_samples: list[tuple[int, float]] = []
    before_first = set(sys.modules)
    deferred: list[str] = []
    first_rss = first_peak = float("nan")
    with args.events.open() as events:
        for index, line in enumerate(events):
            event: dict[str, Any] = json.loads(line)
            context = LambdaContext(remaining_ms=120_000)
            profiler = cProfile.Profile() if index == 0 and args.profile_first else None
            began = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            answer = handler_module.handler(event, context)
            if profiler is not None:
                profiler.disable()
            durations.append(time.perf_counter() - began)
            if profiler is not None and args.profile_first is not None:
                profiler.dump_stats(str(args.profile_first))
            if index == 0:
                deferred = sorted({name.split(".")[0] for name in set(sys.modules) - before_first})
                first_rss, first_peak = rss_mb(), peak_rss_mb()
            objects += len(event.get("Records", []))
            failures += len((answer or {}).get("batchItemFailures", []))
            if (index + 1) % args.rss_every == 0:
                rss_samples.append((objects, round(rss_mb(), 1)))
    result = {
        "import_seconds": import_seconds,
        "durations": durations,
        "objects": objects,
        "failures": failures,
        "rss_mb": {
            "interpreter": round(baseline_rss, 1),
            "after_import": round(after_import_rss, 1),
            "after_first_invocation": round(first_rss, 1),
            "peak_after_first_invocation": round(first_peak, 1),
            "samples": rss_samples,
            "end": round(rss_mb(), 1),
        },
        "peak_rss_mb": round(peak_rss_mb(), 1),
        # The same peak from the kernel's per-address-space high-water mark: a cross-check of maxrss.
        "vm_hwm_mb": round(_status_mb("VmHWM"), 1),
        "imported_by_module": imported,
        "packages_first_imported_by_first_invocation": deferred,
    }
    args.result.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
