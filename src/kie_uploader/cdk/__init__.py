"""The uploader as a CDK construct for your own app: ``from kie_uploader.cdk import KieUploader``.

Needs the ``cdk`` extra (``pip install 'kie-s3-uploader[cdk]'``: aws-cdk-lib and constructs); the
function's code ships inside this package and is bundled from here (pip with Lambda's manylinux wheels, or
CDK's Docker image when pip is not available).
"""

from kie_uploader.cdk.buckets import SourceBuckets
from kie_uploader.cdk.construct import KieUploader
from kie_uploader.cdk.options import FunctionOptions, KieUploaderPropsError, NotifyMode

__all__ = ["FunctionOptions", "KieUploader", "KieUploaderPropsError", "NotifyMode", "SourceBuckets"]
