"""Load a `WorkflowDefinition` from ``path/file.py[:attr]`` or ``package.module:attr``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from types import ModuleType

import attrs

from smithers.components.definition import WorkflowDefinition
from smithers.errors import LoadError
from smithers.store.records import DefinitionRef

__all__ = ["Loaded", "load_definition", "load_ref", "source_hash"]


@attrs.frozen
class Loaded:
    """A definition and where it came from (what a run records so resume can find it)."""

    definition: WorkflowDefinition
    ref: DefinitionRef


def source_hash(path: str | None) -> str | None:
    """The sha256 of a source file, or None when it cannot be read."""
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def _split(spec: str) -> tuple[str, str | None]:
    head, sep, tail = spec.rpartition(":")
    if sep and tail and all(part.isidentifier() for part in tail.split(".")):
        return head, tail
    return spec, None


def _exec_file(path: str) -> ModuleType:
    digest = hashlib.sha256(path.encode()).hexdigest()[:10]
    stem = os.path.splitext(os.path.basename(path))[0]
    name = f"_smithers_workflow_{''.join(c if c.isalnum() else '_' for c in stem)}_{digest}"
    cached = sys.modules.get(name)
    if cached is not None and getattr(cached, "__smithers_hash__", None) == source_hash(path):
        return cached
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"Cannot load `{path}` as Python; pass a .py file as FILE[:ATTR].")
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # so the file can import its neighbours
    sys.modules[name] = module  # dataclasses and msgspec resolve annotations through it
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise LoadError(
            f"Loading `{path}` raised {type(exc).__name__}: {exc}; fix the file and try again."
        ) from exc
    module.__smithers_hash__ = source_hash(path)  # type: ignore[attr-defined]
    return module


def _pick(module: ModuleType, where: str, attr: str | None) -> tuple[WorkflowDefinition, str]:
    if attr is not None:
        target: object = module
        for part in attr.split("."):
            if not hasattr(target, part):
                found = _definitions(module)
                hint = f"; workflows in it: {', '.join(f'`{n}`' for n in found)}" if found else ""
                raise LoadError(f"`{where}` has no attribute `{attr}`{hint}.")
            target = getattr(target, part)
        if not isinstance(target, WorkflowDefinition):
            raise LoadError(
                f"`{where}:{attr}` is of type `{type(target).__name__}`, not a workflow; "
                "decorate its build function with @smithers."
            )
        return target, attr
    found = _definitions(module)
    if not found:
        raise LoadError(f"`{where}` defines no workflow; decorate a build function with @smithers.")
    if len(found) > 1:
        names = ", ".join(f"`{n}`" for n in found)
        raise LoadError(
            f"`{where}` defines several workflows ({names}); name one as {where}:{found[0]}."
        )
    name = found[0]
    definition = getattr(module, name)
    assert isinstance(definition, WorkflowDefinition)
    return definition, name


def _definitions(module: ModuleType) -> list[str]:
    return sorted(
        name for name, value in vars(module).items() if isinstance(value, WorkflowDefinition)
    )


def load_definition(spec: str, *, cwd: str | None = None) -> Loaded:
    """Load a definition from ``path/file.py``, ``path/file.py:attr`` or ``module:attr``.

    Without ``:attr`` the file or module must hold exactly one definition.

    Raises:
        LoadError: For a missing file or module, code that raises on import, a missing
            attribute, something that is not a definition, or zero or several definitions.
    """
    base = cwd or os.getcwd()
    target, attr = _split(spec)
    path = target if os.path.isabs(target) else os.path.join(base, target)
    if target.endswith(".py") or os.sep in target or os.path.exists(path):
        if not os.path.isfile(path):
            raise LoadError(
                f"No workflow file at `{target}`; pass an existing .py file as FILE[:ATTR]."
            )
        path = os.path.abspath(path)
        definition, name = _pick(_exec_file(path), target, attr)
        ref = DefinitionRef(path=path, attr=name, cwd=base, source_hash=source_hash(path))
        return Loaded(definition, ref)
    if base not in sys.path:
        sys.path.insert(0, base)  # `package.module` is looked up from the working directory
    try:
        module = importlib.import_module(target)
    except Exception as exc:
        raise LoadError(
            f"Cannot import `{target}` ({type(exc).__name__}: {exc}); pass a .py file path or "
            "an importable package.module:attr."
        ) from exc
    definition, name = _pick(module, target, attr)
    file = getattr(module, "__file__", None)
    ref = DefinitionRef(
        path=os.path.abspath(file) if file else None,
        attr=name,
        module=target,
        cwd=base,
        source_hash=source_hash(file),
    )
    return Loaded(definition, ref)


def load_ref(ref: DefinitionRef) -> Loaded:
    """Load the definition a run recorded (its module, else its file), from its directory."""
    if ref.module:
        spec = f"{ref.module}:{ref.attr}" if ref.attr else ref.module
    elif ref.path:
        spec = f"{ref.path}:{ref.attr}" if ref.attr else ref.path
    else:
        raise LoadError("The run recorded no definition; pass --workflow FILE[:ATTR].")
    return load_definition(spec, cwd=ref.cwd)
