"""Imports flow one way (DESIGN §2): errors <- components <- compiler <- runtime <- service <-
cli, and errors <- store <- runtime. Only store/kv/lmdb*.py imports lmdb; only cli/ imports
click; only service/ imports the web framework.

The package is read with ``ast``, never imported, so every import counts: module level,
inside functions and under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

import smithers

PACKAGE = Path(smithers.__file__).resolve().parent

# What each layer may import from smithers (besides itself, always allowed).
ALLOWED: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "components": frozenset({"errors"}),
    "compiler": frozenset({"errors", "components"}),
    "store": frozenset({"errors"}),
    "runtime": frozenset({"errors", "components", "compiler", "store"}),
    "service": frozenset({"errors", "components", "compiler", "store", "runtime"}),
    "cli": frozenset({"errors", "components", "compiler", "store", "runtime", "service"}),
}
# Third-party modules only some files may import (glob over the path inside the package).
RESTRICTED = {
    "lmdb": "store/kv/lmdb*.py",
    "psycopg": "store/postgres/*.py",
    "click": "cli/*.py",
    "starlette": "service/*.py",
    "uvicorn": "service/*.py",
    "jinja2": "service/*.py",
}
# The package's own entry points re-export or launch everything; they sit above every layer.
TOP = frozenset({"__init__.py", "__main__.py"})


def layer_of(module: str) -> str | None:
    """The layer of a dotted smithers module name (``smithers.compiler.lower`` -> compiler)."""
    parts = module.split(".")
    if parts[0] != "smithers":
        return None
    if len(parts) == 1:
        return "smithers"  # the package root: the public API re-exports every layer
    return parts[1]


def module_name(relative: Path) -> str:
    """``compiler/lower.py`` -> ``smithers.compiler.lower``."""
    parts = ["smithers", *relative.with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(dotted: str) -> bool:
    """Whether ``dotted`` names a module or package file of smithers."""
    parts = dotted.split(".")
    if parts[0] != "smithers" or len(parts) == 1:
        return False
    path = PACKAGE.joinpath(*parts[1:])
    return path.is_dir() or path.with_suffix(".py").is_file()


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every (line, dotted module) imported anywhere in ``source``, relative ones resolved."""
    found: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # `from smithers import compiler` imports the submodule smithers.compiler.
            found.extend(
                (node.lineno, f"{target}.{alias.name}")
                for alias in node.names
                if is_module(f"{target}.{alias.name}")
            )
    return found


def violations(relative: Path, source: str) -> list[str]:
    """Every wrong-way import in one file, as ``path:line imports module (reason)``."""
    module = module_name(relative)
    is_package = relative.name == "__init__.py"
    own = relative.as_posix()
    mine = layer_of(module)
    problems = []
    for line, target in imported_modules(source, module, is_package):
        top = target.split(".")[0]
        where = f"smithers/{own}:{line} imports {target}"
        if top in RESTRICTED and not fnmatch.fnmatch(own, RESTRICTED[top]):
            problems.append(f"{where} (only {RESTRICTED[top]} may import {top})")
            continue
        theirs = layer_of(target)
        if theirs is None or own in TOP or theirs == mine:
            continue
        if theirs == "smithers":
            if target == "smithers":
                problems.append(f"{where} (the package root re-exports every layer)")
            continue
        if mine not in ALLOWED:
            problems.append(f"{where} (smithers/{own} is in no known layer)")
        elif theirs not in ALLOWED[mine]:
            problems.append(f"{where} ({mine} may not import {theirs})")
    return problems


def package_files() -> list[Path]:
    """Every Python file of the package, relative to it."""
    return sorted(p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py"))


def test_the_package_has_every_layer() -> None:
    """The walk sees the modules of every layer (so an empty walk cannot pass)."""
    layers = {layer_of(module_name(p)) for p in package_files() if p.as_posix() not in TOP}
    assert set(ALLOWED) <= layers
    assert len(package_files()) > 20


def test_imports_flow_one_way() -> None:
    """No module imports against the layer direction or a third-party module it may not."""
    problems = [
        problem
        for relative in package_files()
        for problem in violations(relative, (PACKAGE / relative).read_text(encoding="utf-8"))
    ]
    assert problems == []


def test_the_check_sees_imports_everywhere() -> None:
    """Imports inside functions and TYPE_CHECKING blocks are collected, relative ones resolved."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from smithers.runtime.api import run\n"
        "def f():\n"
        "    import smithers.cli\n"
        "    from . import lower\n"
        "    from ..store import records\n"
    )
    assert [m for _, m in imported_modules(source, "smithers.compiler.graph", False)] == [
        "typing",
        "smithers.runtime.api",
        "smithers.cli",
        "smithers.compiler",
        "smithers.compiler.lower",
        "smithers.store",
        "smithers.store.records",
    ]


@pytest.mark.parametrize(
    ("path", "source", "reason"),
    [
        ("errors.py", "from smithers.components import Task\n", "errors may not import components"),
        (
            "components/nodes.py",
            "import smithers.compiler.graph\n",
            "components may not import compiler",
        ),
        (
            "compiler/lower.py",
            "def f():\n    from smithers.runtime.engine import Engine\n",
            "compiler may not import runtime",
        ),
        (
            "compiler/render.py",
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from smithers.store import open_store\n",
            "compiler may not import store",
        ),
        (
            "store/kv/kvstore.py",
            "from smithers.compiler.codec import encode_frame\n",
            "store may not import compiler",
        ),
        (
            "store/records.py",
            "from smithers.components.nodes import Task\n",
            "store may not import components",
        ),
        ("store/base.py", "from ..runtime import api\n", "store may not import runtime"),
        ("runtime/engine.py", "from smithers.cli import main\n", "runtime may not import cli"),
        ("runtime/api.py", "from smithers.service import x\n", "runtime may not import service"),
        ("service/app.py", "from smithers.cli import main\n", "service may not import cli"),
        ("service/app.py", "import click\n", "only cli/*.py may import click"),
        ("cli/serve.py", "import starlette\n", "only service/*.py may import starlette"),
        ("runtime/documents.py", "import jinja2\n", "only service/*.py may import jinja2"),
        ("components/element.py", "from smithers import Task\n", "package root re-exports"),
        ("store/kv/memory.py", "import lmdb\n", "only store/kv/lmdb*.py may import lmdb"),
        ("store/lmdb_kv.py", "import lmdb\n", "only store/kv/lmdb*.py may import lmdb"),
        ("runtime/api.py", "import click\n", "only cli/*.py may import click"),
        ("compiler/export.py", "from click import echo\n", "only cli/*.py may import click"),
    ],
)
def test_the_check_fails_on_a_wrong_way_import(path: str, source: str, reason: str) -> None:
    """A fabricated wrong-way import is reported with its file, line and reason."""
    problems = violations(Path(path), source)
    assert problems != []
    for problem in problems:
        assert problem.startswith(f"smithers/{path}:")
        assert reason in problem


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("components/nodes.py", "from smithers.errors import DefinitionError\n"),
        ("compiler/lower.py", "from smithers.components.groups import Loop\n"),
        ("runtime/engine.py", "from smithers.store.base import Store\nimport smithers.compiler\n"),
        ("cli/execute.py", "import click\nfrom smithers.runtime.api import run\n"),
        ("cli/serve.py", "import click\nfrom smithers.service import app\n"),
        ("service/app.py", "import starlette\nfrom smithers.runtime import usecases\n"),
        ("store/kv/lmdb_kv.py", "import lmdb\nfrom smithers.errors import StoreError\n"),
        ("store/kv/protocol.py", "from .. import records\n"),
        ("__init__.py", "from smithers.runtime.api import run\n"),
    ],
)
def test_the_check_allows_the_right_direction(path: str, source: str) -> None:
    """Imports to the left, within a layer, and the allowed third-party ones pass."""
    assert violations(Path(path), source) == []
