"""The distributed backfill's command-line decisions that need no AWS: which prefix a run lists, what a stack
without the state machine is told, how a run's state reads."""

from __future__ import annotations

import pytest

from kie_uploader import distributed
from kie_uploader.cli import moving
from kie_uploader.cli.args import S3Uri
from kie_uploader.cli.aws import Aws, StackResources, Watching
from kie_uploader.cli.errors import CliError
from kie_uploader.function import watch

WATCHING = Watching(watch.Watched((watch.Rule("photos", "incoming/", ".jpg"),)), "S", "test")


def test_a_run_lists_the_watched_prefix_when_the_uri_is_wider_and_the_uris_when_narrower() -> None:
    # The state machine's role may list only under the watched prefix (s3:prefix condition).
    assert moving._listing_prefix(WATCHING, S3Uri("photos", "")) == "incoming/"
    assert moving._listing_prefix(WATCHING, S3Uri("photos", "inc")) == "incoming/"
    assert moving._listing_prefix(WATCHING, S3Uri("photos", "incoming/2024/")) == "incoming/2024/"


def test_a_stack_without_the_state_machine_is_told_how_to_get_it() -> None:
    aws = Aws(region="us-east-1", stack_name="S")
    aws.__dict__["stack"] = StackResources("S", ("photos",), "q", "dlq", "t", uploader="Photos")
    with pytest.raises(CliError, match="uploader Photos of stack S has no distributed backfill: deploy it "
                                       "with backfill=True"):  # fmt: skip
        moving._state_machine(aws)


def test_a_runs_state_counts_what_will_not_move_any_more() -> None:
    state = distributed.RunState(
        "arn:x", "RUNNING", items={"total": 10, "succeeded": 4, "failed": 1, "pending": 3, "running": 2}
    )
    assert (state.done, state.final) == (5, False)
    shown = state.to_json()
    assert (shown["succeeded"], shown["aborted"], shown["mapRunArn"]) == (4, 0, None)
    assert distributed.RunState("arn:x", "ABORTED").final


def test_run_names_are_unique_and_valid_execution_names() -> None:
    names = {distributed.run_name(0) for _ in range(50)}
    assert len(names) == 50
    assert all(name.startswith("backfill-19700101T000000-") and len(name) <= 80 for name in names)
