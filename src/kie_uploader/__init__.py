"""kie-s3-uploader: S3 objects handed to kie.ai by an AWS Lambda function, a record per object in DynamoDB.

``from kie_uploader import live_url`` gives a live kie.ai URL of an object (see ``kie_uploader.live``);
it is imported on first use, so importing the package costs nothing (and never imports the CDK).
``kie_uploader.__version__`` is the installed distribution's version, read from its metadata as
``kie-uploader --version`` reads it: pyproject.toml is the one place it is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kie_uploader.live import LiveUrlError, RecordState, describe_record, live_url

    __version__: str

__all__ = ["LiveUrlError", "RecordState", "describe_record", "live_url"]
DISTRIBUTION = "kie-s3-uploader"


def _version() -> str:
    """The installed distribution's version (``unknown`` when run from a checkout that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kie_uploader import live

        return getattr(live, name)
    if name == "__version__":
        return _version()
    raise AttributeError(f"module 'kie_uploader' has no attribute {name!r}")
