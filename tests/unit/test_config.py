"""Configuration: defaults, validation once, errors that name the variable."""

from __future__ import annotations

import pytest

from uploader.config import Config
from uploader.errors import ConfigurationError

BASE = {"TABLE_NAME": "records", "KIE_API_KEY_SECRET_ID": "kie/api-key"}


def test_defaults_follow_the_issue() -> None:
    config = Config.from_env(BASE)

    assert config.table_name == "records"
    assert config.api_key_secret_id == "kie/api-key"
    assert config.kie_base_url == "https://api.kie.ai"
    assert config.kie_upload_path == "s3-uploads"
    assert config.kie_retention_seconds == 259_200
    assert config.presign_expires_seconds == 900
    # TRANSFER=auto (issue 19): no size limit but what a stream upload can do in Lambda's 15 minutes.
    assert config.max_object_bytes is None
    assert config.allowed_buckets is None
    assert config.max_concurrency == 10
    assert config.secret_cache_seconds == 300
    assert config.kie_timeout_seconds == 40
    assert config.kie_max_attempts == 4


def test_every_variable_is_read() -> None:
    env = {
        **BASE,
        "KIE_BASE_URL": "http://127.0.0.1:8080/",
        "KIE_UPLOAD_PATH": "/team/uploads/",
        "KIE_RETENTION_SECONDS": "86400",
        "PRESIGN_EXPIRES_SECONDS": "600",
        "MAX_OBJECT_BYTES": "1000",
        "ALLOWED_BUCKETS": " photos , docs.example ",
        "MAX_CONCURRENCY": "4",
        "SECRET_CACHE_SECONDS": "60",
        "KIE_TIMEOUT_SECONDS": "35",
        "KIE_MAX_ATTEMPTS": "2",
    }

    config = Config.from_env(env)

    assert config.kie_base_url == "http://127.0.0.1:8080"
    assert config.kie_upload_path == "team/uploads"
    assert (config.kie_retention_seconds, config.presign_expires_seconds) == (86400, 600)
    assert config.max_object_bytes == 1000
    assert config.allowed_buckets == frozenset({"photos", "docs.example"})
    assert (config.max_concurrency, config.secret_cache_seconds) == (4, 60)
    assert (config.kie_timeout_seconds, config.kie_max_attempts) == (35.0, 2)


def test_a_key_in_the_environment_is_enough_for_local_runs_and_is_not_shown() -> None:
    config = Config.from_env({"TABLE_NAME": "t", "KIE_API_KEY": "local-key-123"})

    assert config.api_key == "local-key-123" and config.api_key_secret_id is None
    assert "local-key-123" not in repr(config)


def test_the_secret_wins_over_a_key_in_the_environment() -> None:
    config = Config.from_env({**BASE, "KIE_API_KEY": "ignored"})

    assert config.api_key is None


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"KIE_API_KEY_SECRET_ID": "s"}, "TABLE_NAME"),
        ({"TABLE_NAME": "t", "KIE_API_KEY": "  "}, "KIE_API_KEY_SECRET_ID"),
        ({"TABLE_NAME": "  ", "KIE_API_KEY": "k"}, "TABLE_NAME"),
        ({**BASE, "KIE_BASE_URL": "ftp://kie"}, "KIE_BASE_URL"),
        ({**BASE, "KIE_BASE_URL": "https://api.kie.ai?x=1"}, "KIE_BASE_URL"),
        ({**BASE, "KIE_UPLOAD_PATH": "a b"}, "KIE_UPLOAD_PATH"),
        ({**BASE, "KIE_UPLOAD_PATH": "a/../b"}, "KIE_UPLOAD_PATH"),
        ({**BASE, "KIE_UPLOAD_PATH": "a//b"}, "KIE_UPLOAD_PATH"),
        ({**BASE, "KIE_RETENTION_SECONDS": "3 days"}, "KIE_RETENTION_SECONDS"),
        ({**BASE, "PRESIGN_EXPIRES_SECONDS": "604801"}, "PRESIGN_EXPIRES_SECONDS"),
        ({**BASE, "PRESIGN_EXPIRES_SECONDS": "10"}, "PRESIGN_EXPIRES_SECONDS"),
        ({**BASE, "MAX_OBJECT_BYTES": "0"}, "MAX_OBJECT_BYTES"),
        ({**BASE, "MAX_OBJECT_BYTES": "1e6"}, "MAX_OBJECT_BYTES"),
        ({**BASE, "ALLOWED_BUCKETS": "Photos"}, "ALLOWED_BUCKETS"),
        ({**BASE, "ALLOWED_BUCKETS": " , "}, "ALLOWED_BUCKETS"),
        ({**BASE, "MAX_CONCURRENCY": "0"}, "MAX_CONCURRENCY"),
        ({**BASE, "MAX_CONCURRENCY": "many"}, "MAX_CONCURRENCY"),
        ({**BASE, "SECRET_CACHE_SECONDS": "-1"}, "SECRET_CACHE_SECONDS"),
        ({**BASE, "KIE_TIMEOUT_SECONDS": "0"}, "KIE_TIMEOUT_SECONDS"),
        ({**BASE, "KIE_MAX_ATTEMPTS": "0"}, "KIE_MAX_ATTEMPTS"),
    ],
)
def test_errors_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        Config.from_env(env)


def test_the_configuration_is_immutable() -> None:
    config = Config.from_env(BASE)

    with pytest.raises(AttributeError):
        config.table_name = "other"  # type: ignore[misc]
