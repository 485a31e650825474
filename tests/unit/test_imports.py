"""The import graph of ``src/`` and ``infra/``: no cycle anywhere, the command line's rooms import one way.

Every import counts, wherever it stands (module level, inside a function, under ``TYPE_CHECKING``): a cycle
through a lazy import or a type-only import still means that neither module can be read without the other.
Read from the source text (``ast``), nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Where each package's modules are (the wheel carries functions/uploader as kie_uploader.function).
ROOTS = {
    "kie_uploader": REPO / "src" / "kie_uploader",
    "kie_uploader.function": REPO / "functions" / "uploader",
    "infra": REPO / "infra",
}

#: The command line's rooms, lowest first: a module imports modules of its own rank or lower, never higher,
#: and a command module never imports another command module (each room stands alone).
CLI = "kie_uploader.cli"
BASE = {"errors", "args", "aws", "store", "console", "tables", "formats", "progress", "output", "messages"}
COMMANDS = {"records", "moving", "dlq", "info", "operating", "setting_up"}
ENTRY = {"entry"}
#: Applications built on the command line's modules (they are not library modules).
CLI_USERS = {"kie_uploader.demo"}


def module_files() -> dict[str, Path]:
    modules = {}
    for package, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def _targets(name: str, path: Path) -> set[str]:
    """Each import statement's module: ``from p import x`` is ``p.x`` when that is a module, else ``p``."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [[alias.name] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            candidates = [[f"{base}.{alias.name}", base] for alias in node.names]
        else:
            continue
        for names in candidates:
            for candidate in names:
                module = _known(candidate)
                if module is not None:
                    if module != name:
                        found.add(module)
                    break
    return found


def _known(dotted: str) -> str | None:
    """``dotted`` or its nearest enclosing module of ``MODULES``; None for a module of another project."""
    while dotted:
        if dotted in MODULES:
            return dotted
        dotted = dotted.rpartition(".")[0]
    return None


EDGES = {name: _targets(name, path) for name, path in MODULES.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_from_the_sources() -> None:
    # The reading itself: relative and absolute imports, lazy ones, `from package import module`.
    assert "kie_uploader.cli.entry" in EDGES["kie_uploader.cli"]
    assert {"kie_uploader.cli.records", "kie_uploader.cli.aws"} <= EDGES["kie_uploader.cli.entry"]
    assert "kie_uploader.settings" in EDGES["infra.app"]
    assert "kie_uploader.cdk.nag" in EDGES["kie_uploader.cdk.construct"]


def test_a_cycle_is_found() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_src_and_infra() -> None:
    assert cycles(EDGES) == []


def test_no_library_module_imports_the_command_line() -> None:
    outside = {
        name: sorted(t for t in targets if t == CLI or t.startswith(f"{CLI}."))
        for name, targets in EDGES.items()
        if not (name == CLI or name.startswith(f"{CLI}.")) and name not in CLI_USERS
    }
    assert {name: found for name, found in outside.items() if found} == {}


def test_the_package_never_imports_the_repositorys_infra() -> None:
    found = {
        name: sorted(t for t in targets if t.split(".")[0] == "infra")
        for name, targets in EDGES.items()
        if name.startswith("kie_uploader")
    }
    assert {name: targets for name, targets in found.items() if targets} == {}
    # Nor by name at run time (the settings file's code once loaded infra.settings with importlib).
    dynamic = [name for name, path in MODULES.items() if name.startswith("kie_uploader")
               and "import_module(\"infra" in path.read_text(encoding="utf-8")]  # fmt: skip
    assert dynamic == []


def _room(module: str) -> tuple[int, str]:
    short = module.removeprefix(f"{CLI}.")
    for rank, members in enumerate((BASE, COMMANDS, ENTRY)):
        if short in members:
            return rank, short
    raise AssertionError(f"{module}: which room? add it to BASE, COMMANDS or ENTRY")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(f"{CLI}.")))
def test_the_command_lines_imports_run_one_way(module: str) -> None:
    rank, short = _room(module)
    for target in EDGES[module]:
        if not target.startswith(f"{CLI}."):
            continue
        target_rank, target_short = _room(target)
        assert target_rank <= rank, f"{short} (rank {rank}) imports {target_short} (rank {target_rank})"
        if rank == 1:
            assert target_rank == 0, f"command module {short} imports command module {target_short}"


def test_the_command_lines_package_loads_nothing_until_main_runs() -> None:
    assert EDGES[CLI] == {f"{CLI}.entry"}
    source = MODULES[CLI].read_text(encoding="utf-8")
    module_level = [n for n in ast.parse(source).body if isinstance(n, ast.Import | ast.ImportFrom)]
    allowed = ("__future__", "collections.abc")
    assert all(isinstance(n, ast.ImportFrom) and n.module in allowed for n in module_level)
