"""Memory sits below the service, the prompt and the engine: brain/memory imports none of them.

Why: the service builds the memory service and hands it the model (records.BackgroundModel), and the prompt reads
what memory gives it (context.Memory). Were memory to import them back, every change there would reach into memory,
memory could not be used or tested without a running service and a model, and an import cycle would be one edit
away: fact extraction once imported the service's Runtime and the prompt's render while the prompt imported
memory. So the direction is one way (service -> memory, prompt -> memory) and this test keeps it so, for imports
under TYPE_CHECKING too (a type import still ties memory to the shape of the service).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.test_imports import ROOT, imported, project_modules

MEMORY = ROOT / "brain" / "memory"
# the layers above memory; bot and trainer are other programs altogether
ABOVE = ("brain.service", "brain.prompt", "brain.engine", "brain.adapters", "brain.dashboard", "brain.cli")
OTHER_PROGRAMS = ("bot", "trainer")


def named_imports(path: Path) -> set[str]:
    """Every module a file names in an import, wherever the import is (top, function, TYPE_CHECKING block)."""
    package = "brain.memory"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def upward(name: str) -> bool:
    return any(name == layer or name.startswith(layer + ".") for layer in ABOVE + OTHER_PROGRAMS)


def test_no_memory_module_imports_the_service_the_prompt_or_the_engine() -> None:
    files = sorted(MEMORY.glob("*.py"))
    found = {path.name: sorted(name for name in named_imports(path) if upward(name)) for path in files}
    assert any("brain.store" in named_imports(path) for path in files), "the parser sees memory's imports"
    assert {name: up for name, up in found.items() if up} == {}


def test_nothing_memory_imports_leads_back_up() -> None:
    """Not through another module either: what memory's modules import, and what those import, stays below."""
    modules = project_modules()
    graph = {name: imported(name, path, modules) for name, path in modules.items()}
    reached: set[str] = set()
    pending = [name for name in modules if name.startswith("brain.memory")]
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending.extend(graph[name])
    assert "brain.store" in reached and "brain.memory.service" in reached
    assert sorted(name for name in reached if upward(name)) == []


def test_memory_loads_without_torch() -> None:
    """Memory reaches the model only through the BackgroundModel it is given: importing it loads no torch."""
    code = "import sys, brain.memory.service; print('torch' in sys.modules or 'transformers' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert run.stdout.strip() == "False"
