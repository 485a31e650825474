"""docs/construct.md is what ``python -m kie_uploader.cdk.reference`` writes: the reference cannot drift.

The generator reads the construct's signature, its docstrings and ``FunctionOptions``' ``#:`` comments, and
synthesizes the construct once (bundling skipped, no network) for the default settings.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "construct.md"


def test_docs_construct_md_is_what_the_generator_writes() -> None:
    from kie_uploader.cdk import reference

    expected = reference.render()
    assert DOC.exists(), f"docs/construct.md is missing: run {reference.COMMAND}"
    assert DOC.read_text() == expected, f"docs/construct.md is out of date: run {reference.COMMAND}"


def test_every_prop_method_and_function_option_is_in_the_reference_with_its_default() -> None:
    import inspect

    from kie_uploader.cdk import FunctionOptions, KieUploader

    text = DOC.read_text()
    for name, parameter in inspect.signature(KieUploader.__init__).parameters.items():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            assert f"\n| {name} | " in text, name
    assert "\n| max_receive_count | `int` | `5` | " in text
    assert "\n| accept_responsibility_for_imported_buckets | `bool` | `False` | " in text
    for method in ("add_bucket", "grant_resolve", "grant_send"):
        assert f"\n### `{method}(" in text, method
    for field in dataclasses.fields(FunctionOptions):
        assert f"\n| {field.name} | " in text, field.name


def _uploader_with(extra_doc: str = "", **extra_params: Any) -> type:
    """A subclass of KieUploader whose signature has ``extra_params`` (keyword-only) and whose docstring
    has ``extra_doc`` entries on top of KieUploader's."""
    import inspect

    from kie_uploader.cdk import KieUploader

    class Extended(KieUploader):
        pass

    Extended.__doc__ = (KieUploader.__doc__ or "") + extra_doc
    signature = inspect.signature(KieUploader.__init__)
    parameters = list(signature.parameters.values()) + [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
        for name, default in extra_params.items()
    ]

    def init(self: Any, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - never called
        raise NotImplementedError

    init.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    Extended.__init__ = init  # type: ignore[method-assign]
    return Extended


def test_an_undocumented_prop_fails_the_generator_with_its_name() -> None:
    from kie_uploader.cdk import reference

    with pytest.raises(reference.UndocumentedError, match="'deploy_dead_letter_queue'"):
        reference.props(_uploader_with(deploy_dead_letter_queue=True))
    documented = _uploader_with(
        "\n    * ``deploy_dead_letter_queue``: whether the construct creates its dead-letter queue.\n",
        deploy_dead_letter_queue=True,
    )
    (row,) = [row for row in reference.props(documented) if row[0] == "deploy_dead_letter_queue"]
    assert row[2:] == ("`True`", "whether the construct creates its dead-letter queue.")


def test_a_description_of_a_prop_that_does_not_exist_fails_the_generator() -> None:
    from kie_uploader.cdk import reference

    with pytest.raises(reference.UndocumentedError, match="'max_recieve_count'"):
        reference.props(_uploader_with("\n    * ``max_recieve_count``: a typo.\n"))


def test_a_function_option_without_a_comment_fails_the_generator() -> None:
    from kie_uploader.cdk import reference

    @dataclasses.dataclass(frozen=True)
    class Options:
        #: Documented.
        documented: int = 1
        undocumented: str = "x"

    with pytest.raises(reference.UndocumentedError, match="'undocumented'"):
        reference.fields(Options)
