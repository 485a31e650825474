"""checkov, the template scanner many teams gate deployments on, on every synthesized variant.

checkov is pinned in the Makefile (``CHECKOV_VERSION``) and installed from PyPI into its own virtualenv,
``.venv-checkov``: its own pins (boto3/botocore 1.35, networkx 2.6, packaging 23) conflict with the project's.
One checkov process scans every variant (``conftest.variants``: the repository's stack in each notify mode,
on imported buckets, with the customer managed key created and imported, and a user's own stack built with
the construct) and a copy of each without its skips (``Metadata.checkov``). Then:

* nothing fails: every finding is fixed or skipped;
* every skip carries its reason from the construct (``checkov_skips.REASONS``), the README's word for word;
* every skip stands for a real finding: the copy without skips fails exactly the checks that were skipped.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from kie_uploader.cdk.checkov_skips import REASONS
from tests.infra.conftest import Synth

REPO = Path(__file__).resolve().parents[2]
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
AS_SYNTHESIZED, WITHOUT_SKIPS = "as-synthesized", "without-skips"


def pinned_version() -> str:
    found = re.search(r"^CHECKOV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert found, "the Makefile pins no CHECKOV_VERSION"
    return found.group(1)


def without_skips(template: dict[str, Any]) -> dict[str, Any]:
    copy = json.loads(json.dumps(template))
    for resource in copy["Resources"].values():
        metadata = resource.get("Metadata", {})
        metadata.pop("checkov", None)
        if not metadata:
            resource.pop("Metadata", None)
    return copy


Finding = tuple[str, str]  # (check id, resource as checkov names it: "AWS::SQS::Queue.QueueD811C857")


@pytest.fixture(scope="module")
def scan(variants: dict[str, Synth], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """checkov's JSON report of every variant, as synthesized and without its skips, from one process."""
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: `make install` installs checkov {pinned_version()} there")
    root = tmp_path_factory.mktemp("checkov")
    for folder, transform in ((AS_SYNTHESIZED, lambda t: t), (WITHOUT_SKIPS, without_skips)):
        (root / folder).mkdir()
        for name, synth in variants.items():
            (root / folder / f"{name}.template.json").write_text(json.dumps(transform(synth.template)))
    command = [
        str(CHECKOV),
        "-d",
        str(root),
        "--framework",
        "cloudformation",
        "--skip-download",
        "-o",
        "json",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.stdout.startswith("{"), result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def by_template(report: dict[str, Any], kind: str) -> dict[str, list[dict[str, Any]]]:
    """``kind`` (passed, failed, skipped) checks of each scanned file, keyed ``<folder>/<variant>``."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for check in report["results"][f"{kind}_checks"]:
        found[check["file_path"].strip("/").removesuffix(".template.json")].append(check)
    return found


def findings(checks: list[dict[str, Any]]) -> set[Finding]:
    return {(check["check_id"], check["resource"]) for check in checks}


def test_checkov_is_the_pinned_version_and_read_every_template(
    scan: dict[str, Any], variants: dict[str, Synth]
) -> None:
    assert scan["summary"]["checkov_version"] == pinned_version()
    assert scan["summary"]["parsing_errors"] == 0
    scanned = set(by_template(scan, "passed"))
    assert scanned == {f"{folder}/{name}" for folder in (AS_SYNTHESIZED, WITHOUT_SKIPS) for name in variants}


def test_no_variant_has_a_finding_without_a_fix_or_a_reasoned_skip(scan: dict[str, Any]) -> None:
    failed = {
        name: sorted(findings(checks))
        for name, checks in by_template(scan, "failed").items()
        if name.startswith(AS_SYNTHESIZED)
    }
    assert failed == {}


def test_every_skip_carries_its_reason_from_the_construct(scan: dict[str, Any]) -> None:
    reasons = {check_id: set(about.values()) for check_id, about in REASONS.items()}
    skipped = [check for check in scan["results"]["skipped_checks"]]
    assert skipped
    for check in skipped:
        comment = check["check_result"].get("suppress_comment", "")
        assert comment in reasons.get(check["check_id"], set()), (check["check_id"], check["resource"])
        assert len(comment) > 100, comment


def test_every_skip_stands_for_a_finding_of_its_resource(
    scan: dict[str, Any], variants: dict[str, Synth]
) -> None:
    # The copy without skips fails exactly what was skipped: no skip hides a check that passes (a stale skip,
    # or one the props made unnecessary), and no check fails only once the skips are gone.
    skipped, failed = by_template(scan, "skipped"), by_template(scan, "failed")
    for name in variants:
        assert findings(skipped[f"{AS_SYNTHESIZED}/{name}"]) == findings(failed[f"{WITHOUT_SKIPS}/{name}"]), (
            name
        )


def test_every_reason_is_used_and_the_readme_gives_it_word_for_word(scan: dict[str, Any]) -> None:
    used = {
        (check["check_id"], check["check_result"]["suppress_comment"])
        for check in scan["results"]["skipped_checks"]
    }
    defined = {(check_id, reason) for check_id, about in REASONS.items() for reason in about.values()}
    assert used == defined  # every reason is exercised by some variant
    readme = (REPO / "README.md").read_text()
    security = readme[readme.index("### Security: encryption and template scanners") :]
    security = security[: security.index("\n## ")]
    missing = [(check_id, reason[:60]) for check_id, reason in sorted(defined) if reason not in security]
    assert not missing


def test_the_customer_managed_key_leaves_no_encryption_skip(scan: dict[str, Any]) -> None:
    encryption = {"CKV_AWS_26", "CKV_AWS_27", "CKV_AWS_119", "CKV_AWS_149", "CKV_AWS_158", "CKV_AWS_173"}
    skipped = by_template(scan, "skipped")
    for name in ("repo-key", "repo-imported-key", "user-eventbridge-own-key", "user-lambda-key"):
        assert not {check for check, _ in findings(skipped[f"{AS_SYNTHESIZED}/{name}"])} & encryption, name
    # ... and without it, each of those checks is skipped with its reason somewhere in the default stack.
    default = {check for check, _ in findings(skipped[f"{AS_SYNTHESIZED}/repo-default"])}
    assert encryption <= default
