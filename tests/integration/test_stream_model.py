"""The record's model test (tests/integration/test_model.py) over the stream transfer (issue 19).

The same generated histories (S3 changes, deliveries in any order, duplicated or concurrent, faults, dead
claim holders, synchronous requests, keep-alive rounds) and the same properties after every step, with the
function set to ``TRANSFER=stream``: every upload is a GetObject streamed to kie.ai's stream upload, and an
unversioned object is confirmed by the GetObject's own reading, not by a second HeadObject.

The model's held points that are kie.ai's fetch of the URL become the stream's: ``fetch`` holds the
function's GetObject before S3 answers it (a change then makes the GetObject name other bytes than the
HeadObject: nothing is sent, the new bytes are), ``fetched`` holds the stream upload once kie.ai has the
whole body, before it answers (a change then is an overwrite during a stream upload: the record names the
bytes streamed, and the change's own event makes it describe the new object). ``s3-read-2`` is never
reached (no second HeadObject); kie.ai's faults apply to the stream calls. The model draws those points
rarely among its others, so one more rule (three times: ``stream_overtaken``) holds a forced upload at one
of them while the object changes (and that change is delivered, or the old bytes come back: A → B → A).

``STREAM_MODEL_EXAMPLES`` histories (``make test``: 6, about 25 s; they catch the function streaming without
comparing GetObject's reading with the HeadObject's), ``MODEL_STEPS`` and ``MODEL_SHRINK`` as the model's.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule, run_state_machine_as_test

from kie_uploader.emulator import KieEmulator
from tests.factories import World
from tests.faultproxy import Action, FaultProxy, Request, Rule
from tests.integration.test_model import SHRINK, STEPS, Histories, Target, _names, model_world
from uploader.config import Config
from uploader.runtime import build_processor

__all__ = ["model_world"]  # the fixture this module's own builds on

EXAMPLES = int(os.environ.get("STREAM_MODEL_EXAMPLES", "6"))

pytestmark = [
    pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning"),
    pytest.mark.timeout(900 + 60 * EXAMPLES),
]


class StreamHistories(Histories):
    """The model's histories, and deliveries held at the stream's own points while the object changes."""

    @rule(data=st.data())
    def stream_overtaken(self, data: st.DataObject) -> None:
        with self.step():
            pool = [t for t in self.targets if t.watched and self.state_of(t).states[-1][1] is not None]
            if not pool:
                return
            target = pool[data.draw(st.integers(0, 5), label="target") % len(pool)]
            point = data.draw(st.sampled_from(("fetch", "fetched")), label="at")
            actions = data.draw(
                st.sampled_from(([("change", "new")], [("change+deliver", "new")], [("flip", "new")])),
                label="meanwhile",
            )
            self.hold_while(self.plain_job(target, True, 0), target, point, actions, "none", 1)

    # Twice more: histories are short, and these are the steps this module is for.
    @rule(data=st.data())
    def stream_overtaken_again(self, data: st.DataObject) -> None:
        self.stream_overtaken(data)

    @rule(data=st.data())
    def stream_overtaken_once_more(self, data: st.DataObject) -> None:
        self.stream_overtaken(data)


def _streams(file_path: str, target: Target) -> bool:
    """The stream upload (``s3-uploads/{bucket}/{16 hex}/{name}``) is the target's."""
    parts = file_path.split("/")
    return len(parts) >= 4 and parts[-3] == target.bucket and parts[-1] == target.key.rsplit("/", 1)[-1]


@pytest.fixture
def stream_model_world(model_world: World, fault_proxy: FaultProxy, kie: KieEmulator) -> World:
    """The model's world with ``TRANSFER=stream``, the containers rebuilt, and the stream's held points."""
    model_world.env(TRANSFER="stream")
    config = Config.from_env()
    Histories.containers = (build_processor(config), build_processor(config), build_processor(config))
    hold = Histories.hold

    def get_object(request: Request) -> bool:
        return not request.presigned and hold._take(("fetch",), lambda t: _names(request, t, "fetch"))

    def after_stream(file_path: str) -> None:
        if hold._take(("fetched",), lambda t: _streams(file_path, t)):
            hold.wait()

    fault_proxy.add(Rule("s3", "GetObject", Action(before=hold.wait), when=get_object, times=None))
    kie.after_stream(after_stream, times=None)
    return model_world


def test_every_history_keeps_the_record_true_when_every_upload_is_a_stream(stream_model_world: World) -> None:
    run_state_machine_as_test(
        StreamHistories,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if SHRINK else []),
            report_multiple_bugs=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
    # kie.ai received stream uploads only (none by URL), and stored some.
    calls = stream_model_world.kie.calls
    assert {call.transfer for call in calls} == {"stream"}
    assert any(call.status == 200 for call in calls)
