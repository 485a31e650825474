"""Does the model test catch what it must? It runs against mutated copies of the function, and against the
function as it was before issue 21's fixes.

    python -m tests.mutations [--examples N] [--steps N] [--shrink] [NAME ...]      (make mutants ARGS=...)

NAME: ``a`` … ``e`` (below) and ``before`` (the function at :data:`BEFORE`); all of them by default.

Each mutation copies ``functions/uploader`` into a temporary folder and applies exact text replacements;
a replacement whose text is not found exactly once fails loudly, so a mutation never goes stale silently
when the function changes. Then ``pytest tests/integration/test_model.py`` runs with the copy's folder
first on the path (pytest's own ``pythonpath`` is overridden too) and ``MODEL_EXPECT_UPLOADER`` naming it:
the model test asserts that the ``uploader`` it imported is that copy. ``MODEL_REPORT`` collects the
violations with the number of the history each was found in (0-based: the first history is 0), so the
answer says after how many histories the model failed. Shrinking is off unless ``--shrink`` (it only
makes the printed history shorter; the falsifying history is printed either way, in the log).

``before`` runs in collect mode (``MODEL_COLLECT=1``): violations are recorded and the run goes on, so one
run lists every kind of defect it finds, each with the first history that showed it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTION = ROOT / "functions" / "uploader"
MODEL_TEST = "tests/integration/test_model.py"
#: The last commit before issue 21's fixes of the record.
BEFORE = "322d5b3"
#: Violations of the current function itself, reported and awaiting a fix: tolerated in the mutants' runs
#: (recorded, not failing), so that a mutant counts as caught only for what the mutation broke: see
#: tests/integration/test_model.py's KNOWN_DEFECTS.
KNOWN_DEFECTS: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    #: (file in functions/uploader, exact text, replacement)
    edits: tuple[tuple[str, str, str], ...]


MUTATIONS = (
    Mutation(
        "a",
        "the failure path stores the event's sequencer although S3 was not read",
        (
            (
                "processor.py",
                "return self._failed(ref, record, rev, None, exc, outcome, write, stored, now)",
                "return self._failed(ref, record, rev, None, exc, outcome, write, "
                "newest_sequencer(record, ref.sequencer), now)",
            ),
        ),
    ),
    Mutation(
        "b",
        "a synchronous request's result write is made without its revision condition",
        (
            (
                "processor.py",
                "if self._settle(ref, record, rev + 1, outcome, deadline, cache, min_valid, verify):",
                "if self._settle(ref, record, rev + 1, outcome, deadline, cache, min_valid, verify, waits):",
            ),
            (
                "processor.py",
                "        verify: bool = False,\n    ) -> bool:\n"
                '        """Holding the claim at ``rev``: read S3 and write what it says.',
                "        verify: bool = False,\n        waits: bool = False,\n    ) -> bool:\n"
                '        """Holding the claim at ``rev``: read S3 and write what it says.',
            ),
            (
                "processor.py",
                "        def write(state: Settle) -> bool:\n            return self.table.settle(\n",
                "        def write(state: Settle) -> bool:\n"
                "            if waits:\n"
                "                request = self.table.settle_request(ref, rev, state, "
                "observed_at=observed_at, now=now, attempts=outcome.attempts)\n"
                '                condition = request.pop("ConditionExpression", "")\n'
                "                for token in condition.split():  # the condition's value, now unused\n"
                '                    request["ExpressionAttributeValues"].pop(token.strip("()"), None)\n'
                "                return self.table._write(request)\n"
                "            return self.table.settle(\n",
            ),
        ),
    ),
    Mutation(
        "c",
        "_already_true no longer reads the record again after reading S3 (it uses the record read before)",
        (
            (
                "processor.py",
                "        record = self.table.get(ref.pk)\n        # Any claim, even one whose lease ran out",
                "        # Any claim, even one whose lease ran out",
            ),
        ),
    ),
    Mutation(
        "d",
        "a delivery that finds another's live claim returns without bumping it",
        (
            (
                "processor.py",
                "                if self.table.bump(ref, rev):\n"
                "                    outcome.status = Status.IN_PROGRESS\n",
                "                if True:\n                    outcome.status = Status.IN_PROGRESS\n",
            ),
        ),
    ),
    Mutation(
        "e",
        "no S3 read after the claim: the event's facts decide (its version, ETag and size; a removal = gone)",
        (
            (
                "processor.py",
                "        try:\n"
                "            head = self.s3.head(ref.bucket, ref.key, None)\n"
                "            read_at = self.monotonic()\n",
                "        try:\n"
                "            if ref.kind is EventKind.REMOVED:\n"
                '                raise ObjectNotFoundError("the event says it is gone")\n'
                "            if ref.etag is not None and ref.size is not None:\n"
                '                head = ObjectHead(version_id=ref.version_id or "null", '
                "etag=ref.etag, size=ref.size)\n"
                "            else:\n"
                "                head = self.s3.head(ref.bucket, ref.key, None)\n"
                "            read_at = self.monotonic()\n",
            ),
        ),
    ),
)


@dataclass
class Result:
    name: str
    what: str
    failed: bool
    histories: int | None
    tags: dict[str, int]
    seconds: float
    log: Path


def mutated_copy(mutation: Mutation, folder: Path) -> Path:
    """``folder/uploader``: the function with the mutation's edits (each text must be found exactly once)."""
    target = folder / "uploader"
    shutil.copytree(FUNCTION, target, ignore=shutil.ignore_patterns("__pycache__"))
    for file, old, new in mutation.edits:
        path = target / file
        text = path.read_text(encoding="utf-8")
        found = text.count(old)
        if found != 1:
            raise SystemExit(
                f"mutation {mutation.name}: the text to replace is found {found} times in {file} "
                f"(expected once):\n{old}"
            )
        path.write_text(text.replace(old, new), encoding="utf-8")
    return target


def before_copy(folder: Path) -> Path:
    """``folder/functions/uploader`` as it was at :data:`BEFORE`."""
    archive = subprocess.run(
        ["git", "archive", BEFORE, "functions/uploader"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "functions" / "uploader"


def run_model(
    name: str, what: str, package: Path, folder: Path, args: argparse.Namespace, collect: bool
) -> Result:
    report = folder / "report.jsonl"
    log = folder / "pytest.log"
    env = dict(os.environ)
    env |= {
        "PYTHONPATH": os.pathsep.join([str(package.parent), str(ROOT / "src"), str(ROOT)]),
        "MODEL_EXPECT_UPLOADER": str(package),
        "MODEL_REPORT": str(report),
        "MODEL_EXAMPLES": str(args.examples),
        "MODEL_STEPS": str(args.steps),
        "MODEL_SHRINK": "1" if args.shrink else "0",
        "MODEL_COLLECT": "1" if collect else "0",
        "MODEL_SHARDS": "1",
        "MODEL_TOLERATE": ",".join(args.tolerate),
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        MODEL_TEST,
        "-q",
        "-s",
        "-p",
        "no:cacheprovider",
        "-o",
        f"pythonpath={package.parent} src .",
    ]
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        # A session of its own: stopping this runner (Ctrl-C) stops pytest and the servers it started.
        child = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = child.wait()
        except BaseException:
            os.killpg(child.pid, signal.SIGINT)  # pytest then stops its servers
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGTERM)
            raise
    seconds = time.monotonic() - started
    under_test = [
        line for line in log.read_text(encoding="utf-8").splitlines() if "uploader under test" in line
    ]
    if not under_test or str(package) not in under_test[0]:
        raise SystemExit(f"{name}: the model did not test the copy {package} (see {log})")
    tags: dict[str, int] = {}
    if report.exists():
        for line in report.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            tags.setdefault(entry["tag"], entry["history"])
    counted = [history for tag, history in tags.items() if tag not in args.tolerate]
    first = min(counted) if counted else None
    failed = code != 0 or (collect and bool(counted))
    return Result(name, what, failed, None if first is None else first + 1, tags, seconds, log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=[m.name for m in MUTATIONS] + ["before"])
    parser.add_argument("--examples", type=int, default=2000, help="histories at most per run")
    parser.add_argument("--steps", type=int, default=int(os.environ.get("MODEL_STEPS", "14")))
    parser.add_argument("--shrink", action="store_true", help="shrink the falsifying history")
    parser.add_argument(
        "--tolerate",
        type=lambda text: tuple(filter(None, text.split(","))),
        default=KNOWN_DEFECTS,
        help=f"violation tags recorded but not counted (default: {','.join(KNOWN_DEFECTS)})",
    )
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTATIONS}
    results: list[Result] = []
    for name in args.names:
        folder = Path(tempfile.mkdtemp(prefix=f"mutant-{name}-"))
        if name == "before":
            package, what, collect = before_copy(folder), f"the function at {BEFORE} (before issue 21)", True
        elif name in known:
            package, what, collect = mutated_copy(known[name], folder), known[name].what, False
        else:
            parser.error(f"unknown mutation {name!r} (known: {', '.join(known)}, before)")
        print(f"{name}: {what} …", flush=True)
        result = run_model(name, what, package, folder, args, collect)
        results.append(result)
        verdict = "FAILED (caught)" if result.failed else "passed (NOT caught)"
        after = f" after {result.histories} histories" if result.histories else ""
        print(
            f"  model {verdict}{after} in {result.seconds:.0f} s; violations {result.tags}; log {result.log}"
        )
    missed = [r.name for r in results if not r.failed]
    print(
        "summary:",
        ", ".join(f"{r.name}={'caught@' + str(r.histories) if r.failed else 'missed'}" for r in results),
    )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
