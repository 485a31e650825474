"""The settings file's defaults (kie_uploader.settings, read without the CDK) are the construct's own: the
two declare the function's settings side by side (``duplicates`` lists them as a pair), this test keeps
them equal."""

from __future__ import annotations

import dataclasses

from kie_uploader.cdk import FunctionOptions
from kie_uploader.settings import StackSettings


def test_every_function_setting_defaults_to_what_the_construct_defaults_to() -> None:
    options = {field.name: field.default for field in dataclasses.fields(FunctionOptions)}
    settings = {field.name: field.default for field in dataclasses.fields(StackSettings)}
    shared = sorted(options.keys() & settings.keys())
    assert len(shared) >= 10, shared  # the function's settings both declare
    # None on either side means "the construct's own default": compare what it comes to.
    effective = FunctionOptions()
    options["kie_timeout_seconds"] = effective.effective_kie_timeout_seconds
    differing = {
        name: (settings[name], options[name])
        for name in shared
        if settings[name] is not None and settings[name] != options[name]
    }
    assert differing == {}
