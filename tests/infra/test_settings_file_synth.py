"""Issue 10, defect 1, reproduced through infra.app's code path: ``cdk deploy -c bucketNames=... -c
apiKeySecretArn=...`` once, then a plain ``cdk deploy``. Before the settings file, the second synth created a
new bucket (dropping the imported bucket's notification resource, whose delete handler removes this stack's
notifications from the user's bucket) and a new, empty secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.app import build_app
from kie_uploader.settings import SettingsError
from tests.infra.conftest import EXISTING_SECRET_ARN

NO_BUNDLING: dict[str, Any] = {"aws:cdk:bundling-stacks": []}
USER_BUCKET = "users-own-bucket"


def test_a_later_deploy_without_c_keeps_the_imported_bucket_and_the_existing_secret(tmp_path: Path) -> None:
    settings_path = tmp_path / "kie-uploader.settings.json"
    # `npx cdk deploy -c bucketNames=users-own-bucket -c apiKeySecretArn=...` (the CDK CLI runs main()):
    first_context = {"bucketNames": USER_BUCKET, "apiKeySecretArn": EXISTING_SECRET_ARN, **NO_BUNDLING}
    build_app(first_context, outdir=tmp_path / "first", settings_file=settings_path, remember=True)
    # ... and later a plain `npx cdk deploy`:
    app, stack = build_app(NO_BUNDLING, outdir=tmp_path / "later", settings_file=settings_path, remember=True)
    assembly = app.synth()
    template = json.loads(
        (Path(assembly.directory) / assembly.get_stack_artifact(stack.artifact_id).template_file).read_text()
    )
    types = [resource["Type"] for resource in template["Resources"].values()]
    buckets = [rid for rid, r in template["Resources"].items() if r["Type"] == "AWS::S3::Bucket"]
    # no new source bucket: the only one is the distributed backfill's own (manifests, results)
    assert [rid for rid in buckets if not rid.startswith("KieUploaderBackfillBucket")] == []
    assert "AWS::SecretsManager::Secret" not in types  # no new, empty secret
    notified = [
        resource["Properties"]["BucketName"]
        for resource in template["Resources"].values()
        if resource["Type"].endswith("BucketNotifications")  # CDK's, or the construct's own for imports
    ]
    assert notified == [USER_BUCKET]  # the imported bucket's notification resource stays
    # ... and a `-c bucketNames=` that differs is refused before anything is synthesized:
    with pytest.raises(SettingsError, match="acceptSettingsChange=true"):
        build_app({"bucketNames": "another-bucket", **NO_BUNDLING}, settings_file=settings_path)
