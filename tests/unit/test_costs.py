"""The README's cost tables are derived from the committed benchmark results (bench/costs.py)."""

from __future__ import annotations

import copy

from bench import costs


def test_the_readme_carries_the_tables_derived_from_the_committed_results() -> None:
    readme = costs.README.read_text(encoding="utf-8")
    block = readme[readme.index(costs.BEGIN) : readme.index(costs.END) + len(costs.END)]
    assert block == costs.render(), "README.md's cost tables are stale: run `python -m bench.costs --write`"


def test_a_versioned_bucket_saves_the_measured_head_object_and_nothing_else() -> None:
    m = costs.Measured.from_results(costs.load())
    size = costs.SIZES["1 MB"]
    unversioned = costs.upload_lines(m, m.new_unversioned, size, seconds=m.batch_seconds_per_object)
    versioned = costs.upload_lines(m, m.new_versioned, size, seconds=m.batch_seconds_per_object)
    heads = m.new_unversioned["s3:HeadObject"] - m.new_versioned["s3:HeadObject"]
    differing = {line for line in unversioned if unversioned[line] != versioned[line]}
    assert differing == {"S3 requests (HEAD, kie.ai's GET)"}
    saved = unversioned["S3 requests (HEAD, kie.ai's GET)"] - versioned["S3 requests (HEAD, kie.ai's GET)"]
    assert abs(saved - heads * costs.MILLION * costs.PRICES["s3_get"].usd) < 1e-9
    assert heads == 1  # issue 21's bound: one extra S3 request on an unversioned bucket, none when versioned


def test_figures_follow_the_measurements_they_are_derived_from() -> None:
    sections = copy.deepcopy(costs.load())
    batch = sections["batch"]["figures"]
    before = costs.Measured.from_results(sections)
    batch["wall_seconds_max_concurrency_10"] *= 2
    after = costs.Measured.from_results(sections)
    assert after.batch_seconds_per_object == 2 * before.batch_seconds_per_object
    sections["distributed"]["figures"]["local_far_objects_per_second"] = 1000
    tables = costs.render(sections)
    assert "27.8 h at 1,000 objects/s" in tables  # 100 million objects at 1,000/s
    assert tables != costs.render()


def test_the_data_transfer_is_the_size_times_its_price() -> None:
    m = costs.Measured.from_results(costs.load())
    lines = costs.upload_lines(m, m.new_versioned, 10 * costs.GB, seconds=0.1)
    per_gb = costs.PRICES["s3_transfer_out_gb"].usd
    assert lines["S3 data transfer out to kie.ai"] == costs.MILLION * 10 * per_gb


def test_the_distributed_backfill_is_costed_at_the_batch_size_it_deploys() -> None:
    from kie_uploader.cdk import backfill

    assert costs.ITEMS_PER_CHILD == backfill.BATCH_SIZE
