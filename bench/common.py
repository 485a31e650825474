"""What every benchmark section shares: the machine's description, statistics, a section's report,
and the environment that puts the function's package on the path of a fresh interpreter."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kie_uploader.local import repo_root

REPO = repo_root()
FUNCTIONS_DIR = REPO / "functions"
#: The benchmark's own scratch space (servers' state, logs, profiles); under .local, which git ignores.
STATE_DIR = REPO / ".local" / "bench"


def ensure_function_on_path() -> None:
    """Make ``import uploader`` work in this process, as pytest's ``pythonpath`` does for the tests."""
    for path in (FUNCTIONS_DIR, REPO):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a fresh interpreter that imports ``uploader`` (and ``kie_uploader``, ``bench``)."""
    path = os.pathsep.join(str(p) for p in (FUNCTIONS_DIR, REPO / "src", REPO))
    env = {**os.environ, "PYTHONPATH": path, **(extra or {})}
    # Bytecode is cached for every module alike (site-packages got theirs from pip): without this, the
    # function's own modules would be compiled from source at every import and the floor's would not.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def relative(path: Path) -> str:
    """``path`` as the repository names it (for results.json), or absolute when outside it."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _meminfo_mb() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """Where a figure was measured. The load average matters: the machine may be shared."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_mb": _meminfo_mb(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }
    with contextlib.suppress(OSError, AttributeError):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, AttributeError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in [0, 1]); no interpolation, so it is a value that was seen."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, -(-int(round(share * 1000)) * len(ordered) // 1000))
    return float(ordered[min(rank, len(ordered)) - 1])


def spread(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """min / median / p95 / max of some samples, rounded."""
    return {
        "min": round(min(values), digits),
        "p50": round(median(values), digits),
        "p95": round(percentile(values, 0.95), digits),
        "max": round(max(values), digits),
        "n": len(values),
    }


@dataclass
class Report:
    """One section's figures, its targets (met or not) and notes; what results.json keeps per section."""

    name: str
    title: str
    figures: dict[str, Any] = field(default_factory=dict)
    rows: list[tuple[str, str, str, bool | None]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, label: str, value: str, target: str = "", met: bool | None = None) -> None:
        """A line of the printed table (the figure itself goes into ``figures``)."""
        self.rows.append((label, value, target, met))

    def target(self, name: str, value: float, *, limit: float, at_least: bool, unit: str = "") -> bool:
        """Record a target and whether ``value`` meets it."""
        met = value >= limit if at_least else value <= limit
        self.targets.append(
            {
                "name": name,
                "value": round(value, 3),
                "target": f"{'>=' if at_least else '<='} {limit:g}{unit}",
                "met": met,
            }
        )
        return met


@contextlib.contextmanager
def scoped_env(changes: dict[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) environment variables, and put every one back afterwards.

    Needed because servers started later inherit this process's environment: ministack hands its own
    environment to the Lambda functions it runs, and a leftover ``AWS_ENDPOINT_URL`` would point a deployed
    function at another ministack.
    """
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def stdout_to(path: Path) -> Iterator[None]:
    """Send file descriptor 1 to ``path`` while the handler runs in-process.

    The function logs one JSON line per object and prints its metrics to stdout, as Lambda wants; the
    benchmark keeps that cost (the lines are still formatted and written) but not the noise on the terminal.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    saved = os.dup(1)
    with open(path, "ab") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def progress(message: str) -> None:
    """A progress line on stderr (stdout may be redirected while the handler runs)."""
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
