"""``kie-uploader``, the operator's command line, as rooms whose imports run one way:
entry → commands → base and output → the library (:mod:`kie_uploader.live`, the function's pure modules).

- entry: :mod:`.entry` assembles the parser from each command module's ``register(commands, common)``
  and runs the command (errors become one line and an exit code);
- commands, one module per group: records (:mod:`.records`: ``list``, ``status``, ``url``,
  ``refresh``); moving objects (:mod:`.moving`: ``backfill``, ``retry-failed``, ``redrive``;
  :mod:`.dlq`: ``dlq peek``, with :mod:`.messages` decoding message bodies); operating (:mod:`.info`:
  ``info``, ``stats``; :mod:`.operating`: ``set-key``, ``forget``); setting up (:mod:`.setting_up`:
  ``doctor``, ``configure``);
- base: :mod:`.errors` (errors, exit codes), :mod:`.args` (S3 URIs, durations, the common options,
  help), :mod:`.aws` (AWS access and stack discovery), :mod:`.store` (the stack's table and queue);
- output: :mod:`.output` (what commands print, the record's rendering), :mod:`.console` (words and
  pages fitted to the terminal), :mod:`.tables` (rich's tables at widths chosen to fit), :mod:`.formats`
  (``--output json/jsonl/tsv``), :mod:`.progress` (progress on stderr).

Nothing outside this package imports it but its users (the console script, the demo). Importing the
package imports none of its modules: ``main`` loads them when it runs.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (the console script ``kie-uploader``); returns the exit code."""
    from kie_uploader.cli import entry

    return entry.main(argv)
