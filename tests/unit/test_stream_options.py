"""The transfer in the construct's options and the app's context options (issue 19): the function's timeout
and size limit follow the transfer, and a contradictory setting is refused naming it. No synth."""

from __future__ import annotations

import pytest

from kie_uploader.cdk.options import FunctionOptions, KieUploaderPropsError
from kie_uploader.settings import SettingsError, StackSettings

GIB = 2**30


def test_auto_is_the_default_with_lambdas_longest_timeout_and_no_size_limit() -> None:
    options = FunctionOptions()
    assert options.transfer == "auto"
    assert (options.function_timeout_seconds, options.effective_max_object_bytes) == (900, None)
    assert options.queue_visibility_timeout_seconds == 6 * 900
    assert options.effective_kie_timeout_seconds == 40


def test_url_keeps_120_seconds_and_100_mib() -> None:
    options = FunctionOptions(transfer="url")
    assert (options.function_timeout_seconds, options.effective_max_object_bytes) == (120, 104_857_600)


@pytest.mark.parametrize(
    ("max_bytes", "rate", "timeout"),
    [
        (2 * GIB, 8 * 2**20, 15 + 40 + 256),  # 2 GiB at 8 MiB/s: 256 s of bytes
        (2 * GIB, 64 * 2**20, 120),  # never below the URL upload's 120 s
        (20 * GIB, 8 * 2**20, 900),  # never above Lambda's 15 minutes
    ],
)
def test_a_size_limit_sizes_the_timeout_for_a_stream_at_the_planned_rate(
    max_bytes: int, rate: int, timeout: int
) -> None:
    options = FunctionOptions(max_object_bytes=max_bytes, stream_bytes_per_second=rate)
    assert options.function_timeout_seconds == timeout


def test_a_given_timeout_wins() -> None:
    assert FunctionOptions(timeout_seconds=300, max_object_bytes=20 * GIB).function_timeout_seconds == 300


@pytest.mark.parametrize(
    ("options", "prop"),
    [
        (FunctionOptions(transfer="ftp"), "function_options.transfer"),
        (FunctionOptions(transfer="url", kie_cannot_fetch=("photos",)), "function_options.kie_cannot_fetch"),
        (FunctionOptions(kie_cannot_fetch="photos"), "function_options.kie_cannot_fetch"),  # type: ignore[arg-type]
        (FunctionOptions(stream_bytes_per_second=1000), "function_options.stream_bytes_per_second"),
        (FunctionOptions(kie_stream_base_url="kieai.redpandaai.co"), "function_options.kie_stream_base_url"),
        (FunctionOptions(max_object_bytes=0), "function_options.max_object_bytes"),
    ],
)
def test_a_bad_transfer_option_is_refused_naming_it(options: FunctionOptions, prop: str) -> None:
    with pytest.raises(KieUploaderPropsError, match=prop):
        options.validate()


def settings(**context: object) -> StackSettings:
    return StackSettings.from_context(context.get)


def test_the_context_options_reach_the_settings() -> None:
    parsed = settings(
        transfer="auto", kieCannotFetch="vpc-only, other.bucket", streamBytesPerSecond="16777216"
    )
    assert parsed.transfer == "auto" and parsed.kie_cannot_fetch == ("vpc-only", "other.bucket")
    assert parsed.stream_bytes_per_second == 16_777_216
    # the construct sizes them
    assert (parsed.max_object_bytes, parsed.function_timeout_seconds) == (None, None)


@pytest.mark.parametrize(
    ("context", "key"),
    [
        ({"transfer": "ftp"}, "transfer"),
        ({"transfer": "url", "kieCannotFetch": "vpc-only"}, "kieCannotFetch"),
        ({"kieCannotFetch": "Not_A_Bucket"}, "kieCannotFetch"),
        ({"streamBytesPerSecond": "1000"}, "streamBytesPerSecond"),
    ],
)
def test_a_bad_transfer_context_option_names_its_key(context: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError, match=key):
        settings(**context)
