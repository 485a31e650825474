"""The deploy settings that stay: ``kie-uploader.settings.json`` at the top of the repository.

A ``-c name=value`` given to one ``cdk deploy`` is forgotten by the next one; for an imported bucket or an
existing secret, forgetting is destructive (a new bucket replaces the imported one and the old notification
resource's delete handler removes this stack's notifications from the user's bucket; a new, empty secret
replaces the user's). So the CDK app reads its options from this file first:

- ``kie-uploader configure name=value ...`` writes it; so does every ``cdk synth/deploy -c name=value``
  (each option the app reads is remembered, so the next run without ``-c`` deploys the same thing);
- a ``-c`` option overrides the file's value, except for the *guarded* options (``bucketNames``,
  ``apiKeySecretArn``): once recorded, a different value is refused unless ``-c acceptSettingsChange=true``
  is given (``configure`` needs ``--accept-change``).

The format is one JSON object: ``{"settings": {"bucketNames": "a,b", "notify": "queue", ...}}`` with the
context options' names and their values as strings (lists as comma-separated strings).

No aws-cdk-lib here, and no settings model: the model (:mod:`kie_uploader.settings`) reads its options
through :func:`layered_context`, and ``configure`` is given the model's parser (``read``) to refuse what
the deploy would.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

FILE_NAME = "kie-uploader.settings.json"
#: Points the CDK app and the command line at another settings file (the local deploys use their own).
ENV_VAR = "KIE_UPLOADER_SETTINGS_FILE"
#: Options whose change on an existing stack replaces or detaches what the user already has.
GUARDED = ("bucketNames", "apiKeySecretArn")
#: ``-c acceptSettingsChange=true`` lets a ``-c`` value replace a guarded option recorded in the file.
ACCEPT_KEY = "acceptSettingsChange"
_WHY = {
    "bucketNames": "changing the buckets of a deployed stack detaches it from the recorded ones "
    "(their notifications to this stack are removed; a new bucket is created when none is named)",
    "apiKeySecretArn": "changing the secret of a deployed stack makes the function read another key "
    "(without it, a new, empty secret is created)",
}
_TRUE = frozenset({"true", "1", "yes", "on"})


class SettingsFileError(ValueError):
    """The settings file is unreadable, or a change of a guarded option was not accepted; names the key."""


def default_path(root: Path | None = None) -> Path:
    """``$KIE_UPLOADER_SETTINGS_FILE``, else ``kie-uploader.settings.json`` at the repository's top."""
    override = os.environ.get(ENV_VAR, "").strip()
    if override:
        return Path(override)
    if root is None:
        from kie_uploader.local import repo_root

        root = repo_root()
    return root / FILE_NAME


def as_text(value: Any) -> str | None:
    """A context value as the settings file stores it: lists comma-joined, blanks as None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        value = ",".join(str(item).strip() for item in value)
    text = str(value).strip()
    return text or None


def is_true(value: Any) -> bool:
    text = as_text(value)
    return text is not None and text.lower() in _TRUE


def same_value(key: str, a: Any, b: Any) -> bool:
    """Whether two values of ``key`` mean the same (``bucketNames`` compares as a set)."""
    left, right = as_text(a), as_text(b)
    if key == "bucketNames" and left is not None and right is not None:
        return _name_set(left) == _name_set(right)
    return left == right


def _name_set(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def load(path: Path) -> dict[str, str]:
    """The file's settings (``{}`` when there is no file); a malformed file raises naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsFileError(f"{path} is not valid JSON: {exc}") from None
    settings = document.get("settings") if isinstance(document, dict) else None
    if not isinstance(settings, dict):
        raise SettingsFileError(f'{path} must hold {{"settings": {{"name": "value", ...}}}}')
    values: dict[str, str] = {}
    for key, value in settings.items():
        text_value = as_text(value)
        if text_value is not None:
            values[str(key)] = text_value
    return values


def save(path: Path, values: Mapping[str, str]) -> None:
    """Write the settings (sorted, one per line) atomically: a crash never leaves half a file."""
    document = {"settings": {key: values[key] for key in sorted(values)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def refusal(key: str, given: Any, recorded: str, path: Path, *, how: str) -> SettingsFileError:
    """The error for an unaccepted change of a guarded option: names the key and how to accept it."""
    return SettingsFileError(
        f"context {key}={as_text(given)!r} differs from {key}={recorded!r} recorded in {path}: "
        f"{_WHY.get(key, 'this option is guarded')}; if that is what you want, {how}"
    )


def apply_changes(
    current: Mapping[str, str], changes: Mapping[str, str | None], *, accept_change: bool, path: Path
) -> dict[str, str]:
    """``current`` with ``changes`` applied (None or "" removes a key); refuses unaccepted guarded changes."""
    updated = dict(current)
    for key, value in changes.items():
        text = as_text(value)
        recorded = current.get(key)
        if key in GUARDED and recorded is not None and not same_value(key, text, recorded):
            if not accept_change:
                raise refusal(key, text or "", recorded, path, how="run it again with --accept-change")
        if text is None:
            updated.pop(key, None)
        else:
            updated[key] = text
    return updated


class LayeredContext:
    """A context getter for ``StackSettings.from_context``: the ``-c``/cdk.json value, else the file's.

    A ``-c`` value of a guarded option that differs from the file's is refused unless
    ``acceptSettingsChange`` is true. Every option read with a ``-c`` value is collected in
    :attr:`remembered`, which :meth:`remember` writes back to the file.
    """

    def __init__(
        self, get: Callable[[str], Any], path: Path, values: Mapping[str, str] | None = None
    ) -> None:
        self._get = get
        self.path = path
        self.file_values = dict(load(path) if values is None else values)
        self.accepted = is_true(get(ACCEPT_KEY))
        self.remembered: dict[str, str] = dict(self.file_values)
        self.read_keys: set[str] = set()

    def __call__(self, key: str) -> Any:
        self.read_keys.add(key)
        given = self._get(key)
        recorded = self.file_values.get(key)
        if as_text(given) is None:
            return recorded
        if key in GUARDED and recorded is not None and not same_value(key, given, recorded):
            if not self.accepted:
                raise refusal(key, given, recorded, self.path, how=f"add -c {ACCEPT_KEY}=true")
        text = as_text(given)
        if text is not None:
            self.remembered[key] = text
        return given

    @property
    def changed(self) -> bool:
        return self.remembered != self.file_values

    def remember(self) -> bool:
        """Write the options given with ``-c`` into the file; True if it changed."""
        if not self.changed:
            return False
        save(self.path, self.remembered)
        self.file_values = dict(self.remembered)
        return True


def layered_context(get: Callable[[str], Any], path: Path) -> LayeredContext:
    return LayeredContext(get, path)


def known_keys(read: Callable[[Callable[[str], Any]], object]) -> set[str]:
    """The option names a settings parser reads (``read`` is e.g. ``StackSettings.from_context``)."""
    asked: set[str] = set()

    def get(key: str) -> Any:
        asked.add(key)
        return None

    read(get)
    return asked


def merged(context: Mapping[str, Any] | None, path: Path) -> dict[str, str]:
    """The file's values with ``context`` on top (what the app would read), as strings; no refusal."""
    values = dict(load(path))
    for key, value in (context or {}).items():
        text = as_text(value)
        if text is not None:
            values[key] = text
    return values


def unaccepted_changes(context: Mapping[str, Any], path: Path) -> list[str]:
    """What the CDK app would refuse: guarded options whose ``context`` value differs from the file's."""
    layers = LayeredContext(context.get, path)
    refused = []
    for key in GUARDED:
        try:
            layers(key)
        except SettingsFileError as exc:
            refused.append(str(exc))
    return refused


def parse_assignments(items: Iterable[str]) -> dict[str, str | None]:
    """``name=value`` arguments; ``name=`` removes the option."""
    changes: dict[str, str | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SettingsFileError(f"expected name=value, got {item!r}")
        changes[key] = value.strip() or None
    return changes


# --- `kie-uploader configure` ----------------------------------------------------------------------


def configure(
    path: Path,
    changes: Mapping[str, str | None],
    *,
    accept_change: bool,
    check: Callable[[Mapping[str, str]], list[str]] | None = None,
) -> dict[str, str]:
    """Apply ``changes`` to the file. A guarded option's change needs ``accept_change``; what ``check``
    finds wrong in the result (``kie_uploader.settings.problems``: unknown names, malformed values) is
    refused before the file is written."""
    current = load(path)
    updated = apply_changes(current, changes, accept_change=accept_change, path=path)
    problems = check(updated) if check is not None else []
    if problems:
        raise SettingsFileError("; ".join(problems) + " (nothing was written)")
    if updated != current:
        save(path, updated)
    return updated
