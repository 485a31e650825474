"""The uploader as a CDK construct for your own app: ``from kie_uploader.cdk import KieUploader``.

Needs the ``cdk`` extra (``pip install 'kie-s3-uploader[cdk]'``: aws-cdk-lib and constructs); the
function's code ships inside this package and is bundled from here (pip with Lambda's manylinux wheels, or
CDK's Docker image when pip is not available).
"""

try:
    import aws_cdk  # noqa: F401
    import constructs  # noqa: F401
except ModuleNotFoundError as exc:
    if (exc.name or "").partition(".")[0] not in ("aws_cdk", "constructs", "jsii"):
        raise
    raise ModuleNotFoundError(
        f"kie_uploader.cdk needs aws-cdk-lib and constructs (No module named {exc.name!r}), which the "
        "command line does not install: pip install 'kie-s3-uploader[cdk]'",
        name=exc.name,
    ) from exc

from kie_uploader.cdk.buckets import SourceBuckets  # noqa: E402
from kie_uploader.cdk.construct import KieUploader  # noqa: E402
from kie_uploader.cdk.options import FunctionOptions, KieUploaderPropsError, NotifyMode  # noqa: E402

__all__ = ["FunctionOptions", "KieUploader", "KieUploaderPropsError", "NotifyMode", "SourceBuckets"]
