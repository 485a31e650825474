"""Context options are parsed once, with defaults, and a malformed value names its context key."""

from __future__ import annotations

import pytest

from kie_uploader.settings import SettingsError, StackSettings


def settings(**context: object) -> StackSettings:
    return StackSettings.from_context(context.get)


def test_defaults_deploy_a_new_bucket_notified_through_the_queue() -> None:
    defaults = settings()
    assert defaults.stack_name == "KieUploader"
    assert defaults.bucket_names == ()
    assert defaults.notify == "queue"
    assert (defaults.reserved_concurrency, defaults.api_key_secret_kms_key_arn) == (None, None)
    assert defaults.max_concurrency == 2
    assert defaults.architecture == "arm64"
    assert defaults.kie_base_url == "https://api.kie.ai"
    # transfer=auto (issue 19): the construct sizes the function's timeout for a stream (900 s without
    # maxObjectBytes), and with it the queue's visibility timeout.
    assert defaults.transfer == "auto" and defaults.max_object_bytes is None
    assert (defaults.function_timeout_seconds, defaults.queue_visibility_timeout_seconds) == (None, None)
    assert defaults.kie_timeout_seconds == 40


def test_defaults_publish_events_on_the_default_bus_keep_records_30_days_and_keep_nothing_alive() -> None:
    defaults = settings()
    assert (defaults.events, defaults.event_bus_name) == (True, None)
    assert defaults.record_retention_days == 30
    assert defaults.keep_alive == ()
    assert (defaults.refresh_ahead_seconds, defaults.keep_alive_schedule_minutes) == (43_200, 60)


def test_the_keep_alive_and_event_options_come_from_context() -> None:
    bus = "arn:aws:events:eu-west-1:123456789012:event-bus/kie-objects"
    parsed = settings(
        keepAlive=" s3://a-bucket/incoming/, s3://other.bucket ,s3://a-bucket/incoming/",
        refreshAheadSeconds="3600",
        keepAliveScheduleMinutes="15",
        recordRetentionDays="0",
        events="false",
        eventBusName=bus,
    )
    assert parsed.keep_alive == ("s3://a-bucket/incoming/", "s3://other.bucket")
    assert (parsed.refresh_ahead_seconds, parsed.keep_alive_schedule_minutes) == (3600, 15)
    assert parsed.record_retention_days == 0
    assert (parsed.events, parsed.event_bus_name) == (False, bus)
    assert settings(eventBusName="kie-objects").event_bus_name == "kie-objects"
    assert settings(events="true").events is True


def test_bucket_names_are_split_trimmed_and_deduplicated() -> None:
    assert settings(bucketNames=" a-bucket, other.bucket ,a-bucket,").bucket_names == (
        "a-bucket",
        "other.bucket",
    )


def test_the_queue_visibility_timeout_follows_a_shorter_function_timeout() -> None:
    parsed = settings(functionTimeoutSeconds="20")
    assert (parsed.function_timeout_seconds, parsed.queue_visibility_timeout_seconds) == (20, 120)


@pytest.mark.parametrize(("given", "parsed"), [("25", 25), (25, 25), (" 1 ", 1), ("119", 119)])
def test_the_kie_timeout_comes_from_context(given: object, parsed: int) -> None:
    assert settings(kieTimeoutSeconds=given).kie_timeout_seconds == parsed


def test_the_kie_timeout_may_be_set_with_a_longer_function_timeout() -> None:
    parsed = settings(kieTimeoutSeconds="300", functionTimeoutSeconds="900")
    assert (parsed.kie_timeout_seconds, parsed.function_timeout_seconds) == (300, 900)


@pytest.mark.parametrize(("function_timeout", "kie_timeout"), [("20", 19), ("5", 4), ("41", 40), ("60", 40)])
def test_without_the_option_the_kie_timeout_stays_below_a_shorter_function_timeout(
    function_timeout: str, kie_timeout: int
) -> None:
    assert settings(functionTimeoutSeconds=function_timeout).kie_timeout_seconds == kie_timeout


NOT_BELOW_FUNCTION_TIMEOUT = r"kieTimeoutSeconds=\d+ must be less than functionTimeoutSeconds"


@pytest.mark.parametrize(
    ("kie_timeout", "function_timeout"), [("120", None), ("121", None), ("60", "60"), ("100", "30")]
)
def test_a_kie_timeout_not_below_the_function_timeout_fails_naming_both_keys(
    kie_timeout: str, function_timeout: str | None
) -> None:
    # transfer=url: without functionTimeoutSeconds the function's timeout is 120 s (auto sizes its own)
    context = {"kieTimeoutSeconds": kie_timeout, "transfer": "url"}
    if function_timeout is not None:
        context["functionTimeoutSeconds"] = function_timeout
    with pytest.raises(SettingsError, match=NOT_BELOW_FUNCTION_TIMEOUT):
        settings(**context)


@pytest.mark.parametrize("notify", ["queue", "eventbridge", "lambda"])
def test_each_notify_mode_is_accepted(notify: str) -> None:
    assert settings(notify=notify).notify == notify


def test_the_secrets_kms_key_and_the_reserved_concurrency_come_from_context() -> None:
    key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    parsed = settings(apiKeySecretKmsKeyArn=key, reservedConcurrency="7")
    assert (parsed.api_key_secret_kms_key_arn, parsed.reserved_concurrency) == (key, 7)


def test_the_stacks_constants_are_the_constructs() -> None:
    # The settings model keeps its own copies (it does not import the construct): they agree.
    from kie_uploader import settings as stack_settings
    from kie_uploader.cdk import options

    for name in ("FUNCTION_TIMEOUT_SECONDS", "KIE_TIMEOUT_SECONDS", "KIE_MAX_ATTEMPTS", "SQS_BATCH_SIZE"):
        assert getattr(stack_settings, name) == getattr(options, name), name
    assert stack_settings.LOG_RETENTION_DAYS == options.LOG_RETENTION_DAYS
    assert set(stack_settings.NOTIFY_TARGETS) == {mode.value for mode in options.NotifyMode}


def test_values_from_cdk_json_may_be_json_types() -> None:
    parsed = settings(bucketNames=["one-bucket", "two-bucket"], maxConcurrency=7, logRetentionDays=90)
    assert parsed.bucket_names == ("one-bucket", "two-bucket")
    assert (parsed.max_concurrency, parsed.log_retention_days) == (7, 90)
    parsed = settings(keepAlive=["s3://one-bucket/a/", "s3://two-bucket/"], recordRetentionDays=7)
    assert parsed.keep_alive == ("s3://one-bucket/a/", "s3://two-bucket/")
    assert parsed.record_retention_days == 7


@pytest.mark.parametrize("given", [False, True])
def test_events_from_cdk_json_may_be_a_json_boolean(given: bool) -> None:
    assert settings(events=given).events is given


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("bucketNames", "Not_A_Bucket"),
        ("notify", "sns"),
        ("maxConcurrency", "1"),  # AWS's minimum for an SQS event source is 2
        ("maxConcurrency", "two"),
        ("apiKeySecretArn", "my-secret"),
        ("alarmEmail", "nobody"),
        ("kieBaseUrl", "ftp://kie.ai"),
        ("kieUploadPath", "/leading/slash"),
        ("presignExpiresSeconds", "604801"),
        ("memorySize", "64"),
        ("architecture", "arm"),
        ("logRetentionDays", "31"),
        ("functionTimeoutSeconds", "901"),  # Lambda's maximum is 900 s
        ("kieTimeoutSeconds", "0"),
        ("kieTimeoutSeconds", "901"),
        ("kieTimeoutSeconds", "-5"),
        ("kieTimeoutSeconds", "2.5"),
        ("kieTimeoutSeconds", "soon"),
        ("bucketKmsKeyArns", "alias/aws/s3"),
        ("apiKeySecretKmsKeyArn", "alias/aws/secretsmanager"),
        ("reservedConcurrency", "0"),
        ("reservedConcurrency", "many"),
        ("keepAlive", "https://a-bucket/incoming/"),
        ("keepAlive", "s3://Not_A_Bucket/incoming/"),
        ("keepAlive", "s3://a-bucket/ok/,a-bucket/no-scheme/"),
        ("refreshAheadSeconds", "59"),
        ("refreshAheadSeconds", "31536001"),
        ("refreshAheadSeconds", "half-a-day"),
        ("keepAliveScheduleMinutes", "0"),
        ("keepAliveScheduleMinutes", "1441"),
        ("keepAliveScheduleMinutes", "hourly"),
        ("recordRetentionDays", "-1"),
        ("recordRetentionDays", "3651"),
        ("recordRetentionDays", "a-month"),
        ("events", "yes"),
        ("events", "off"),
        ("eventBusName", "my bus"),
        ("eventBusName", "arn:aws:events:eu-west-1:1234:event-bus/kie"),
    ],
)
def test_a_malformed_value_fails_with_the_context_key_in_the_message(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=key):
        settings(**{key: value})
