"""Builds the processor and its adapters from a :class:`~uploader.config.Config` (once per container)."""

from __future__ import annotations

from uploader.config import Config
from uploader.kie import KieClient
from uploader.processor import ApiKeyProvider, Processor
from uploader.retry import Retrier, RetryPolicy
from uploader.s3 import S3Objects
from uploader.secret import SecretApiKey, StaticApiKey
from uploader.table import RecordTable


def build_processor(config: Config) -> Processor:
    """The processor with real clients (boto3 reads endpoints and region from the environment)."""
    api_key: ApiKeyProvider
    if config.api_key_secret_id:
        api_key = SecretApiKey(config.api_key_secret_id, ttl_seconds=config.secret_cache_seconds)
    else:
        api_key = StaticApiKey(config.api_key or "")
    return Processor(
        config=config,
        s3=S3Objects(),
        kie=KieClient(
            config.kie_base_url, pool_size=config.max_concurrency, stream_base_url=config.stream_url
        ),
        table=RecordTable(config.table_name, retention_seconds=config.record_retention_seconds),
        api_key=api_key,
        retrier=Retrier(RetryPolicy(max_attempts=config.kie_max_attempts)),
    )
