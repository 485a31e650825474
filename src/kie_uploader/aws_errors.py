"""AWS errors in one line a user can act on, and the endpoint variables checked before any client is made.

Shared by the command line (:mod:`kie_uploader.cli`) and the library (:func:`kie_uploader.live_url`):
botocore only, no terminal and no CDK imports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.parsers import ResponseParserError

#: The variables that point every AWS call (or one service's: ``AWS_ENDPOINT_URL_S3``) somewhere else.
ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL"
_CREDENTIAL_ERRORS = frozenset(
    {
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
    }
)


def endpoint_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """Why ``AWS_ENDPOINT_URL`` (or an ``AWS_ENDPOINT_URL_<SERVICE>``) is not a URL botocore can use, in one
    line with the fix (``127.0.0.1:4566`` has no scheme: ``http://127.0.0.1:4566``); None when they are fine.
    botocore itself would only say ``ValueError: Invalid endpoint``."""
    env = os.environ if environ is None else environ
    for name in sorted(n for n in env if n == ENDPOINT_VARIABLE or n.startswith(f"{ENDPOINT_VARIABLE}_")):
        value = env[name].strip()
        if not value:
            continue
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.hostname:
            continue
        hint = f" (did you mean http://{value}?)" if "://" not in value else ""
        return f"{name}={value} is not a URL: write it with its scheme, http:// or https://{hint}"
    return None


def describe_aws_error(exc: Exception) -> str:
    """One line that says what went wrong and what to do about it."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or run `aws configure`)"
        )
    if isinstance(exc, NoRegionError):
        return (
            "no AWS region: pass --region, set AWS_REGION (or AWS_DEFAULT_REGION), or give the profile "
            "a region (`aws configure set region REGION`)"
        )
    if isinstance(exc, ProfileNotFound):
        return f"no such AWS profile: {exc.kwargs.get('profile')} (see `aws configure list-profiles`)"
    if isinstance(exc, ResponseParserError):
        endpoint = os.environ.get(ENDPOINT_VARIABLE)
        where = f"the endpoint {endpoint} ({ENDPOINT_VARIABLE})" if endpoint else "the AWS endpoint"
        return f"{where} gave an answer that is not AWS's: is it the right endpoint (host and port)?"
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url", "the AWS endpoint")
        hint = ""
        if os.environ.get(ENDPOINT_VARIABLE):
            hint = f" ({ENDPOINT_VARIABLE} is set: is the local stack running?)"
        return f"cannot connect to {endpoint}{hint}"
    if isinstance(exc, ClientError):
        return _describe_client_error(exc)
    return f"AWS error: {exc}"


def _describe_client_error(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", ""))
    operation = getattr(exc, "operation_name", "AWS call")
    if code in _CREDENTIAL_ERRORS:
        return f"AWS rejected the credentials ({code}): check AWS_PROFILE / AWS_ACCESS_KEY_ID"
    if code in ("AccessDenied", "AccessDeniedException", "403"):
        return f"access denied: {operation}: {message or code}"
    if code in ("NoSuchBucket", "404") and error.get("BucketName"):
        return f"no such bucket: {error['BucketName']}"
    if code == "ResourceNotFoundException":
        return f"not found: {operation}: {message} (was the stack deleted?)"
    if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
        return f"the stack's queue does not exist: {message} (was the stack deleted?)"
    return f"{operation} failed: {code}: {message}".rstrip(": ")
