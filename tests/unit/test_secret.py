"""The API key: secret parsing, the TTL cache, and classification of Secrets Manager failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from uploader.errors import ConfigurationError, TransientError
from uploader.secret import SecretApiKey, StaticApiKey, parse_secret


@pytest.mark.parametrize(
    ("value", "key"),
    [("raw-key-1", "raw-key-1"), ("  raw-key-2\n", "raw-key-2"), ('{"apiKey": "json-key"}', "json-key")],
)
def test_secret_is_a_raw_key_or_json(value: str, key: str) -> None:
    assert parse_secret(value) == key


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ('{"apiKey": ""}', "apiKey"),
        ('{"key": "x"}', "apiKey"),
        ('{"apiKey": ', "cannot be parsed"),
        ("two words", "whitespace"),
    ],
)
def test_bad_secrets_are_configuration_errors_that_do_not_show_the_value(value: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason) as caught:
        parse_secret(value)

    assert "two words" not in str(caught.value)


@dataclass
class SecretsClient:
    """A Secrets Manager stand-in: the component under test is the cache, not the client."""

    values: list[Any]
    reads: int = 0
    ids: list[str] = field(default_factory=list)

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        self.ids.append(SecretId)
        self.reads += 1
        value = self.values[min(self.reads, len(self.values)) - 1]
        if isinstance(value, Exception):
            raise value
        return {"SecretString": value}


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "GetSecretValue")


def test_the_key_is_cached_until_the_ttl_passes() -> None:
    now = [0.0]
    client = SecretsClient(["key-1", "key-2"])
    provider = SecretApiKey("kie/key", client=client, ttl_seconds=300, clock=lambda: now[0])

    first, again = provider.get(), provider.get()
    now[0] = 301.0
    later = provider.get()

    assert (first, again, later) == ("key-1", "key-1", "key-2")
    assert client.reads == 2 and client.ids == ["kie/key", "kie/key"]


def test_invalidate_forces_a_new_read() -> None:
    client = SecretsClient(["old", "rotated"])
    provider = SecretApiKey("kie/key", client=client, clock=lambda: 0.0)

    provider.get()
    provider.invalidate()

    assert provider.get() == "rotated"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (client_error("ResourceNotFoundException"), ConfigurationError),
        (client_error("AccessDeniedException"), ConfigurationError),
        (client_error("DecryptionFailure"), ConfigurationError),
        (client_error("ThrottlingException"), TransientError),
        (client_error("InternalServiceError"), TransientError),
        (EndpointConnectionError(endpoint_url="https://secretsmanager"), TransientError),
    ],
)
def test_secrets_manager_failures_are_classified(error: Exception, kind: type[Exception]) -> None:
    provider = SecretApiKey("kie/key", client=SecretsClient([error]))

    with pytest.raises(kind):
        provider.get()


def test_a_failed_read_is_not_cached() -> None:
    provider = SecretApiKey("kie/key", client=SecretsClient([client_error("ThrottlingException"), "key"]))

    with pytest.raises(TransientError):
        provider.get()

    assert provider.get() == "key"


def test_a_static_key_is_validated_too() -> None:
    assert StaticApiKey('{"apiKey": "k1"}').get() == "k1"
    with pytest.raises(ConfigurationError):
        StaticApiKey(" ")
