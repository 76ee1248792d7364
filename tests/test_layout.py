"""The package shows its architecture: every module imports on its own, no circle, each small and documented.

docs/ARCHITECTURE.md names every module; a module added without a line there fails here.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from recovery_lib.db import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "recovery_lib"
ARCHITECTURE = PROJECT_ROOT / "docs" / "ARCHITECTURE.md"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in candidates:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            # importing one's own package (its __init__ runs first anyway) is not an edge
            if target and target != name and not name.startswith(target + "."):
                targets.add(target)
                break
    return targets


def test_every_module_imports_on_its_own() -> None:
    """A fresh interpreter per module: no circle, no dependence on what was imported before."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}

    def load(name: str) -> tuple[str, int, str]:
        done = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True,
                              env=env, cwd=PROJECT_ROOT, timeout=120)
        last_line = (done.stderr.strip().splitlines() or [""])[-1]
        return name, done.returncode, last_line

    with ThreadPoolExecutor(max_workers=4) as pool:
        failed = [(name, err) for name, code, err in pool.map(load, MODULES) if code != 0]
    assert not failed, f"modules that do not import on their own: {failed}"


def test_no_import_circle() -> None:
    graph = {name: _imports(name, path) for name, path in MODULES.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            current = todo.pop()
            for nxt in graph[current]:
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    circles = sorted({" <-> ".join(sorted((a, b))) for a in graph for b in graph[a] if reaches(b, a)})
    assert not circles, f"import circles: {circles}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_small_and_says_what_it_owns(name: str) -> None:
    path = MODULES[name]
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_LINES, f"{path} has {len(text.splitlines())} lines (guideline: {MAX_LINES})"
    docstring = ast.get_docstring(ast.parse(text))
    assert docstring and docstring.splitlines()[0].strip(), f"{path}: the first docstring line says what it owns"


def test_architecture_doc_names_every_module() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    missing = []
    for path in MODULES.values():
        relative = path.relative_to(PROJECT_ROOT).as_posix()
        if not relative.endswith(("__init__.py", "__main__.py")) and f"`{relative}`" not in text:
            missing.append(relative)
    assert not missing, f"docs/ARCHITECTURE.md does not mention: {', '.join(missing)}"
