"""``make demo``'s core, run as the test suite's own check: the same ``run_demo`` the command calls.

It starts its own ministack and emulator processes, deploys the real stack, and must stop them again.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.cells import cell_len

from kie_uploader.demo import DEMO_MAX_OBJECT_BYTES, DemoOptions, keep_instructions, run_demo


@pytest.mark.slow
def test_the_demo_uploads_every_sample_and_stops_what_it_started(tmp_path: Path) -> None:
    lines: list[str] = []

    result = run_demo(DemoOptions(state_dir=tmp_path / "demo", timeout=240), log=lines.append)

    table = result.table(wide=True)  # whole keys (a terminal-sized table cuts long ones in the middle)
    assert result.ok, f"{table}\n" + "\n".join(lines[-15:])
    statuses = {o.sample.key: o.status for o in result.objects}
    assert statuses.pop("incoming/large/too-large.bin") == "FAILED"
    # Outside the watched prefix: skipped by backfill, refused by the function (a plain message and a
    # resolve request), and nothing written
    outside = next(o for o in result.objects if o.sample.key == "archive/outside-the-prefix.txt")
    assert statuses.pop(outside.sample.key) == "NOT_WATCHED"
    assert outside.record is None and outside.answer is not None and outside.answer["status"] == "NOT_WATCHED"
    assert set(statuses.values()) == {"UPLOADED"}
    # From before the stack: no event ever came for it, only the backfill's message could upload it
    assert statuses["incoming/existing/existing-object.txt"] == "UPLOADED"
    assert result.backfill == [
        f"$ kie-uploader backfill s3://{result.bucket}/   (the objects from before the stack)",
        f"s3://{result.bucket}/: 2 objects listed, 1 skipped as not watched (outside prefix incoming/), 0 "
        "already uploaded, 1 enqueued, 0 failed",
    ]
    too_large = next(o for o in result.objects if o.status == "FAILED")
    assert too_large.record is not None and too_large.record.get("retryable") is False
    assert len(too_large.sample.body) == DEMO_MAX_OBJECT_BYTES + 1
    assert all(o.bytes_match for o in result.objects if o.status == "UPLOADED")
    for obj in result.objects:
        assert obj.sample.key in table
    fitted = result.table(80).splitlines()
    # A row per object; an error too long for its cell wraps on the lines below its row (never cut).
    rows = [line for line in fitted[2:] if not line.startswith(" ")]
    assert len(rows) == len(result.objects) and max(cell_len(line) for line in fitted) <= 80
    assert any(line.startswith("  waiting for records:") for line in lines)
    assert {"bootstrap", "deploy", "exercise", "total"} <= set(result.timings)

    # Everything the demo started is stopped
    assert [s.name for s in result.servers] == ["ministack", "kie-emulator"]
    assert all(s.process.poll() is not None for s in result.servers)

    # What --keep would print points at this run's endpoint
    instructions = keep_instructions(result)
    assert f"AWS_ENDPOINT_URL={result.endpoint_url}" in instructions
    assert ".venv/bin/kie-uploader list" in instructions
    assert f"status 's3://{result.bucket}/archive/outside-the-prefix.txt'   # not watched" in instructions
