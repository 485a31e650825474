"""The CDK app: ``cdk synth`` / ``cdk deploy`` run ``python -m infra.app`` from the repository root.

No AWS calls and no lookups here: the stack is environment-agnostic, so synth needs no credentials.
cdk-nag's AwsSolutions checks run on every synth; a finding that is not acknowledged fails it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from infra.stack import KieUploaderStack
from kie_uploader.settings import StackSettings, from_context_and_file

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    """cdk.json's context (feature flags), so that tests synthesize what ``cdk deploy`` deploys."""
    return dict(json.loads(CDK_JSON.read_text()).get("context", {}))


def build_app(
    context: Mapping[str, Any] | None = None,
    *,
    outdir: Path | None = None,
    settings_file: Path | None = None,
    remember: bool = False,
) -> tuple[App, KieUploaderStack]:
    """The app with its one stack; ``context`` adds to (and wins over) cdk.json's and the CLI's context.

    ``settings_file`` (kie-uploader.settings.json) supplies the options the context does not give; with
    ``remember`` the context's options are written back to it. Without it, the context alone decides.
    """
    # The CLI passes cdk.json's context itself; tests get the same through this merge.
    app = App(context={**cdk_json_context(), **(context or {})}, outdir=str(outdir) if outdir else None)
    if settings_file is None:
        settings = StackSettings.from_context(app.node.try_get_context)
    else:
        settings = from_context_and_file(app.node.try_get_context, settings_file, remember=remember)
    stack = KieUploaderStack(
        app,
        settings.stack_name,
        settings=settings,
        description="kie-uploader: S3 objects to kie.ai's URL upload, each downloadUrl recorded in DynamoDB",
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def main() -> None:
    # The CDK CLI's runs: the settings file supplies what -c does not, and remembers what -c gives.
    from kie_uploader.settings_file import default_path

    app, _ = build_app(settings_file=default_path(CDK_JSON.parent), remember=True)
    app.synth()


if __name__ == "__main__":
    main()
