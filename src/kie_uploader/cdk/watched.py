"""What a ``KieUploader`` watches, in the three places that must say the same thing.

kie.ai is a third party: an object handed to it gets a public URL. The construct's ``prefix``/``suffix`` say
which objects of its buckets may go there, and that one definition is enforced three times:

1. **The function refuses** any other object, whatever the path that names it (S3 event, message, ``resolve``,
   ``refresh``): its environment carries the rules in ``WATCHED_OBJECTS`` (:func:`rules_json`), read by
   ``functions/uploader/watch.py`` (shipped as ``kie_uploader.function.watch``), which defines the match: the
   key starts with ``prefix`` and ends with ``suffix``, the two not overlapping.
2. **The role cannot read** any other object: its ``s3:GetObject*`` resources are
   ``arn:aws:s3:::bucket/{prefix}*{suffix}`` (:func:`object_arns`). IAM's ``*`` matches any characters,
   ``/`` included, and none at all, so that pattern matches exactly the keys the rule matches. A presigned
   URL carries the role's permissions, so even a bug in the function cannot hand kie.ai a readable URL of an
   object outside them.
3. **The bucket keys decrypt** only for those objects (:func:`kms_encryption_contexts`).

The construct's ``prefix``/``suffix`` are S3's notification filter values, which S3 compares with
URL-encoded keys (``kie-uploader doctor`` asks for ``My+Documents/``, not ``My Documents/``). The function
and IAM see keys as they are: both get the decoded value (:func:`key_text`), ``My Documents/``.

A literal ``*``, ``?`` or ``$`` in a prefix or suffix (legal in S3 keys) is written as IAM's ``${*}``,
``${?}``, ``${$}``, so that it matches only itself (:func:`iam_literal`).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import unquote_plus

from aws_cdk import Stack
from aws_cdk import aws_s3 as s3
from constructs import IConstruct

#: The function's environment variable holding the rules (``functions/uploader/watch.py``'s ``VARIABLE``).
VARIABLE = "WATCHED_OBJECTS"
#: S3's encryption context key: the object's ARN, or the bucket's ARN for objects under an S3 Bucket Key.
S3_ARN_CONTEXT = "kms:EncryptionContext:aws:s3:arn"

_IAM_SPECIAL = {"$": "${$}", "*": "${*}", "?": "${?}"}


#: A watched bucket: the bucket, and the prefix and suffix of its watched keys (S3 filter values).
WatchedBucket = tuple[s3.IBucket, str, str]


def rules_json(scope: IConstruct, buckets: Sequence[WatchedBucket]) -> str:
    """``WATCHED_OBJECTS``: one ``{"bucket", "prefix", "suffix"}`` rule per bucket, as JSON.

    A bucket's name may be a token (a bucket of the same stack, ``{"Ref": ...}``): the stack renders the
    JSON with ``Fn::Join`` around it, so CloudFormation puts the real name in.
    """
    rules = [
        {"bucket": bucket.bucket_name, "prefix": key_text(prefix), "suffix": key_text(suffix)}
        for bucket, prefix, suffix in buckets
    ]
    return Stack.of(scope).to_json_string(rules)


def key_text(filter_value: str) -> str:
    """A filter value as the keys it matches are written: S3's filters are URL-encoded (``+`` a space)."""
    return unquote_plus(filter_value)


def iam_literal(text: str) -> str:
    """``text`` as an IAM pattern that matches only itself (``*``, ``?`` and ``$`` as policy variables)."""
    return "".join(_IAM_SPECIAL.get(char, char) for char in text)


def key_pattern(prefix: str, suffix: str) -> str:
    """The IAM pattern of the watched keys: ``{prefix}*{suffix}`` (``*`` alone without a filter)."""
    return f"{iam_literal(key_text(prefix))}*{iam_literal(key_text(suffix))}"


def object_arns(buckets: Sequence[WatchedBucket]) -> list[str]:
    """The watched objects' ARNs, one pattern per bucket: the resources of the function's object reads."""
    return [bucket.arn_for_objects(key_pattern(prefix, suffix)) for bucket, prefix, suffix in buckets]


def kms_encryption_contexts(buckets: Sequence[WatchedBucket]) -> list[str]:
    """The values of ``kms:EncryptionContext:aws:s3:arn`` a bucket key may decrypt for (``StringLike``).

    S3 asks KMS to decrypt an SSE-KMS object with the object's ARN as its encryption context: the watched
    objects' ARNs (:func:`object_arns`). An object encrypted under an S3 Bucket Key has the *bucket's* ARN as
    its context instead (its data key is the bucket's), so each bucket's ARN is allowed too: for such a bucket
    the condition narrows decryption to the construct's buckets, and the object-level scope is S3's own
    (``s3:GetObject`` on the watched objects only: S3 never asks KMS for an object it refused to read).
    """
    return object_arns(buckets) + [bucket.bucket_arn for bucket, _, _ in buckets]
