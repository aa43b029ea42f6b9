"""The project's modules import each other without cycles, and the trainer's entry points list one set of
commands: `python -m trainer`, `python -m trainer.cli` (what torchrun runs) and the `trainer` console script."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "brain", "trainer")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that ``name`` imports when it runs: at the top and inside functions (the command
    line imports lazily) alike, not under TYPE_CHECKING (a type checker's import never runs). `from a import
    b` depends on the module a.b when there is one, else on a, whose name b is; `import a.b` on a.b."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in modules and target != name}
    return found


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` but those inside an `if TYPE_CHECKING:` block."""
    nodes, pending = [], [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                pending.extend(child.orelse)
            else:
                pending.append(child)
    return nodes


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, set(component)) for component in components]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    start = min(component)
    path, seen = [start], {start}
    while True:
        nxt = min(n for n in graph[path[-1]] if n in component)
        if nxt in seen:
            return path[path.index(nxt) :] + [nxt]
        path.append(nxt)
        seen.add(nxt)


def test_the_import_graph_of_the_project_has_no_cycle() -> None:
    modules = project_modules()
    graph = {name: imported(name, path, modules) for name, path in modules.items()}
    assert len(graph) > 100 and graph["trainer.cli"], "the graph covers the project"
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_a_cycle_through_a_lazy_import_is_found_and_one_for_type_checking_only_is_not(tmp_path: Path) -> None:
    files = {
        "a": "from p import b\n",
        "b": "def later():\n    from p.c import run\n",
        "c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p.d import T\nimport p.a\n",
        "d": "from p import c\n",
    }
    modules = {f"p.{name}": tmp_path / f"{name}.py" for name in files}
    for name, source in files.items():
        (tmp_path / f"{name}.py").write_text(source)
    graph = {name: imported(name, path, modules) for name, path in modules.items()}
    assert graph["p.c"] == {"p.a"}
    assert cycles(graph) == [["p.a", "p.b", "p.c", "p.a"]]


def commands(*command: str) -> list[str]:
    """The commands a `--help` lists, in order."""
    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"}
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split("Commands", 1)[1]
    return re.findall(r"^│ (\w[\w-]*)\s", listed, flags=re.MULTILINE)


def test_every_entry_point_of_the_trainer_lists_the_same_commands() -> None:
    script = Path(sys.executable).with_name("trainer")  # the installed console script
    as_module = commands(sys.executable, "-m", "trainer")
    assert as_module[:4] == ["pretrain", "finetune", "sample", "eval"]
    assert {"nightly", "status", "rollback", "schedule"} <= set(as_module)
    assert commands(str(script)) == as_module
    assert commands(sys.executable, "-m", "trainer.cli") == as_module
