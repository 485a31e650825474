"""4. The function's asset, built by the stack's own local bundling (``src/kie_uploader/cdk/bundling.py``):
its size unzipped and zipped (deflate, as CDK zips a folder asset), and what takes the room."""

from __future__ import annotations

import compileall
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

from bench.common import FUNCTIONS_DIR, Report, child_env, median, progress, relative, spread
from bench.context import Context

#: Lambda's limits for a .zip deployment package.
LAMBDA_ZIPPED_LIMIT_MB = 50
LAMBDA_UNZIPPED_LIMIT_MB = 250
MB = 1024 * 1024


def _tree_bytes(root: Path) -> tuple[int, int]:
    total = files = 0
    for folder, _dirs, names in os.walk(root):
        for name in names:
            total += (Path(folder) / name).stat().st_size
            files += 1
    return total, files


def _zip(root: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for folder, dirs, names in os.walk(root):
            dirs.sort()
            for name in sorted(names):
                path = Path(folder) / name
                archive.write(path, path.relative_to(root))


def _import_from_asset(asset_dir: Path, runs: int) -> dict[str, Any]:
    """The function's complete import as Lambda does it: the asset first on the path (boto3 from the
    environment, as Lambda's runtime provides it), with and without the asset's bytecode compiled.

    The asset ships without .pyc files (pip's --no-compile, __pycache__ left out): they would be for this
    interpreter, not for the runtime's Python. Lambda's /var/task is read-only, so every cold start then
    compiles the asset's modules again; the second figure shows what compiled bytecode would save.
    """
    from bench.coldstart import HANDLER_COMPLETE, import_seconds

    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(asset_dir), env["PYTHONPATH"]])
    source_env = {**env, "PYTHONDONTWRITEBYTECODE": "1"}
    import_seconds(HANDLER_COMPLETE, source_env)  # file cache
    as_shipped = [import_seconds(HANDLER_COMPLETE, source_env)[0] for _ in range(runs)]
    compileall.compile_dir(str(asset_dir), quiet=1, workers=1)
    compiled = [import_seconds(HANDLER_COMPLETE, env)[0] for _ in range(runs)]
    for cache in asset_dir.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    return {
        "modules": HANDLER_COMPLETE,
        "as_shipped_no_bytecode_seconds": spread(as_shipped),
        "with_bytecode_seconds": spread(compiled),
        "compile_cost_seconds": round(median(as_shipped) - median(compiled), 3),
    }


def run(ctx: Context, report: Report) -> None:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # as the Makefile does
    from kie_uploader.cdk import bundling  # imports aws_cdk (a few seconds): only when this section runs
    from kie_uploader.settings import StackSettings

    architecture = StackSettings().architecture
    output = ctx.state_dir / "asset"
    shutil.rmtree(output, ignore_errors=True)
    progress(f"asset: bundling with kie_uploader.cdk.bundling for {architecture} (pip, manylinux wheels)")
    started = time.perf_counter()
    bundling.bundle(FUNCTIONS_DIR / "uploader", output, architecture=architecture)
    bundle_seconds = time.perf_counter() - started
    archive = ctx.state_dir / "asset.zip"
    _zip(output, archive)

    progress("asset: the complete import from the asset, without and with compiled bytecode")
    cold_import = _import_from_asset(output, ctx.count(full=7, quick=3))
    unzipped, files = _tree_bytes(output)
    zipped = archive.stat().st_size
    sizes: dict[str, int] = {}
    for entry in output.iterdir():
        sizes[entry.name] = _tree_bytes(entry)[0] if entry.is_dir() else entry.stat().st_size
    largest = sorted(sizes.items(), key=lambda item: item[1], reverse=True)
    parts = [{"entry": name, "kb": round(size / 1024, 1)} for name, size in largest]
    report.figures.update(
        {
            "architecture": architecture,
            "requirements": [
                line.strip()
                for line in (FUNCTIONS_DIR / "uploader" / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")
            ],
            "unzipped_bytes": unzipped,
            "zipped_bytes": zipped,
            "files": files,
            "bundle_seconds": round(bundle_seconds, 1),
            "largest_entries_kb": parts[:8],
            "archive": relative(archive),
            "import_from_asset": cold_import,
            "lambda_limits_mb": {"zipped": LAMBDA_ZIPPED_LIMIT_MB, "unzipped": LAMBDA_UNZIPPED_LIMIT_MB},
        }
    )
    report.row(
        "asset unzipped",
        f"{unzipped / MB:.2f} MB ({files} files)",
        f"Lambda: <= {LAMBDA_UNZIPPED_LIMIT_MB} MB",
    )
    report.row("asset zipped", f"{zipped / MB:.2f} MB", f"Lambda: <= {LAMBDA_ZIPPED_LIMIT_MB} MB")
    shipped = cold_import["as_shipped_no_bytecode_seconds"]["p50"]
    compiled = cold_import["with_bytecode_seconds"]["p50"]
    report.row(
        "complete import from the asset: as shipped (no .pyc) / compiled",
        f"{shipped * 1000:.0f} / {compiled * 1000:.0f} ms",
    )
    top = ", ".join(f"{name} {size / MB:.1f} MB" for name, size in largest[:4])
    report.row("largest parts", top)
