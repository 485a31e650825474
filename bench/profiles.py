"""Reads a cProfile of handler invocations and names where the time goes.

Two kinds of costs are measured by cumulative time (the function and everything it calls):
* the function's own steps, one per adapter call (disjoint: no step calls another);
* library work that runs inside several steps (signing, HTTP, parsing), so these overlap the steps.
A set of functions (several ``add_auth`` methods, say) is counted once: time a member spends in another
member of the set is not added twice.
"""

from __future__ import annotations

import pstats
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FuncKey = tuple[str, int, str]


@dataclass(frozen=True)
class Centre:
    """A cost centre: the functions named ``names`` in files whose path ends with ``path``."""

    label: str
    path: str
    names: tuple[str, ...]
    kind: str  # "step", "library" (inside steps) or "aggregate" (sums steps; never in the top list)


CENTRES = (
    Centre("DynamoDB GetItem (read the record)", "uploader/table.py", ("get",), "step"),
    Centre("DynamoDB UpdateItem (write the record)", "uploader/table.py", ("_write",), "step"),
    Centre("S3 HeadObject", "uploader/s3.py", ("head",), "step"),
    Centre("S3 presigned URL (SigV4, no network)", "uploader/s3.py", ("presign_get",), "step"),
    Centre("kie.ai upload (HTTP POST, requests)", "uploader/kie.py", ("upload",), "step"),
    Centre("secret (Secrets Manager, cached)", "uploader/secret.py", ("get",), "step"),
    Centre("event parsing", "uploader/events.py", ("parse_event",), "step"),
    Centre("log lines and metrics (Powertools)", "uploader/handler.py", ("_report",), "step"),
    Centre(
        "metrics flush (EMF to stdout)",
        "aws_lambda_powertools/metrics/metrics.py",
        ("flush_metrics",),
        "step",
    ),
    Centre("botocore: SigV4 signing", "botocore/auth.py", ("add_auth",), "library"),
    Centre("botocore: HTTP send (urllib3)", "botocore/httpsession.py", ("send",), "library"),
    Centre("botocore: request serialization", "botocore/serialize.py", ("serialize_to_request",), "library"),
    Centre("botocore: response parsing", "botocore/parsers.py", ("parse",), "library"),
    Centre("botocore: parameter validation", "botocore/validate.py", ("validate_parameters",), "library"),
    Centre("botocore: endpoint resolution", "botocore/regions.py", ("construct_endpoint",), "library"),
    Centre(
        "botocore: User-Agent header, rebuilt per request", "botocore/useragent.py", ("to_string",), "library"
    ),
    Centre(
        "proxy settings read from os.environ, per request",
        "urllib/request.py",
        ("getproxies_environment",),
        "library",
    ),
    Centre("all AWS API calls (botocore, any step)", "botocore/client.py", ("_api_call",), "aggregate"),
    Centre(
        "Powertools Logger (JSON formatting)",
        "aws_lambda_powertools/logging/formatter.py",
        ("format",),
        "library",
    ),
)


def _members(stats: dict[FuncKey, Any], centre: Centre) -> set[FuncKey]:
    return {
        func for func in stats if func[2] in centre.names and func[0].replace("\\", "/").endswith(centre.path)
    }


def _set_cumulative(stats: dict[FuncKey, Any], members: set[FuncKey]) -> tuple[float, int]:
    """Cumulative seconds and calls of a set of functions, without counting nested members twice."""
    total, calls = 0.0, 0
    for func in members:
        _cc, nc, _tt, ct, callers = stats[func]
        inner = sum(entry[3] for caller, entry in callers.items() if caller in members)
        inner_calls = sum(entry[0] for caller, entry in callers.items() if caller in members)
        total += ct - inner
        calls += nc - inner_calls
    return total, calls


def _label(func: FuncKey) -> str:
    path, line, name = func
    parts = path.replace("\\", "/").split("/")
    for anchor in ("site-packages", "functions", "lib"):
        if anchor in parts:
            parts = parts[len(parts) - parts[::-1].index(anchor) :]
            break
    return f"{'/'.join(parts[-3:])}:{line}({name})"


def analyse(profile: Path, objects: int, *, unprofiled_ms_per_object: float, top: int = 5) -> dict[str, Any]:
    """Cost centres (share of the profiled time, ms per object), the top ``top``, and the raw top
    functions by cumulative and by own time.

    cProfile slows every Python call down, so its milliseconds are inflated (most for botocore, which
    makes many small calls). The estimate of each cost is its share of the profiled time applied to the
    same work measured without the profiler (``unprofiled_ms_per_object``).
    """
    loaded = pstats.Stats(str(profile))
    stats: dict[FuncKey, Any] = loaded.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in stats.values())  # every own time once: the profiled time
    centres = []
    for centre in CENTRES:
        members = _members(stats, centre)
        if not members:
            continue
        seconds, calls = _set_cumulative(stats, members)
        centres.append(
            {
                "label": centre.label,
                "kind": centre.kind,
                "share": round(seconds / total, 3) if total else 0.0,
                "estimated_ms_per_object": round(seconds / total * unprofiled_ms_per_object, 2)
                if total
                else 0.0,
                "profiled_ms_per_object": round(seconds * 1000 / objects, 3),
                "calls_per_object": round(calls / objects, 2),
            }
        )
    centres.sort(key=lambda c: c["share"], reverse=True)
    # Wrappers (the handler, the processor's loop) hold ~all the time: leave out what holds > 90 %.
    by_cumulative = sorted(stats.items(), key=lambda item: item[1][3], reverse=True)
    raw_cumulative = [
        {"function": _label(func), "share": round(entry[3] / total, 3)}
        for func, entry in by_cumulative
        if entry[3] <= 0.9 * total
    ][:20]
    by_own = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)
    raw_own = [{"function": _label(func), "share": round(entry[2] / total, 3)} for func, entry in by_own[:15]]
    return {
        "objects": objects,
        "profiled_ms_per_object": round(total * 1000 / objects, 3),
        "unprofiled_ms_per_object": round(unprofiled_ms_per_object, 3),
        "top": [centre for centre in centres if centre["kind"] != "aggregate"][:top],
        "aggregates": [centre for centre in centres if centre["kind"] == "aggregate"],
        "centres": centres,
        "top_cumulative_functions": raw_cumulative,
        "top_own_time_functions": raw_own,
    }


def first_invocation_breakdown(profile: Path) -> list[dict[str, Any]]:
    """What the first invocation of a container pays once: configuration, clients, the secret, the
    bucket's region, first connections (cumulative ms, largest first)."""
    stats: dict[FuncKey, Any] = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]
    once = (
        Centre(
            "build the runtime (config, adapters, clients)",
            "uploader/runtime.py",
            ("build_processor",),
            "step",
        ),
        Centre(
            "imports deferred to the first invocation",
            "<frozen importlib._bootstrap>",
            ("_find_and_load",),
            "library",
        ),
        Centre("boto3 client creation", "boto3/session.py", ("client",), "library"),
        Centre(
            "botocore: load service models (JSON)", "botocore/loaders.py", ("load_service_model",), "library"
        ),
        Centre("read the secret (Secrets Manager)", "uploader/secret.py", ("_read",), "step"),
        Centre("the bucket's region (HeadBucket)", "uploader/s3.py", ("_bucket_region",), "step"),
        Centre("new HTTP connections (urllib3)", "urllib3/connection.py", ("connect",), "library"),
        Centre("kie.ai upload", "uploader/kie.py", ("upload",), "step"),
        Centre("requests session", "uploader/kie.py", ("_new_session",), "step"),
    )
    rows = []
    for centre in once:
        members = _members(stats, centre)
        if members:
            seconds, calls = _set_cumulative(stats, members)
            rows.append({"label": centre.label, "ms": round(seconds * 1000, 1), "calls": calls})
    return sorted(rows, key=lambda r: r["ms"], reverse=True)
