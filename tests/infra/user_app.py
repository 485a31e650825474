"""A user's own CDK app: two ``KieUploader``s in one stack (one bucket, two prefixes) and one in another.

Run as a script by ``make cdk-lowest`` with the lowest aws-cdk-lib the ``cdk`` extra allows (its own
virtualenv, without cdk-nag), and by ``tests/infra/test_distribution.py`` with the pinned (newest) one::

    python tests/infra/user_app.py OUTDIR [--no-bundling] [--context-file cdk.json] [--expect-no-cdk-nag]
                                          [--kie-base-url URL]

tests/e2e/test_user_app.py deploys what it synthesizes (``--kie-base-url``: the emulator's) into ministack.

It synthesizes both stacks, checks what each holds, and prints one JSON line: the aws-cdk-lib version, each
stack's resource counts, the seconds taken, and whether cdk-nag was importable or imported.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

#: (stack, construct id, props): the app's uploaders, each with the notify mode it exercises.
UPLOADERS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("PhotosStack", "Incoming", {"prefix": "incoming/"}),
    ("PhotosStack", "Reports", {"prefix": "reports/", "suffix": ".pdf", "notify": "eventbridge"}),
    ("MediaStack", "Uploader", {"notify": "lambda"}),
)
#: The function of each uploader and the publisher of its events.
FUNCTIONS_PER_UPLOADER = 2


def build(
    context: dict[str, Any] | None = None, outdir: str | None = None, kie_base_url: str | None = None
) -> Any:
    """The app (not yet synthesized); ``context`` is what a ``cdk.json`` would give it, ``kie_base_url``
    where its functions reach kie.ai (default: kie.ai's own)."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_s3 as s3

    from kie_uploader.cdk import FunctionOptions, KieUploader

    options = FunctionOptions(kie_base_url=kie_base_url) if kie_base_url else FunctionOptions()

    app = App(outdir=outdir, context=context or {})
    stacks: dict[str, Stack] = {}
    buckets: dict[str, s3.IBucket] = {}
    for stack_name, construct_id, props in UPLOADERS:
        if stack_name not in stacks:
            stacks[stack_name] = Stack(app, stack_name)
            buckets[stack_name] = s3.Bucket(stacks[stack_name], "Bucket")
        KieUploader(
            stacks[stack_name], construct_id, buckets=[buckets[stack_name]], function_options=options, **props
        )
    return app


def summary(assembly: Any) -> dict[str, Any]:
    """Each stack's resources, functions and discovery records, checked against the uploaders it should
    hold."""
    from kie_uploader import discovery

    stacks: dict[str, Any] = {}
    for stack_name in dict.fromkeys(name for name, _, _ in UPLOADERS):
        template = assembly.get_stack_by_name(stack_name).template
        types = Counter(resource["Type"] for resource in template["Resources"].values())
        uploaders = sum(1 for name, _, _ in UPLOADERS if name == stack_name)
        assert types["AWS::DynamoDB::Table"] == uploaders, (stack_name, types)
        assert types["AWS::SQS::Queue"] >= 2 * uploaders, (stack_name, types)
        functions = [
            resource
            for resource in template["Resources"].values()
            if resource["Type"] == "AWS::Lambda::Function"
            and resource["Properties"].get("Handler") == "uploader.handler.handler"
        ]
        assert len(functions) == uploaders, (stack_name, len(functions))
        # One discovery record per construct and no other output: the app writes none (issue 16).
        names = sorted(construct for name, construct, _ in UPLOADERS if name == stack_name)
        outputs = template.get("Outputs", {}).values()
        described = sorted(output["Description"] for output in outputs)
        assert described == [discovery.record_description(name) for name in names], described
        stacks[stack_name] = {"resources": sum(types.values()), "functions": types["AWS::Lambda::Function"]}
    return stacks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--no-bundling", action="store_true", help="skip the function's pip bundling")
    parser.add_argument("--context-file", type=Path, help="a cdk.json whose context the app gets")
    parser.add_argument(
        "--expect-no-cdk-nag",
        action="store_true",
        help="fail if cdk-nag is installed (it must not be needed)",
    )
    parser.add_argument("--kie-base-url", help="where the functions reach kie.ai (an emulator's URL)")
    args = parser.parse_args(argv)
    cdk_nag_installed = importlib.util.find_spec("cdk_nag") is not None
    if args.expect_no_cdk_nag and cdk_nag_installed:
        parser.error("cdk-nag is installed here: this run must show that the construct does not need it")
    context: dict[str, Any] = {}
    if args.context_file:
        context.update(json.loads(args.context_file.read_text()).get("context", {}))
    if args.no_bundling:
        context["aws:cdk:bundling-stacks"] = []
    started = time.perf_counter()
    assembly = build(context, str(args.outdir), args.kie_base_url).synth()
    stacks = summary(assembly)
    result = {
        "aws_cdk_lib": importlib.metadata.version("aws-cdk-lib"),
        "stacks": stacks,
        "seconds": round(time.perf_counter() - started, 1),
        "cdk_nag_installed": cdk_nag_installed,
        "cdk_nag_imported": "cdk_nag" in sys.modules,
    }
    assert not result["cdk_nag_imported"], "the construct imported cdk_nag"
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
