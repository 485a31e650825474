"""CloudFormation custom resource: one owner's S3 notification entries on a bucket it does not own.

CDK's own handler for imported buckets names its entries ``<stack id>-<hash()>``; Python salts ``hash()``
per process, so an update cannot find the entries it made before (aws-cdk issue 31303) and leaves them
behind, or fails on the overlap. Here every entry's ``Id`` is given in the template and starts with the
resource's ``Owner``: on create and update, every entry of that owner is replaced by the template's; on
delete, they are removed. Entries of anyone else, and S3's EventBridge switch, are kept as they are.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

import boto3

TYPES = ("TopicConfigurations", "QueueConfigurations", "LambdaFunctionConfigurations")
EVENTBRIDGE = "EventBridgeConfiguration"

logger = logging.getLogger()
logger.setLevel(logging.INFO)
s3 = boto3.client("s3")


def merged(current: dict[str, Any], owner: str, legacy: str, ours: dict[str, Any]) -> dict[str, Any]:
    """``current`` without the owner's entries (nor CDK's handler's for this stack: ``legacy``), plus ours."""
    config: dict[str, Any] = {}
    for kind in TYPES:
        kept = [
            entry
            for entry in current.get(kind, [])
            if not str(entry.get("Id", "")).startswith((owner + "-", legacy))
        ]
        entries = kept + list(ours.get(kind, []))
        if entries:
            config[kind] = entries
    if EVENTBRIDGE in current or ours.get("EventBridge") == "true":
        config[EVENTBRIDGE] = {}
    return config


def apply(bucket: str, owner: str, legacy: str, ours: dict[str, Any]) -> None:
    current = s3.get_bucket_notification_configuration(Bucket=bucket)
    current.pop("ResponseMetadata", None)
    config = merged(current, owner, legacy, ours)
    logger.info("bucket %s: %s", bucket, json.dumps(config, sort_keys=True))
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)


def handler(event: dict[str, Any], context: Any) -> None:
    request = event["RequestType"]
    props = event["ResourceProperties"]
    physical_id = event.get("PhysicalResourceId") or f"{props['Owner']}@{props['BucketName']}"
    # CDK's handler (the one this resource replaces) prefixed its entries with the stack's id.
    legacy = f"{event['StackId']}-"
    status, reason = "SUCCESS", ""
    try:
        if request == "Delete":
            try:
                apply(props["BucketName"], props["Owner"], legacy, {})
            except s3.exceptions.NoSuchBucket:
                logger.info("bucket %s is gone: nothing to remove", props["BucketName"])
        else:
            old = event.get("OldResourceProperties") or {}
            if request == "Update" and old.get("BucketName") not in (None, props["BucketName"]):
                apply(old["BucketName"], old.get("Owner", props["Owner"]), legacy, {})
            apply(props["BucketName"], props["Owner"], legacy, props.get("Configuration") or {})
    except Exception as exc:  # every failure must reach CloudFormation, or it waits for an hour
        logger.exception("could not put the bucket's notification configuration")
        status, reason = "FAILED", f"{type(exc).__name__}: {exc}"[:800]
    finally:
        respond(event, context, status, reason, physical_id)


def respond(event: dict[str, Any], context: Any, status: str, reason: str, physical_id: str) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason or f"see {getattr(context, 'log_stream_name', 'the log')}",
            # Never changed by an update: a new id would make CloudFormation delete the old one's entries.
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
        }
    ).encode()
    request = urllib.request.Request(
        event["ResponseURL"],
        data=body,
        method="PUT",
        headers={"content-type": "", "content-length": str(len(body))},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (CloudFormation's own URL)
        logger.info("CloudFormation answered %s", answer.status)
